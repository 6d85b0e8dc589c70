// RUN: netc-opt %s --net-schedule -split-input-file | FileCheck %s
// RUN: netc-opt %s --net-plan-memory -split-input-file | FileCheck %s --check-prefix=UNSCHEDULED
// RUN: netc-opt %s --net-schedule --net-plan-memory -split-input-file | FileCheck %s --check-prefix=SCHEDULED
// net-schedule: a parameter gradient larger than its operands (fc1's
// weight gradient, 64x64 from two 2x64 maps) is computed just before its
// update; then every update follows the later of its gradient and the last
// read of its parameter. fc1's 16 KiB gradient no longer overlaps the 32
// KiB map `big` that backward still needs, and the arena shrinks.

module {
  net.param @fc1.weight : tensor<64x64xf32> init #net.constant<value = 0.0> {decay_mult = 1.0 : f64, group = "classifier", lr_mult = 1.0 : f64}
  net.param @fc2.weight : tensor<64x64xf32> init #net.constant<value = 0.0> {decay_mult = 1.0 : f64, group = "classifier", lr_mult = 1.0 : f64}
  net.phase @p {batch = 2 : i64, decay = 0.0 : f64, decoder = "none", epochs = 1 : i64, freeze = [], lr = 0.1 : f64, lr_policy = "fixed", momentum = 0.9 : f64}
  // CHECK-LABEL: func.func @step
  func.func @step(%x: tensor<?x64xf32>, %big: tensor<?x4096xf32>) -> (tensor<f32>, tensor<?x64xf32>) attributes {net.phase = @p} {
    %w1 = net.param_get @fc1.weight : tensor<64x64xf32>
    %w2 = net.param_get @fc2.weight : tensor<64x64xf32>
    %h = net.relu %x : tensor<?x64xf32> -> tensor<?x64xf32>
    %e = net.euclidean_loss %h, %x : tensor<?x64xf32>, tensor<?x64xf32> -> tensor<f32>
    %dy = net.euclidean_loss_grad %h, %x scale 1.0 : tensor<?x64xf32>, tensor<?x64xf32> -> tensor<?x64xf32>
    // CHECK: %[[DX:.*]] = net.fc_grad_input %{{.*}}, %[[W1:.*]] :
    %dx = net.fc_grad_input %dy, %w1 : (tensor<?x64xf32>, tensor<64x64xf32>) -> tensor<?x64xf32>
    %dw1 = net.fc_grad_weight %x, %dy : (tensor<?x64xf32>, tensor<?x64xf32>) -> tensor<64x64xf32>
    // fc2's weight gradient is read by an add: not moved. Its update follows
    // the last read of fc2.weight.
    // CHECK-NEXT: %[[DW2:.*]] = net.fc_grad_weight
    %dw2 = net.fc_grad_weight %x, %dx : (tensor<?x64xf32>, tensor<?x64xf32>) -> tensor<64x64xf32>
    %dw2s = net.add %dw2, %dw2 : tensor<64x64xf32>
    // CHECK-NEXT: %[[DW2S:.*]] = net.add %[[DW2]], %[[DW2]]
    // CHECK-NEXT: net.relu_grad
    %g = net.relu_grad %big, %big : tensor<?x4096xf32>
    // CHECK-NEXT: net.fc_grad_input %{{.*}}, %{{.*}} :
    // CHECK-NEXT: net.sgd_update @fc2.weight, %[[DW2S]]
    %r = net.fc_grad_input %dx, %w2 : (tensor<?x64xf32>, tensor<64x64xf32>) -> tensor<?x64xf32>
    // CHECK-NEXT: net.relu
    %s = net.relu %r : tensor<?x64xf32> -> tensor<?x64xf32>
    // CHECK-NEXT: %[[DW1:.*]] = net.fc_grad_weight
    // CHECK-NEXT: net.sgd_update @fc1.weight, %[[DW1]]
    net.sgd_update @fc1.weight, %dw1 lr_mult 1.0 decay_mult 1.0 : tensor<64x64xf32>
    net.sgd_update @fc2.weight, %dw2s lr_mult 1.0 decay_mult 1.0 : tensor<64x64xf32>
    // CHECK-NEXT: return
    return %e, %s : tensor<f32>, tensor<?x64xf32>
  }
}
// UNSCHEDULED: net.arena_bytes = 66624
// SCHEDULED: net.arena_bytes = 50752

// -----

// Updates that land after the same op keep their order; an update that a
// later op reads the parameter after stays where it is.
module {
  net.param @a : tensor<4xf32> init #net.constant<value = 0.0> {decay_mult = 1.0 : f64, group = "encoder", lr_mult = 1.0 : f64}
  net.param @b : tensor<4xf32> init #net.constant<value = 0.0> {decay_mult = 1.0 : f64, group = "encoder", lr_mult = 1.0 : f64}
  net.param @c : tensor<4xf32> init #net.constant<value = 0.0> {decay_mult = 1.0 : f64, group = "encoder", lr_mult = 1.0 : f64}
  net.phase @p {batch = 2 : i64, decay = 0.0 : f64, decoder = "none", epochs = 1 : i64, freeze = [], lr = 0.1 : f64, lr_policy = "fixed", momentum = 0.9 : f64}
  // CHECK-LABEL: func.func @order
  func.func @order(%x: tensor<?x4xf32>) -> (tensor<f32>, tensor<?x4xf32>) attributes {net.phase = @p} {
    %a = net.param_get @a : tensor<4xf32>
    %b = net.param_get @b : tensor<4xf32>
    %c = net.param_get @c : tensor<4xf32>
    // CHECK: %[[G:.*]] = net.bias_grad
    %g = net.bias_grad %x : tensor<?x4xf32> -> tensor<4xf32>
    // CHECK-NEXT: net.sgd_update @a, %[[G]]
    // CHECK-NEXT: net.sgd_update @b, %[[G]]
    // CHECK-NEXT: net.add
    %s = net.add %c, %c : tensor<4xf32>
    %e = net.euclidean_loss %x, %x : tensor<?x4xf32>, tensor<?x4xf32> -> tensor<f32>
    net.sgd_update @a, %g lr_mult 1.0 decay_mult 1.0 : tensor<4xf32>
    net.sgd_update @c, %g lr_mult 1.0 decay_mult 1.0 : tensor<4xf32>
    // CHECK-NEXT: net.euclidean_loss
    // CHECK-NEXT: net.sgd_update @c, %[[G]]
    // CHECK-NEXT: net.add %{{.*}}, %{{.*}} : tensor<4xf32>
    %t = net.add %c, %s : tensor<4xf32>
    net.sgd_update @b, %g lr_mult 1.0 decay_mult 1.0 : tensor<4xf32>
    // CHECK-NEXT: return
    return %e, %x : tensor<f32>, tensor<?x4xf32>
  }
}

// -----

// Hand-written IR the pass leaves alone: two updates of one parameter
// (momentum updates do not commute) stay where they are.
module {
  net.param @a : tensor<64x64xf32> init #net.constant<value = 0.0> {decay_mult = 1.0 : f64, group = "encoder", lr_mult = 1.0 : f64}
  net.phase @p {batch = 2 : i64, decay = 0.0 : f64, decoder = "none", epochs = 1 : i64, freeze = [], lr = 0.1 : f64, lr_policy = "fixed", momentum = 0.9 : f64}
  // CHECK-LABEL: func.func @twice
  func.func @twice(%x: tensor<?x64xf32>) -> (tensor<f32>, tensor<?x64xf32>) attributes {net.phase = @p} {
    %a = net.param_get @a : tensor<64x64xf32>
    // CHECK: %[[G:.*]] = net.add
    %g = net.add %a, %a : tensor<64x64xf32>
    // CHECK-NEXT: net.euclidean_loss
    %e = net.euclidean_loss %x, %x : tensor<?x64xf32>, tensor<?x64xf32> -> tensor<f32>
    // CHECK-NEXT: net.sgd_update @a, %[[G]]
    // CHECK-NEXT: net.sgd_update @a, %[[G]]
    net.sgd_update @a, %g lr_mult 1.0 decay_mult 1.0 : tensor<64x64xf32>
    net.sgd_update @a, %g lr_mult 1.0 decay_mult 1.0 : tensor<64x64xf32>
    return %e, %x : tensor<f32>, tensor<?x64xf32>
  }
}
