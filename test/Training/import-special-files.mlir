// RUN: rm -rf %t && mkdir -p %t && cd %t && mkfifo fifo.safetensors
// RUN: python3 -c "import struct; f = open('huge-header.safetensors', 'wb'); f.write(struct.pack('<Q', 150 << 20)); f.truncate(8 + (150 << 20))"
// RUN: python3 -c "import json, struct; h = json.dumps({'w': {'dtype': 'F32', 'shape': [2], 'data_offsets': [0, 1 << 62]}}).encode(); open('past-end.safetensors', 'wb').write(struct.pack('<Q', len(h)) + h + bytes(8))"
// RUN: printf 'abc' > short.safetensors
// RUN: cd %t && timeout 60 netc-opt %s --net-emit-plan=output=%t/out -split-input-file -verify-diagnostics
// An imported parameter is read from a regular file only, its size known
// before reading: a device would be read until memory runs out, and a FIFO
// would block netc forever. Each is an error at the parameter.

// From a .net file, `pretrained` and `init=file(...)` read the same way, and
// an unreadable file is reported where it is named, not at the first layer
// that reads it.
// RUN: printf 'network n {\n  input 1x4x4\n  classes 2\n  pretrained "/dev/urandom"\n  fc1: fc 2\n}\n' > urandom.net
// RUN: not timeout 60 netc urandom.net -o out.trainer 2>&1 | FileCheck %s --check-prefix=URANDOM
// URANDOM: urandom.net:4:14: error: cannot read '/dev/urandom': not a regular file
// URANDOM-NEXT: pretrained "/dev/urandom"
// RUN: printf 'network n {\n  input 1x4x4\n  classes 2\n  fc1: fc 2 init=file("fifo.safetensors")\n}\n' > fifo.net
// RUN: not timeout 60 netc fifo.net -o out.trainer 2>&1 | FileCheck %s --check-prefix=FIFO
// FIFO: fifo.net:4:23: error: cannot read '{{.*}}fifo.safetensors': not a regular file
// The augment section's decoder init too, with the variant from the file or
// from --augment.
// RUN: printf 'network n {\n  input 1x8x8\n  classes 2\n  macro conv1 { conv 2 kernel=3 pad=1; relu; maxpool 2 }\n  fc1: fc 2\n}\naugment sae-first { init file("fifo.safetensors") }\n' > dec.net
// RUN: not timeout 60 netc dec.net -o out.trainer 2>&1 | FileCheck %s --check-prefix=DECODER
// RUN: not timeout 60 netc dec.net --augment=swwae-all -o out.trainer 2>&1 | FileCheck %s --check-prefix=DECODER
// DECODER: dec.net:7:31: error: cannot read '{{.*}}fifo.safetensors': not a regular file

// expected-error@+1 {{cannot read 'fifo.safetensors': not a regular file}}
net.param @w : tensor<2xf32> init #net.file<path = "fifo.safetensors", key = "w"> {decay_mult = 1.0 : f64, group = "classifier", lr_mult = 1.0 : f64}
func.func @t(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.classes = 16 : i64, net.network} {
  %f = net.flatten %x : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}
func.func @eval(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.arena_bytes = 512 : i64, net.arg_offsets = array<i64: 0, 448>, net.batch = 4 : i64, net.eval} {
  %f = net.flatten %x {net.offsets = array<i64: 0>} : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l {net.offsets = array<i64: 256>} : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}

// -----

// expected-error@+1 {{cannot read '/dev/zero': not a regular file}}
net.param @w : tensor<2xf32> init #net.file<path = "/dev/zero", key = "w"> {decay_mult = 1.0 : f64, group = "classifier", lr_mult = 1.0 : f64}
func.func @t(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.classes = 16 : i64, net.network} {
  %f = net.flatten %x : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}
func.func @eval(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.arena_bytes = 512 : i64, net.arg_offsets = array<i64: 0, 448>, net.batch = 4 : i64, net.eval} {
  %f = net.flatten %x {net.offsets = array<i64: 0>} : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l {net.offsets = array<i64: 256>} : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}

// -----

// expected-error@+1 {{cannot read '/dev/urandom': not a regular file}}
net.param @w : tensor<2xf32> init #net.file<path = "/dev/urandom", key = "w"> {decay_mult = 1.0 : f64, group = "classifier", lr_mult = 1.0 : f64}
func.func @t(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.classes = 16 : i64, net.network} {
  %f = net.flatten %x : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}
func.func @eval(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.arena_bytes = 512 : i64, net.arg_offsets = array<i64: 0, 448>, net.batch = 4 : i64, net.eval} {
  %f = net.flatten %x {net.offsets = array<i64: 0>} : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l {net.offsets = array<i64: 256>} : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}

// -----

// expected-error@+1 {{cannot read '.': not a regular file}}
net.param @w : tensor<2xf32> init #net.file<path = ".", key = "w"> {decay_mult = 1.0 : f64, group = "classifier", lr_mult = 1.0 : f64}
func.func @t(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.classes = 16 : i64, net.network} {
  %f = net.flatten %x : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}
func.func @eval(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.arena_bytes = 512 : i64, net.arg_offsets = array<i64: 0, 448>, net.batch = 4 : i64, net.eval} {
  %f = net.flatten %x {net.offsets = array<i64: 0>} : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l {net.offsets = array<i64: 256>} : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}

// -----

// expected-error@+1 {{cannot read 'missing.safetensors': No such file or directory}}
net.param @w : tensor<2xf32> init #net.file<path = "missing.safetensors", key = "w"> {decay_mult = 1.0 : f64, group = "classifier", lr_mult = 1.0 : f64}
func.func @t(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.classes = 16 : i64, net.network} {
  %f = net.flatten %x : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}
func.func @eval(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.arena_bytes = 512 : i64, net.arg_offsets = array<i64: 0, 448>, net.batch = 4 : i64, net.eval} {
  %f = net.flatten %x {net.offsets = array<i64: 0>} : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l {net.offsets = array<i64: 256>} : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}

// -----

// expected-error@+1 {{'short.safetensors' is not a safetensors file}}
net.param @w : tensor<2xf32> init #net.file<path = "short.safetensors", key = "w"> {decay_mult = 1.0 : f64, group = "classifier", lr_mult = 1.0 : f64}
func.func @t(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.classes = 16 : i64, net.network} {
  %f = net.flatten %x : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}
func.func @eval(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.arena_bytes = 512 : i64, net.arg_offsets = array<i64: 0, 448>, net.batch = 4 : i64, net.eval} {
  %f = net.flatten %x {net.offsets = array<i64: 0>} : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l {net.offsets = array<i64: 256>} : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}

// -----

// expected-error@+1 {{'huge-header.safetensors': safetensors header of 157286400 bytes is larger than 104857600}}
net.param @w : tensor<2xf32> init #net.file<path = "huge-header.safetensors", key = "w"> {decay_mult = 1.0 : f64, group = "classifier", lr_mult = 1.0 : f64}
func.func @t(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.classes = 16 : i64, net.network} {
  %f = net.flatten %x : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}
func.func @eval(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.arena_bytes = 512 : i64, net.arg_offsets = array<i64: 0, 448>, net.batch = 4 : i64, net.eval} {
  %f = net.flatten %x {net.offsets = array<i64: 0>} : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l {net.offsets = array<i64: 256>} : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}

// -----

// A tensor that ends past the data: the file is reported truncated, once.
// expected-error@+1 {{'past-end.safetensors' is truncated: its tensors need 4611686018427387904 bytes of data, it has 8}}
net.param @w : tensor<2xf32> init #net.file<path = "past-end.safetensors", key = "w"> {decay_mult = 1.0 : f64, group = "classifier", lr_mult = 1.0 : f64}
func.func @t(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.classes = 16 : i64, net.network} {
  %f = net.flatten %x : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}
func.func @eval(%x: tensor<?x1x4x4xf32>, %l: tensor<?xi32>) -> (tensor<f32>, tensor<?x16xf32>) attributes {net.arena_bytes = 512 : i64, net.arg_offsets = array<i64: 0, 448>, net.batch = 4 : i64, net.eval} {
  %f = net.flatten %x {net.offsets = array<i64: 0>} : tensor<?x1x4x4xf32> -> tensor<?x16xf32>
  %c = net.softmax_cross_entropy %f, %l {net.offsets = array<i64: 256>} : tensor<?x16xf32>, tensor<?xi32> -> tensor<f32>
  return %c, %f : tensor<f32>, tensor<?x16xf32>
}
