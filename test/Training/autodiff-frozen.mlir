// RUN: netc %S/Inputs/schedule.net -emit=autodiff | FileCheck %s
// A phase with the encoder and classifier frozen trains only the decoder:
// no weight gradient or update for an encoder or classifier parameter, and no
// backward op below the decoder (the unpools' inputs are encoder values).

// CHECK-LABEL: func.func @step.decoders
// The layerwise decoder of conv2: image-level gradient chain stops at the
// first decoder conv (its input is an unpooled encoder activation).
// CHECK: %[[U1:.*]] = net.unpool %[[P1:[^,]*]], %{{.*}} size [16, 16]
// CHECK: net.euclidean_loss_grad {{.*}} scale 5.000000e-01
// CHECK: net.euclidean_loss_grad {{.*}} scale 1.000000e-02
// CHECK: net.conv2d_grad_weight %[[U1]],
// CHECK-NOT: net.unpool_grad
// CHECK-NOT: net.softmax_cross_entropy_grad
// CHECK-NOT: net.fc_grad
// CHECK-NOT: net.sgd_update @conv
// CHECK-NOT: net.sgd_update @fc
// CHECK: net.sgd_update @dec.conv1_2.weight
// CHECK-NOT: net.sgd_update @conv
// CHECK-NOT: net.sgd_update @fc
// CHECK: return

// The stacked phase: the chain from the image loss reaches down through both
// decoder macro-layers (an unpool gradient between them) but not the encoder.
// CHECK-LABEL: func.func @step.stacked
// CHECK: net.unpool_grad
// CHECK-NOT: net.softmax_cross_entropy_grad
// CHECK-NOT: net.sgd_update @conv
// CHECK: return

// The joint phase trains everything, with the phase's lambda on the image.
// CHECK-LABEL: func.func @step.joint
// CHECK: net.objective {{.*}} weights [1.000000e+00, 1.000000e-01, 5.000000e-01]
// CHECK-DAG: net.softmax_cross_entropy_grad {{.*}} scale 1.000000e+00
// CHECK-DAG: net.sgd_update @conv1_1.weight, %{{.*}} lr_mult 1.000000e+00 decay_mult 1.000000e+00
// CHECK-DAG: net.sgd_update @conv1_1.bias, %{{.*}} lr_mult 2.000000e+00 decay_mult 0.000000e+00
// CHECK-DAG: net.sgd_update @fc1.weight
// CHECK-DAG: net.sgd_update @dec.conv1_1.weight
// CHECK: return
