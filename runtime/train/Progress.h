//===- Progress.h - a progress bar for training on a terminal ---*- C++ -*-===//
//
// On a terminal, `netrun train` keeps one line at the bottom that it
// redraws as training goes: the phase, the epoch, the step of the phase with
// a bar, the loss and every term, images/s and the time left in the phase.
// The periodic log lines, evaluations and checkpoints still print as lines
// above it. Elsewhere (a pipe, a file, CI) nothing changes: plain lines.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_RUNTIME_TRAIN_PROGRESS_H
#define NETC_RUNTIME_TRAIN_PROGRESS_H

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace netc::train {

/// Where training is, for the bar.
struct Progress {
  std::string phase;
  int64_t epoch = 1, epochs = 1; ///< 1-based
  int64_t step = 0, steps = 1;   ///< steps done of the phase's
  double loss = 0;
  std::vector<std::pair<std::string, double>> terms;
  double imagesPerSecond = 0;
  double secondsLeft = -1; ///< of the phase; negative: not known yet
};

/// The bar as one line of at most `width` columns (ASCII), e.g.
///   [joint] epoch 1/1 [#######.......] 412/938 44% loss 0.312
///   classification 0.27 recon.image 28.1 5120 img/s ETA 0:06
/// Terms are dropped from the right when the line is too long.
std::string formatProgress(const Progress &p, int width);

/// "m:ss" or "h:mm:ss".
std::string formatDuration(double seconds);

/// The columns of the terminal on `fd`, or 0 if it is not a terminal.
int terminalColumns(int fd);

/// Draws the bar on a terminal stream, at most ten times a second.
class ProgressBar {
public:
  ProgressBar(std::ostream &out, int width) : out_(out), width_(width) {}
  /// Erases the bar: a run that stops with an error leaves its message on
  /// a line of its own, not after the bar.
  ~ProgressBar();
  ProgressBar(const ProgressBar &) = delete;
  ProgressBar &operator=(const ProgressBar &) = delete;
  /// Redraws if a tenth of a second has passed since the last draw, or
  /// `force`.
  void update(const Progress &p, bool force = false);
  /// Erases the bar (before other output); the next update draws it again.
  void clear();

private:
  std::ostream &out_;
  int width_;
  bool shown_ = false;
  std::chrono::steady_clock::time_point last_{};
};

} // namespace netc::train

#endif // NETC_RUNTIME_TRAIN_PROGRESS_H
