//===- Plot.h - netrun plot: training curves from a metrics file -*- C++ -*-===//
//
// `netrun plot METRICS.jsonl -o curves.png` reads the JSON lines that
// `netrun train --metrics` writes and draws two panels: every loss term (and
// the total) against the global step on a log scale, and the test error
// after each phase; dashed lines mark where each phase begins. Drawn with
// PLplot's cairo PNG driver (Debian's libplplot-dev, plplot-driver-cairo);
// without PLplot in the build the command says so.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_TOOLS_NETRUN_PLOT_H
#define NETC_TOOLS_NETRUN_PLOT_H

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace netc::plot {

/// (global step, value) points of one curve, in file order.
using Curve = std::vector<std::pair<double, double>>;

/// What a metrics file holds for a plot.
struct Metrics {
  /// "loss" (the weighted total) and each term, from the step records.
  std::map<std::string, Curve> losses;
  /// Top-1 test error (%) from the eval records.
  Curve testError;
  /// Each phase's first global step and name, in order.
  std::vector<std::pair<double, std::string>> phases;
};

/// Parses `path` (JSON lines; records other than "step", "eval" and
/// "resume" are skipped; a "resume" record drops the points after its
/// global step that came before it, the steps a stopped run did past its
/// last checkpoint). A line that is not a JSON object, or a step or eval record
/// without its numbers, is a std::runtime_error naming the file and line;
/// so is a file without a single step record.
Metrics readMetrics(const std::string &path);

/// Whether this netrun was built with PLplot.
bool available();

/// Draws `m` into the PNG `out` (width x height pixels); the title names
/// the metrics file. Throws std::runtime_error if PLplot is missing or the
/// file cannot be written.
void writePng(const Metrics &m, const std::string &out,
              const std::string &title, int width = 1100, int height = 800);

} // namespace netc::plot

#endif // NETC_TOOLS_NETRUN_PLOT_H
