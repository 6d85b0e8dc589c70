//===- Communicator.h - the ranks of a data-parallel run --------*- C++ -*-===//
//
// Data-parallel training runs one netrun process per rank, each with the
// whole model and its own shard of every batch; after the backward pass the
// ranks average their gradients (the plan's `all_reduce_mean` kernels) so
// that every rank applies the same update. The processes are launched and
// connected by the engine the user already has: `mpirun -np N netrun train
// ...` (OpenMPI, or any MPI). netc brings no cluster software of its own.
//
// One interface for the collectives the runtime needs; the implementation is
// chosen once per process by `world()`: MPI when netrun was started by an
// MPI launcher (and built with MPI), else a single rank.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_DIST_COMMUNICATOR_H
#define NETC_RUNTIME_DIST_COMMUNICATOR_H

#include <cstdint>
#include <string>

namespace netc::dist {

class Communicator {
public:
  virtual ~Communicator() = default;
  /// "mpi", or "single" for a process on its own.
  virtual const char *name() const = 0;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// x[i] becomes the sum over the ranks of their x[i], on every rank
  /// (host memory; every rank calls with the same n, in the same order).
  virtual void allReduceSum(float *x, int64_t n) = 0;
  virtual void allReduceSum(double *x, int64_t n) = 0;
  /// `bytes` bytes at `data` become root's on every rank.
  virtual void broadcast(void *data, int64_t bytes, int root) = 0;
  /// This rank's index among the ranks on its machine (which GPU it takes),
  /// and how many ranks that machine runs.
  virtual int localRank() const = 0;
  virtual int localSize() const = 0;
  /// Ends every rank of the job at once: a rank that failed alone would
  /// otherwise leave the others waiting in their next collective.
  [[noreturn]] virtual void abort(int code) = 0;
};

/// The process's communicator, made on first use (MPI_Init then, and
/// MPI_Finalize at exit). MPI is used when an MPI launcher started more than
/// one process, which it says in the environment (OMPI_COMM_WORLD_SIZE or
/// PMI_SIZE); a netrun built without MPI, so launched, throws here (once:
/// later calls give a single rank) rather than run N unconnected copies of
/// the same training.
Communicator &world();

/// The communicator if world() has made one, else nullptr; never throws
/// (for error handlers).
Communicator *worldIfMade();

/// Whether this netrun was built with MPI.
bool haveMpi();

} // namespace netc::dist

#endif // NETC_RUNTIME_DIST_COMMUNICATOR_H
