//===- Backend.h - the kernel interface every backend implements -*- C++
//-*-===//

#ifndef NETC_RUNTIME_EXEC_BACKEND_H
#define NETC_RUNTIME_EXEC_BACKEND_H

#include "runtime/exec/KernelCall.h"

#include <memory>
#include <string>

namespace netc::exec {

/// The kernel interface every backend implements.
template <typename T> class BackendT {
public:
  virtual ~BackendT() = default;
  virtual const char *name() const = 0;
  virtual void run(const KernelCallT<T> &call) = 0;
};

using Backend = BackendT<float>;

/// Creates a backend by name ("reference", "cpu" where built); throws
/// std::invalid_argument naming the available ones.
std::unique_ptr<Backend> makeBackend(const std::string &name);

} // namespace netc::exec

#endif // NETC_RUNTIME_EXEC_BACKEND_H
