// RUN: netc-opt %s --net-data-parallel --net-data-parallel -split-input-file -verify-diagnostics
// RUN: not netc-opt %s --net-data-parallel=bucket-mb=0 2>&1 | FileCheck %s --check-prefix=ZERO
// ZERO: error: net-data-parallel: bucket-mb must be in (0, 1048576], got 0
// net-data-parallel runs once: a second run finds updates that already take
// reduced gradients.

module {
  net.param @w : tensor<8xf32> init #net.constant<value = 0.0> {decay_mult = 1.0 : f64, group = "encoder", lr_mult = 1.0 : f64}
  net.phase @p {batch = 4 : i64, decay = 0.0 : f64, decoder = "none", epochs = 1 : i64, freeze = [], lr = 0.1 : f64, lr_policy = "fixed", momentum = 0.9 : f64}
  func.func @step.p(%x: tensor<?x8xf32>) -> tensor<?x8xf32> attributes {net.phase = @p} {
    %g = net.scale %x by 1.0 : tensor<?x8xf32>
    %s = net.param_get @w : tensor<8xf32>
    %d = net.scale %s by 1.0 : tensor<8xf32>
    // expected-error@+1 {{already takes an all-reduced gradient; run net-data-parallel once}}
    net.sgd_update @w, %d lr_mult 1.0 decay_mult 1.0 : tensor<8xf32>
    return %g : tensor<?x8xf32>
  }
}
