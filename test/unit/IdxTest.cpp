//===- IdxTest.cpp - IDX reader: real files and every way they can be bad -===//

#include "runtime/data/Idx.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

using namespace netc::data;
namespace fs = std::filesystem;

namespace {

class IdxTest : public ::testing::Test {
protected:
  void SetUp() override {
    dir = fs::temp_directory_path() /
          ("netc-idx-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }

  static std::vector<uint8_t> header(std::vector<uint32_t> dims) {
    std::vector<uint8_t> bytes{0, 0, 0x08, uint8_t(dims.size())};
    for (uint32_t d : dims)
      for (int s = 24; s >= 0; s -= 8)
        bytes.push_back(uint8_t(d >> s));
    return bytes;
  }
  std::string write(const std::string &name, const std::vector<uint8_t> &bytes,
                    bool gzip = false) {
    std::string path = (dir / name).string();
    if (gzip) {
      gzFile f = gzopen(path.c_str(), "wb");
      gzwrite(f, bytes.data(), unsigned(bytes.size()));
      gzclose(f);
    } else {
      std::ofstream(path, std::ios::binary)
          .write(reinterpret_cast<const char *>(bytes.data()), bytes.size());
    }
    return path;
  }
  /// A 3-image 2x2 set with labels 0, 1, 2.
  void writeSet(const std::string &prefix, bool gzip, uint8_t lastLabel = 2,
                uint32_t labelCount = 3) {
    auto images = header({3, 2, 2});
    for (int i = 0; i < 12; ++i)
      images.push_back(uint8_t(i * 10));
    auto labels = header({labelCount});
    for (uint32_t i = 0; i < labelCount; ++i)
      labels.push_back(i + 1 == labelCount ? lastLabel : uint8_t(i));
    std::string ext = gzip ? ".gz" : "";
    write(prefix + "-images-idx3-ubyte" + ext, images, gzip);
    write(prefix + "-labels-idx1-ubyte" + ext, labels, gzip);
  }
  fs::path dir;
};

std::string errorOf(const std::function<void()> &f) {
  try {
    f();
  } catch (const IdxError &e) {
    return e.what();
  }
  return "(no error)";
}

TEST_F(IdxTest, ReadsPlainAndGzip) {
  writeSet("train", /*gzip=*/false);
  writeSet("t10k", /*gzip=*/true);
  for (const char *prefix : {"train", "t10k"}) {
    ImageSet set = loadIdxImageSet(dir.string(), prefix, 10);
    EXPECT_EQ(set.count, 3);
    EXPECT_EQ(set.rows, 2);
    EXPECT_EQ(set.cols, 2);
    ASSERT_EQ(set.images.size(), 12u);
    EXPECT_EQ(set.images[5], 50);
    EXPECT_EQ(set.labels, (std::vector<uint8_t>{0, 1, 2}));
  }
}

TEST_F(IdxTest, MissingFileNamesIt) {
  std::string msg =
      errorOf([&] { loadIdxImageSet(dir.string(), "train", 10); });
  EXPECT_NE(msg.find("train-images-idx3-ubyte: no such file"),
            std::string::npos)
      << msg;
  // A file given as the folder is said to be one.
  std::string file = write("model.net", {1, 2, 3});
  msg = errorOf([&] { loadIdxImageSet(file, "train", 10); });
  EXPECT_NE(msg.find("model.net: not a folder"), std::string::npos) << msg;
}

TEST_F(IdxTest, BadMagic) {
  std::string path = write("x", {1, 2, 3, 4, 5});
  EXPECT_EQ(errorOf([&] { readIdx(path); }),
            path + ": not an IDX file (bad magic)");
}

TEST_F(IdxTest, TooShort) {
  std::string path = write("x", {0, 0});
  EXPECT_EQ(errorOf([&] { readIdx(path); }),
            path + ": too short for an IDX header (2 bytes)");
}

TEST_F(IdxTest, WrongElementType) {
  std::string path = write("x", {0, 0, 0x0d, 1, 0, 0, 0, 0});
  EXPECT_NE(errorOf([&] { readIdx(path); }).find("0x0d is not supported"),
            std::string::npos);
}

TEST_F(IdxTest, TruncatedData) {
  auto bytes = header({2, 2, 2});
  bytes.push_back(1);
  std::string path = write("x", bytes);
  EXPECT_EQ(errorOf([&] { readIdx(path); }),
            path + ": header promises 8 values but the file holds 1");
}

TEST_F(IdxTest, MoreDataThanTheHeaderPromises) {
  auto bytes = header({2, 2});
  bytes.resize(bytes.size() + 5, 7);
  std::string path = write("x", bytes);
  EXPECT_EQ(errorOf([&] { readIdx(path); }),
            path + ": header promises 4 values but the file holds more");
  // A small compressed file inflating to far more is refused after the
  // promised values and one byte more (it was inflated whole first, and a
  // 14 MB one took 4 GB of memory).
  bytes = header({2, 2});
  bytes.resize(size_t(64) << 20, 0);
  path = write("bomb.gz", bytes, /*gzip=*/true);
  EXPECT_LT(std::filesystem::file_size(path), uint64_t(1) << 20);
  EXPECT_EQ(errorOf([&] { readIdx(path); }),
            path + ": header promises 4 values but the file holds more");
}

TEST_F(IdxTest, AHugePromiseIsNotAllocated) {
  // 16 bytes promising 4 GiB: refused for what the file holds, without
  // allocating what it promised.
  std::string path = write("x", header({65536, 256, 256}));
  EXPECT_EQ(errorOf([&] { readIdx(path); }),
            path + ": header promises 4294967296 values but the file holds 0");
}

TEST_F(IdxTest, CorruptGzip) {
  std::vector<uint8_t> bytes{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff};
  std::string path = write("x.gz", bytes);
  EXPECT_NE(errorOf([&] { readIdx(path); }).find("corrupt compressed data"),
            std::string::npos);
}

TEST_F(IdxTest, CountMismatch) {
  writeSet("train", false, 2, /*labelCount=*/4);
  EXPECT_NE(errorOf([&] {
              loadIdxImageSet(dir.string(), "train", 10);
            }).find("holds 3 images but"),
            std::string::npos);
}

TEST_F(IdxTest, LabelOutOfRange) {
  writeSet("train", false, /*lastLabel=*/10);
  EXPECT_NE(errorOf([&] {
              loadIdxImageSet(dir.string(), "train", 10);
            }).find("label 10 at index 2 is not below 10 classes"),
            std::string::npos);
}

// An empty set (a header of 0 images) is refused: evaluated, it read as a
// test error of 0.00% (0 of 0 wrong).
TEST_F(IdxTest, EmptySet) {
  write("t10k-images-idx3-ubyte", header({0, 28, 28}));
  write("t10k-labels-idx1-ubyte", header({0}));
  EXPECT_NE(errorOf([&] {
              loadIdxImageSet(dir.string(), "t10k", 10);
            }).find("t10k-images-idx3-ubyte: the file holds no images"),
            std::string::npos);
}

TEST(IdxRealData, FashionMnistIfInstalled) {
  const char *dir = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(dir))
    GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  ImageSet test = loadIdxImageSet(dir, "t10k", 10);
  EXPECT_EQ(test.count, 10000);
  EXPECT_EQ(test.rows, 28);
  EXPECT_EQ(test.cols, 28);
}

} // namespace
