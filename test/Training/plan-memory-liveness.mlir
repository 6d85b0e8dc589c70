// RUN: netc-opt %s --net-plan-memory -split-input-file | FileCheck %s
// RUN: netc-opt %s --net-plan-memory -split-input-file | FileCheck %s --check-prefix=INPLACE
// Two liveness rules of the memory plan: the loss terms live to the end of
// the step (the runtime reads them after the last kernel), and an
// element-wise op writes over its input only when that is the input's last
// use.

// Loss terms: every value defined after the objective is 64 bytes at batch
// 1, as are the terms, so a later value that reused a term's bytes would
// have exactly its offset.
module {
  net.phase @p {batch = 1 : i64, decay = 0.0 : f64, decoder = "none", epochs = 1 : i64, freeze = [], lr = 0.1 : f64, lr_policy = "fixed", momentum = 0.9 : f64}
  // CHECK-LABEL: func.func @terms
  func.func @terms(%x: tensor<?x16xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.phase = @p} {
    %r = net.relu %x : tensor<?x16xf32> -> tensor<?x16xf32>
    // CHECK: net.softmax_cross_entropy {{.*}} {net.offsets = array<i64: [[C:[0-9]+]]>}
    %c = net.softmax_cross_entropy %r, %l : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
    // CHECK: net.euclidean_loss {{.*}} {net.offsets = array<i64: [[E:[0-9]+]]>}
    %e = net.euclidean_loss %r, %x : tensor<?x16xf32>, tensor<?x16xf32> -> tensor<f32>
    // CHECK: net.objective
    %t = net.objective %c, %e weights [1.0, 0.5] names ["classification", "recon.image"] : tensor<f32>, tensor<f32> -> tensor<f32>
    // CHECK-NOT: net.offsets = array<i64: [[C]]>
    // CHECK-NOT: net.offsets = array<i64: [[E]]>
    // CHECK: return
    %g1 = net.softmax_cross_entropy_grad %r, %l scale 1.0 : tensor<?x16xf32>, tensor<?xi32> -> tensor<?x16xf32>
    %g2 = net.euclidean_loss_grad %r, %x scale 0.5 : tensor<?x16xf32>, tensor<?x16xf32> -> tensor<?x16xf32>
    %g3 = net.scale %g2 by -1.0 : tensor<?x16xf32>
    %g4 = net.euclidean_loss_grad %x, %r scale 0.5 : tensor<?x16xf32>, tensor<?x16xf32> -> tensor<?x16xf32>
    %s = net.add %g1, %g2 : tensor<?x16xf32>
    %s2 = net.add %g3, %g4 : tensor<?x16xf32>
    %s3 = net.add %s, %s2 : tensor<?x16xf32>
    %d = net.relu_grad %s3, %r : tensor<?x16xf32>
    %d2 = net.scale %d by 2.0 : tensor<?x16xf32>
    %d3 = net.scale %d2 by 2.0 : tensor<?x16xf32>
    return %t, %r : tensor<f32>, tensor<?x16xf32>
  }
}

// -----

// In place only at the last use: the ReLU's input is read again by the add,
// so the ReLU gets bytes of its own; the add is its operand's last use, so
// it writes over the ReLU's output.
module {
  net.phase @p {batch = 4 : i64, decay = 0.0 : f64, decoder = "none", epochs = 1 : i64, freeze = [], lr = 0.1 : f64, lr_policy = "fixed", momentum = 0.9 : f64}
  // CHECK-LABEL: func.func @in_place
  // INPLACE-LABEL: func.func @in_place
  func.func @in_place(%x: tensor<?x16xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.phase = @p} {
    // CHECK: net.scale {{.*}} {net.offsets = array<i64: [[S:[0-9]+]]>}
    %s = net.scale %x by 2.0 : tensor<?x16xf32>
    // CHECK-NEXT: net.relu
    // CHECK-NOT: array<i64: [[S]]>
    // CHECK: net.add
    // INPLACE: net.relu {{.*}} {net.offsets = array<i64: [[R:[0-9]+]]>}
    // INPLACE-NEXT: net.add {{.*}} {net.offsets = array<i64: [[R]]>}
    %r = net.relu %s : tensor<?x16xf32> -> tensor<?x16xf32>
    %a = net.add %r, %s : tensor<?x16xf32>
    %c = net.softmax_cross_entropy %a, %l : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
    return %c, %a : tensor<f32>, tensor<?x16xf32>
  }
}
