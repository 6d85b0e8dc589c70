//===- Progress.cpp - a progress bar for training on a terminal -----------===//

#include "runtime/train/Progress.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include <sys/ioctl.h>
#include <unistd.h>

namespace netc::train {

std::string formatDuration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e8)
    return "?";
  auto s = int64_t(std::llround(seconds));
  if (s >= 3600)
    return fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

std::string formatProgress(const Progress &p, int width) {
  int64_t steps = std::max<int64_t>(p.steps, 1);
  double done = std::clamp(double(p.step) / double(steps), 0.0, 1.0);
  std::string head = fmt::format("[{}] epoch {}/{} ", p.phase, p.epoch,
                                 std::max<int64_t>(p.epochs, 1));
  std::string tail = fmt::format(
      " {}/{} {:3.0f}% loss {:.4g}", p.step, steps, 100 * done, p.loss);
  std::string rate =
      fmt::format(" {:.0f} img/s ETA {}", p.imagesPerSecond,
                  p.secondsLeft < 0 ? std::string("?")
                                    : formatDuration(p.secondsLeft));
  // The bar gets what the rest leaves, 5 to 30 columns; then the terms
  // while they fit.
  int barWidth = std::clamp(
      width - int(head.size() + tail.size() + rate.size()) - 2, 5, 30);
  int filled = int(std::floor(done * barWidth));
  std::string bar = "[" + std::string(size_t(filled), '#') +
                    std::string(size_t(barWidth - filled), '.') + "]";
  std::string line = head + bar + tail;
  std::string terms;
  for (auto &[name, v] : p.terms) {
    std::string t = fmt::format(" {} {:.4g}", name, v);
    if (int(line.size() + terms.size() + t.size() + rate.size()) > width)
      break;
    terms += t;
  }
  line += terms + rate;
  if (width > 0 && int(line.size()) > width)
    line.resize(size_t(width));
  return line;
}

int terminalColumns(int fd) {
  if (!isatty(fd))
    return 0;
  struct winsize w {};
  if (ioctl(fd, TIOCGWINSZ, &w) == 0 && w.ws_col > 0)
    return int(w.ws_col);
  return 80;
}

void ProgressBar::update(const Progress &p, bool force) {
  auto now = std::chrono::steady_clock::now();
  if (!force && shown_ && now - last_ < std::chrono::milliseconds(100))
    return;
  // Stay a column short of the edge: a full line would wrap on some
  // terminals.
  out_ << "\r\033[K" << formatProgress(p, width_ - 1);
  out_.flush();
  shown_ = true;
  last_ = now;
}

ProgressBar::~ProgressBar() {
  try {
    clear();
  } catch (...) { // (a stream set to throw; nothing to do about it here)
  }
}

void ProgressBar::clear() {
  if (!shown_)
    return;
  out_ << "\r\033[K";
  out_.flush();
  shown_ = false;
}

} // namespace netc::train
