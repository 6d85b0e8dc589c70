// RUN: not netc-opt %s --net-mirror="variant=swae-all" 2>&1 | FileCheck %s
// A variant given as a pass option is checked too.

// CHECK: error: unknown augmentation variant 'swae-all'
module {
  net.param @c1.weight : tensor<4x3x3x3xf32> init #net.gaussian<std = 0.01, mean = 0.0> {lr_mult = 1.0, decay_mult = 1.0, group = "encoder"}
  net.param @fc.weight : tensor<2x64xf32> init #net.gaussian<std = 0.01, mean = 0.0> {lr_mult = 1.0, decay_mult = 1.0, group = "classifier"}

  func.func @n(%x: tensor<?x3x8x8xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x2xf32>) attributes {net.network} {
    %a, %s = net.macro "c1"(%x) : (tensor<?x3x8x8xf32>) -> (tensor<?x4x4x4xf32>, !net.switches<?x4x4x4>) {
    ^bb0(%in: tensor<?x3x8x8xf32>):
      %w = net.param_get @c1.weight : tensor<4x3x3x3xf32>
      %c = net.conv2d %in, %w stride [1, 1] pad [1, 1] groups 1 : (tensor<?x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<?x4x8x8xf32>
      %p, %sw = net.max_pool %c kernel [2, 2] stride [2, 2] pad [0, 0] : tensor<?x4x8x8xf32> -> tensor<?x4x4x4xf32>, !net.switches<?x4x4x4>
      net.yield %p, %sw : tensor<?x4x4x4xf32>, !net.switches<?x4x4x4>
    }
    %f = net.flatten %a : tensor<?x4x4x4xf32> -> tensor<?x64xf32>
    %w = net.param_get @fc.weight : tensor<2x64xf32>
    %g = net.fc %f, %w : (tensor<?x64xf32>, tensor<2x64xf32>) -> tensor<?x2xf32>
    %loss = net.softmax_cross_entropy %g, %l : tensor<?x2xf32>, tensor<?xi32> -> tensor<f32>
    return %loss, %g : tensor<f32>, tensor<?x2xf32>
  }
}
