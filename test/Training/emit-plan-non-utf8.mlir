// RUN: not netc-opt %s --net-emit-plan 2>&1 | FileCheck %s
// A string that is not UTF-8 (here the data kind, a single byte 0xB4; found
// by the pass fuzzer) is an error at its op, not an assertion or a plan
// holding a different string.
// CHECK: error: 'net.data' op attribute 'kind' holds a string that is not valid UTF-8
module {
  net.augment "none" {lambda = 1.000000e-04 : f64}
  net.param @conv1.weight : tensor<2x1x3x3xf32> init #net.gaussian<std = 1.000000e-02, mean = 0.000000e+00> {decay_mult = 1.000000e+00 : f64, group = "encoder", lr_mult = 1.000000e+00 : f64}
  net.param @conv1.bias : tensor<2xf32> init #net.constant<value = 0.000000e+00> {decay_mult = 0.000000e+00 : f64, group = "encoder", lr_mult = 2.000000e+00 : f64}
  net.param @fc1.weight : tensor<2x8xf32> init #net.gaussian<std = 1.000000e-02, mean = 0.000000e+00> {decay_mult = 1.000000e+00 : f64, group = "classifier", lr_mult = 1.000000e+00 : f64}
  net.param @fc1.bias : tensor<2xf32> init #net.constant<value = 0.000000e+00> {decay_mult = 0.000000e+00 : f64, group = "classifier", lr_mult = 2.000000e+00 : f64}
  net.phase @train {batch = 64 : i64, decay = 5.000000e-04 : f64, decoder = "none", epochs = 8 : i64, freeze = [], lr = 1.000000e-02 : f64, lr_every = 2 : i64, lr_policy = "step", momentum = 9.000000e-01 : f64}
  net.data "\B4"
  net.eval ["full"]
  func.func @t(%arg0: tensor<?x1x4x4xf32>, %arg1: tensor<?xi32>) -> (tensor<f32>, tensor<?x2xf32>) attributes {net.classes = 2 : i64, net.network} {
    %0:2 = net.macro "conv1"(%arg0) : (tensor<?x1x4x4xf32>) -> (tensor<?x2x2x2xf32>, !net.switches<?x2x2x2>) {
    ^bb0(%arg2: tensor<?x1x4x4xf32>):
      %6 = net.param_get @conv1.weight : tensor<2x1x3x3xf32>
      %7 = net.param_get @conv1.bias : tensor<2xf32>
      %8 = net.conv2d %arg2, %6, %7 stride [1, 1] pad [1, 1] groups 1 : (tensor<?x1x4x4xf32>, tensor<2x1x3x3xf32>, tensor<2xf32>) -> tensor<?x2x4x4xf32>
      %9 = net.relu %8 : tensor<?x2x4x4xf32> -> tensor<?x2x4x4xf32>
      %output, %switches = net.max_pool %9 kernel [2, 2] stride [2, 2] pad [0, 0] : tensor<?x2x4x4xf32> -> tensor<?x2x2x2xf32>, !net.switches<?x2x2x2>
      net.yield %output, %switches : tensor<?x2x2x2xf32>, !net.switches<?x2x2x2>
    }
    %1 = net.flatten %0#0 : tensor<?x2x2x2xf32> -> tensor<?x8xf32>
    %2 = net.param_get @fc1.weight : tensor<2x8xf32>
    %3 = net.param_get @fc1.bias : tensor<2xf32>
    %4 = net.fc %1, %2, %3 : (tensor<?x8xf32>, tensor<2x8xf32>, tensor<2xf32>) -> tensor<?x2xf32>
    %5 = net.softmax_cross_entropy %4, %arg1 : tensor<?x2xf32>, tensor<?xi32> -> tensor<f32>
    return %5, %4 : tensor<f32>, tensor<?x2xf32>
  }
  func.func @step.train(%arg0: tensor<?x1x4x4xf32>, %arg1: tensor<?xi32>) -> (tensor<f32>, tensor<?x2xf32>) attributes {net.arena_bytes = 25280 : i64, net.arg_offsets = array<i64: 16384, 10752>, net.batch = 64 : i64, net.classes = 2 : i64, net.phase = @train, net.topology = "none"} {
    %0 = net.param_get @conv1.weight : tensor<2x1x3x3xf32>
    %1 = net.param_get @conv1.bias : tensor<2xf32>
    %2 = net.conv2d %arg0, %0, %1 stride [1, 1] pad [1, 1] groups 1 {net.offsets = array<i64: 0>} : (tensor<?x1x4x4xf32>, tensor<2x1x3x3xf32>, tensor<2xf32>) -> tensor<?x2x4x4xf32>
    %3 = net.relu %2 {net.offsets = array<i64: 0>} : tensor<?x2x4x4xf32> -> tensor<?x2x4x4xf32>
    %output, %switches = net.max_pool %3 kernel [2, 2] stride [2, 2] pad [0, 0] {net.offsets = array<i64: 8192, 20480>} : tensor<?x2x4x4xf32> -> tensor<?x2x2x2xf32>, !net.switches<?x2x2x2>
    %4 = net.flatten %output {net.offsets = array<i64: 8192>} : tensor<?x2x2x2xf32> -> tensor<?x8xf32>
    %5 = net.param_get @fc1.weight : tensor<2x8xf32>
    %6 = net.param_get @fc1.bias : tensor<2xf32>
    %7 = net.fc %4, %5, %6 {net.offsets = array<i64: 24576>} : (tensor<?x8xf32>, tensor<2x8xf32>, tensor<2xf32>) -> tensor<?x2xf32>
    %8 = net.softmax_cross_entropy %7, %arg1 {net.offsets = array<i64: 25216>} : tensor<?x2xf32>, tensor<?xi32> -> tensor<f32>
    %9 = net.softmax_cross_entropy_grad %7, %arg1 scale 1.000000e+00 {net.offsets = array<i64: 10240>} : tensor<?x2xf32>, tensor<?xi32> -> tensor<?x2xf32>
    %10 = net.fc_grad_input %9, %5 {net.offsets = array<i64: 22528>} : (tensor<?x2xf32>, tensor<2x8xf32>) -> tensor<?x8xf32>
    %11 = net.fc_grad_weight %4, %9 {net.offsets = array<i64: 25088>} : (tensor<?x8xf32>, tensor<?x2xf32>) -> tensor<2x8xf32>
    %12 = net.bias_grad %9 {net.offsets = array<i64: 25152>} : tensor<?x2xf32> -> tensor<2xf32>
    %13 = net.reshape %10 to [2, 2, 2] {net.offsets = array<i64: 22528>} : tensor<?x8xf32> -> tensor<?x2x2x2xf32>
    %14 = net.unpool %13, %switches kernel [2, 2] stride [2, 2] pad [0, 0] size [4, 4] {net.offsets = array<i64: 8192>} : (tensor<?x2x2x2xf32>, !net.switches<?x2x2x2>) -> tensor<?x2x4x4xf32>
    %15 = net.relu_grad %14, %3 {net.offsets = array<i64: 8192>} : tensor<?x2x4x4xf32>
    %16 = net.conv2d_grad_weight %arg0, %15 stride [1, 1] pad [1, 1] groups 1 {net.offsets = array<i64: 0>} : (tensor<?x1x4x4xf32>, tensor<?x2x4x4xf32>) -> tensor<2x1x3x3xf32>
    %17 = net.bias_grad %15 {net.offsets = array<i64: 128>} : tensor<?x2x4x4xf32> -> tensor<2xf32>
    net.sgd_update @conv1.weight, %16 lr_mult 1.000000e+00 decay_mult 1.000000e+00 : tensor<2x1x3x3xf32>
    net.sgd_update @conv1.bias, %17 lr_mult 2.000000e+00 decay_mult 0.000000e+00 : tensor<2xf32>
    net.sgd_update @fc1.weight, %11 lr_mult 1.000000e+00 decay_mult 1.000000e+00 : tensor<2x8xf32>
    net.sgd_update @fc1.bias, %12 lr_mult 2.000000e+00 decay_mult 0.000000e+00 : tensor<2xf32>
    return %8, %7 : tensor<f32>, tensor<?x2xf32>
  }
  func.func @eval(%arg0: tensor<?x1x4x4xf32>, %arg1: tensor<?xi32>) -> (tensor<f32>, tensor<?x2xf32>) attributes {net.arena_bytes = 12544 : i64, net.arg_offsets = array<i64: 8192, 12288>, net.batch = 64 : i64, net.classes = 2 : i64, net.eval, net.topology = "none"} {
    %0 = net.param_get @conv1.weight : tensor<2x1x3x3xf32>
    %1 = net.param_get @conv1.bias : tensor<2xf32>
    %2 = net.conv2d %arg0, %0, %1 stride [1, 1] pad [1, 1] groups 1 {net.offsets = array<i64: 0>} : (tensor<?x1x4x4xf32>, tensor<2x1x3x3xf32>, tensor<2xf32>) -> tensor<?x2x4x4xf32>
    %3 = net.relu %2 {net.offsets = array<i64: 0>} : tensor<?x2x4x4xf32> -> tensor<?x2x4x4xf32>
    %output, %switches = net.max_pool %3 kernel [2, 2] stride [2, 2] pad [0, 0] {net.offsets = array<i64: 8192, 10240>} : tensor<?x2x4x4xf32> -> tensor<?x2x2x2xf32>, !net.switches<?x2x2x2>
    %4 = net.flatten %output {net.offsets = array<i64: 8192>} : tensor<?x2x2x2xf32> -> tensor<?x8xf32>
    %5 = net.param_get @fc1.weight : tensor<2x8xf32>
    %6 = net.param_get @fc1.bias : tensor<2xf32>
    %7 = net.fc %4, %5, %6 {net.offsets = array<i64: 0>} : (tensor<?x8xf32>, tensor<2x8xf32>, tensor<2xf32>) -> tensor<?x2xf32>
    %8 = net.softmax_cross_entropy %7, %arg1 {net.offsets = array<i64: 512>} : tensor<?x2xf32>, tensor<?xi32> -> tensor<f32>
    return %8, %7 : tensor<f32>, tensor<?x2xf32>
  }
}
