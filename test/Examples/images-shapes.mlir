// RUN: netc %examples/images.net -emit=mlir | FileCheck %s
// The image-folder example: 3x64x64 crops of a folder resized to 72..96,
// three macro-layers down to 32x8x8, so fc4 takes 2048 inputs.

// CHECK: net.data "images" {crop = 64 : i64, {{.*}}mirror, {{.*}}scale = array<i64: 72, 96>
// CHECK: net.param @fc4.weight : tensor<64x2048xf32>
// CHECK: net.param @fc5.weight : tensor<4x64xf32>
// CHECK-LABEL: func.func @images
// CHECK-SAME: tensor<?x3x64x64xf32>
