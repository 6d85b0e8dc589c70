//===- netrun.cpp - runs a trainer compiled by netc -----------------------===//
//
//   netrun train TRAINER [--data DIR] [--seed N] [--log-every N]
//                        [--metrics FILE] [--resume | --restart] [--max-steps
//                        N]
//                        [--checkpoint-every N]
//   netrun eval  TRAINER [--data DIR] [--params FILE]
//   netrun info  TRAINER
//   netrun bench TRAINER [--program P] [--steps N] [--batch N] [--backend B]
//   netrun plot  METRICS [-o PNG]
//   netrun export TRAINER --format F -o OUT [--params FILE]
//   netrun infer TRAINER --images FILE -o OUT [--params FILE] [--backend B]
//
// Every error is a message on stderr and exit code 1.
//
//===----------------------------------------------------------------------===//

#include "runtime/dist/Communicator.h"
#include "runtime/exec/Executor.h"
#include "runtime/exec/ParamStore.h"
#include "runtime/io/File.h"
#include "runtime/io/Png.h"
#include "runtime/io/Safetensors.h"
#include "runtime/plan/Plan.h"
#include "runtime/train/Data.h"
#include "runtime/train/Trainer.h"
#include "tools/netrun/Interop.h"
#include "tools/netrun/Plot.h"
#ifdef NETC_HAVE_CUDA
#include "runtime/cuda/CudaBackend.h"
#endif

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

using namespace netc;

namespace {

const char *kUsage = R"(usage: netrun <command> TRAINER [options]

Runs a trainer directory written by `netc model.net -o model.trainer`.

commands:
  train TRAINER   train the schedule, evaluating after each phase
      --data DIR            data folder (default: the plan's, else
                            /usr/share/datasets/<kind>)
      --seed N              seed of initialisation, shuffling, augmentation,
                            dropout (1)
      --log-every N         print a progress line every N steps (50), and
                            at each phase's first and last step
      --metrics FILE        also write metrics as JSON lines to FILE
      --resume              continue from TRAINER/checkpoint.safetensors
      --restart             train from the start, replacing that checkpoint
                            (a run over an existing checkpoint needs
                            --resume or --restart)
      --weights FILE        start from the parameters FILE names (a
                            safetensors file, e.g. another trainer's
                            checkpoint); the others keep their initialisation
      --max-steps N         stop after N steps of this run (checkpointed; for
                            tests; 0, the default: no limit)
      --checkpoint-every N  also checkpoint every N steps
      --backend NAME        cuda (the default where built and a GPU is
                            present), cpu (oneDNN; the default otherwise,
                            where built), reference, or guarded (the
                            reference under a GPU's rules: its memory
                            unreadable to the host, its work queued
                            until the host waits; for testing)
  eval TRAINER    top-1 (and, past 5 classes, top-5) error of the `eval`
                  program (test set by default)
      --data DIR            data folder
      --params FILE         parameters (default TRAINER/checkpoint.safetensors)
      --split test|train    the set to measure the error on (test)
      --backend NAME        as for train
      --scheme full|dense   full (default): the images as they are; dense:
                            the fc layers as convolutions at each of the
                            trainer's dense scales, with the mirror image,
                            the posteriors averaged
  data TRAINER    times the data loader alone (read, decode, augment,
                  normalise; no training): images/s of the training set's
                  augmented batches, or the test set's evaluation crops
      --data DIR            data folder
      --images N            images to time (default: the whole set)
      --batch N             images per batch (64)
      --workers N           decoding threads of an image folder (default:
                            the plan's, else one per core)
      --split train|test    the set (train: augmented)
  reconstruct TRAINER  a PNG of test images (top row) and their
                  reconstructions from each macro-layer (one row each), and
                  the PSNR of each macro-layer's over the whole test set
      --data DIR            data folder
      --params FILE         parameters (default TRAINER/checkpoint.safetensors)
      --count N             images (8, at most the program's batch)
      --out FILE            the PNG (default TRAINER/reconstructions.png)
      --backend NAME        as for train
  info TRAINER    programs, kernels, arenas, parameters and the schedule
                  (and the GPU, where the cuda backend is built)
  bench TRAINER   training throughput of one program on synthetic data
                  already in the backend's memory (no data loading); under
                  mpirun, of a data-parallel trainer on every rank
      --program NAME        the program (default: the last phase's); a
                            program no phase runs (eval) is timed as
                            evaluation runs it, dropout and batch norm in
                            inference mode
      --steps N             timed steps (20), after 3 warm-up steps
      --batch N             batch (default: the program's)
      --backend NAME        as for train
      --profile             also time each kernel (waiting for each to
                            finish) and print where the time goes, by op
                            and by kernel, with the GB/s each moved its
                            operands at
  plot METRICS    draws the loss terms (log scale) and the test error of a
                  `train --metrics` file against the global step, the
                  phases marked, into a PNG (needs PLplot in the build)
      -o, --out FILE        the PNG (default METRICS with .png)
  export TRAINER  writes the classifier's parameters (not the decoders')
                  under torchvision's names, for torchvision's
                  load_state_dict (README: PyTorch interop)
      --format F            torchvision (any net), torchvision-vgg16 or
                            torchvision-alexnet (also checks that the file is
                            exactly that model's state_dict)
      -o, --out FILE        the safetensors file to write
      --params FILE         parameters (default TRAINER/checkpoint.safetensors)
  infer TRAINER   logits of given images through the `eval` program
      --images FILE         a safetensors file with "images" [N, C, H, W],
                            f32, normalised as the network's input
      -o, --out FILE        writes "logits" [N, classes] there
      --params FILE         parameters (default TRAINER/checkpoint.safetensors)
      --backend NAME        as for train

  -h, --help      this message
)";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Args {
  std::string command, trainer;
  std::map<std::string, std::string> values;
  std::map<std::string, bool> flags;
};

Args parseArgs(int argc, char **argv) {
  static const std::map<std::string, std::vector<std::string>> valued = {
      {"train",
       {"--data", "--seed", "--log-every", "--metrics", "--max-steps",
        "--checkpoint-every", "--backend", "--weights"}},
      {"eval", {"--data", "--params", "--backend", "--split", "--scheme"}},
      {"data", {"--data", "--images", "--batch", "--workers", "--split"}},
      {"reconstruct", {"--data", "--params", "--count", "--out", "--backend"}},
      {"info", {}},
      {"bench", {"--program", "--steps", "--batch", "--backend"}},
      {"plot", {"-o", "--out"}},
      {"export", {"--format", "-o", "--out", "--params"}},
      {"infer", {"--images", "-o", "--out", "--params", "--backend"}}};
  static const std::map<std::string, std::vector<std::string>> boolean = {
      {"train", {"--resume", "--restart"}},
      {"eval", {}},
      {"data", {}},
      {"reconstruct", {}},
      {"info", {}},
      {"bench", {"--profile"}},
      {"plot", {}},
      {"export", {}},
      {"infer", {}}};
  Args a;
  if (argc < 2)
    throw UsageError("missing command");
  a.command = argv[1];
  if (!valued.count(a.command))
    throw UsageError(fmt::format("unknown command '{}'", a.command));
  auto contains = [](const std::vector<std::string> &v, const std::string &s) {
    return std::find(v.begin(), v.end(), s) != v.end();
  };
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.size() > 1 && arg[0] == '-') {
      std::string name = arg, value;
      size_t eq = arg.find('=');
      bool inlineValue = eq != std::string::npos;
      if (inlineValue) {
        name = arg.substr(0, eq);
        value = arg.substr(eq + 1);
      }
      if (contains(valued.at(a.command), name)) {
        if (!inlineValue) {
          if (i + 1 >= argc)
            throw UsageError(fmt::format("{} needs a value", name));
          value = argv[++i];
          // `--metrics --resume` would otherwise write the metrics to a
          // file named "--resume" and start over instead of resuming.
          std::string next = value.substr(0, value.find('='));
          if (contains(valued.at(a.command), next) ||
              contains(boolean.at(a.command), next))
            throw UsageError(fmt::format(
                "{} needs a value, but '{}' is an option (write {}={} for "
                "a value that begins with a dash)",
                name, value, name, value));
        }
        // `-o` is `--out`; an option given twice, or with an empty value
        // (a script's unset variable: `--weights "$W"`), is a mistake that
        // would otherwise pass for the default.
        std::string key = name == "-o" ? "--out" : name;
        if (a.values.count(key))
          throw UsageError(
              fmt::format("{} is given twice{}", name,
                          key == "--out" && contains(valued.at(a.command), "-o")
                              ? " (-o and --out are one option)"
                              : ""));
        if (value.empty())
          throw UsageError(
              fmt::format("{} needs a value, got an empty one", name));
        a.values[key] = value;
      } else if (contains(boolean.at(a.command), name) && !inlineValue) {
        if (a.flags.count(name))
          throw UsageError(fmt::format("{} is given twice", name));
        a.flags[name] = true;
      } else {
        throw UsageError(
            fmt::format("unknown option '{}' for '{}'", name, a.command));
      }
    } else if (a.trainer.empty()) {
      a.trainer = arg;
    } else {
      throw UsageError(fmt::format("unexpected argument '{}'", arg));
    }
  }
  if (a.trainer.empty())
    throw UsageError(
        a.command == "plot"
            ? std::string("'plot' needs a METRICS file")
            : fmt::format("'{}' needs a TRAINER directory", a.command));
  return a;
}

int64_t intOption(const Args &a, const char *name, int64_t dflt,
                  int64_t min = 0) {
  auto it = a.values.find(name);
  if (it == a.values.end())
    return dflt;
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(it->second, &used);
  } catch (const std::exception &) {
    used = 0;
  }
  if (used != it->second.size() || it->second.empty() || v < min)
    throw UsageError(fmt::format("{}: '{}' is not an integer in [{}, 2^63 - 1]",
                                 name, it->second, min));
  return v;
}

std::string option(const Args &a, const char *name) {
  auto it = a.values.find(name);
  return it == a.values.end() ? "" : it->second;
}

/// Refuses an output that is one of the files the command reads (a
/// trainer's plan, checkpoint or parameters, `--params`, a metrics file):
/// writing a PNG or an export over it would destroy what it was made from.
void refuseInputAsOutput(const Args &a, const std::string &out) {
  namespace fs = std::filesystem;
  std::vector<std::string> inputs = {a.trainer, option(a, "--params"),
                                     option(a, "--images"),
                                     option(a, "--weights")};
  for (const char *name : {"plan.json", "checkpoint.safetensors",
                           "checkpoint.json", "params.safetensors"})
    inputs.push_back((fs::path(a.trainer) / name).string());
  std::error_code ec; // false where either file does not exist
  for (const std::string &in : inputs)
    if (!in.empty() && fs::equivalent(out, in, ec))
      throw UsageError(
          fmt::format("the output {} is {}a file '{}' reads; name another file",
                      out, out == in ? "" : in + ", ", a.command));
}

/// Refuses an output that would overwrite part of the data set the command
/// reads (a metrics file or a picture over an IDX file or a val/ image).
void refuseDataAsOutput(const Args &a, const train::DataOptions &d,
                        const std::string &out) {
  if (train::isDataPath(d, out))
    throw UsageError(fmt::format("the output {} is part of the data set '{}' "
                                 "reads ({} in {}); name another file",
                                 out, a.command, d.kind, d.dir));
}

std::string human(int64_t bytes) {
  if (bytes >= (int64_t(1) << 30))
    return fmt::format("{:.2f} GiB", double(bytes) / double(1 << 30));
  if (bytes >= (1 << 20))
    return fmt::format("{:.2f} MiB", double(bytes) / double(1 << 20));
  if (bytes >= (1 << 10))
    return fmt::format("{:.1f} KiB", double(bytes) / 1024.0);
  return fmt::format("{} B", bytes);
}

int cmdInfo(const Args &a) {
  plan::Plan p = plan::loadPlan(a.trainer);
  // Check first, from the plan alone (every kernel's attributes and
  // geometry; no memory is allocated, no parameter initialised), so that a
  // trainer that cannot run fails before any description.
  exec::checkPlan(p);
  std::cout << fmt::format("trainer {}: network '{}', variant '{}', input "
                           "[{}], {} classes\n",
                           a.trainer, p.network, p.variant,
                           fmt::join(p.input, ", "), p.classes);
  std::cout << fmt::format(
      "data: {} ({}), subset {}, test_subset {}, mirror {}, crop {}, crop_pad "
      "{}\n",
      p.data.kind, p.data.path.empty() ? "default folder" : p.data.path,
      p.data.subset, p.data.testSubset, p.data.mirror ? "yes" : "no",
      p.data.crop, p.data.cropPad);
  int64_t count = 0, trainable = 0;
  for (const plan::ParamSpec &s : p.params) {
    count += s.count();
    if (s.trainable)
      trainable += s.count();
  }
  std::cout << fmt::format("parameters: {} tensors, {} values ({} trainable), "
                           "{}\n",
                           p.params.size(), count, trainable, human(count * 4));
  for (auto &[name, prog] : p.programs) {
    std::map<std::string, int> ops;
    for (const plan::Kernel &k : prog.kernels)
      ops[plan::opName(k.op)]++;
    std::string list;
    for (auto &[op, n] : ops)
      list += fmt::format("{}{} {}", list.empty() ? "" : ", ", n, op);
    std::cout << fmt::format("program {}: batch {}, {} values, {} kernels, "
                             "arena {} ({} bytes)\n    {}\n",
                             name, prog.batch, prog.values.size(),
                             prog.kernels.size(), human(prog.arenaBytes),
                             prog.arenaBytes, list);
  }
#ifdef NETC_HAVE_CUDA
  std::string gpu = cuda::deviceDescription();
  std::cout << fmt::format("cuda backend: {}\n",
                           gpu.empty() ? "no CUDA device" : gpu);
#endif
  std::cout << "schedule:\n";
  for (size_t i = 0; i < p.schedule.size(); ++i) {
    const plan::Phase &ph = p.schedule[i];
    std::cout << fmt::format(
        "  {}. {} ({}): {} epoch(s){}, batch {}, lr {} {}, momentum {}, "
        "decay {}\n",
        i + 1, ph.phase, ph.program, ph.epochs,
        ph.steps > 0 ? fmt::format(" (at most {} steps)", ph.steps) : "",
        ph.batch, ph.lr, ph.lrPolicy, ph.momentum, ph.decay);
  }
  return 0;
}

/// `--backend`, defaulting to the fastest one built in (cuda only where a
/// device is present).
std::string backendOption(const Args &a) {
  std::string name = option(a, "--backend");
  if (!name.empty())
    return name;
#ifdef NETC_HAVE_CUDA
  if (cuda::deviceCount() > 0)
    return "cuda";
#endif
#ifdef NETC_HAVE_ONEDNN
  return "cpu";
#else
  return "reference";
#endif
}

/// One rank alone failed: the others would wait for it in their next
/// collective, so the whole job ends here, before anything unwinds (NCCL's
/// teardown is itself a collective that would wait for them).
void abortOtherRanks(const std::exception &e) {
  dist::Communicator *w = dist::worldIfMade();
  if (!w || w->size() == 1 || dynamic_cast<const train::CollectiveError *>(&e))
    return;
  std::cerr << fmt::format("netrun: rank {} of {}: error: {}\n", w->rank(),
                           w->size(), io::printable(e.what(), false));
  std::cerr.flush();
  w->abort(1);
}

int cmdTrain(const Args &a) {
  // Options that contradict each other, before anything is read.
  if (a.flags.count("--resume") && a.flags.count("--restart"))
    throw UsageError("--resume continues the checkpoint, --restart replaces "
                     "it: give only one of them");
  if (a.flags.count("--resume") && !option(a, "--weights").empty())
    throw UsageError("--weights starts a run from given parameters, "
                     "--resume continues one from its checkpoint: give only "
                     "one of them");
  if (!option(a, "--metrics").empty())
    refuseInputAsOutput(a, option(a, "--metrics"));
  plan::Plan p = plan::loadPlan(a.trainer);
  train::TrainOptions o;
  o.dataDir = option(a, "--data");
  o.seed = uint64_t(intOption(a, "--seed", 1));
  o.logEvery = intOption(a, "--log-every", 50, 1);
  o.metricsPath = option(a, "--metrics");
  if (!o.metricsPath.empty())
    refuseDataAsOutput(a, train::dataOptions(p, o.dataDir), o.metricsPath);
  o.resume = a.flags.count("--resume") != 0;
  o.restart = a.flags.count("--restart") != 0;
  o.weightsPath = option(a, "--weights");
  o.maxSteps = intOption(a, "--max-steps", 0);
  o.checkpointEvery = intOption(a, "--checkpoint-every", 0);
  o.backend = backendOption(a);
  // A progress bar on a terminal (not under a dumb one); plain lines
  // elsewhere.
  const char *term = std::getenv("TERM");
  if (!(term && std::string(term) == "dumb"))
    o.progressColumns = train::terminalColumns(STDOUT_FILENO);
  train::Trainer t(p, o, std::cout);
  try {
    t.run();
  } catch (const train::CollectiveError &) {
    throw;
  } catch (const std::exception &e) {
    t.clearProgress();  // (the message below starts a line of its own)
    abortOtherRanks(e); // before the trainer (and NCCL) unwinds
    throw;
  }
  return 0;
}

/// `--split`: "test" or "train" (`dflt` when not given).
std::string splitOption(const Args &a, const char *dflt) {
  std::string split = option(a, "--split");
  if (split.empty())
    split = dflt;
  if (split != "test" && split != "train")
    throw UsageError(
        fmt::format("--split must be test or train, got '{}'", split));
  return split;
}

/// The trained parameters: `--params`, else the trainer's checkpoint, else
/// (with a note) the initial ones.
void loadTrainedParams(const Args &a, const plan::Plan &p,
                       exec::ParamStore &store) {
  std::string params = option(a, "--params");
  if (params.empty()) {
    params = train::checkpointPath(p);
    if (!std::filesystem::exists(params)) {
      std::cerr << fmt::format("netrun: note: no {}; using the initial "
                               "parameters\n",
                               params);
      return;
    }
  }
  io::TensorFile f = io::readSafetensors(params);
  try {
    store.fromTensors(f, params, false);
  } catch (const io::SafetensorsError &e) {
    // The trainer's own checkpoint, left from before a recompile: say so,
    // as --resume does (not of another trainer's file given as --params).
    auto it = f.metadata.find("netc.plan");
    if (option(a, "--params").empty() && it != f.metadata.end() &&
        it->second != p.fingerprint)
      throw std::runtime_error(
          fmt::format("{} (it was written for another compile of {}: the "
                      "trainer was recompiled since?)",
                      e.what(), a.trainer));
    throw;
  }
}

int cmdEval(const Args &a) {
  plan::Plan p = plan::loadPlan(a.trainer);
  train::DataOptions d = train::dataOptions(p, option(a, "--data"));
  // The paper also compares training error: `--split train` measures it on
  // the (subset of the) training set, without augmentation.
  std::string split = splitOption(a, "test");
  std::string scheme = option(a, "--scheme");
  if (scheme.empty())
    scheme = "full";
  if (scheme != "full" && scheme != "dense")
    throw UsageError(
        fmt::format("--scheme must be full or dense, got '{}'", scheme));
  const train::Split which =
      split == "train" ? train::Split::Train : train::Split::Test;
  const train::ImageData set = train::loadSplit(d, which);
  std::unique_ptr<exec::Backend> backend = exec::makeBackend(backendOption(a));
  exec::ParamStore store(p, 1, *backend);
  loadTrainedParams(a, p, store);
  train::EvalResult r = scheme == "dense"
                            ? train::evaluateDense(p, store, *backend, set)
                            : train::evaluate(p, store, *backend, set);
  std::cout << fmt::format("{}{} error {:.2f}% ({} of {} wrong){}{}\n",
                           scheme == "dense" ? "dense " : "", split,
                           r.errorPercent(), r.total - r.correct, r.total,
                           r.top5(), r.skippedNote());
  return 0;
}

/// `netrun data`: batches made as training makes them, without training.
int cmdData(const Args &a) {
  plan::Plan p = plan::loadPlan(a.trainer);
  train::DataOptions d = train::dataOptions(p, option(a, "--data"));
  d.workers = intOption(a, "--workers", d.workers, 1);
  if (d.workers > 1024) // as the plan's `workers`
    throw UsageError(fmt::format("--workers: at most 1024, got {}", d.workers));
  std::string split = splitOption(a, "train");
  const train::ImageData set = train::loadSplit(
      d, split == "train" ? train::Split::Train : train::Split::Test);
  if (set.size() == 0)
    throw std::runtime_error(
        fmt::format("{}: the {} set is empty", d.dir, split));
  const int64_t images = intOption(a, "--images", set.size(), 1);
  const int64_t maxBatch = int64_t(1) << 20; // as netc's `batch`
  if (intOption(a, "--batch", 64, 1) > maxBatch)
    throw UsageError(fmt::format("--batch: at most {}", maxBatch));
  // No batch larger than the images timed: its buffers would go unused.
  const int64_t batch = std::min(intOption(a, "--batch", 64, 1), images);
  const bool augment = split == "train";
  std::vector<float> pixels(size_t(batch * set.sampleFloats()));
  std::vector<int32_t> labels(static_cast<size_t>(batch));
  std::vector<int64_t> order = set.order(exec::seedFor(1, "data") | 1);
  std::vector<int64_t> indices(static_cast<size_t>(batch));
  int64_t skipped = 0;
  auto makeBatch = [&](int64_t first, int64_t n, int64_t step) {
    for (int64_t j = 0; j < n; ++j)
      indices[size_t(j)] = order[size_t((first + j) % set.size())];
    uint64_t key = exec::seedFor(1, fmt::format("augment/0/{}", step));
    skipped += set.makeBatch(indices.data(), n, augment, key, pixels.data(),
                             labels.data());
  };
  makeBatch(0, std::min(batch, images), 0); // warm-up: threads, caches
  skipped = 0; // (the timed pass meets the warm-up's images again)
  auto t0 = std::chrono::steady_clock::now();
  int64_t step = 0;
  for (int64_t done = 0; done < images; done += batch, ++step)
    makeBatch(done, std::min(batch, images - done), step);
  double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  int workers = d.workers > 0
                    ? int(d.workers)
                    : int(std::max(1u, std::thread::hardware_concurrency()));
  std::cout << fmt::format(
      "data {} ({}): {} images in batches of {} in {:.3f} s: {:.1f} images/s"
      "{}{}\n",
      split, d.kind, images, batch, secs,
      secs > 0 ? double(images) / secs : 0.0,
      d.kind == "images" ? fmt::format(", {} worker thread(s)", workers) : "",
      skipped ? fmt::format(", {} bad image(s) skipped", skipped) : "");
  return 0;
}

int cmdReconstruct(const Args &a) {
  std::string out = option(a, "--out");
  if (out.empty())
    out = (std::filesystem::path(a.trainer) / "reconstructions.png").string();
  refuseInputAsOutput(a, out);
  plan::Plan p = plan::loadPlan(a.trainer);
  if (!p.programs.count("reconstruct"))
    throw std::runtime_error(
        fmt::format("{}: no 'reconstruct' program: variant '{}' has no decoder",
                    a.trainer, p.variant));
  train::DataOptions d = train::dataOptions(p, option(a, "--data"));
  refuseDataAsOutput(a, d, out);
  const train::ImageData test = train::loadSplit(d, train::Split::Test);
  std::unique_ptr<exec::Backend> backend = exec::makeBackend(backendOption(a));
  exec::ParamStore store(p, 1, *backend);
  loadTrainedParams(a, p, store);
  exec::Executor exe(p, "reconstruct", store, *backend);
  const plan::Program &prog = exe.program();
  const size_t rows = prog.reconstructions.size();
  const int64_t asked = intOption(a, "--count", 8, 1);
  int64_t n = std::min({asked, exe.batch(), test.size()});
  if (n < asked)
    std::cout << fmt::format("note: {} images, not {} (at most the "
                             "reconstruct program's batch, {}, and the test "
                             "set's {})\n",
                             n, asked, exe.batch(), test.size());
  // The program may reuse the reconstructions' bytes: keep them.
  for (const plan::Reconstruction &r : prog.reconstructions)
    exe.keep(r.value);

  // Undo the normalisation: pixel = x * std + mean.
  std::vector<double> scale =
      d.std.empty() ? std::vector<double>{255.0} : d.std;
  std::vector<double> offset =
      d.mean.empty() ? std::vector<double>{0.0} : d.mean;
  int channels = int(d.channels);
  int64_t sample = test.sampleFloats();
  int64_t plane = d.height * d.width;
  auto pixel = [&](float x, int64_t element) {
    size_t c = size_t(element / plane);
    double v = x * scale[std::min(c, scale.size() - 1)] +
               offset[std::min(c, offset.size() - 1)];
    return std::clamp(v, 0.0, 255.0);
  };
  io::ImageGrid grid(1 + int64_t(rows), n, d.height, d.width,
                     channels == 3 ? 3 : 1);
  // The picture is RGB: a `channels bgr` input's planes (and their mean
  // and std) are drawn in reverse.
  const bool bgr = d.bgr && channels == 3;
  std::vector<double> tileScale = scale, tileOffset = offset;
  if (bgr) {
    std::reverse(tileScale.begin(), tileScale.end());
    std::reverse(tileOffset.begin(), tileOffset.end());
  }
  std::vector<float> rgb(size_t(bgr ? sample : 0));
  auto place = [&](int64_t row, int64_t col, const float *planar) {
    if (bgr) {
      for (int64_t c = 0; c < 3; ++c)
        std::copy_n(planar + (2 - c) * plane, plane, rgb.data() + c * plane);
      planar = rgb.data();
    }
    grid.place(row, col, planar, tileScale, tileOffset);
  };

  // The whole test set, a batch at a time: the first n images are drawn,
  // every image counts toward each row's PSNR (of the 0-255 pixels as drawn,
  // before rounding).
  std::vector<double> squaredError(rows, 0.0);
  int64_t batch = exe.batch(), total = test.size();
  std::vector<int64_t> indices(static_cast<size_t>(batch));
  std::vector<int32_t> labels(static_cast<size_t>(batch));
  std::vector<float> inputs(size_t(batch * sample));
  exec::StepContext ctx;
  ctx.training = false;
  for (int64_t first = 0; first < total; first += batch) {
    int64_t m = std::min(batch, total - first);
    for (int64_t i = 0; i < m; ++i)
      indices[size_t(i)] = first + i;
    test.makeBatch(indices.data(), m, /*augment=*/false, 0, inputs.data(),
                   labels.data());
    exe.upload(exe.inputId("image"), inputs.data(),
               size_t(m * sample) * sizeof(float), m);
    if (exe.hasInput("labels"))
      exe.upload(exe.inputId("labels"), labels.data(),
                 size_t(m) * sizeof(int32_t), m);
    exe.run(m, ctx);
    for (size_t r = 0; r < rows; ++r) {
      std::vector<float> image = exe.download(prog.reconstructions[r].value);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t e = 0; e < sample; ++e) {
          double diff = pixel(image[size_t(i * sample + e)], e) -
                        pixel(inputs[size_t(i * sample + e)], e);
          squaredError[r] += diff * diff;
        }
      if (first == 0)
        for (int64_t i = 0; i < n; ++i)
          place(int64_t(r) + 1, i, image.data() + i * sample);
    }
    if (first == 0)
      for (int64_t i = 0; i < n; ++i)
        place(0, i, inputs.data() + i * sample);
  }
  grid.write(out);
  std::string from;
  for (const plan::Reconstruction &r : prog.reconstructions)
    from += (from.empty() ? "" : ", ") + r.from;
  std::cout << fmt::format("wrote {}: {} test images (top row) and their "
                           "reconstructions from {} (rows below)\n",
                           out, n, from);
  // PSNR = 10 log10(255^2 / MSE), the mean over every pixel of the test set.
  std::cout << fmt::format("PSNR over {} test images:", total);
  for (size_t r = 0; r < rows; ++r) {
    double mse = squaredError[r] / (double(total) * double(sample));
    std::cout << fmt::format(
        " {} {:.2f} dB{}", prog.reconstructions[r].from,
        10.0 * std::log10(255.0 * 255.0 / std::max(mse, 1e-12)),
        r + 1 < rows ? "," : "\n");
  }
  return 0;
}

} // namespace

/// The bytes kernel k must move at least at batch n: each
/// operand read once and each result written once, in its planned dtype.
/// Over a kernel's time, the memory speed it reached: the measure of a
/// kernel that only moves memory (pooling, elementwise, losses), whose
/// arithmetic is negligible.
int64_t operandBytes(const plan::Program &prog, const plan::Kernel &k,
                     int64_t n) {
  int64_t bytes = 0;
  for (const std::vector<int64_t> *ids : {&k.in, &k.out})
    for (int64_t id : *ids)
      bytes += prog.value(id).bytes(n);
  // An update's only operand is the gradient; the weights and their
  // momentum (the same size, f32) are read and written too.
  if (k.op == plan::Op::SGDUpdate)
    bytes *= 5;
  return bytes;
}

/// Where a profiled step's time goes: per op (calls, ms per step, share,
/// operand MB per step and the GB/s they were moved at), then the kernels
/// that take the most. The steps ran at batch n.
void printProfile(const exec::Executor &exe, int64_t steps, int64_t n) {
  const plan::Program &prog = exe.program();
  const std::vector<double> &secs = exe.kernelSeconds();
  double total = 0;
  for (double s : secs)
    total += s;
  if (total <= 0)
    return;
  struct Row {
    int64_t calls = 0, bytes = 0; // bytes per step
    double secs = 0;
  };
  std::map<std::string, Row> byOp;
  for (size_t i = 0; i < secs.size(); ++i) {
    Row &r = byOp[plan::opName(prog.kernels[i].op)];
    ++r.calls;
    r.secs += secs[i];
    r.bytes += operandBytes(prog, prog.kernels[i], n);
  }
  std::vector<std::pair<std::string, Row>> ops(byOp.begin(), byOp.end());
  std::sort(ops.begin(), ops.end(), [](const auto &x, const auto &y) {
    return x.second.secs > y.second.secs;
  });
  double perStep = 1e3 / double(steps);
  // GB/s of the operands: bytes per step over the seconds per step.
  auto gbps = [&](int64_t bytes, double s) {
    return s > 0 ? double(bytes) * double(steps) / s * 1e-9 : 0.0;
  };
  std::cout << fmt::format("profile: {:.3f} ms/step in kernels (each waited "
                           "for; operands: the MB each step's kernels read "
                           "and write at least, and the GB/s they moved them "
                           "at)\n{:<28} {:>6} {:>10} {:>7} {:>11} {:>9}\n",
                           total * perStep, "op", "calls", "ms/step", "share",
                           "operand MB", "GB/s");
  for (auto &[op, r] : ops)
    std::cout << fmt::format("{:<28} {:>6} {:>10.3f} {:>6.1f}% {:>11.3f} "
                             "{:>9.1f}\n",
                             op, r.calls, r.secs * perStep,
                             100 * r.secs / total, double(r.bytes) * 1e-6,
                             gbps(r.bytes, r.secs));
  std::vector<size_t> order(secs.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t x, size_t y) { return secs[x] > secs[y]; });
  std::cout << fmt::format(
      "layouts: {} of {} values kept channel-blocked by the backend, {} "
      "computed past (fused), {} bias gradients summed by the relu_grad "
      "before them (their time here is their last stages alone); kernels' "
      "workspace {} bytes\n",
      exe.blockedValues().size(), prog.values.size(), exe.elidedValues().size(),
      exe.summedEarlyKernels().size(), exe.workspaceBytes());
  std::cout << "slowest kernels:\n";
  for (size_t j = 0; j < std::min<size_t>(10, order.size()); ++j) {
    const plan::Kernel &k = prog.kernels[order[j]];
    std::string shapes;
    for (int64_t id : k.out) {
      shapes += shapes.empty() ? "" : " ";
      const plan::Value &v = prog.value(id);
      for (size_t d = 0; d < v.shape.size(); ++d)
        shapes += (d ? "x" : "") + std::to_string(v.shape[d]);
    }
    std::string impl = exe.kernelImpl(order[j]);
    std::cout << fmt::format(
        "  {:<13} {:<21} {:>8.3f} ms {:>8.1f} GB/s -> {}{}\n",
        fmt::format("kernels[{}]", order[j]), plan::opName(k.op),
        secs[order[j]] * perStep,
        gbps(operandBytes(prog, k, n), secs[order[j]]), shapes,
        impl.empty() ? "" : " (" + impl + ")");
  }
}

/// `netrun plot`: the curves of a metrics file, as a PNG.
int cmdPlot(const Args &a) {
  std::string out = option(a, "--out"); // or -o
  if (out.empty())
    out = std::filesystem::path(a.trainer).replace_extension(".png").string();
  refuseInputAsOutput(a, out);
  plot::Metrics m = plot::readMetrics(a.trainer);
  plot::writePng(m, out, std::filesystem::path(a.trainer).filename().string());
  size_t points = 0;
  for (auto &[name, curve] : m.losses)
    points += curve.size();
  std::cout << fmt::format("wrote {}: {} loss terms ({} points), {} "
                           "evaluations, {} phases\n",
                           out, m.losses.size(), points, m.testError.size(),
                           m.phases.size());
  return 0;
}

/// `netrun bench`: steps of one program on synthetic data already on the
/// device, so that only the steps are timed, as the PyTorch peer
/// (bench/peer_gpu.py) times its own: random inputs are made and uploaded
/// once; each step copies them into the arena on the device (the program may
/// reuse their bytes within a step) and runs the kernels; the steps are
/// issued back to back and the loss of the last one is read at the end. No
/// input crosses from the host, and no data loading or augmentation, in the
/// timed steps (`netrun train` overlaps those with the steps). Parameters
/// change as they train; the rates do not depend on it.
int cmdBench(const Args &a) {
  plan::Plan p = plan::loadPlan(a.trainer);
  std::string name = option(a, "--program");
  if (name.empty()) {
    if (p.schedule.empty())
      throw UsageError("the trainer has no schedule: name a --program");
    name = p.schedule.back().program;
  }
  std::unique_ptr<exec::Backend> backend = exec::makeBackend(backendOption(a));
  exec::ParamStore store(p, 1, *backend);
  exec::Executor exe(p, name, store, *backend);
  const plan::Program &prog = exe.program();
  int64_t batch = intOption(a, "--batch", prog.batch, 1);
  if (batch > prog.batch)
    throw UsageError(fmt::format("--batch {} is larger than the batch {} of "
                                 "program '{}'",
                                 batch, prog.batch, name));
  int64_t steps = intOption(a, "--steps", 20, 1);
  std::mt19937_64 rng(7);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  // Each input as 4-byte words (labels i % classes, images N(0, 1)), in the
  // backend's memory.
  std::vector<std::pair<int64_t, std::unique_ptr<exec::Buffer>>> inputs;
  for (auto &[input, id] : prog.inputs) {
    const plan::Value &v = prog.value(id);
    std::vector<uint32_t> words(size_t(v.count(batch)));
    for (size_t i = 0; i < words.size(); ++i) {
      if (v.dtype == plan::DType::I32) {
        words[i] = uint32_t(i % size_t(p.classes));
      } else {
        float f = gauss(rng);
        std::memcpy(&words[i], &f, 4);
      }
    }
    uint64_t bytes = uint64_t(exe.hostBytes(id, batch));
    if (bytes != words.size() * 4)
      throw UsageError(fmt::format("program '{}': input '{}' is not of 4-byte "
                                   "elements: not a training step",
                                   name, input));
    auto buffer = backend->allocate(bytes, "bench input '" + input + "'");
    backend->upload(buffer->data(), words.data(), bytes);
    inputs.emplace_back(id, std::move(buffer));
  }
  if (!prog.loss)
    throw UsageError(fmt::format("program '{}' has no loss: bench times the "
                                 "programs with one (the training steps, "
                                 "eval)",
                                 name));
  exe.keep(*prog.loss);
  // Under mpirun: every rank steps on its own batch and the gradients are
  // averaged, as in training; the rate counts every rank's images.
  dist::Communicator &comm = dist::world();
  train::agreeOrThrow(comm,
                      train::dataParallelProblem(p, *backend, comm.size()));
  // A program that a phase runs is a training step; any other (eval, the
  // dense ones) runs as evaluation runs it: dropout off, batch norm on its
  // running statistics.
  const bool training =
      std::any_of(p.schedule.begin(), p.schedule.end(),
                  [&](const plan::Phase &ph) { return ph.program == name; });
  exec::StepContext ctx;
  ctx.lr = 1e-4;
  ctx.momentum = 0.9;
  ctx.training = training;
  ctx.comm = &comm;
  ctx.firstSample = uint64_t(comm.rank() * batch);
  auto step = [&](int64_t i) {
    ctx.step = uint64_t(i);
    for (auto &[id, buffer] : inputs)
      exe.uploadFrom(id, *buffer, uint64_t(exe.hostBytes(id, batch)), batch);
    exe.run(batch, ctx);
  };
  auto wait = [&] { (void)exe.scalar(*prog.loss); };
  double secs = 0;
  // The peak of the whole run (preparing included: a cuDNN algorithm
  // search's workspace), and of the timed steps alone.
  uint64_t setupPeak = 0, stepsPeak = 0;
  try {
    for (int64_t i = 0; i < 3; ++i)
      step(i);
    wait();
    setupPeak = backend->peakBytes();
    backend->resetPeak();
    auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < steps; ++i)
      step(3 + i);
    wait();
    secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
               .count();
    stepsPeak = backend->peakBytes();
    // Profiled apart from the timed steps, which it would slow down.
    if (a.flags.count("--profile")) {
      exe.setProfiling(true);
      for (int64_t i = 0; i < steps; ++i)
        step(3 + steps + i);
      wait();
      exe.setProfiling(false);
    }
  } catch (const std::exception &e) {
    abortOtherRanks(e); // before the backend (and NCCL) unwinds
    throw;
  }
  if (comm.rank() != 0)
    return 0;
  const double flops = double(exec::modelFlops(prog, batch)) * comm.size();
  std::cout << fmt::format(
      "program {}{} on {}: batch {}{}, {} steps: {:.1f} images/s, {:.3f} "
      "ms/step, peak memory {} ({} bytes), {:.3g} model TFLOP/s ({:.3g} "
      "GFLOP/step in convolutions and fc); the timed steps alone peak at {} "
      "({} bytes)\n",
      name, training ? "" : " (evaluation: no update)", backend->name(), batch,
      comm.size() > 1 ? fmt::format(" x {} ranks", comm.size()) : "", steps,
      double(batch * comm.size() * steps) / secs, 1e3 * secs / double(steps),
      human(int64_t(std::max(setupPeak, stepsPeak))),
      std::max(setupPeak, stepsPeak), flops * double(steps) / secs * 1e-12,
      flops * 1e-9, human(int64_t(stepsPeak)), stepsPeak);
  if (a.flags.count("--profile"))
    printProfile(exe, steps, batch);
  if (std::string report = backend->runReport(); !report.empty())
    std::cout << report << "\n";
  return 0;
}

/// `-o` or `--out`, required.
std::string outOption(const Args &a) {
  std::string out = option(a, "--out"); // or -o
  if (out.empty())
    throw UsageError(fmt::format("'{}' needs -o FILE", a.command));
  refuseInputAsOutput(a, out);
  return out;
}

/// `netrun export`: the classifier under torchvision's names.
int cmdExport(const Args &a) {
  std::string format = option(a, "--format");
  if (format.empty())
    throw UsageError(fmt::format("'export' needs --format (one of: {})",
                                 interop::formatNames()));
  interop::checkFormat(format);
  std::string out = outOption(a);
  plan::Plan p = plan::loadPlan(a.trainer);
  std::unique_ptr<exec::Backend> backend = exec::makeBackend("reference");
  exec::ParamStore store(p, 1, *backend);
  loadTrainedParams(a, p, store);
  io::TensorFile file =
      interop::exportTensors(p, store.toTensors(false), format);
  file.metadata["format"] = "pt";
  io::writeSafetensors(out, file);
  std::cout << fmt::format("wrote {} ({} tensors, {})\n", out,
                           file.tensors.size(), format);
  return 0;
}

/// `netrun infer`: the logits of given images.
int cmdInfer(const Args &a) {
  std::string images = option(a, "--images");
  if (images.empty())
    throw UsageError("'infer' needs --images FILE");
  std::string out = outOption(a);
  plan::Plan p = plan::loadPlan(a.trainer);
  io::TensorFile in = io::readSafetensors(images);
  std::unique_ptr<exec::Backend> backend = exec::makeBackend(backendOption(a));
  exec::ParamStore store(p, 1, *backend);
  loadTrainedParams(a, p, store);
  io::TensorFile logits = interop::inferLogits(p, store, *backend, in, images);
  io::writeSafetensors(out, logits);
  std::cout << fmt::format("wrote {} (logits of {} images)\n", out,
                           logits.tensors.at("logits").shape[0]);
  return 0;
}

static int run(int argc, char **argv);

int main(int argc, char **argv) {
  int status = run(argc, argv);
  // A result nobody received (`netrun eval T > /dev/full`) is a failure.
  errno = 0;
  std::cout.flush();
  if (!std::cout) {
    std::cerr << "netrun: error: cannot write to standard output"
              << (errno ? std::string(": ") + std::strerror(errno) : "")
              << "\n";
    return 1;
  }
  return status;
}

static int run(int argc, char **argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      return 0;
    }
  }
  try {
    Args a = parseArgs(argc, argv);
    if (a.command == "info")
      return cmdInfo(a);
    if (a.command == "train")
      return cmdTrain(a);
    if (a.command == "reconstruct")
      return cmdReconstruct(a);
    if (a.command == "plot")
      return cmdPlot(a);
    if (a.command == "bench")
      return cmdBench(a);
    if (a.command == "data")
      return cmdData(a);
    if (a.command == "export")
      return cmdExport(a);
    if (a.command == "infer")
      return cmdInfer(a);
    return cmdEval(a);
  } catch (const UsageError &e) {
    std::cerr << "netrun: " << io::printable(e.what(), false)
              << "\n(netrun --help for usage)\n";
    return 1;
  } catch (const train::CollectiveError &e) {
    // Every rank stopped here with the same message: rank 0 says it.
    dist::Communicator *w = dist::worldIfMade();
    if (!w || w->rank() == 0)
      std::cerr << "netrun: error: " << io::printable(e.what(), false) << "\n";
    return 1;
  } catch (const interop::InteropError &e) {
    // One line each, as every error, however its names are spelt.
    std::cerr << "netrun: error: " << io::printable(e.what(), false) << "\n";
    for (const std::string &line : e.lines)
      std::cerr << "  " << io::printable(line, false) << "\n";
    return 1;
  } catch (const std::bad_alloc &e) {
    abortOtherRanks(e);
    std::cerr << "netrun: error: out of host memory in '" << argv[1] << "' ("
              << e.what() << ")\n";
    return 1;
  } catch (const std::exception &e) {
    abortOtherRanks(e);
    std::cerr << "netrun: error: " << io::printable(e.what(), false) << "\n";
    return 1;
  } catch (...) {
    std::cerr << "netrun: error: unknown exception\n";
    return 1;
  }
}
