// RUN: netc-opt %s -split-input-file -verify-diagnostics --net-mirror
// Every error net-mirror reports, at the op it is about.

module {
  net.param @c1.weight : tensor<4x3x3x3xf32> init #net.gaussian<std = 0.01, mean = 0.0> {lr_mult = 1.0, decay_mult = 1.0, group = "encoder"}
  net.param @fc.weight : tensor<2x64xf32> init #net.gaussian<std = 0.01, mean = 0.0> {lr_mult = 1.0, decay_mult = 1.0, group = "classifier"}
  // expected-error@+1 {{gamma names macro-layer 'conv9', which does not exist}}
  net.augment "swwae-all" {lambda = 1.0e-4 : f64, gamma = {conv9 = 1.0e-2 : f64}}
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

// -----

module {
  net.param @c1.weight : tensor<4x3x3x3xf32> init #net.gaussian<std = 0.01, mean = 0.0> {lr_mult = 1.0, decay_mult = 1.0, group = "encoder"}
  net.param @fc.weight : tensor<2x64xf32> init #net.gaussian<std = 0.01, mean = 0.0> {lr_mult = 1.0, decay_mult = 1.0, group = "classifier"}
  // expected-error@+1 {{swwae-first unpools with max-pooling switches, but no macro-layer of 'n' has a max-pool}}
  net.augment "swwae-first" {lambda = 1.0e-4 : f64}
  func.func @n(%x: tensor<?x3x8x8xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x2xf32>) attributes {net.network} {
    %a = net.macro "c1"(%x) : (tensor<?x3x8x8xf32>) -> tensor<?x4x4x4xf32> {
    ^bb0(%in: tensor<?x3x8x8xf32>):
      %w = net.param_get @c1.weight : tensor<4x3x3x3xf32>
      %c = net.conv2d %in, %w stride [2, 2] pad [1, 1] groups 1 : (tensor<?x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<?x4x4x4xf32>
      net.yield %c : tensor<?x4x4x4xf32>
    }
    %f = net.flatten %a : tensor<?x4x4x4xf32> -> tensor<?x64xf32>
    %w = net.param_get @fc.weight : tensor<2x64xf32>
    %g = net.fc %f, %w : (tensor<?x64xf32>, tensor<2x64xf32>) -> tensor<?x2xf32>
    %loss = net.softmax_cross_entropy %g, %l : tensor<?x2xf32>, tensor<?xi32> -> tensor<f32>
    return %loss, %g : tensor<f32>, tensor<?x2xf32>
  }
}

// -----

module {
  net.param @c1.weight : tensor<4x3x3x3xf32> init #net.gaussian<std = 0.01, mean = 0.0> {lr_mult = 1.0, decay_mult = 1.0, group = "encoder"}
  net.param @fc.weight : tensor<2x64xf32> init #net.gaussian<std = 0.01, mean = 0.0> {lr_mult = 1.0, decay_mult = 1.0, group = "classifier"}
  net.augment "sae-all" {lambda = 1.0e-4 : f64}
  func.func @n(%x: tensor<?x3x8x8xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x2xf32>) attributes {net.network} {
    %a = net.macro "c1"(%x) : (tensor<?x3x8x8xf32>) -> tensor<?x4x4x4xf32> {
    ^bb0(%in: tensor<?x3x8x8xf32>):
      %w = net.param_get @c1.weight : tensor<4x3x3x3xf32>
      %c = net.conv2d %in, %w stride [1, 1] pad [1, 1] groups 1 : (tensor<?x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<?x4x8x8xf32>
      // expected-error@+1 {{cannot mirror 'net.avg_pool' of macro-layer 'c1': only convolutions and max-pooling have decoder twins}}
      %p = net.avg_pool %c kernel [2, 2] stride [2, 2] pad [0, 0] : tensor<?x4x8x8xf32> -> tensor<?x4x4x4xf32>
      net.yield %p : tensor<?x4x4x4xf32>
    }
    %f = net.flatten %a : tensor<?x4x4x4xf32> -> tensor<?x64xf32>
    %w = net.param_get @fc.weight : tensor<2x64xf32>
    %g = net.fc %f, %w : (tensor<?x64xf32>, tensor<2x64xf32>) -> tensor<?x2xf32>
    %loss = net.softmax_cross_entropy %g, %l : tensor<?x2xf32>, tensor<?xi32> -> tensor<f32>
    return %loss, %g : tensor<f32>, tensor<?x2xf32>
  }
}

// -----

module {
  net.param @c1.weight : tensor<4x3x3x3xf32> init #net.gaussian<std = 0.01, mean = 0.0> {lr_mult = 1.0, decay_mult = 1.0, group = "encoder"}
  net.param @fc.weight : tensor<2x64xf32> init #net.gaussian<std = 0.01, mean = 0.0> {lr_mult = 1.0, decay_mult = 1.0, group = "classifier"}
  // expected-error@+1 {{'from' names 'fc9', which is neither a macro-layer nor an fc layer of 'n'}}
  net.augment "sae-first" {lambda = 1.0e-4 : f64, from = "fc9"}
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

// -----

module {
  net.param @c1.weight : tensor<4x3x3x3xf32> init #net.gaussian<std = 0.01, mean = 0.0> {lr_mult = 1.0, decay_mult = 1.0, group = "encoder"}
  net.param @fc.weight : tensor<2x64xf32> init #net.gaussian<std = 0.01, mean = 0.0> {lr_mult = 1.0, decay_mult = 1.0, group = "classifier"}
  // expected-error@+1 {{position [2, 0] lies outside the pooling window of macro-layer 'c1'}}
  net.augment "sae-first" {lambda = 1.0e-4 : f64, position = array<i64: 2, 0>}
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

// -----

module {
  net.param @c1.weight : tensor<4x3x3x3xf32> init #net.gaussian<std = 0.01, mean = 0.0> {lr_mult = 1.0, decay_mult = 1.0, group = "encoder"}
  net.param @fc.weight : tensor<2x64xf32> init #net.gaussian<std = 0.01, mean = 0.0> {lr_mult = 1.0, decay_mult = 1.0, group = "classifier"}
  // expected-error@+1 {{'net.augment' op unknown augmentation variant 'swae-all'}}
  net.augment "swae-all" {lambda = 1.0e-4 : f64}
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
