//===- NetBase.td - The net dialect, its types and attributes -*- tablegen -*-===//
//
// Feature maps are builtin ranked tensors `tensor<?xCxHxWxf32>` whose batch
// stays dynamic; before `net-infer-shapes` they may be `tensor<*xf32>`.
// Parameters are module-level symbols (`net.param`) read with
// `net.param_get`, so every later pass treats encoder and decoder alike.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_DIALECT_NETBASE_TD
#define NETC_DIALECT_NETBASE_TD

include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/OpBase.td"

def Net_Dialect : Dialect {
  let name = "net";
  let cppNamespace = "::netc::net";
  let summary = "Classification networks augmented with reconstructive decoders";
  let description = [{
    The `net` dialect describes a convolutional classifier as a dataflow graph
    of layers, grouped into convolution-pooling macro-layers (`net.macro`), and
    the decoders and losses that the mirror pass adds to it. Feature maps are
    NCHW `f32` tensors with a dynamic batch; max-pooling also yields its
    switches (`!net.switches`), which a what-where unpooling consumes.
  }];
  let useDefaultTypePrinterParser = 1;
  let useDefaultAttributePrinterParser = 1;
  // The discardable `net.*` attributes of functions and planned ops.
  let hasOperationAttrVerify = 1;
}

// Numbers that reach plan.json must be finite: JSON has no NaN or Inf.
def Net_F64Attr : ConfinedAttr<F64Attr, [AttrConstraint<
    CPred<"::llvm::cast<::mlir::FloatAttr>($_self).getValue().isFinite()">,
    "whose value is finite">]>;
def Net_F64ArrayAttr : ConfinedAttr<DenseF64ArrayAttr, [AttrConstraint<
    CPred<"::llvm::all_of(::llvm::cast<::mlir::DenseF64ArrayAttr>($_self)"
          ".asArrayRef(), [](double d) { return std::isfinite(d); })">,
    "whose values are finite">]>;

class Net_Type<string name, string typeMnemonic, list<Trait> traits = []>
    : TypeDef<Net_Dialect, name, traits> {
  let mnemonic = typeMnemonic;
}

def Net_SwitchesType : Net_Type<"Switches", "switches"> {
  let summary = "argmax positions recorded by a max-pool";
  let description = [{
    One entry per pooled output element: the position, flattened as
    `h * W + w` within its input plane, of the maximum the pool selected.
    The shape is that of the pooled output (batch dynamic). `*` means not yet
    inferred. Switches carry no gradient.

    ```mlir
    !net.switches<?x64x112x112>
    !net.switches<*>
    ```
  }];
  let parameters = (ins ArrayRefParameter<"int64_t">:$shape);
  let hasCustomAssemblyFormat = 1;
  let extraClassDeclaration = [{
    /// True once net-infer-shapes has given the switches a shape.
    bool hasRank() const { return !getShape().empty(); }
  }];
}

class Net_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<Net_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

def Net_GaussianInitAttr : Net_Attr<"GaussianInit", "gaussian"> {
  let summary = "initialise from a normal distribution";
  let description = "`#net.gaussian<std = 1.0e-02, mean = 0.0>`";
  let parameters = (ins "::llvm::APFloat":$std, "::llvm::APFloat":$mean);
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

def Net_ConstantInitAttr : Net_Attr<"ConstantInit", "constant"> {
  let summary = "initialise every element to one value";
  let description = "`#net.constant<value = 0.0>`";
  let parameters = (ins "::llvm::APFloat":$value);
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

def Net_FileInitAttr : Net_Attr<"FileInit", "file"> {
  let summary = "initialise from a tensor in a safetensors file";
  let description = [{
    `#net.file<path = "vgg16.safetensors", key = "conv1_1.weight">`. An empty
    key means the parameter's own name.
  }];
  let parameters = (ins StringRefParameter<>:$path, StringRefParameter<>:$key);
  let assemblyFormat = "`<` struct(params) `>`";
}

#endif // NETC_DIALECT_NETBASE_TD
