//===- ImageFolder.h - folders of JPEG and PNG images -----------*- C++ -*-===//
//
// torchvision's ImageFolder layout, with its two splits:
//   ROOT/train/<class>/<image>.jpg|.jpeg|.png
//   ROOT/val/<class>/<image>...
// Class names sorted (byte order) are the labels 0..K-1; the images of a
// class are taken in sorted order; files with other extensions and hidden
// files are ignored, as torchvision ignores them. The scan checks the layout
// up front (before any training): both splits present, no class folder
// without images, the same classes in train/ and val/, as many classes as
// the network's `classes`.
//
// An ImageLoader turns images into batches on a pool of worker threads:
// read, decode, the paper's augmentation (data/Resample.h) and
// normalisation, one image per task. Each image's random draws (scale,
// crop offset, mirror) are a pure function of (batch key, image index), so
// batches are the same for any number of threads. A bad image (unreadable,
// corrupt, truncated, alpha or 16-bit PNG, grey in a colour net, smaller
// than the crop) is an error naming the file; with `skipBad` it is counted
// and the next image of the split takes its place.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_DATA_IMAGEFOLDER_H
#define NETC_RUNTIME_DATA_IMAGEFOLDER_H

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace netc::data {

class ImageFolderError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// One split: its folder, the class names, and every image with its label.
struct ImageFolderSplit {
  std::string dir;
  std::vector<std::string> classes;
  std::vector<std::string> files;
  std::vector<int32_t> labels;
};

struct ImageFolderSets {
  ImageFolderSplit train, val;
};

/// Scans `root`/train and `root`/val, checking the layout against the
/// network's `classes`. Every problem is an ImageFolderError naming the
/// folder.
ImageFolderSets scanImageFolder(const std::string &root, int64_t classes);

/// Runs a loop's iterations on a fixed set of threads (the caller's among
/// them). One loop at a time: concurrent calls are serialised.
class WorkerPool {
public:
  /// `threads` in all, counting the caller (at least 1).
  explicit WorkerPool(int threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool &) = delete;
  WorkerPool &operator=(const WorkerPool &) = delete;

  int threads() const { return int(workers_.size()) + 1; }
  /// Calls fn(i) for every i in [0, n) and returns when all are done. `fn`
  /// must not throw.
  void parallelFor(int64_t n, const std::function<void(int64_t)> &fn);

private:
  void loop();
  std::mutex callMutex_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t)> *fn_ = nullptr;
  int64_t n_ = 0;
  std::atomic<int64_t> next_{0};
  uint64_t generation_ = 0;
  size_t finished_ = 0;
  bool stop_ = false;
  /// Declared last: the threads use every member above.
  std::vector<std::thread> workers_;
};

/// The augmentation and normalisation of an image folder.
struct ImageAugment {
  int64_t channels = 3; ///< 1 (grey) or 3
  int64_t cropHeight = 0, cropWidth = 0;
  int64_t scaleMin = 0, scaleMax = 0; ///< shorter side; 0: no resize
  int64_t evalScale = 0;              ///< 0: scaleMin
  bool mirror = false;
  bool bgr = false; ///< write the colour channels as B, G, R
  bool skipBad = false;
  std::vector<float> mean, invStd; ///< one per channel, in pixel units
};

class ImageLoader {
public:
  ImageLoader(ImageFolderSplit split, ImageAugment augment,
              std::shared_ptr<WorkerPool> pool);
  /// The images, labels and threads of `images` with another augmentation
  /// (dense evaluation: another size and scale); nothing is scanned again.
  ImageLoader(const ImageLoader &images, ImageAugment augment);
  int64_t size() const { return int64_t(split_->files.size()); }
  const ImageFolderSplit &split() const { return *split_; }
  const ImageAugment &augment() const { return aug_; }
  int64_t sampleFloats() const {
    return aug_.channels * aug_.cropHeight * aug_.cropWidth;
  }

  /// Images `indices[0..n)` into images [n, C, H, W] and labels [n], on the
  /// pool; `augment` draws scale, crop and mirror from (key, index), else
  /// the evaluation crop. Returns how many rows hold another image than
  /// the one asked for, which was bad (always 0 without skipBad, which
  /// throws the first bad image's error instead); `replaced`, if given,
  /// gets 1 for those rows and 0 for the others.
  int64_t makeBatch(const int64_t *indices, int64_t n, bool augment,
                    uint64_t key, float *images, int32_t *labels,
                    uint8_t *replaced = nullptr) const;

  /// One image into `dst` ([C, H, W]); throws if it is bad.
  void makeSample(int64_t index, bool augment, uint64_t key, float *dst) const;

private:
  /// Shared by the loaders made from one scan (a large split's paths are
  /// worth not copying).
  std::shared_ptr<const ImageFolderSplit> split_;
  ImageAugment aug_;
  std::shared_ptr<WorkerPool> pool_;
};

} // namespace netc::data

#endif // NETC_RUNTIME_DATA_IMAGEFOLDER_H
