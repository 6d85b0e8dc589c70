// RUN: netc-opt %s -split-input-file -verify-diagnostics

// Every verifier and shape-function error of the net dialect. Without a
// layer name (a NameLoc) a layer error is prefixed with the op's name.

//===----------------------------------------------------------------------===//
// net.conv2d
//===----------------------------------------------------------------------===//

func.func @conv_stride_arity(%x: tensor<?x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) {
  // expected-error@+1 {{'net.conv2d' op stride needs 2 values (height, width), got 1}}
  %0 = net.conv2d %x, %w stride [1] pad [0, 0] groups 1
      : (tensor<?x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @conv_pad_arity(%x: tensor<?x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) {
  // expected-error@+1 {{'net.conv2d' op pad needs 2 values (height, width), got 3}}
  %0 = net.conv2d %x, %w stride [1, 1] pad [0, 0, 0] groups 1
      : (tensor<?x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @conv_stride_zero(%x: tensor<?x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) {
  // expected-error@+1 {{'net.conv2d' op stride must be at least 1, got 1x0}}
  %0 = net.conv2d %x, %w stride [1, 0] pad [0, 0] groups 1
      : (tensor<?x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @conv_pad_negative(%x: tensor<?x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) {
  // expected-error@+1 {{'net.conv2d' op pad must be at least 0, got -1x0}}
  %0 = net.conv2d %x, %w stride [1, 1] pad [-1, 0] groups 1
      : (tensor<?x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @conv_groups_zero(%x: tensor<?x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) {
  // expected-error@+1 {{'net.conv2d' op groups must be positive, got 0}}
  %0 = net.conv2d %x, %w stride [1, 1] pad [0, 0] groups 0
      : (tensor<?x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @conv_weight_rank(%x: tensor<?x3x8x8xf32>, %w: tensor<4x27xf32>) {
  // expected-error@+1 {{'net.conv2d' op weight must be [out, in/groups, kh, kw], got 4x27}}
  %0 = net.conv2d %x, %w stride [1, 1] pad [0, 0] groups 1
      : (tensor<?x3x8x8xf32>, tensor<4x27xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @conv_groups_out(%x: tensor<?x4x8x8xf32>, %w: tensor<6x1x3x3xf32>) {
  // expected-error@+1 {{'net.conv2d' op 6 output channels are not divisible by 4 groups}}
  %0 = net.conv2d %x, %w stride [1, 1] pad [0, 0] groups 4
      : (tensor<?x4x8x8xf32>, tensor<6x1x3x3xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @conv_groups_in(%x: tensor<?x3x8x8xf32>, %w: tensor<4x1x3x3xf32>) {
  // expected-error@+1 {{'net.conv2d' op input has 3 channels, not divisible by 2 groups}}
  %0 = net.conv2d %x, %w stride [1, 1] pad [0, 0] groups 2
      : (tensor<?x3x8x8xf32>, tensor<4x1x3x3xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @conv_weight_in_channels(%x: tensor<?x3x8x8xf32>, %w: tensor<4x4x3x3xf32>) {
  // expected-error@+1 {{'net.conv2d' op weight must have shape 4x3x3x3, got 4x4x3x3}}
  %0 = net.conv2d %x, %w stride [1, 1] pad [0, 0] groups 1
      : (tensor<?x3x8x8xf32>, tensor<4x4x3x3xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @conv_grouped_weight(%x: tensor<?x96x27x27xf32>, %w: tensor<256x96x5x5xf32>) {
  // expected-error@+1 {{'net.conv2d' op weight must have shape 256x48x5x5, got 256x96x5x5}}
  %0 = net.conv2d %x, %w stride [1, 1] pad [2, 2] groups 2
      : (tensor<?x96x27x27xf32>, tensor<256x96x5x5xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @conv_bias(%x: tensor<?x3x8x8xf32>, %w: tensor<4x3x3x3xf32>, %b: tensor<3xf32>) {
  // expected-error@+1 {{'net.conv2d' op bias must have shape 4, got 3}}
  %0 = net.conv2d %x, %w, %b stride [1, 1] pad [0, 0] groups 1
      : (tensor<?x3x8x8xf32>, tensor<4x3x3x3xf32>, tensor<3xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @conv_input_rank(%x: tensor<?x3x8xf32>, %w: tensor<4x3x3x3xf32>) {
  // expected-error@+1 {{'net.conv2d' op expects a [batch, channels, height, width] input, got rank 3 (?x3x8)}}
  %0 = net.conv2d %x, %w stride [1, 1] pad [0, 0] groups 1
      : (tensor<?x3x8xf32>, tensor<4x3x3x3xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @conv_kernel_too_large(%x: tensor<?x3x4x4xf32>, %w: tensor<4x3x5x5xf32>) {
  // expected-error@+1 {{'net.conv2d' op kernel 5x5 with padding 0 does not fit the 4x4 input}}
  %0 = net.conv2d %x, %w stride [1, 1] pad [0, 0] groups 1
      : (tensor<?x3x4x4xf32>, tensor<4x3x5x5xf32>) -> tensor<*xf32>
  return
}

// -----

// Different paddings per axis are both named.
func.func @conv_kernel_too_wide(%x: tensor<?x3x8x1xf32>, %w: tensor<4x3x3x3xf32>) {
  // expected-error@+1 {{'net.conv2d' op kernel 3x3 with padding 1x0 does not fit the 8x1 input}}
  %0 = net.conv2d %x, %w stride [1, 1] pad [1, 0] groups 1
      : (tensor<?x3x8x1xf32>, tensor<4x3x3x3xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @conv_result(%x: tensor<?x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) {
  // expected-error@+1 {{'net.conv2d' op result type 'tensor<?x4x8x8xf32>' does not match the inferred 'tensor<?x4x6x6xf32>'}}
  %0 = net.conv2d %x, %w stride [1, 1] pad [0, 0] groups 1
      : (tensor<?x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<?x4x8x8xf32>
  return
}

//===----------------------------------------------------------------------===//
// net.deconv2d
//===----------------------------------------------------------------------===//

// -----

func.func @deconv_output_padding(%x: tensor<?x4x8x8xf32>, %w: tensor<4x3x3x3xf32>) {
  // expected-error@+1 {{'net.deconv2d' op output_padding must be smaller than the stride}}
  %0 = net.deconv2d %x, %w stride [2, 2] pad [0, 0] output_padding [0, 2]
      groups 1 : (tensor<?x4x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @deconv_output_padding_arity(%x: tensor<?x4x8x8xf32>, %w: tensor<4x3x3x3xf32>) {
  // expected-error@+1 {{'net.deconv2d' op output_padding needs 2 values (height, width), got 1}}
  %0 = net.deconv2d %x, %w stride [2, 2] pad [0, 0] output_padding [0]
      groups 1 : (tensor<?x4x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @deconv_weight_rank(%x: tensor<?x4x8x8xf32>, %w: tensor<4x3x3xf32>) {
  // expected-error@+1 {{'net.deconv2d' op weight must be [in, out/groups, kh, kw], got 4x3x3}}
  %0 = net.deconv2d %x, %w stride [1, 1] pad [0, 0] output_padding [0, 0]
      groups 1 : (tensor<?x4x8x8xf32>, tensor<4x3x3xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @deconv_weight_in_channels(%x: tensor<?x4x8x8xf32>, %w: tensor<8x3x3x3xf32>) {
  // expected-error@+1 {{'net.deconv2d' op weight must have shape 4x3x3x3, got 8x3x3x3}}
  %0 = net.deconv2d %x, %w stride [1, 1] pad [0, 0] output_padding [0, 0]
      groups 1 : (tensor<?x4x8x8xf32>, tensor<8x3x3x3xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @deconv_bias(%x: tensor<?x4x8x8xf32>, %w: tensor<4x3x3x3xf32>, %b: tensor<6xf32>) {
  // expected-error@+1 {{'net.deconv2d' op bias must have shape 3, got 6}}
  %0 = net.deconv2d %x, %w, %b stride [1, 1] pad [0, 0] output_padding [0, 0]
      groups 1 : (tensor<?x4x8x8xf32>, tensor<4x3x3x3xf32>, tensor<6xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @deconv_no_output(%x: tensor<?x4x1x1xf32>, %w: tensor<4x3x1x1xf32>) {
  // expected-error@+1 {{'net.deconv2d' op padding 1 leaves no output from a 1-wide input}}
  %0 = net.deconv2d %x, %w stride [1, 1] pad [1, 1] output_padding [0, 0]
      groups 1 : (tensor<?x4x1x1xf32>, tensor<4x3x1x1xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @deconv_result(%x: tensor<?x4x8x8xf32>, %w: tensor<4x3x2x2xf32>) {
  // expected-error@+1 {{'net.deconv2d' op result type 'tensor<?x3x17x17xf32>' does not match the inferred 'tensor<?x3x16x16xf32>'}}
  %0 = net.deconv2d %x, %w stride [2, 2] pad [0, 0] output_padding [0, 0]
      groups 1 : (tensor<?x4x8x8xf32>, tensor<4x3x2x2xf32>) -> tensor<?x3x17x17xf32>
  return
}

//===----------------------------------------------------------------------===//
// Pooling
//===----------------------------------------------------------------------===//

// -----

func.func @pool_kernel_arity(%x: tensor<?x4x8x8xf32>) {
  // expected-error@+1 {{'net.max_pool' op kernel needs 2 values (height, width), got 1}}
  %0, %1 = net.max_pool %x kernel [2] stride [2, 2] pad [0, 0]
      : tensor<?x4x8x8xf32> -> tensor<*xf32>, !net.switches<*>
  return
}

// -----

func.func @pool_kernel_zero(%x: tensor<?x4x8x8xf32>) {
  // expected-error@+1 {{'net.avg_pool' op kernel must be at least 1, got 0x2}}
  %0 = net.avg_pool %x kernel [0, 2] stride [2, 2] pad [0, 0]
      : tensor<?x4x8x8xf32> -> tensor<*xf32>
  return
}

// -----

func.func @pool_pad_kernel(%x: tensor<?x4x8x8xf32>) {
  // expected-error@+1 {{'net.max_pool' op pad 2 must be smaller than the kernel 2}}
  %0, %1 = net.max_pool %x kernel [2, 2] stride [2, 2] pad [2, 2]
      : tensor<?x4x8x8xf32> -> tensor<*xf32>, !net.switches<*>
  return
}

// -----

func.func @pool_window_fit(%x: tensor<?x4x2x2xf32>) {
  // expected-error@+1 {{'net.max_pool' op pool window 3x3 does not fit the 2x2 input}}
  %0, %1 = net.max_pool %x kernel [3, 3] stride [1, 1] pad [0, 0]
      : tensor<?x4x2x2xf32> -> tensor<*xf32>, !net.switches<*>
  return
}

// -----

func.func @pool_input_rank(%x: tensor<?x16xf32>) {
  // expected-error@+1 {{'net.avg_pool' op expects a [batch, channels, height, width] input, got rank 2 (?x16)}}
  %0 = net.avg_pool %x kernel [2, 2] stride [2, 2] pad [0, 0]
      : tensor<?x16xf32> -> tensor<*xf32>
  return
}

// -----

// Floor rounding gives 6x6; only `ceil` gives 7x7.
func.func @pool_result(%x: tensor<?x4x14x14xf32>) {
  // expected-error@+1 {{'net.max_pool' op result type 'tensor<?x4x7x7xf32>' does not match the inferred 'tensor<?x4x6x6xf32>'}}
  %0, %1 = net.max_pool %x kernel [3, 3] stride [2, 2] pad [0, 0]
      : tensor<?x4x14x14xf32> -> tensor<?x4x7x7xf32>, !net.switches<*>
  return
}

// -----

func.func @pool_switches_result(%x: tensor<?x4x8x8xf32>) {
  // expected-error@+1 {{'net.max_pool' op result type '!net.switches<?x4x8x8>' does not match the inferred '!net.switches<?x4x4x4>'}}
  %0, %1 = net.max_pool %x kernel [2, 2] stride [2, 2] pad [0, 0]
      : tensor<?x4x8x8xf32> -> tensor<?x4x4x4xf32>, !net.switches<?x4x8x8>
  return
}

//===----------------------------------------------------------------------===//
// net.unpool
//===----------------------------------------------------------------------===//

// -----

func.func @unpool_both(%y: tensor<?x4x4x4xf32>, %s: !net.switches<?x4x4x4>) {
  // expected-error@+1 {{'net.unpool' op needs either switches or a fixed position, not both or neither}}
  %0 = net.unpool %y, %s kernel [2, 2] stride [2, 2] pad [0, 0] size [8, 8]
      position [0, 0] : (tensor<?x4x4x4xf32>, !net.switches<?x4x4x4>) -> tensor<*xf32>
  return
}

// -----

func.func @unpool_neither(%y: tensor<?x4x4x4xf32>) {
  // expected-error@+1 {{'net.unpool' op needs either switches or a fixed position, not both or neither}}
  %0 = net.unpool %y kernel [2, 2] stride [2, 2] pad [0, 0] size [8, 8]
      : (tensor<?x4x4x4xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @unpool_position_outside(%y: tensor<?x4x4x4xf32>) {
  // expected-error@+1 {{'net.unpool' op position 0x2 lies outside the 2x2 window}}
  %0 = net.unpool %y kernel [2, 2] stride [2, 2] pad [0, 0] size [8, 8]
      position [0, 2] : (tensor<?x4x4x4xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @unpool_position_negative(%y: tensor<?x4x4x4xf32>) {
  // expected-error@+1 {{'net.unpool' op position must be at least 0, got -1x0}}
  %0 = net.unpool %y kernel [2, 2] stride [2, 2] pad [0, 0] size [8, 8]
      position [-1, 0] : (tensor<?x4x4x4xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @unpool_size_arity(%y: tensor<?x4x4x4xf32>) {
  // expected-error@+1 {{'net.unpool' op size needs 2 values (height, width), got 1}}
  %0 = net.unpool %y kernel [2, 2] stride [2, 2] pad [0, 0] size [8]
      position [0, 0] : (tensor<?x4x4x4xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @unpool_size(%y: tensor<?x4x4x4xf32>) {
  // expected-error@+1 {{'net.unpool' op a 10x10 map pooled by 2x2/2 is not 4x4}}
  %0 = net.unpool %y kernel [2, 2] stride [2, 2] pad [0, 0] size [10, 10]
      position [0, 0] : (tensor<?x4x4x4xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @unpool_switches(%y: tensor<?x4x4x4xf32>, %s: !net.switches<?x4x5x5>) {
  // expected-error@+1 {{'net.unpool' op switches ?x4x5x5 do not match the unpooled input ?x4x4x4}}
  %0 = net.unpool %y, %s kernel [2, 2] stride [2, 2] pad [0, 0] size [8, 8]
      : (tensor<?x4x4x4xf32>, !net.switches<?x4x5x5>) -> tensor<*xf32>
  return
}

// -----

// A switch is a position within its max-pool's window: an unpool reads it
// with that window.
func.func @unpool_other_window(%x: tensor<?x4x8x8xf32>) {
  %p, %s = net.max_pool %x kernel [2, 2] stride [2, 2] pad [0, 0]
      : tensor<?x4x8x8xf32> -> tensor<?x4x4x4xf32>, !net.switches<?x4x4x4>
  // expected-error@+1 {{'net.unpool' op reads the switches of a max-pool with kernel 2x2 stride 2x2 pad 0x0 through kernel 3x3 stride 2x2 pad 1x1}}
  %0 = net.unpool %p, %s kernel [3, 3] stride [2, 2] pad [1, 1] size [8, 8]
      : (tensor<?x4x4x4xf32>, !net.switches<?x4x4x4>) -> tensor<*xf32>
  return
}

// -----

func.func @unpool_grad_other_window(%x: tensor<?x4x8x8xf32>, %dy: tensor<?x4x8x8xf32>) {
  %p, %s = net.max_pool %x kernel [2, 2] stride [2, 2] pad [0, 0]
      : tensor<?x4x8x8xf32> -> tensor<?x4x4x4xf32>, !net.switches<?x4x4x4>
  // expected-error@+1 {{'net.unpool_grad' op reads the switches of a max-pool with kernel 2x2 stride 2x2 pad 0x0 through kernel 2x2 stride 1x1 pad 0x0}}
  %0 = net.unpool_grad %dy, %s kernel [2, 2] stride [1, 1] pad [0, 0]
      : (tensor<?x4x8x8xf32>, !net.switches<?x4x4x4>) -> tensor<?x4x4x4xf32>
  return
}

// -----

func.func @unpool_switches_rank(%y: tensor<?x4x4x4xf32>, %s: !net.switches<?x4x4>) {
  // expected-error@+1 {{'net.unpool' op switches ?x4x4 do not match the unpooled input ?x4x4x4}}
  %0 = net.unpool %y, %s kernel [2, 2] stride [2, 2] pad [0, 0] size [8, 8]
      : (tensor<?x4x4x4xf32>, !net.switches<?x4x4>) -> tensor<*xf32>
  return
}

// -----

func.func @unpool_result(%y: tensor<?x4x4x4xf32>) {
  // expected-error@+1 {{'net.unpool' op result type 'tensor<?x4x9x9xf32>' does not match the inferred 'tensor<?x4x8x8xf32>'}}
  %0 = net.unpool %y kernel [2, 2] stride [2, 2] pad [0, 0] size [8, 8]
      position [1, 1] : (tensor<?x4x4x4xf32>) -> tensor<?x4x9x9xf32>
  return
}

//===----------------------------------------------------------------------===//
// net.fc, net.flatten, net.reshape
//===----------------------------------------------------------------------===//

// -----

func.func @fc_rank4(%x: tensor<?x4x2x2xf32>, %w: tensor<10x16xf32>) {
  // expected-error@+1 {{'net.fc' op expects a [batch, features] input, got ?x4x2x2 (flatten it first)}}
  %0 = net.fc %x, %w : (tensor<?x4x2x2xf32>, tensor<10x16xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @fc_weight(%x: tensor<?x16xf32>, %w: tensor<10x15xf32>) {
  // expected-error@+1 {{'net.fc' op weight must have shape 10x16, got 10x15}}
  %0 = net.fc %x, %w : (tensor<?x16xf32>, tensor<10x15xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @fc_weight_rank(%x: tensor<?x16xf32>, %w: tensor<10x4x4xf32>) {
  // expected-error@+1 {{'net.fc' op weight must be [out, in], got 10x4x4}}
  %0 = net.fc %x, %w : (tensor<?x16xf32>, tensor<10x4x4xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @fc_bias(%x: tensor<?x16xf32>, %w: tensor<10x16xf32>, %b: tensor<16xf32>) {
  // expected-error@+1 {{'net.fc' op bias must have shape 10, got 16}}
  %0 = net.fc %x, %w, %b : (tensor<?x16xf32>, tensor<10x16xf32>, tensor<16xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @fc_result(%x: tensor<?x16xf32>, %w: tensor<10x16xf32>) {
  // expected-error@+1 {{'net.fc' op result type 'tensor<?x16xf32>' does not match the inferred 'tensor<?x10xf32>'}}
  %0 = net.fc %x, %w : (tensor<?x16xf32>, tensor<10x16xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @flatten_rank(%x: tensor<16xf32>) {
  // expected-error@+1 {{'net.flatten' op expects a batched input, got rank 1}}
  %0 = net.flatten %x : tensor<16xf32> -> tensor<*xf32>
  return
}

// -----

func.func @flatten_result(%x: tensor<?x4x2x2xf32>) {
  // expected-error@+1 {{'net.flatten' op result type 'tensor<?x8xf32>' does not match the inferred 'tensor<?x16xf32>'}}
  %0 = net.flatten %x : tensor<?x4x2x2xf32> -> tensor<?x8xf32>
  return
}

// -----

func.func @reshape_count(%x: tensor<?x100xf32>) {
  // expected-error@+1 {{'net.reshape' op cannot reshape 100 features to 4x5x4}}
  %0 = net.reshape %x to [4, 5, 4] : tensor<?x100xf32> -> tensor<*xf32>
  return
}

// -----

func.func @reshape_non_positive(%x: tensor<?x100xf32>) {
  // expected-error@+1 {{'net.reshape' op shape 100x0 must be positive}}
  %0 = net.reshape %x to [100, 0] : tensor<?x100xf32> -> tensor<*xf32>
  return
}

//===----------------------------------------------------------------------===//
// Element-wise and normalisation layers
//===----------------------------------------------------------------------===//

// -----

func.func @relu_result(%x: tensor<?x4xf32>) {
  // expected-error@+1 {{'net.relu' op result type 'tensor<?x5xf32>' does not match the inferred 'tensor<?x4xf32>'}}
  %0 = net.relu %x : tensor<?x4xf32> -> tensor<?x5xf32>
  return
}

// -----

func.func @dropout_ratio_one(%x: tensor<?x4xf32>) {
  // expected-error@+1 {{'net.dropout' op dropout ratio must be in [0, 1), got 1.000000e+00}}
  %0 = net.dropout %x ratio 1.0 seed 0 : tensor<?x4xf32> -> tensor<?x4xf32>
  return
}

// -----

func.func @dropout_ratio_negative(%x: tensor<?x4xf32>) {
  // expected-error@+1 {{'net.dropout' op dropout ratio must be in [0, 1), got -5.000000e-01}}
  %0 = net.dropout %x ratio -0.5 seed 0 : tensor<?x4xf32> -> tensor<?x4xf32>
  return
}

// -----

func.func @lrn_even(%x: tensor<?x4x8x8xf32>) {
  // expected-error@+1 {{'net.lrn' op lrn size must be a positive odd number, got 4}}
  %0 = net.lrn %x size 4 alpha 1.0e-04 beta 0.75 k 1.0
      : tensor<?x4x8x8xf32> -> tensor<?x4x8x8xf32>
  return
}

// -----

func.func @lrn_rank(%x: tensor<?x4xf32>) {
  // expected-error@+1 {{'net.lrn' op expects a [batch, channels, height, width] input, got rank 2 (?x4)}}
  %0 = net.lrn %x size 5 alpha 1.0e-04 beta 0.75 k 1.0
      : tensor<?x4xf32> -> tensor<?x4xf32>
  return
}

// -----

func.func @batch_norm_param(%x: tensor<?x4x8x8xf32>, %g: tensor<4xf32>, %v: tensor<8xf32>) {
  // expected-error@+1 {{'net.batch_norm' op variance must have shape 4, got 8}}
  %0 = net.batch_norm %x, %g, %g, %g, %v eps 1.0e-05 momentum 0.9
      : (tensor<?x4x8x8xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>,
         tensor<8xf32>) -> tensor<?x4x8x8xf32>
  return
}

// -----

func.func @batch_norm_rank(%x: tensor<?x4x8xf32>, %g: tensor<4xf32>) {
  // expected-error@+1 {{'net.batch_norm' op expects a [batch, C] or [batch, C, H, W] input, got ?x4x8}}
  %0 = net.batch_norm %x, %g, %g, %g, %g eps 1.0e-05 momentum 0.9
      : (tensor<?x4x8xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>,
         tensor<4xf32>) -> tensor<*xf32>
  return
}

// -----

func.func @batch_norm_eps(%x: tensor<?x4xf32>, %g: tensor<4xf32>) {
  // expected-error@+1 {{'net.batch_norm' op eps must be positive}}
  %0 = net.batch_norm %x, %g, %g, %g, %g eps 0.0 momentum 0.9
      : (tensor<?x4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>,
         tensor<4xf32>) -> tensor<?x4xf32>
  return
}

// -----

func.func @batch_norm_momentum(%x: tensor<?x4xf32>, %g: tensor<4xf32>) {
  // expected-error@+1 {{'net.batch_norm' op momentum must be in [0, 1]}}
  %0 = net.batch_norm %x, %g, %g, %g, %g eps 1.0e-05 momentum 1.5
      : (tensor<?x4xf32>, tensor<4xf32>, tensor<4xf32>, tensor<4xf32>,
         tensor<4xf32>) -> tensor<?x4xf32>
  return
}

//===----------------------------------------------------------------------===//
// Losses
//===----------------------------------------------------------------------===//

// -----

func.func @softmax_cross_entropy_rank(%x: tensor<?x10x1x1xf32>, %l: tensor<?xi32>) {
  // expected-error@+1 {{'net.softmax_cross_entropy' op logits must be [batch, classes], got ?x10x1x1}}
  %0 = net.softmax_cross_entropy %x, %l : tensor<?x10x1x1xf32>, tensor<?xi32> -> tensor<f32>
  return
}

// -----

func.func @softmax_cross_entropy_labels(%x: tensor<?x10xf32>, %l: tensor<?x1xi32>) {
  // expected-error@+1 {{'net.softmax_cross_entropy' op labels must be [batch], got ?x1}}
  %0 = net.softmax_cross_entropy %x, %l : tensor<?x10xf32>, tensor<?x1xi32> -> tensor<f32>
  return
}

// -----

func.func @softmax_cross_entropy_batch(%x: tensor<8x10xf32>, %l: tensor<4xi32>) {
  // expected-error@+1 {{'net.softmax_cross_entropy' op batch of logits and labels differ}}
  %0 = net.softmax_cross_entropy %x, %l : tensor<8x10xf32>, tensor<4xi32> -> tensor<f32>
  return
}

// -----

func.func @softmax_cross_entropy_label_type(%x: tensor<?x10xf32>, %l: tensor<?xf32>) {
  // expected-error@+1 {{'net.softmax_cross_entropy' op operand #1 must be tensor of 32-bit signless integer values, but got 'tensor<?xf32>'}}
  %0 = net.softmax_cross_entropy %x, %l : tensor<?x10xf32>, tensor<?xf32> -> tensor<f32>
  return
}

// -----

func.func @euclidean_loss_shape(%a: tensor<?x3x8x8xf32>, %b: tensor<?x3x7x7xf32>) {
  // expected-error@+1 {{'net.euclidean_loss' op reconstruction ?x3x8x8 does not match its target ?x3x7x7}}
  %0 = net.euclidean_loss %a, %b : tensor<?x3x8x8xf32>, tensor<?x3x7x7xf32> -> tensor<f32>
  return
}

// -----

func.func @euclidean_loss_rank(%a: tensor<?x192xf32>, %b: tensor<?x3x8x8xf32>) {
  // expected-error@+1 {{'net.euclidean_loss' op reconstruction ?x192 does not match its target ?x3x8x8}}
  %0 = net.euclidean_loss %a, %b : tensor<?x192xf32>, tensor<?x3x8x8xf32> -> tensor<f32>
  return
}

// -----

func.func @objective_weights(%a: tensor<f32>, %b: tensor<f32>) {
  // expected-error@+1 {{'net.objective' op has 2 terms but 1 weights and 2 names}}
  %0 = net.objective %a, %b weights [1.0] names ["a", "b"]
      : tensor<f32>, tensor<f32> -> tensor<f32>
  return
}

// -----

func.func @objective_names(%a: tensor<f32>, %b: tensor<f32>) {
  // expected-error@+1 {{'net.objective' op has 2 terms but 2 weights and 3 names}}
  %0 = net.objective %a, %b weights [1.0, 1.0] names ["a", "b", "c"]
      : tensor<f32>, tensor<f32> -> tensor<f32>
  return
}

// -----

func.func @objective_duplicate(%a: tensor<f32>, %b: tensor<f32>) {
  // expected-error@+1 {{'net.objective' op names the term 'recon' twice}}
  %0 = net.objective %a, %b weights [1.0, 1.0] names ["recon", "recon"]
      : tensor<f32>, tensor<f32> -> tensor<f32>
  return
}

// -----

func.func @objective_empty() {
  // expected-error@+1 {{'net.objective' op needs at least one term}}
  %0 = "net.objective"() {weights = array<f64>, names = []} : () -> tensor<f32>
  return
}

// -----

func.func @objective_term_type(%a: tensor<1xf32>) {
  // expected-error@+1 {{'net.objective' op operand #0 must be variadic of 0D tensor of 32-bit float values, but got 'tensor<1xf32>'}}
  %0 = net.objective %a weights [1.0] names ["a"] : tensor<1xf32> -> tensor<f32>
  return
}

//===----------------------------------------------------------------------===//
// net.macro
//===----------------------------------------------------------------------===//

// -----

func.func @macro_yield_count(%x: tensor<?x4x8x8xf32>) {
  // expected-error@+1 {{'net.macro' op yields 1 values but has 2 results}}
  %0:2 = net.macro "conv1"(%x) : (tensor<?x4x8x8xf32>)
      -> (tensor<?x4x8x8xf32>, !net.switches<*>) {
  ^bb0(%in: tensor<?x4x8x8xf32>):
    net.yield %in : tensor<?x4x8x8xf32>
  }
  return
}

// -----

func.func @macro_yield_type(%x: tensor<?x4x8x8xf32>) {
  // expected-error@+1 {{'net.macro' op yields 'tensor<?x4x8x8xf32>' for a result of type 'tensor<?x4x4x4xf32>'}}
  %0 = net.macro "conv1"(%x) : (tensor<?x4x8x8xf32>) -> tensor<?x4x4x4xf32> {
  ^bb0(%in: tensor<?x4x8x8xf32>):
    net.yield %in : tensor<?x4x8x8xf32>
  }
  return
}

// -----

func.func @macro_yield_switches(%x: tensor<?x4x8x8xf32>, %s: !net.switches<?x4x4x4>) {
  // expected-error@+1 {{'net.macro' op yields 'tensor<?x4x8x8xf32>' for a result of type '!net.switches<*>'}}
  %0 = net.macro "conv1"(%x) : (tensor<?x4x8x8xf32>) -> !net.switches<*> {
  ^bb0(%in: tensor<?x4x8x8xf32>):
    net.yield %in : tensor<?x4x8x8xf32>
  }
  return
}

// -----

func.func @macro_arguments(%x: tensor<?x4x8x8xf32>) {
  // expected-error@+1 {{'net.macro' op body takes 2 arguments but the macro-layer has 1 inputs}}
  %0 = net.macro "conv1"(%x) : (tensor<?x4x8x8xf32>) -> tensor<?x4x8x8xf32> {
  ^bb0(%in: tensor<?x4x8x8xf32>, %extra: tensor<?x4x8x8xf32>):
    net.yield %in : tensor<?x4x8x8xf32>
  }
  return
}

// -----

func.func @macro_argument_type(%x: tensor<?x4x8x8xf32>) {
  // expected-error@+1 {{'net.macro' op body argument type 'tensor<?x3x8x8xf32>' does not match input 'tensor<?x4x8x8xf32>'}}
  %0 = net.macro "conv1"(%x) : (tensor<?x4x8x8xf32>) -> tensor<*xf32> {
  ^bb0(%in: tensor<?x3x8x8xf32>):
    net.yield %in : tensor<?x3x8x8xf32>
  }
  return
}

// -----

func.func @macro_name(%x: tensor<?x4x8x8xf32>) {
  // expected-error@+1 {{'net.macro' op needs a name}}
  %0 = net.macro ""(%x) : (tensor<?x4x8x8xf32>) -> tensor<?x4x8x8xf32> {
  ^bb0(%in: tensor<?x4x8x8xf32>):
    net.yield %in : tensor<?x4x8x8xf32>
  }
  return
}

// -----

func.func @macro_isolated(%x: tensor<?x4x8x8xf32>) {
  // expected-note@+1 {{required by region isolation constraints}}
  %0 = net.macro "conv1"() : () -> tensor<?x4x8x8xf32> {
    // expected-error@+1 {{using value defined outside the region}}
    %r = net.relu %x : tensor<?x4x8x8xf32> -> tensor<?x4x8x8xf32>
    net.yield %r : tensor<?x4x8x8xf32>
  }
  return
}

// -----

func.func @yield_outside(%x: tensor<?x4xf32>) {
  // expected-error@+1 {{'net.yield' op expects parent op 'net.macro'}}
  net.yield %x : tensor<?x4xf32>
}

//===----------------------------------------------------------------------===//
// net.param and net.param_get
//===----------------------------------------------------------------------===//

// -----

// expected-error@+1 {{'net.param' op init must be #net.gaussian, #net.constant or #net.file, got 1.000000e+00 : f64}}
net.param @w : tensor<4xf32> init 1.0 : f64
    {decay_mult = 1.0 : f64, group = "encoder", lr_mult = 1.0 : f64}

// -----

// expected-error@+1 {{'net.param' op gaussian std must not be negative}}
net.param @w : tensor<4xf32> init #net.gaussian<std = -1.0, mean = 0.0>
    {decay_mult = 1.0 : f64, group = "encoder", lr_mult = 1.0 : f64}

// -----

// expected-error@+1 {{'net.param' op group must be encoder, decoder or classifier, got 'head'}}
net.param @w : tensor<4xf32> init #net.constant<value = 0.0>
    {decay_mult = 1.0 : f64, group = "head", lr_mult = 1.0 : f64}

// -----

// expected-error@+1 {{'net.param' op lr_mult and decay_mult must not be negative}}
net.param @w : tensor<4xf32> init #net.constant<value = 0.0>
    {decay_mult = 1.0 : f64, group = "encoder", lr_mult = -1.0 : f64}

// -----

// expected-error@+1 {{'net.param' op lr_mult and decay_mult must not be negative}}
net.param @w : tensor<4xf32> init #net.constant<value = 0.0>
    {decay_mult = -0.5 : f64, group = "encoder", lr_mult = 1.0 : f64}

// -----

func.func @param_in_function() {
  // expected-error@+1 {{'net.param' op expects parent op 'builtin.module'}}
  net.param @w : tensor<4xf32> init #net.constant<value = 0.0>
      {decay_mult = 1.0 : f64, group = "encoder", lr_mult = 1.0 : f64}
  return
}

// -----

func.func @param_get_unknown() {
  // expected-error@+1 {{'net.param_get' op reads 'missing', which is not a net.param}}
  %0 = net.param_get @missing : tensor<4xf32>
  return
}

// -----

func.func @param_get_not_param() {
  // expected-error@+1 {{'net.param_get' op reads 'param_get_not_param', which is not a net.param}}
  %0 = net.param_get @param_get_not_param : tensor<4xf32>
  return
}

// -----

net.param @w : tensor<4x3x3x3xf32> init #net.constant<value = 0.0>
    {decay_mult = 1.0 : f64, group = "encoder", lr_mult = 1.0 : f64}
func.func @param_get_type() {
  // expected-error@+1 {{'net.param_get' op type 'tensor<4x4x3x3xf32>' does not match the declaration of @w as 'tensor<4x3x3x3xf32>'}}
  %0 = net.param_get @w : tensor<4x4x3x3xf32>
  return
}

// -----

net.param @w : tensor<4x?xf32> init #net.constant<value = 0.0>
    {decay_mult = 1.0 : f64, group = "encoder", lr_mult = 1.0 : f64}
func.func @param_get_rank() {
  // expected-error@+1 {{'net.param_get' op type 'tensor<4xf32>' does not match the declaration of @w as 'tensor<4x?xf32>'}}
  %0 = net.param_get @w : tensor<4xf32>
  return
}

// -----

// A parameter's value is a feature-map type: f32 tensors only.
// expected-error@+1 {{'net.param' op attribute 'type' failed to satisfy constraint: type attribute of tensor of 32-bit float values}}
net.param @w : tensor<4xi32> init #net.constant<value = 0.0>
    {decay_mult = 1.0 : f64, group = "encoder", lr_mult = 1.0 : f64}

//===----------------------------------------------------------------------===//
// net.augment, net.phase, net.data
//===----------------------------------------------------------------------===//

// -----

// expected-error@+1 {{'net.augment' op unknown augmentation variant 'swwae-some'}}
net.augment "swwae-some" {lambda = 1.0 : f64}

// -----

// expected-error@+1 {{'net.augment' op lambda must not be negative}}
net.augment "swwae-all" {lambda = -1.0e-04 : f64}

// -----

// expected-error@+1 {{'net.augment' op gamma for 'conv2' must be a non-negative float}}
net.augment "swwae-all" {lambda = 1.0 : f64, gamma = {conv1 = 1.0 : f64, conv2 = -1.0 : f64}}

// -----

// expected-error@+1 {{'net.augment' op gamma for 'conv1' must be a non-negative float}}
net.augment "swwae-all" {lambda = 1.0 : f64, gamma = {conv1 = 1 : i64}}

// -----

// expected-error@+1 {{'net.augment' op position must be two non-negative offsets}}
net.augment "sae-all" {lambda = 1.0 : f64, position = array<i64: 0, -1>}

// -----

// expected-error@+1 {{'net.augment' op position must be two non-negative offsets}}
net.augment "sae-all" {lambda = 1.0 : f64, position = array<i64: 0>}

// -----

// expected-error@+1 {{'net.augment' op decoder_init must be an initialiser attribute}}
net.augment "sae-all" {lambda = 1.0 : f64, decoder_init = "gaussian"}

// -----

// expected-error@+1 {{'net.phase' op unknown decoder topology 'mirrored'}}
net.phase @p {batch = 64 : i64, decay = 0.0 : f64, decoder = "mirrored",
              epochs = 1 : i64, freeze = [], lr = 0.1 : f64,
              lr_policy = "fixed", momentum = 0.9 : f64}

// -----

// expected-error@+1 {{'net.phase' op unknown learning-rate policy 'poly'}}
net.phase @p {batch = 64 : i64, decay = 0.0 : f64, decoder = "default",
              epochs = 1 : i64, freeze = [], lr = 0.1 : f64,
              lr_policy = "poly", momentum = 0.9 : f64}

// -----

// expected-error@+1 {{'net.phase' op batch, epochs and lr_every must be positive, steps non-negative}}
net.phase @p {batch = 0 : i64, decay = 0.0 : f64, decoder = "default",
              epochs = 1 : i64, freeze = [], lr = 0.1 : f64,
              lr_policy = "fixed", momentum = 0.9 : f64}

// -----

// expected-error@+1 {{'net.phase' op batch, epochs and lr_every must be positive, steps non-negative}}
net.phase @p {batch = 64 : i64, decay = 0.0 : f64, decoder = "default",
              epochs = 1 : i64, freeze = [], lr = 0.1 : f64,
              lr_policy = "step", lr_every = 0 : i64, momentum = 0.9 : f64}

// -----

// expected-error@+1 {{'net.phase' op batch, epochs and lr_every must be positive, steps non-negative}}
net.phase @p {batch = 64 : i64, decay = 0.0 : f64, decoder = "default",
              epochs = 1 : i64, freeze = [], lr = 0.1 : f64,
              lr_policy = "fixed", momentum = 0.9 : f64, steps = -1 : i64}

// -----

// expected-error@+1 {{'net.phase' op needs lr >= 0, decay >= 0 and momentum in [0, 1)}}
net.phase @p {batch = 64 : i64, decay = 0.0 : f64, decoder = "default",
              epochs = 1 : i64, freeze = [], lr = 0.1 : f64,
              lr_policy = "fixed", momentum = 1.0 : f64}

// -----

// expected-error@+1 {{'net.phase' op needs lr >= 0, decay >= 0 and momentum in [0, 1)}}
net.phase @p {batch = 64 : i64, decay = -1.0e-04 : f64, decoder = "default",
              epochs = 1 : i64, freeze = [], lr = 0.1 : f64,
              lr_policy = "fixed", momentum = 0.9 : f64}

// -----

// expected-error@+1 {{'net.phase' op requires attribute 'lr_policy'}}
net.phase @p {batch = 64 : i64, decay = 0.0 : f64, decoder = "default",
              epochs = 1 : i64, freeze = [], lr = 0.1 : f64,
              momentum = 0.9 : f64}

// -----

// expected-error@+1 {{'net.data' op requires attribute 'kind'}}
"net.data"() : () -> ()

//===----------------------------------------------------------------------===//
// !net.switches
//===----------------------------------------------------------------------===//

// -----

// expected-error@+1 {{switches need at least one dimension}}
func.func @switches_empty(%s: !net.switches<>) {
  return
}

//===----------------------------------------------------------------------===//
// net.all_reduce_mean
//===----------------------------------------------------------------------===//

// -----

func.func @all_reduce_dynamic(%g: tensor<?x8xf32>) {
  // expected-error@+1 {{reduces parameter gradients, which have static shapes; got 'tensor<?x8xf32>'}}
  %0 = net.all_reduce_mean %g bucket 0 : tensor<?x8xf32>
  return
}

// -----

func.func @all_reduce_bucket(%g: tensor<8xf32>) {
  // expected-error@+1 {{bucket must be >= 0, got -1}}
  %0 = net.all_reduce_mean %g bucket -1 : tensor<8xf32>
  return
}

// -----

func.func @all_reduce_empty() {
  // expected-error@+1 {{needs at least one gradient}}
  "net.all_reduce_mean"() {bucket = 0 : i64} : () -> ()
  return
}

// -----

net.param @fc.weight : tensor<10x72xf32> init #net.constant<value = 0.0>
    {decay_mult = 1.0 : f64, group = "classifier", lr_mult = 1.0 : f64}

func.func @param_view_elements() {
  // expected-error@+1 {{'net.param_get' op view 'tensor<10x8x3x4xf32>' does not have the elements of @fc.weight ('tensor<10x72xf32>')}}
  %0 = net.param_get @fc.weight view : tensor<10x8x3x4xf32>
  return
}
