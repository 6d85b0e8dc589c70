//===- Mpi.cpp - the communicator over MPI --------------------------------===//
//
// MPI_COMM_WORLD as launched by mpirun. Errors in MPI calls keep MPI's
// default handler, MPI_ERRORS_ARE_FATAL: a collective that fails (a peer
// died) ends the job through the launcher, which names the rank that went,
// rather than returning into a step that cannot go on.
//
//===----------------------------------------------------------------------===//

#include "runtime/dist/Communicator.h"

// The C API only: OpenMPI's and MPICH's mpi.h would otherwise also declare
// the long-removed C++ bindings, which need a library of their own.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <memory>
#include <stdexcept>

namespace netc::dist {

namespace {

class Mpi final : public Communicator {
public:
  Mpi() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      // The prefetch thread never calls MPI: the main thread alone does, so
      // whatever level the library provides will do.
      int provided = 0;
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      ownsInit_ = true;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_,
                        MPI_INFO_NULL, &local);
    MPI_Comm_rank(local, &localRank_);
    MPI_Comm_size(local, &localSize_);
    MPI_Comm_free(&local);
  }
  ~Mpi() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (ownsInit_ && !finalized)
      MPI_Finalize();
  }
  const char *name() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void allReduceSum(float *x, int64_t n) override {
    reduce(x, n, MPI_FLOAT, sizeof(float));
  }
  void allReduceSum(double *x, int64_t n) override {
    reduce(x, n, MPI_DOUBLE, sizeof(double));
  }
  void broadcast(void *data, int64_t bytes, int root) override {
    char *p = static_cast<char *>(data);
    while (bytes > 0) {
      int count = int(std::min<int64_t>(bytes, INT_MAX));
      MPI_Bcast(p, count, MPI_BYTE, root, MPI_COMM_WORLD);
      p += count;
      bytes -= count;
    }
  }
  int localRank() const override { return localRank_; }
  int localSize() const override { return localSize_; }
  [[noreturn]] void abort(int code) override {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

private:
  // MPI counts are int: reduce larger buffers in pieces.
  void reduce(void *x, int64_t n, MPI_Datatype type, size_t bytes) {
    char *p = static_cast<char *>(x);
    while (n > 0) {
      int count = int(std::min<int64_t>(n, INT_MAX));
      MPI_Allreduce(MPI_IN_PLACE, p, count, type, MPI_SUM, MPI_COMM_WORLD);
      p += size_t(count) * bytes;
      n -= count;
    }
  }
  int rank_ = 0, size_ = 1, localRank_ = 0, localSize_ = 1;
  bool ownsInit_ = false;
};

} // namespace

std::unique_ptr<Communicator> makeMpiCommunicator() {
  return std::make_unique<Mpi>();
}

} // namespace netc::dist
