// RUN: netc-opt %s --net-plan-memory | FileCheck %s
// A chain of eight ReLUs runs in place: the scaled input, every ReLU and the
// flattened view share the input's bytes, so the arena is the input (2560
// bytes at batch 4), the labels and the loss, whatever the chain's length.

module {
  net.phase @p {batch = 4 : i64, decay = 0.0 : f64, decoder = "none", epochs = 1 : i64, freeze = [], lr = 0.1 : f64, lr_policy = "fixed", momentum = 0.9 : f64}
  // CHECK-LABEL: func.func @step.p
  // CHECK-SAME: net.arena_bytes = 2688 : i64, net.arg_offsets = array<i64: 0, 2560>, net.batch = 4 : i64
  func.func @step.p(%x: tensor<?x10x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x160xf32>) attributes {net.phase = @p} {
    // CHECK: net.scale {{.*}} {net.offsets = array<i64: [[B:[0-9]+]]>}
    %s = net.scale %x by 2.0 : tensor<?x10x4x4xf32>
    // CHECK-COUNT-8: net.relu {{.*}} {net.offsets = array<i64: [[B]]>}
    %0 = net.relu %s : tensor<?x10x4x4xf32> -> tensor<?x10x4x4xf32>
    %1 = net.relu %0 : tensor<?x10x4x4xf32> -> tensor<?x10x4x4xf32>
    %2 = net.relu %1 : tensor<?x10x4x4xf32> -> tensor<?x10x4x4xf32>
    %3 = net.relu %2 : tensor<?x10x4x4xf32> -> tensor<?x10x4x4xf32>
    %4 = net.relu %3 : tensor<?x10x4x4xf32> -> tensor<?x10x4x4xf32>
    %5 = net.relu %4 : tensor<?x10x4x4xf32> -> tensor<?x10x4x4xf32>
    %6 = net.relu %5 : tensor<?x10x4x4xf32> -> tensor<?x10x4x4xf32>
    %7 = net.relu %6 : tensor<?x10x4x4xf32> -> tensor<?x10x4x4xf32>
    // A reshape is a view of its input.
    // CHECK: net.flatten {{.*}} {net.offsets = array<i64: [[B]]>}
    %f = net.flatten %7 : tensor<?x10x4x4xf32> -> tensor<?x160xf32>
    %c = net.softmax_cross_entropy %f, %l : tensor<?x160xf32>, tensor<?xi32> -> tensor<f32>
    return %c, %f : tensor<f32>, tensor<?x160xf32>
  }
}
