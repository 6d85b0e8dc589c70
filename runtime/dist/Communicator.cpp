//===- Communicator.cpp - one rank, or MPI's ------------------------------===//

#include "runtime/dist/Communicator.h"

#include <algorithm>
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
  int localSize() const override { return 1; }
  [[noreturn]] void abort(int code) override { std::_Exit(code); }
};

/// The number of processes an MPI launcher started, 1 without one.
int launchedRanks() {
  for (const char *var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
    if (const char *v = std::getenv(var))
      return std::max(1, std::atoi(v));
  return 1;
}

std::unique_ptr<Communicator> &slot() {
  static std::unique_ptr<Communicator> comm;
  return comm;
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
  std::unique_ptr<Communicator> &comm = slot();
  if (!comm) {
    if (launchedRanks() > 1) {
#ifdef NETC_HAVE_MPI
      comm = makeMpiCommunicator();
#else
      comm = std::make_unique<Single>();
      throw std::runtime_error(
          "started by an MPI launcher as several processes, but this netrun "
          "was built without MPI (install libopenmpi-dev and rebuild): each "
          "would train on its own");
#endif
    } else {
      comm = std::make_unique<Single>();
    }
  }
  return *comm;
}

Communicator *worldIfMade() { return slot().get(); }

} // namespace netc::dist
