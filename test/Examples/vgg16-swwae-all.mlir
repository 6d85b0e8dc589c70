// RUN: netc %examples/vgg16.net -emit=mirrored --augment=swwae-all | FileCheck %s
// VGG-16 SWWAE-all: 13 decoder convolutions, 5 switch unpoolings, and the five
// reconstruction losses of recon-dec (lambda 1e-4 at the image, gamma 1e-12,
// 1e-12, 1e-12, 1e-10 at pool1..pool4).

// CHECK-COUNT-13: net.param @dec.conv{{[1-5]_[1-3]}}.weight
// CHECK-NOT: net.param @dec.{{.*}}.weight
// CHECK-LABEL: func.func @vgg16
// CHECK: %[[P1:.*]]:2 = net.macro "conv1"
// CHECK: %[[P2:.*]]:2 = net.macro "conv2"
// CHECK: %[[P3:.*]]:2 = net.macro "conv3"
// CHECK: %[[P4:.*]]:2 = net.macro "conv4"
// CHECK: %[[P5:.*]]:2 = net.macro "conv5"
// CHECK: %[[CE:.*]] = net.softmax_cross_entropy
// CHECK: %[[D5:.*]] = net.macro "dec.conv5"(%[[P5]]#0, %[[P5]]#1) : (tensor<?x512x7x7xf32>, !net.switches<?x512x7x7>) -> tensor<?x512x14x14xf32>
// CHECK: net.unpool {{.*}} size [14, 14] : (tensor<?x512x7x7xf32>, !net.switches<?x512x7x7>) -> tensor<?x512x14x14xf32>
// CHECK-COUNT-3: net.conv2d
// CHECK: %[[D4:.*]] = net.macro "dec.conv4"(%[[D5]], %[[P4]]#1) : {{.*}} -> tensor<?x256x28x28xf32>
// CHECK-COUNT-3: net.conv2d
// CHECK: %[[D3:.*]] = net.macro "dec.conv3"(%[[D4]], %[[P3]]#1) : {{.*}} -> tensor<?x128x56x56xf32>
// CHECK-COUNT-3: net.conv2d
// CHECK: %[[D2:.*]] = net.macro "dec.conv2"(%[[D3]], %[[P2]]#1) : {{.*}} -> tensor<?x64x112x112xf32>
// CHECK-COUNT-2: net.conv2d
// CHECK: %[[D1:.*]] = net.macro "dec.conv1"(%[[D2]], %[[P1]]#1) : {{.*}} -> tensor<?x3x224x224xf32>
// CHECK-COUNT-2: net.conv2d
// CHECK-NOT: net.relu
// CHECK: net.yield
// The image target is the encoder's input x 1/255 (recon-dec's scaling).
// CHECK: %[[TGT:.*]] = net.scale %arg0 by 0.0039215686274509803
// CHECK: %[[L0:.*]] = net.euclidean_loss %[[D1]], %[[TGT]]
// CHECK: %[[L1:.*]] = net.euclidean_loss %[[D2]], %[[P1]]#0 : tensor<?x64x112x112xf32>
// CHECK: %[[L2:.*]] = net.euclidean_loss %[[D3]], %[[P2]]#0 : tensor<?x128x56x56xf32>
// CHECK: %[[L3:.*]] = net.euclidean_loss %[[D4]], %[[P3]]#0 : tensor<?x256x28x28xf32>
// CHECK: %[[L4:.*]] = net.euclidean_loss %[[D5]], %[[P4]]#0 : tensor<?x512x14x14xf32>
// CHECK: %[[T:.*]] = net.objective %[[CE]], %[[L0]], %[[L1]], %[[L2]], %[[L3]], %[[L4]] weights [1.000000e+00, 1.000000e-04, 1.000000e-12, 1.000000e-12, 1.000000e-12, 1.000000e-10]
// CHECK: return %[[T]]
