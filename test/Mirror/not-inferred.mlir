// RUN: netc-opt %s -verify-diagnostics --net-mirror
// The mirror needs every shape; it says which pass to run first.

module {
  net.augment "sae-first" {lambda = 1.0e-4 : f64}
  // expected-error@+1 {{net-mirror needs inferred shapes; run net-infer-shapes first}}
  func.func @n(%x: tensor<?x3x8x8xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<*xf32>) attributes {net.network} {
    %r = net.relu %x : tensor<?x3x8x8xf32> -> tensor<*xf32>
    %loss = net.softmax_cross_entropy %r, %l : tensor<*xf32>, tensor<?xi32> -> tensor<f32>
    return %loss, %r : tensor<f32>, tensor<*xf32>
  }
}
