// RUN: netc %S/Inputs/every-layer.net -emit=autodiff | FileCheck %s
// One backward rule per layer kind, each reading the forward values it needs.

// CHECK-LABEL: func.func @step.joint
// Forward (macro-layers inlined).
// CHECK-NOT: net.macro
// CHECK: %[[X1:.*]] = net.conv2d %arg0, {{.*}} stride [2, 2]
// CHECK: %[[R1:.*]] = net.relu %[[X1]]
// CHECK: %[[N1:.*]] = net.lrn %[[R1]]
// CHECK: %[[B1:.*]] = net.batch_norm %[[N1]], %[[SCALE:[^,]*]],
// CHECK: %[[P1:.*]], %[[S1:.*]] = net.max_pool %[[B1]]
// CHECK: %[[P2:.*]], %[[S2:.*]] = net.max_pool {{.*}} kernel [3, 3] stride [2, 2] pad [1, 1]
// CHECK: %[[A:.*]] = net.avg_pool %[[P2]]
// CHECK: %[[D:.*]] = net.dropout %{{.*}} ratio 3.000000e-01 seed 1
// CHECK: %[[LOGITS:.*]] = net.fc {{.*}} -> tensor<?x5xf32>
// Decoder: the overlapping padded pool unpools with normalisation; the
// stride-2 conv1 is mirrored by a transposed conv restoring the dropped row.
// CHECK: net.unpool %[[P2]], %[[S2]] kernel [3, 3] stride [2, 2] pad [1, 1] size [3, 3] normalize
// CHECK: net.deconv2d {{.*}} stride [2, 2] pad [1, 1] output_padding [1, 1] groups 1 : {{.*}} -> tensor<?x2x12x12xf32>
// Backward.
// CHECK-DAG: net.softmax_cross_entropy_grad %[[LOGITS]], %arg1 scale 1.000000e+00
// CHECK-DAG: net.euclidean_loss_grad {{.*}}, %arg0 scale 5.000000e-01
// CHECK-DAG: net.euclidean_loss_grad {{.*}}, %[[P1]] scale 2.500000e-01
// The -all loss also reaches its target, the encoder's pooled conv1 output.
// CHECK-DAG: net.scale %{{.*}} by -1.000000e+00
// CHECK-DAG: net.fc_grad_input
// CHECK-DAG: net.fc_grad_weight
// CHECK-DAG: net.dropout_grad %{{.*}} ratio 3.000000e-01 seed 1
// CHECK-DAG: net.avg_pool_grad %{{.*}} kernel [2, 2] stride [2, 2] pad [0, 0] : tensor<?x6x1x1xf32> -> tensor<?x6x2x2xf32>
// CHECK-DAG: net.deconv2d_grad_input
// CHECK-DAG: net.deconv2d_grad_weight
// CHECK-DAG: net.unpool_grad %{{.*}}, %[[S2]] kernel [3, 3] stride [2, 2] pad [1, 1] normalize
// The gradient of a max-pool scatters through its switches.
// CHECK-DAG: net.unpool %{{.*}}, %[[S1]] kernel [2, 2] stride [2, 2] pad [0, 0] size [6, 6] :
// CHECK-DAG: net.batch_norm_grad %{{.*}}, %[[N1]], %[[SCALE]] eps
// CHECK-DAG: net.lrn_grad %{{.*}}, %[[R1]], %[[N1]] size 3
// CHECK-DAG: net.relu_grad %{{.*}}, %[[R1]]
// CHECK-DAG: net.conv2d_grad_weight %arg0,
// Gradients of a value used twice are summed.
// CHECK-DAG: net.add
// Nothing propagates into the image: no conv2d_grad_input of the first conv.
// CHECK-NOT: net.conv2d_grad_input {{.*}} -> tensor<?x2x12x12xf32>
// CHECK: net.sgd_update
// CHECK: return
