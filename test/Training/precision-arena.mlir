// RUN: netc %examples/vgg16.net --stats --batch 64 -emit=plan -o %t.fp32.json | FileCheck %s --check-prefix=FP32
// RUN: netc %examples/vgg16.net --stats --batch 64 --precision=bf16 -emit=plan -o %t.bf16.json | FileCheck %s --check-prefix=BF16
// VGG-16 SWWAE-all at batch 64: bf16 activations and gradients take half
// the bytes; switches (u8) and the f32 weight gradients do not shrink.

// FP32: step.decoders            batch   64  peak activations   4140.7 MiB
// FP32: step.stacked             batch   64  peak activations   4955.4 MiB
// FP32: step.joint               batch   64  peak activations   9046.3 MiB
// FP32: eval                     batch   64  peak activations   1568.0 MiB

// BF16: step.decoders            batch   64  peak activations   2070.4 MiB
// BF16: step.stacked             batch   64  peak activations   2523.6 MiB
// BF16: step.joint               batch   64  peak activations   4569.8 MiB
// BF16: eval                     batch   64  peak activations    784.0 MiB
