//===- NetInterfaces.td - Interfaces of the net dialect ------*- tablegen -*-===//

#ifndef NETC_DIALECT_NETINTERFACES_TD
#define NETC_DIALECT_NETINTERFACES_TD

include "mlir/IR/OpBase.td"

def Net_ShapeInferenceOpInterface : OpInterface<"ShapeInference"> {
  let cppNamespace = "::netc::net";
  let description = [{
    An op whose result types follow from its operand types. `net-infer-shapes`
    visits ops in order and calls `inferShapes`, which refines the result types
    (and the types of parameters the op reads) or reports, at the op, why the
    operands cannot fit.
  }];
  let methods = [
    InterfaceMethod<"Refine result (and parameter) types from operand types.",
                    "::mlir::LogicalResult", "inferShapes">,
  ];
}

#endif // NETC_DIALECT_NETINTERFACES_TD
