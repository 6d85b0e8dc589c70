// RUN: netc-opt %s | netc-opt | FileCheck %s
// RUN: netc-opt %s --mlir-print-op-generic | netc-opt | FileCheck %s

// Round trip of every op, type and attribute of the net dialect, in custom
// and in generic form.

//===----------------------------------------------------------------------===//
// Parameters and initialisers
//===----------------------------------------------------------------------===//

// CHECK: net.param @conv.weight : tensor<4x3x3x3xf32> init #net.gaussian<std = 1.000000e-02, mean = 0.000000e+00> {decay_mult = 1.000000e+00 : f64, group = "encoder", lr_mult = 1.000000e+00 : f64}
net.param @conv.weight : tensor<4x3x3x3xf32>
    init #net.gaussian<std = 1.0e-02, mean = 0.0>
    {decay_mult = 1.0 : f64, group = "encoder", lr_mult = 1.0 : f64}
// CHECK: net.param @conv.bias : tensor<4xf32> init #net.constant<value = 1.000000e-01> {decay_mult = 0.000000e+00 : f64, group = "encoder", lr_mult = 2.000000e+00 : f64}
net.param @conv.bias : tensor<4xf32> init #net.constant<value = 0.1>
    {decay_mult = 0.0 : f64, group = "encoder", lr_mult = 2.0 : f64}
// A parameter whose shape is not inferred yet; frozen state.
// CHECK: net.param @fc.weight : tensor<10x?xf32> init #net.file<path = "vgg16.safetensors", key = "fc8.weight"> {decay_mult = 1.000000e+00 : f64, group = "classifier", lr_mult = 1.000000e+00 : f64, trainable = false}
net.param @fc.weight : tensor<10x?xf32>
    init #net.file<path = "vgg16.safetensors", key = "fc8.weight">
    {decay_mult = 1.0 : f64, group = "classifier", lr_mult = 1.0 : f64,
     trainable = false}
// CHECK: net.param @dec.weight : tensor<*xf32> init #net.file<path = "w.safetensors", key = ""> {decay_mult = 1.000000e+00 : f64, group = "decoder", lr_mult = 1.000000e+00 : f64}
net.param @dec.weight : tensor<*xf32>
    init #net.file<path = "w.safetensors", key = "">
    {decay_mult = 1.0 : f64, group = "decoder", lr_mult = 1.0 : f64}

// CHECK-LABEL: func.func @param_get(
// CHECK: net.param_get @conv.weight : tensor<4x3x3x3xf32>
// CHECK: net.param_get @conv.weight : tensor<4x?x3x3xf32>
// CHECK: net.param_get @fc.weight : tensor<10x?xf32>
// CHECK: net.param_get @fc.weight : tensor<10x64xf32>
// CHECK: net.param_get @dec.weight : tensor<*xf32>
func.func @param_get() {
  %0 = net.param_get @conv.weight : tensor<4x3x3x3xf32>
  %1 = net.param_get @conv.weight : tensor<4x?x3x3xf32>
  %2 = net.param_get @fc.weight : tensor<10x?xf32>
  %3 = net.param_get @fc.weight : tensor<10x64xf32>
  %4 = net.param_get @dec.weight : tensor<*xf32>
  return
}

//===----------------------------------------------------------------------===//
// Convolutions
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @conv2d(
// CHECK-SAME: %[[X:.*]]: tensor<?x3x32x32xf32>, %[[W:.*]]: tensor<4x3x3x3xf32>, %[[B:.*]]: tensor<4xf32>
// CHECK: net.conv2d %[[X]], %[[W]], %[[B]] stride [1, 1] pad [1, 1] groups 1 : (tensor<?x3x32x32xf32>, tensor<4x3x3x3xf32>, tensor<4xf32>) -> tensor<?x4x32x32xf32>
// CHECK: net.conv2d %[[X]], %[[W]] stride [2, 2] pad [0, 0] groups 1 : (tensor<?x3x32x32xf32>, tensor<4x3x3x3xf32>) -> tensor<?x4x15x15xf32>
func.func @conv2d(%x: tensor<?x3x32x32xf32>, %w: tensor<4x3x3x3xf32>,
                  %b: tensor<4xf32>) {
  %0 = net.conv2d %x, %w, %b stride [1, 1] pad [1, 1] groups 1
      : (tensor<?x3x32x32xf32>, tensor<4x3x3x3xf32>, tensor<4xf32>)
        -> tensor<?x4x32x32xf32>
  %1 = net.conv2d %x, %w stride [2, 2] pad [0, 0] groups 1
      : (tensor<?x3x32x32xf32>, tensor<4x3x3x3xf32>) -> tensor<?x4x15x15xf32>
  return
}

// CHECK-LABEL: func.func @conv2d_grouped(
// CHECK: net.conv2d %{{.*}}, %{{.*}} stride [1, 1] pad [2, 2] groups 2 : (tensor<?x96x27x27xf32>, tensor<256x48x5x5xf32>) -> tensor<?x256x27x27xf32>
func.func @conv2d_grouped(%x: tensor<?x96x27x27xf32>, %w: tensor<256x48x5x5xf32>) {
  %0 = net.conv2d %x, %w stride [1, 1] pad [2, 2] groups 2
      : (tensor<?x96x27x27xf32>, tensor<256x48x5x5xf32>) -> tensor<?x256x27x27xf32>
  return
}

// Before net-infer-shapes, results and operands may be unranked.
// CHECK-LABEL: func.func @conv2d_unranked(
// CHECK: net.conv2d %{{.*}}, %{{.*}} stride [1, 1] pad [0, 0] groups 1 : (tensor<*xf32>, tensor<4x?x3x3xf32>) -> tensor<*xf32>
func.func @conv2d_unranked(%x: tensor<*xf32>, %w: tensor<4x?x3x3xf32>) {
  %0 = net.conv2d %x, %w stride [1, 1] pad [0, 0] groups 1
      : (tensor<*xf32>, tensor<4x?x3x3xf32>) -> tensor<*xf32>
  return
}

// CHECK-LABEL: func.func @deconv2d(
// CHECK-SAME: %[[X:.*]]: tensor<?x96x55x55xf32>, %[[W:.*]]: tensor<96x3x11x11xf32>, %[[B:.*]]: tensor<3xf32>
// CHECK: net.deconv2d %[[X]], %[[W]], %[[B]] stride [4, 4] pad [0, 0] output_padding [3, 3] groups 1 : (tensor<?x96x55x55xf32>, tensor<96x3x11x11xf32>, tensor<3xf32>) -> tensor<?x3x230x230xf32>
// CHECK: net.deconv2d %[[X]], %[[W]] stride [4, 4] pad [0, 0] output_padding [0, 0] groups 1 : (tensor<?x96x55x55xf32>, tensor<96x3x11x11xf32>) -> tensor<?x3x227x227xf32>
func.func @deconv2d(%x: tensor<?x96x55x55xf32>, %w: tensor<96x3x11x11xf32>,
                    %b: tensor<3xf32>) {
  %0 = net.deconv2d %x, %w, %b stride [4, 4] pad [0, 0] output_padding [3, 3]
      groups 1 : (tensor<?x96x55x55xf32>, tensor<96x3x11x11xf32>, tensor<3xf32>)
                 -> tensor<?x3x230x230xf32>
  %1 = net.deconv2d %x, %w stride [4, 4] pad [0, 0] output_padding [0, 0]
      groups 1 : (tensor<?x96x55x55xf32>, tensor<96x3x11x11xf32>)
                 -> tensor<?x3x227x227xf32>
  return
}

//===----------------------------------------------------------------------===//
// Element-wise and normalisation layers
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @relu(
// CHECK: net.relu %{{.*}} : tensor<?x4x8x8xf32> -> tensor<?x4x8x8xf32>
// CHECK: net.relu %{{.*}} : tensor<?x10xf32> -> tensor<*xf32>
func.func @relu(%x: tensor<?x4x8x8xf32>, %y: tensor<?x10xf32>) {
  %0 = net.relu %x : tensor<?x4x8x8xf32> -> tensor<?x4x8x8xf32>
  %1 = net.relu %y : tensor<?x10xf32> -> tensor<*xf32>
  return
}

// CHECK-LABEL: func.func @dropout(
// CHECK: net.dropout %{{.*}} ratio 5.000000e-01 seed 7 : tensor<?x4096xf32> -> tensor<?x4096xf32>
// CHECK: net.dropout %{{.*}} ratio 0.000000e+00 seed 0 : tensor<?x4096xf32> -> tensor<?x4096xf32>
func.func @dropout(%x: tensor<?x4096xf32>) {
  %0 = net.dropout %x ratio 0.5 seed 7 : tensor<?x4096xf32> -> tensor<?x4096xf32>
  %1 = net.dropout %x ratio 0.0 seed 0 : tensor<?x4096xf32> -> tensor<?x4096xf32>
  return
}

// CHECK-LABEL: func.func @lrn(
// CHECK: net.lrn %{{.*}} size 5 alpha 1.000000e-04 beta 7.500000e-01 k 1.000000e+00 : tensor<?x96x55x55xf32> -> tensor<?x96x55x55xf32>
func.func @lrn(%x: tensor<?x96x55x55xf32>) {
  %0 = net.lrn %x size 5 alpha 1.0e-04 beta 0.75 k 1.0
      : tensor<?x96x55x55xf32> -> tensor<?x96x55x55xf32>
  return
}

// CHECK-LABEL: func.func @batch_norm(
// CHECK-SAME: %[[X:[^:]*]]: tensor<?x64x32x32xf32>, %[[G:[^:]*]]: tensor<64xf32>, %[[B:[^:]*]]: tensor<64xf32>, %[[M:[^:]*]]: tensor<64xf32>, %[[V:[^:]*]]: tensor<64xf32>, %[[F:[^:]*]]: tensor<?x64xf32>
// CHECK: net.batch_norm %[[X]], %[[G]], %[[B]], %[[M]], %[[V]] eps 1.000000e-05 momentum 9.000000e-01 : (tensor<?x64x32x32xf32>, tensor<64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<64xf32>) -> tensor<?x64x32x32xf32>
// CHECK: net.batch_norm %[[F]], %[[G]], %[[B]], %[[M]], %[[V]] eps 1.000000e-03 momentum 1.000000e+00 : (tensor<?x64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<64xf32>) -> tensor<?x64xf32>
// CHECK: net.batch_norm %[[X]], %[[G]], %[[B]], %[[M]], %[[V]] eps 1.000000e-05 momentum 9.000000e-01 inference : (tensor<?x64x32x32xf32>, tensor<64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<64xf32>) -> tensor<?x64x32x32xf32>
func.func @batch_norm(%x: tensor<?x64x32x32xf32>, %g: tensor<64xf32>,
                      %b: tensor<64xf32>, %m: tensor<64xf32>,
                      %v: tensor<64xf32>, %f: tensor<?x64xf32>) {
  %0 = net.batch_norm %x, %g, %b, %m, %v eps 1.0e-05 momentum 0.9
      : (tensor<?x64x32x32xf32>, tensor<64xf32>, tensor<64xf32>, tensor<64xf32>,
         tensor<64xf32>) -> tensor<?x64x32x32xf32>
  %1 = net.batch_norm %f, %g, %b, %m, %v eps 1.0e-03 momentum 1.0
      : (tensor<?x64xf32>, tensor<64xf32>, tensor<64xf32>, tensor<64xf32>,
         tensor<64xf32>) -> tensor<?x64xf32>
  %2 = net.batch_norm %x, %g, %b, %m, %v eps 1.0e-05 momentum 0.9 inference
      : (tensor<?x64x32x32xf32>, tensor<64xf32>, tensor<64xf32>, tensor<64xf32>,
         tensor<64xf32>) -> tensor<?x64x32x32xf32>
  return
}

//===----------------------------------------------------------------------===//
// Pooling
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @max_pool(
// CHECK: %{{.*}}, %{{.*}} = net.max_pool %{{.*}} kernel [2, 2] stride [2, 2] pad [0, 0] : tensor<?x64x224x224xf32> -> tensor<?x64x112x112xf32>, !net.switches<?x64x112x112>
// Caffe's ceil rounding: (14 - 3) / 2 rounded up, plus one (floor: 6).
// CHECK: %{{.*}}, %{{.*}} = net.max_pool %{{.*}} kernel [3, 3] stride [2, 2] pad [0, 0] ceil : tensor<?x64x14x14xf32> -> tensor<?x64x7x7xf32>, !net.switches<?x64x7x7>
// CHECK: %{{.*}}, %{{.*}} = net.max_pool %{{.*}} kernel [3, 3] stride [2, 2] pad [0, 0] : tensor<*xf32> -> tensor<*xf32>, !net.switches<*>
// Partially known results, switches included, are compatible.
// CHECK: %{{.*}}, %{{.*}} = net.max_pool %{{.*}} kernel [2, 2] stride [2, 2] pad [0, 0] : tensor<?x64x224x224xf32> -> tensor<?x64x?x?xf32>, !net.switches<?x64x?x?>
func.func @max_pool(%x: tensor<?x64x224x224xf32>, %y: tensor<?x64x14x14xf32>,
                    %z: tensor<*xf32>) {
  %0, %1 = net.max_pool %x kernel [2, 2] stride [2, 2] pad [0, 0]
      : tensor<?x64x224x224xf32>
        -> tensor<?x64x112x112xf32>, !net.switches<?x64x112x112>
  %2, %3 = net.max_pool %y kernel [3, 3] stride [2, 2] pad [0, 0] ceil
      : tensor<?x64x14x14xf32> -> tensor<?x64x7x7xf32>, !net.switches<?x64x7x7>
  %4, %5 = net.max_pool %z kernel [3, 3] stride [2, 2] pad [0, 0]
      : tensor<*xf32> -> tensor<*xf32>, !net.switches<*>
  %6, %7 = net.max_pool %x kernel [2, 2] stride [2, 2] pad [0, 0]
      : tensor<?x64x224x224xf32> -> tensor<?x64x?x?xf32>, !net.switches<?x64x?x?>
  return
}

// CHECK-LABEL: func.func @avg_pool(
// CHECK: net.avg_pool %{{.*}} kernel [2, 2] stride [2, 2] pad [0, 0] : tensor<?x64x8x8xf32> -> tensor<?x64x4x4xf32>
// CHECK: net.avg_pool %{{.*}} kernel [3, 3] stride [2, 2] pad [1, 1] ceil : tensor<?x64x8x8xf32> -> tensor<?x64x5x5xf32>
func.func @avg_pool(%x: tensor<?x64x8x8xf32>) {
  %0 = net.avg_pool %x kernel [2, 2] stride [2, 2] pad [0, 0]
      : tensor<?x64x8x8xf32> -> tensor<?x64x4x4xf32>
  %1 = net.avg_pool %x kernel [3, 3] stride [2, 2] pad [1, 1] ceil
      : tensor<?x64x8x8xf32> -> tensor<?x64x5x5xf32>
  return
}

// CHECK-LABEL: func.func @unpool(
// CHECK-SAME: %[[Y:[^:]*]]: tensor<?x64x112x112xf32>, %[[S:[^:]*]]: !net.switches<?x64x112x112>
// CHECK: net.unpool %[[Y]], %[[S]] kernel [2, 2] stride [2, 2] pad [0, 0] size [224, 224] : (tensor<?x64x112x112xf32>, !net.switches<?x64x112x112>) -> tensor<?x64x224x224xf32>
// CHECK: net.unpool %[[Y]] kernel [2, 2] stride [2, 2] pad [0, 0] size [224, 224] position [1, 0] : (tensor<?x64x112x112xf32>) -> tensor<?x64x224x224xf32>
// CHECK: net.unpool %[[Y]], %[[S]] kernel [3, 3] stride [2, 2] pad [0, 0] size [225, 225] normalize : (tensor<?x64x112x112xf32>, !net.switches<?x64x112x112>) -> tensor<?x64x225x225xf32>
// CHECK: net.unpool %[[Y]] kernel [3, 3] stride [2, 2] pad [0, 0] size [225, 225] position [2, 2] normalize : (tensor<?x64x112x112xf32>) -> tensor<?x64x225x225xf32>
func.func @unpool(%y: tensor<?x64x112x112xf32>, %s: !net.switches<?x64x112x112>) {
  %0 = net.unpool %y, %s kernel [2, 2] stride [2, 2] pad [0, 0] size [224, 224]
      : (tensor<?x64x112x112xf32>, !net.switches<?x64x112x112>)
        -> tensor<?x64x224x224xf32>
  %1 = net.unpool %y kernel [2, 2] stride [2, 2] pad [0, 0] size [224, 224]
      position [1, 0] : (tensor<?x64x112x112xf32>) -> tensor<?x64x224x224xf32>
  %2 = net.unpool %y, %s kernel [3, 3] stride [2, 2] pad [0, 0] size [225, 225]
      normalize : (tensor<?x64x112x112xf32>, !net.switches<?x64x112x112>)
                  -> tensor<?x64x225x225xf32>
  %3 = net.unpool %y kernel [3, 3] stride [2, 2] pad [0, 0] size [225, 225]
      position [2, 2] normalize
      : (tensor<?x64x112x112xf32>) -> tensor<?x64x225x225xf32>
  return
}

// Switches not inferred yet.
// CHECK-LABEL: func.func @unpool_unranked_switches(
// CHECK: net.unpool %{{.*}}, %{{.*}} kernel [2, 2] stride [2, 2] pad [0, 0] size [8, 8] : (tensor<?x4x4x4xf32>, !net.switches<*>) -> tensor<?x4x8x8xf32>
func.func @unpool_unranked_switches(%y: tensor<?x4x4x4xf32>, %s: !net.switches<*>) {
  %0 = net.unpool %y, %s kernel [2, 2] stride [2, 2] pad [0, 0] size [8, 8]
      : (tensor<?x4x4x4xf32>, !net.switches<*>) -> tensor<?x4x8x8xf32>
  return
}

//===----------------------------------------------------------------------===//
// Fully connected and reshaping
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @fc(
// CHECK-SAME: %[[X:[^:]*]]: tensor<?x25088xf32>, %[[W:[^:]*]]: tensor<4096x25088xf32>, %[[B:[^:]*]]: tensor<4096xf32>
// CHECK: net.fc %[[X]], %[[W]], %[[B]] : (tensor<?x25088xf32>, tensor<4096x25088xf32>, tensor<4096xf32>) -> tensor<?x4096xf32>
// CHECK: net.fc %[[X]], %[[W]] : (tensor<?x25088xf32>, tensor<4096x25088xf32>) -> tensor<?x4096xf32>
func.func @fc(%x: tensor<?x25088xf32>, %w: tensor<4096x25088xf32>,
              %b: tensor<4096xf32>) {
  %0 = net.fc %x, %w, %b : (tensor<?x25088xf32>, tensor<4096x25088xf32>,
                            tensor<4096xf32>) -> tensor<?x4096xf32>
  %1 = net.fc %x, %w : (tensor<?x25088xf32>, tensor<4096x25088xf32>)
      -> tensor<?x4096xf32>
  return
}

// CHECK-LABEL: func.func @flatten(
// CHECK: net.flatten %{{.*}} : tensor<?x512x7x7xf32> -> tensor<?x25088xf32>
// CHECK: net.flatten %{{.*}} : tensor<?x?x7x7xf32> -> tensor<?x?xf32>
func.func @flatten(%x: tensor<?x512x7x7xf32>, %y: tensor<?x?x7x7xf32>) {
  %0 = net.flatten %x : tensor<?x512x7x7xf32> -> tensor<?x25088xf32>
  %1 = net.flatten %y : tensor<?x?x7x7xf32> -> tensor<?x?xf32>
  return
}

// CHECK-LABEL: func.func @reshape(
// CHECK: net.reshape %{{.*}} to [256, 6, 6] : tensor<?x9216xf32> -> tensor<?x256x6x6xf32>
func.func @reshape(%x: tensor<?x9216xf32>) {
  %0 = net.reshape %x to [256, 6, 6] : tensor<?x9216xf32> -> tensor<?x256x6x6xf32>
  return
}

//===----------------------------------------------------------------------===//
// Losses
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @losses(
// CHECK-SAME: %[[LOGITS:[^:]*]]: tensor<?x10xf32>, %[[LABELS:[^:]*]]: tensor<?xi32>, %[[XHAT:[^:]*]]: tensor<?x3x8x8xf32>, %[[X:[^:]*]]: tensor<?x3x8x8xf32>
// CHECK: %[[CE:.*]] = net.softmax_cross_entropy %[[LOGITS]], %[[LABELS]] : tensor<?x10xf32>, tensor<?xi32> -> tensor<f32>
// CHECK: %[[L:.*]] = net.euclidean_loss %[[XHAT]], %[[X]] : tensor<?x3x8x8xf32>, tensor<?x3x8x8xf32> -> tensor<f32>
// CHECK: %[[T:.*]] = net.objective %[[CE]], %[[L]] weights [1.000000e+00, 1.000000e-04] names ["classification", "recon.image"] : tensor<f32>, tensor<f32> -> tensor<f32>
// CHECK: net.objective %[[T]] weights [2.000000e+00] names ["total"] : tensor<f32> -> tensor<f32>
func.func @losses(%logits: tensor<?x10xf32>, %labels: tensor<?xi32>,
                  %xhat: tensor<?x3x8x8xf32>, %x: tensor<?x3x8x8xf32>) -> tensor<f32> {
  %c = net.softmax_cross_entropy %logits, %labels
      : tensor<?x10xf32>, tensor<?xi32> -> tensor<f32>
  %l = net.euclidean_loss %xhat, %x
      : tensor<?x3x8x8xf32>, tensor<?x3x8x8xf32> -> tensor<f32>
  %t = net.objective %c, %l weights [1.0, 1.0e-04]
      names ["classification", "recon.image"] : tensor<f32>, tensor<f32> -> tensor<f32>
  %u = net.objective %t weights [2.0] names ["total"] : tensor<f32> -> tensor<f32>
  return %u : tensor<f32>
}

//===----------------------------------------------------------------------===//
// Macro-layers and a whole network
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @network(
// CHECK-SAME: %[[IMAGE:[^:]*]]: tensor<?x3x8x8xf32>, %[[LABELS:[^:]*]]: tensor<?xi32>) -> (tensor<f32>, tensor<?x10xf32>)
// CHECK-SAME: attributes {net.classes = 10 : i64, net.network}
// CHECK: %[[MAP:.*]]:2 = net.macro "conv1"(%[[IMAGE]]) : (tensor<?x3x8x8xf32>) -> (tensor<?x4x4x4xf32>, !net.switches<?x4x4x4>) {
// CHECK-NEXT: ^bb0(%[[IN:.*]]: tensor<?x3x8x8xf32>):
// CHECK-NEXT: %[[W:.*]] = net.param_get @conv.weight : tensor<4x3x3x3xf32>
// CHECK-NEXT: %[[B:.*]] = net.param_get @conv.bias : tensor<4xf32>
// CHECK-NEXT: %[[C:.*]] = net.conv2d %[[IN]], %[[W]], %[[B]]
// CHECK-NEXT: %[[R:.*]] = net.relu %[[C]]
// CHECK-NEXT: %[[P:.*]], %[[S:.*]] = net.max_pool %[[R]]
// CHECK-NEXT: net.yield %[[P]], %[[S]] : tensor<?x4x4x4xf32>, !net.switches<?x4x4x4>
// CHECK-NEXT: }
// CHECK: %[[F:.*]] = net.flatten %[[MAP]]#0
// CHECK: %[[FW:.*]] = net.param_get @fc.weight : tensor<10x64xf32>
// CHECK: %[[LOGITS:.*]] = net.fc %[[F]], %[[FW]]
// CHECK: %[[CE:.*]] = net.softmax_cross_entropy %[[LOGITS]], %[[LABELS]]
// CHECK: return %[[CE]], %[[LOGITS]]
func.func @network(%image: tensor<?x3x8x8xf32>, %labels: tensor<?xi32>)
    -> (tensor<f32>, tensor<?x10xf32>)
    attributes {net.network, net.classes = 10 : i64} {
  %a, %s = net.macro "conv1"(%image) : (tensor<?x3x8x8xf32>)
      -> (tensor<?x4x4x4xf32>, !net.switches<?x4x4x4>) {
  ^bb0(%in: tensor<?x3x8x8xf32>):
    %w = net.param_get @conv.weight : tensor<4x3x3x3xf32>
    %b = net.param_get @conv.bias : tensor<4xf32>
    %c = net.conv2d %in, %w, %b stride [1, 1] pad [1, 1] groups 1
        : (tensor<?x3x8x8xf32>, tensor<4x3x3x3xf32>, tensor<4xf32>)
          -> tensor<?x4x8x8xf32>
    %r = net.relu %c : tensor<?x4x8x8xf32> -> tensor<?x4x8x8xf32>
    %p, %sw = net.max_pool %r kernel [2, 2] stride [2, 2] pad [0, 0]
        : tensor<?x4x8x8xf32> -> tensor<?x4x4x4xf32>, !net.switches<?x4x4x4>
    net.yield %p, %sw : tensor<?x4x4x4xf32>, !net.switches<?x4x4x4>
  }
  %f = net.flatten %a : tensor<?x4x4x4xf32> -> tensor<?x64xf32>
  %fw = net.param_get @fc.weight : tensor<10x64xf32>
  %logits = net.fc %f, %fw : (tensor<?x64xf32>, tensor<10x64xf32>) -> tensor<?x10xf32>
  %ce = net.softmax_cross_entropy %logits, %labels
      : tensor<?x10xf32>, tensor<?xi32> -> tensor<f32>
  return %ce, %logits : tensor<f32>, tensor<?x10xf32>
}

// A macro-layer without a pool, not yet inferred, and one with no results.
// CHECK-LABEL: func.func @macro_unranked(
// CHECK: net.macro "conv2"(%{{.*}}) : (tensor<*xf32>) -> tensor<*xf32> {
// CHECK: net.yield %{{.*}} : tensor<*xf32>
// The empty terminator of a result-less macro-layer is implicit.
// CHECK: net.macro "empty"() : () -> () {
// CHECK-NEXT: }
func.func @macro_unranked(%x: tensor<*xf32>) -> tensor<*xf32> {
  %0 = net.macro "conv2"(%x) : (tensor<*xf32>) -> tensor<*xf32> {
  ^bb0(%in: tensor<*xf32>):
    %r = net.relu %in : tensor<*xf32> -> tensor<*xf32>
    net.yield %r : tensor<*xf32>
  }
  net.macro "empty"() : () -> () {
    net.yield
  }
  return %0 : tensor<*xf32>
}

// CHECK-LABEL: func.func @switches_types(
// CHECK-SAME: !net.switches<*>, %{{.*}}: !net.switches<?x64x7x7>, %{{.*}}: !net.switches<2x3>) -> !net.switches<*>
func.func @switches_types(%a: !net.switches<*>, %b: !net.switches<?x64x7x7>,
                          %c: !net.switches<2x3>) -> !net.switches<*> {
  return %a : !net.switches<*>
}

//===----------------------------------------------------------------------===//
// The augment and train sections
//===----------------------------------------------------------------------===//

// CHECK: net.augment "swwae-all" {gamma = {conv1 = 1.000000e-01 : f64, conv2 = 0.000000e+00 : f64}, lambda = 1.000000e-04 : f64}
net.augment "swwae-all" {lambda = 1.0e-04 : f64,
                         gamma = {conv1 = 0.1 : f64, conv2 = 0.0 : f64}}
// CHECK: net.augment "sae-first" {decoder_init = #net.gaussian<std = 1.000000e-03, mean = 0.000000e+00>, from = "conv1", lambda = 1.000000e+00 : f64, position = array<i64: 0, 1>}
net.augment "sae-first" {lambda = 1.0 : f64, from = "conv1",
                         position = array<i64: 0, 1>,
                         decoder_init = #net.gaussian<std = 1.0e-03, mean = 0.0>}
// CHECK: net.augment "none" {lambda = 0.000000e+00 : f64}
net.augment "none" {lambda = 0.0 : f64}

// CHECK: net.data "fashion-mnist" {crop = 28 : i64, crop_pad = 2 : i64, mirror, path = "/usr/share/datasets/fashion-mnist"}
net.data "fashion-mnist" {path = "/usr/share/datasets/fashion-mnist", mirror,
                          crop = 28 : i64, crop_pad = 2 : i64}
// CHECK: net.data "imagenet" {mean = array<f64: 1.040000e+02, 1.170000e+02, 1.230000e+02>, scale = array<i64: 256, 256>, std = array<f64: 5.800000e+01, 5.700000e+01, 5.700000e+01>, subset = 1000 : i64, test_subset = 100 : i64}
net.data "imagenet" {subset = 1000 : i64, test_subset = 100 : i64,
                     scale = array<i64: 256, 256>,
                     mean = array<f64: 104.0, 117.0, 123.0>,
                     std = array<f64: 58.0, 57.0, 57.0>}

// CHECK: net.phase @pretrain {batch = 64 : i64, decay = 5.000000e-04 : f64, decoder = "layerwise", epochs = 4 : i64, freeze = ["classifier"], lambda = 1.000000e+00 : f64, lr = 1.000000e-02 : f64, lr_policy = "fixed", momentum = 0.000000e+00 : f64}
net.phase @pretrain {batch = 64 : i64, decay = 5.0e-04 : f64,
                     decoder = "layerwise", epochs = 4 : i64,
                     freeze = ["classifier"], lr = 1.0e-02 : f64,
                     lr_policy = "fixed", momentum = 0.0 : f64,
                     lambda = 1.0 : f64}
// CHECK: net.phase @joint {batch = 128 : i64, decay = 0.000000e+00 : f64, decoder = "default", epochs = 16 : i64, freeze = [], lr = 1.000000e-03 : f64, lr_every = 4 : i64, lr_gamma = 5.000000e-01 : f64, lr_policy = "step", momentum = 9.000000e-01 : f64, steps = 100 : i64}
net.phase @joint {batch = 128 : i64, decay = 0.0 : f64, decoder = "default",
                  epochs = 16 : i64, freeze = [], lr = 1.0e-03 : f64,
                  lr_policy = "step", lr_gamma = 0.5 : f64, lr_every = 4 : i64,
                  momentum = 0.9 : f64, steps = 100 : i64}
// CHECK: net.phase @finetune {batch = 1 : i64, decay = 0.000000e+00 : f64, decoder = "none", epochs = 1 : i64, freeze = ["encoder", "conv1"], lr = 1.000000e-03 : f64, lr_min = 1.000000e-05 : f64, lr_policy = "cosine", momentum = 0.000000e+00 : f64}
net.phase @finetune {batch = 1 : i64, decay = 0.0 : f64, decoder = "none",
                     epochs = 1 : i64, freeze = ["encoder", "conv1"],
                     lr = 1.0e-03 : f64, lr_policy = "cosine",
                     lr_min = 1.0e-05 : f64, momentum = 0.0 : f64}
// CHECK: net.phase @stacked {{{.*}}decoder = "stacked"
net.phase @stacked {batch = 8 : i64, decay = 0.0 : f64, decoder = "stacked",
                    epochs = 2 : i64, freeze = [], lr = 0.0 : f64,
                    lr_policy = "fixed", momentum = 0.5 : f64}

// CHECK: net.eval ["full", "single-crop", "dense"]
net.eval ["full", "single-crop", "dense"]
