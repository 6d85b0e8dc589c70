//===- Data.cpp - training and test images for a trainer ------------------===//

#include "runtime/train/Data.h"
#include "runtime/data/Cifar.h"
#include "runtime/data/Resample.h"
#include "runtime/io/File.h"
#include "runtime/kernels/Reference.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <random>

namespace netc::train {

std::string defaultDataDir(const std::string &kind) {
  if (kind == "fashion-mnist")
    return "/usr/share/datasets/fashion-mnist";
  if (kind == "mnist")
    return "/usr/share/datasets/mnist";
  return "";
}

DataOptions dataOptions(const plan::Plan &plan,
                        const std::string &dirOverride) {
  const plan::DataSpec &d = plan.data;
  DataOptions o;
  o.kind = d.kind;
  const bool images = o.kind == "images";
  if (o.kind != "fashion-mnist" && o.kind != "mnist" &&
      !data::isCifarKind(o.kind) && !images)
    throw DataError(fmt::format("{}: data.kind: '{}' is not supported by this "
                                "runtime (fashion-mnist, mnist, cifar10, "
                                "cifar100, images)",
                                plan.file, o.kind));
  o.dir = !dirOverride.empty() ? dirOverride
          : !d.path.empty()    ? d.path
                               : defaultDataDir(o.kind);
  if (o.dir.empty())
    throw DataError(fmt::format("{}: data.path: no folder for '{}' data: give "
                                "`path` in the data section or netrun --data",
                                plan.file, o.kind));
  o.subset = d.subset;
  o.testSubset = d.testSubset;
  o.mirror = d.mirror;
  o.crop = d.crop;
  o.cropPad = d.cropPad;
  o.mean = d.mean;
  o.std = d.std;
  o.channels = plan.input[0];
  o.height = plan.input[1];
  o.width = plan.input[2];
  o.classes = plan.classes;
  for (int64_t s : d.scale)
    if (s != 0 && !images)
      throw DataError(fmt::format("{}: data.scale: rescaling is not supported "
                                  "for IDX or CIFAR data",
                                  plan.file));
  if (images) {
    if (d.scale.size() == 2) {
      o.scaleMin = d.scale[0];
      o.scaleMax = d.scale[1];
    }
    o.evalScale = d.evalScale;
    o.bgr = d.channelOrder == "bgr";
    o.skipBad = d.skipBad;
    o.workers = d.workers;
  }
  auto checkLen = [&](const std::vector<double> &v, const char *what) {
    if (v.size() > 1 && int64_t(v.size()) != o.channels)
      throw DataError(fmt::format("{}: data.{}: {} values for {} channels",
                                  plan.file, what, v.size(), o.channels));
  };
  checkLen(o.mean, "mean");
  checkLen(o.std, "std");
  return o;
}

ImageData::ImageData(data::ImageSet set, int64_t subset,
                     const DataOptions &opts)
    : set_(std::make_shared<const data::ImageSet>(std::move(set))),
      opts_(opts) {
  count_ = subset > 0 ? std::min(subset, set_->count) : set_->count;
}

ImageData::ImageData(std::shared_ptr<const data::ImageLoader> loader,
                     int64_t subset, const DataOptions &opts)
    : loader_(std::move(loader)), opts_(opts) {
  count_ = subset > 0 ? std::min(subset, loader_->size()) : loader_->size();
}

ImageData ImageData::atDenseScale(int64_t height, int64_t width,
                                  int64_t scale) const {
  ImageData d = *this;
  d.opts_.height = height;
  d.opts_.width = width;
  d.opts_.evalScale = scale;
  d.opts_.crop = d.opts_.cropPad = 0;
  // (An IDX or CIFAR set is resized by makeScaledBatch, which checks the
  // size it gets.)
  if (loader_) {
    if (scale < std::max(height, width))
      throw DataError(fmt::format("{}: resizing the shorter side to {} "
                                  "leaves less than the {}x{} crop",
                                  opts_.dir, scale, width, height));
    data::ImageAugment aug = loader_->augment();
    aug.cropHeight = height;
    aug.cropWidth = width;
    aug.evalScale = scale;
    d.loader_ = std::make_shared<const data::ImageLoader>(*loader_, aug);
  }
  return d;
}

std::vector<int64_t> ImageData::order(uint64_t key) const {
  std::vector<int64_t> idx(static_cast<size_t>(count_));
  std::iota(idx.begin(), idx.end(), 0);
  if (key != 0) {
    std::mt19937_64 rng(key);
    std::shuffle(idx.begin(), idx.end(), rng);
  }
  return idx;
}

/// The per-channel value of a `mean` or `std` list (empty: `dflt`).
static double perChannel(const std::vector<double> &v, int64_t c, double dflt) {
  return v.empty() ? dflt : v.size() == 1 ? v[0] : v[size_t(c)];
}

int64_t ImageData::makeBatch(const int64_t *indices, int64_t n, bool augment,
                             uint64_t key, float *images, int32_t *labels,
                             uint8_t *replaced) const {
  if (loader_)
    return loader_->makeBatch(indices, n, augment, key, images, labels,
                              replaced);
  if (replaced) // IDX and CIFAR sets are read whole: no image is bad here
    std::fill(replaced, replaced + n, uint8_t(0));
  if (!augment && opts_.evalScale > 0)
    return makeScaledBatch(indices, n, images, labels);
  const int64_t rows = set_->rows, cols = set_->cols, pad = opts_.cropPad;
  const int64_t oh = opts_.height, ow = opts_.width;
  const int64_t C = opts_.channels;
  const int64_t ph = rows + 2 * pad, pw = cols + 2 * pad;
  for (int64_t b = 0; b < n; ++b) {
    int64_t s = indices[b];
    const uint8_t *img = set_->images.data() + s * set_->channels * rows * cols;
    labels[b] = int32_t(set_->labels[size_t(s)]);
    int64_t y0 = (ph - oh) / 2, x0 = (pw - ow) / 2;
    bool flip = false;
    if (augment) {
      uint64_t h = kernels::splitmix64(key ^ kernels::splitmix64(uint64_t(s)));
      if (ph > oh)
        y0 = int64_t(h % uint64_t(ph - oh + 1));
      h = kernels::splitmix64(h);
      if (pw > ow)
        x0 = int64_t(h % uint64_t(pw - ow + 1));
      h = kernels::splitmix64(h);
      flip = opts_.mirror && (h >> 63);
    }
    for (int64_t c = 0; c < C; ++c) {
      double mean = perChannel(opts_.mean, c, 0.0);
      double sd = perChannel(opts_.std, c, 255.0);
      float fmean = float(mean), inv = float(1.0 / sd);
      float *dst = images + (b * C + c) * oh * ow;
      const uint8_t *plane = img + c * rows * cols;
      for (int64_t y = 0; y < oh; ++y) {
        int64_t sy = y0 + y - pad;
        for (int64_t x = 0; x < ow; ++x) {
          int64_t sx = x0 + (flip ? ow - 1 - x : x) - pad;
          float v = 0.0f;
          if (sy >= 0 && sy < rows && sx >= 0 && sx < cols)
            v = float(plane[sy * cols + sx]);
          dst[y * ow + x] = (v - fmean) * inv;
        }
      }
    }
  }
  return 0;
}

int64_t ImageData::makeScaledBatch(const int64_t *indices, int64_t n,
                                   float *images, int32_t *labels) const {
  // Dense evaluation at a scale: the shorter side resized to evalScale (an
  // antialiased bilinear filter, as for image folders), the centre
  // height x width of it.
  const int64_t rows = set_->rows, cols = set_->cols;
  const int64_t oh = opts_.height, ow = opts_.width, C = opts_.channels;
  data::Size2 r = data::resizedSize(rows, cols, opts_.evalScale);
  if (r.height < oh || r.width < ow)
    throw DataError(fmt::format(
        "images of {}x{} resized to the scale {} are {}x{}, smaller than "
        "the {}x{} the evaluation program takes",
        rows, cols, opts_.evalScale, r.height, r.width, oh, ow));
  std::vector<float> mean(static_cast<size_t>(C)), inv(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    mean[size_t(c)] = float(perChannel(opts_.mean, c, 0.0));
    inv[size_t(c)] = float(1.0 / perChannel(opts_.std, c, 255.0));
  }
  std::vector<uint8_t> hwc(size_t(rows * cols * C));
  for (int64_t b = 0; b < n; ++b) {
    int64_t s = indices[b];
    const uint8_t *img = set_->images.data() + s * set_->channels * rows * cols;
    labels[b] = int32_t(set_->labels[size_t(s)]);
    for (int64_t c = 0; c < C; ++c) // the set is planar, the resizer not
      for (int64_t p = 0; p < rows * cols; ++p)
        hwc[size_t(p * C + c)] = img[c * rows * cols + p];
    std::vector<float> win = data::resampleWindow(
        hwc.data(), rows, cols, int(C), r.height, r.width,
        (r.height - oh) / 2, (r.width - ow) / 2, oh, ow);
    data::writePlanar(win, oh, ow, int(C), false, false, mean.data(),
                      inv.data(), images + b * C * oh * ow);
  }
  return 0;
}

/// An image folder's train/ and val/ (as the test set), checked against the
/// network; the images themselves are read as batches are made.
static Datasets loadImageFolder(const DataOptions &opts) {
  if (opts.channels != 1 && opts.channels != 3)
    throw DataError(fmt::format("{}: image folders give 1 (grey) or 3 (RGB) "
                                "channels but the network input has {}",
                                opts.dir, opts.channels));
  data::ImageAugment aug;
  aug.channels = opts.channels;
  aug.cropHeight = opts.crop ? opts.crop : opts.height;
  aug.cropWidth = opts.crop ? opts.crop : opts.width;
  if (aug.cropHeight != opts.height || aug.cropWidth != opts.width)
    throw DataError(fmt::format("{}: crop {} gives {}x{} images but the "
                                "network input is {}x{}",
                                opts.dir, opts.crop, opts.crop, opts.crop,
                                opts.height, opts.width));
  if (opts.cropPad != 0)
    throw DataError(fmt::format("{}: crop padding is not supported for "
                                "image folders",
                                opts.dir));
  aug.scaleMin = opts.scaleMin;
  aug.scaleMax = opts.scaleMax;
  aug.evalScale = opts.evalScale;
  const int64_t side = std::max(aug.cropHeight, aug.cropWidth);
  for (int64_t s : {aug.scaleMin, aug.evalScale})
    if (s != 0 && s < side)
      throw DataError(fmt::format("{}: resizing the shorter side to {} "
                                  "leaves less than the {}x{} crop",
                                  opts.dir, s, aug.cropWidth, aug.cropHeight));
  if (aug.scaleMax < aug.scaleMin)
    throw DataError(fmt::format("{}: scale {}..{} is not ascending", opts.dir,
                                aug.scaleMin, aug.scaleMax));
  aug.mirror = opts.mirror;
  aug.bgr = opts.bgr;
  aug.skipBad = opts.skipBad;
  for (int64_t c = 0; c < opts.channels; ++c) {
    aug.mean.push_back(float(perChannel(opts.mean, c, 0.0)));
    aug.invStd.push_back(float(1.0 / perChannel(opts.std, c, 255.0)));
  }
  data::ImageFolderSets sets = data::scanImageFolder(opts.dir, opts.classes);
  // A subset is the split: skip-bad's replacement for a bad image stays in
  // it, so every image it skips is also asked for, and counted, on its own.
  auto keepSubset = [](data::ImageFolderSplit &s, int64_t subset) {
    if (subset > 0 && subset < int64_t(s.files.size())) {
      s.files.resize(size_t(subset));
      s.labels.resize(size_t(subset));
    }
  };
  keepSubset(sets.train, opts.subset);
  keepSubset(sets.val, opts.testSubset);
  int threads = opts.workers > 0
                    ? int(std::min<int64_t>(opts.workers, 1024))
                    : int(std::max(1u, std::thread::hardware_concurrency()));
  auto pool = std::make_shared<data::WorkerPool>(threads);
  auto train = std::make_shared<const data::ImageLoader>(std::move(sets.train),
                                                         aug, pool);
  auto val =
      std::make_shared<const data::ImageLoader>(std::move(sets.val), aug, pool);
  return Datasets{ImageData(train, opts.subset, opts),
                  ImageData(val, opts.testSubset, opts)};
}

/// One IDX or CIFAR split, checked against the network input.
static data::ImageSet loadImageSet(const DataOptions &opts, Split split) {
  const bool cifar = data::isCifarKind(opts.kind),
             train = split == Split::Train;
  const int64_t channels = cifar ? 3 : 1;
  if (opts.channels != channels)
    throw DataError(fmt::format("{}: {} images have {} channel(s) but the "
                                "network input has {}",
                                opts.dir, cifar ? opts.kind : "IDX", channels,
                                opts.channels));
  data::ImageSet s =
      cifar ? data::loadCifar(opts.dir, opts.kind, train, int(opts.classes))
            : data::loadIdxImageSet(opts.dir, train ? "train" : "t10k",
                                    int(opts.classes));
  // The crop must fit the padded image first; then what it produces (or,
  // without a crop, the image itself) must be the network's input.
  if (opts.crop > 0 && (opts.crop > s.rows + 2 * opts.cropPad ||
                        opts.crop > s.cols + 2 * opts.cropPad))
    throw DataError(fmt::format("{}: crop {} is larger than the {}x{} images "
                                "padded by {}",
                                opts.dir, opts.crop, s.rows, s.cols,
                                opts.cropPad));
  if (opts.crop > 0 && (opts.crop != opts.height || opts.crop != opts.width))
    throw DataError(fmt::format("{}: crop {} gives {}x{} images but the "
                                "network input is {}x{}",
                                opts.dir, opts.crop, opts.crop, opts.crop,
                                opts.height, opts.width));
  // (With an evaluation scale, makeScaledBatch resizes them: dense
  // evaluation.)
  if (opts.crop == 0 && opts.evalScale == 0 &&
      (s.rows != opts.height || s.cols != opts.width))
    throw DataError(fmt::format("{}: the {} images are {}x{} but the "
                                "network input is {}x{}",
                                opts.dir, train ? "training" : "test", s.rows,
                                s.cols, opts.height, opts.width));
  return s;
}

Datasets loadDatasets(const DataOptions &opts) {
  if (opts.kind == "images")
    return loadImageFolder(opts);
  data::ImageSet train = loadImageSet(opts, Split::Train);
  data::ImageSet test = loadImageSet(opts, Split::Test);
  if (train.rows != test.rows || train.cols != test.cols)
    throw DataError(fmt::format("{}: train images are {}x{} but test images "
                                "{}x{}",
                                opts.dir, train.rows, train.cols, test.rows,
                                test.cols));
  return Datasets{ImageData(std::move(train), opts.subset, opts),
                  ImageData(std::move(test), opts.testSubset, opts)};
}

ImageData loadSplit(const DataOptions &opts, Split split) {
  if (opts.kind == "images") { // both scanned: together they fix the labels
    Datasets sets = loadImageFolder(opts);
    return split == Split::Train ? std::move(sets.train) : std::move(sets.test);
  }
  return ImageData(loadImageSet(opts, split),
                   split == Split::Train ? opts.subset : opts.testSubset, opts);
}

bool isDataPath(const DataOptions &opts, const std::string &path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  // Where a write to `path` lands: the writers follow links, dangling ones
  // too (io::outputTarget). The path as named counts as well: an image of
  // val/ may be a link to a file elsewhere, which the write would replace.
  std::string target = path;
  try {
    target = io::outputTarget(path);
  } catch (const std::exception &) { // (a directory, say: the writer's error)
  }
  const fs::path named = fs::absolute(path, ec).lexically_normal();
  const fs::path real = fs::weakly_canonical(fs::absolute(target, ec), ec);
  auto lands = [&](const fs::path &dir) {
    return io::isWithin(named, dir) || io::isWithin(real, dir);
  };
  if (opts.kind == "images") {
    for (const char *split : {"train", "val"}) {
      const fs::path dir =
          fs::absolute(fs::path(opts.dir) / split, ec).lexically_normal();
      if (lands(dir) || lands(fs::canonical(dir, ec)))
        return true;
      // Its class folders, which may be links out of the image folder.
      for (fs::directory_iterator it(dir, ec), end; !ec && it != end;
           it.increment(ec)) {
        std::error_code tec;
        if (it->is_directory(tec) && lands(fs::canonical(it->path(), tec)))
          return true;
      }
    }
    return false;
  }
  std::vector<std::string> files = data::isCifarKind(opts.kind)
                                       ? data::cifarFiles(opts.dir, opts.kind)
                                       : data::idxFiles(opts.dir);
  return std::any_of(files.begin(), files.end(), [&](const std::string &f) {
    std::error_code fec;
    return fs::equivalent(target, f, fec) || // the same file, a hard link too
           named == fs::absolute(f, fec).lexically_normal() ||
           real == fs::weakly_canonical(fs::absolute(f, fec), fec);
  });
}

//===----------------------------------------------------------------------===//
// Prefetcher
//===----------------------------------------------------------------------===//

Prefetcher::Prefetcher() {
  thread_ = std::thread([this] { loop(); });
}

Prefetcher::~Prefetcher() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Prefetcher::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (stop_)
      return; // jobs still queued are dropped with their owner
    std::function<void()> job = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    std::exception_ptr err;
    try {
      job();
    } catch (...) {
      err = std::current_exception();
    }
    lock.lock();
    ++finished_;
    if (err)
      errors_.emplace(finished_, err);
    cv_.notify_all();
  }
}

uint64_t Prefetcher::submit(std::function<void()> job) {
  uint64_t ticket;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(job));
    ticket = ++submitted_;
  }
  cv_.notify_all();
  return ticket;
}

void Prefetcher::waitFor(uint64_t ticket) {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return finished_ >= ticket; });
  auto first = errors_.begin();
  if (first != errors_.end() && first->first <= ticket) {
    std::exception_ptr e = first->second;
    errors_.erase(first);
    std::rethrow_exception(e);
  }
}

void Prefetcher::drain() {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return finished_ >= submitted_; });
  errors_.clear();
}

void Prefetcher::wait() {
  uint64_t last;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    last = submitted_;
  }
  waitFor(last);
}

bool Prefetcher::busy() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return finished_ < submitted_;
}

} // namespace netc::train
