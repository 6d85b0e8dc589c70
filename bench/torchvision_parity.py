#!/usr/bin/env python3
"""torchvision side of netc's PyTorch interop checks (bench/torchvision-parity.sh,
test/e2e/interop.sh). safetensors files are read and written by hand (an
8-byte little-endian header length, a JSON header, the raw bytes), so no
package beyond torch is needed, and `compare`/`same` need only Python.

  model NAME OUT [--seed S]         a randomly initialised model's state_dict
                                    (biases drawn too, so that the check sees them)
  images N C H W OUT [--seed S]     "images": N normalised inputs, N(0, 1)
  logits NAME WEIGHTS IMAGES OUT    load_state_dict(strict=True), eval, "logits"
  compare A B [--tol T]             "logits" of A against B: max |a - b| over
                                    max |b| must be at most T (1e-4)
  same A B                          the same tensor names, shapes and values
  fixture DIR                       the CI fixture: tiny-vgg.safetensors,
                                    images.safetensors, logits.safetensors
NAME: vgg16, alexnet (torchvision.models, weights=None) or tiny-vgg (a small
VGG-like net with torchvision's naming, 3x32x32 input, 10 classes).
"""
import argparse
import array
import json
import struct
import sys


def read_st(path):
    """name -> (shape, array('f')) of an F32 safetensors file."""
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        if e["dtype"] != "F32":
            sys.exit(f"{path}: {name} is {e['dtype']}, expected F32")
        lo, hi = e["data_offsets"]
        a = array.array("f")
        a.frombytes(b[8 + n + lo:8 + n + hi])
        out[name] = (list(e["shape"]), a)
    return out


def write_st(path, tensors):
    """tensors: name -> (shape, array('f') or bytes), written in name order."""
    header, data = {}, b""
    for name in sorted(tensors):
        shape, values = tensors[name]
        raw = values if isinstance(values, bytes) else values.tobytes()
        header[name] = {"dtype": "F32", "shape": list(shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def build(name):
    import torch.nn as nn
    import torchvision
    if name == "vgg16":
        return torchvision.models.vgg16(weights=None)
    if name == "alexnet":
        return torchvision.models.alexnet(weights=None)
    if name == "tiny-vgg":
        class TinyVGG(nn.Module):
            def __init__(self):
                super().__init__()
                self.features = nn.Sequential(
                    nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True),
                    nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(inplace=True),
                    nn.MaxPool2d(2, 2),
                    nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(inplace=True),
                    nn.MaxPool2d(2, 2))
                self.classifier = nn.Sequential(
                    nn.Linear(16 * 8 * 8, 32), nn.ReLU(inplace=True),
                    nn.Dropout(0.5), nn.Linear(32, 10))

            def forward(self, x):
                import torch
                return self.classifier(torch.flatten(self.features(x), 1))
        return TinyVGG()
    sys.exit(f"unknown model {name!r} (vgg16, alexnet, tiny-vgg)")


def to_st(t):
    t = t.detach().float().contiguous().cpu()
    return list(t.shape), t.numpy().tobytes()


def from_st(entry):
    import torch
    shape, values = entry
    return torch.frombuffer(bytearray(values.tobytes()),
                            dtype=torch.float32).reshape(shape)


def cmd_model(name, out, seed):
    import torch
    torch.manual_seed(seed)
    m = build(name).eval()
    with torch.no_grad():
        for pname, p in m.named_parameters():
            if pname.endswith(".bias"):
                p.normal_(0, 0.05)
    write_st(out, {k: to_st(v) for k, v in m.state_dict().items()})


def cmd_images(n, c, h, w, out, seed):
    import torch
    g = torch.Generator().manual_seed(seed)
    write_st(out, {"images": to_st(torch.randn(n, c, h, w, generator=g))})


def cmd_logits(name, weights, images, out):
    import torch
    m = build(name).eval()
    sd = {k: from_st(v) for k, v in read_st(weights).items()}
    m.load_state_dict(sd, strict=True)  # raises, listing every mismatch
    with torch.no_grad():
        logits = m(from_st(read_st(images)["images"]))
    write_st(out, {"logits": to_st(logits)})


def cmd_compare(a, b, tol):
    (sa, va), (sb, vb) = read_st(a)["logits"], read_st(b)["logits"]
    if sa != sb:
        print(f"     logits shapes differ: {sa} against {sb}")
        return 1
    diff = max(abs(x - y) for x, y in zip(va, vb))
    scale = max(abs(y) for y in vb) or 1.0
    rel = diff / scale
    print(f"     {sa[0]} images x {sa[1]} classes: max |diff| {diff:.3g}, "
          f"max |logit| {scale:.3g}, relative {rel:.3g} (tolerance {tol:g})")
    return 0 if rel <= tol else 1


def cmd_same(a, b):
    ta, tb = read_st(a), read_st(b)
    if sorted(ta) != sorted(tb):
        print(f"     names differ: {sorted(set(ta) ^ set(tb))}")
        return 1
    bad = [k for k in ta if ta[k][0] != tb[k][0] or
           ta[k][1].tobytes() != tb[k][1].tobytes()]
    if bad:
        print(f"     tensors differ: {bad}")
        return 1
    print(f"     {len(ta)} tensors, names, shapes and values identical")
    return 0


def cmd_fixture(d):
    cmd_model("tiny-vgg", f"{d}/tiny-vgg.safetensors", 7)
    cmd_images(4, 3, 32, 32, f"{d}/images.safetensors", 8)
    cmd_logits("tiny-vgg", f"{d}/tiny-vgg.safetensors",
               f"{d}/images.safetensors", f"{d}/logits.safetensors")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("model")
    s.add_argument("name"); s.add_argument("out")
    s.add_argument("--seed", type=int, default=1)
    s = sub.add_parser("images")
    for a in ("n", "c", "h", "w"):
        s.add_argument(a, type=int)
    s.add_argument("out"); s.add_argument("--seed", type=int, default=2)
    s = sub.add_parser("logits")
    for a in ("name", "weights", "images", "out"):
        s.add_argument(a)
    s = sub.add_parser("compare")
    s.add_argument("a"); s.add_argument("b")
    s.add_argument("--tol", type=float, default=1e-4)
    s = sub.add_parser("same")
    s.add_argument("a"); s.add_argument("b")
    s = sub.add_parser("fixture")
    s.add_argument("dir")
    a = p.parse_args()
    if a.cmd == "model":
        cmd_model(a.name, a.out, a.seed)
    elif a.cmd == "images":
        cmd_images(a.n, a.c, a.h, a.w, a.out, a.seed)
    elif a.cmd == "logits":
        cmd_logits(a.name, a.weights, a.images, a.out)
    elif a.cmd == "compare":
        return cmd_compare(a.a, a.b, a.tol)
    elif a.cmd == "same":
        return cmd_same(a.a, a.b)
    else:
        cmd_fixture(a.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
