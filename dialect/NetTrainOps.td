//===- NetTrainOps.td - Gradient and optimiser ops -----------*- tablegen -*-===//
//
// What `net-autodiff` writes: one op per backward kernel, and the SGD update.
// The gradient of a value always has that value's type, so autodiff gives
// each result its type directly; the verifiers check that operands agree.
// Gradients of loss terms carry their objective weight as `scale`, so no
// scalar gradient travels through the IR.
//
//===----------------------------------------------------------------------===//

#ifndef NETC_DIALECT_NETTRAINOPS_TD
#define NETC_DIALECT_NETTRAINOPS_TD

include "mlir/Interfaces/InferTypeOpInterface.td"

class Net_GradOp<string mnemonic, list<Trait> traits = []>
    : Net_Op<mnemonic, traits # [Pure]> {
  let hasVerifier = 1;
}

def Net_Conv2DGradInputOp : Net_GradOp<"conv2d_grad_input"> {
  let summary = "gradient of a convolution with respect to its input";
  let description = [{
    ```mlir
    %dx = net.conv2d_grad_input %dy, %w stride [1, 1] pad [1, 1] groups 1
        : (tensor<?x64x32x32xf32>, tensor<64x3x3x3xf32>) -> tensor<?x3x32x32xf32>
    ```
  }];
  let arguments = (ins Net_Map:$grad, Net_Map:$weight, DenseI64ArrayAttr:$stride,
                   DenseI64ArrayAttr:$pad, I64Attr:$groups);
  let results = (outs Net_Map:$result);
  let assemblyFormat = [{
    $grad `,` $weight `stride` $stride `pad` $pad `groups` $groups attr-dict
    `:` functional-type(operands, results)
  }];
}

def Net_Conv2DGradWeightOp : Net_GradOp<"conv2d_grad_weight"> {
  let summary = "gradient of a convolution with respect to its weight";
  let description = [{
    ```mlir
    %dw = net.conv2d_grad_weight %x, %dy stride [1, 1] pad [1, 1] groups 1
        : (tensor<?x3x32x32xf32>, tensor<?x64x32x32xf32>) -> tensor<64x3x3x3xf32>
    ```
  }];
  let arguments = (ins Net_Map:$input, Net_Map:$grad, DenseI64ArrayAttr:$stride,
                   DenseI64ArrayAttr:$pad, I64Attr:$groups);
  let results = (outs Net_Map:$result);
  let assemblyFormat = [{
    $input `,` $grad `stride` $stride `pad` $pad `groups` $groups attr-dict
    `:` functional-type(operands, results)
  }];
}

def Net_Deconv2DGradInputOp : Net_GradOp<"deconv2d_grad_input"> {
  let summary = "gradient of a transposed convolution w.r.t. its input";
  let description = [{
    The convolution with the same weight, stride and padding.

    ```mlir
    %dx = net.deconv2d_grad_input %dy, %w stride [2, 2] pad [0, 0] groups 1
        : (tensor<?x96x111x111xf32>, tensor<96x96x3x3xf32>) -> tensor<?x96x55x55xf32>
    ```
  }];
  let arguments = (ins Net_Map:$grad, Net_Map:$weight, DenseI64ArrayAttr:$stride,
                   DenseI64ArrayAttr:$pad, I64Attr:$groups);
  let results = (outs Net_Map:$result);
  let assemblyFormat = [{
    $grad `,` $weight `stride` $stride `pad` $pad `groups` $groups attr-dict
    `:` functional-type(operands, results)
  }];
}

def Net_Deconv2DGradWeightOp : Net_GradOp<"deconv2d_grad_weight"> {
  let summary = "gradient of a transposed convolution w.r.t. its weight";
  let description = [{
    ```mlir
    %dw = net.deconv2d_grad_weight %x, %dy stride [2, 2] pad [0, 0] groups 1
        : (tensor<?x96x55x55xf32>, tensor<?x96x111x111xf32>) -> tensor<96x96x3x3xf32>
    ```
  }];
  let arguments = (ins Net_Map:$input, Net_Map:$grad, DenseI64ArrayAttr:$stride,
                   DenseI64ArrayAttr:$pad, I64Attr:$groups);
  let results = (outs Net_Map:$result);
  let assemblyFormat = [{
    $input `,` $grad `stride` $stride `pad` $pad `groups` $groups attr-dict
    `:` functional-type(operands, results)
  }];
}

def Net_BiasGradOp : Net_GradOp<"bias_grad"> {
  let summary = "gradient of a per-channel bias: sum over all but dimension 1";
  let description = [{
    ```mlir
    %db = net.bias_grad %dy : tensor<?x64x32x32xf32> -> tensor<64xf32>
    ```
  }];
  let arguments = (ins Net_Map:$grad);
  let results = (outs Net_Map:$result);
  let assemblyFormat = "$grad attr-dict `:` type($grad) `->` type($result)";
}

def Net_ReluGradOp : Net_GradOp<"relu_grad", [SameOperandsAndResultType]> {
  let summary = "gradient of a ReLU, from its output";
  let description = [{
    `dx = dy * (y > 0)`.

    ```mlir
    %dx = net.relu_grad %dy, %y : tensor<?x64x32x32xf32>
    ```
  }];
  let arguments = (ins Net_Map:$grad, Net_Map:$output);
  let results = (outs Net_Map:$result);
  let assemblyFormat = "$grad `,` $output attr-dict `:` type($result)";
}

def Net_UnpoolGradOp : Net_GradOp<"unpool_grad"> {
  let summary = "gradient of an unpooling: a gather";
  let description = [{
    The adjoint of `net.unpool` with the same attributes: each pooled position
    reads the position its element was written to (divided by the count of
    writers when `normalize`). The gradient of a max-pool is a `net.unpool`
    with its switches.

    ```mlir
    %dx = net.unpool_grad %dy, %s kernel [2, 2] stride [2, 2] pad [0, 0]
        : (tensor<?x64x32x32xf32>, !net.switches<?x64x16x16>) -> tensor<?x64x16x16xf32>
    ```
  }];
  let arguments = (ins Net_Map:$grad, Optional<Net_SwitchesType>:$switches,
                   DenseI64ArrayAttr:$kernel, DenseI64ArrayAttr:$stride,
                   DenseI64ArrayAttr:$pad,
                   OptionalAttr<DenseI64ArrayAttr>:$position,
                   UnitAttr:$normalize);
  let results = (outs Net_Map:$result);
  let assemblyFormat = [{
    $grad (`,` $switches^)? `kernel` $kernel `stride` $stride `pad` $pad
    (`position` $position^)? (`normalize` $normalize^)?
    attr-dict `:` functional-type(operands, results)
  }];
}

def Net_AvgPoolGradOp : Net_GradOp<"avg_pool_grad"> {
  let summary = "gradient of average pooling";
  let description = [{
    ```mlir
    %dx = net.avg_pool_grad %dy kernel [2, 2] stride [2, 2] pad [0, 0]
        : tensor<?x64x4x4xf32> -> tensor<?x64x8x8xf32>
    ```
  }];
  let arguments = (ins Net_Map:$grad, DenseI64ArrayAttr:$kernel,
                   DenseI64ArrayAttr:$stride, DenseI64ArrayAttr:$pad,
                   UnitAttr:$ceil_mode);
  let results = (outs Net_Map:$result);
  let assemblyFormat = [{
    $grad `kernel` $kernel `stride` $stride `pad` $pad (`ceil` $ceil_mode^)?
    attr-dict `:` type($grad) `->` type($result)
  }];
}

def Net_FCGradInputOp : Net_GradOp<"fc_grad_input"> {
  let summary = "gradient of an fc layer w.r.t. its input: dy * W";
  let description = [{
    ```mlir
    %dx = net.fc_grad_input %dy, %w
        : (tensor<?x10xf32>, tensor<10x256xf32>) -> tensor<?x256xf32>
    ```
  }];
  let arguments = (ins Net_Map:$grad, Net_Map:$weight);
  let results = (outs Net_Map:$result);
  let assemblyFormat = "$grad `,` $weight attr-dict `:` functional-type(operands, results)";
}

def Net_FCGradWeightOp : Net_GradOp<"fc_grad_weight"> {
  let summary = "gradient of an fc layer w.r.t. its weight: dy^T * x";
  let description = [{
    ```mlir
    %dw = net.fc_grad_weight %x, %dy
        : (tensor<?x256xf32>, tensor<?x10xf32>) -> tensor<10x256xf32>
    ```
  }];
  let arguments = (ins Net_Map:$input, Net_Map:$grad);
  let results = (outs Net_Map:$result);
  let assemblyFormat = "$input `,` $grad attr-dict `:` functional-type(operands, results)";
}

def Net_DropoutGradOp : Net_GradOp<"dropout_grad", [SameOperandsAndResultType]> {
  let summary = "gradient of dropout, regenerating the forward mask";
  let description = [{
    ```mlir
    %dx = net.dropout_grad %dy ratio 5.000000e-01 seed 1 : tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins Net_Map:$grad, Net_F64Attr:$ratio, I64Attr:$seed);
  let results = (outs Net_Map:$result);
  let assemblyFormat = "$grad `ratio` $ratio `seed` $seed attr-dict `:` type($result)";
}

def Net_LRNGradOp : Net_GradOp<"lrn_grad", [SameOperandsAndResultType]> {
  let summary = "gradient of local response normalisation";
  let description = [{
    ```mlir
    %dx = net.lrn_grad %dy, %x, %y size 5 alpha 1.000000e-04 beta 7.500000e-01
        k 1.000000e+00 : tensor<?x96x55x55xf32>
    ```
  }];
  let arguments = (ins Net_Map:$grad, Net_Map:$input, Net_Map:$output,
                   I64Attr:$size, Net_F64Attr:$alpha, Net_F64Attr:$beta,
                   Net_F64Attr:$k);
  let results = (outs Net_Map:$result);
  let assemblyFormat = [{
    $grad `,` $input `,` $output `size` $size `alpha` $alpha `beta` $beta `k` $k
    attr-dict `:` type($result)
  }];
}

def Net_BatchNormGradOp : Net_GradOp<"batch_norm_grad"> {
  let summary = "gradient of training-mode batch normalisation";
  let description = [{
    Recomputes the batch statistics from the input.

    ```mlir
    %dx, %dscale, %dshift = net.batch_norm_grad %dy, %x, %scale eps 1.000000e-05
        : (tensor<?x64x8x8xf32>, tensor<?x64x8x8xf32>, tensor<64xf32>)
          -> (tensor<?x64x8x8xf32>, tensor<64xf32>, tensor<64xf32>)
    ```
  }];
  let arguments = (ins Net_Map:$grad, Net_Map:$input, Net_Map:$scale,
                   Net_F64Attr:$eps);
  let results = (outs Net_Map:$input_grad, Net_Map:$scale_grad,
                 Net_Map:$shift_grad);
  let assemblyFormat = [{
    $grad `,` $input `,` $scale `eps` $eps attr-dict `:`
    functional-type(operands, results)
  }];
}

def Net_SoftmaxCrossEntropyGradOp : Net_GradOp<"softmax_cross_entropy_grad"> {
  let summary = "gradient of `scale` times the mean cross-entropy w.r.t. the logits";
  let description = [{
    `(softmax(logits) - onehot(labels)) * scale / N`.

    ```mlir
    %dl = net.softmax_cross_entropy_grad %logits, %labels scale 1.000000e+00
        : tensor<?x10xf32>, tensor<?xi32> -> tensor<?x10xf32>
    ```
  }];
  let arguments = (ins Net_Map:$logits, Net_Labels:$labels, Net_F64Attr:$scale);
  let results = (outs Net_Map:$result);
  let assemblyFormat = [{
    $logits `,` $labels `scale` $scale attr-dict `:` type($logits) `,`
    type($labels) `->` type($result)
  }];
}

def Net_EuclideanLossGradOp : Net_GradOp<"euclidean_loss_grad"> {
  let summary = "gradient of `scale` times the Euclidean loss w.r.t. the prediction";
  let description = [{
    `(prediction - target) * scale / N`; the target's gradient is its negation.

    ```mlir
    %d = net.euclidean_loss_grad %xhat, %x scale 1.000000e-04
        : tensor<?x3x32x32xf32>, tensor<?x3x32x32xf32> -> tensor<?x3x32x32xf32>
    ```
  }];
  let arguments = (ins Net_Map:$prediction, Net_Map:$target,
                   Net_F64Attr:$scale);
  let results = (outs Net_Map:$result);
  let assemblyFormat = [{
    $prediction `,` $target `scale` $scale attr-dict `:` type($prediction) `,`
    type($target) `->` type($result)
  }];
}

def Net_ScaleOp : Net_GradOp<"scale", [SameOperandsAndResultType]> {
  let summary = "multiply by a constant";
  let description = "`%y = net.scale %x by -1.000000e+00 : tensor<?x8x4x4xf32>`";
  let arguments = (ins Net_Map:$input, Net_F64Attr:$factor);
  let results = (outs Net_Map:$result);
  let assemblyFormat = "$input `by` $factor attr-dict `:` type($result)";
}

def Net_AddOp : Net_GradOp<"add", [SameOperandsAndResultType]> {
  let summary = "element-wise sum (gradient accumulation)";
  let description = "`%s = net.add %a, %b : tensor<?x64x16x16xf32>`";
  let arguments = (ins Net_Map:$lhs, Net_Map:$rhs);
  let results = (outs Net_Map:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` type($result)";
}

def Net_SGDUpdateOp : Net_Op<"sgd_update", [
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "one SGD-with-momentum step of a parameter (Caffe semantics)";
  let description = [{
    With the phase's learning rate `lr` (after its policy), `momentum` and
    weight decay `decay`: `g = grad + decay * decay_mult * w`,
    `v = momentum * v + lr * lr_mult * g`, `w -= v`. The momentum buffer `v`
    belongs to the parameter and starts at zero in each phase.

    ```mlir
    net.sgd_update @conv1_1.weight, %dw lr_mult 1.000000e+00 decay_mult 1.000000e+00
        : tensor<64x3x3x3xf32>
    ```
  }];
  let arguments = (ins FlatSymbolRefAttr:$param, Net_Map:$grad,
                   Net_F64Attr:$lr_mult, Net_F64Attr:$decay_mult);
  let assemblyFormat = [{
    $param `,` $grad `lr_mult` $lr_mult `decay_mult` $decay_mult attr-dict
    `:` type($grad)
  }];
}

def Net_AllReduceMeanOp : Net_Op<"all_reduce_mean", [
    DeclareOpInterfaceMethods<InferTypeOpInterface>]> {
  let summary = "average gradients over the processes of a data-parallel run";
  let description = [{
    What `net-data-parallel` puts between a bucket of gradients and their
    `sgd_update`s: each result is the mean, over every process (rank) of
    the run, of its operand. The results of one op are one bucket: the
    memory planner lays them out back to back, so that the runtime reduces
    the bucket as one contiguous buffer. Not pure: it communicates, and
    every rank must run the same all-reduces in the same order.

    ```mlir
    %a, %b = net.all_reduce_mean %dw, %db bucket 0
        : tensor<64x3x3x3xf32>, tensor<64xf32>
    ```
  }];
  let arguments = (ins Variadic<Net_Map>:$grads, I64Attr:$bucket);
  let results = (outs Variadic<Net_Map>:$results);
  let hasVerifier = 1;
  let assemblyFormat = "$grads `bucket` $bucket attr-dict `:` type($grads)";
}

#endif // NETC_DIALECT_NETTRAINOPS_TD
