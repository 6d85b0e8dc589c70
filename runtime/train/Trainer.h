//===- Trainer.h - the training loop ----------------------------*- C++ -*-===//
//
// Runs the plan's schedule: phases in order, per-epoch shuffling, the phase's
// learning-rate policy, per-step loss terms, evaluation of the `eval`
// program after each phase, atomic checkpoints and exact resume, and NaN/Inf
// detection.
//
// Checkpoints: <trainer>/checkpoint.safetensors holds every parameter and its
// momentum buffer ("momentum/<name>"); <trainer>/checkpoint.json holds where
// training stands (phase index, steps done in the phase, global step, seed).
// Shuffling and augmentation are pure functions of (seed, phase, epoch,
// sample) and dropout of (seed attr, global step), so resuming from a
// checkpoint reproduces the uninterrupted run exactly.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_TRAIN_TRAINER_H
#define NETC_RUNTIME_TRAIN_TRAINER_H

#include "runtime/dist/Communicator.h"
#include "runtime/exec/Executor.h"
#include "runtime/exec/ParamStore.h"
#include "runtime/plan/Plan.h"
#include "runtime/train/Data.h"
#include "runtime/train/Progress.h"

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <stdexcept>
#include <memory>
#include <string>

namespace netc::train {

/// Training stopped (non-finite loss, bad checkpoint, ...).
class TrainError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Training stopped on every rank of a data-parallel run at the same point,
/// with the same message (a loss that diverged on some rank, a trainer that
/// cannot run data-parallel): rank 0 reports it.
class CollectiveError : public TrainError {
public:
  using TrainError::TrainError;
};

/// The learning rate at step t (0-based) of T in the phase, in epoch e.
double learningRate(const plan::Phase &phase, int64_t t, int64_t T, int64_t e);

/// Steps per epoch (the last batch may be smaller) and steps of the phase.
int64_t stepsPerEpoch(int64_t examples, int64_t batch);
int64_t phaseSteps(const plan::Phase &phase, int64_t examples);

struct TrainOptions {
  std::string dataDir; ///< overrides the plan's data path
  uint64_t seed = 1;
  int64_t logEvery = 50;
  std::string metricsPath;
  bool resume = false;
  /// Train from the start over an existing checkpoint, replacing it;
  /// without it (or `resume`) an existing checkpoint stops the run.
  bool restart = false;
  /// Start from these parameters (matched by name; the others keep their
  /// initialisation), as Caffe's `--weights` does. Not with `resume`.
  std::string weightsPath;
  int64_t maxSteps = 0; ///< global cap on steps run by this call (0 = none)
  int64_t checkpointEvery = 0; ///< also checkpoint every N global steps
  /// Draw a progress bar this many columns wide (the output is a terminal;
  /// train/Progress.h); 0: plain lines only.
  int progressColumns = 0;
  std::string backend = "reference";
};

struct EvalResult {
  int64_t correct = 0, total = 0;
  int64_t correctTop5 = 0; ///< the label among the 5 largest logits
  int64_t classes = 0;
  int64_t skipped = 0; ///< bad images skipped (image folders, skip-bad)
  double errorPercent() const { return percentWrong(correct); }
  double top5ErrorPercent() const { return percentWrong(correctTop5); }
  /// ", top-5 error X%" where there are more than 5 classes, else "".
  std::string top5() const;
  /// "; N bad image(s) skipped" where images were skipped, else "".
  std::string skippedNote() const;

private:
  double percentWrong(int64_t right) const {
    return total ? 100.0 * double(total - right) / double(total) : 0.0;
  }
};

/// Top-1 and top-5 evaluation of the `eval` program on `data` (no
/// augmentation).
EvalResult evaluate(const plan::Plan &plan, exec::ParamStore &params,
                    exec::Backend &backend, const ImageData &data);

/// The paper's dense evaluation (`eval ... dense`): for each of the plan's
/// dense scales S, every image of the split (the test set by default)
/// with its shorter side resized to S, the centre of the size
/// the program `eval.dense.S` takes, run through that program (the fc
/// layers as convolutions, the class scores averaged over the map), and
/// its mirror image too; the softmax posteriors are averaged over the
/// views and the scales, and ranked for top-1 and top-5. `data` is the
/// split as `evaluate` takes it (loadSplit); it is read once for all the
/// scales.
EvalResult evaluateDense(const plan::Plan &plan, exec::ParamStore &params,
                         exec::Backend &backend, const ImageData &data);

/// Where training stands; what checkpoint.json holds.
struct TrainState {
  int64_t phaseIndex = 0; ///< the phase to run next (== schedule size: done)
  int64_t step = 0;       ///< steps done in that phase
  int64_t globalStep = 0; ///< steps done overall
  uint64_t seed = 1;
  /// The ranks of the run that wrote it: a step is a global batch of
  /// (phase batch) x ranks images, so a run stopped inside a phase continues
  /// with as many ranks (from a phase boundary, with any number).
  int64_t ranks = 1;
  /// The training images of the run that wrote it (0: not recorded, an
  /// older checkpoint): a run stopped inside a phase continues on as many,
  /// as the shuffled order and the epochs depend on them.
  int64_t trainImages = 0;
};

/// Why `plan` cannot train on `ranks` ranks with `backend` ("" if it can).
std::string dataParallelProblem(const plan::Plan &plan,
                                const exec::Backend &backend, int ranks);
/// Every rank calls it at the same point. When some rank has a `problem`
/// (non-empty), every rank throws a CollectiveError with the first such
/// rank's message, so that none is left waiting in a collective (on one
/// rank: throws its problem, if any).
void agreeOrThrow(dist::Communicator &comm, const std::string &problem);
/// A hash of every parameter's value (do ranks start from the same ones?).
uint64_t parameterHash(const exec::ParamStore &params);

std::string checkpointPath(const plan::Plan &plan);      ///< .safetensors
std::string checkpointStatePath(const plan::Plan &plan); ///< .json
/// Writes `tensors` (the parameters and their momentum, ParamStore's
/// toTensors(true)) with `state`, atomically.
void saveCheckpoint(const plan::Plan &plan, io::TensorFile tensors,
                    const TrainState &state);
/// The first value of `tensors` that is NaN or infinite, as "tensor 'name'
/// holds V at element I"; empty if there is none.
std::string firstNonFinite(const io::TensorFile &tensors);
/// Loads checkpoint.json and checkpoint.safetensors into `params`.
TrainState loadCheckpoint(const plan::Plan &plan, exec::ParamStore &params);

class Trainer {
public:
  /// Loads the data; `out` receives the progress lines. In a data-parallel
  /// run (dist::world() has several ranks), each rank trains on its shard
  /// of every global batch; rank 0 alone prints, evaluates and writes.
  Trainer(const plan::Plan &plan, TrainOptions opts, std::ostream &out);
  /// Same, with data already loaded (tests).
  Trainer(const plan::Plan &plan, TrainOptions opts, std::ostream &out,
          Datasets data);
  ~Trainer();

  /// Trains the schedule (or what remains of it with --resume). Returns
  /// normally when done or when --max-steps is reached; throws TrainError
  /// on a non-finite loss.
  void run();
  /// Erases the progress bar, if one is drawn (before a message printed
  /// while the trainer still lives: a data-parallel abort's).
  void clearProgress() {
    if (bar_)
      bar_->clear();
  }

  exec::ParamStore &params() { return *params_; }
  const TrainState &state() const { return state_; }
  /// The last test evaluation (after the most recent phase), if any.
  std::optional<EvalResult> lastEval() const { return lastEval_; }
  /// Loss of the last step.
  double lastLoss() const { return lastLoss_; }

private:
  void runPhase(size_t index);
  void metric(const std::string &jsonLine);

  /// The parameters and momentum on the host, or a CollectiveError (on
  /// every rank: their parameters are the same) if a value is not finite:
  /// a step's update can blow up the weights after its loss was checked.
  /// `when` says where in the schedule, for the message.
  io::TensorFile finiteParameters(const std::string &when);
  void checkpoint(const std::string &when);
  /// What a run that stops leaves behind, for its message.
  std::string keptCheckpoint() const;
  /// Takes the trainer directory's lock; why it cannot ("" if it could).
  std::string lockTrainer();
  /// Why this run may not start over the trainer's checkpoint ("" if it
  /// may): without --resume or --restart an existing checkpoint would be
  /// replaced by the first one this run writes.
  std::string overwriteProblem() const;
  /// Rank 0 alone writes checkpoints and metrics and evaluates.
  bool leader() const { return comm_.rank() == 0; }

  const plan::Plan &plan_;
  TrainOptions opts_;
  dist::Communicator &comm_;
  std::ostream &out_;
  std::unique_ptr<ProgressBar> bar_; ///< rank 0 on a terminal only
  Datasets data_;
  std::unique_ptr<exec::Backend> backend_;
  std::unique_ptr<exec::ParamStore> params_;
  TrainState state_;
  std::optional<EvalResult> lastEval_;
  double lastLoss_ = 0;
  std::unique_ptr<std::ofstream> metrics_;
  bool stopped_ = false;
  int64_t ranThisCall_ = 0; ///< steps run by this call (--max-steps)
  /// Rank 0's lock on the trainer directory (`.netrun.lock`, flock): two
  /// runs writing one directory's checkpoints would undo each other. A
  /// member that closes its descriptor (and so releases the lock) when
  /// destroyed, also when the constructor throws after taking it.
  struct LockFile {
    int fd = -1;
    /// Locked (not refused, not a file system without flock).
    bool held = false;
    LockFile() = default;
    LockFile(const LockFile &) = delete;
    LockFile &operator=(const LockFile &) = delete;
    ~LockFile();
  };
  LockFile lock_;
  /// The trainer's checkpoint is this run's: resumed from or written by it
  /// (not an earlier run's under --restart).
  bool ownCheckpoint_ = false;
};

} // namespace netc::train

#endif // NETC_RUNTIME_TRAIN_TRAINER_H
