//===- File.cpp - bounded reads of regular files --------------------------===//

#include "runtime/io/File.h"
#include "runtime/io/Controls.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fcntl.h>
#include <signal.h>
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

std::string outputTarget(const std::string &path) {
  std::string target = path;
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
    char *real = ::realpath(path.c_str(), nullptr);
    if (real) {
      target = real;
      std::free(real);
    } else { // a dangling link: its target is made where it points, as a
             // shell's `>` makes it (the rename would replace the link)
      namespace fs = std::filesystem;
      fs::path at = path;
      std::error_code ec;
      for (int hops = 0; hops < 40 && fs::is_symlink(at, ec); ++hops) {
        fs::path to = fs::read_symlink(at, ec);
        if (ec)
          return path;
        at = to.is_absolute() ? to : at.parent_path() / to;
      }
      if (fs::is_symlink(at, ec))
        throw FileError(
            fmt::format("{}: too many levels of symbolic links", path));
      return at.string();
    }
  }
  if (::stat(target.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    throw FileError(fmt::format("{}: is {}, not a regular file; an output "
                                "is written to a file",
                                path, kindOf(st.st_mode)));
  return target;
}

/// The folder an atomic write of `target` puts its temporary file in, and
/// that file's name prefix (the pid follows).
static std::pair<std::filesystem::path, std::string>
temporaryPlace(const std::filesystem::path &target) {
  return {target.parent_path().empty() ? std::filesystem::path(".")
                                       : target.parent_path(),
          "." + target.filename().string() + ".tmp."};
}

void writeFileAtomically(const std::string &path,
                         const std::vector<std::string_view> &pieces) {
  std::filesystem::path target = outputTarget(path);
  auto [dir, prefix] = temporaryPlace(target);
  std::string tmp = (dir / (prefix + std::to_string(::getpid()))).string();
  const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  int fd = ::open(tmp.c_str(), flags, 0644);
  if (fd < 0 && errno == EEXIST) { // this pid's own leftover, or a planted
    ::unlink(tmp.c_str());         // link: removed, not written through
    fd = ::open(tmp.c_str(), flags, 0644);
  }
  if (fd < 0)
    throw FileError(fmt::format("{}: cannot create {}: {}", path, tmp,
                                std::strerror(errno)));
  auto fail = [&](const char *step, int err) {
    if (fd >= 0)
      ::close(fd);
    ::unlink(tmp.c_str());
    throw FileError(fmt::format("{}: cannot write ({}): {}", path, step,
                                std::strerror(err)));
  };
  for (std::string_view piece : pieces)
    while (!piece.empty()) {
      ssize_t n = ::write(fd, piece.data(), piece.size());
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        fail("write", n < 0 ? errno : EIO);
      piece.remove_prefix(size_t(n));
    }
  if (::fsync(fd) != 0)
    fail("fsync", errno);
  int closed = ::close(fd);
  fd = -1;
  if (closed != 0)
    fail("close", errno);
  if (::rename(tmp.c_str(), target.c_str()) != 0)
    fail("rename", errno);
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

int removeStaleTemporaries(const std::string &path) {
  namespace fs = std::filesystem;
  auto [dir, prefix] = temporaryPlace(outputTarget(path));
  int removed = 0;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), last; !ec && it != last;
       it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0)
      continue;
    std::string pidText = name.substr(prefix.size());
    long pid = 0;
    auto [end, err] =
        std::from_chars(pidText.data(), pidText.data() + pidText.size(), pid);
    if (err != std::errc() || end != pidText.data() + pidText.size() ||
        pid <= 0)
      continue;
    bool alive =
        pid != ::getpid() && (::kill(pid_t(pid), 0) == 0 || errno == EPERM);
    if (!alive && fs::remove(it->path(), ec))
      ++removed;
  }
  return removed;
}

bool isWithin(const std::filesystem::path &path,
              const std::filesystem::path &dir) {
  return !dir.empty() &&
         std::mismatch(dir.begin(), dir.end(), path.begin(), path.end())
                 .first == dir.end();
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

std::string printable(const std::string &text, bool keepNewlines) {
  std::string out;
  out.reserve(text.size());
  auto escape = [&](size_t from, size_t n) {
    for (size_t k = from; k < from + n; ++k)
      out += fmt::format("\\x{:02x}", static_cast<unsigned char>(text[k]));
  };
  for (size_t i = 0; i < text.size();) {
    const auto b = static_cast<unsigned char>(text[i]);
    if (b < 0x80) {
      if (controlLength(text, i, keepNewlines))
        escape(i, 1);
      else
        out += char(b);
      ++i;
      continue;
    }
    // A UTF-8 sequence: its length from the lead byte, then continuation
    // bytes (10xxxxxx). Invalid bytes, and the C1 controls U+0080..U+009F
    // (U+009B is a CSI to some terminals), are escaped.
    const size_t n = b >= 0xc2 && b <= 0xdf   ? 2
                     : b >= 0xe0 && b <= 0xef ? 3
                     : b >= 0xf0 && b <= 0xf4 ? 4
                                              : 0;
    bool valid = n != 0 && i + n <= text.size();
    for (size_t k = 1; valid && k < n; ++k)
      valid = (static_cast<unsigned char>(text[i + k]) & 0xc0) == 0x80;
    if (!valid) {
      escape(i, 1);
      ++i;
      continue;
    }
    if (controlLength(text, i, keepNewlines)) // a C1 control
      escape(i, n);
    else
      out.append(text, i, n);
    i += n;
  }
  return out;
}

std::string formatNumber(double v) {
  if (std::isnan(v))
    return "NaN";
  if (std::isinf(v))
    return v > 0 ? "+infinity" : "-infinity";
  return fmt::format("{}", v);
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

namespace {
/// The first number in `path` (0 if unreadable), or nullopt.
std::optional<uint64_t> readNumber(const std::string &path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text) || text == "max")
    return std::nullopt;
  char *end = nullptr;
  uint64_t v = std::strtoull(text.c_str(), &end, 10);
  if (end == text.c_str())
    return std::nullopt;
  return v;
}

/// `key`'s value in a memory.stat file, or 0.
uint64_t statValue(const std::string &path, const std::string &key) {
  std::ifstream in(path);
  std::string k;
  uint64_t v;
  while (in >> k >> v)
    if (k == key)
      return v;
  return 0;
}

/// The memory left under the limits of the cgroup `dir` and its ancestors up
/// to `root`: limit - (usage - inactive file cache, which the kernel can
/// reclaim). `v2` selects the file names.
std::optional<uint64_t> cgroupLeft(std::string dir, const std::string &root,
                                   bool v2) {
  std::optional<uint64_t> best;
  for (;;) {
    std::optional<uint64_t> limit =
        readNumber(dir + (v2 ? "/memory.max" : "/memory.limit_in_bytes"));
    std::optional<uint64_t> usage =
        readNumber(dir + (v2 ? "/memory.current" : "/memory.usage_in_bytes"));
    // cgroup v1 writes "no limit" as a huge number.
    if (limit && usage && *limit < (uint64_t(1) << 60)) {
      uint64_t inactive = statValue(
          dir + "/memory.stat", v2 ? "inactive_file" : "total_inactive_file");
      uint64_t used = *usage > inactive ? *usage - inactive : 0;
      uint64_t left = *limit > used ? *limit - used : 0;
      if (!best || left < *best)
        best = left;
    }
    if (dir.size() <= root.size())
      return best;
    dir = dir.substr(0, dir.rfind('/'));
  }
}
} // namespace

std::optional<uint64_t> availableMemoryBytes() {
  std::optional<uint64_t> avail;
  {
    std::ifstream meminfo("/proc/meminfo");
    std::string key, unit;
    uint64_t kib;
    while (meminfo >> key >> kib) {
      std::getline(meminfo, unit);
      if (key == "MemAvailable:") {
        avail = kib * 1024;
        break;
      }
    }
  }
  // The process's own cgroup (v2 "0::/path", v1 "N:memory:/path"), walked up
  // to the hierarchy's root: the tightest limit wins.
  std::ifstream cgroups("/proc/self/cgroup");
  for (std::string line; std::getline(cgroups, line);) {
    size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos)
      continue;
    std::string controllers = line.substr(a + 1, b - a - 1);
    std::string path = line.substr(b + 1);
    if (path == "/")
      path.clear();
    std::optional<uint64_t> left;
    if (line.compare(0, 3, "0::") == 0) {
      left = cgroupLeft("/sys/fs/cgroup" + path, "/sys/fs/cgroup", true);
    } else if (("," + controllers + ",").find(",memory,") !=
               std::string::npos) {
      std::string root = "/sys/fs/cgroup/memory";
      // Inside a container the path may not exist under this mount: then
      // the mount's own directory is the process's cgroup.
      std::ifstream probe(root + path + "/memory.usage_in_bytes");
      left = cgroupLeft(probe ? root + path : root, root, false);
    }
    if (left && (!avail || *left < *avail))
      avail = left;
  }
  return avail;
}

} // namespace netc::io
