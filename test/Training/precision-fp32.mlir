// RUN: netc %examples/fashion-mnist.net -emit=plan -o %t.default.json
// RUN: netc %examples/fashion-mnist.net --precision=fp32 -emit=plan -o %t.fp32.json
// RUN: diff %t.default.json %t.fp32.json
// RUN: netc %examples/fashion-mnist.net --precision=tf32 -emit=plan | sed 's/"precision": "tf32"/"precision": "fp32"/' | diff %t.default.json -
// RUN: FileCheck %s < %t.default.json
// RUN: netc %examples/fashion-mnist.net -emit=planned | FileCheck %s --check-prefix=IR
// fp32 (the default) and tf32 plans store every value as fp32 did before
// precision existed: f32 and i32 values, NCHW maps, the same offsets; tf32
// differs only in the plan's "precision".

// CHECK: "precision": "fp32",
// CHECK-NOT: "bf16"
// CHECK-NOT: "nhwc"

// IR-NOT: net.precision
// IR-NOT: net.dtypes
// IR-NOT: net.layouts
// IR-NOT: net.arg_dtypes
