// RUN: netc %examples/alexnet.net -emit=mirrored | FileCheck %s
// AlexNet SWWAE-first decoding from fc8 (paper Figure 4): fc twins (no ReLU
// after fc8's), a reshape back to pool5, normalised unpooling of the
// overlapping 3x3/2 pools, grouped twins, and conv1 (11x11, stride 4) inverted
// by two stride-2 3x3 transposed convs and a 5x5 one: 55 -> 111 -> 223 -> 227.

// CHECK-DAG: net.param @dec.fc8.weight : tensor<4096x1000xf32>
// CHECK-DAG: net.param @dec.fc6.weight : tensor<9216x4096xf32>
// CHECK-DAG: net.param @dec.conv2.weight : tensor<96x128x5x5xf32>
// CHECK-DAG: net.param @dec.conv1.up1.weight : tensor<96x96x3x3xf32>
// CHECK-DAG: net.param @dec.conv1.up2.weight : tensor<96x96x3x3xf32>
// CHECK-DAG: net.param @dec.conv1.weight : tensor<96x3x5x5xf32>
// CHECK-LABEL: func.func @alexnet
// CHECK: %[[FC8:.*]] = net.fc {{.*}} -> tensor<?x1000xf32>
// CHECK: %[[D8:.*]] = net.macro "dec.fc8"(%[[FC8]])
// CHECK: %[[Y8:.*]] = net.fc {{.*}} -> tensor<?x4096xf32>
// CHECK-NEXT: net.yield %[[Y8]]
// CHECK: %[[D7:.*]] = net.macro "dec.fc7"(%[[D8]])
// CHECK: net.fc
// CHECK-NEXT: %[[R7:.*]] = net.relu
// CHECK-NEXT: net.yield %[[R7]]
// CHECK: net.macro "dec.fc6"(%[[D7]]) : (tensor<?x4096xf32>) -> tensor<?x256x6x6xf32>
// CHECK: net.relu
// CHECK-NEXT: net.reshape {{.*}} to [256, 6, 6]
// CHECK: net.macro "dec.conv5"
// CHECK: net.unpool {{.*}} kernel [3, 3] stride [2, 2] pad [0, 0] size [13, 13] normalize
// CHECK: net.conv2d {{.*}} groups 2 : {{.*}} -> tensor<?x384x13x13xf32>
// CHECK: net.macro "dec.conv4"
// CHECK: net.macro "dec.conv3"
// CHECK: net.macro "dec.conv2"
// CHECK: net.unpool {{.*}} size [27, 27] normalize
// CHECK: net.conv2d {{.*}} groups 2 : {{.*}} -> tensor<?x96x27x27xf32>
// CHECK: net.macro "dec.conv1"
// CHECK: net.unpool {{.*}} size [55, 55] normalize
// CHECK: net.deconv2d {{.*}} stride [2, 2] pad [0, 0] output_padding [0, 0] groups 1 : {{.*}} -> tensor<?x96x111x111xf32>
// CHECK-NEXT: net.relu
// CHECK: net.deconv2d {{.*}} stride [2, 2] {{.*}} -> tensor<?x96x223x223xf32>
// CHECK-NEXT: net.relu
// CHECK: %[[IMG:.*]] = net.deconv2d {{.*}} stride [1, 1] pad [0, 0] {{.*}} -> tensor<?x3x227x227xf32>
// CHECK-NEXT: net.yield %[[IMG]]
// CHECK: net.objective {{.*}} weights [1.000000e+00, 1.000000e-04] names ["classification", "recon.image"]
