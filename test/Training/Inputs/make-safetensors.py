#!/usr/bin/env python3
"""Writes a safetensors file of F32 tensors filled with 0.5, 1.5, 2.5, ...

usage: make-safetensors.py OUT NAME SHAPE [NAME SHAPE ...]   (SHAPE like 4x1x3x3)
"""
import json
import struct
import sys

out, args = sys.argv[1], sys.argv[2:]
header, data = {}, b""
for name, shape in zip(args[::2], args[1::2]):
    dims = [int(d) for d in shape.split("x")]
    count = 1
    for d in dims:
        count *= d
    values = struct.pack(f"<{count}f", *[i + 0.5 for i in range(count)])
    header[name] = {"dtype": "F32", "shape": dims,
                    "data_offsets": [len(data), len(data) + len(values)]}
    data += values
text = json.dumps(header).encode()
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + data)
