//===- File.h - bounded reads of regular files ------------------*- C++ -*-===//
//
// Every file the runtime reads (plan.json, checkpoints, parameters, IDX data)
// goes through here: it must be a regular file (a FIFO, a device such as
// /dev/zero or a directory is refused before anything blocks or reads without
// end) and at most `maxBytes` long. Opening uses O_NONBLOCK so that even a
// FIFO swapped in after the check cannot hang the open; the type is checked
// on the open descriptor (fstat), not on the name.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_IO_FILE_H
#define NETC_RUNTIME_IO_FILE_H

#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace netc::io {

/// A file could not be opened or read; the message names the file.
class FileError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// An open regular file; closes on destruction.
class RegularFile {
public:
  /// Opens `path` for reading; throws FileError if it does not exist, is not
  /// a regular file, or is larger than `maxBytes`.
  RegularFile(const std::string &path, uint64_t maxBytes);
  ~RegularFile();
  RegularFile(const RegularFile &) = delete;
  RegularFile &operator=(const RegularFile &) = delete;

  int fd() const { return fd_; }
  uint64_t size() const { return size_; }
  const std::string &path() const { return path_; }
  /// Reads exactly `n` bytes at `offset`; throws FileError if the file ends
  /// first or a read fails.
  void readAt(uint64_t offset, void *dst, uint64_t n) const;
  /// The whole file.
  std::string readAll() const;

private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

/// The whole of `path` (a regular file of at most `maxBytes`).
std::string readFile(const std::string &path, uint64_t maxBytes);

/// Where an output written atomically (a file beside it, renamed over it)
/// must go: `path`, or the file a symbolic link there points to (renaming
/// over the link would replace the link), also where a dangling link points
/// (that file is then made, as a shell's `>` makes it). A directory, device,
/// FIFO or socket there is a FileError: renaming over `/dev/null` or a FIFO
/// would replace it with a plain file.
std::string outputTarget(const std::string &path);

/// Writes `pieces`, one after another, to `path` atomically: a hidden
/// temporary file beside its outputTarget (`.<name>.tmp.<pid>`, created
/// afresh: a link or file of that name is removed, never followed), fsync,
/// rename over the target, fsync of the folder. A FileError naming `path`
/// and the reason leaves what was there as it was.
void writeFileAtomically(const std::string &path,
                         const std::vector<std::string_view> &pieces);
inline void writeFileAtomically(const std::string &path,
                                std::string_view bytes) {
  writeFileAtomically(path, std::vector<std::string_view>{bytes});
}

/// Removes the temporary files that an atomic write of `path` left behind
/// when its process was killed (`.<name>.tmp.<pid>` of a process that no
/// longer runs). Returns how many it removed; never throws for an
/// unreadable folder.
int removeStaleTemporaries(const std::string &path);

/// Whether `path` is `dir` or lies inside it, element by element (the
/// caller resolves links, or normalises, as it needs); false for an empty
/// `dir`.
bool isWithin(const std::filesystem::path &path,
              const std::filesystem::path &dir);

/// `text` for a terminal: each control character other than newline and tab
/// (C0, DEL and the C1 controls U+0080..U+009F: a file or tensor name can
/// hold an escape sequence that would rewrite the screen) and each byte that
/// is not part of valid UTF-8, as `\xNN` per byte. Messages are passed
/// through it where they are printed. Without `keepNewlines`, a newline is
/// escaped too: an error printed as one line stays one (a file name may
/// hold a newline).
std::string printable(const std::string &text, bool keepNewlines = true);

/// "1.5 GiB", "12 MiB", "640 bytes": sizes in messages.
std::string formatBytes(uint64_t bytes);

/// A number in messages, with NaN and the infinities spelt out ("NaN",
/// "+infinity", "-infinity") where printf writes "-nan" or "inf".
std::string formatNumber(double v);

/// Memory this process could still get: MemAvailable, bounded by the
/// limits of its cgroup and the cgroup's ancestors (v1 or v2; reclaimable
/// file cache counted as free). Nothing if it cannot be told. Allocations of
/// more are refused before they are tried (exec::reserveHostBytes).
std::optional<uint64_t> availableMemoryBytes();

} // namespace netc::io

#endif // NETC_RUNTIME_IO_FILE_H
