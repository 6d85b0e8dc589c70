#!/usr/bin/env python3
"""Prints one program of a plan.json (on stdin) one fact a line, for FileCheck:

  precision bf16
  program step.joint arena_bytes 13696 batch 4
  kernel conv2d in 0 2 3 out 4
  value 4 bf16 nhwc -1x4x8x8 offset 0
  value 2 f32 nchw 4x1x3x3 param conv1.weight

A value without a layout (not rank 4) shows `-`.

usage: plan-lines.py PROGRAM < plan.json
"""
import json
import sys

plan = json.load(sys.stdin)
name = sys.argv[1]
program = plan["programs"][name]
print("precision", plan.get("precision", "fp32"))
print("program", name, "arena_bytes", program["arena_bytes"], "batch",
      program["batch"])
for k in program["kernels"]:
    print("kernel", k["op"], "in", *k["in"], "out", *k["out"])
for v in program["values"]:
    where = (f"param {v['param']}" if "param" in v else
             f"offset {v['offset']}")
    shape = "x".join(str(d) for d in v["shape"]) or "scalar"
    print("value", v["id"], v["dtype"], v.get("layout", "-"), shape, where)
