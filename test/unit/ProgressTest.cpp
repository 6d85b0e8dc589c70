//===- ProgressTest.cpp - the training progress bar's line ----------------===//

#include "runtime/train/Progress.h"

#include <gtest/gtest.h>

#include <limits>
#include <sstream>

using namespace netc::train;

namespace {

Progress sample() {
  Progress p;
  p.phase = "joint";
  p.epoch = 2;
  p.epochs = 3;
  p.step = 250;
  p.steps = 1000;
  p.loss = 0.3125;
  p.terms = {{"classification", 0.25}, {"recon.image", 28.5}};
  p.imagesPerSecond = 5120.4;
  p.secondsLeft = 75;
  return p;
}

TEST(ProgressTest, WideLineHasEverything) {
  std::string line = formatProgress(sample(), 200);
  EXPECT_EQ(line, "[joint] epoch 2/3 [#######.......................] "
                  "250/1000  25% loss 0.3125 classification 0.25 "
                  "recon.image 28.5 5120 img/s ETA 1:15");
}

TEST(ProgressTest, NarrowLineDropsTermsThenShrinksTheBar) {
  std::string line = formatProgress(sample(), 79);
  EXPECT_LE(line.size(), 79u);
  EXPECT_NE(line.find("ETA 1:15"), std::string::npos) << line;
  EXPECT_EQ(line.find("recon.image"), std::string::npos) << line;
  EXPECT_LE(formatProgress(sample(), 20).size(), 20u);
}

TEST(ProgressTest, UnknownTimeAndFullBar) {
  Progress p = sample();
  p.secondsLeft = -1;
  p.step = p.steps;
  std::string line = formatProgress(p, 200);
  EXPECT_NE(line.find("ETA ?"), std::string::npos) << line;
  EXPECT_NE(line.find("[##############################]"), std::string::npos)
      << line;
  EXPECT_NE(line.find("100%"), std::string::npos) << line;
}

TEST(ProgressTest, Durations) {
  EXPECT_EQ(formatDuration(0), "0:00");
  EXPECT_EQ(formatDuration(59.6), "1:00");
  EXPECT_EQ(formatDuration(3725), "1:02:05");
  EXPECT_EQ(formatDuration(-1), "?");
  EXPECT_EQ(formatDuration(std::numeric_limits<double>::infinity()), "?");
}

TEST(ProgressTest, BarRedrawsInPlaceAndClears) {
  std::ostringstream out;
  ProgressBar bar(out, 100);
  bar.update(sample());
  bar.update(sample()); // within a tenth of a second: not drawn again
  bar.clear();
  bar.clear(); // nothing shown: nothing to erase
  std::string s = out.str();
  EXPECT_EQ(s.rfind("\r\033[K[joint]", 0), 0u) << s;
  EXPECT_EQ(s.find("[joint]", 1), s.rfind("[joint]")) << "drawn twice: " << s;
  EXPECT_EQ(s.substr(s.size() - 4), "\r\033[K");
}

TEST(ProgressTest, NotATerminal) { EXPECT_EQ(terminalColumns(-1), 0); }

} // namespace
