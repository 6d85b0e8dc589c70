//===- PlanJson.h - Hand-written plans for the runtime's tests --*- C++ -*-===//
//
// The fields every plan.json has (docs/trainer-format.md) around the
// programs a test writes by hand.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_TEST_UNIT_PLANJSON_H
#define NETC_TEST_UNIT_PLANJSON_H

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace netc::testing {

/// A version-1 plan of `network` with Fashion-MNIST data defaults, the given
/// input shape, classes, parameters and programs, and an empty schedule.
inline nlohmann::json planJson(const std::string &network,
                               std::vector<int64_t> input, int64_t classes,
                               nlohmann::json params, nlohmann::json programs) {
  using json = nlohmann::json;
  return {
      {"format", "netc-trainer"},
      {"version", 3},
      {"network", network},
      {"variant", "none"},
      {"input", input},
      {"classes", classes},
      {"data",
       {{"kind", "fashion-mnist"},
        {"path", ""},
        {"subset", 0},
        {"test_subset", 0},
        {"mirror", false},
        {"crop", 0},
        {"crop_pad", 0},
        {"scale", {0, 0}},
        {"mean", json::array()},
        {"std", json::array()}}},
      {"eval", {{"schemes", {"full"}}}},
      {"params", std::move(params)},
      {"programs", std::move(programs)},
      {"schedule", json::array()},
  };
}

/// The inputs of a hand-written program: "image" (value 0) and, named
/// "v<id>", every other arena value that no kernel writes, which the test
/// fills by hand (the loader refuses reads of values nothing defines).
inline nlohmann::json handInputs(const nlohmann::json &values,
                                 const nlohmann::json &kernels) {
  nlohmann::json inputs = {{"image", 0}};
  for (const auto &v : values) {
    int64_t id = v["id"].get<int64_t>();
    if (id == 0 || v.contains("param"))
      continue;
    bool written = false;
    for (const auto &k : kernels)
      if (k.contains("out"))
        for (const auto &o : k["out"])
          written |= o.get<int64_t>() == id;
    if (!written)
      inputs["v" + std::to_string(id)] = id;
  }
  return inputs;
}

} // namespace netc::testing

#endif // NETC_TEST_UNIT_PLANJSON_H
