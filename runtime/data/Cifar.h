//===- Cifar.h - CIFAR-10 and CIFAR-100 binary batches ----------*- C++ -*-===//
//
// The "binary version" of CIFAR-10 and CIFAR-100 as distributed: fixed-size
// records of label byte(s) then 32x32x3 pixels, channel-planar (1024 red,
// 1024 green, 1024 blue), rows top to bottom.
//   cifar10:  data_batch_1.bin ... data_batch_5.bin (train), test_batch.bin
//             (test); records of <label> + 3072 bytes; 10 classes.
//   cifar100: train.bin, test.bin; records of <coarse label> <fine label> +
//             3072 bytes; the fine label (100 classes) is the class.
// The files are looked up in the folder given and, failing that, in the
// folder the archives unpack to (cifar-10-batches-bin/, cifar-100-binary/).
// Every problem is a CifarError naming the file: missing, not a regular
// file, a size that is not a whole number of records, a label out of range.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_DATA_CIFAR_H
#define NETC_RUNTIME_DATA_CIFAR_H

#include "runtime/data/Idx.h"

#include <stdexcept>
#include <string>

namespace netc::data {

class CifarError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Whether `kind` is a CIFAR kind ("cifar10", "cifar100").
bool isCifarKind(const std::string &kind);

/// Loads the training (`train`) or test split of `kind` from `dir`, checking
/// every label against `classes`. Images are [count, 3, 32, 32].
ImageSet loadCifar(const std::string &dir, const std::string &kind, bool train,
                   int classes);

/// Every file loadCifar may read from `dir` for `kind` (both splits, in
/// `dir` and in its batches' folder), whether it exists or not.
std::vector<std::string> cifarFiles(const std::string &dir,
                                    const std::string &kind);

} // namespace netc::data

#endif // NETC_RUNTIME_DATA_CIFAR_H
