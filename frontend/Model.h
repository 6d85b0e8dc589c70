//===- Model.h - The checked, expanded form of a .net file ------*- C++ -*-===//
//
// The frontend's output and MLIRGen's input. Sema turns the AST (blocks,
// `repeat`, imports, block parameters) into this flat, fully resolved model:
// every number is known, every layer has its final name, every user error has
// already been reported. MLIRGen only translates; it never diagnoses syntax.
//
// Shapes are *not* checked here: they are the job of `net-infer-shapes`, which
// reports at the op, whose location is the layer's place in the source.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_FRONTEND_MODEL_H
#define NETC_FRONTEND_MODEL_H

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace netc {

/// A place in a source file: 1-based line and column. `file` is the path the
/// file was opened with, so diagnostics can reopen it for the caret line.
struct Loc {
  std::shared_ptr<std::string> file;
  unsigned line = 0;
  unsigned col = 0;
};

/// How a parameter tensor is initialised.
struct InitSpec {
  enum class Kind { Gaussian, Constant, File };
  Kind kind = Kind::Gaussian;
  double value = 0.0; ///< std for Gaussian, the value for Constant.
  double mean = 0.0;  ///< mean for Gaussian.
  std::string path;   ///< File: a safetensors file.
  std::string key;    ///< File: tensor name in it; empty = the parameter name.
  Loc namedAt; ///< File: where the file is named (`file(...)` or `pretrained`).
};

/// Initialiser and optimiser multipliers of one parameter tensor.
struct ParamSpec {
  InitSpec init;
  double lrMult = 1.0;
  double decayMult = 1.0;
};

enum class LayerKind {
  Conv,
  Relu,
  MaxPool,
  AvgPool,
  FC,
  Dropout,
  LRN,
  BatchNorm,
  Flatten,
};

/// One layer with every option resolved to a number.
struct Layer {
  LayerKind kind;
  std::string name; ///< Final, unique name (`conv3_1`, `fc6`, `conv1.pool`).
  Loc loc;          ///< The layer's kind keyword (or its label).

  // conv / fc
  int64_t outChannels = 0;             ///< conv output channels, fc outputs.
  bool hasBias = true;                 ///< conv / fc.
  int64_t groups = 1;                  ///< conv.
  std::array<int64_t, 2> kernel{1, 1}; ///< conv, pools (h, w).
  std::array<int64_t, 2> stride{1, 1}; ///< conv, pools.
  std::array<int64_t, 2> pad{0, 0};    ///< conv, pools.
  bool ceilMode = false;               ///< pools: Caffe-style ceil rounding.

  double ratio = 0.5; ///< dropout: probability of dropping.

  int64_t lrnSize = 5; ///< lrn: across-channel window.
  double lrnAlpha = 1e-4, lrnBeta = 0.75, lrnK = 1.0;

  double bnEps = 1e-5, bnMomentum = 0.9; ///< batchnorm.

  /// conv/fc: weight and bias; batchnorm: weight = scale, bias = shift.
  ParamSpec weight;
  ParamSpec bias;
  /// batchnorm: the running mean and variance (not trained: 0 and 1, or read
  /// from a `pretrained` file).
  ParamSpec runningMean;
  ParamSpec runningVar;
};

/// A convolution-pooling macro-layer: named, in network order.
struct Macro {
  std::string name;
  Loc loc;
  std::vector<Layer> layers;
};

/// One entry of the network body: either a macro-layer or a plain layer.
struct Stage {
  std::optional<Macro> macro; ///< Set for macro-layers.
  std::optional<Layer> layer; ///< Set for layers outside any macro.
};

struct Network {
  std::string name;
  Loc loc;
  std::array<int64_t, 3> input{0, 0, 0}; ///< C, H, W.
  Loc inputLoc;
  int64_t classes = 0;
  Loc classesLoc;
  std::vector<Stage> body;
};

/// The `augment` section. `variant` is one of: none, sae-first, sae-all,
/// sae-layerwise, swwae-first, swwae-all, swwae-layerwise (already checked).
struct AugmentSpec {
  bool present = false;
  Loc loc;
  std::string variant = "none";
  Loc variantLoc;
  std::optional<double> lambda; ///< Image-loss weight; default per FACTS.
  struct Gamma {
    std::string macro; ///< A macro-layer or fc layer.
    double weight;
    Loc loc;
  };
  /// Each names a stage whose reconstruction is a loss term: a macro-layer
  /// or fc layer below the top of the decoder.
  std::vector<Gamma> gammas;
  std::string from; ///< Top macro-layer (or fc) to decode from.
  Loc fromLoc;
  std::optional<std::array<int64_t, 2>> position; ///< SAE fixed switch.
  std::optional<InitSpec> decoderInit;            ///< Decoder weights.
  /// The image loss's target is the encoder's input times this (`target
  /// std=S`: the data's std / S).
  double targetScale = 1.0;
};

/// The `data` statement of the `train` section.
struct DataSpec {
  bool present = false;
  Loc loc;
  std::string kind =
      "fashion-mnist";    ///< fashion-mnist | mnist | cifar10 | images
  std::string path;       ///< Empty: the kind's default folder.
  int64_t subset = 0;     ///< First N training images; 0 = all.
  int64_t testSubset = 0; ///< First N test images; 0 = all.
  bool mirror = false;    ///< Random horizontal flip.
  int64_t crop = 0;       ///< Random crop size; 0 = none.
  int64_t cropPad = 0;    ///< Zero padding before the crop.
  std::array<int64_t, 2> scale{0, 0}; ///< Shorter-edge resize range; 0 = none.
  std::vector<double> mean;           ///< Per-channel mean, in pixel units.
  std::vector<double> std;            ///< Per-channel std; empty = 255.
  // Image folders (`images`) only:
  int64_t evalScale = 0;            ///< Evaluation resize; 0 = scale's min.
  std::string channelOrder = "rgb"; ///< rgb | bgr: the input's channels.
  int64_t workers = 0;              ///< Decoding threads; 0 = one per core.
  bool skipBad = false;             ///< Skip (and count) bad images.
};

/// One `phase` of the schedule.
struct PhaseSpec {
  std::string name;
  Loc loc;
  std::string decoder = "default"; ///< default | layerwise | stacked | none
  std::vector<std::string> freeze; ///< encoder | decoder | classifier | <layer>
  std::vector<Loc> freezeLocs;
  double lr = 0.01;
  double momentum = 0.9;
  double decay = 0.0;
  int64_t batch = 64;
  int64_t epochs = 1;
  int64_t maxSteps = 0;                   ///< Stop a phase early; 0 = no limit.
  std::string lrPolicy = "fixed";         ///< fixed | step | cosine
  double lrGamma = 0.1;                   ///< step: factor.
  int64_t lrEvery = 1;                    ///< step: epochs between drops.
  double lrMin = 0.0;                     ///< cosine: final learning rate.
  std::optional<double> lambda;           ///< Overrides the augment lambda.
  std::vector<AugmentSpec::Gamma> gammas; ///< Override the augment gammas.
  /// A learning-rate multiplier of a layer, macro-layer or decoder stage.
  struct LrMult {
    std::string name;
    double mult;
    Loc loc;
  };
  std::vector<LrMult> lrMults;
};

struct TrainSpec {
  bool present = false;
  Loc loc;
  DataSpec data;
  std::vector<PhaseSpec> phases;
  std::vector<std::string> evalSchemes; ///< full | single-crop | dense
  /// `dense`: the shorter sides the image is resized to (empty: the
  /// network's input size).
  std::vector<int64_t> denseScales;
  std::string precision; ///< fp32 | tf32 | bf16; empty: not given (fp32).
  /// `data-parallel`: gradients averaged over the ranks (net-data-parallel),
  /// in buckets of `bucket-mb` MiB (not given: the pass's default).
  bool dataParallel = false;
  std::optional<double> bucketMb;
};

/// Everything a .net file says, checked and expanded.
struct Model {
  Network network;
  AugmentSpec augment;
  TrainSpec train;
};

} // namespace netc

#endif // NETC_FRONTEND_MODEL_H
