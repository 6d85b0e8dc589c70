//===- WorkDir.h - a harness's own scratch directory ------------*- C++ -*-===//
//
// The runtime's readers take paths, not bytes, so the harnesses that feed
// them write each input to a file. The files live in a directory of the
// process's own, made on first use under /dev/shm (or $TMPDIR, or /tmp) and
// removed, with the files named here, when the process exits.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_TEST_FUZZ_WORKDIR_H
#define NETC_TEST_FUZZ_WORKDIR_H

#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <unistd.h>
#include <vector>

namespace netc::fuzz {

namespace detail {
inline std::string &dir() {
  static std::string d;
  return d;
}
inline std::vector<std::string> &files() {
  static std::vector<std::string> f;
  return f;
}
inline void removeDir() {
  for (const std::string &f : files())
    std::remove((dir() + "/" + f).c_str());
  rmdir(dir().c_str());
}
} // namespace detail

/// The directory (made by the first call, named `<prefix>.XXXXXX`); at exit
/// it and `files` (names within it) are removed.
inline const std::string &workDir(const char *prefix,
                                  std::initializer_list<const char *> files) {
  std::string &dir = detail::dir();
  if (dir.empty()) {
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                       : std::getenv("TMPDIR")       ? std::getenv("TMPDIR")
                                                     : "/tmp";
    std::string tmpl = std::string(base) + "/" + prefix + ".XXXXXX";
    if (!mkdtemp(tmpl.data())) {
      std::perror("mkdtemp");
      std::abort();
    }
    dir = tmpl;
    detail::files().assign(files.begin(), files.end());
    std::atexit(detail::removeDir);
  }
  return dir;
}

} // namespace netc::fuzz

#endif // NETC_TEST_FUZZ_WORKDIR_H
