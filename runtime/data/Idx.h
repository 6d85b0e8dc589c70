//===- Idx.h - IDX data files (MNIST, Fashion-MNIST) ------------*- C++ -*-===//
//
// Reads the IDX format (big-endian magic 0x00 0x00 type rank, then the rank
// dimensions, then the data), plain or gzip-compressed. Every problem with a
// file is an IdxError naming the file and what is wrong with it.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_DATA_IDX_H
#define NETC_RUNTIME_DATA_IDX_H

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace netc::data {

class IdxError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// An IDX file of unsigned bytes: images [n, h, w] or labels [n].
struct IdxArray {
  std::vector<uint32_t> dims;
  std::vector<uint8_t> data;
};

/// Reads `path` (gzip or plain, detected from the content). Only the unsigned
/// byte element type (0x08) is accepted, as used by (Fashion-)MNIST.
IdxArray readIdx(const std::string &path);

/// A labelled image set: `images` is [count, channels, rows, cols] in
/// [0, 255] (channel-planar).
struct ImageSet {
  int64_t count = 0, rows = 0, cols = 0, channels = 1;
  std::vector<uint8_t> images;
  std::vector<uint8_t> labels;
};

/// Loads `<dir>/<prefix>-images-idx3-ubyte[.gz]` and the matching labels,
/// checking that counts agree and every label is below `classes`.
ImageSet loadIdxImageSet(const std::string &dir, const std::string &prefix,
                         int classes);

/// Every file loadIdxImageSet may read from `dir` (both splits, plain and
/// gzipped), whether it exists or not.
std::vector<std::string> idxFiles(const std::string &dir);

} // namespace netc::data

#endif // NETC_RUNTIME_DATA_IDX_H
