//===- ScopedEnv.h - an environment variable set for a scope ----*- C++ -*-===//
//
// The backends read their switches (NETC_CUDA_*, NETC_CPU_*) from the
// environment when they are made; a test sets one for as long as it needs
// it, and the value it had before comes back after, whatever ends the scope.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_TEST_UNIT_SCOPEDENV_H
#define NETC_TEST_UNIT_SCOPEDENV_H

#include <cstdlib>
#include <optional>
#include <string>

namespace netc::testing {

/// Sets (or, with a null value, unsets) an environment variable for a
/// scope; the previous value back after.
class ScopedEnv {
public:
  ScopedEnv(const char *name, const char *value) : name_(name) {
    if (const char *old = std::getenv(name))
      old_ = old;
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv &) = delete;
  ScopedEnv &operator=(const ScopedEnv &) = delete;

private:
  const char *name_;
  std::optional<std::string> old_;
};

} // namespace netc::testing

#endif // NETC_TEST_UNIT_SCOPEDENV_H
