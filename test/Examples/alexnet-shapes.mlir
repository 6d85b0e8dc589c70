// RUN: netc %examples/alexnet.net -emit=mlir | FileCheck %s
// AlexNet with inferred shapes: conv1 is 96x55x55, pool5 256x6x6; the grouped
// convolutions read half the input channels per group.

// CHECK: net.param @conv1.weight : tensor<96x3x11x11xf32>
// CHECK: net.param @conv2.weight : tensor<256x48x5x5xf32>
// CHECK: net.param @conv4.weight : tensor<384x192x3x3xf32>
// CHECK: net.param @fc6.weight : tensor<4096x9216xf32> init #net.gaussian<std = 5.000000e-03, mean = 0.000000e+00>
// CHECK: net.param @fc6.bias : tensor<4096xf32> init #net.constant<value = 1.000000e-01>
// CHECK-LABEL: func.func @alexnet
// CHECK: net.conv2d {{.*}} stride [4, 4] pad [0, 0] groups 1 : (tensor<?x3x227x227xf32>, tensor<96x3x11x11xf32>, tensor<96xf32>) -> tensor<?x96x55x55xf32>
// CHECK: net.lrn {{.*}} size 5 {{.*}} : tensor<?x96x55x55xf32> -> tensor<?x96x55x55xf32>
// CHECK: net.max_pool {{.*}} kernel [3, 3] stride [2, 2] pad [0, 0] : tensor<?x96x55x55xf32> -> tensor<?x96x27x27xf32>, !net.switches<?x96x27x27>
// CHECK: net.conv2d {{.*}} groups 2 : (tensor<?x96x27x27xf32>, tensor<256x48x5x5xf32>, tensor<256xf32>) -> tensor<?x256x27x27xf32>
// CHECK: net.macro "conv3"{{.*}} -> tensor<?x384x13x13xf32>
// CHECK: net.macro "conv5"{{.*}} -> (tensor<?x256x6x6xf32>, !net.switches<?x256x6x6>)
// CHECK: net.flatten {{.*}} : tensor<?x256x6x6xf32> -> tensor<?x9216xf32>
