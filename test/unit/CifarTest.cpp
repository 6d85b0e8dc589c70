//===- CifarTest.cpp - CIFAR-10/100 binary batches through the data path --===//

#include "runtime/data/Cifar.h"
#include "runtime/train/Data.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

using namespace netc;
namespace fs = std::filesystem;

namespace {

class CifarTest : public ::testing::Test {
protected:
  void SetUp() override {
    dir = fs::temp_directory_path() /
          ("netc-cifar-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }

  /// Pixel (c, y, x) of record r: a value that identifies all four.
  static uint8_t pixel(int r, int c, int y, int x) {
    return uint8_t((r * 37 + c * 80 + y * 3 + x) % 256);
  }
  /// A file of `count` records with labels `r % classes` (`labelBytes` 2:
  /// coarse label 99 first, as CIFAR-100 has).
  void write(const fs::path &path, int count, int labelBytes, int classes,
             int first = 0) {
    std::ofstream out(path, std::ios::binary);
    for (int r = first; r < first + count; ++r) {
      if (labelBytes == 2)
        out.put(char(99));
      out.put(char(r % classes));
      for (int c = 0; c < 3; ++c)
        for (int y = 0; y < 32; ++y)
          for (int x = 0; x < 32; ++x)
            out.put(char(pixel(r, c, y, x)));
    }
  }
  void writeCifar10(const fs::path &folder, int perBatch) {
    fs::create_directories(folder);
    for (int b = 1; b <= 5; ++b)
      write(folder / ("data_batch_" + std::to_string(b) + ".bin"), perBatch, 1,
            10, (b - 1) * perBatch);
    write(folder / "test_batch.bin", 3, 1, 10, 1000);
  }
  std::string error(const std::string &kind, bool train, int classes) {
    try {
      data::loadCifar(dir.string(), kind, train, classes);
    } catch (const data::CifarError &e) {
      return e.what();
    }
    return "";
  }
  fs::path dir;
};

TEST_F(CifarTest, Cifar10BatchesInOrder) {
  writeCifar10(dir, 2);
  data::ImageSet train = data::loadCifar(dir.string(), "cifar10", true, 10);
  ASSERT_EQ(train.count, 10);
  EXPECT_EQ(train.channels, 3);
  EXPECT_EQ(train.rows, 32);
  for (int r = 0; r < 10; ++r) {
    EXPECT_EQ(train.labels[size_t(r)], r % 10);
    // Channel-planar: channel c of image r starts at (r * 3 + c) * 1024.
    for (int c = 0; c < 3; ++c)
      EXPECT_EQ(train.images[size_t((r * 3 + c) * 1024 + 5 * 32 + 7)],
                pixel(r, c, 5, 7));
  }
  data::ImageSet test = data::loadCifar(dir.string(), "cifar10", false, 10);
  EXPECT_EQ(test.count, 3);
  EXPECT_EQ(test.labels[1], 1001 % 10);
}

TEST_F(CifarTest, Cifar100FineLabelAndArchiveFolder) {
  fs::create_directories(dir / "cifar-100-binary");
  write(dir / "cifar-100-binary" / "train.bin", 4, 2, 100, 97);
  write(dir / "cifar-100-binary" / "test.bin", 2, 2, 100);
  data::ImageSet train = data::loadCifar(dir.string(), "cifar100", true, 100);
  ASSERT_EQ(train.count, 4);
  EXPECT_EQ(train.labels[0], 97); // the fine label, not the coarse 99
  EXPECT_EQ(train.labels[3], 0);
  EXPECT_EQ(train.images[size_t(2 * 1024)], pixel(97, 2, 0, 0));
}

TEST_F(CifarTest, BadFilesNameTheFile) {
  writeCifar10(dir, 1);
  fs::remove(dir / "data_batch_3.bin");
  EXPECT_EQ(error("cifar10", true, 10),
            (dir / "data_batch_3.bin").string() + ": no such file");
  write(dir / "data_batch_3.bin", 1, 1, 10);
  std::ofstream(dir / "test_batch.bin", std::ios::binary | std::ios::app)
      .put('x');
  EXPECT_EQ(error("cifar10", false, 10),
            (dir / "test_batch.bin").string() +
                ": 9220 bytes are not a whole number of 3073-byte cifar10 "
                "records (truncated?)");
  write(dir / "test_batch.bin", 3, 1, 10, 1000);
  EXPECT_NE(error("cifar10", false, 1)
                .find("record 1: label 1 is not below 1 "
                      "classes"),
            std::string::npos);
}

TEST_F(CifarTest, BatchesThroughTheDataPath) {
  writeCifar10(dir, 2);
  train::DataOptions o;
  o.kind = "cifar10";
  o.dir = dir.string();
  o.channels = 3;
  o.height = o.width = 32;
  o.classes = 10;
  o.mean = {100, 110, 120};
  o.std = {50, 60, 70};
  train::Datasets d = train::loadDatasets(o);
  EXPECT_EQ(d.train.size(), 10);
  std::vector<float> img(3 * 32 * 32);
  int32_t label;
  int64_t i = 4;
  d.train.makeBatch(&i, 1, /*augment=*/false, 0, img.data(), &label);
  EXPECT_EQ(label, 4);
  for (int c = 0; c < 3; ++c)
    EXPECT_FLOAT_EQ(img[size_t(c * 1024 + 3 * 32 + 9)],
                    (float(pixel(4, c, 3, 9)) - float(o.mean[size_t(c)])) *
                        float(1.0 / o.std[size_t(c)]));
  // Random crops of 32 from the image padded by 4, and mirroring: every
  // value is a pixel of the right channel or the zero padding.
  o.crop = 32;
  o.cropPad = 4;
  o.mirror = true;
  train::Datasets p = train::loadDatasets(o);
  p.train.makeBatch(&i, 1, /*augment=*/true, 12345, img.data(), &label);
  for (int c = 0; c < 3; ++c) {
    float pad =
        (0.0f - float(o.mean[size_t(c)])) * float(1.0 / o.std[size_t(c)]);
    int padding = 0;
    for (int k = 0; k < 1024; ++k)
      padding += img[size_t(c * 1024 + k)] == pad;
    EXPECT_LT(padding, 1024 - 24 * 24) << "channel " << c;
  }
  // A one-channel network cannot take CIFAR.
  o.channels = 1;
  EXPECT_THROW(train::loadDatasets(o), train::DataError);
}

} // namespace
