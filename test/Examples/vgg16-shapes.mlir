// RUN: netc %examples/vgg16.net -emit=mlir | FileCheck %s
// VGG-16 with inferred shapes: pool5 is 512x7x7 and fc6 takes 25088 inputs.

// CHECK: net.param @conv1_1.weight : tensor<64x3x3x3xf32>
// CHECK: net.param @conv5_3.weight : tensor<512x512x3x3xf32>
// CHECK: net.param @fc6.weight : tensor<4096x25088xf32>
// CHECK: net.param @fc8.weight : tensor<1000x4096xf32>
// CHECK-LABEL: func.func @vgg16(%{{.*}}: tensor<?x3x224x224xf32>, %{{.*}}: tensor<?xi32>) -> (tensor<f32>, tensor<?x1000xf32>)
// CHECK: net.macro "conv1"{{.*}} -> (tensor<?x64x112x112xf32>, !net.switches<?x64x112x112>)
// CHECK: net.macro "conv2"{{.*}} -> (tensor<?x128x56x56xf32>, !net.switches<?x128x56x56>)
// CHECK: net.macro "conv3"{{.*}} -> (tensor<?x256x28x28xf32>, !net.switches<?x256x28x28>)
// CHECK: net.macro "conv4"{{.*}} -> (tensor<?x512x14x14xf32>, !net.switches<?x512x14x14>)
// CHECK: %[[POOL5:.*]]:2 = net.macro "conv5"{{.*}} -> (tensor<?x512x7x7xf32>, !net.switches<?x512x7x7>)
// CHECK: %[[FLAT:.*]] = net.flatten %[[POOL5]]#0 : tensor<?x512x7x7xf32> -> tensor<?x25088xf32>
// CHECK: net.fc %[[FLAT]], {{.*}} : (tensor<?x25088xf32>, tensor<4096x25088xf32>, tensor<4096xf32>) -> tensor<?x4096xf32>
// CHECK: net.softmax_cross_entropy {{.*}} : tensor<?x1000xf32>, tensor<?xi32> -> tensor<f32>
