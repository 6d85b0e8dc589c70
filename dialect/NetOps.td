//===- NetOps.td - Operations of the net dialect -------------*- tablegen -*-===//
//
// Layers (conv2d, max_pool, ...), the macro-layer region, parameters, losses,
// and the module-level declarations that carry a .net file's `augment` and
// `train` sections to the passes that act on them.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_DIALECT_NETOPS_TD
#define NETC_DIALECT_NETOPS_TD

include "dialect/NetBase.td"
include "dialect/NetInterfaces.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/IR/BuiltinAttributes.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

class Net_Op<string mnemonic, list<Trait> traits = []>
    : Op<Net_Dialect, mnemonic, traits>;

// Types of values.
def Net_Map : TensorOf<[F32]>;
def Net_Labels : TensorOf<[I32]>;
def Net_Scalar : 0DTensorOf<[F32]>;

/// A layer: its result types follow from its operand types. The verifier and
/// `net-infer-shapes` share one shape function, `computeResultTypes`, so a
/// shape error reads the same from netc-opt as from a .net file.
class Net_LayerOp<string mnemonic, list<Trait> traits = []>
    : Net_Op<mnemonic, traits # [
        DeclareOpInterfaceMethods<Net_ShapeInferenceOpInterface>]> {
  let hasVerifier = 1;
  code extraLayerDeclaration = [{
    /// Result types implied by the operand types (null where an operand's
    /// shape is not known yet). Fails, after reporting at the op, when the
    /// operands cannot fit. With `refineParams`, also sharpens the types of
    /// `net.param_get` operands to the shapes this layer needs.
    ::mlir::LogicalResult
    computeResultTypes(::llvm::SmallVectorImpl<::mlir::Type> &results,
                       bool refineParams);
  }];
  let extraClassDeclaration = extraLayerDeclaration;
  let extraClassDefinition = [{
    ::mlir::LogicalResult $cppClass::verify() {
      return ::netc::net::detail::verifyLayer(*this);
    }
    ::mlir::LogicalResult $cppClass::inferShapes() {
      return ::netc::net::detail::inferLayer(*this);
    }
  }];
}

//===----------------------------------------------------------------------===//
// Parameters
//===----------------------------------------------------------------------===//

def Net_ParamOp : Net_Op<"param", [Symbol, HasParent<"::mlir::ModuleOp">]> {
  let summary = "a trainable (or stored) tensor with its initialiser";
  let description = [{
    Declares a named parameter. Its type may have unknown dimensions until
    `net-infer-shapes` derives them from the layers that read it. `group` is
    `encoder`, `decoder` or `classifier` (what a training phase can freeze);
    `lr_mult` and `decay_mult` scale the phase's learning rate and weight
    decay; `trainable = false` marks state such as batch-norm running means.

    ```mlir
    net.param @conv1_1.weight : tensor<64x3x3x3xf32>
        init #net.gaussian<std = 1.000000e-02, mean = 0.000000e+00>
        {decay_mult = 1.0 : f64, group = "encoder", lr_mult = 1.0 : f64}
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name, TypeAttrOf<Net_Map>:$type,
                   AnyAttr:$init, Net_F64Attr:$lr_mult, Net_F64Attr:$decay_mult,
                   StrAttr:$group, DefaultValuedAttr<BoolAttr, "true">:$trainable);
  let assemblyFormat = "$sym_name `:` $type `init` $init attr-dict";
  let hasVerifier = 1;
}

def Net_ParamGetOp : Net_Op<"param_get", [Pure,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "reads a parameter";
  let description = [{
    ```mlir
    %w = net.param_get @conv1_1.weight : tensor<64x3x3x3xf32>
    ```
    With `view`, the parameter is read with another shape of the same
    elements in the same row-major order: dense evaluation reads an fc
    weight [out, C*h*w] as the convolution weight [out, C, h, w] it is.
    ```mlir
    %w = net.param_get @fc6.weight view : tensor<4096x512x7x7xf32>
    ```
  }];
  let arguments = (ins FlatSymbolRefAttr:$name, UnitAttr:$view);
  let results = (outs Net_Map:$result);
  let assemblyFormat = "$name (`view` $view^)? attr-dict `:` type($result)";
}

//===----------------------------------------------------------------------===//
// Layers
//===----------------------------------------------------------------------===//

def Net_Conv2DOp : Net_LayerOp<"conv2d", [Pure]> {
  let summary = "2-D convolution (cross-correlation), NCHW";
  let description = [{
    `weight` is `[out, in / groups, kh, kw]`; the kernel size is the weight's.
    Output size per axis: `(in + 2 * pad - k) / stride + 1`.

    ```mlir
    %y = net.conv2d %x, %w, %b stride [1, 1] pad [1, 1] groups 1
        : (tensor<?x3x224x224xf32>, tensor<64x3x3x3xf32>, tensor<64xf32>)
          -> tensor<?x64x224x224xf32>
    ```
  }];
  let arguments = (ins Net_Map:$input, Net_Map:$weight, Optional<Net_Map>:$bias,
                   DenseI64ArrayAttr:$stride, DenseI64ArrayAttr:$pad,
                   I64Attr:$groups);
  let results = (outs Net_Map:$output);
  let assemblyFormat = [{
    $input `,` $weight (`,` $bias^)? `stride` $stride `pad` $pad `groups` $groups
    attr-dict `:` functional-type(operands, results)
  }];
}

def Net_Deconv2DOp : Net_LayerOp<"deconv2d", [Pure]> {
  let summary = "2-D transposed convolution, NCHW";
  let description = [{
    The adjoint of `net.conv2d` with the same stride and pad; the mirror pass
    uses it to invert strided convolutions. `weight` is
    `[in, out / groups, kh, kw]`. Output size per axis:
    `(in - 1) * stride - 2 * pad + k + output_padding`.

    ```mlir
    %y = net.deconv2d %x, %w stride [2, 2] pad [0, 0] output_padding [0, 0]
        groups 1 : (tensor<?x96x55x55xf32>, tensor<96x96x3x3xf32>)
                   -> tensor<?x96x111x111xf32>
    ```
  }];
  let arguments = (ins Net_Map:$input, Net_Map:$weight, Optional<Net_Map>:$bias,
                   DenseI64ArrayAttr:$stride, DenseI64ArrayAttr:$pad,
                   DenseI64ArrayAttr:$output_padding, I64Attr:$groups);
  let results = (outs Net_Map:$output);
  let assemblyFormat = [{
    $input `,` $weight (`,` $bias^)? `stride` $stride `pad` $pad
    `output_padding` $output_padding `groups` $groups
    attr-dict `:` functional-type(operands, results)
  }];
}

def Net_ReluOp : Net_LayerOp<"relu", [Pure]> {
  let summary = "rectified linear unit";
  let description = [{
    ```mlir
    %y = net.relu %x : tensor<?x64x224x224xf32> -> tensor<?x64x224x224xf32>
    ```
  }];
  let arguments = (ins Net_Map:$input);
  let results = (outs Net_Map:$output);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($output)";
}

def Net_MaxPoolOp : Net_LayerOp<"max_pool", [Pure]> {
  let summary = "max-pooling that also records its switches";
  let description = [{
    Windows of `kernel` every `stride`, over the input padded by `pad` with
    -inf. Output size per axis: `floor((in + 2 * pad - k) / stride) + 1`, or
    `ceil` with `ceil` (Caffe). `switches` holds, per output element, the
    first position (row-major scan of the window) holding the maximum.

    ```mlir
    %y, %s = net.max_pool %x kernel [2, 2] stride [2, 2] pad [0, 0]
        : tensor<?x64x224x224xf32>
          -> tensor<?x64x112x112xf32>, !net.switches<?x64x112x112>
    ```
  }];
  let arguments = (ins Net_Map:$input, DenseI64ArrayAttr:$kernel,
                   DenseI64ArrayAttr:$stride, DenseI64ArrayAttr:$pad,
                   UnitAttr:$ceil_mode);
  let results = (outs Net_Map:$output, Net_SwitchesType:$switches);
  let assemblyFormat = [{
    $input `kernel` $kernel `stride` $stride `pad` $pad (`ceil` $ceil_mode^)?
    attr-dict `:` type($input) `->` type($output) `,` qualified(type($switches))
  }];
}

def Net_AvgPoolOp : Net_LayerOp<"avg_pool", [Pure]> {
  let summary = "average pooling";
  let description = [{
    Same windows as `net.max_pool`; padding counts as zeros in the average.

    ```mlir
    %y = net.avg_pool %x kernel [2, 2] stride [2, 2] pad [0, 0]
        : tensor<?x64x8x8xf32> -> tensor<?x64x4x4xf32>
    ```
  }];
  let arguments = (ins Net_Map:$input, DenseI64ArrayAttr:$kernel,
                   DenseI64ArrayAttr:$stride, DenseI64ArrayAttr:$pad,
                   UnitAttr:$ceil_mode);
  let results = (outs Net_Map:$output);
  let assemblyFormat = [{
    $input `kernel` $kernel `stride` $stride `pad` $pad (`ceil` $ceil_mode^)?
    attr-dict `:` type($input) `->` type($output)
  }];
}

def Net_UnpoolOp : Net_LayerOp<"unpool", [Pure]> {
  let summary = "unpooling to a recorded or a fixed position";
  let description = [{
    The inverse of a max-pool with the same `kernel`, `stride` and `pad`,
    producing a map of spatial size `size`. Each input element is written to
    one position of its window: the pool's `switches` (SWWAE, what-where), or
    the fixed offset `position` inside every window (SAE). Other positions are
    zero. With overlapping windows several elements can land on one position:
    they are summed, and with `normalize` each position is divided by the
    number of windows that wrote it (0 stays 0).

    ```mlir
    %u = net.unpool %y, %s kernel [2, 2] stride [2, 2] pad [0, 0]
        size [224, 224]
        : (tensor<?x64x112x112xf32>, !net.switches<?x64x112x112>)
          -> tensor<?x64x224x224xf32>
    %v = net.unpool %y kernel [2, 2] stride [2, 2] pad [0, 0] size [224, 224]
        position [1, 1] : (tensor<?x64x112x112xf32>) -> tensor<?x64x224x224xf32>
    ```
  }];
  let arguments = (ins Net_Map:$input, Optional<Net_SwitchesType>:$switches,
                   DenseI64ArrayAttr:$kernel, DenseI64ArrayAttr:$stride,
                   DenseI64ArrayAttr:$pad, DenseI64ArrayAttr:$size,
                   OptionalAttr<DenseI64ArrayAttr>:$position,
                   UnitAttr:$normalize);
  let results = (outs Net_Map:$output);
  let assemblyFormat = [{
    $input (`,` $switches^)? `kernel` $kernel `stride` $stride `pad` $pad
    `size` $size (`position` $position^)? (`normalize` $normalize^)?
    attr-dict `:` functional-type(operands, results)
  }];
}

def Net_FCOp : Net_LayerOp<"fc", [Pure]> {
  let summary = "fully connected (inner product) layer";
  let description = [{
    `y = x * weight^T + bias` with `weight : [out, in]` on a `[batch, in]`
    input (`net.flatten` first for feature maps).

    ```mlir
    %y = net.fc %x, %w, %b : (tensor<?x25088xf32>, tensor<4096x25088xf32>,
                              tensor<4096xf32>) -> tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins Net_Map:$input, Net_Map:$weight, Optional<Net_Map>:$bias);
  let results = (outs Net_Map:$output);
  let assemblyFormat = [{
    $input `,` $weight (`,` $bias^)? attr-dict `:` functional-type(operands, results)
  }];
}

def Net_FlattenOp : Net_LayerOp<"flatten", [Pure]> {
  let summary = "[batch, C, H, W] to [batch, C*H*W]";
  let description = [{
    ```mlir
    %f = net.flatten %x : tensor<?x512x7x7xf32> -> tensor<?x25088xf32>
    ```
  }];
  let arguments = (ins Net_Map:$input);
  let results = (outs Net_Map:$output);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($output)";
}

def Net_ReshapeOp : Net_LayerOp<"reshape", [Pure]> {
  let summary = "reshape the non-batch dimensions";
  let description = [{
    The batch dimension is kept; `shape` gives the others and must hold as
    many elements. Decoders use it to turn an fc twin's output back into a map.

    ```mlir
    %m = net.reshape %x to [256, 6, 6] : tensor<?x9216xf32> -> tensor<?x256x6x6xf32>
    ```
  }];
  let arguments = (ins Net_Map:$input, DenseI64ArrayAttr:$shape);
  let results = (outs Net_Map:$output);
  let assemblyFormat = [{
    $input `to` $shape attr-dict `:` type($input) `->` type($output)
  }];
}

def Net_DropoutOp : Net_LayerOp<"dropout"> {
  let summary = "inverted dropout (identity at evaluation)";
  let description = [{
    Zeroes each element with probability `ratio` and scales the rest by
    `1 / (1 - ratio)` during training. The mask is a pure function of
    (`seed`, training step, element index), so the backward pass regenerates
    it instead of storing it; `net-phases` gives every dropout its own seed.

    ```mlir
    %y = net.dropout %x ratio 5.000000e-01 seed 1
        : tensor<?x4096xf32> -> tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins Net_Map:$input, Net_F64Attr:$ratio,
                   DefaultValuedAttr<I64Attr, "0">:$seed);
  let results = (outs Net_Map:$output);
  let assemblyFormat = [{
    $input `ratio` $ratio `seed` $seed attr-dict `:` type($input) `->` type($output)
  }];
}

def Net_LRNOp : Net_LayerOp<"lrn", [Pure]> {
  let summary = "local response normalisation across channels";
  let description = [{
    `y = x / (k + alpha / size * sum_{window of size channels} x^2) ^ beta`
    (Caffe's ACROSS_CHANNELS).

    ```mlir
    %y = net.lrn %x size 5 alpha 1.000000e-04 beta 7.500000e-01 k 1.000000e+00
        : tensor<?x96x55x55xf32> -> tensor<?x96x55x55xf32>
    ```
  }];
  let arguments = (ins Net_Map:$input, I64Attr:$size, Net_F64Attr:$alpha,
                   Net_F64Attr:$beta, Net_F64Attr:$k);
  let results = (outs Net_Map:$output);
  let assemblyFormat = [{
    $input `size` $size `alpha` $alpha `beta` $beta `k` $k attr-dict
    `:` type($input) `->` type($output)
  }];
}

def Net_BatchNormOp : Net_LayerOp<"batch_norm"> {
  let summary = "batch normalisation over N, H, W per channel";
  let description = [{
    Training uses the batch statistics and updates the running `mean` and
    `variance` with `momentum`; evaluation uses the running ones. `scale` and
    `shift` are the affine parameters. Works on `[N, C]` and `[N, C, H, W]`.

    ```mlir
    %y = net.batch_norm %x, %g, %b, %m, %v eps 1.000000e-05 momentum 9.000000e-01
        : (tensor<?x64x32x32xf32>, tensor<64xf32>, tensor<64xf32>, tensor<64xf32>,
           tensor<64xf32>) -> tensor<?x64x32x32xf32>
    ```
  }];
  let arguments = (ins Net_Map:$input, Net_Map:$scale, Net_Map:$shift,
                   Net_Map:$mean, Net_Map:$variance, Net_F64Attr:$eps,
                   Net_F64Attr:$momentum, UnitAttr:$inference);
  let results = (outs Net_Map:$output);
  let assemblyFormat = [{
    $input `,` $scale `,` $shift `,` $mean `,` $variance `eps` $eps
    `momentum` $momentum (`inference` $inference^)? attr-dict `:`
    functional-type(operands, results)
  }];
}

//===----------------------------------------------------------------------===//
// Losses
//===----------------------------------------------------------------------===//

def Net_SoftmaxCrossEntropyOp : Net_LayerOp<"softmax_cross_entropy", [Pure]> {
  let summary = "mean softmax cross-entropy of logits against class labels";
  let description = [{
    `(1/N) sum_i -log softmax(logits_i)[labels_i]`.

    ```mlir
    %c = net.softmax_cross_entropy %logits, %labels
        : tensor<?x1000xf32>, tensor<?xi32> -> tensor<f32>
    ```
  }];
  let arguments = (ins Net_Map:$logits, Net_Labels:$labels);
  let results = (outs Net_Scalar:$loss);
  let assemblyFormat = [{
    $logits `,` $labels attr-dict `:` type($logits) `,` type($labels) `->` type($loss)
  }];
}

def Net_EuclideanLossOp : Net_LayerOp<"euclidean_loss", [Pure]> {
  let summary = "sum of squared differences over twice the batch size";
  let description = [{
    `sum (prediction - target)^2 / (2 N)` (Caffe's EuclideanLoss). The
    gradient reaches both operands.

    ```mlir
    %l = net.euclidean_loss %xhat, %x
        : tensor<?x3x224x224xf32>, tensor<?x3x224x224xf32> -> tensor<f32>
    ```
  }];
  let arguments = (ins Net_Map:$prediction, Net_Map:$target);
  let results = (outs Net_Scalar:$loss);
  let assemblyFormat = [{
    $prediction `,` $target attr-dict `:` type($prediction) `,` type($target)
    `->` type($loss)
  }];
}

def Net_ObjectiveOp : Net_LayerOp<"objective", [Pure]> {
  let summary = "the weighted sum of named loss terms that training minimises";
  let description = [{
    `total = sum_i weights[i] * terms[i]`. The names label the terms in the
    runtime's per-step report.

    ```mlir
    %t = net.objective %c, %l weights [1.0, 1.0e-04]
        names ["classification", "recon.image"]
        : tensor<f32>, tensor<f32> -> tensor<f32>
    ```
  }];
  let arguments = (ins Variadic<Net_Scalar>:$terms, Net_F64ArrayAttr:$weights,
                   StrArrayAttr:$names);
  let results = (outs Net_Scalar:$total);
  let assemblyFormat = [{
    $terms `weights` $weights `names` $names attr-dict `:` type($terms)
    `->` type($total)
  }];
}

//===----------------------------------------------------------------------===//
// Macro-layers
//===----------------------------------------------------------------------===//

def Net_MacroOp : Net_Op<"macro", [IsolatedFromAbove,
    SingleBlockImplicitTerminator<"YieldOp">,
    DeclareOpInterfaceMethods<Net_ShapeInferenceOpInterface>]> {
  let summary = "a convolution-pooling macro-layer";
  let description = [{
    Groups the layers of one macro-layer of the paper (convolutions, their
    activations, and the max-pool that closes it) so passes can walk
    macro-layers in order. The body takes the macro-layer's input and yields
    its output, followed by the pool's switches when it has a max-pool. The
    mirror pass names decoder macro-layers `dec.<name>`.

    ```mlir
    %a1, %s1 = net.macro "conv1"(%x) : (tensor<?x3x32x32xf32>)
        -> (tensor<?x16x16x16xf32>, !net.switches<?x16x16x16>) {
    ^bb0(%in: tensor<?x3x32x32xf32>):
      ...
      net.yield %p, %s : tensor<?x16x16x16xf32>, !net.switches<?x16x16x16>
    }
    ```
  }];
  let arguments = (ins StrAttr:$name, Variadic<AnyType>:$inputs);
  let results = (outs Variadic<AnyType>:$outputs);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = [{
    $name `(` $inputs `)` attr-dict `:` functional-type($inputs, results) $body
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The terminator of the body.
    YieldOp getYield();
    /// The max-pool that closes this macro-layer, if any.
    MaxPoolOp getPool();
  }];
}

def Net_YieldOp : Net_Op<"yield", [Pure, Terminator, HasParent<"MacroOp">]> {
  let summary = "the results of a macro-layer";
  let description = "`net.yield %out, %switches : tensor<...>, !net.switches<...>`";
  let arguments = (ins Variadic<AnyType>:$values);
  let assemblyFormat = "attr-dict ($values^ `:` type($values))?";
  let builders = [OpBuilder<(ins), [{ /* empty yield */ }]>];
}

//===----------------------------------------------------------------------===//
// The augment and train sections
//===----------------------------------------------------------------------===//

def Net_AugmentOp : Net_Op<"augment", [HasParent<"::mlir::ModuleOp">]> {
  let summary = "which decoder to add and how its losses are weighted";
  let description = [{
    `variant` is one of `none`, `sae-first`, `sae-all`, `sae-layerwise`,
    `swwae-first`, `swwae-all`, `swwae-layerwise`. `lambda` weighs the image
    loss, `gamma` each macro-layer's loss by name; `from` names the macro-layer
    (or fc layer) the decoder starts from; `position` is SAE's fixed unpooling
    offset; `decoder_init` the decoder weights' initialiser. `target_scale`
    multiplies the image before the image loss compares the reconstruction
    with it (recon-dec: the encoder sees mean-subtracted 0-255 pixels, the
    target is that input x 1/255); the `reconstruct` program divides its
    images by it again, so they stay in the encoder input's units.

    ```mlir
    net.augment "swwae-all" {lambda = 1.0e-04 : f64,
                             gamma = {conv1 = 1.0e-12 : f64}}
    ```
  }];
  let arguments = (ins StrAttr:$variant, Net_F64Attr:$lambda,
                   DefaultValuedAttr<DictionaryAttr, "{}">:$gamma,
                   OptionalAttr<StrAttr>:$from,
                   OptionalAttr<DenseI64ArrayAttr>:$position,
                   OptionalAttr<AnyAttr>:$decoder_init,
                   DefaultValuedAttr<Net_F64Attr, "1.0">:$target_scale);
  let assemblyFormat = "$variant attr-dict";
  let hasVerifier = 1;
}

def Net_DataOp : Net_Op<"data", [HasParent<"::mlir::ModuleOp">]> {
  let summary = "the training data and its augmentation";
  let description = [{
    ```mlir
    net.data "fashion-mnist" {path = "/usr/share/datasets/fashion-mnist",
                              mirror, crop = 28 : i64, crop_pad = 2 : i64}
    net.data "images" {path = "imagenet", scale = array<i64: 256, 512>,
                       crop = 224 : i64, mirror, channel_order = "bgr",
                       eval_scale = 256 : i64, workers = 8 : i64, skip_bad}
    ```
    `eval_scale`, `channel_order`, `workers` and `skip_bad` are for image
    folders (`images`).
  }];
  let arguments = (ins StrAttr:$kind, OptionalAttr<StrAttr>:$path,
                   DefaultValuedAttr<I64Attr, "0">:$subset,
                   DefaultValuedAttr<I64Attr, "0">:$test_subset,
                   UnitAttr:$mirror,
                   DefaultValuedAttr<I64Attr, "0">:$crop,
                   DefaultValuedAttr<I64Attr, "0">:$crop_pad,
                   OptionalAttr<DenseI64ArrayAttr>:$scale,
                   OptionalAttr<Net_F64ArrayAttr>:$mean,
                   OptionalAttr<Net_F64ArrayAttr>:$std,
                   DefaultValuedAttr<I64Attr, "0">:$eval_scale,
                   DefaultValuedAttr<StrAttr, "\"rgb\"">:$channel_order,
                   DefaultValuedAttr<I64Attr, "0">:$workers,
                   UnitAttr:$skip_bad);
  let assemblyFormat = "$kind attr-dict";
}

def Net_PhaseOp : Net_Op<"phase", [Symbol, HasParent<"::mlir::ModuleOp">]> {
  let summary = "one phase of the training schedule";
  let description = [{
    Phases run in the order they appear. `decoder` picks the decoder topology
    (`default` = the variant's own, `layerwise`, `stacked`, `none`); `freeze`
    lists parameter groups (`encoder`, `decoder`, `classifier`) or layer names
    that do not train; `lr_policy` is `fixed`, `step` (`lr_gamma` every
    `lr_every` epochs) or `cosine` (down to `lr_min`). `lambda` and `gamma`
    override the augment op's loss weights in this phase (a gamma the phase
    does not give is the augment op's); `lr_mult` multiplies the learning
    rate of the parameters of a layer or macro-layer (a decoder stage is the
    macro-layer `dec.<stage>`) by name.

    ```mlir
    net.phase @joint {batch = 64 : i64, decay = 5.0e-04 : f64,
                      decoder = "default", epochs = 16 : i64, freeze = [],
                      lr = 1.0e-03 : f64, lr_policy = "step", momentum = 0.9 : f64}
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name, StrAttr:$decoder,
                   StrArrayAttr:$freeze, Net_F64Attr:$lr, Net_F64Attr:$momentum,
                   Net_F64Attr:$decay, I64Attr:$batch, I64Attr:$epochs,
                   DefaultValuedAttr<I64Attr, "0">:$steps, StrAttr:$lr_policy,
                   DefaultValuedAttr<Net_F64Attr, "0.1">:$lr_gamma,
                   DefaultValuedAttr<I64Attr, "1">:$lr_every,
                   DefaultValuedAttr<Net_F64Attr, "0.0">:$lr_min,
                   OptionalAttr<Net_F64Attr>:$lambda,
                   OptionalAttr<DictionaryAttr>:$gamma,
                   OptionalAttr<DictionaryAttr>:$lr_mult);
  let assemblyFormat = "$sym_name attr-dict";
  let hasVerifier = 1;
}

def Net_EvalOp : Net_Op<"eval", [HasParent<"::mlir::ModuleOp">]> {
  let summary = "how the trained classifier is evaluated";
  let description = [{
    `net.eval ["full"]`; schemes are `full`, `single-crop` and `dense`.
    `dense_scales` are the shorter sides the image is resized to for
    `dense` (default: the network's input size).
  }];
  let arguments = (ins StrArrayAttr:$schemes,
                   OptionalAttr<DenseI64ArrayAttr>:$dense_scales);
  let assemblyFormat = "$schemes (`dense_scales` $dense_scales^)? attr-dict";
}

include "dialect/NetTrainOps.td"

#endif // NETC_DIALECT_NETOPS_TD
