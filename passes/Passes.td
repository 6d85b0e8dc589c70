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
    swwae-layerwise. It mirrors the `net.network` function with the variant's
    own decoder and every function of `net-phases` with its `net.topology`
    (`layerwise`, `stacked`/`default`, `reconstruct`: decoders from every
    macro-layer, no losses; `none` is left alone). See README "The mirror
    pass" for the exact rules.
  }];
  let options = [
    Option<"variant", "variant", "std::string", /*default=*/"\"\"",
           "Override the augment variant of the module">,
  ];
  let dependentDialects = ["::netc::net::NetDialect"];
}

def Phases : Pass<"net-phases", "::mlir::ModuleOp"> {
  let summary = "One step function per training phase, and the eval function";
  let description = [{
    For each `net.phase`, in order, clones the (not yet mirrored) network into
    `step.<phase>` and records the phase (`net.phase`), the decoder topology
    the phase trains (`net.topology`: `default`, `layerwise`, `stacked` or
    `none`) and its lambda override; `net-mirror` then builds that topology's
    decoder in it. Phases whose topology the variant does not have (a stacked
    decoder for a -layerwise variant, any decoder for `none`) are skipped
    with a warning, as the paper skips step 3 for SAE-layerwise. `eval` is
    the classifier alone in inference mode: no dropout, batch norm on running
    statistics. Every dropout gets its own mask seed. A module without phases
    gets the default schedule of the README.
  }];
  let dependentDialects = ["::netc::net::NetDialect"];
}

def Autodiff : Pass<"net-autodiff", "::mlir::ModuleOp"> {
  let summary = "Reverse-mode gradients and SGD updates for each step function";
  let description = [{
    Inlines the macro-layers of every `step.*` function, differentiates its
    objective with respect to the parameters the phase trains (not frozen by
    group, layer or macro-layer name, and `trainable`), and appends one
    `net.sgd_update` per such parameter. Gradients are only built for values
    that depend on a trained parameter, so a frozen encoder gets no weight
    gradients and nothing propagates below the lowest trained parameter.
  }];
  let dependentDialects = ["::netc::net::NetDialect"];
}

def DataParallel : Pass<"net-data-parallel", "::mlir::ModuleOp"> {
  let summary = "Average each gradient over the processes before its update";
  let description = [{
    For data-parallel training (every process, a rank, runs the same step
    on its own shard of the batch): in each `step.*` function, the
    gradients that `net.sgd_update`s consume are averaged over the ranks by
    `net.all_reduce_mean` before they are used, so every rank applies the
    same update and the parameters stay identical everywhere.

    Gradients are bucketed in the order the backward pass produces them
    (the order of their defining ops), each bucket filled up to
    `bucket-mb` MiB (a gradient larger than that gets a bucket of its own),
    as PyTorch's DistributedDataParallel does with `bucket_cap_mb`. A
    bucket's all-reduce is placed right after the last of its gradients is
    produced, so that a runtime can reduce it while the rest of the
    backward pass runs. Frozen parameters have no update and so no
    all-reduce. Batch-norm running statistics are not reduced: each rank
    keeps its own, and rank 0's are the ones checkpointed (DDP's default
    instead copies rank 0's to every rank before each forward).

    Runs after net-autodiff and before net-precision. Sets `net.data_parallel`
    on the module to the bucket capacity in bytes (net-emit-plan writes it
    into the plan).
  }];
  let options = [
    Option<"bucketMb", "bucket-mb", "double", /*default=*/"25.0",
           "Bucket capacity in MiB (> 0)">,
  ];
  let dependentDialects = ["::netc::net::NetDialect"];
}

def Schedule : Pass<"net-schedule", "::mlir::ModuleOp"> {
  let summary = "Order each step's gradients and updates for a lower peak";
  let description = [{
    In each `step.*` function, two moves that change no value the step
    computes:
    1. A parameter gradient that takes more bytes than its operands (an
       fc's weight gradient, at the phase's batch) is computed just before
       its first user (its `net.sgd_update`, or the bucket's
       `net.all_reduce_mean` after net-data-parallel), when the activations
       the backward pass needed are gone.
    2. Every `net.sgd_update` moves up to just after the later of its
       gradient's defining op and the last op that reads its parameter, so
       its gradient's bytes are free for the rest of the step. Updates that
       land after the same op keep their order.
    net-autodiff appends the updates after the whole backward pass, which
    keeps every weight gradient live to the end of the step; on VGG-16 the
    392 MiB fc6 weight gradient then sits beside every activation at the
    step's peak.

    Runs after net-autodiff and net-data-parallel (which wants the updates
    after the backward pass) and before net-plan-memory.
  }];
  let dependentDialects = ["::netc::net::NetDialect"];
}

def DenseEval : Pass<"net-dense-eval", "::mlir::ModuleOp"> {
  let summary = "Dense evaluation: the classifier's fc layers as convolutions";
  let description = [{
    With `dense` among the module's evaluation schemes, clones `eval` into
    `eval.dense.<S>` for each of its `dense_scales` (default: the input
    size): the image input's shorter side is S, each fc that reads a
    flattened map becomes a convolution with a kernel of that map's size,
    each fc after it a 1x1 convolution, their weights the fc weights read
    as the convolutions' (`net.param_get ... view`), and the class-score
    map is averaged over its positions into the logits. At the input size
    the logits are eval's. Each clone keeps `net.eval` and records
    `net.dense_scale` and `net.eval_batch` (the batch to plan it for: the
    largest phase batch times the input's area over the dense input's).
  }];
  let dependentDialects = ["::netc::net::NetDialect"];
}

def Precision : Pass<"net-precision", "::mlir::ModuleOp"> {
  let summary = "Choose each planned value's element type and layout";
  let description = [{
    Decides how the trainer stores every value of the step, eval and
    reconstruct functions, for the module's `net.precision` ("fp32" when
    absent) or the `precision` option, which overrides it and is written
    back to the module (net-emit-plan writes it as the plan's `precision`).

    Under `fp32` every value is stored as its type says, maps in NCHW (the
    CPU backends' layout), unless the module's `net.layout` or the `layout`
    option (`netc --layout`) says `nhwc`: then its maps are laid out as
    below, in f32. Under `tf32` the values stay f32 and the maps are laid
    out as below (NHWC: what cuDNN's tensor-core convolutions want), unless
    the layout says `nchw`. Under `bf16`:
    - a real value with the batch dimension (an activation, the image, the
      logits, and the gradient of any of them) is bf16;
    - a real value without it is f32: parameters (`net.param_get`) and their
      gradients (what `net.sgd_update` consumes) are fp32 master weights,
      and losses, terms and the objective are scalars, accumulated in fp32;
    - labels and max-pooling switches stay i32;
    - bf16 maps (rank 4) are NHWC, and switches take their pooled map's
      layout; except that maps a `net.flatten` or `net.reshape` views stay
      NCHW (with their switches), because a view reinterprets bytes in the
      plan's documented N, C, H, W order (the order of the fc weights).

    The choice is recorded in attributes, not in the types: `net.dtypes` and
    `net.layouts` on each op (one entry per result) and `net.arg_dtypes`,
    `net.arg_layouts` on each function, read by net-plan-memory (bytes per
    element) and net-emit-plan (`dtype`, `layout`). The types keep saying
    what the values mean (f32 real numbers), so every op's verifier and
    shape function, which mix activations with f32 weights, stay as they
    are; a bf16 tensor type would have to be accepted, mixed with f32, by
    every layer and gradient op for a property that only the runtime's
    storage needs.
  }];
  let options = [
    Option<"precision", "precision", "std::string", /*default=*/"\"\"",
           "Override the module's precision: fp32, tf32 or bf16">,
    Option<"layout", "layout", "std::string", /*default=*/"\"\"",
           "Override the maps' layout: nchw or nhwc (default: nhwc for "
           "tf32 and bf16, nchw for fp32; bf16 needs nhwc)">,
  ];
  let dependentDialects = ["::netc::net::NetDialect"];
}

def PlanMemory : Pass<"net-plan-memory", "::mlir::ModuleOp"> {
  let summary = "Liveness-based arena offsets for every step and eval value";
  let description = [{
    For each step function (at its phase's batch size) and the eval function
    (at the largest phase batch), gives every value that is not a parameter a
    byte offset (`net.offsets` on its op, `net.arg_offsets` on the function)
    in one arena (`net.arena_bytes`, `net.batch`), 64-byte aligned. Each
    value takes its real bytes: 2 per element when net-precision stored it as
    bf16, 4 for f32 and i32. Values whose lifetimes do not overlap share
    bytes (largest first, lowest fitting offset). Which ops are views of
    their input (reshape, flatten) and which may write over their first
    operand when that is its last use (relu, dropout, add, scale, relu_grad,
    dropout_grad) comes from the runtime's op table, runtime/plan/Ops.def,
    the one list the plan loader checks against; in place also needs the
    same type, dtype and layout. A view whose input and output are stored
    differently (dtype, or an NHWC map) is an error. The `batch` option plans every program at one batch size
    instead (for `netc --stats`). Byte counts are checked: an arena that
    would not fit in 2^63 bytes is an error at the value that overflows.
  }];
  let options = [
    Option<"batch", "batch", "int64_t", /*default=*/"0",
           "Plan every program for this batch size (0: the phase's)">,
  ];
  let dependentDialects = ["::netc::net::NetDialect"];
}

def EmitPlan : Pass<"net-emit-plan", "::mlir::ModuleOp"> {
  let summary = "Write the trainer: plan.json (docs/trainer-format.md)";
  let description = [{
    Serialises the parameter table, one program per step function and the
    eval program (values, arena offsets, kernels in order, outputs), the data
    settings and the schedule. With `output`, writes `<output>/plan.json`
    and `params.safetensors` with the imported parameters (read from regular
    files only); without, prints the JSON on stdout. An op without
    `net.offsets`, a value outside the arena, an unranked value or parameter,
    an op of another dialect, or a NaN or Inf in an attribute is an error at
    its place.
  }];
  let options = [
    Option<"output", "output", "std::string", /*default=*/"\"\"",
           "Trainer directory to write">,
  ];
}

#endif // NETC_PASSES_TD
