// RUN: netc-opt %s --net-infer-shapes -split-input-file -verify-diagnostics

// Errors of net-infer-shapes: parameters its readers disagree on, the
// declared class count, and shape errors that only show once the shapes
// flow through the network.

// Two convolutions of different input channels share one weight.
net.param @w : tensor<4x?x3x3xf32> init #net.constant<value = 0.0>
    {decay_mult = 1.0 : f64, group = "encoder", lr_mult = 1.0 : f64}
func.func @shared_weight(%x: tensor<?x3x8x8xf32>, %y: tensor<?x5x8x8xf32>) {
  // expected-note@+1 {{and as 'tensor<4x3x3x3xf32>' here}}
  %w1 = net.param_get @w : tensor<4x?x3x3xf32>
  %c1 = net.conv2d %x, %w1 stride [1, 1] pad [0, 0] groups 1
      : (tensor<?x3x8x8xf32>, tensor<4x?x3x3xf32>) -> tensor<*xf32>
  // expected-error@+1 {{'net.param_get' op parameter @w is read as 'tensor<4x5x3x3xf32>' here}}
  %w2 = net.param_get @w : tensor<4x?x3x3xf32>
  %c2 = net.conv2d %y, %w2 stride [1, 1] pad [0, 0] groups 1
      : (tensor<?x5x8x8xf32>, tensor<4x?x3x3xf32>) -> tensor<*xf32>
  return
}

// -----

// A reader's type may be less precise than the declaration; what inference
// derives from it must still agree with the declared shape.
// expected-note@+1 {{declared here}}
net.param @w : tensor<4x3x3x3xf32> init #net.constant<value = 0.0>
    {decay_mult = 1.0 : f64, group = "encoder", lr_mult = 1.0 : f64}
func.func @declared_shape(%x: tensor<?x5x8x8xf32>) {
  // expected-error@+1 {{'net.param_get' op parameter @w is read as 'tensor<4x5x3x3xf32>' but declared as 'tensor<4x3x3x3xf32>'}}
  %w = net.param_get @w : tensor<4x?x3x3xf32>
  %c = net.conv2d %x, %w stride [1, 1] pad [0, 0] groups 1
      : (tensor<?x5x8x8xf32>, tensor<4x?x3x3xf32>) -> tensor<*xf32>
  return
}

// -----

// No layer reads the parameter, so nothing fixes its shape.
net.param @b : tensor<?xf32> init #net.constant<value = 0.0>
    {decay_mult = 0.0 : f64, group = "encoder", lr_mult = 2.0 : f64}
func.func @unused_param() -> tensor<?xf32> {
  // expected-error@+1 {{'net.param_get' op cannot infer the shape of parameter @b}}
  %b = net.param_get @b : tensor<?xf32>
  return %b : tensor<?xf32>
}

// -----

net.param @fc.weight : tensor<12x?xf32> init #net.constant<value = 0.0>
    {decay_mult = 1.0 : f64, group = "classifier", lr_mult = 1.0 : f64}
func.func @classes(%x: tensor<?x2x4x4xf32>, %labels: tensor<?xi32>)
    -> (tensor<f32>, tensor<*xf32>)
    attributes {net.network, net.classes = 10 : i64} {
  %f = net.flatten %x : tensor<?x2x4x4xf32> -> tensor<*xf32>
  %w = net.param_get @fc.weight : tensor<12x?xf32>
  %logits = net.fc %f, %w : (tensor<*xf32>, tensor<12x?xf32>) -> tensor<*xf32>
  // expected-error@+1 {{'net.softmax_cross_entropy' op the network produces 12 class scores but declares classes 10}}
  %ce = net.softmax_cross_entropy %logits, %labels
      : tensor<*xf32>, tensor<?xi32> -> tensor<f32>
  return %ce, %logits : tensor<f32>, tensor<*xf32>
}

// -----

// The macro-layer's pool leaves a 2x2 map, too small for the next 3x3
// convolution; only inference finds out.
func.func @conv_too_small(%x: tensor<?x4x4x4xf32>, %w: tensor<4x4x3x3xf32>) {
  %a, %s = net.macro "conv1"(%x) : (tensor<?x4x4x4xf32>)
      -> (tensor<*xf32>, !net.switches<*>) {
  ^bb0(%in: tensor<*xf32>):
    %p, %sw = net.max_pool %in kernel [2, 2] stride [2, 2] pad [0, 0]
        : tensor<*xf32> -> tensor<*xf32>, !net.switches<*>
    net.yield %p, %sw : tensor<*xf32>, !net.switches<*>
  }
  // expected-error@+1 {{'net.conv2d' op kernel 3x3 with padding 0 does not fit the 2x2 input}}
  %c = net.conv2d %a, %w stride [1, 1] pad [0, 0] groups 1
      : (tensor<*xf32>, tensor<4x4x3x3xf32>) -> tensor<*xf32>
  return
}

// -----

// Inside a macro-layer, as its body arguments take the input's type.
func.func @in_macro(%x: tensor<?x4x2x2xf32>) {
  %a, %s = net.macro "conv1"(%x) : (tensor<?x4x2x2xf32>)
      -> (tensor<*xf32>, !net.switches<*>) {
  ^bb0(%in: tensor<*xf32>):
    // expected-error@+1 {{'net.max_pool' op pool window 3x3 does not fit the 2x2 input}}
    %p, %sw = net.max_pool %in kernel [3, 3] stride [2, 2] pad [0, 0]
        : tensor<*xf32> -> tensor<*xf32>, !net.switches<*>
    net.yield %p, %sw : tensor<*xf32>, !net.switches<*>
  }
  return
}

// -----

// A max-pool's switch is a position within its window, in one byte.
func.func @switch_window(%x: tensor<?x4x40x40xf32>) {
  // expected-error@+1 {{'net.max_pool' op max-pool window 17x16 has 272 positions; its switches record one of at most 256 (a byte)}}
  %p, %sw = net.max_pool %x kernel [17, 16] stride [17, 16] pad [0, 0]
      : tensor<?x4x40x40xf32> -> tensor<*xf32>, !net.switches<*>
  return
}

// -----

// A declared fc weight that does not fit the flattened map.
func.func @fc_weight(%x: tensor<?x32x8x8xf32>, %w: tensor<10x100xf32>) {
  %f = net.flatten %x : tensor<?x32x8x8xf32> -> tensor<*xf32>
  // expected-error@+1 {{'net.fc' op weight must have shape 10x2048, got 10x100}}
  %y = net.fc %f, %w : (tensor<*xf32>, tensor<10x100xf32>) -> tensor<*xf32>
  return
}

// -----

// The fc layer needs the map flattened first.
func.func @fc_unflattened(%x: tensor<?x3x4x4xf32>, %w: tensor<10x48xf32>) {
  %r = net.relu %x : tensor<?x3x4x4xf32> -> tensor<*xf32>
  // expected-error@+1 {{'net.fc' op expects a [batch, features] input, got ?x3x4x4 (flatten it first)}}
  %y = net.fc %r, %w : (tensor<*xf32>, tensor<10x48xf32>) -> tensor<*xf32>
  return
}

// -----

// An unpooling whose size the pooled map cannot come from.
func.func @unpool_size(%x: tensor<?x4x8x8xf32>) {
  %p, %s = net.max_pool %x kernel [2, 2] stride [2, 2] pad [0, 0]
      : tensor<?x4x8x8xf32> -> tensor<*xf32>, !net.switches<*>
  // expected-error@+1 {{'net.unpool' op a 12x12 map pooled by 2x2/2 is not 4x4}}
  %u = net.unpool %p, %s kernel [2, 2] stride [2, 2] pad [0, 0] size [12, 12]
      : (tensor<*xf32>, !net.switches<*>) -> tensor<*xf32>
  return
}

// -----

// A reconstruction that comes out smaller than its target.
func.func @reconstruction(%x: tensor<?x4x16x16xf32>, %w: tensor<4x3x3x3xf32>,
                          %image: tensor<?x3x32x32xf32>) {
  %d = net.deconv2d %x, %w stride [2, 2] pad [1, 1] output_padding [0, 0]
      groups 1 : (tensor<?x4x16x16xf32>, tensor<4x3x3x3xf32>) -> tensor<*xf32>
  // expected-error@+1 {{'net.euclidean_loss' op reconstruction ?x3x31x31 does not match its target ?x3x32x32}}
  %l = net.euclidean_loss %d, %image
      : tensor<*xf32>, tensor<?x3x32x32xf32> -> tensor<f32>
  return
}

// -----

// A reshape of the wrong element count once the features are known.
func.func @reshape(%x: tensor<?x4x3x3xf32>) {
  %f = net.flatten %x : tensor<?x4x3x3xf32> -> tensor<*xf32>
  // expected-error@+1 {{'net.reshape' op cannot reshape 36 features to 4x4x4}}
  %r = net.reshape %f to [4, 4, 4] : tensor<*xf32> -> tensor<*xf32>
  return
}
