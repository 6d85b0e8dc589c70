// RUN: netc-opt %s --net-emit-plan -split-input-file -verify-diagnostics
// Whatever the verifier accepts, net-emit-plan writes or reports at its
// place: planning attributes of the wrong kind, an unplanned op, a parameter
// without a shape, values outside the arena, and numbers that JSON cannot
// hold (NaN, Inf).

func.func @f(%x: tensor<?x8xf32>) {
  // expected-error@+1 {{attribute 'net.offsets' must be an array<i64> of 1 byte offsets, one per result, got array<i64>}}
  %0 = net.relu %x {net.offsets = array<i64>} : tensor<?x8xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @f(%x: tensor<?x8xf32>) {
  // expected-error@+1 {{attribute 'net.offsets' must be an array<i64> of 1 byte offsets, one per result, got array<i32: 0>}}
  %0 = net.relu %x {net.offsets = array<i32: 0>} : tensor<?x8xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @f(%x: tensor<?x8xf32>) {
  // expected-error@+1 {{attribute 'net.offsets' must be an array<i64> of 1 byte offsets, one per result, got 0 : i64}}
  %0 = net.relu %x {net.offsets = 0 : i64} : tensor<?x8xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @f(%x: tensor<?x8xf32>) {
  // expected-error@+1 {{attribute 'net.offsets' must be an array<i64> of 1 byte offsets, one per result, got [0]}}
  %0 = net.relu %x {net.offsets = [0]} : tensor<?x8xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @f(%x: tensor<?x8xf32>) {
  // expected-error@+1 {{attribute 'net.offsets' must not hold a negative offset}}
  %0 = net.relu %x {net.offsets = array<i64: -64>} : tensor<?x8xf32> -> tensor<?x8xf32>
  return
}

// -----

// expected-error@+1 {{attribute 'net.reconstruct_from' must be an array of macro-layer names, got 1 : i64}}
func.func @reconstruct(%x: tensor<?x1x4x4xf32>) -> tensor<?x1x4x4xf32> attributes {net.reconstruct_from = 1 : i64} {
  return %x : tensor<?x1x4x4xf32>
}

// -----

// expected-error@+1 {{attribute 'net.reconstruct_from' must be an array of macro-layer names, got ["conv1", 2]}}
func.func @reconstruct(%x: tensor<?x1x4x4xf32>) -> (tensor<?x1x4x4xf32>, tensor<?x1x4x4xf32>) attributes {net.reconstruct_from = ["conv1", 2]} {
  return %x, %x : tensor<?x1x4x4xf32>, tensor<?x1x4x4xf32>
}

// -----

// expected-error@+1 {{attribute 'net.reconstruct_from' names 2 macro-layers for a function of 1 results}}
func.func @reconstruct(%x: tensor<?x1x4x4xf32>) -> tensor<?x1x4x4xf32> attributes {net.reconstruct_from = ["conv1", "conv2"]} {
  return %x : tensor<?x1x4x4xf32>
}

// -----

// expected-error@+1 {{attribute 'net.arg_offsets' must be an array<i64> of 2 byte offsets, one per argument, got array<i64: 0>}}
func.func @eval(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) attributes {net.arg_offsets = array<i64: 0>} {
  return
}

// -----

// expected-error@+1 {{attribute 'net.arena_bytes' must be an i64 of at least 0, got -1 : i64}}
func.func @eval() attributes {net.arena_bytes = -1 : i64} {
  return
}

// -----

// expected-error@+1 {{attribute 'net.batch' must be an i64 of at least 1, got 4.000000e+00 : f64}}
func.func @eval() attributes {net.batch = 4.0 : f64} {
  return
}

// -----

// expected-error@+1 {{attribute 'net.phase' must name a net.phase, got "p"}}
func.func @step.p() attributes {net.phase = "p"} {
  return
}

// -----

// expected-error@+1 {{attribute 'net.lambda' must be a finite non-negative float, got 0x7FF8000000000000 : f64}}
func.func @step.p() attributes {net.lambda = 0x7FF8000000000000 : f64} {
  return
}

// -----

// expected-error@+1 {{attribute 'net.topology' must be one of}}
func.func @step.p() attributes {net.topology = "sideways"} {
  return
}

// -----

// expected-error@+1 {{unknown attribute 'net.arena'}}
func.func @eval() attributes {net.arena = 64 : i64} {
  return
}

// -----

func.func @f(%x: tensor<?x8xf32>) {
  // expected-error@+1 {{attribute 'net.batch' belongs on a func.func}}
  %0 = net.relu %x {net.batch = 4 : i64} : tensor<?x8xf32> -> tensor<?x8xf32>
  return
}

// -----

// NaN and Inf in initialisers and schedule settings are errors at their
// place; net-emit-plan never writes them.

// expected-error@+1 {{gaussian std and mean must be finite}}
net.param @w : tensor<2xf32> init #net.gaussian<std = 0x7FF8000000000000, mean = 0.0> {decay_mult = 1.0 : f64, group = "classifier", lr_mult = 1.0 : f64}

// -----

// expected-error@+1 {{constant value must be finite}}
net.param @w : tensor<2xf32> init #net.constant<value = 0xFFF0000000000000> {decay_mult = 1.0 : f64, group = "classifier", lr_mult = 1.0 : f64}

// -----

// expected-error@+1 {{attribute 'lr' failed to satisfy constraint: 64-bit float attribute whose value is finite}}
net.phase @p {batch = 4 : i64, decay = 0.0 : f64, decoder = "none", epochs = 1 : i64, freeze = [], lr = 0x7FF0000000000000 : f64, lr_policy = "fixed", momentum = 0.9 : f64}

// -----

// expected-error@+1 {{attribute 'lr_mult' failed to satisfy constraint: 64-bit float attribute whose value is finite}}
net.param @w : tensor<2xf32> init #net.constant<value = 0.0> {decay_mult = 1.0 : f64, group = "classifier", lr_mult = 0x7FF8000000000000 : f64}

// -----

// expected-error@+1 {{attribute 'std' failed to satisfy constraint: f64 dense array attribute whose values are finite}}
net.data "fashion-mnist" {std = array<f64: 0x7FF0000000000000>}

// -----

// expected-error@+1 {{gamma for 'conv1' must be a non-negative float}}
net.augment "sae-all" {lambda = 1.0 : f64, gamma = {conv1 = 0x7FF8000000000000 : f64}}

// -----

// An unranked parameter is reported, not written with a made-up shape.

// expected-error@+1 {{parameter @x of type 'tensor<*xf32>' has no static shape; run net-infer-shapes first}}
net.param @x : tensor<*xf32> init #net.constant<value = 0.0> {decay_mult = 1.0 : f64, group = "classifier", lr_mult = 1.0 : f64}
func.func @t(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.classes = 16 : i64, net.network} {
  %f = net.flatten %x : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}

// -----

func.func @t(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.classes = 16 : i64, net.network} {
  %f = net.flatten %x : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}
func.func @eval(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.arena_bytes = 512 : i64, net.arg_offsets = array<i64: 0, 448>, net.batch = 4 : i64, net.eval} {
  // expected-error@+1 {{has no net.offsets; run net-plan-memory first}}
  %f = net.flatten %x : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l {net.offsets = array<i64: 0>} : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}

// -----

func.func @t(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.classes = 16 : i64, net.network} {
  %f = net.flatten %x : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}
func.func @eval(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.arena_bytes = 512 : i64, net.arg_offsets = array<i64: 0, 448>, net.batch = 4 : i64, net.eval} {
  %f = net.flatten %x {net.offsets = array<i64: 0>} : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  // The labels' 16 bytes at batch 4 end at 464, the loss's 4 bytes at 512.
  // expected-error@+1 {{a value at offset 510 does not fit in the arena of 512 bytes at batch 4}}
  %c = net.softmax_cross_entropy %f, %l {net.offsets = array<i64: 510>} : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}

// -----

func.func @t(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.classes = 16 : i64, net.network} {
  %f = net.flatten %x : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}
// An offset near 2^63 plus the value's bytes overflows: still an error.
func.func @eval(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.arena_bytes = 9223372036854775807 : i64, net.arg_offsets = array<i64: 0, 448>, net.batch = 4 : i64, net.eval} {
  // expected-error@+1 {{a value at offset 9223372036854775807 does not fit in the arena}}
  %f = net.flatten %x {net.offsets = array<i64: 9223372036854775807>} : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l {net.offsets = array<i64: 0>} : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}

// -----

func.func @t(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.classes = 16 : i64, net.network} {
  %f = net.flatten %x : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}
func.func @eval(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.arena_bytes = 512 : i64, net.arg_offsets = array<i64: 0, 448>, net.batch = 4 : i64, net.eval} {
  // expected-error@+1 {{attribute 'bound' holds a NaN or an infinity, which plan.json cannot hold}}
  %f = net.flatten %x {bound = [1.0 : f64, 0x7FF0000000000000 : f64], net.offsets = array<i64: 0>} : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l {net.offsets = array<i64: 0>} : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}

// -----

func.func @t(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.classes = 16 : i64, net.network} {
  %f = net.flatten %x : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}
func.func @eval(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.arena_bytes = 512 : i64, net.arg_offsets = array<i64: 0, 448>, net.batch = 4 : i64, net.eval} {
  // expected-error@+1 {{is not a kernel net-emit-plan can write}}
  %k = func.constant {net.offsets = array<i64: 0>} @t : (tensor<?x1x4x4xf32>, tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>)
  %f = net.flatten %x {net.offsets = array<i64: 0>} : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l {net.offsets = array<i64: 0>} : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}

// -----

func.func @t(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.classes = 16 : i64, net.network} {
  %f = net.flatten %x : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}
func.func @eval(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.arena_bytes = 512 : i64, net.arg_offsets = array<i64: 0, 448>, net.batch = 4 : i64, net.eval} {
  // expected-error@+1 {{net-emit-plan needs ranked f32 or i32 tensors and ranked switches, got 'tensor<*xf32>'; run net-infer-shapes first}}
  %r = net.relu %x {net.offsets = array<i64: 0>} : tensor<?x1x4x4xf32> -> tensor<*xf32>
  %f = net.flatten %x {net.offsets = array<i64: 0>} : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l {net.offsets = array<i64: 0>} : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}

// -----

// A step, eval or network function is one with a body (every pass walks
// it), and a step function returns its objective first (net-autodiff reads
// it); hand-written IR without them crashed the passes.

net.phase @p {batch = 4 : i64, decay = 0.0 : f64, decoder = "none", epochs = 1 : i64, freeze = [], lr = 0.1 : f64, lr_policy = "fixed", momentum = 0.9 : f64}
// expected-error@+1 {{attribute 'net.phase' needs a function that returns its objective first}}
func.func @step.p(%x: tensor<?x8xf32>) attributes {net.phase = @p} {
  return
}

// -----

net.phase @p {batch = 4 : i64, decay = 0.0 : f64, decoder = "none", epochs = 1 : i64, freeze = [], lr = 0.1 : f64, lr_policy = "fixed", momentum = 0.9 : f64}
// expected-error@+1 {{attribute 'net.phase' needs a function with a body, not a declaration}}
func.func private @step.p(%x: tensor<?x8xf32>) -> tensor<f32> attributes {net.phase = @p}

// -----

// expected-error@+1 {{attribute 'net.eval' needs a function with a body, not a declaration}}
func.func private @eval(%x: tensor<?x8xf32>) -> tensor<f32> attributes {net.eval}

// -----

// expected-error@+1 {{attribute 'net.network' needs a function with a body, not a declaration}}
func.func private @net(%x: tensor<?x8xf32>) -> tensor<f32> attributes {net.network}
