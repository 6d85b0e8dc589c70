// RUN: not netc-opt %s -split-input-file 2>&1 | FileCheck %s

// A layer whose location is a NameLoc (what the frontend gives each layer)
// reports its errors as `layer '<name>': ...` at the child location, so
// that a shape error points into the .net file. -verify-diagnostics cannot
// match these locations, hence FileCheck.

// CHECK: alexnet.net:12:3: error: layer 'conv1': kernel 5x5 with padding 0 does not fit the 4x4 input
func.func @conv(%x: tensor<?x3x4x4xf32>, %w: tensor<4x3x5x5xf32>) {
  %0 = net.conv2d %x, %w stride [1, 1] pad [0, 0] groups 1
      : (tensor<?x3x4x4xf32>, tensor<4x3x5x5xf32>) -> tensor<*xf32>
      loc("conv1"("alexnet.net":12:3))
  return
}

// -----

// CHECK: alexnet.net:20:5: error: layer 'pool2': result type 'tensor<?x4x3x3xf32>' does not match the inferred 'tensor<?x4x4x4xf32>'
func.func @pool(%x: tensor<?x4x8x8xf32>) {
  %0, %1 = net.max_pool %x kernel [2, 2] stride [2, 2] pad [0, 0]
      : tensor<?x4x8x8xf32> -> tensor<?x4x3x3xf32>, !net.switches<*>
      loc("pool2"("alexnet.net":20:5))
  return
}

// -----

// Ops other than layers keep the usual prefix.
// CHECK: alexnet.net:30:1: error: 'net.phase' op unknown decoder topology 'mirrored'
net.phase @p {batch = 64 : i64, decay = 0.0 : f64, decoder = "mirrored",
              epochs = 1 : i64, freeze = [], lr = 0.1 : f64,
              lr_policy = "fixed", momentum = 0.9 : f64}
    loc("p"("alexnet.net":30:1))
