// RUN: netc-opt %s --net-infer-shapes | FileCheck %s

// net-infer-shapes fills in every result type from the operand types, sharpens
// the parameters the layers read, and updates the function signatures.

// Parameter declarations take the static shapes their readers need.
// CHECK-DAG: net.param @conv1.weight : tensor<16x3x3x3xf32> init
// CHECK-DAG: net.param @conv1.bias : tensor<16xf32> init
// CHECK-DAG: net.param @conv2.weight : tensor<32x16x3x3xf32> init
// CHECK-DAG: net.param @fc.weight : tensor<10x2048xf32> init
// CHECK-DAG: net.param @fc.bias : tensor<10xf32> init
net.param @conv1.weight : tensor<16x?x3x3xf32>
    init #net.gaussian<std = 1.0e-02, mean = 0.0>
    {decay_mult = 1.0 : f64, group = "encoder", lr_mult = 1.0 : f64}
net.param @conv1.bias : tensor<?xf32> init #net.constant<value = 0.0>
    {decay_mult = 0.0 : f64, group = "encoder", lr_mult = 2.0 : f64}
net.param @conv2.weight : tensor<32x?x3x3xf32>
    init #net.gaussian<std = 1.0e-02, mean = 0.0>
    {decay_mult = 1.0 : f64, group = "encoder", lr_mult = 1.0 : f64}
net.param @fc.weight : tensor<10x?xf32>
    init #net.gaussian<std = 1.0e-02, mean = 0.0>
    {decay_mult = 1.0 : f64, group = "classifier", lr_mult = 1.0 : f64}
net.param @fc.bias : tensor<*xf32> init #net.constant<value = 0.0>
    {decay_mult = 0.0 : f64, group = "classifier", lr_mult = 2.0 : f64}

// CHECK-LABEL: func.func @net(
// CHECK-SAME: %[[IMAGE:[^:]*]]: tensor<?x3x32x32xf32>, %[[LABELS:[^:]*]]: tensor<?xi32>)
// CHECK-SAME: -> (tensor<f32>, tensor<?x10xf32>, !net.switches<?x16x16x16>)
// CHECK-SAME: attributes {net.classes = 10 : i64, net.network}
// CHECK: %[[MACRO:.*]]:2 = net.macro "conv1"(%[[IMAGE]]) : (tensor<?x3x32x32xf32>) -> (tensor<?x16x16x16xf32>, !net.switches<?x16x16x16>) {
// CHECK-NEXT: ^bb0(%[[IN:.*]]: tensor<?x3x32x32xf32>):
// CHECK-NEXT: %[[W1:.*]] = net.param_get @conv1.weight : tensor<16x3x3x3xf32>
// CHECK-NEXT: %[[B1:.*]] = net.param_get @conv1.bias : tensor<16xf32>
// CHECK-NEXT: %[[C1:.*]] = net.conv2d %[[IN]], %[[W1]], %[[B1]] stride [1, 1] pad [1, 1] groups 1 : (tensor<?x3x32x32xf32>, tensor<16x3x3x3xf32>, tensor<16xf32>) -> tensor<?x16x32x32xf32>
// CHECK-NEXT: %[[R1:.*]] = net.relu %[[C1]] : tensor<?x16x32x32xf32> -> tensor<?x16x32x32xf32>
// CHECK-NEXT: %[[P1:.*]], %[[S1:.*]] = net.max_pool %[[R1]] kernel [2, 2] stride [2, 2] pad [0, 0] : tensor<?x16x32x32xf32> -> tensor<?x16x16x16xf32>, !net.switches<?x16x16x16>
// CHECK-NEXT: net.yield %[[P1]], %[[S1]] : tensor<?x16x16x16xf32>, !net.switches<?x16x16x16>
// CHECK-NEXT: }
// (16 + 2 - 3) / 2 + 1 = 8
// CHECK: %[[W2:.*]] = net.param_get @conv2.weight : tensor<32x16x3x3xf32>
// CHECK: %[[C2:.*]] = net.conv2d %[[MACRO]]#0, %[[W2]] stride [2, 2] pad [1, 1] groups 1 : (tensor<?x16x16x16xf32>, tensor<32x16x3x3xf32>) -> tensor<?x32x8x8xf32>
// CHECK: %[[F:.*]] = net.flatten %[[C2]] : tensor<?x32x8x8xf32> -> tensor<?x2048xf32>
// CHECK: %[[FW:.*]] = net.param_get @fc.weight : tensor<10x2048xf32>
// CHECK: %[[FB:.*]] = net.param_get @fc.bias : tensor<10xf32>
// CHECK: %[[LOGITS:.*]] = net.fc %[[F]], %[[FW]], %[[FB]] : (tensor<?x2048xf32>, tensor<10x2048xf32>, tensor<10xf32>) -> tensor<?x10xf32>
// CHECK: %[[CE:.*]] = net.softmax_cross_entropy %[[LOGITS]], %[[LABELS]] : tensor<?x10xf32>, tensor<?xi32> -> tensor<f32>
// CHECK: return %[[CE]], %[[LOGITS]], %[[MACRO]]#1 : tensor<f32>, tensor<?x10xf32>, !net.switches<?x16x16x16>
func.func @net(%image: tensor<?x3x32x32xf32>, %labels: tensor<?xi32>)
    -> (tensor<f32>, tensor<*xf32>, !net.switches<*>)
    attributes {net.network, net.classes = 10 : i64} {
  %a, %s = net.macro "conv1"(%image) : (tensor<?x3x32x32xf32>)
      -> (tensor<*xf32>, !net.switches<*>) {
  ^bb0(%in: tensor<*xf32>):
    %w = net.param_get @conv1.weight : tensor<16x?x3x3xf32>
    %b = net.param_get @conv1.bias : tensor<?xf32>
    %c = net.conv2d %in, %w, %b stride [1, 1] pad [1, 1] groups 1
        : (tensor<*xf32>, tensor<16x?x3x3xf32>, tensor<?xf32>) -> tensor<*xf32>
    %r = net.relu %c : tensor<*xf32> -> tensor<*xf32>
    %p, %sw = net.max_pool %r kernel [2, 2] stride [2, 2] pad [0, 0]
        : tensor<*xf32> -> tensor<*xf32>, !net.switches<*>
    net.yield %p, %sw : tensor<*xf32>, !net.switches<*>
  }
  %w2 = net.param_get @conv2.weight : tensor<32x?x3x3xf32>
  %c2 = net.conv2d %a, %w2 stride [2, 2] pad [1, 1] groups 1
      : (tensor<*xf32>, tensor<32x?x3x3xf32>) -> tensor<*xf32>
  %f = net.flatten %c2 : tensor<*xf32> -> tensor<*xf32>
  %fw = net.param_get @fc.weight : tensor<10x?xf32>
  %fb = net.param_get @fc.bias : tensor<*xf32>
  %logits = net.fc %f, %fw, %fb : (tensor<*xf32>, tensor<10x?xf32>, tensor<*xf32>)
      -> tensor<*xf32>
  %ce = net.softmax_cross_entropy %logits, %labels
      : tensor<*xf32>, tensor<?xi32> -> tensor<f32>
  return %ce, %logits, %s : tensor<f32>, tensor<*xf32>, !net.switches<*>
}

// Ceil rounding keeps a last window only if it starts inside the input (or
// its left padding), as the runtime's kernels count them
// (runtime/plan/Window.h): 28 at 2/4 is 7, not 8; 5 at 1/3 is 2, not 3.
// CHECK-LABEL: func.func @ceil_past_the_input(
// CHECK: net.max_pool %{{.*}} kernel [2, 2] stride [4, 4] pad [0, 0] ceil : tensor<?x1x28x28xf32> -> tensor<?x1x7x7xf32>
// CHECK: net.avg_pool %{{.*}} kernel [1, 1] stride [3, 3] pad [0, 0] ceil : tensor<?x1x5x5xf32> -> tensor<?x1x2x2xf32>
func.func @ceil_past_the_input(%x: tensor<?x1x28x28xf32>, %y: tensor<?x1x5x5xf32>)
    -> (tensor<*xf32>, tensor<*xf32>) {
  %p, %s = net.max_pool %x kernel [2, 2] stride [4, 4] pad [0, 0] ceil
      : tensor<?x1x28x28xf32> -> tensor<*xf32>, !net.switches<*>
  %q = net.avg_pool %y kernel [1, 1] stride [3, 3] pad [0, 0] ceil
      : tensor<?x1x5x5xf32> -> tensor<*xf32>
  return %p, %q : tensor<*xf32>, tensor<*xf32>
}

// AlexNet's conv2: 96 -> 256 channels in 2 groups, 5x5 with padding 2, so
// each filter sees 48 channels; then its 3x3/2 pool with Caffe's ceil
// rounding (27 -> 13, exact either way) and GoogLeNet's (112 -> 56, floor
// would give 55).
// CHECK: net.param @alex2.weight : tensor<256x48x5x5xf32> init
net.param @alex2.weight : tensor<256x?x5x5xf32>
    init #net.gaussian<std = 1.0e-02, mean = 0.0>
    {decay_mult = 1.0 : f64, group = "encoder", lr_mult = 1.0 : f64}

// CHECK-LABEL: func.func @grouped_and_ceil(
// CHECK-SAME: -> (tensor<?x256x13x13xf32>, tensor<?x64x56x56xf32>)
// CHECK: %[[W:.*]] = net.param_get @alex2.weight : tensor<256x48x5x5xf32>
// CHECK: %[[C:.*]] = net.conv2d %{{.*}}, %[[W]] stride [1, 1] pad [2, 2] groups 2 : (tensor<?x96x27x27xf32>, tensor<256x48x5x5xf32>) -> tensor<?x256x27x27xf32>
// CHECK: net.max_pool %[[C]] kernel [3, 3] stride [2, 2] pad [0, 0] ceil : tensor<?x256x27x27xf32> -> tensor<?x256x13x13xf32>, !net.switches<?x256x13x13>
// CHECK: net.max_pool %{{.*}} kernel [3, 3] stride [2, 2] pad [0, 0] ceil : tensor<?x64x112x112xf32> -> tensor<?x64x56x56xf32>, !net.switches<?x64x56x56>
func.func @grouped_and_ceil(%x: tensor<?x96x27x27xf32>, %y: tensor<?x64x112x112xf32>)
    -> (tensor<*xf32>, tensor<*xf32>) {
  %w = net.param_get @alex2.weight : tensor<256x?x5x5xf32>
  %c = net.conv2d %x, %w stride [1, 1] pad [2, 2] groups 2
      : (tensor<?x96x27x27xf32>, tensor<256x?x5x5xf32>) -> tensor<*xf32>
  %p, %s = net.max_pool %c kernel [3, 3] stride [2, 2] pad [0, 0] ceil
      : tensor<*xf32> -> tensor<*xf32>, !net.switches<*>
  %q, %t = net.max_pool %y kernel [3, 3] stride [2, 2] pad [0, 0] ceil
      : tensor<?x64x112x112xf32> -> tensor<*xf32>, !net.switches<*>
  return %p, %q : tensor<*xf32>, tensor<*xf32>
}

// Ceil rounding with padding: a last window that would start in the padding
// is dropped (Caffe), so 5x5 pooled 2x2/2 with padding 1 is 3x3, not 4x4.
// 13x13 pooled 3x3/2 is 6x6 with either rounding.
// CHECK-LABEL: func.func @ceil_padding(
// CHECK-SAME: -> (tensor<?x8x3x3xf32>, tensor<?x8x6x6xf32>, tensor<?x8x7x7xf32>)
// CHECK: net.avg_pool %{{.*}} kernel [2, 2] stride [2, 2] pad [1, 1] ceil : tensor<?x8x5x5xf32> -> tensor<?x8x3x3xf32>
// CHECK: net.avg_pool %{{.*}} kernel [3, 3] stride [2, 2] pad [0, 0] ceil : tensor<?x8x13x13xf32> -> tensor<?x8x6x6xf32>
// CHECK: net.avg_pool %{{.*}} kernel [3, 3] stride [2, 2] pad [1, 1] ceil : tensor<?x8x13x13xf32> -> tensor<?x8x7x7xf32>
func.func @ceil_padding(%x: tensor<?x8x5x5xf32>, %y: tensor<?x8x13x13xf32>)
    -> (tensor<*xf32>, tensor<*xf32>, tensor<*xf32>) {
  %0 = net.avg_pool %x kernel [2, 2] stride [2, 2] pad [1, 1] ceil
      : tensor<?x8x5x5xf32> -> tensor<*xf32>
  %1 = net.avg_pool %y kernel [3, 3] stride [2, 2] pad [0, 0] ceil
      : tensor<?x8x13x13xf32> -> tensor<*xf32>
  %2 = net.avg_pool %y kernel [3, 3] stride [2, 2] pad [1, 1] ceil
      : tensor<?x8x13x13xf32> -> tensor<*xf32>
  return %0, %1, %2 : tensor<*xf32>, tensor<*xf32>, tensor<*xf32>
}

// A decoder: unpool with the pool's switches, then a 4x4/2 deconvolution
// with padding 1, which doubles the map: (16 - 1) * 2 - 2 + 4 = 32.
// CHECK: net.param @dec.weight : tensor<16x3x4x4xf32> init
// CHECK: net.param @dec.bias : tensor<3xf32> init
net.param @dec.weight : tensor<?x3x4x4xf32>
    init #net.gaussian<std = 1.0e-02, mean = 0.0>
    {decay_mult = 1.0 : f64, group = "decoder", lr_mult = 1.0 : f64}
net.param @dec.bias : tensor<?xf32> init #net.constant<value = 0.0>
    {decay_mult = 0.0 : f64, group = "decoder", lr_mult = 1.0 : f64}

// CHECK-LABEL: func.func @decoder(
// CHECK-SAME: -> (tensor<?x16x16x16xf32>, tensor<?x3x32x32xf32>, tensor<f32>)
// CHECK: %[[P:.*]], %[[S:.*]] = net.max_pool %{{.*}} : tensor<?x16x16x16xf32> -> tensor<?x16x8x8xf32>, !net.switches<?x16x8x8>
// CHECK: %[[U:.*]] = net.unpool %[[P]], %[[S]] kernel [2, 2] stride [2, 2] pad [0, 0] size [16, 16] : (tensor<?x16x8x8xf32>, !net.switches<?x16x8x8>) -> tensor<?x16x16x16xf32>
// CHECK: %[[W:.*]] = net.param_get @dec.weight : tensor<16x3x4x4xf32>
// CHECK: %[[B:.*]] = net.param_get @dec.bias : tensor<3xf32>
// CHECK: %[[D:.*]] = net.deconv2d %[[U]], %[[W]], %[[B]] stride [2, 2] pad [1, 1] output_padding [0, 0] groups 1 : (tensor<?x16x16x16xf32>, tensor<16x3x4x4xf32>, tensor<3xf32>) -> tensor<?x3x32x32xf32>
// CHECK: %[[L:.*]] = net.euclidean_loss %[[D]], %{{.*}} : tensor<?x3x32x32xf32>, tensor<?x3x32x32xf32> -> tensor<f32>
// CHECK: return %[[U]], %[[D]], %[[L]]
func.func @decoder(%x: tensor<?x16x16x16xf32>, %image: tensor<?x3x32x32xf32>)
    -> (tensor<*xf32>, tensor<*xf32>, tensor<f32>) {
  %p, %s = net.max_pool %x kernel [2, 2] stride [2, 2] pad [0, 0]
      : tensor<?x16x16x16xf32> -> tensor<*xf32>, !net.switches<*>
  %u = net.unpool %p, %s kernel [2, 2] stride [2, 2] pad [0, 0] size [16, 16]
      : (tensor<*xf32>, !net.switches<*>) -> tensor<*xf32>
  %w = net.param_get @dec.weight : tensor<?x3x4x4xf32>
  %b = net.param_get @dec.bias : tensor<?xf32>
  %d = net.deconv2d %u, %w, %b stride [2, 2] pad [1, 1] output_padding [0, 0]
      groups 1 : (tensor<*xf32>, tensor<?x3x4x4xf32>, tensor<?xf32>) -> tensor<*xf32>
  %l = net.euclidean_loss %d, %image
      : tensor<*xf32>, tensor<?x3x32x32xf32> -> tensor<f32>
  return %u, %d, %l : tensor<*xf32>, tensor<*xf32>, tensor<f32>
}

// The other layers: shape-preserving ones pass the type through; reshape
// keeps the batch.
// CHECK-LABEL: func.func @others(
// CHECK-SAME: -> (tensor<?x4x3x3xf32>, tensor<?x36xf32>)
// CHECK: %[[L:.*]] = net.lrn %{{.*}} : tensor<?x4x6x6xf32> -> tensor<?x4x6x6xf32>
// CHECK: %[[N:.*]] = net.batch_norm %[[L]], {{.*}} -> tensor<?x4x6x6xf32>
// CHECK: %[[A:.*]] = net.avg_pool %[[N]] {{.*}} : tensor<?x4x6x6xf32> -> tensor<?x4x3x3xf32>
// CHECK: %[[F:.*]] = net.flatten %[[A]] : tensor<?x4x3x3xf32> -> tensor<?x36xf32>
// CHECK: %[[D:.*]] = net.dropout %[[F]] ratio 5.000000e-01 seed 3 : tensor<?x36xf32> -> tensor<?x36xf32>
// CHECK: %[[R:.*]] = net.reshape %[[D]] to [4, 3, 3] : tensor<?x36xf32> -> tensor<?x4x3x3xf32>
// CHECK: %[[U:.*]] = net.unpool %[[R]] kernel [2, 2] stride [2, 2] pad [0, 0] size [6, 6] position [0, 0] : (tensor<?x4x3x3xf32>) -> tensor<?x4x6x6xf32>
// CHECK: return %[[R]], %[[D]]
func.func @others(%x: tensor<?x4x6x6xf32>, %g: tensor<4xf32>)
    -> (tensor<*xf32>, tensor<*xf32>) {
  %l = net.lrn %x size 3 alpha 1.0e-04 beta 0.75 k 1.0
      : tensor<?x4x6x6xf32> -> tensor<*xf32>
  %n = net.batch_norm %l, %g, %g, %g, %g eps 1.0e-05 momentum 0.9
      : (tensor<*xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>,
         tensor<4xf32>) -> tensor<*xf32>
  %a = net.avg_pool %n kernel [2, 2] stride [2, 2] pad [0, 0]
      : tensor<*xf32> -> tensor<*xf32>
  %f = net.flatten %a : tensor<*xf32> -> tensor<*xf32>
  %d = net.dropout %f ratio 0.5 seed 3 : tensor<*xf32> -> tensor<*xf32>
  %r = net.reshape %d to [4, 3, 3] : tensor<*xf32> -> tensor<*xf32>
  %u = net.unpool %r kernel [2, 2] stride [2, 2] pad [0, 0] size [6, 6]
      position [0, 0] : (tensor<*xf32>) -> tensor<*xf32>
  return %r, %d : tensor<*xf32>, tensor<*xf32>
}
