// RUN: netc-opt %s --net-plan-memory -split-input-file -verify-diagnostics
// RUN: echo "module {}" | not netc-opt --net-precision=precision=fp16 2>&1 | FileCheck %s --check-prefix=OPTION
// What net-precision records is checked by the dialect: an element type per
// value that its type allows, a layout for maps only, the module's
// precision. A view whose operand and result are stored differently cannot
// be planned.

// RUN: echo "module {}" | not netc-opt --net-precision=layout=nhcw 2>&1 | FileCheck %s --check-prefix=LAYOUT
// RUN: echo "module {}" | not netc-opt "--net-precision=precision=bf16 layout=nchw" 2>&1 | FileCheck %s --check-prefix=BF16NCHW
// OPTION: error: unknown precision 'fp16'; expected fp32, tf32 or bf16
// LAYOUT: error: unknown layout 'nhcw'; expected nchw or nhwc
// BF16NCHW: error: bf16 plans keep their maps NHWC; layout 'nchw' is for fp32 and tf32

func.func @f(%x: tensor<?x8xf32>) {
  // expected-error@+1 {{attribute 'net.dtypes' cannot store result 0 of type 'tensor<?x8xf32>' as 'i32' (real values: f32 or bf16; labels: i32; switches: ui8)}}
  %0 = net.relu %x {net.dtypes = [i32]} : tensor<?x8xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @f(%x: tensor<?x8xf32>) {
  // expected-error@+1 {{attribute 'net.dtypes' must be an array of 1 element types, one per result, got [bf16, bf16]}}
  %0 = net.relu %x {net.dtypes = [bf16, bf16]} : tensor<?x8xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @f(%x: tensor<?x8xf32>) {
  // expected-error@+1 {{attribute 'net.layouts' result 0 of type 'tensor<?x8xf32>' has no layout (""), got "nhwc"}}
  %0 = net.relu %x {net.layouts = ["nhwc"]} : tensor<?x8xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @f(%x: tensor<?x8x2x2xf32>) {
  // expected-error@+1 {{attribute 'net.layouts' result 0 of type 'tensor<?x8x2x2xf32>' needs "nchw" or "nhwc", got "chwn"}}
  %0 = net.relu %x {net.layouts = ["chwn"]} : tensor<?x8x2x2xf32> -> tensor<?x8x2x2xf32>
  return
}

// -----

// expected-error@+1 {{attribute 'net.arg_dtypes' cannot store argument 1 of type 'tensor<?xi32>' as 'bf16'}}
func.func @f(%x: tensor<?x8xf32>, %l: tensor<?xi32>) attributes {net.arg_dtypes = [bf16, bf16]} {
  return
}

// -----

// expected-error@+1 {{attribute 'net.precision' belongs on a builtin.module}}
func.func @f() attributes {net.precision = "bf16"} {
  return
}

// -----

// expected-error@+1 {{attribute 'net.precision' must be "fp32", "tf32" or "bf16", got "fp16"}}
module attributes {net.precision = "fp16"} {
}

// -----

net.phase @p {batch = 4 : i64, decay = 0.0 : f64, decoder = "none", epochs = 1 : i64, freeze = [], lr = 0.1 : f64, lr_policy = "fixed", momentum = 0.9 : f64}
func.func @step.p(%x: tensor<?x8x2x2xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x32xf32>) attributes {net.phase = @p} {
  %r = net.relu %x {net.dtypes = [bf16], net.layouts = ["nhwc"]} : tensor<?x8x2x2xf32> -> tensor<?x8x2x2xf32>
  // expected-error@+1 {{'net.flatten' op is a view, but its operand is stored as 'bf16' nhwc and its result as 'bf16'; a view needs one dtype and no nhwc map}}
  %f = net.flatten %r {net.dtypes = [bf16]} : tensor<?x8x2x2xf32> -> tensor<?x32xf32>
  %c = net.softmax_cross_entropy %f, %l : tensor<?x32xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x32xf32>
}

// -----

// expected-error@+1 {{attribute 'net.layout' must be "nchw" or "nhwc", got "chw"}}
module attributes {net.layout = "chw"} {
}

// -----

// expected-error@+1 {{attribute 'net.layout' belongs on a builtin.module}}
func.func @f() attributes {net.layout = "nhwc"} {
  return
}
