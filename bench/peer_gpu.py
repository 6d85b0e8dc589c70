#!/usr/bin/env python3
"""PyTorch peer of the GPU benchmark (bench/gpu-check.sh).

The nets of shared/FACTS.md, "Peer figures":
- VGG-16 at 224x224, batch 64: 13 3x3/pad-1 convs in macro-layers of
  2,2,3,3,3 (64,128,256,512,512 channels) + fc 4096, 4096, 1000 with ReLU
  and dropout 0.5;
- the 4-macro VGG-style net at 32x32, batch 256: macro-layers [64,64],
  [128,128], [256,256], [512,512], fc 512 (ReLU, dropout), fc 10;
each as the classifier alone and as SWWAE-all: unpool with the pooling
switches, mirrored 3x3 convs (output channels = the encoder conv's input
channels), ReLU except on the image, mean-squared error at every
macro-layer's pooled output below the top one and at the image, weight 0.1
on their sum; SGD momentum 0.9, weight decay 5e-4; random data.

Precisions: fp32 (TF32 off), tf32, bf16 autocast; channels_last,
cudnn.benchmark on. Timed: the mean of 12 steps (30 for the small net) after
5 warm-up steps, synchronised. Prints one line per cell:
  peer <net> <variant> <precision> batch <B>: <img/s> images/s, peak <bytes>
  (<GiB>)[, compile <s>], timed steps alone <bytes>
(the peak of the whole cell, cudnn.benchmark's searches included, and of
the timed steps alone)
and flushes it, so that a stage timeout keeps the cells already measured.

With --profile, each cell then runs as many steps again under
torch.profiler and prints where a step's GPU time goes: its kernels by kind
(convolution: cuDNN's fprop, dgrad and wgrad kernels; gemm: the fc layers'
cuBLAS kernels; the rest: elementwise, pooling, reductions, the optimizer)
and the slowest kernels, each in ms per step (lines starting `profile`),
to set beside `netrun bench --profile`'s figures for the same cell.

With --compile the second peer: the same net through torch.compile (default
mode: Inductor's kernels, no CUDA graphs; the optimizer step stays eager), its
lines starting `compiled` and naming the compile time (the first warm-up
step). A cell that does not compile prints `failed` and the rest go on.

  bench/peer_gpu.py [--nets vgg16,vgg32] [--variants none,swwae-all]
                    [--precisions fp32,tf32,bf16] [--compile] [--profile]
                    [--cells NET/VARIANT/PRECISION,...] [--device cuda]

--cells names the cells and their order (instead of the three lists).
Without a GPU the script is tried on the `tiny` net (not a benchmark):
  bench/peer_gpu.py --device cpu --nets tiny [--compile]
"""
import argparse
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

NETS = {
    # name: (macro-layers as channel lists, image size, batch, fc sizes,
    #        classes, timed steps)
    "vgg16": ([[64, 64], [128, 128], [256, 256, 256], [512, 512, 512],
               [512, 512, 512]], 224, 64, [4096, 4096], 1000, 12),
    "vgg32": ([[64, 64], [128, 128], [256, 256], [512, 512]], 32, 256, [512],
              10, 30),
    # For trying the script on the CPU.
    "tiny": ([[8], [16, 16]], 16, 4, [32], 10, 2),
}
WARMUP = 5


class Net(nn.Module):
    def __init__(self, macros, size, fcs, classes, decode):
        super().__init__()
        self.decode = decode
        self.enc = nn.ModuleList()
        cin = 3
        for macro in macros:
            layers = nn.ModuleList()
            for c in macro:
                layers.append(nn.Conv2d(cin, c, 3, padding=1))
                cin = c
            self.enc.append(layers)
        side = size // 2 ** len(macros)
        fc, f = [], cin * side * side
        for width in fcs:
            fc.append(nn.Linear(f, width))
            f = width
        self.fc = nn.ModuleList(fc)
        self.out = nn.Linear(f, classes)
        if decode:
            # Each macro-layer mirrored: convs in reverse order, each from
            # its encoder twin's output channels to its input channels.
            self.dec = nn.ModuleList()
            for layers in self.enc:
                self.dec.append(nn.ModuleList(
                    nn.Conv2d(l.out_channels, l.in_channels, 3, padding=1)
                    for l in reversed(layers)))

    def forward(self, x):
        pooled, switches, sizes = [x], [], []
        a = x
        for layers in self.enc:
            for conv in layers:
                a = F.relu(conv(a))
            sizes.append(a.shape[-2:])
            a, s = F.max_pool2d(a, 2, return_indices=True)
            switches.append(s)
            pooled.append(a)
        h = a.flatten(1)
        for fc in self.fc:
            h = F.dropout(F.relu(fc(h)), 0.5, self.training)
        logits = self.out(h)
        if not self.decode:
            return logits, None
        # Decode from the top macro-layer's pooled output down to the image;
        # a loss at every level below the top.
        recon, r = 0.0, pooled[-1]
        levels = len(self.enc)
        for l in reversed(range(levels)):
            r = F.max_unpool2d(r, switches[l], 2, output_size=sizes[l])
            convs = self.dec[l]
            for i, conv in enumerate(convs):
                r = conv(r)
                if not (l == 0 and i == len(convs) - 1):
                    r = F.relu(r)
            recon = recon + F.mse_loss(r.float(), pooled[l].float())
        return logits, recon


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


# A kernel's kind, by its name (cuDNN's convolution kernels name their
# direction or their implicit GEMM; cuBLAS's are GEMMs).
KINDS = (("convolution", ("fprop", "dgrad", "wgrad", "conv", "implicit",
                          "cudnn", "winograd")),
         ("gemm", ("gemm", "gemv")))


def kind_of(kernel):
    k = kernel.lower()
    for kind, words in KINDS:
        if any(w in k for w in words):
            return kind
    return "other"


def profile_steps(step, steps, dev, label):
    """`steps` more steps under torch.profiler: the GPU time per step by
    kind of kernel and the slowest kernels (CPU ops on a CPU device)."""
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU]
    if dev.type == "cuda":
        acts.append(ProfilerActivity.CUDA)
    with profile(activities=acts) as prof:
        for _ in range(steps):
            step()
        sync(dev)
    times = {}  # name -> microseconds over the steps
    for e in prof.key_averages():
        if dev.type == "cuda":
            if e.device_type != torch.autograd.DeviceType.CUDA:
                continue
            t = e.self_device_time_total or e.device_time_total
        else:
            t = e.self_cpu_time_total
        if t > 0:
            times[e.key] = times.get(e.key, 0.0) + t
    total = sum(times.values())
    by_kind = {}
    for k, t in times.items():
        by_kind[kind_of(k)] = by_kind.get(kind_of(k), 0.0) + t
    per = 1e-3 / steps  # microseconds over the steps -> ms per step
    print(f"profile {label}: {total * per:.3f} ms/step in "
          f"{'kernels' if dev.type == 'cuda' else 'CPU ops'}; " +
          ", ".join(f"{k} {t * per:.3f} ({100 * t / total:.1f}%)"
                    for k, t in sorted(by_kind.items(),
                                       key=lambda kv: -kv[1])),
          flush=True)
    for k, t in sorted(times.items(), key=lambda kv: -kv[1])[:12]:
        print(f"profile {label}:   {t * per:8.3f} ms  {kind_of(k):11s} "
              f"{k[:110]}", flush=True)


def cell(name, variant, precision, compiled=False, dev=None,
         profiled=False):
    macros, size, batch, fcs, classes, steps = NETS[name]
    dev = dev or torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    tf32 = precision != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.manual_seed(1)
    net = Net(macros, size, fcs, classes, variant != "none").to(dev)
    net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9,
                          weight_decay=5e-4)
    model = torch.compile(net) if compiled else net
    x = torch.randn(batch, 3, size, size, device=dev).to(
        memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,), device=dev)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16,
                            enabled=precision == "bf16"):
            logits, recon = model(x)
            loss = F.cross_entropy(logits.float(), y)
            if recon is not None:
                loss = loss + 0.1 * recon
        loss.backward()
        opt.step()

    sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    step()  # with --compile: the compilation
    sync(dev)
    first = time.perf_counter() - t0
    for _ in range(WARMUP - 1):
        step()
    sync(dev)
    # The peak of the whole cell (cudnn.benchmark's searches in the first
    # step included), and of the timed steps alone.
    peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else 0
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(dev)
    secs = time.perf_counter() - t0
    steady = torch.cuda.max_memory_allocated() if dev.type == "cuda" else 0
    peak = max(peak, steady)
    who = "compiled" if compiled else "peer"
    extra = f", compile {first:.1f} s" if compiled else ""
    print(f"{who} {name} {variant} {precision} batch {batch}: "
          f"{batch * steps / secs:.1f} images/s, peak {peak} bytes "
          f"({peak / 2**30:.2f} GiB){extra}, timed steps alone {steady} "
          f"bytes", flush=True)
    if profiled:
        profile_steps(step, steps, dev, f"{who} {name} {variant} {precision}")
    del model, net, opt, x, y
    if compiled:
        torch._dynamo.reset()
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="vgg32,vgg16")
    ap.add_argument("--variants", default="none,swwae-all")
    ap.add_argument("--precisions", default="fp32,tf32,bf16")
    ap.add_argument("--cells", help="NET/VARIANT/PRECISION,... in this order")
    ap.add_argument("--compile", action="store_true",
                    help="the torch.compile peer instead of eager PyTorch")
    ap.add_argument("--profile", action="store_true",
                    help="each cell's steps again under torch.profiler")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("peer: no CUDA device; skipping", flush=True)
        return 0
    print(f"peer: torch {torch.__version__}, cuDNN "
          f"{torch.backends.cudnn.version()}, " +
          (torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"),
          flush=True)
    if args.cells:
        cells = [tuple(c.split("/")) for c in args.cells.split(",")]
    else:
        cells = [(n, v, p) for n in args.nets.split(",")
                 for v in args.variants.split(",")
                 for p in args.precisions.split(",")]
    who = "compiled" if args.compile else "peer"
    for c in cells:
        if len(c) != 3 or c[0] not in NETS:
            print(f"{who} {'/'.join(c)}: failed: not NET/VARIANT/PRECISION "
                  f"with NET one of {', '.join(NETS)}", flush=True)
            continue
        try:
            cell(*c, compiled=args.compile, dev=dev, profiled=args.profile)
        except Exception as e:  # one failed cell must not stop the rest
            print(f"{who} {' '.join(c)}: failed: "
                  f"{str(e).splitlines()[0] if str(e) else type(e).__name__}",
                  flush=True)
            if args.compile:
                torch._dynamo.reset()
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
