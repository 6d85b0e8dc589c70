//===- Data.h - training and test images for a trainer ----------*- C++ -*-===//
//
// (Fashion-)MNIST from IDX files, the plan's `data` augmentation and
// normalisation, and a prefetch thread that prepares the next batch while the
// current step runs.
//
// Per sample, in this order: zero padding by crop_pad (raw pixel value 0,
// before normalisation), a crop of crop x crop (random offset when training,
// centred for evaluation; crop 0 keeps the image size), a random horizontal
// mirror (training, p = 1/2, if `mirror`), then (x - mean[c]) / std[c]
// (mean defaults to 0, std to 255). Randomness is counter-based: a pure
// function of (seed, key, sample), so resumed runs see the same batches.
//
// `images` data (folders of JPEGs and PNGs, data/ImageFolder.h) is not held
// in memory: each batch is read, decoded and augmented (scale, crop, mirror)
// on a pool of worker threads, while the prefetch thread's batch is one
// step ahead of training.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_TRAIN_DATA_H
#define NETC_RUNTIME_TRAIN_DATA_H

#include "runtime/data/Idx.h"
#include "runtime/data/ImageFolder.h"
#include "runtime/plan/Plan.h"

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace netc::train {

class DataError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

struct DataOptions {
  std::string kind = "fashion-mnist";
  std::string dir;
  int64_t subset = 0, testSubset = 0;
  bool mirror = false;
  int64_t crop = 0, cropPad = 0;
  std::vector<double> mean, std;
  int64_t channels = 1, height = 28, width = 28; ///< the network input
  // `images` only:
  /// `images`: the training scales and the evaluation one; evalScale also
  /// serves dense evaluation of IDX and CIFAR sets (the shorter side
  /// resized to it, the centre height x width).
  int64_t scaleMin = 0, scaleMax = 0, evalScale = 0;
  bool bgr = false, skipBad = false;
  int64_t workers = 0; ///< decoding threads; 0: one per core
  int64_t classes = 10;
};

/// The default folder of a data kind ("" if unknown).
std::string defaultDataDir(const std::string &kind);
/// Options from the plan; a non-empty `dirOverride` (--data) wins over the
/// plan's path, which wins over the default folder.
DataOptions dataOptions(const plan::Plan &plan, const std::string &dirOverride);

/// One split (train or test), subset applied, ready to make batches.
class ImageData {
public:
  ImageData(data::ImageSet set, int64_t subset, const DataOptions &opts);
  /// Images read from a folder as batches are made.
  ImageData(std::shared_ptr<const data::ImageLoader> loader, int64_t subset,
            const DataOptions &opts);
  int64_t size() const { return count_; }
  int64_t sampleFloats() const {
    return opts_.channels * opts_.height * opts_.width;
  }

  /// The same images, read or scanned once, made into evaluation batches
  /// for dense evaluation: each image's shorter side resized to `scale`
  /// and its centre height x width, without a crop.
  ImageData atDenseScale(int64_t height, int64_t width, int64_t scale) const;

  /// A permutation of [0, size()) drawn from `key` (std::mt19937_64 +
  /// std::shuffle), or the identity if key is 0.
  std::vector<int64_t> order(uint64_t key) const;

  /// Writes samples `indices[0..n)` (normalised, augmented if `augment`)
  /// into images [n, C, H, W] and labels [n]. `key` seeds the augmentation.
  /// Returns the number of rows whose image was bad and was replaced by the
  /// next good one (image folders with `skip-bad`; otherwise 0); `replaced`,
  /// if given, gets 1 for those rows and 0 for the others.
  int64_t makeBatch(const int64_t *indices, int64_t n, bool augment,
                    uint64_t key, float *images, int32_t *labels,
                    uint8_t *replaced = nullptr) const;

private:
  /// makeBatch for evaluation at opts.evalScale (IDX and CIFAR sets).
  int64_t makeScaledBatch(const int64_t *indices, int64_t n, float *images,
                          int32_t *labels) const;
  /// Shared by the copies atDenseScale makes; null for an image folder.
  std::shared_ptr<const data::ImageSet> set_;
  std::shared_ptr<const data::ImageLoader> loader_;
  int64_t count_;
  DataOptions opts_;
};

struct Datasets {
  ImageData train, test;
};
/// Loads `<dir>/train-*` and `<dir>/t10k-*` (IDX), the CIFAR batches, or
/// scans an image folder's train/ and val/; checks the image size against
/// the network input. Every problem is a DataError, data::IdxError,
/// data::CifarError or data::ImageFolderError.
Datasets loadDatasets(const DataOptions &opts);

enum class Split { Train, Test };
/// One split, checked as loadDatasets checks it, without reading the other
/// split's IDX or CIFAR files: evaluating an intact test set does not need
/// an intact training set. (An image folder's train/ and val/ are both
/// scanned, as their class folders together define the labels; the images
/// themselves are read as batches are made.)
ImageData loadSplit(const DataOptions &opts, Split split);

/// Whether writing `path` could change the data set `opts` names: it is one
/// of its IDX or CIFAR files, or lies in an image folder's train/ or val/
/// (links followed). An output there would overwrite what the run reads.
bool isDataPath(const DataOptions &opts, const std::string &path);

/// Runs jobs in the order they were submitted, one at a time, on a
/// background thread: a bounded queue of batches being prepared ahead of
/// the step (the caller bounds it by its staging areas).
class Prefetcher {
public:
  Prefetcher();
  ~Prefetcher();
  Prefetcher(const Prefetcher &) = delete;
  Prefetcher &operator=(const Prefetcher &) = delete;

  /// Queues `job`; returns its ticket for waitFor().
  uint64_t submit(std::function<void()> job);
  /// Blocks until the job `ticket` (and so every earlier one) finished;
  /// rethrows the first exception of a job up to it.
  void waitFor(uint64_t ticket);
  /// Blocks until every queued job finished; rethrows the first exception.
  void wait();
  /// Blocks until every queued job finished and forgets their exceptions:
  /// for jobs whose results will not be used (the batches queued ahead of
  /// a run that stops).
  void drain();
  bool busy() const;

private:
  void loop();
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  uint64_t submitted_ = 0, finished_ = 0;
  bool stop_ = false;
  /// The exceptions of jobs not yet waited for, by ticket: each waitFor
  /// reports its own job's (and the earlier ones'), not just the first.
  std::map<uint64_t, std::exception_ptr> errors_;
  /// Declared last and started in the constructor's body: loop() touches
  /// every member above, so they must all be constructed before it runs.
  std::thread thread_;
};

} // namespace netc::train

#endif // NETC_RUNTIME_TRAIN_DATA_H
