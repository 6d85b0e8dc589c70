// RUN: netc-opt %s -split-input-file -verify-diagnostics
// Shape functions compute with checked arithmetic: attributes and types
// written by hand that would overflow int64_t are errors at the op, never
// wrapped-around shapes.

func.func @conv_pad(%x: tensor<?x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) {
  // expected-error@+1 {{'net.conv2d' op kernel 3x3 with padding 4611686018427387904x0 overflows on the 8x8 input}}
  %0 = net.conv2d %x, %w stride [1, 1] pad [4611686018427387904, 0] groups 1
      : (tensor<?x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @pool_input(%x: tensor<?x3x9223372036854775807x8xf32>) {
  // expected-error@+1 {{'net.max_pool' op pool window 2x2 overflows on the 9223372036854775807x8 input}}
  %0, %s = net.max_pool %x kernel [2, 2] stride [2, 2] pad [1, 1]
      : tensor<?x3x9223372036854775807x8xf32> -> tensor<*xf32>, !net.switches<*>
  return
}

// -----

func.func @deconv_stride(%x: tensor<?x3x8x8xf32>, %w: tensor<3x4x3x3xf32>) {
  // expected-error@+1 {{'net.deconv2d' op output size overflows}}
  %0 = net.deconv2d %x, %w stride [2305843009213693952, 1] pad [0, 0] output_padding [0, 0] groups 1
      : (tensor<?x3x8x8xf32>, tensor<3x4x3x3xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @deconv_groups(%x: tensor<?x4611686018427387904x8x8xf32>, %w: tensor<4611686018427387904x4x3x3xf32>) {
  // expected-error@+1 {{'net.deconv2d' op output channels overflow}}
  %0 = net.deconv2d %x, %w stride [1, 1] pad [0, 0] output_padding [0, 0] groups 4611686018427387904
      : (tensor<?x4611686018427387904x8x8xf32>, tensor<4611686018427387904x4x3x3xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @unpool_size(%x: tensor<?x3x4x4xf32>) {
  // expected-error@+1 {{'net.unpool' op size 9223372036854775807x8 with pad 1x0 overflows}}
  %0 = net.unpool %x kernel [2, 2] stride [2, 2] pad [1, 0] size [9223372036854775807, 8] position [0, 0]
      : (tensor<?x3x4x4xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @conv_grad_groups(%dy: tensor<?x4x8x8xf32>, %w: tensor<4x4611686018427387904x3x3xf32>) {
  // expected-error@+1 {{'net.conv2d_grad_input' op input channels overflow}}
  %0 = net.conv2d_grad_input %dy, %w stride [1, 1] pad [1, 1] groups 4
      : (tensor<?x4x8x8xf32>, tensor<4x4611686018427387904x3x3xf32>) -> tensor<?x4x8x8xf32>
  return
}
