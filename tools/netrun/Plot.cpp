//===- Plot.cpp - netrun plot: training curves from a metrics file --------===//

#include "tools/netrun/Plot.h"

#include "runtime/io/File.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string_view>

#include <unistd.h>

#ifdef NETC_HAVE_PLPLOT
#include <plplot.h>
#endif

namespace netc::plot {

namespace {

/// A metrics file above this size is refused (a full VGG-16 run logged
/// every step writes a few hundred MiB at most).
constexpr uint64_t kMaxMetricsBytes = uint64_t(1) << 30;

[[noreturn]] void fail(const std::string &path, size_t line,
                       const std::string &what) {
  throw std::runtime_error(fmt::format("{}:{}: {}", path, line, what));
}

double number(const nlohmann::json &record, const char *key,
              const std::string &path, size_t line) {
  auto it = record.find(key);
  if (it == record.end() || !it->is_number())
    fail(path, line, fmt::format("a {} record without a number '{}'",
                                 record.value("event", ""), key));
  return it->get<double>();
}

/// A count (a global step, a phase index): a whole number in [0, 2^53).
double count(const nlohmann::json &record, const char *key,
             const std::string &path, size_t line) {
  double v = number(record, key, path, line);
  if (!(v >= 0 && v < 0x1p53 && v == std::floor(v)))
    fail(path, line,
         fmt::format("a {} record whose '{}' is {}, not a count",
                     record.value("event", ""), key, record[key].dump()));
  return v;
}

} // namespace

Metrics readMetrics(const std::string &path) {
  std::istringstream in(io::readFile(path, kMaxMetricsBytes));
  Metrics m;
  std::string text;
  int64_t lastPhase = -1;
  std::vector<int64_t> phaseIndices; // beside m.phases
  size_t line = 0, steps = 0;
  double lastStep = -1; // of the step records, since the last resume
  while (std::getline(in, text)) {
    ++line;
    if (text.find_first_not_of(" \t\r") == std::string::npos)
      continue;
    nlohmann::json r = nlohmann::json::parse(text, nullptr, false);
    if (r.is_discarded() || !r.is_object())
      fail(path, line, "not a JSON object (a metrics file from `netrun train "
                       "--metrics` has one per line)");
    std::string event = r.value("event", "");
    if (event == "step") {
      double step = count(r, "global_step", path, line);
      if (step <= lastStep)
        fail(path, line,
             fmt::format("step {} after step {}: the steps go back without "
                         "a resume record (a metrics file holds one run and "
                         "its resumptions)",
                         step, lastStep));
      lastStep = step;
      m.losses["loss"].emplace_back(step, number(r, "loss", path, line));
      if (auto terms = r.find("terms"); terms != r.end() && terms->is_object())
        for (auto &[name, v] : terms->items())
          if (v.is_number())
            m.losses[name].emplace_back(step, v.get<double>());
      auto phase = int64_t(count(r, "phase_index", path, line));
      if (phase != lastPhase) {
        m.phases.emplace_back(step, r.value("phase", ""));
        phaseIndices.push_back(phase);
        lastPhase = phase;
      }
      ++steps;
    } else if (event == "resume") {
      // A run resumed from the checkpoint at this global step: the records
      // of later steps before it are of a run that was stopped (killed
      // between checkpoints) and whose steps are being done again.
      double at = count(r, "global_step", path, line);
      lastStep = std::min(lastStep, at);
      auto after = [at](const std::pair<double, double> &p) {
        return p.first > at;
      };
      for (auto &[name, curve] : m.losses)
        curve.erase(std::remove_if(curve.begin(), curve.end(), after),
                    curve.end());
      m.testError.erase(
          std::remove_if(m.testError.begin(), m.testError.end(), after),
          m.testError.end());
      while (!m.phases.empty() && m.phases.back().first > at) {
        m.phases.pop_back();
        phaseIndices.pop_back();
      }
      lastPhase = phaseIndices.empty() ? -1 : phaseIndices.back();
    } else if (event == "eval") {
      double error = number(r, "test_error", path, line);
      if (!(error >= 0 && error <= 100))
        fail(path, line,
             fmt::format("an eval record whose 'test_error' is {}, not a "
                         "percentage",
                         r["test_error"].dump()));
      m.testError.emplace_back(count(r, "global_step", path, line), error);
    }
  }
  if (steps == 0)
    throw std::runtime_error(fmt::format(
        "{}: no step records (write one with `netrun train --metrics`)",
        path));
  return m;
}

#ifdef NETC_HAVE_PLPLOT

bool available() { return true; }

namespace {

/// Colour map 0: white background, black axes and text, then the curves'.
void setColours() {
  static const int rgb[][3] = {
      {255, 255, 255}, {0, 0, 0},     {31, 119, 180}, {255, 127, 14},
      {44, 160, 44},   {214, 39, 40}, {148, 103, 189}, {140, 86, 75},
      {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
  const int n = int(std::size(rgb));
  int r[std::size(rgb)], g[std::size(rgb)], b[std::size(rgb)];
  for (int i = 0; i < n; ++i) {
    r[i] = rgb[i][0];
    g[i] = rgb[i][1];
    b[i] = rgb[i][2];
  }
  plscmap0(r, g, b, n);
}
constexpr int kBlack = 1, kFirstCurve = 2, kCurveColours = 10;

/// The range of `values`, widened when empty or flat.
std::pair<double, double> range(const std::vector<double> &values) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (double v : values) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  if (!(lo <= hi))
    return {0, 1};
  if (hi - lo < 1e-12)
    return {lo - 0.5, hi + 0.5};
  return {lo, hi};
}

/// Dashed vertical lines at each phase's start, its name at the top.
void markPhases(const Metrics &m, double ylo, double yhi) {
  plcol0(kBlack);
  pllsty(2);
  plschr(0, 0.7);
  for (auto &[step, name] : m.phases) {
    PLFLT x[2] = {step, step}, y[2] = {ylo, yhi};
    plline(2, x, y);
    plptex(step, yhi - 0.04 * (yhi - ylo), 1, 0, -0.05, name.c_str());
  }
  pllsty(1);
  plschr(0, 1.0);
}

/// Whether PLplot can load the driver `name` (without it, plinit asks for a
/// device on standard input).
bool hasDevice(std::string_view name) {
  const char *menus[128], *names[128];
  const char **menusAt = menus, **namesAt = names;
  int count = 128;
  plgDevs(&menusAt, &namesAt, &count);
  for (int i = 0; i < count; ++i)
    if (names[i] && name == names[i])
      return true;
  return false;
}

/// The temporary file being drawn, which PLplot's exit handler removes: an
/// error inside PLplot ends the process without unwinding.
const std::string *drawing = nullptr;
int removeDrawing(PLCHAR_VECTOR) {
  if (drawing)
    ::unlink(drawing->c_str());
  return 1;
}

} // namespace

void writePng(const Metrics &m, const std::string &out,
              const std::string &title, int width, int height) {
  if (!hasDevice("pngcairo"))
    throw std::runtime_error(
        "PLplot has no pngcairo driver here, so netrun cannot draw: install "
        "plplot-driver-cairo");
  // PLplot's driver writes a file by name, exits the process when it cannot
  // open it and does not report a failed write. So it draws into a
  // temporary file this process made beside the target (a directory,
  // device or FIFO there is refused first), whose bytes, checked whole,
  // then go to `out` as every output does: atomically.
  std::string drawn = io::outputTarget(out) + ".plot.XXXXXX";
  int fd = ::mkstemp(drawn.data());
  if (fd < 0)
    throw io::FileError(
        fmt::format("{}: cannot write: {}", out, std::strerror(errno)));
  ::close(fd);
  struct Unlink {
    const std::string &path;
    ~Unlink() {
      ::unlink(path.c_str());
      drawing = nullptr;
    }
  } unlinkDrawn{drawn};
  drawing = &drawn;
  plsexit(removeDrawing);
  double xmax = 1;
  for (auto &[name, curve] : m.losses)
    for (auto &p : curve)
      xmax = std::max(xmax, p.first);
  for (auto &p : m.testError)
    xmax = std::max(xmax, p.first);

  plsdev("pngcairo");
  plsfnam(drawn.c_str());
  plsetopt("geometry", fmt::format("{}x{}", width, height).c_str());
  setColours();
  plinit();
  plssub(1, 2);

  // Losses, on a log scale (non-positive values cannot be shown).
  pladv(1);
  plvpor(0.08, 0.78, 0.16, 0.88);
  std::vector<double> logs;
  for (auto &[name, curve] : m.losses)
    for (auto &p : curve)
      if (p.second > 0 && std::isfinite(p.second))
        logs.push_back(std::log10(p.second));
  auto [ylo, yhi] = range(logs);
  ylo = std::floor(ylo);
  yhi = std::ceil(yhi);
  plwind(0, xmax, ylo, yhi);
  plcol0(kBlack);
  plbox("bcnst", 0, 0, "bcnstvl", 0, 0);
  pllab("global step", "loss term (log scale)", title.c_str());
  std::vector<std::string> names;
  std::vector<PLINT> colours, styles, opts;
  std::vector<PLFLT> widths;
  int i = 0;
  for (auto &[name, curve] : m.losses) {
    std::vector<PLFLT> x, y;
    for (auto &p : curve)
      if (p.second > 0 && std::isfinite(p.second)) {
        x.push_back(p.first);
        y.push_back(std::log10(p.second));
      }
    int colour = kFirstCurve + i++ % kCurveColours;
    plcol0(colour);
    plwidth(name == "loss" ? 2.0 : 1.2);
    if (!x.empty())
      plline(PLINT(x.size()), x.data(), y.data());
    names.push_back(name);
    colours.push_back(colour);
    styles.push_back(1);
    opts.push_back(PL_LEGEND_LINE);
    widths.push_back(name == "loss" ? 2.0 : 1.2);
  }
  plwidth(1.0);
  markPhases(m, ylo, yhi);
  std::vector<const char *> texts;
  for (const std::string &n : names)
    texts.push_back(n.c_str());
  std::vector<PLINT> textColours(names.size(), kBlack);
  PLFLT legendWidth, legendHeight;
  plschr(0, 0.8);
  pllegend(&legendWidth, &legendHeight, PL_LEGEND_BACKGROUND,
           PL_POSITION_OUTSIDE | PL_POSITION_RIGHT, 0.01, 0.0, 0.06, 0, kBlack, 1, 0, 0, PLINT(names.size()), opts.data(),
           1.0, 0.8, 2.0, 0.0, textColours.data(), texts.data(), nullptr,
           nullptr, nullptr, nullptr, colours.data(), styles.data(),
           widths.data(), nullptr, nullptr, nullptr, nullptr);
  plschr(0, 1.0);

  // Test error after each phase.
  pladv(2);
  plvpor(0.08, 0.78, 0.16, 0.88);
  std::vector<double> errors;
  for (auto &p : m.testError)
    if (std::isfinite(p.second))
      errors.push_back(p.second);
  auto [elo, ehi] = range(errors);
  double pad = 0.1 * (ehi - elo);
  elo = std::max(0.0, elo - pad);
  ehi += pad;
  plwind(0, xmax, elo, ehi);
  plcol0(kBlack);
  plbox("bcnst", 0, 0, "bcnstv", 0, 0);
  pllab("global step", "test error (%)", "");
  markPhases(m, elo, ehi);
  if (!errors.empty()) {
    std::vector<PLFLT> x, y;
    for (auto &p : m.testError)
      if (std::isfinite(p.second)) {
        x.push_back(p.first);
        y.push_back(p.second);
      }
    plcol0(kFirstCurve + 3);
    plwidth(2.0);
    plline(PLINT(x.size()), x.data(), y.data());
    plpoin(PLINT(x.size()), x.data(), y.data(), 17);
    plwidth(1.0);
    plcol0(kBlack);
    plschr(0, 0.7);
    // Below each point (the phase names are along the top), the last
    // one's ending at it so that it stays inside the panel.
    for (size_t j = 0; j < x.size(); ++j)
      plptex(x[j], y[j] - 0.07 * (ehi - elo), 1, 0,
             j + 1 == x.size() ? 1.0 : 0.5,
             fmt::format("{:.2f}%", y[j]).c_str());
    plschr(0, 1.0);
  } else {
    plptex(xmax / 2, (elo + ehi) / 2, 1, 0, 0.5, "no evaluation yet");
  }
  plend();

  // A whole PNG starts with its signature and ends with the IEND chunk.
  std::string png = io::readFile(drawn, uint64_t(1) << 30);
  static constexpr std::string_view kSignature("\x89PNG\r\n\x1a\n", 8);
  static constexpr std::string_view kEnd("\0\0\0\0IEND\xae\x42\x60\x82", 12);
  if (png.size() < kSignature.size() + kEnd.size() ||
      std::string_view(png).substr(0, kSignature.size()) != kSignature ||
      std::string_view(png).substr(png.size() - kEnd.size()) != kEnd)
    throw io::FileError(fmt::format(
        "{}: cannot write: the plot came out incomplete ({} bytes; is the "
        "disk full?)",
        out, png.size()));
  io::writeFileAtomically(out, png);
}

#else

bool available() { return false; }

void writePng(const Metrics &, const std::string &, const std::string &, int,
              int) {
  throw std::runtime_error(
      "netrun was built without PLplot, so it cannot draw: install "
      "libplplot-dev and plplot-driver-cairo and rebuild");
}

#endif

} // namespace netc::plot
