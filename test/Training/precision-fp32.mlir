// RUN: netc %examples/fashion-mnist.net -emit=plan -o %t.default.json
// RUN: netc %examples/fashion-mnist.net --precision=fp32 -emit=plan -o %t.fp32.json
// RUN: diff %t.default.json %t.fp32.json
// RUN: netc %examples/fashion-mnist.net --precision=tf32 -emit=plan -o %t.tf32.json
// RUN: sed -e 's/"precision": "tf32"/"precision": "fp32"/' -e 's/"layout": "nhwc"/"layout": "nchw"/' %t.tf32.json | diff %t.default.json -
// RUN: FileCheck %s < %t.default.json
// RUN: FileCheck %s --check-prefix=TF32 < %t.tf32.json
// RUN: netc %examples/fashion-mnist.net -emit=planned | FileCheck %s --check-prefix=IR
// fp32 (the default) plans store every value as fp32 did before precision
// existed: f32, i32 and u8 values, NCHW maps. tf32 plans store the same values
// at the same offsets, but their activation maps (and switches) NHWC, as
// bf16 plans do (the maps a flatten views stay NCHW): the plans differ
// only there and in "precision".

// CHECK: "precision": "fp32",
// CHECK-NOT: "bf16"
// CHECK-NOT: "nhwc"

// TF32: "precision": "tf32",
// TF32-NOT: "bf16"
// TF32: "layout": "nhwc"

// IR-NOT: net.precision
// IR-NOT: net.dtypes
// IR-NOT: net.layouts
// IR-NOT: net.arg_dtypes
