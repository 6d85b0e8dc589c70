//===- Trainer.cpp - the training loop ------------------------------------===//

#include "runtime/train/Trainer.h"
#include "runtime/exec/KernelCall.h"
#include "runtime/io/File.h"
#include "runtime/io/Hash.h"
#include "runtime/io/Safetensors.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <ostream>
#include <sstream>
#include <tuple>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

namespace netc::train {

using nlohmann::json;

double learningRate(const plan::Phase &p, int64_t t, int64_t T, int64_t e) {
  if (p.lrPolicy == "step")
    return p.lr *
           std::pow(p.lrGamma, double(e / std::max<int64_t>(p.lrEvery, 1)));
  if (p.lrPolicy == "cosine") {
    double frac = T > 0 ? double(t) / double(T) : 0.0;
    return p.lrMin + (p.lr - p.lrMin) * (1.0 + std::cos(M_PI * frac)) / 2.0;
  }
  return p.lr;
}

int64_t stepsPerEpoch(int64_t examples, int64_t batch) {
  return (examples + batch - 1) / batch;
}

int64_t phaseSteps(const plan::Phase &p, int64_t examples) {
  int64_t total;
  if (__builtin_mul_overflow(p.epochs, stepsPerEpoch(examples, p.batch),
                             &total))
    throw TrainError(fmt::format("phase '{}': {} epochs of {} steps overflow "
                                 "the step counter",
                                 p.phase, p.epochs,
                                 stepsPerEpoch(examples, p.batch)));
  if (p.steps > 0)
    return p.epochs > 0 ? std::min(p.steps, total) : p.steps;
  return total;
}

//===----------------------------------------------------------------------===//
// Evaluation
//===----------------------------------------------------------------------===//

namespace {

/// Runs program `name` over every image of `data` in order (no
/// augmentation), in batches of the program's; with `mirrored`, each batch
/// a second time with its images mirrored. Calls onLogits(first, n, logits,
/// labels, replaced) for each run, where replaced[b] is 1 if row b holds
/// the image after a bad one (skip-bad), which its own row also holds: such
/// rows must not be counted. Returns the bad images skipped.
int64_t forEachBatch(
    const plan::Plan &plan, const std::string &name, exec::ParamStore &params,
    exec::Backend &backend, const ImageData &data, bool mirrored,
    const std::function<void(int64_t, int64_t, const float *, const int32_t *,
                             const uint8_t *)> &onLogits) {
  if (!plan.programs.count(name))
    throw TrainError(
        fmt::format("{}: no '{}' program to evaluate with", plan.file, name));
  exec::Executor exe(plan, name, params, backend);
  const plan::Program &prog = exe.program();
  if (!prog.logits)
    throw TrainError(fmt::format("{}: programs.{}.outputs: no 'logits'",
                                 plan.file, name));
  int64_t imageId = exe.inputId("image");
  exe.keep(*prog.logits);
  std::optional<int64_t> labelsId;
  if (exe.hasInput("labels"))
    labelsId = exe.inputId("labels");
  const int64_t sample = data.sampleFloats(), classes = plan.classes;
  const int64_t width = prog.value(imageId).shape.back();
  const std::vector<int64_t> order = data.order(0);
  // Two areas: the prefetch thread makes batch b + 1 (reads, decodes,
  // normalises) while batch b runs. Area b % 2 is refilled for batch b + 2
  // only once batch b's logits are back (then every upload from it is done:
  // the logits' download waits for the uploads). Then the thread itself
  // (declared after them, so it is joined before they go).
  // A batch never holds more images than the set (a program planned for a
  // larger batch than the set is run at the set's size), so neither does an
  // area; its images are backend staging memory, whose size is checked
  // against the memory available before it is taken.
  const int64_t rows = std::max<int64_t>(1, std::min(prog.batch, data.size()));
  struct Area {
    std::unique_ptr<exec::Buffer> images;
    std::vector<int32_t> labels;
    std::vector<uint8_t> replaced;
    int64_t n = 0, skipped = 0;
    uint64_t ticket = 0;
  } areas[2];
  for (Area &a : areas) {
    a.images = backend.allocateStaging(uint64_t(rows * sample) * sizeof(float),
                                       "an evaluation batch of images");
    a.labels.resize(size_t(rows));
    a.replaced.resize(size_t(rows));
  }
  Prefetcher prefetch;
  const int64_t batches = (data.size() + prog.batch - 1) / prog.batch;
  auto submit = [&](int64_t b) {
    Area &a = areas[b % 2];
    const int64_t start = b * prog.batch;
    a.n = std::min(prog.batch, data.size() - start);
    a.ticket = prefetch.submit([&a, &data, &order, start] {
      a.skipped = data.makeBatch(
          order.data() + start, a.n, false, 0,
          static_cast<float *>(a.images->data()), a.labels.data(),
          a.replaced.data());
    });
  };
  exec::StepContext ctx;
  ctx.training = false;
  int64_t skipped = 0;
  if (batches > 0)
    submit(0);
  for (int64_t b = 0; b < batches; ++b) {
    Area &area = areas[b % 2];
    prefetch.waitFor(area.ticket);
    if (b + 1 < batches)
      submit(b + 1);
    const int64_t start = b * prog.batch, n = area.n;
    float *images = static_cast<float *>(area.images->data());
    const std::vector<int32_t> &labels = area.labels;
    skipped += area.skipped;
    if (labelsId)
      exe.upload(*labelsId, labels.data(), uint64_t(n) * sizeof(int32_t), n);
    for (int view = 0; view < (mirrored ? 2 : 1); ++view) {
      if (view == 1) // the mirror images: each row reversed
        for (int64_t row = 0; row < n * sample / width; ++row)
          std::reverse(images + row * width, images + (row + 1) * width);
      exe.upload(imageId, images, uint64_t(n * sample) * sizeof(float), n);
      exe.run(n, ctx);
      const plan::Value &lv = prog.value(*prog.logits);
      if (lv.count(n) != n * classes)
        throw TrainError(fmt::format("{}: programs.{}: logits have {} values "
                                     "for {} images of {} classes",
                                     plan.file, name, lv.count(n), n,
                                     classes));
      std::vector<float> logits = exe.download(*prog.logits);
      // Overflowing activations (huge but finite weights) give NaN or
      // infinite logits; no error rate measured from them means anything.
      auto bad = std::find_if(logits.begin(), logits.end(),
                              [](float v) { return !std::isfinite(v); });
      if (bad != logits.end())
        throw TrainError(fmt::format(
            "{}: image {} of the set gives the logit {} (programs.{}): no "
            "error rate can be measured (parameters that diverged, or a "
            "layer that computes non-finite values from finite ones)",
            plan.file, start + (bad - logits.begin()) / classes,
            io::formatNumber(*bad), name));
      onLogits(start, n, logits.data(), labels.data(), area.replaced.data());
    }
  }
  return skipped;
}

} // namespace

EvalResult evaluate(const plan::Plan &plan, exec::ParamStore &params,
                    exec::Backend &backend, const ImageData &data) {
  EvalResult r;
  const int64_t classes = plan.classes;
  r.skipped =
      forEachBatch(plan, "eval", params, backend, data, false,
                   [&](int64_t, int64_t n, const float *logits,
                       const int32_t *labels, const uint8_t *replaced) {
                     for (int64_t b = 0; b < n; ++b) {
                       if (replaced[b])
                         continue;
                       const float *row = logits + b * classes;
                       r.correct += kernels::ref::countCorrectTop1<float>(
                           1, classes, row, labels + b);
                       r.correctTop5 += kernels::ref::countCorrectTopK<float>(
                           1, classes, row, labels + b, 5);
                       ++r.total;
                     }
                   });
  r.classes = classes;
  return r;
}

EvalResult evaluateDense(const plan::Plan &plan, exec::ParamStore &params,
                         exec::Backend &backend, const ImageData &data) {
  if (plan.denseScales.empty())
    throw TrainError(fmt::format("{}: the trainer has no dense evaluation "
                                 "programs (give `eval ... dense` in the "
                                 "train section and recompile)",
                                 plan.file));
  const int64_t classes = plan.classes;
  // Per image and class, summed over views.
  std::vector<double> posterior(size_t(data.size() * classes), 0.0);
  std::vector<int32_t> truth(size_t(data.size()), 0);
  std::vector<uint8_t> bad(size_t(data.size()), 0); // replaced: not counted
  EvalResult r;
  for (int64_t scale : plan.denseScales) {
    std::string name = fmt::format("eval.dense.{}", scale);
    auto it = plan.programs.find(name);
    if (it == plan.programs.end())
      throw TrainError(fmt::format("{}: no '{}' program", plan.file, name));
    const plan::Program &prog = it->second;
    const plan::Value &iv = prog.value(prog.inputs.at("image"));
    // The whole (centred) image at the scale, no crop.
    const ImageData set = data.atDenseScale(iv.shape[2], iv.shape[3], scale);
    forEachBatch(plan, name, params, backend, set, true,
                 [&](int64_t first, int64_t n, const float *logits,
                     const int32_t *labels, const uint8_t *replaced) {
                   // The softmax of each view, added up.
                   for (int64_t b = 0; b < n; ++b) {
                     if (replaced[b])
                       bad[size_t(first + b)] = 1;
                     const float *l = logits + b * classes;
                     double top = *std::max_element(l, l + classes), sum = 0;
                     for (int64_t k = 0; k < classes; ++k)
                       sum += std::exp(double(l[k]) - top);
                     double *p = posterior.data() + (first + b) * classes;
                     for (int64_t k = 0; k < classes; ++k)
                       p[k] += std::exp(double(l[k]) - top) / sum;
                     truth[size_t(first + b)] = labels[b];
                   }
                 });
  }
  // The images bad at some scale leave the count (their rows held others).
  int64_t n = 0;
  for (size_t i = 0; i < truth.size(); ++i) {
    if (bad[i])
      continue;
    if (size_t(n) != i)
      std::copy_n(posterior.begin() + long(i * size_t(classes)), classes,
                  posterior.begin() + n * classes);
    truth[size_t(n++)] = truth[i];
  }
  r.correct = kernels::ref::countCorrectTop1<double>(n, classes,
                                                     posterior.data(),
                                                     truth.data());
  r.correctTop5 = kernels::ref::countCorrectTopK<double>(
      n, classes, posterior.data(), truth.data(), 5);
  r.total = n;
  r.skipped = int64_t(truth.size()) - n;
  r.classes = classes;
  return r;
}

std::string EvalResult::top5() const {
  return classes > 5 ? fmt::format(", top-5 error {:.2f}%", top5ErrorPercent())
                     : std::string();
}

std::string EvalResult::skippedNote() const {
  return skipped ? fmt::format("; {} bad image(s) skipped", skipped)
                 : std::string();
}

//===----------------------------------------------------------------------===//
// Checkpoints
//===----------------------------------------------------------------------===//

std::string checkpointPath(const plan::Plan &plan) {
  return (std::filesystem::path(plan.dir) / "checkpoint.safetensors").string();
}
std::string checkpointStatePath(const plan::Plan &plan) {
  return (std::filesystem::path(plan.dir) / "checkpoint.json").string();
}

std::string firstNonFinite(const io::TensorFile &tensors) {
  for (const auto &[name, t] : tensors.tensors)
    for (size_t i = 0; i < t.data.size(); ++i)
      if (!std::isfinite(t.data[i]))
        return fmt::format("tensor '{}' holds {} at element {}", name,
                           io::formatNumber(t.data[i]), i);
  return "";
}

void saveCheckpoint(const plan::Plan &plan, io::TensorFile f,
                    const TrainState &s) {
  // The state travels inside the (atomically written) tensor file too, so a
  // crash between the two writes cannot pair new weights with an old state.
  f.metadata["netc.phase_index"] = std::to_string(s.phaseIndex);
  f.metadata["netc.step"] = std::to_string(s.step);
  f.metadata["netc.global_step"] = std::to_string(s.globalStep);
  f.metadata["netc.seed"] = std::to_string(s.seed);
  f.metadata["netc.ranks"] = std::to_string(s.ranks);
  f.metadata["netc.train_images"] = std::to_string(s.trainImages);
  f.metadata["netc.plan"] = plan.fingerprint;
  io::writeSafetensors(checkpointPath(plan), f);
  json j = {{"format", "netc-checkpoint"},
            {"version", 1},
            {"phase_index", s.phaseIndex},
            {"phase", s.phaseIndex < int64_t(plan.schedule.size())
                          ? plan.schedule[size_t(s.phaseIndex)].phase
                          : std::string("done")},
            {"step", s.step},
            {"global_step", s.globalStep},
            {"seed", s.seed},
            {"ranks", s.ranks},
            {"train_images", s.trainImages},
            {"plan", plan.fingerprint}};
  try {
    io::writeFileAtomically(checkpointStatePath(plan), j.dump(2) + "\n");
  } catch (const std::exception &e) {
    throw TrainError(fmt::format("{} (the checkpoint itself, {}, was "
                                 "written: this file only repeats its state "
                                 "for people and scripts)",
                                 e.what(), checkpointPath(plan)));
  }
}

/// What `--weights path` would make of the checkpoint `f` on `plan`, for
/// the advice of a resume refused: it sets the parameters whose names the
/// trainer still has, and refuses a tensor of such a name in another shape.
static std::string weightsAdvice(const plan::Plan &plan,
                                 const io::TensorFile &f,
                                 const std::string &path) {
  for (const auto &[name, tensor] : f.tensors) {
    auto it = plan.paramIndex.find(name);
    if (it == plan.paramIndex.end())
      continue;
    const std::vector<int64_t> &shape = plan.params[it->second].shape;
    if (tensor.shape != shape)
      return fmt::format("; its parameters cannot start the new run either "
                         "(--weights): '{}' is [{}] in it but [{}] here",
                         name, fmt::join(tensor.shape, ", "),
                         fmt::join(shape, ", "));
  }
  return fmt::format(" (adding --weights {} starts from those of its "
                     "parameters that the trainer still has)",
                     path);
}

TrainState loadCheckpoint(const plan::Plan &plan, exec::ParamStore &params) {
  std::string path = checkpointPath(plan);
  if (!std::filesystem::exists(path))
    throw TrainError(fmt::format("{}: no checkpoint to resume from", path));
  io::TensorFile f = io::readSafetensors(path);
  // Older checkpoints do not say which plan wrote them.
  if (auto it = f.metadata.find("netc.plan");
      it != f.metadata.end() && it->second != plan.fingerprint)
    throw TrainError(fmt::format(
        "{}: the checkpoint was written for other phases or other "
        "parameters than {} has (the trainer was recompiled since?), so "
        "its phase and step mean something else here: train with --restart "
        "to start again{}",
        path, plan.file, weightsAdvice(plan, f, path)));
  params.fromTensors(f, path, true);
  TrainState s;
  // Every field is a plain decimal number in range; anything else (a sign,
  // spaces, a value past the type) is a corrupt checkpoint.
  auto get = [&](const char *key, auto &out) {
    auto it = f.metadata.find(key);
    if (it == f.metadata.end())
      throw TrainError(fmt::format("{}: __metadata__ lacks '{}' (not a netrun "
                                   "checkpoint?)",
                                   path, key));
    const std::string &text = it->second;
    auto [end, ec] =
        std::from_chars(text.data(), text.data() + text.size(), out);
    if (ec != std::errc() || end != text.data() + text.size() || text.empty() ||
        text[0] == '-')
      throw TrainError(fmt::format("{}: __metadata__.{}: '{}' is not a "
                                   "non-negative integer in range",
                                   path, key, text));
  };
  get("netc.phase_index", s.phaseIndex);
  get("netc.step", s.step);
  get("netc.global_step", s.globalStep);
  get("netc.seed", s.seed);
  if (f.metadata.count("netc.ranks")) // older checkpoints: one rank
    get("netc.ranks", s.ranks);
  if (f.metadata.count("netc.train_images")) // older ones: not recorded
    get("netc.train_images", s.trainImages);
  if (s.ranks < 1 || s.ranks > (int64_t(1) << 24))
    throw TrainError(fmt::format("{}: {} ranks is out of range", path,
                                 s.ranks));
  if (s.phaseIndex > int64_t(plan.schedule.size()))
    throw TrainError(fmt::format("{}: phase index {} is outside the schedule "
                                 "({} phases)",
                                 path, s.phaseIndex, plan.schedule.size()));
  if (s.phaseIndex == int64_t(plan.schedule.size()) && s.step != 0)
    throw TrainError(
        fmt::format("{}: step {} after the end of the schedule", path, s.step));
  if (s.globalStep > (int64_t(1) << 53))
    throw TrainError(
        fmt::format("{}: global step {} is out of range", path, s.globalStep));
  if (s.step > s.globalStep)
    throw TrainError(fmt::format("{}: step {} in the phase exceeds the {} "
                                 "global steps",
                                 path, s.step, s.globalStep));
  return s;
}

//===----------------------------------------------------------------------===//
// Trainer
//===----------------------------------------------------------------------===//

namespace {
/// Where the progress lines of ranks other than 0 go.
std::ostream &nullStream() {
  static std::ostream null(nullptr);
  return null;
}
} // namespace

std::string dataParallelProblem(const plan::Plan &plan,
                                const exec::Backend &backend, int ranks) {
  if (ranks <= 1)
    return "";
  if (plan.bucketBytes == 0)
    return fmt::format("{}: started as {} ranks, but the trainer was "
                       "compiled without --data-parallel, so each rank would "
                       "train a model of its own; recompile it with netc "
                       "--data-parallel",
                       plan.file, ranks);
  if (!backend.reducesAcrossRanks())
    return fmt::format("the {} backend of this netrun cannot all-reduce "
                       "across ranks (the cuda backend needs NCCL, which "
                       "this build lacks); use --backend cpu",
                       backend.name());
  return "";
}

void agreeOrThrow(dist::Communicator &comm, const std::string &problem) {
  if (comm.size() == 1) {
    if (!problem.empty())
      throw CollectiveError(problem);
    return;
  }
  std::vector<double> failed(size_t(comm.size()), 0.0);
  failed[size_t(comm.rank())] = problem.empty() ? 0.0 : 1.0;
  comm.allReduceSum(failed.data(), int64_t(failed.size()));
  auto it = std::find(failed.begin(), failed.end(), 1.0);
  if (it == failed.end())
    return;
  // The first rank with a problem tells it to every rank.
  int from = int(it - failed.begin());
  uint64_t length = comm.rank() == from ? problem.size() : 0;
  comm.broadcast(&length, sizeof length, from);
  std::string message = comm.rank() == from ? problem : std::string(length, ' ');
  comm.broadcast(message.data(), int64_t(length), from);
  throw CollectiveError(from == 0 ? message
                                  : fmt::format("rank {}: {}", from, message));
}

uint64_t parameterHash(const exec::ParamStore &params) {
  uint64_t h = io::kFnv1aBasis; // over every value's bytes
  for (const std::string &name : params.names()) {
    std::vector<float> v = params.hostValue(name);
    h = io::fnv1a(v.data(), v.size() * sizeof(float), h);
  }
  return h;
}

std::string Trainer::keptCheckpoint() const {
  const std::string path = checkpointPath(plan_);
  if (ownCheckpoint_)
    return fmt::format("the last good checkpoint ({}) is kept", path);
  if (std::filesystem::exists(path)) // an earlier run's, under --restart
    return fmt::format("this run wrote no checkpoint ({} is an earlier "
                       "run's, as it was)",
                       path);
  return "no checkpoint was written before it";
}

io::TensorFile Trainer::finiteParameters(const std::string &when) {
  // Rank 0's parameters are the ones checkpointed (the ranks' batch-norm
  // statistics differ); it checks them and tells every rank.
  io::TensorFile f;
  std::string problem;
  if (leader()) {
    f = params_->toTensors(true);
    if (std::string bad = firstNonFinite(f); !bad.empty())
      problem = fmt::format(
          "{}: the parameters have diverged ({}; the step's loss was {}); "
          "training stopped, {}",
          when, bad, lastLoss_, keptCheckpoint());
  }
  agreeOrThrow(comm_, problem);
  return f;
}

void Trainer::checkpoint(const std::string &when) {
  io::TensorFile f = finiteParameters(when);
  if (leader()) {
    saveCheckpoint(plan_, std::move(f), state_);
    ownCheckpoint_ = true;
  }
}

/// "a, b, c, d, ...": the first four of `names`, in a note.
static std::string firstNames(const std::vector<std::string> &names) {
  const size_t shown = std::min<size_t>(names.size(), 4);
  return fmt::format("{}{}",
                     fmt::join(names.begin(), names.begin() + long(shown), ", "),
                     names.size() > shown ? ", ..." : "");
}

Trainer::Trainer(const plan::Plan &plan, TrainOptions opts, std::ostream &out)
    : Trainer(plan, opts, out, loadDatasets(dataOptions(plan, opts.dataDir))) {}

Trainer::Trainer(const plan::Plan &plan, TrainOptions opts, std::ostream &out,
                 Datasets data)
    : plan_(plan), opts_(std::move(opts)), comm_(dist::world()),
      out_(comm_.rank() == 0 ? out : nullStream()), data_(std::move(data)) {
  const int ranks = comm_.size();
  // Every program, the evaluation's included, before any phase trains (the
  // same on every rank: each stops here alike).
  exec::checkPlan(plan_);
  // A subset larger than the set is the whole set; say so.
  for (auto [asked, split, set] :
       {std::tuple{plan_.data.subset, "subset", &data_.train},
        std::tuple{plan_.data.testSubset, "test-subset", &data_.test}})
    if (asked > set->size())
      out_ << fmt::format("note: {} {} asks for more than the {} images "
                          "there are; using all {}\n",
                          split, asked, set->size(), set->size());
  if (opts_.progressColumns > 0 && comm_.rank() == 0)
    bar_ = std::make_unique<ProgressBar>(out_, opts_.progressColumns);
  // What stops a data-parallel start is agreed on by every rank below, so
  // that no rank waits in a collective for one that gave up.
  backend_ = exec::makeBackend(opts_.backend);
  std::string problem = dataParallelProblem(plan_, *backend_, ranks);
  if (leader() && problem.empty())
    problem = lockTrainer();
  if (leader() && problem.empty())
    problem = overwriteProblem();
  // A checkpoint write killed midway leaves its temporary file behind. Only
  // the run holding the lock removes them: a refused run's neighbour may be
  // writing one, from a machine or container whose pids this one cannot see.
  for (const std::string &path :
       {checkpointPath(plan_), checkpointStatePath(plan_)})
    if (int n = leader() && lock_.held && problem.empty()
                    ? io::removeStaleTemporaries(path)
                    : 0)
      out_ << fmt::format("note: removed {} temporary file(s) of {} left by "
                          "an interrupted run\n",
                          n, path);
  params_ = std::make_unique<exec::ParamStore>(plan_, opts_.seed, *backend_);
  state_.seed = opts_.seed;
  state_.ranks = ranks;
  state_.trainImages = data_.train.size();
  if (opts_.resume && !opts_.weightsPath.empty())
    throw TrainError(fmt::format(
        "--weights {} starts a run from given parameters; --resume continues "
        "one from its checkpoint: give only one of them",
        opts_.weightsPath));
  if (!opts_.weightsPath.empty()) {
    exec::ParamStore::Matched m = params_->fromMatchingTensors(
        io::readSafetensors(opts_.weightsPath), opts_.weightsPath);
    size_t total = params_->names().size();
    out_ << fmt::format("initialised {} of {} parameters from {}",
                        total - m.untouched.size(), total, opts_.weightsPath);
    if (!m.untouched.empty())
      out_ << fmt::format("; {} keep their initialisation ({})",
                          m.untouched.size(), firstNames(m.untouched));
    if (!m.unknown.empty())
      out_ << fmt::format("; {} tensor(s) of the file name no parameter ({})",
                          m.unknown.size(), firstNames(m.unknown));
    out_ << "\n";
  }
  if (opts_.resume) {
    state_ = loadCheckpoint(plan_, *params_);
    ownCheckpoint_ = true;
    if (state_.seed != opts_.seed)
      out_ << fmt::format("note: resuming with the checkpoint's seed {}\n",
                          state_.seed);
    if (state_.ranks != ranks && state_.step > 0 && problem.empty())
      problem = fmt::format(
          "{}: the checkpoint was written by a run of {} rank(s) at step {} "
          "of phase {}; its steps were global batches of that many ranks: "
          "resume it with {} rank(s) (from the end of a phase, any number "
          "will do)",
          checkpointPath(plan_), state_.ranks, state_.step,
          state_.phaseIndex + 1, state_.ranks);
    if (state_.trainImages > 0 && state_.trainImages != data_.train.size() &&
        state_.step > 0 && problem.empty())
      problem = fmt::format(
          "{}: the checkpoint was written at step {} of phase {} by a run on "
          "{} training images, and this data has {}: the rest of the phase "
          "would see another order and other epochs (another data set or "
          "subset?); resume it with the same data, or --restart",
          checkpointPath(plan_), state_.step, state_.phaseIndex + 1,
          state_.trainImages, data_.train.size());
    state_.ranks = ranks;
    state_.trainImages = data_.train.size();
  }
  if (ranks > 1) {
    // Every rank must start where rank 0 does: the same state, backend and
    // parameters (each read its own copy of the trainer, checkpoint and
    // --weights files).
    std::vector<uint64_t> here = {
        uint64_t(state_.phaseIndex), uint64_t(state_.step),
        uint64_t(state_.globalStep), state_.seed,
        std::hash<std::string>()(backend_->name()), parameterHash(*params_)};
    std::vector<uint64_t> first = here;
    comm_.broadcast(first.data(), int64_t(first.size() * sizeof(uint64_t)),
                    0);
    if (here != first && problem.empty())
      problem = fmt::format(
          "rank {} would start from another state than rank 0 (phase {}, "
          "step {}, global step {}, seed {}, {} backend, parameter hash "
          "{:016x}; rank 0: phase {}, step {}, global step {}, seed {}, "
          "parameter hash {:016x}): every rank must read the same trainer, "
          "checkpoint and --weights files and use the same backend",
          comm_.rank(), here[0] + 1, here[1], here[2], here[3],
          backend_->name(), here[5], first[0] + 1, first[1], first[2],
          first[3], first[5]);
  }
  agreeOrThrow(comm_, problem);
  if (ranks > 1)
    out_ << fmt::format("data-parallel: {} ranks ({}), each a shard of every "
                        "batch\n",
                        ranks, comm_.name());
  if (!opts_.metricsPath.empty() && leader()) {
    metrics_ = std::make_unique<std::ofstream>(
        opts_.metricsPath, opts_.resume ? std::ios::app : std::ios::trunc);
    if (!*metrics_) {
      const int err = errno; // (the failed open's; read before anything else)
      std::error_code ec;
      throw TrainError(
          fmt::format("{}: cannot open for writing ({})", opts_.metricsPath,
                      std::filesystem::is_directory(opts_.metricsPath, ec)
                          ? std::string("a directory")
                          : std::string(std::strerror(err))));
    }
    // Records after this global step already in the file are of a run that
    // stopped past its last checkpoint; `netrun plot` drops them.
    if (opts_.resume)
      metric(json{{"event", "resume"},
                  {"global_step", state_.globalStep},
                  {"phase_index", state_.phaseIndex},
                  {"step", state_.step}}
                 .dump());
  }
  if (opts_.logEvery <= 0)
    opts_.logEvery = 1;
  // An image folder's evaluation images are the single crop: the shorter
  // side resized to eval-scale, the centre crop.
  for (const std::string &scheme : plan_.evalSchemes)
    if (scheme != "full" && scheme != "dense" &&
        !(scheme == "single-crop" && plan_.data.kind == "images"))
      out_ << fmt::format("note: evaluation scheme '{}' is not implemented by "
                          "this runtime; evaluating 'full'\n",
                          scheme);
}

Trainer::~Trainer() = default;

Trainer::LockFile::~LockFile() {
  if (fd >= 0)
    ::close(fd); // and with it the lock
}

std::string Trainer::lockTrainer() {
  const std::string path =
      (std::filesystem::path(plan_.dir) / ".netrun.lock").string();
  if (::access(plan_.dir.c_str(), W_OK) != 0)
    return fmt::format("cannot write into the trainer directory {} ({}), "
                       "where the checkpoints go",
                       plan_.dir, std::strerror(errno));
  lock_.fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_.fd < 0 && errno == EACCES) // another user's lock file
    lock_.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (lock_.fd < 0)
    return fmt::format("{}: cannot open: {}", path, std::strerror(errno));
  lock_.held = ::flock(lock_.fd, LOCK_EX | LOCK_NB) == 0;
  if (!lock_.held) {
    int err = errno;
    if (err == EWOULDBLOCK)
      return fmt::format("another netrun is training {} (it holds {}); two "
                         "runs would overwrite each other's checkpoints",
                         plan_.dir, path);
    // A file system without flock (Lustre mounted without it, some NFS
    // and FUSE mounts): train unguarded rather than not at all.
    out_ << fmt::format("note: {}: cannot lock ({}); nothing stops a second "
                        "run on this trainer directory\n",
                        path, std::strerror(err));
  }
  return "";
}

std::string Trainer::overwriteProblem() const {
  if (opts_.resume && opts_.restart)
    return "--resume continues the checkpoint, --restart replaces it: give "
           "only one of them";
  const std::string path = checkpointPath(plan_);
  if (opts_.resume || opts_.restart || !std::filesystem::exists(path))
    return "";
  std::string where = "a run";
  try { // what the checkpoint holds, for the message (best effort)
    json j = json::parse(io::readFile(checkpointStatePath(plan_), 1 << 20));
    std::string phase = j.at("phase").get<std::string>();
    int64_t step = j.at("global_step").get<int64_t>();
    // Finished by its index past the schedule: a phase may be named "done".
    if (j.at("phase_index").get<int64_t>() >= int64_t(plan_.schedule.size()))
      return fmt::format("{} holds the checkpoint of a finished run (global "
                         "step {}): `netrun eval` evaluates it, --restart "
                         "trains from the start and replaces it",
                         path, step);
    where = fmt::format("a run at phase '{}', global step {}",
                        io::printable(phase, false), step);
  } catch (const std::exception &) {
  }
  return fmt::format("{} holds the checkpoint of {}: --resume continues it, "
                     "--restart trains from the start and replaces it",
                     path, where);
}

void Trainer::metric(const std::string &line) {
  if (metrics_) {
    *metrics_ << line << '\n';
    metrics_->flush();
    if (!*metrics_) // a full disk: the record is lost, and the ones after it
      throw TrainError(fmt::format("{}: cannot write the metrics ({}); "
                                   "training stopped, {}",
                                   opts_.metricsPath, std::strerror(errno),
                                   keptCheckpoint()));
  }
}

void Trainer::run() {
  if (plan_.schedule.empty())
    throw TrainError(fmt::format("{}: the schedule has no phases: nothing "
                                 "to train",
                                 plan_.file));
  if (state_.phaseIndex >= int64_t(plan_.schedule.size())) {
    out_ << "training already finished (checkpoint at the end of the "
            "schedule)\n";
    return;
  }
  for (size_t i = size_t(state_.phaseIndex); i < plan_.schedule.size(); ++i) {
    runPhase(i);
    if (stopped_)
      break;
  }
  std::string report = backend_->runReport();
  if (!report.empty() && comm_.rank() == 0)
    out_ << report << "\n";
}

void Trainer::runPhase(size_t pi) {
  const plan::Phase &ph = plan_.schedule[pi];
  exec::Executor exe(plan_, ph.program, *params_, *backend_);
  const plan::Program &prog = exe.program();
  const int64_t imageId = exe.inputId("image");
  // Phases without a classification term (e.g. decoder pre-training) may
  // take no labels.
  const int64_t labelsId =
      exe.hasInput("labels") ? exe.inputId("labels") : int64_t(-1);
  const ImageData &train = data_.train;
  if (train.size() == 0)
    throw TrainError("the training set is empty");
  // With R ranks a step is a global batch of R x batch images, rank r
  // taking the r-th slice of it; the epoch is counted in global batches.
  const int64_t batch = ph.batch;
  const int64_t ranks = comm_.size(), rank = comm_.rank();
  plan::Phase global = ph;
  global.batch = batch * ranks;
  const int64_t spe = stepsPerEpoch(train.size(), global.batch);
  const int64_t T = phaseSteps(global, train.size());
  // The epochs the phase spans: `epochs`, or fewer where `steps` ends it
  // sooner, or (`epochs` 0) as many as `steps` reaches into. (Not
  // (T + spe - 1) / spe, which overflows for a T near 2^63.)
  const int64_t epochs = T / spe + (T % spe != 0);
  if (state_.step > T)
    throw TrainError(fmt::format("{}: the checkpoint is at step {} of phase "
                                 "'{}', which has {} steps with this data "
                                 "(another data set or subset?)",
                                 checkpointPath(plan_), state_.step, ph.phase,
                                 T));
  // The plan may reuse the bytes of loss values after they are computed:
  // keep copies as their kernels write them.
  exe.keep(*prog.loss);
  for (const plan::Term &term : prog.terms)
    exe.keep(term.value);
  if (state_.step == 0)
    params_->zeroMomentum();
  out_ << fmt::format("phase {} '{}' ({}): {} steps, {} epoch(s) of {} steps, "
                      "batch {}{}, lr {} ({})\n",
                      pi + 1, ph.phase, ph.program, T, epochs, spe, batch,
                      ranks > 1 ? fmt::format(" x {} ranks", ranks) : "", ph.lr,
                      ph.lrPolicy);
  if (state_.step > 0 && state_.step < T)
    out_ << fmt::format("resuming at step {} of {} (global step {})\n",
                        state_.step + 1, T, state_.globalStep + 1);
  else if (state_.step > 0) // a checkpoint after the phase's last step
    out_ << fmt::format("resuming after the phase's last step ({} of {})\n",
                        state_.step, T);
  out_.flush();

  // kStages staging areas in the backend's staging memory (page-locked on
  // a GPU): the prefetch thread fills the next kStages - 1 batches (a
  // bounded queue; an image folder's batch spread over its worker threads)
  // while the current one runs. A batch's copy to the device (uploadAside,
  // issued while the step before it computes) is joined by its own step,
  // whose loss is then read, a wait that covers the copy; only then is its
  // area refilled. Then the thread itself (declared after them, so it is
  // joined before they go).
  constexpr int64_t kStages = 3;
  const int64_t sample = train.sampleFloats();
  struct Stage {
    std::unique_ptr<exec::Buffer> images, labels;
    std::vector<int64_t> indices; ///< this rank's slice of the global batch
    int64_t n = 0;
    int64_t skipped = 0; ///< bad images skipped (skip-bad)
    uint64_t ticket = 0; ///< the prefetch job that fills it
  } stages[kStages];
  // A rank's slice never holds more than its share of the set (see
  // submit), so a batch larger than the set stages only the set.
  const int64_t rows =
      std::min(batch, (train.size() + ranks - 1) / ranks);
  for (Stage &st : stages) {
    st.images = backend_->allocateStaging(
        uint64_t(rows * sample) * sizeof(float), "a staging batch of images");
    st.labels = backend_->allocateStaging(uint64_t(rows) * sizeof(int32_t),
                                          "a staging batch of labels");
  }
  std::shared_ptr<std::vector<int64_t>> order;
  int64_t orderEpoch = -1;
  auto orderFor = [&](int64_t epoch) {
    if (epoch != orderEpoch) {
      uint64_t key =
          exec::seedFor(state_.seed, fmt::format("shuffle/{}/{}", pi, epoch));
      order = std::make_shared<std::vector<int64_t>>(train.order(key | 1));
      orderEpoch = epoch;
    }
    return order;
  };
  Prefetcher prefetch;
  auto submit = [&](int64_t t) {
    int64_t e = t / spe, b = t % spe;
    int64_t start = b * global.batch;
    int64_t all = std::min(global.batch, train.size() - start);
    // Every rank gets as many images (a tail batch split evenly, the last
    // slices running on into the epoch's first images, as PyTorch's
    // DistributedSampler pads), so that the mean over ranks weighs every
    // image alike. One rank: the images [start, start + all).
    int64_t n = (all + ranks - 1) / ranks;
    std::shared_ptr<std::vector<int64_t>> ord = orderFor(e);
    Stage &st = stages[t % kStages];
    st.indices.resize(size_t(n));
    for (int64_t j = 0; j < n; ++j) {
      int64_t k = start + rank * n + j;
      st.indices[size_t(j)] =
          (*ord)[size_t(k < train.size() ? k : (k - train.size()) % train.size())];
    }
    uint64_t key =
        exec::seedFor(state_.seed, fmt::format("augment/{}/{}", pi, t));
    st.ticket = prefetch.submit([&st, &train, ord, n, key] {
      st.skipped = train.makeBatch(st.indices.data(), n, true, key,
                                   static_cast<float *>(st.images->data()),
                                   static_cast<int32_t *>(st.labels->data()));
      st.n = n;
    });
  };

  auto t0 = std::chrono::steady_clock::now();
  const auto phaseStart = t0;
  const int64_t firstStep = state_.step;
  int64_t imagesSinceLog = 0;
  int64_t epochSkipped = 0; // this rank's, in this call's part of the epoch
  // Two areas in the backend's memory that the staged batches are copied
  // into beside the kernels (Memory::uploadAside): batch t + 1 moves while
  // step t computes, and step t + 1 takes it into its arena on the device.
  // An area is written again two steps after it was read, once that step's
  // loss has been read.
  struct OnDevice {
    std::unique_ptr<exec::Buffer> images, labels;
  } onDevice[2];
  for (OnDevice &d : onDevice) {
    d.images = backend_->allocate(uint64_t(rows * sample) * sizeof(float),
                                  "a batch of images on the device");
    d.labels = backend_->allocate(uint64_t(rows) * sizeof(int32_t),
                                  "a batch of labels on the device");
  }
  // The copies are waited for before their areas (and the staging memory
  // they read) go away: at a --max-steps stop, here. Leaving with an error,
  // the buffers' release waits (cudaFree and cudaFreeHost wait for the
  // device), and a wait here could hang on another rank's collective.
  auto joinAside = [&] {
    backend_->awaitAside();
    backend_->synchronize();
  };
  // A batch that could not be made (a bad file, say) is reported where step
  // t + 1 would take it, after step t is finished (its loss read, logged
  // and checkpointed), as when its copy did not move ahead.
  std::exception_ptr nextFailed;
  auto sendAside = [&](int64_t t) {
    const Stage &st = stages[t % kStages];
    prefetch.waitFor(st.ticket);
    const OnDevice &d = onDevice[t % 2];
    backend_->uploadAside(d.images->data(), st.images->data(),
                          uint64_t(st.n * sample) * sizeof(float));
    if (labelsId >= 0)
      backend_->uploadAside(d.labels->data(), st.labels->data(),
                            uint64_t(st.n) * sizeof(int32_t));
  };
  for (int64_t t = state_.step; t < std::min(T, state_.step + kStages - 1); ++t)
    submit(t);
  if (state_.step < T)
    sendAside(state_.step);
  for (int64_t t = state_.step; t < T; ++t) {
    if (nextFailed)
      std::rethrow_exception(nextFailed);
    const Stage &st = stages[t % kStages];
    int64_t n = st.n; // sendAside(t) waited for its batch
    epochSkipped += st.skipped;
    backend_->awaitAside();
    const OnDevice &d = onDevice[t % 2];
    exe.uploadFrom(imageId, *d.images, uint64_t(n * sample) * sizeof(float), n);
    if (labelsId >= 0)
      exe.uploadFrom(labelsId, *d.labels, uint64_t(n) * sizeof(int32_t), n);
    // Into the area of step t - 1, whose copy step t - 1 joined before its
    // loss was read.
    if (t + kStages - 1 < T)
      submit(t + kStages - 1);

    int64_t epoch = t / spe;
    exec::StepContext ctx;
    ctx.step = exec::dropoutStepKey(state_.seed, uint64_t(state_.globalStep));
    ctx.lr = learningRate(ph, t, T, epoch);
    ctx.momentum = ph.momentum;
    ctx.decay = ph.decay;
    ctx.training = true;
    ctx.comm = &comm_;
    ctx.firstSample = uint64_t(rank * n);
    exe.run(n, ctx);
    // The next batch moves while this step computes.
    if (t + 1 < T) {
      try {
        sendAside(t + 1);
      } catch (...) {
        nextFailed = std::current_exception();
      }
    }

    // The loss and its terms, and which ranks saw a non-finite one, as
    // means over the ranks: every rank then stops at the same step, with
    // the same message.
    std::vector<double> scalars;
    scalars.push_back(exe.scalar(*prog.loss));
    for (const plan::Term &term : prog.terms)
      scalars.push_back(exe.scalar(term.value));
    const size_t flags = scalars.size();
    scalars.resize(flags + size_t(ranks), 0.0);
    for (size_t i = 0; i < flags; ++i)
      if (!std::isfinite(scalars[i]))
        scalars[flags + size_t(rank)] = 1;
    if (ranks > 1) {
      comm_.allReduceSum(scalars.data(), int64_t(scalars.size()));
      for (size_t i = 0; i < flags; ++i)
        scalars[i] /= double(ranks);
    }
    const double loss = scalars[0];
    auto nonFinite = [&](const std::string &what, double v) {
      std::vector<int64_t> bad;
      for (int64_t r = 0; ranks > 1 && r < ranks; ++r)
        if (scalars[flags + size_t(r)] != 0)
          bad.push_back(r);
      std::string where =
          bad.empty() ? std::string()
                      : fmt::format(" on rank{} {}", bad.size() > 1 ? "s" : "",
                                    fmt::join(bad, ", "));
      throw CollectiveError(fmt::format(
          "phase '{}' step {} (epoch {}, global step {}): {} is {}{}; "
          "training stopped, {}",
          ph.phase, t + 1, epoch + 1, state_.globalStep + 1, what,
          io::formatNumber(v), where, keptCheckpoint()));
    };
    for (size_t i = 0; i < prog.terms.size(); ++i)
      if (!std::isfinite(scalars[i + 1]))
        nonFinite(fmt::format("loss term '{}'", prog.terms[i].name),
                  scalars[i + 1]);
    if (!std::isfinite(loss))
      nonFinite("the total loss", loss);
    lastLoss_ = loss;
    state_.step = t + 1;
    state_.globalStep += 1;
    imagesSinceLog += n * ranks;
    ++ranThisCall_;

    bool logLine = (t + 1) % opts_.logEvery == 0 || t + 1 == T || t == 0;
    Progress pr;
    if (bar_) {
      // Rates and the time left from this call's steps of the phase.
      double secs = std::chrono::duration<double>(
                        std::chrono::steady_clock::now() - phaseStart)
                        .count();
      int64_t ran = t + 1 - firstStep;
      pr.phase = ph.phase;
      pr.epoch = epoch + 1;
      pr.epochs = epochs;
      pr.step = t + 1;
      pr.steps = T;
      pr.loss = loss;
      for (size_t i = 0; i < prog.terms.size(); ++i)
        pr.terms.emplace_back(prog.terms[i].name, scalars[i + 1]);
      pr.imagesPerSecond = secs > 0 ? double(ran * batch * ranks) / secs : 0;
      pr.secondsLeft = ran > 0 ? secs / double(ran) * double(T - t - 1) : -1;
      if (logLine)
        bar_->clear(); // the line goes above the bar
      else
        bar_->update(pr);
    }
    if (logLine) {
      auto now = std::chrono::steady_clock::now();
      double secs = std::chrono::duration<double>(now - t0).count();
      std::string terms;
      json jterms = json::object();
      for (size_t i = 0; i < prog.terms.size(); ++i) {
        terms += fmt::format(" {} {:.6g}", prog.terms[i].name, scalars[i + 1]);
        jterms[prog.terms[i].name] = scalars[i + 1];
      }
      out_ << fmt::format("[{}] epoch {}/{} step {}/{} lr {:.6g} loss {:.6g}{}"
                          " ({:.0f} img/s)\n",
                          ph.phase, epoch + 1, epochs, t + 1, T, ctx.lr, loss,
                          terms,
                          secs > 0 ? double(imagesSinceLog) / secs : 0.0);
      out_.flush();
      double imagesPerSecond = secs > 0 ? double(imagesSinceLog) / secs : 0.0;
      metric(json{{"event", "step"},
                  {"images_per_second", imagesPerSecond},
                  {"phase", ph.phase},
                  {"phase_index", pi},
                  {"epoch", epoch + 1},
                  {"step", t + 1},
                  {"global_step", state_.globalStep},
                  {"lr", ctx.lr},
                  {"loss", loss},
                  {"terms", jterms}}
                 .dump());
      t0 = now;
      imagesSinceLog = 0;
    }
    if (bar_ && logLine && t + 1 < T)
      bar_->update(pr, /*force=*/true);
    if (((t + 1) % spe == 0 || t + 1 == T) && epochSkipped > 0) {
      if (bar_)
        bar_->clear();
      // skip-bad: the count of the epoch's bad images, each replaced by the
      // next image of the set.
      out_ << fmt::format("[{}] epoch {}: skipped {} bad image(s){}\n",
                          ph.phase, epoch + 1, epochSkipped,
                          ranks > 1 ? " on rank 0" : "");
      metric(json{{"event", "skipped"},
                  {"phase", ph.phase},
                  {"epoch", epoch + 1},
                  {"images", epochSkipped}}
                 .dump());
      epochSkipped = 0;
    }
    const std::string when =
        fmt::format("phase '{}' step {} (epoch {}, global step {})", ph.phase,
                    t + 1, epoch + 1, state_.globalStep);
    if (opts_.checkpointEvery > 0 &&
        state_.globalStep % opts_.checkpointEvery == 0 && t + 1 < T)
      checkpoint(when);
    if (opts_.maxSteps > 0 && ranThisCall_ >= opts_.maxSteps && t + 1 < T) {
      // The batches queued ahead will not train: a bad image in one is
      // the resumed run's to meet, not a reason to lose this checkpoint.
      prefetch.drain();
      joinAside();
      checkpoint(when);
      if (bar_)
        bar_->clear();
      out_ << fmt::format("stopped after {} step(s) (--max-steps); checkpoint "
                          "{} (resume with --resume)\n",
                          ranThisCall_, checkpointPath(plan_));
      stopped_ = true;
      return;
    }
  }
  prefetch.wait();
  if (bar_)
    bar_->clear();

  // End of phase: evaluate, then checkpoint the start of the next phase,
  // unless the last update left a parameter that is not finite (the
  // evaluation would be of NaNs, the checkpoint would replace a good one).
  io::TensorFile tensors = finiteParameters(
      fmt::format("the end of phase '{}' (step {}, global step {})", ph.phase,
                  T, state_.globalStep));
  state_.phaseIndex = int64_t(pi) + 1;
  state_.step = 0;
  // An evaluation's metrics record.
  auto evalRecord = [&](const char *event, const EvalResult &r) {
    return json{{"event", event},
                {"phase", ph.phase},
                {"phase_index", pi},
                {"global_step", state_.globalStep},
                {"test_error", r.errorPercent()},
                {"test_error_top5", r.top5ErrorPercent()}};
  };
  std::optional<EvalResult> phaseEval;
  std::string evalProblem, evalFailure;
  if (plan_.programs.count("eval") && leader()) {
    try {
      phaseEval = evaluate(plan_, *params_, *backend_, data_.test);
    } catch (const TrainError &e) {
      evalProblem = fmt::format("the end of phase '{}': {}; training "
                                "stopped, {}",
                                ph.phase, e.what(), keptCheckpoint());
    } catch (const std::exception &e) {
      // The test data failed (a bad image in val/, found only now): the
      // phase's training is sound, so it is saved before the run stops.
      evalFailure = e.what();
    }
  }
  // Every rank stops with the leader's evaluation.
  agreeOrThrow(comm_, evalProblem);
  if (phaseEval) {
    const EvalResult &r = *phaseEval;
    lastEval_ = r;
    out_ << fmt::format("[{}] test error {:.2f}% ({} of {} wrong){}{}\n",
                        ph.phase, r.errorPercent(), r.total - r.correct,
                        r.total, r.top5(), r.skippedNote());
    json record = evalRecord("eval", r);
    record["correct"] = r.correct;
    record["total"] = r.total;
    metric(record.dump());
  }
  if (leader()) {
    saveCheckpoint(plan_, std::move(tensors), state_);
    ownCheckpoint_ = true;
  }
  out_ << fmt::format("[{}] checkpoint {}\n", ph.phase, checkpointPath(plan_));
  if (!evalFailure.empty())
    evalFailure = fmt::format(
        "the end of phase '{}': the evaluation failed: {}; the phase's "
        "training is saved in {} (fix the data, then `netrun eval` measures "
        "it and `netrun train --resume` goes on)",
        ph.phase, evalFailure, checkpointPath(plan_));
  agreeOrThrow(comm_, evalFailure);
  // After the last phase, and after its checkpoint: the dense evaluation
  // too, where the file asks. It can fail on its own (memory at a large
  // scale, images too small for it): a warning, the training is saved.
  if (pi + 1 == plan_.schedule.size() && !plan_.denseScales.empty() &&
      leader()) {
    std::optional<EvalResult> dense;
    try {
      dense = evaluateDense(plan_, *params_, *backend_, data_.test);
    } catch (const std::exception &e) {
      out_ << fmt::format("warning: [{}] dense evaluation failed: {}\n",
                          ph.phase, io::printable(e.what(), false));
    }
    if (dense) {
      const EvalResult &r = *dense;
      out_ << fmt::format("[{}] dense test error {:.2f}% ({} of {} wrong){}{} "
                          "(scales {}, each with its mirror image)\n",
                          ph.phase, r.errorPercent(), r.total - r.correct,
                          r.total, r.top5(), r.skippedNote(),
                          fmt::join(plan_.denseScales, ", "));
      json record = evalRecord("eval_dense", r);
      record["scales"] = plan_.denseScales;
      metric(record.dump());
    }
  }
  out_.flush();
  if (opts_.maxSteps > 0 && ranThisCall_ >= opts_.maxSteps &&
      pi + 1 < plan_.schedule.size()) {
    out_ << fmt::format("stopped after {} step(s) (--max-steps)\n",
                        ranThisCall_);
    stopped_ = true;
  }
}

} // namespace netc::train
