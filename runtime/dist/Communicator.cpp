//===- Communicator.cpp - one rank, or MPI's ------------------------------===//

#include "runtime/dist/Communicator.h"

#include <cstdlib>
#include <memory>
#include <stdexcept>

namespace netc::dist {

#ifdef NETC_HAVE_MPI
std::unique_ptr<Communicator> makeMpiCommunicator(); // Mpi.cpp
#endif

namespace {

/// A process on its own: every collective is the identity.
class Single final : public Communicator {
public:
  const char *name() const override { return "single"; }
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void allReduceSum(float *, int64_t) override {}
  void allReduceSum(double *, int64_t) override {}
  void broadcast(void *, int64_t, int) override {}
  int localRank() const override { return 0; }
  [[noreturn]] void abort(int code) override { std::_Exit(code); }
};

bool launchedByMpi() {
  for (const char *var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(var))
      return true;
  return false;
}

} // namespace

bool haveMpi() {
#ifdef NETC_HAVE_MPI
  return true;
#else
  return false;
#endif
}

Communicator &world() {
  static std::unique_ptr<Communicator> comm = [] {
    std::unique_ptr<Communicator> c;
    if (launchedByMpi()) {
#ifdef NETC_HAVE_MPI
      c = makeMpiCommunicator();
#else
      throw std::runtime_error(
          "started by an MPI launcher, but this netrun was built without MPI "
          "(install libopenmpi-dev and rebuild): each process would train "
          "on its own");
#endif
    } else {
      c = std::make_unique<Single>();
    }
    return c;
  }();
  return *comm;
}

} // namespace netc::dist
