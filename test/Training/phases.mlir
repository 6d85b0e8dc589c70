// RUN: netc %S/Inputs/schedule.net -emit=phases | FileCheck %s
// RUN: netc %S/Inputs/schedule.net -emit=phases --augment=sae-layerwise 2>&1 | FileCheck %s --check-prefix=LAYERWISE
// RUN: netc %S/../Mirror/Inputs/small.net -emit=phases | FileCheck %s --check-prefix=DEFAULT
// One step function per phase with the decoder topology it trains, and eval.

// CHECK: net.phase @decoders {{.*}}decoder = "layerwise"
// CHECK-LABEL: func.func @step.decoders
// CHECK-SAME: net.phase = @decoders, net.topology = "layerwise"
// CHECK: net.macro "dec.conv1"(%[[E1:[^,]*]]#0, %[[E1]]#1)
// CHECK-LABEL: func.func @step.stacked
// CHECK-SAME: net.topology = "default"
// CHECK-LABEL: func.func @step.joint
// CHECK-SAME: net.lambda = 1.000000e-01
// CHECK: net.objective {{.*}} weights [1.000000e+00, 1.000000e-01, 5.000000e-01]
// The classifier alone, in inference mode.
// CHECK-LABEL: func.func @eval
// CHECK-SAME: net.eval
// CHECK-NOT: net.dropout
// CHECK-NOT: dec.
// CHECK: return

// A -layerwise model has no stacked decoder: the paper skips step 3.
// LAYERWISE: warning: phase 'stacked' skipped: sae-layerwise has no stacked decoder
// LAYERWISE: func.func @step.decoders
// LAYERWISE-NOT: func.func @step.stacked
// LAYERWISE: func.func @step.joint

// Without a train section (and without an augment section: variant none),
// the default schedule is one classifier phase.
// DEFAULT: net.phase @train {{.*}}decoder = "none"{{.*}}epochs = 8
// DEFAULT: func.func @step.train
// DEFAULT: func.func @eval
