//===- CudaBackendHostTest.cpp - the cuda backend without a GPU -----------===//
//
// What CI can check of the cuda backend on a machine without a GPU: asking
// for it is one clear error ("no CUDA device"), never a crash, and the
// device probes netrun uses for its default backend and `info` say "none";
// a switch with a value it does not know is an error naming it, before the
// device is looked for. With a device the same tests check that the backend
// is there instead.
// Built where NETC_WITH_CUDA is on.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/CudaBackend.h"

#include "test/unit/ScopedEnv.h"

#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

using namespace netc;

namespace {

TEST(CudaBackendHost, NoDeviceIsOneClearError) {
  if (cuda::deviceCount() > 0) {
    std::unique_ptr<exec::Backend> b = exec::makeBackend("cuda");
    EXPECT_STREQ(b->name(), "cuda");
    EXPECT_FALSE(b->isHost());
    EXPECT_FALSE(cuda::deviceDescription().empty());
    return;
  }
  EXPECT_TRUE(cuda::deviceDescription().empty());
  try {
    exec::makeBackend("cuda");
    FAIL() << "a cuda backend without a device";
  } catch (const std::runtime_error &e) {
    EXPECT_NE(std::string(e.what()).find("no CUDA device"), std::string::npos)
        << e.what();
  }
  // The probe leaves no error behind for later CUDA calls.
  EXPECT_EQ(cuda::deviceCount(), 0);
}

TEST(CudaBackendHost, UnknownBackendNamesCuda) {
  try {
    exec::makeBackend("gpu");
    FAIL() << "backend 'gpu' exists";
  } catch (const std::invalid_argument &e) {
    EXPECT_NE(std::string(e.what()).find("cuda"), std::string::npos)
        << e.what();
  }
}

// A switch with a value it does not know is an error naming the switch and
// the value (not a silent default), with or without a device: the switches
// are read first. Each case sets one switch and clears the others.
TEST(CudaBackendHost, UnknownSwitchValuesAreErrors) {
  const char *switches[] = {"NETC_CUDA_FUSION", "NETC_CUDA_CONV_API",
                            "NETC_CUDA_TF32"};
  for (const auto &[name, value] :
       {std::pair{"NETC_CUDA_FUSION", "conv-relu,fast"},
        std::pair{"NETC_CUDA_CONV_API", "v8"},
        std::pair{"NETC_CUDA_TF32", "yes"}}) {
    std::vector<std::unique_ptr<netc::testing::ScopedEnv>> env;
    for (const char *s : switches)
      env.push_back(std::make_unique<netc::testing::ScopedEnv>(
          s, std::string(s) == name ? value : nullptr));
    try {
      cuda::CudaBackend gpu;
      ADD_FAILURE() << name << "=" << value << " was accepted";
    } catch (const std::invalid_argument &e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find(value), std::string::npos)
          << e.what();
    } catch (const std::exception &e) {
      ADD_FAILURE() << name << "=" << value << ": " << e.what();
    }
  }
}

} // namespace
