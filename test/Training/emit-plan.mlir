// RUN: netc %S/Inputs/schedule.net -emit=plan | FileCheck %s
// The trainer's plan.json: version, parameters with initialisers and
// multipliers, one program per phase plus eval, and the schedule.

// CHECK: "format": "netc-trainer",
// CHECK: "params": [
// CHECK: "decay_mult": 0,
// CHECK-NEXT: "group": "encoder",
// CHECK-NEXT: "init": {
// CHECK-NEXT: "kind": "constant",
// CHECK-NEXT: "value": 0
// CHECK-NEXT: },
// CHECK-NEXT: "lr_mult": 2,
// CHECK-NEXT: "name": "conv1_1.bias",
// CHECK-NEXT: "shape": [
// CHECK-NEXT: 8
// CHECK-NEXT: ],
// CHECK-NEXT: "trainable": true
// CHECK: "name": "dec.conv1_1.weight",
// CHECK: "precision": "fp32",
// CHECK: "programs": {
// CHECK: "eval": {
// CHECK: "arena_bytes":
// CHECK: "batch": 8,
// CHECK: "dtype": "f32",
// CHECK-NEXT: "id": 0,
// CHECK-NEXT: "layout": "nchw",
// CHECK-NOT: "op": "dropout"
// CHECK: "reconstruct": {
// CHECK: "reconstructions": [
// CHECK-NEXT: {
// CHECK-NEXT: "from": "conv1",
// CHECK: "from": "conv2",
// CHECK: "step.decoders": {
// CHECK: "op": "sgd_update",
// CHECK: "terms": [
// CHECK-NEXT: {
// CHECK-NEXT: "name": "classification",
// CHECK: "step.joint": {
// CHECK: "step.stacked": {
// CHECK: "schedule": [
// CHECK: "phase": "decoders",
// CHECK-NEXT: "program": "step.decoders",
// CHECK: "phase": "stacked",
// CHECK: "phase": "joint",
// CHECK: "variant": "swwae-all",
// CHECK: "version": 3
