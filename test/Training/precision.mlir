// RUN: netc-opt %s --net-precision=precision=bf16 --net-plan-memory | FileCheck %s
// RUN: netc-opt %s --net-precision --net-plan-memory | FileCheck %s --check-prefix=FP32
// RUN: netc-opt %s --net-precision=precision=tf32 --net-plan-memory | FileCheck %s --check-prefix=TF32
// RUN: netc-opt %s "--net-precision=precision=fp32 layout=nhwc" --net-plan-memory | FileCheck %s --check-prefix=NHWC
// RUN: netc-opt %s "--net-precision=precision=tf32 layout=nchw" --net-plan-memory | FileCheck %s --check-prefix=NCHW
// net-precision under bf16 records each value's storage; net-plan-memory
// sizes it in real bytes. The conv map is bf16 NHWC and its ReLU runs in
// place; the pooled map that the flatten views stays NCHW (with its
// switches); the weight gradient and the loss are f32. At batch 4 the image
// and the conv map take 1024 bytes each (2048 in fp32), the pooled map 256
// (512); the switches (512) and the weight gradient (2304) do not shrink:
// the arena is 4672 bytes, 6976 in fp32. Under tf32 the values are f32 as
// in fp32 (the same arena) and laid out as under bf16; the layout option
// lays fp32 out so too, and tf32 out as fp32.

module {
  net.phase @p {batch = 4 : i64, decay = 0.0 : f64, decoder = "none", epochs = 1 : i64, freeze = [], lr = 0.1 : f64, lr_policy = "fixed", momentum = 0.9 : f64}
  net.param @w : tensor<8x8x3x3xf32> init #net.constant<value = 0.0> {decay_mult = 1.0 : f64, group = "encoder", lr_mult = 1.0 : f64}
  // CHECK: module attributes {net.precision = "bf16"}
  // CHECK-LABEL: func.func @step.p
  // CHECK-SAME: net.arena_bytes = 4672 : i64, net.arg_dtypes = [bf16, i32], net.arg_layouts = ["nhwc", ""]
  // FP32: module {
  // FP32-LABEL: func.func @step.p
  // FP32-SAME: net.arena_bytes = 6976 : i64, net.arg_offsets
  // FP32-NOT: net.dtypes
  // FP32-NOT: net.layouts
  // NHWC: module attributes {net.layout = "nhwc", net.precision = "fp32"}
  // NHWC-LABEL: func.func @step.p
  // NHWC-SAME: net.arena_bytes = 6976 : i64, net.arg_dtypes = [f32, i32], net.arg_layouts = ["nhwc", ""]
  // NCHW: module attributes {net.layout = "nchw", net.precision = "tf32"}
  // NCHW-LABEL: func.func @step.p
  // NCHW-SAME: net.arena_bytes = 6976 : i64, net.arg_offsets
  // NCHW-NOT: net.layouts
  // TF32: module attributes {net.precision = "tf32"}
  // TF32-LABEL: func.func @step.p
  // TF32-SAME: net.arena_bytes = 6976 : i64, net.arg_dtypes = [f32, i32], net.arg_layouts = ["nhwc", ""]
  func.func @step.p(%x: tensor<?x8x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x32xf32>) attributes {net.phase = @p} {
    // CHECK: net.param_get @w
    // CHECK-NOT: net.dtypes
    // CHECK-SAME: tensor<8x8x3x3xf32>
    %w = net.param_get @w : tensor<8x8x3x3xf32>
    // CHECK: net.conv2d {{.*}} {net.dtypes = [bf16], net.layouts = ["nhwc"], net.offsets = array<i64: [[C:[0-9]+]]>}
    // TF32: net.conv2d {{.*}} {net.dtypes = [f32], net.layouts = ["nhwc"]
    // NHWC: net.conv2d {{.*}} {net.dtypes = [f32], net.layouts = ["nhwc"]
    %c = net.conv2d %x, %w stride [1, 1] pad [1, 1] groups 1 : (tensor<?x8x4x4xf32>, tensor<8x8x3x3xf32>) -> tensor<?x8x4x4xf32>
    // CHECK: net.relu {{.*}} {net.dtypes = [bf16], net.layouts = ["nhwc"], net.offsets = array<i64: [[C]]>}
    %r = net.relu %c : tensor<?x8x4x4xf32> -> tensor<?x8x4x4xf32>
    // CHECK: net.max_pool {{.*}} {net.dtypes = [bf16, ui8], net.layouts = ["nchw", "nchw"], net.offsets = array<i64: [[P:[0-9]+]], {{[0-9]+}}>}
    // TF32: net.max_pool {{.*}} {net.dtypes = [f32, ui8], net.layouts = ["nchw", "nchw"]
    // TF32: net.conv2d_grad_weight {{.*}} {net.dtypes = [f32], net.layouts = ["nchw"]
    %o, %s = net.max_pool %r kernel [2, 2] stride [2, 2] pad [0, 0] : tensor<?x8x4x4xf32> -> tensor<?x8x2x2xf32>, !net.switches<?x8x2x2>
    // CHECK: net.flatten {{.*}} {net.dtypes = [bf16], net.offsets = array<i64: [[P]]>}
    %f = net.flatten %o : tensor<?x8x2x2xf32> -> tensor<?x32xf32>
    // CHECK: net.softmax_cross_entropy {{.*}} {net.dtypes = [f32], net.offsets
    %loss = net.softmax_cross_entropy %f, %l : tensor<?x32xf32>, tensor<?xi32> -> tensor<f32>
    // CHECK: net.conv2d_grad_weight {{.*}} {net.dtypes = [f32], net.layouts = ["nchw"], net.offsets
    %gw = net.conv2d_grad_weight %x, %r stride [1, 1] pad [1, 1] groups 1 : (tensor<?x8x4x4xf32>, tensor<?x8x4x4xf32>) -> tensor<8x8x3x3xf32>
    net.sgd_update @w, %gw lr_mult 1.0 decay_mult 1.0 : tensor<8x8x3x3xf32>
    return %loss, %f : tensor<f32>, tensor<?x32xf32>
  }
}
