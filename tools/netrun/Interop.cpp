//===- Interop.cpp - netrun export and infer: PyTorch interop -------------===//

#include "tools/netrun/Interop.h"

#include "runtime/exec/Executor.h"
#include "runtime/io/File.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace netc::interop {

namespace {

using Shape = std::vector<int64_t>;
/// A torchvision model's state_dict: name -> shape.
using StateDict = std::map<std::string, Shape>;

void addLayer(StateDict &sd, const std::string &module, Shape weight) {
  sd[module + ".bias"] = {weight[0]};
  sd[module + ".weight"] = std::move(weight);
}

/// torchvision.models.vgg16(num_classes=K).state_dict()'s shapes.
StateDict vgg16(int64_t classes) {
  StateDict sd;
  const int64_t cfg[] = {64, 64,  0,   128, 128, 0,   256, 256, 256,
                         0,  512, 512, 512, 0,   512, 512, 512, 0};
  int64_t index = 0, in = 3;
  for (int64_t c : cfg) {
    if (c == 0) { // max-pool
      ++index;
      continue;
    }
    addLayer(sd, fmt::format("features.{}", index), {c, in, 3, 3});
    index += 2; // conv, relu
    in = c;
  }
  addLayer(sd, "classifier.0", {4096, 512 * 7 * 7});
  addLayer(sd, "classifier.3", {4096, 4096});
  addLayer(sd, "classifier.6", {classes, 4096});
  return sd;
}

/// torchvision.models.alexnet(num_classes=K).state_dict()'s shapes.
StateDict alexnet(int64_t classes) {
  StateDict sd;
  addLayer(sd, "features.0", {64, 3, 11, 11});
  addLayer(sd, "features.3", {192, 64, 5, 5});
  addLayer(sd, "features.6", {384, 192, 3, 3});
  addLayer(sd, "features.8", {256, 384, 3, 3});
  addLayer(sd, "features.10", {256, 256, 3, 3});
  addLayer(sd, "classifier.1", {4096, 256 * 6 * 6});
  addLayer(sd, "classifier.4", {4096, 4096});
  addLayer(sd, "classifier.6", {classes, 4096});
  return sd;
}

const char *const kFormats[] = {"torchvision", "torchvision-vgg16",
                                "torchvision-alexnet"};

std::string shapeText(const Shape &s) {
  return fmt::format("[{}]", fmt::join(s, ", "));
}

} // namespace

std::string formatNames() {
  return fmt::format("{}", fmt::join(kFormats, ", "));
}

void checkFormat(const std::string &format) {
  if (std::find(std::begin(kFormats), std::end(kFormats), format) ==
      std::end(kFormats))
    throw InteropError(fmt::format("unknown format '{}' (expected one of: {})",
                                   format, formatNames()));
}

io::TensorFile exportTensors(const plan::Plan &plan,
                             const io::TensorFile &params,
                             const std::string &format) {
  checkFormat(format);
  const std::map<std::string, std::string> &names = plan.torchvision;
  if (names.empty())
    throw InteropError(fmt::format(
        "{}: the trainer has no torchvision names (its network has no "
        "macro-layer, or netc is older than `netrun export`)",
        plan.file));
  io::TensorFile out;
  std::vector<std::string> problems;
  for (const auto &[netcName, torchName] : names) {
    const io::Tensor *t = params.find(netcName);
    if (!t) {
      problems.push_back(
          fmt::format("no parameter '{}' (for '{}')", netcName, torchName));
      continue;
    }
    if (out.tensors.count(torchName)) {
      problems.push_back(
          fmt::format("two parameters named '{}' in torchvision", torchName));
      continue;
    }
    out.tensors[torchName] = *t;
  }
  if (format != "torchvision") {
    StateDict want = format == "torchvision-vgg16" ? vgg16(plan.classes)
                                                   : alexnet(plan.classes);
    for (const auto &[name, shape] : want) {
      const io::Tensor *t = out.find(name);
      if (!t)
        problems.push_back(
            fmt::format("missing '{}' {}", name, shapeText(shape)));
      else if (t->shape != shape)
        problems.push_back(fmt::format("'{}' is {}, {} needs {}", name,
                                       shapeText(t->shape), format,
                                       shapeText(shape)));
    }
    for (const auto &[name, t] : out.tensors)
      if (!want.count(name))
        problems.push_back(fmt::format("unexpected '{}' {} (not in {})", name,
                                       shapeText(t.shape), format));
  }
  if (!problems.empty()) {
    std::string head =
        fmt::format("{}: cannot export as {}: {} problem(s):", plan.dir, format,
                    problems.size());
    throw InteropError(head, std::move(problems));
  }
  return out;
}

io::TensorFile inferLogits(const plan::Plan &plan, exec::ParamStore &params,
                           exec::Backend &backend, const io::TensorFile &images,
                           const std::string &what) {
  const io::Tensor *in = images.find("images");
  if (!in)
    throw InteropError(fmt::format("{}: no tensor 'images' (expected [N, {}])",
                                   what, fmt::join(plan.input, ", ")));
  if (in->shape.size() == 4 && in->shape[0] == 0)
    throw InteropError(fmt::format("{}: tensor 'images' holds no images "
                                   "([0, ...]); give at least one",
                                   what));
  if (in->shape.size() != 4 || in->shape[0] < 1 ||
      !std::equal(plan.input.begin(), plan.input.end(), in->shape.begin() + 1))
    throw InteropError(
        fmt::format("{}: tensor 'images' is {}, the network takes [N, {}]",
                    what, shapeText(in->shape), fmt::join(plan.input, ", ")));
  // A NaN pixel would not show in the logits (ReLU and max-pooling pass
  // over NaN), so the images are checked here.
  for (size_t i = 0; i < in->data.size(); ++i)
    if (!std::isfinite(in->data[i]))
      throw InteropError(fmt::format("{}: tensor 'images' holds {} at "
                                     "element {}",
                                     what, io::formatNumber(in->data[i]), i));
  exec::Executor exe(plan, "eval", params, backend); // none: a PlanError
  const plan::Program &prog = exe.program();
  if (!prog.logits)
    throw InteropError(
        fmt::format("{}: programs.eval.outputs: no 'logits'", plan.file));
  int64_t imageId = exe.inputId("image");
  exe.keep(*prog.logits);
  int64_t n = in->shape[0], classes = plan.classes;
  int64_t sample = plan.input[0] * plan.input[1] * plan.input[2];
  std::vector<int32_t> labels(size_t(prog.batch), 0);
  exec::StepContext ctx;
  ctx.training = false;
  io::Tensor logits;
  logits.shape = {n, classes};
  logits.data.reserve(size_t(n * classes));
  for (int64_t start = 0; start < n; start += prog.batch) {
    int64_t b = std::min(prog.batch, n - start);
    exe.upload(imageId, in->data.data() + start * sample,
               uint64_t(b * sample) * sizeof(float), b);
    if (exe.hasInput("labels"))
      exe.upload(exe.inputId("labels"), labels.data(),
                 uint64_t(b) * sizeof(int32_t), b);
    exe.run(b, ctx);
    std::vector<float> out = exe.download(*prog.logits);
    if (int64_t(out.size()) < b * classes)
      throw InteropError(fmt::format("{}: programs.eval: {} logits for {} "
                                     "images of {} classes",
                                     plan.file, out.size(), b, classes));
    logits.data.insert(logits.data.end(), out.begin(),
                       out.begin() + b * classes);
  }
  io::TensorFile file;
  file.tensors["logits"] = std::move(logits);
  return file;
}

} // namespace netc::interop
