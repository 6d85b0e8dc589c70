//===- ImageFolderTest.cpp - image folders: decoding, resize, scan, loader ===//

#include "runtime/data/ImageFolder.h"
#include "runtime/data/Resample.h"
#include "runtime/io/Image.h"
#include "runtime/train/Data.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

using namespace netc;
namespace fs = std::filesystem;

namespace {

/// An h x w x c image whose pixels identify (y, x, channel), smooth enough
/// for JPEG to keep them close.
std::vector<uint8_t> gradient(int64_t h, int64_t w, int c) {
  std::vector<uint8_t> p(static_cast<size_t>(h * w * c));
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k)
        p[size_t((y * w + x) * c + k)] =
            uint8_t((y * 200 / h + x * 50 / w + k * 3) % 256);
  return p;
}

/// The message of what `fn` throws ("" if nothing).
template <typename Fn> std::string errorOf(Fn fn) {
  try {
    fn();
  } catch (const std::exception &e) {
    return e.what();
  }
  return "";
}

#define SKIP_WITHOUT_CODECS()                                                  \
  if (!io::haveImageCodecs())                                                  \
  GTEST_SKIP() << "built without libjpeg-turbo and libpng"

class ImageFolderTest : public ::testing::Test {
protected:
  void SetUp() override {
    dir = fs::temp_directory_path() /
          ("netc-images-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }

  static void put(const fs::path &path, const std::string &bytes) {
    fs::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << bytes;
  }
  /// A folder of `classes` classes, `perClass` images each in train/ and
  /// val/, of h x w pixels (JPEG, every third one PNG).
  void makeFolder(int classes, int perClass, int64_t h, int64_t w) {
    for (const char *split : {"train", "val"})
      for (int c = 0; c < classes; ++c)
        for (int i = 0; i < perClass; ++i) {
          std::vector<uint8_t> px = gradient(h + i, w + c, 3);
          fs::path base = dir / split / ("class" + std::to_string(c)) /
                          ("img" + std::to_string(i));
          if (i % 3 == 2)
            put(base.string() + ".png", io::encodePng(px, w + c, h + i, 3));
          else
            put(base.string() + ".jpg", io::encodeJpeg(px, w + c, h + i, 3));
        }
  }
  static data::ImageAugment augment(int64_t crop, int64_t lo, int64_t hi) {
    data::ImageAugment a;
    a.cropHeight = a.cropWidth = crop;
    a.scaleMin = lo;
    a.scaleMax = hi;
    a.mirror = true;
    a.mean = {120, 110, 100};
    a.invStd = {1 / 60.f, 1 / 60.f, 1 / 60.f};
    return a;
  }
  /// A plan's options for the folder of makeFolder(2, ...): 40x40 crops of
  /// the shorter side resized to 40..48, two worker threads.
  train::DataOptions planLikeOptions() const {
    train::DataOptions o;
    o.kind = "images";
    o.dir = dir.string();
    o.channels = 3;
    o.height = o.width = 40;
    o.crop = 40;
    o.classes = 2;
    o.scaleMin = 40;
    o.scaleMax = 48;
    o.mean = {128};
    o.std = {64};
    o.workers = 2;
    return o;
  }
  fs::path dir;
};

//===----------------------------------------------------------------------===//
// Decoding
//===----------------------------------------------------------------------===//

TEST_F(ImageFolderTest, JpegAndPngRoundTrip) {
  SKIP_WITHOUT_CODECS();
  std::vector<uint8_t> px = gradient(40, 60, 3);
  io::Image png = io::decodeImage(io::encodePng(px, 60, 40, 3), "a.png");
  EXPECT_EQ(png.width, 60);
  EXPECT_EQ(png.height, 40);
  EXPECT_EQ(png.channels, 3);
  EXPECT_EQ(png.pixels, px); // lossless
  io::Image jpg = io::decodeImage(io::encodeJpeg(px, 60, 40, 3, 95), "a.jpg");
  ASSERT_EQ(jpg.pixels.size(), px.size());
  double err = 0;
  for (size_t i = 0; i < px.size(); ++i)
    err += std::abs(int(jpg.pixels[i]) - int(px[i]));
  EXPECT_LT(err / double(px.size()), 3.0);
  io::Image grey =
      io::decodeImage(io::encodeJpeg(gradient(16, 16, 1), 16, 16, 1), "g.jpg");
  EXPECT_EQ(grey.channels, 1);
  io::Image greyPng =
      io::decodeImage(io::encodePng(gradient(8, 8, 1), 8, 8, 1), "g.png");
  EXPECT_EQ(greyPng.channels, 1);
}

TEST_F(ImageFolderTest, JpegDecodesAtAReducedScaleWhenAsked) {
  SKIP_WITHOUT_CODECS();
  std::string jpg = io::encodeJpeg(gradient(400, 640, 3), 640, 400, 3);
  io::Image full = io::decodeImage(jpg, "a.jpg");
  EXPECT_EQ(full.height, 400);
  io::Image small = io::decodeImage(jpg, "a.jpg", 100);
  EXPECT_EQ(small.fullHeight, 400);
  EXPECT_EQ(small.fullWidth, 640);
  EXPECT_EQ(small.height, 100); // 1/4: the smallest scale keeping 100
  EXPECT_EQ(small.width, 160);
  EXPECT_EQ(io::decodeImage(jpg, "a.jpg", 101).height, 150); // 3/8
}

TEST_F(ImageFolderTest, BadImagesAreErrorsNamingTheFile) {
  SKIP_WITHOUT_CODECS();
  std::string jpg = io::encodeJpeg(gradient(64, 64, 3), 64, 64, 3);
  std::string cut = errorOf(
      [&] { io::decodeImage(jpg.substr(0, jpg.size() / 2), "dir/cut.jpg"); });
  EXPECT_NE(cut.find("dir/cut.jpg: corrupt or truncated JPEG"),
            std::string::npos)
      << cut;
  std::string alpha = errorOf([&] {
    io::decodeImage(io::encodePng(gradient(8, 8, 4), 8, 8, 4), "a.png");
  });
  EXPECT_NE(alpha.find("a.png: the PNG has an alpha channel"),
            std::string::npos)
      << alpha;
  std::string deep = errorOf([&] {
    io::decodeImage(io::encodePng(gradient(8, 8, 3), 8, 8, 3, 16), "d.png");
  });
  EXPECT_NE(deep.find("d.png: the PNG has 16 bits per sample"),
            std::string::npos)
      << deep;
  // A header that claims 60000x60000 pixels is refused before anything is
  // allocated for them.
  std::string huge = jpg;
  size_t sof = huge.find("\xFF\xC0");
  ASSERT_NE(sof, std::string::npos);
  for (size_t k : {sof + 5, sof + 7}) {
    huge[k] = char(60000 >> 8);
    huge[k + 1] = char(60000 & 255);
  }
  std::string big = errorOf([&] { io::decodeImage(huge, "big.jpg"); });
  EXPECT_NE(big.find("big.jpg: the image is 60000x60000; sides must be 1 to "
                     "65536 pixels, and at most 134217728 pixels in all"),
            std::string::npos)
      << big;
  std::string png = io::encodePng(gradient(32, 32, 3), 32, 32, 3);
  EXPECT_NE(errorOf([&] {
              io::decodeImage(png.substr(0, png.size() - 20), "t.png");
            }).find("t.png: corrupt or truncated PNG"),
            std::string::npos);
  EXPECT_NE(errorOf([&] {
              io::decodeImage("GIF89a....", "x.jpg");
            }).find("x.jpg: neither a JPEG nor a PNG"),
            std::string::npos);
  EXPECT_NE(
      errorOf([&] { io::decodeImage("", "e.png"); }).find("the file is empty"),
      std::string::npos);
}

//===----------------------------------------------------------------------===//
// Resize, crop, mirror, normalisation
//===----------------------------------------------------------------------===//

TEST(ResampleTest, ShorterSideResize) {
  EXPECT_EQ(data::resizedSize(300, 400, 256).height, 256);
  EXPECT_EQ(data::resizedSize(300, 400, 256).width, 341); // 400*256/300
  EXPECT_EQ(data::resizedSize(500, 200, 100).width, 100);
  EXPECT_EQ(data::resizedSize(500, 200, 100).height, 250);
  EXPECT_EQ(data::resizedSize(7, 9, 0).width, 9);
}

TEST(ResampleTest, SameSizeIsACopyAndAConstantStaysConstant) {
  std::vector<uint8_t> px = gradient(9, 13, 3);
  std::vector<float> same =
      data::resampleWindow(px.data(), 9, 13, 3, 9, 13, 0, 0, 9, 13);
  for (size_t i = 0; i < px.size(); ++i)
    ASSERT_FLOAT_EQ(same[i], float(px[i]));
  std::vector<uint8_t> flat(size_t(50 * 70), 77);
  for (auto [rh, rw] : {std::pair{10, 14}, {120, 168}, {33, 47}}) {
    std::vector<float> out =
        data::resampleWindow(flat.data(), 50, 70, 1, rh, rw, 0, 0, rh, rw);
    for (float v : out)
      ASSERT_NEAR(v, 77.0f, 1e-3);
  }
}

TEST(ResampleTest, ShrinkingAveragesEverySourcePixel) {
  // Columns alternate 0 and 200: halving the width must give their mean
  // everywhere (a point sampler would give 0 or 200), and a quarter too.
  std::vector<uint8_t> px(static_cast<size_t>(8 * 64));
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 64; ++x)
      px[size_t(y * 64 + x)] = x % 2 ? 200 : 0;
  for (int64_t w : {32, 16}) {
    std::vector<float> out =
        data::resampleWindow(px.data(), 8, 64, 1, 8, w, 0, 0, 8, w);
    for (int64_t x = 1; x + 1 < w; ++x)
      ASSERT_NEAR(out[size_t(3 * w + x)], 100.0f, 1e-3) << "width " << w;
  }
}

TEST(ResampleTest, AWindowIsThatPartOfTheWholeResize) {
  std::vector<uint8_t> px = gradient(40, 52, 3);
  std::vector<float> whole =
      data::resampleWindow(px.data(), 40, 52, 3, 25, 33, 0, 0, 25, 33);
  std::vector<float> win =
      data::resampleWindow(px.data(), 40, 52, 3, 25, 33, 7, 11, 12, 16);
  for (int64_t y = 0; y < 12; ++y)
    for (int64_t x = 0; x < 16; ++x)
      for (int c = 0; c < 3; ++c)
        ASSERT_FLOAT_EQ(win[size_t((y * 16 + x) * 3 + c)],
                        whole[size_t(((y + 7) * 33 + x + 11) * 3 + c)]);
}

TEST(ResampleTest, MirrorChannelOrderAndNormalisation) {
  // 1 row, 2 pixels: (10, 20, 30) and (40, 50, 60).
  std::vector<float> win = {10, 20, 30, 40, 50, 60};
  const float mean[3] = {1, 2, 3}, inv[3] = {1, 0.5f, 0.25f};
  std::vector<float> out(6);
  data::writePlanar(win, 1, 2, 3, false, false, mean, inv, out.data());
  EXPECT_EQ(out, (std::vector<float>{9, 39, 9, 24, 6.75f, 14.25f}));
  data::writePlanar(win, 1, 2, 3, true, true, mean, inv, out.data());
  // Mirrored: pixel 1 first; BGR: blue (30, 60) is channel 0.
  EXPECT_EQ(out, (std::vector<float>{59, 29, 24, 9, 9.25f, 1.75f}));
}

//===----------------------------------------------------------------------===//
// The folder scan
//===----------------------------------------------------------------------===//

TEST_F(ImageFolderTest, ScanSortsClassesAndFilesAndIgnoresOthers) {
  for (const char *split : {"train", "val"}) {
    put(dir / split / "zebra" / "b.JPG", "x");
    put(dir / split / "zebra" / "a.png", "x");
    put(dir / split / "ant" / "c.jpeg", "x");
    put(dir / split / "ant" / "notes.txt", "x");
    put(dir / split / "ant" / ".hidden.jpg", "x");
    put(dir / split / "README", "x");
  }
  data::ImageFolderSets s = data::scanImageFolder(dir.string(), 2);
  EXPECT_EQ(s.train.classes, (std::vector<std::string>{"ant", "zebra"}));
  ASSERT_EQ(s.train.files.size(), 3u);
  EXPECT_EQ(fs::path(s.train.files[0]).filename(), "c.jpeg");
  EXPECT_EQ(fs::path(s.train.files[1]).filename(), "a.png");
  EXPECT_EQ(fs::path(s.train.files[2]).filename(), "b.JPG");
  EXPECT_EQ(s.train.labels, (std::vector<int32_t>{0, 1, 1}));
  EXPECT_EQ(s.val.files.size(), 3u);
}

TEST_F(ImageFolderTest, ScanWalksClassSubfoldersAsTorchvisionDoes) {
  // Files in subfolders at any depth belong to the class, ordered by folder
  // path ("a" < "a-b" < "a/b"), then name, as torchvision sorts os.walk's
  // tuples; hidden folders are skipped; links are followed, a second route
  // into a folder included (cat/z), and a link out of the image folder
  // (dog/out), but not a link back to a folder above: a cycle (cat/a/loop),
  // the split (cat/split) or the image folder (dog/root).
  for (const char *split : {"train", "val"}) {
    put(dir / split / "cat" / "z.jpg", "x");
    put(dir / split / "cat" / "a" / "b" / "deep.png", "x");
    put(dir / split / "cat" / "a" / "m.jpg", "x");
    put(dir / split / "cat" / "a-b" / "n.jpg", "x");
    put(dir / split / "cat" / ".cache" / "hidden.jpg", "x");
    put(dir / split / "dog" / "1.jpg", "x");
    fs::create_directory_symlink("..", dir / split / "cat" / "a" / "loop");
    fs::create_directory_symlink("a", dir / split / "cat" / "z");
    fs::create_directory_symlink("..", dir / split / "cat" / "split");
    fs::create_directory_symlink("../../..", dir / split / "dog" / "root");
    fs::create_directory_symlink(dir / "outside", dir / split / "dog" / "out");
  }
  put(dir / "outside" / "o.png", "x");
  data::ImageFolderSets s = data::scanImageFolder(dir.string(), 2);
  std::vector<std::string> rel;
  for (const std::string &f : s.train.files)
    rel.push_back(fs::path(f).lexically_relative(dir / "train").string());
  EXPECT_EQ(rel, (std::vector<std::string>{"cat/z.jpg", "cat/a/m.jpg",
                                           "cat/a-b/n.jpg", "cat/a/b/deep.png",
                                           "cat/z/m.jpg", "cat/z/b/deep.png",
                                           "dog/1.jpg", "dog/out/o.png"}));
  EXPECT_EQ(s.train.labels, (std::vector<int32_t>{0, 0, 0, 0, 0, 0, 1, 1}));
  EXPECT_EQ(s.val.files.size(), 8u);
  // A class folder nested deeper than the walk goes is an error naming it.
  fs::path deep = dir / "train" / "dog";
  for (int i = 0; i < 70; ++i)
    deep /= "d";
  put(deep / "x.jpg", "x");
  std::string e = errorOf([&] { data::scanImageFolder(dir.string(), 2); });
  EXPECT_NE(e.find("go deeper than 64 levels"), std::string::npos) << e;
}

// A link to another part of the image folder would count its images twice,
// under a second class or in both splits: an error naming the link.
TEST_F(ImageFolderTest, LinksIntoAnotherClassOrSplitAreErrors) {
  for (const char *split : {"train", "val"})
    for (const char *c : {"cat", "dog"})
      put(dir / split / c / "1.jpg", "x");
  auto scan = [&] {
    return errorOf([&] { data::scanImageFolder(dir.string(), 2); });
  };
  ASSERT_EQ(scan(), "");
  // A folder link into another class.
  fs::create_directory_symlink("../cat", dir / "train" / "dog" / "more");
  EXPECT_NE(scan().find("train/dog/more: a link to " +
                        fs::canonical(dir / "train" / "cat").string() +
                        ", which is the class folder " +
                        (dir / "train" / "cat").string() +
                        ": its images would also count as " +
                        (dir / "train" / "dog").string() + "'s"),
            std::string::npos)
      << scan();
  fs::remove(dir / "train" / "dog" / "more");
  // An image linked from the training set into val/.
  fs::create_symlink(dir / "train" / "dog" / "1.jpg",
                     dir / "val" / "dog" / "2.jpg");
  EXPECT_NE(scan().find("val/dog/2.jpg: a link to"), std::string::npos)
      << scan();
  EXPECT_NE(scan().find("(train/ and val/ sharing images: the test set "
                        "trained on)"),
            std::string::npos)
      << scan();
  fs::remove(dir / "val" / "dog" / "2.jpg");
  // A class folder that is the other split's.
  fs::remove_all(dir / "val" / "cat");
  fs::create_directory_symlink("../train/cat", dir / "val" / "cat");
  EXPECT_NE(scan().find("the same folder as "), std::string::npos) << scan();
  EXPECT_NE(scan().find("(in train/ and val/: the test set trained on)"),
            std::string::npos)
      << scan();
  // Class folders that are links out of the image folder: a link between
  // their real folders is found as well.
  fs::path raw = dir.parent_path() / (dir.filename().string() + "-raw");
  fs::remove_all(raw);
  for (const char *split : {"train", "val"})
    for (const char *c : {"cat", "dog"}) {
      put(raw / (std::string(c) + "-" + split) / "1.jpg", "x");
      fs::remove_all(dir / split / c);
      fs::create_directory_symlink(raw / (std::string(c) + "-" + split),
                                   dir / split / c);
    }
  ASSERT_EQ(scan(), "");
  fs::create_directory_symlink("../cat-train", raw / "cat-val" / "more");
  EXPECT_NE(
      scan().find("val/cat/more: a link to " + (raw / "cat-train").string()),
      std::string::npos)
      << scan();
  fs::remove(raw / "cat-val" / "more");
  // A link into a folder that is no class (hidden, so never walked) is
  // fine, and so is a class folder inside another's hidden subfolder.
  put(dir / "train" / ".pool" / "p.jpg", "x");
  fs::create_symlink(dir / "train" / ".pool" / "p.jpg",
                     raw / "cat-train" / "p.jpg");
  fs::remove(dir / "val" / "dog");
  put(raw / "dog-train" / ".val" / "1.jpg", "x");
  fs::create_directory_symlink(raw / "dog-train" / ".val", dir / "val" / "dog");
  EXPECT_EQ(scan(), "");
  // ... unless a link in the outer one leads into it.
  fs::create_directory_symlink(".val", raw / "dog-train" / "peek");
  EXPECT_NE(scan().find("train/dog/peek: a link to " +
                        (raw / "dog-train" / ".val").string() +
                        ", which is the class folder " +
                        (dir / "val" / "dog").string()),
            std::string::npos)
      << scan();
  fs::remove_all(raw);
  for (const char *split : {"train", "val"})
    for (const char *c : {"cat", "dog"}) {
      fs::remove(dir / split / c);
      put(dir / split / c / "1.jpg", "x");
    }
  ASSERT_EQ(scan(), "");
  // A class folder that is its split: the other classes inside it.
  fs::remove_all(dir / "train" / "dog");
  fs::create_directory_symlink(".", dir / "train" / "dog");
  EXPECT_NE(scan().find("inside "), std::string::npos) << scan();
}

TEST_F(ImageFolderTest, ScanErrors) {
  auto scan = [&](int64_t classes) {
    return errorOf([&] { data::scanImageFolder(dir.string(), classes); });
  };
  EXPECT_NE(scan(2).find("train: no such folder"), std::string::npos);
  put(dir / "train", "a file");
  EXPECT_NE(scan(2).find("train: not a folder"), std::string::npos);
  fs::remove(dir / "train");
  put(dir / "file", "x");
  EXPECT_NE(errorOf([&] {
              data::scanImageFolder((dir / "file").string(), 2);
            }).find("file: not a folder (the image folder's root)"),
            std::string::npos);
  put(dir / "train" / "cat" / "1.jpg", "x");
  put(dir / "train" / "dog" / "1.jpg", "x");
  put(dir / "val" / "cat" / "1.jpg", "x");
  put(dir / "val" / "cow" / "1.jpg", "x");
  EXPECT_NE(scan(2).find("train/ and val/ have different class folders; "
                         "only in train/: dog; only in val/: cow"),
            std::string::npos)
      << scan(2);
  fs::rename(dir / "val" / "cow", dir / "val" / "dog");
  std::string count = scan(10);
  EXPECT_NE(count.find("train: 2 class folders (cat, dog) but the network "
                       "has 10 classes"),
            std::string::npos)
      << count;
  EXPECT_EQ(scan(2), "");
  fs::create_directories(dir / "train" / "emu");
  put(dir / "train" / "emu" / "notes.txt", "x");
  std::string empty = scan(3);
  EXPECT_NE(empty.find("train/emu: an empty class folder: no .jpg, .jpeg or "
                       ".png image in it or its subfolders"),
            std::string::npos)
      << empty;
}

//===----------------------------------------------------------------------===//
// The loader
//===----------------------------------------------------------------------===//

TEST_F(ImageFolderTest, BatchesAreTheSameForAnyNumberOfThreads) {
  SKIP_WITHOUT_CODECS();
  makeFolder(3, 5, 70, 90);
  data::ImageFolderSets s = data::scanImageFolder(dir.string(), 3);
  std::vector<int64_t> idx = {14, 0, 3, 7, 7, 11, 2, 9, 5, 1};
  const int64_t n = int64_t(idx.size()), sample = 3 * 48 * 48;
  auto batch = [&](int threads, bool train, uint64_t key) {
    data::ImageLoader loader(s.train, augment(48, 56, 80),
                             std::make_shared<data::WorkerPool>(threads));
    std::vector<float> img(static_cast<size_t>(n * sample));
    std::vector<int32_t> labels(static_cast<size_t>(n));
    EXPECT_EQ(
        loader.makeBatch(idx.data(), n, train, key, img.data(), labels.data()),
        0);
    EXPECT_EQ(labels[0], 2);
    EXPECT_EQ(labels[1], 0);
    return img;
  };
  std::vector<float> one = batch(1, true, 42);
  EXPECT_EQ(one, batch(3, true, 42));
  EXPECT_EQ(one, batch(8, true, 42));
  EXPECT_NE(one, batch(2, true, 43)); // another step draws anew
  // The same index twice in a batch draws the same augmentation.
  EXPECT_TRUE(std::equal(one.begin() + 3 * sample, one.begin() + 4 * sample,
                         one.begin() + 4 * sample));
  // Evaluation: no randomness at all.
  EXPECT_EQ(batch(1, false, 1), batch(4, false, 99));
}

TEST_F(ImageFolderTest, EvaluationIsTheCentreCropOfTheSmallestScale) {
  SKIP_WITHOUT_CODECS();
  std::vector<uint8_t> px = gradient(60, 80, 3);
  put(dir / "train" / "a" / "x.png", io::encodePng(px, 80, 60, 3));
  put(dir / "val" / "a" / "x.png", io::encodePng(px, 80, 60, 3));
  data::ImageFolderSets s = data::scanImageFolder(dir.string(), 1);
  data::ImageAugment a = augment(20, 30, 50);
  a.mean = {0, 0, 0};
  a.invStd = {1, 1, 1};
  data::ImageLoader loader(s.val, a, std::make_shared<data::WorkerPool>(1));
  std::vector<float> got(3 * 20 * 20);
  loader.makeSample(0, false, 0, got.data());
  // 60x80 to 30x40, then rows 5..25, columns 10..30.
  std::vector<float> want =
      data::resampleWindow(px.data(), 60, 80, 3, 30, 40, 5, 10, 20, 20);
  for (int c = 0; c < 3; ++c)
    for (int i = 0; i < 400; ++i)
      ASSERT_FLOAT_EQ(got[size_t(c * 400 + i)], want[size_t(i * 3 + c)]);
}

TEST_F(ImageFolderTest, BadImagesInABatch) {
  SKIP_WITHOUT_CODECS();
  makeFolder(2, 3, 64, 64);
  put(dir / "train" / "class0" / "img0.jpg",
      io::encodeJpeg(gradient(64, 64, 1), 64, 64, 1)); // grey
  put(dir / "train" / "class1" / "img1.jpg",
      io::encodeJpeg(gradient(20, 64, 3), 64, 20, 3)); // small
  data::ImageFolderSets s = data::scanImageFolder(dir.string(), 2);
  std::vector<int64_t> idx = {0, 1, 2, 3, 4, 5};
  std::vector<float> img(6 * 3 * 32 * 32);
  std::vector<int32_t> labels(6);
  data::ImageAugment a = augment(32, 0, 0); // no resize
  data::ImageLoader strict(s.train, a, std::make_shared<data::WorkerPool>(3));
  std::string e = errorOf([&] {
    strict.makeBatch(idx.data(), 6, true, 1, img.data(), labels.data());
  });
  // The first bad image of the batch, whatever the threads did first.
  EXPECT_NE(e.find("class0/img0.jpg: a greyscale image, but the network "
                   "input has 3 channels"),
            std::string::npos)
      << e;
  idx = {4};
  e = errorOf([&] {
    strict.makeBatch(idx.data(), 1, true, 1, img.data(), labels.data());
  });
  EXPECT_NE(e.find("class1/img1.jpg: the image is 64x20 (width x height), "
                   "smaller than the 32x32 crop (no 'scale' resizes it)"),
            std::string::npos)
      << e;
  a.skipBad = true;
  data::ImageLoader lenient(s.train, a, std::make_shared<data::WorkerPool>(2));
  idx = {0, 1, 2, 3, 4, 5};
  EXPECT_EQ(
      lenient.makeBatch(idx.data(), 6, true, 1, img.data(), labels.data()), 2);
  EXPECT_EQ(labels[0], 0); // img1 of class0 took img0's place
  EXPECT_EQ(labels[4], 1); // img2 of class1 took img1's place
  // Two bad images in a row: the first's row skips both, yet each counts
  // once, and the rows that hold another image are marked.
  put(dir / "train" / "class0" / "img1.jpg", "junk");
  std::vector<uint8_t> replaced(6, 7);
  EXPECT_EQ(lenient.makeBatch(idx.data(), 6, true, 1, img.data(), labels.data(),
                              replaced.data()),
            3);
  EXPECT_EQ(replaced, (std::vector<uint8_t>{1, 1, 0, 0, 1, 0}));
  // Every image bad: skip-bad says so, naming the split and one image.
  for (int c = 0; c < 2; ++c)
    for (int i = 0; i < 3; ++i)
      for (const char *ext : {".jpg", ".png"})
        if (fs::exists(dir / "train" / ("class" + std::to_string(c)) /
                       ("img" + std::to_string(i) + ext)))
          put(dir / "train" / ("class" + std::to_string(c)) /
                  ("img" + std::to_string(i) + ext),
              "junk");
  idx = {3};
  e = errorOf([&] {
    lenient.makeBatch(idx.data(), 1, true, 1, img.data(), labels.data());
  });
  EXPECT_NE(e.find("train: skip-bad found no readable image among its 6 "
                   "(the last one tried: "),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("class0/img2.png: neither a JPEG nor a PNG"),
            std::string::npos)
      << e;
}

TEST_F(ImageFolderTest, SkipBadStaysInTheSubset) {
  SKIP_WITHOUT_CODECS();
  makeFolder(2, 3, 40, 40);
  // The subset is train's first 3 images: class0's. The last of them is
  // bad; the image after it (class1's first) is outside the subset.
  put(dir / "train" / "class0" / "img2.png", "junk");
  train::DataOptions o;
  o.kind = "images";
  o.dir = dir.string();
  o.channels = 3;
  o.height = o.width = 40;
  o.classes = 2;
  o.skipBad = true;
  o.workers = 1;
  o.subset = 3;
  train::ImageData train = train::loadSplit(o, train::Split::Train);
  ASSERT_EQ(train.size(), 3);
  std::vector<float> img(3 * 3 * 40 * 40);
  std::vector<int32_t> labels(3, -1);
  std::vector<uint8_t> replaced(3, 7);
  int64_t idx[3] = {0, 1, 2};
  EXPECT_EQ(train.makeBatch(idx, 3, false, 0, img.data(), labels.data(),
                            replaced.data()),
            1);
  // The bad image's row holds the subset's first image, not one beyond it.
  EXPECT_EQ(labels, (std::vector<int32_t>{0, 0, 0}));
  EXPECT_EQ(replaced, (std::vector<uint8_t>{0, 0, 1}));
  EXPECT_EQ(std::vector<float>(img.begin(), img.begin() + 3 * 1600),
            std::vector<float>(img.begin() + 6 * 1600, img.end()));
}

TEST_F(ImageFolderTest, DatasetsFromAPlanLikeOptions) {
  SKIP_WITHOUT_CODECS();
  makeFolder(2, 3, 50, 60);
  train::DataOptions o = planLikeOptions();
  train::Datasets d = train::loadDatasets(o);
  EXPECT_EQ(d.train.size(), 6);
  EXPECT_EQ(d.test.size(), 6);
  std::vector<float> img(2 * 3 * 40 * 40);
  std::vector<int32_t> labels(2);
  int64_t idx[2] = {5, 0};
  EXPECT_EQ(d.test.makeBatch(idx, 2, false, 0, img.data(), labels.data()), 0);
  EXPECT_EQ(labels[0], 1);
  for (float v : img)
    ASSERT_LE(std::abs(v), 2.01f); // (x - 128) / 64
  o.classes = 3;
  EXPECT_NE(errorOf([&] {
              train::loadDatasets(o);
            }).find("but the network has 3 classes"),
            std::string::npos);
  o.classes = 2;
  o.scaleMin = 30;
  EXPECT_NE(errorOf([&] { train::loadDatasets(o); })
                .find("resizing the shorter side to 30 leaves less than the "
                      "40x40 crop"),
            std::string::npos);
}

// Dense evaluation reads a split once for all its scales: the split made
// into batches at a scale is what loading it with that scale's options
// gives, on the same scan, and a test subset stays the subset.
TEST_F(ImageFolderTest, DenseScalesShareOneScan) {
  SKIP_WITHOUT_CODECS();
  makeFolder(2, 3, 50, 60);
  train::DataOptions o = planLikeOptions();
  o.testSubset = 5;
  const train::ImageData test = train::loadSplit(o, train::Split::Test);
  for (auto [side, scale] : {std::pair<int64_t, int64_t>{40, 40}, {48, 56}}) {
    train::DataOptions at = o;
    at.height = at.width = side;
    at.crop = 0;
    at.evalScale = scale;
    // (A load with training scales below the side fails: a fresh load at
    // each scale could not serve a dense scale above the training ones.)
    at.scaleMin = at.scaleMax = 0;
    const train::ImageData want = train::loadSplit(at, train::Split::Test);
    const train::ImageData got = test.atDenseScale(side, side, scale);
    ASSERT_EQ(got.size(), 5);
    ASSERT_EQ(got.sampleFloats(), 3 * side * side);
    const int64_t n = 5, idx[5] = {4, 0, 2, 1, 3};
    std::vector<float> a(size_t(n * 3 * side * side)), b(a.size());
    std::vector<int32_t> la(n), lb(n);
    want.makeBatch(idx, n, false, 0, a.data(), la.data());
    got.makeBatch(idx, n, false, 0, b.data(), lb.data());
    EXPECT_EQ(a, b) << "scale " << scale;
    EXPECT_EQ(la, lb);
  }
  // A scale whose shorter side is below the program's input.
  EXPECT_NE(errorOf([&] { (void)test.atDenseScale(48, 48, 44); })
                .find("resizing the shorter side to 44 leaves less than the "
                      "48x48 crop"),
            std::string::npos);
}

} // namespace
