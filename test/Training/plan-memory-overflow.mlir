// RUN: netc-opt %s --net-plan-memory -split-input-file -verify-diagnostics
// RUN: not netc-opt %s --net-plan-memory=batch=2305843009213693952 -split-input-file 2>&1 | FileCheck %s --check-prefix=OPTION
// OPTION: error: net-plan-memory: batch 2305843009213693952 is not in [1, 1048576] (or 0: each phase's)
// RUN: not netc-opt %s --net-plan-memory=batch=-1 -split-input-file 2>&1 | FileCheck %s --check-prefix=NEGATIVE
// NEGATIVE: error: net-plan-memory: batch -1 is not in [1, 1048576] (or 0: each phase's)
// Byte counts are computed with checked arithmetic: a batch whose arena
// cannot be counted in int64_t is an error at the value that overflows,
// never a wrapped-around arena (batch 2^63-1 once planned 64 bytes). The
// pass's own batch option is bounded as netc's --batch is.

net.phase @p {batch = 9223372036854775807 : i64, decay = 0.0 : f64, decoder = "none", epochs = 1 : i64, freeze = [], lr = 0.1 : f64, lr_policy = "fixed", momentum = 0.9 : f64}
// expected-error@+1 {{'func.func' op at batch 9223372036854775807 the arena would need more than 2^63 bytes (a 'tensor<?x1x4x4xf32>' value)}}
func.func @step.p(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.phase = @p} {
  %f = net.flatten %x : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}

// -----

// Each value fits, but not their sum: 2^30 images of 2^30 floats are 2^62
// bytes, the image (returned, so not overwritten) and the scaled copy
// together more than 2^63.
net.phase @p {batch = 1073741824 : i64, decay = 0.0 : f64, decoder = "none", epochs = 1 : i64, freeze = [], lr = 0.1 : f64, lr_policy = "fixed", momentum = 0.9 : f64}
func.func @step.p(%x: tensor<?x1073741824xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x1073741824xf32>) attributes {net.phase = @p} {
  // expected-error@+1 {{'net.scale' op at batch 1073741824 the arena would need more than 2^63 bytes (a 'tensor<?x1073741824xf32>' value)}}
  %s = net.scale %x by 2.0 : tensor<?x1073741824xf32>
  %c = net.softmax_cross_entropy %s, %l : tensor<?x1073741824xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %x : tensor<f32>, tensor<?x1073741824xf32>
}

// -----

net.phase @p {batch = 4 : i64, decay = 0.0 : f64, decoder = "none", epochs = 1 : i64, freeze = [], lr = 0.1 : f64, lr_policy = "fixed", momentum = 0.9 : f64}
func.func @step.p(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<*xf32>) attributes {net.phase = @p} {
  // expected-error@+1 {{'net.relu' op net-plan-memory needs ranked values, got 'tensor<*xf32>'; run net-infer-shapes first}}
  %r = net.relu %x : tensor<?x1x4x4xf32> -> tensor<*xf32>
  %f = net.flatten %x : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %r : tensor<f32>, tensor<*xf32>
}
