//===- Interop.h - netrun export and infer: PyTorch interop -----*- C++ -*-===//
//
// `netrun export TRAINER --format F -o OUT.safetensors` writes the
// classifier's parameters (encoder and classifier, not the decoders) under
// torchvision's names, from the mapping netc keeps in the plan
// ("torchvision": netc name -> torchvision name; docs/language.md, the
// `pretrained ... names=torchvision` rule). Formats:
//   torchvision          every mapped parameter, whatever the architecture;
//   torchvision-vgg16    the same, checked to be exactly the state_dict of
//   torchvision-alexnet  torchvision.models.vgg16(num_classes=K) or
//                        alexnet(num_classes=K): every key, every shape.
// Every problem (an unknown format, a trainer without the mapping, missing,
// unexpected or wrongly shaped tensors) is one InteropError listing them all.
//
// `netrun infer TRAINER --images IN.safetensors --out OUT.safetensors` runs
// the `eval` program on the images of IN's tensor "images" ([N, C, H, W],
// f32, already normalised as the network's input) and writes their logits
// as "logits" ([N, classes]).
//
//===----------------------------------------------------------------------===//

#ifndef NETC_TOOLS_NETRUN_INTEROP_H
#define NETC_TOOLS_NETRUN_INTEROP_H

#include "runtime/exec/Backend.h"
#include "runtime/exec/ParamStore.h"
#include "runtime/io/Safetensors.h"
#include "runtime/plan/Plan.h"

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace netc::interop {

class InteropError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
  InteropError(const std::string &what, std::vector<std::string> lines)
      : std::runtime_error(what), lines(std::move(lines)) {}
  /// Problems, each printed on a line of its own under the message.
  std::vector<std::string> lines;
};

/// The formats export knows, for messages: "torchvision, ...".
std::string formatNames();

/// Throws an InteropError naming the formats unless `format` is one.
void checkFormat(const std::string &format);

/// `params` (every parameter of the trainer by its netc name) renamed for
/// `format`, checked as the format says.
io::TensorFile exportTensors(const plan::Plan &plan,
                             const io::TensorFile &params,
                             const std::string &format);

/// The logits of the images of `images` ("images", [N, C, H, W]) through
/// the `eval` program: a file with "logits", [N, classes].
io::TensorFile inferLogits(const plan::Plan &plan, exec::ParamStore &params,
                           exec::Backend &backend, const io::TensorFile &images,
                           const std::string &what);

} // namespace netc::interop

#endif // NETC_TOOLS_NETRUN_INTEROP_H
