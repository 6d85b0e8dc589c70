//===- Passes.td - The netc pass pipeline --------------------*- tablegen -*-===//

#ifndef NETC_PASSES_TD
#define NETC_PASSES_TD

include "mlir/Pass/PassBase.td"

def InferShapes : Pass<"net-infer-shapes", "::mlir::ModuleOp"> {
  let summary = "Give every value a static shape (the batch stays dynamic)";
  let description = [{
    Visits the layers of each network function in order (entering macro-layers)
    and sets each result type from the operand types with the layer's shape
    function. Parameters get their shapes from the layers that read them: a
    conv weight declared `tensor<64x?x3x3xf32>` becomes `tensor<64x3x3x3xf32>`
    once the input's channels are known. A shape that cannot fit is reported
    at the layer, i.e. at its place in the .net file. Function signatures and
    `net.param` declarations are updated at the end.
  }];
  let dependentDialects = ["::netc::net::NetDialect"];
}

def Mirror : Pass<"net-mirror", "::mlir::ModuleOp"> {
  let summary = "Synthesise the decoder and the reconstruction losses";
  let description = [{
    Mirrors the encoder's macro-layers into a decoder (unpool first, then the
    mirrored convolutions, a ReLU after each except the one producing the
    image) and wires the paper's losses into one `net.objective`. The variant
    comes from the module's `net.augment` unless the `variant` option names
    one: none, sae-first, sae-all, sae-layerwise, swwae-first, swwae-all,
    swwae-layerwise. See README "The mirror pass" for the exact rules.
  }];
  let options = [
    Option<"variant", "variant", "std::string", /*default=*/"\"\"",
           "Override the augment variant of the module">,
  ];
  let dependentDialects = ["::netc::net::NetDialect"];
}

#endif // NETC_PASSES_TD
