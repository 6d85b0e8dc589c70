//===- File.cpp - bounded reads of regular files --------------------------===//

#include "runtime/io/File.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace netc::io {

static const char *kindOf(mode_t mode) {
  if (S_ISDIR(mode))
    return "a directory";
  if (S_ISFIFO(mode))
    return "a FIFO";
  if (S_ISCHR(mode))
    return "a character device";
  if (S_ISBLK(mode))
    return "a block device";
  if (S_ISSOCK(mode))
    return "a socket";
  return "not a regular file";
}

RegularFile::RegularFile(const std::string &path, uint64_t maxBytes)
    : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd_ < 0) {
    int err = errno;
    throw FileError(fmt::format(
        "{}: {}", path,
        err == ENOENT ? std::string("no such file")
                      : fmt::format("cannot open: {}", std::strerror(err))));
  }
  struct stat st;
  if (::fstat(fd_, &st) != 0) {
    int err = errno;
    ::close(fd_);
    throw FileError(
        fmt::format("{}: cannot stat: {}", path, std::strerror(err)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd_);
    throw FileError(
        fmt::format("{}: is {}, not a regular file", path, kindOf(st.st_mode)));
  }
  size_ = uint64_t(st.st_size);
  if (size_ > maxBytes) {
    ::close(fd_);
    throw FileError(fmt::format("{}: {} is larger than the {} this reader "
                                "accepts",
                                path, formatBytes(size_),
                                formatBytes(maxBytes)));
  }
  // Regular files ignore O_NONBLOCK, but clear it so reads behave plainly.
  int flags = ::fcntl(fd_, F_GETFL);
  if (flags >= 0)
    ::fcntl(fd_, F_SETFL, flags & ~O_NONBLOCK);
}

RegularFile::~RegularFile() {
  if (fd_ >= 0)
    ::close(fd_);
}

void RegularFile::readAt(uint64_t offset, void *dst, uint64_t n) const {
  auto *out = static_cast<char *>(dst);
  while (n > 0) {
    ssize_t r = ::pread(fd_, out, size_t(std::min<uint64_t>(n, 1u << 30)),
                        off_t(offset));
    if (r < 0) {
      if (errno == EINTR)
        continue;
      throw FileError(
          fmt::format("{}: read failed: {}", path_, std::strerror(errno)));
    }
    if (r == 0)
      throw FileError(fmt::format("{}: ends at byte {} (truncated while being "
                                  "read?)",
                                  path_, offset));
    out += r;
    offset += uint64_t(r);
    n -= uint64_t(r);
  }
}

std::string RegularFile::readAll() const {
  std::string text(size_t(size_), '\0');
  readAt(0, text.data(), size_);
  return text;
}

std::string readFile(const std::string &path, uint64_t maxBytes) {
  return RegularFile(path, maxBytes).readAll();
}

std::string formatBytes(uint64_t bytes) {
  static const char *units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024)
    return fmt::format("{} bytes", bytes);
  double v = double(bytes);
  int u = -1;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  return fmt::format("{:.3g} {}", v, units[u]);
}

uint64_t availableMemoryBytes() {
  uint64_t avail = 0;
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t kib;
  std::string unit;
  while (meminfo >> key >> kib) {
    std::getline(meminfo, unit);
    if (key == "MemAvailable:") {
      avail = kib * 1024;
      break;
    }
  }
  // cgroup v2: memory.max minus memory.current, where a limit is set.
  std::ifstream maxFile("/sys/fs/cgroup/memory.max"),
      curFile("/sys/fs/cgroup/memory.current");
  std::string maxText;
  uint64_t current = 0;
  if (maxFile >> maxText && maxText != "max" && curFile >> current) {
    uint64_t limit = std::strtoull(maxText.c_str(), nullptr, 10);
    uint64_t left = limit > current ? limit - current : 0;
    if (avail == 0 || left < avail)
      avail = left;
  }
  return avail;
}

} // namespace netc::io
