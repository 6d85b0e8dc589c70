//===- ImageFolder.cpp - folders of JPEG and PNG images -------------------===//

#include "runtime/data/ImageFolder.h"
#include "runtime/data/Resample.h"
#include "runtime/io/File.h"
#include "runtime/io/Image.h"
#include "runtime/kernels/Reference.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <exception>
#include <filesystem>
#include <iterator>
#include <map>
#include <string_view>

#include <unistd.h>

namespace fs = std::filesystem;

namespace netc::data {

//===----------------------------------------------------------------------===//
// The folder scan
//===----------------------------------------------------------------------===//

/// The largest image file read (a bound, as for every file the runtime reads).
static constexpr uint64_t kMaxImageBytes = uint64_t(256) << 20;

static bool isImageName(const std::string &name) {
  if (name.empty() || name[0] == '.')
    return false;
  size_t dot = name.rfind('.');
  if (dot == std::string::npos)
    return false;
  std::string ext = name.substr(dot + 1);
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char ch) { return char(std::tolower(ch)); });
  return ext == "jpg" || ext == "jpeg" || ext == "png";
}

/// The entries of one folder that are folders (links to folders included)
/// and image files; names starting with '.' are neither.
struct FolderEntries {
  std::vector<std::string> folders, images;
  std::vector<std::string> linkedImages; ///< those of `images` that are links
};

/// The sorted entries of `dir`; every failure is an ImageFolderError naming
/// `dir`.
static FolderEntries listDir(const fs::path &dir) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  FolderEntries e;
  for (; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.empty() || name[0] == '.')
      continue;
    std::error_code tec;
    if (it->is_directory(tec)) {
      e.folders.push_back(name);
    } else if (isImageName(name)) {
      e.images.push_back(name);
      if (it->is_symlink(tec))
        e.linkedImages.push_back(name);
    }
  }
  if (ec)
    throw ImageFolderError(fmt::format("{}: cannot list the folder: {}",
                                       dir.string(), ec.message()));
  std::sort(e.folders.begin(), e.folders.end());
  std::sort(e.images.begin(), e.images.end());
  return e;
}

/// Bounds on one class folder's walk: links can make a folder tree that is
/// small on disk but enormous to walk (each level linking twice to the next).
static constexpr size_t kMaxClassFolders = 1'000'000;
static constexpr size_t kMaxFolderDepth = 64;

/// Whether the walk from `dir` into `path` inside it passes through a
/// folder it never enters (a name starting with '.').
static bool throughHidden(const fs::path &path, const fs::path &dir) {
  fs::path rel = path.lexically_relative(dir);
  return std::any_of(rel.begin(), rel.end(), [](const fs::path &part) {
    return part.string().rfind('.', 0) == 0 && part != "." && part != "..";
  });
}

/// A class folder of either split: as named, and canonical (links
/// resolved).
struct ClassFolder {
  fs::path dir, real;
};

/// One class folder's walk.
struct ClassWalk {
  const ClassFolder *self = nullptr;
  /// Every class folder of both splits: the walk may not reach into
  /// another one through a link.
  const std::vector<ClassFolder> *classes = nullptr;
  /// The folders that linked images point into (as the links name them),
  /// each resolved and checked once: a symlink farm (an ImageNet subset
  /// made of links) costs a readlink per image, not a path resolution.
  /// The value: the canonical folder, empty if it cannot be resolved.
  std::map<std::string, fs::path> linkFolders;
  /// The canonical folders above the one being walked: the class folder's
  /// own ancestors first, so that no link leads back up into its split or
  /// further (that would add the other classes, or val/, to this one).
  std::vector<fs::path> above;
  size_t ancestors = 0; ///< how many of `above` are the class's ancestors
  size_t folders = 0;
  std::vector<std::pair<std::string, std::string>> found; ///< (folder, name)

  /// A link inside the class to what another class's walk counts (its
  /// folder, of either split, or anything in it but its hidden folders), or
  /// to a folder whose walk would reach one, would count those images
  /// twice, under this class too: an error rather than a silent
  /// mislabelling. (A class folder inside another's hidden folder is apart
  /// from it: neither walk reaches the other.)
  void checkLinkTarget(const fs::path &link, const fs::path &target,
                       bool isFolder) const {
    for (const ClassFolder &other : *classes)
      if (&other != self && ((io::isWithin(target, other.real) &&
                              !throughHidden(target, other.real)) ||
                             (isFolder && io::isWithin(other.real, target) &&
                              !throughHidden(other.real, target))))
        throw ImageFolderError(fmt::format(
            "{}: a link to {}, which {} the class folder {}: its images "
            "would also count as {}'s{}",
            link.string(), target.string(),
            target == other.real               ? "is"
            : io::isWithin(target, other.real) ? "is in"
                                               : "holds",
            other.dir.string(), self->dir.string(),
            other.dir.parent_path() != self->dir.parent_path()
                ? " (train/ and val/ sharing images: the test set trained on)"
                : ""));
  }

  /// Checks a linked image (`name` in `folder`) by the folder its link
  /// names: an image in another class's folder is an error. (A link that
  /// cannot be resolved is the decoder's error, in its batch.)
  void checkLinkedImage(const std::string &folder, const std::string &name) {
    const std::string link = folder + "/" + name;
    char text[4096];
    ssize_t n = ::readlink(link.c_str(), text, sizeof text);
    if (n <= 0 || size_t(n) == sizeof text)
      return;
    std::string_view to(text, size_t(n));
    size_t slash = to.rfind('/');
    std::string where = slash == std::string_view::npos
                            ? std::string()
                            : std::string(to.substr(0, slash));
    if (to[0] != '/')
      where = where.empty() ? folder : folder + "/" + where;
    if (where.empty()) // "/x.png": the root folder
      where = "/";
    auto [it, fresh] = linkFolders.try_emplace(where);
    if (fresh) {
      std::error_code ec;
      it->second = fs::canonical(where, ec);
      if (ec)
        it->second.clear();
      else // the folder decides: checked once
        checkLinkTarget(link, it->second, /*isFolder=*/false);
    }
  }

  /// Adds the images under `folder` to `found`; a link back to a folder
  /// above (a cycle) is not followed, another route into a folder is, as
  /// torchvision's os.walk(followlinks=True) follows it.
  void walk(const fs::path &folder) {
    std::error_code ec;
    fs::path real = fs::canonical(folder, ec);
    if (ec)
      throw ImageFolderError(fmt::format("{}: cannot resolve the folder: {}",
                                         folder.string(), ec.message()));
    if (std::find(above.begin(), above.end(), real) != above.end())
      return;
    checkLinkTarget(folder, real, /*isFolder=*/true);
    if (above.size() - ancestors >= kMaxFolderDepth ||
        ++folders > kMaxClassFolders)
      throw ImageFolderError(fmt::format(
          "{}: the class folder's subfolders (links followed) go deeper than "
          "{} levels or number more than {}",
          folder.string(), kMaxFolderDepth, kMaxClassFolders));
    FolderEntries e = listDir(folder);
    for (const std::string &name : e.linkedImages)
      checkLinkedImage(folder.string(), name);
    for (std::string &name : e.images)
      found.emplace_back(folder.string(), std::move(name));
    above.push_back(std::move(real));
    for (const std::string &name : e.folders)
      walk(folder / name);
    above.pop_back();
  }
};

/// The image files in a class folder and, as torchvision's ImageFolder walks
/// them, in its subfolders at any depth, links followed (but not back into
/// a folder above, nor into another class's folder): ordered by folder
/// path, then name.
static std::vector<std::string>
listClassImages(const ClassFolder &self,
                const std::vector<ClassFolder> &classes) {
  ClassWalk w;
  w.self = &self;
  w.classes = &classes;
  for (fs::path p = self.real.parent_path();; p = p.parent_path()) {
    w.above.push_back(p);
    if (p == p.parent_path())
      break;
  }
  w.ancestors = w.above.size();
  w.walk(self.dir);
  std::sort(w.found.begin(), w.found.end());
  std::vector<std::string> files;
  files.reserve(w.found.size());
  for (const auto &[folder, name] : w.found)
    files.push_back((fs::path(folder) / name).string());
  return files;
}

/// root/`name`'s class folders (its subfolders), resolved; the images come
/// later (scanImages), once every class folder of both splits is known.
static ImageFolderSplit listSplit(const fs::path &root, const char *name,
                                  std::vector<ClassFolder> &classFolders) {
  fs::path dir = root / name;
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw ImageFolderError(fmt::format(
        "{}: {}; an image folder holds train/ and val/, each with one "
        "subfolder of images per class",
        dir.string(), fs::exists(dir, ec) ? "not a folder" : "no such folder"));
  ImageFolderSplit s;
  s.dir = dir.string();
  s.classes = listDir(dir).folders;
  if (s.classes.empty())
    throw ImageFolderError(fmt::format(
        "{}: no class folders; put each class's images in a subfolder "
        "named after the class",
        s.dir));
  for (const std::string &c : s.classes) {
    fs::path classDir = dir / c;
    fs::path real = fs::canonical(classDir, ec);
    if (ec)
      throw ImageFolderError(fmt::format("{}: cannot resolve the folder: {}",
                                         classDir.string(), ec.message()));
    classFolders.push_back({classDir, real});
  }
  return s;
}

/// The images of `s`'s classes, whose folders are `folders` (in order).
static void scanImages(ImageFolderSplit &s, const ClassFolder *folders,
                       const std::vector<ClassFolder> &all) {
  for (size_t c = 0; c < s.classes.size(); ++c) {
    std::vector<std::string> files = listClassImages(folders[c], all);
    if (files.empty())
      throw ImageFolderError(
          fmt::format("{}: an empty class folder: no .jpg, .jpeg or .png "
                      "image in it or its subfolders",
                      folders[c].dir.string()));
    for (std::string &f : files) {
      s.files.push_back(std::move(f));
      s.labels.push_back(int32_t(c));
    }
  }
}

/// No class folder is another one, or inside another, through links (val/x
/// a link to train/x would test on the training images), except inside a
/// folder the walk never enters (a name starting with '.').
static void checkClassFoldersApart(std::vector<ClassFolder> folders) {
  std::sort(folders.begin(), folders.end(),
            [](const ClassFolder &a, const ClassFolder &b) {
              return a.real < b.real;
            });
  // Sorted, a folder comes before those inside it: `open` holds the
  // folders that hold the current one.
  std::vector<const ClassFolder *> open;
  for (const ClassFolder &inner : folders) {
    while (!open.empty() && !io::isWithin(inner.real, open.back()->real))
      open.pop_back();
    for (const ClassFolder *outer : open) {
      if (throughHidden(inner.real, outer->real))
        continue;
      throw ImageFolderError(fmt::format(
          "{}: {} through links: a class's images would count twice{}",
          inner.dir.string(),
          inner.real == outer->real
              ? fmt::format("the same folder as {}", outer->dir.string())
              : fmt::format("inside {}", outer->dir.string()),
          inner.dir.parent_path() != outer->dir.parent_path()
              ? " (in train/ and val/: the test set trained on)"
              : ""));
    }
    open.push_back(&inner);
  }
}

/// "a, b, c" (the first few of `names`).
static std::string listNames(const std::vector<std::string> &names) {
  const size_t shown = std::min<size_t>(names.size(), 6);
  std::string s = fmt::format(
      "{}", fmt::join(names.begin(), names.begin() + long(shown), ", "));
  if (names.size() > shown)
    s += fmt::format(" and {} more", names.size() - shown);
  return s;
}

ImageFolderSets scanImageFolder(const std::string &root, int64_t classes) {
  std::error_code ec;
  if (!fs::is_directory(root, ec))
    throw ImageFolderError(
        fmt::format("{}: {} (the image folder's root)", root,
                    fs::exists(root, ec) ? "not a folder" : "no such folder"));
  std::vector<ClassFolder> folders;
  ImageFolderSets sets{listSplit(root, "train", folders),
                       listSplit(root, "val", folders)};
  checkClassFoldersApart(folders);
  scanImages(sets.train, folders.data(), folders);
  scanImages(sets.val, folders.data() + sets.train.classes.size(), folders);
  const std::vector<std::string> &a = sets.train.classes, &b = sets.val.classes;
  if (a != b) {
    std::vector<std::string> onlyTrain, onlyVal;
    std::set_difference(a.begin(), a.end(), b.begin(), b.end(),
                        std::back_inserter(onlyTrain));
    std::set_difference(b.begin(), b.end(), a.begin(), a.end(),
                        std::back_inserter(onlyVal));
    std::string diff;
    if (!onlyTrain.empty())
      diff += fmt::format("; only in train/: {}", listNames(onlyTrain));
    if (!onlyVal.empty())
      diff += fmt::format("; only in val/: {}", listNames(onlyVal));
    throw ImageFolderError(fmt::format(
        "{}: train/ and val/ have different class folders{}", root, diff));
  }
  if (int64_t(a.size()) != classes)
    throw ImageFolderError(
        fmt::format("{}: {} class folder{} ({}) but the network has {} classes",
                    sets.train.dir, a.size(), a.size() == 1 ? "" : "s",
                    listNames(a), classes));
  return sets;
}

//===----------------------------------------------------------------------===//
// WorkerPool
//===----------------------------------------------------------------------===//

WorkerPool::WorkerPool(int threads) {
  for (int i = 1; i < threads; ++i)
    workers_.emplace_back([this] { loop(); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread &t : workers_)
    t.join();
}

void WorkerPool::loop() {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
    if (stop_)
      return;
    seen = generation_;
    const std::function<void(int64_t)> &fn = *fn_;
    const int64_t n = n_;
    lock.unlock();
    for (int64_t i; (i = next_.fetch_add(1)) < n;)
      fn(i);
    lock.lock();
    // Every worker reports every loop, so none is still inside this one
    // when the next begins.
    if (++finished_ == workers_.size())
      done_.notify_all();
  }
}

void WorkerPool::parallelFor(int64_t n,
                             const std::function<void(int64_t)> &fn) {
  std::lock_guard<std::mutex> call(callMutex_);
  if (workers_.empty() || n <= 1) {
    for (int64_t i = 0; i < n; ++i)
      fn(i);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = &fn;
    n_ = n;
    next_.store(0);
    finished_ = 0;
    ++generation_;
  }
  wake_.notify_all();
  for (int64_t i; (i = next_.fetch_add(1)) < n;)
    fn(i);
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [&] { return finished_ == workers_.size(); });
  fn_ = nullptr;
}

//===----------------------------------------------------------------------===//
// ImageLoader
//===----------------------------------------------------------------------===//

ImageLoader::ImageLoader(ImageFolderSplit split, ImageAugment augment,
                         std::shared_ptr<WorkerPool> pool)
    : split_(std::make_shared<const ImageFolderSplit>(std::move(split))),
      aug_(std::move(augment)), pool_(std::move(pool)) {}

ImageLoader::ImageLoader(const ImageLoader &images, ImageAugment augment)
    : split_(images.split_), aug_(std::move(augment)), pool_(images.pool_) {}

void ImageLoader::makeSample(int64_t index, bool augment, uint64_t key,
                             float *dst) const {
  const std::string &path = split_->files[size_t(index)];
  const int64_t ch = aug_.cropHeight, cw = aug_.cropWidth;
  // The draws come first and do not depend on the image, so that a
  // decoder may shrink the image to the drawn size while decoding.
  uint64_t h = kernels::splitmix64(key ^ kernels::splitmix64(uint64_t(index)));
  int64_t side = augment ? aug_.scaleMin
                         : (aug_.evalScale ? aug_.evalScale : aug_.scaleMin);
  if (augment && aug_.scaleMax > aug_.scaleMin)
    side += int64_t(h % uint64_t(aug_.scaleMax - aug_.scaleMin + 1));
  const uint64_t hy = kernels::splitmix64(h), hx = kernels::splitmix64(hy);
  const bool flip = augment && aug_.mirror && (kernels::splitmix64(hx) >> 63);

  io::Image img =
      io::decodeImage(io::readFile(path, kMaxImageBytes), path, side);
  if (img.channels != aug_.channels)
    throw io::ImageError(
        fmt::format("{}: a {} image, but the network input has {} channel{}",
                    path, img.channels == 1 ? "greyscale" : "colour",
                    aug_.channels, aug_.channels == 1 ? "" : "s"));
  Size2 r = resizedSize(img.fullHeight, img.fullWidth, side);
  if (r.height < ch || r.width < cw)
    throw io::ImageError(fmt::format(
        "{}: the image is {}x{} (width x height), smaller than the {}x{} "
        "crop{}",
        path, img.fullWidth, img.fullHeight, cw, ch,
        side ? fmt::format(" after resizing its shorter side to {}", side)
             : std::string(" (no 'scale' resizes it)")));
  int64_t y0 = (r.height - ch) / 2, x0 = (r.width - cw) / 2;
  if (augment) {
    y0 = int64_t(hy % uint64_t(r.height - ch + 1));
    x0 = int64_t(hx % uint64_t(r.width - cw + 1));
  }
  std::vector<float> win =
      resampleWindow(img.pixels.data(), img.height, img.width, img.channels,
                     r.height, r.width, y0, x0, ch, cw);
  writePlanar(win, ch, cw, img.channels, flip, aug_.bgr && img.channels == 3,
              aug_.mean.data(), aug_.invStd.data(), dst);
}

int64_t ImageLoader::makeBatch(const int64_t *indices, int64_t n, bool augment,
                               uint64_t key, float *images, int32_t *labels,
                               uint8_t *replaced) const {
  const int64_t sample = sampleFloats(), count = size();
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  std::vector<int64_t> skipped(size_t(n), 0);
  pool_->parallelFor(n, [&](int64_t b) {
    int64_t index = indices[b];
    for (int64_t attempt = 0;; ++attempt) {
      try {
        makeSample(index, augment, key, images + b * sample);
        labels[b] = split_->labels[size_t(index)];
        return;
      } catch (const std::exception &e) {
        if (aug_.skipBad && attempt + 1 >= count) { // every one is bad
          errors[size_t(b)] = std::make_exception_ptr(io::ImageError(
              fmt::format("{}: skip-bad found no readable image among its {} "
                          "(the last one tried: {})",
                          split_->dir, count, e.what())));
          return;
        }
        if (!aug_.skipBad) {
          errors[size_t(b)] = std::current_exception();
          return;
        }
      }
      // skip-bad: the next image of the split takes the bad one's place.
      ++skipped[size_t(b)];
      index = (index + 1) % count;
    }
  });
  // The first bad image of the batch, whichever thread met it first.
  for (const std::exception_ptr &e : errors)
    if (e)
      std::rethrow_exception(e);
  // A row that skipped several bad images in a row counts once: each of
  // them is also asked for in a row of its own.
  int64_t total = 0;
  for (int64_t b = 0; b < n; ++b) {
    total += skipped[size_t(b)] > 0;
    if (replaced)
      replaced[b] = skipped[size_t(b)] > 0;
  }
  return total;
}

} // namespace netc::data
