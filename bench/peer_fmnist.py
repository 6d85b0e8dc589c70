#!/usr/bin/env python3
"""PyTorch peer of examples/fashion-mnist.net, for bench/backends.sh.

Prints the training throughput (images/s, SGD momentum 0.9) of three steps
of the same net on the CPU, with as many threads as cores, at each batch
given on the command line (default 64), one line each: `<step> <batch>
<img/s>`, where step is
- pretrain: the classifier alone;
- joint: the SWWAE-all joint step (every parameter);
- decoders: the SWWAE layerwise-decoder step (step 2 of the schedule): the
  encoder and classifier frozen, each macro-layer's decoder reconstructing
  that macro-layer's input from its pooled output.

The net: conv 16, 16 (3x3, pad 1, ReLU), 2x2 max-pool; conv 32, 32, pool;
fc 128, ReLU, dropout 0.3; fc 10. SWWAE-all: unpool with the pool indices,
mirrored 3x3 convs with ReLU except the one producing the image, Caffe's
Euclidean loss (sum of squares / 2N) at the image (weight 0.002) and at
conv1's pooled output (weight 0.0005), reaching both operands.
"""
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F



def conv(cin, cout):
    return nn.Conv2d(cin, cout, 3, padding=1)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c11, self.c12 = conv(1, 16), conv(16, 16)
        self.c21, self.c22 = conv(16, 32), conv(32, 32)
        self.fc3, self.fc4 = nn.Linear(32 * 7 * 7, 128), nn.Linear(128, 10)
        # Decoder twins: output channels = the encoder conv's input channels.
        self.d22, self.d21 = conv(32, 32), conv(32, 16)
        self.d12, self.d11 = conv(16, 16), conv(16, 1)

    def encode(self, x):
        """The classifier: its logits and what the decoders read."""
        a = F.relu(self.c12(F.relu(self.c11(x))))
        p1, s1 = F.max_pool2d(a, 2, return_indices=True)
        b = F.relu(self.c22(F.relu(self.c21(p1))))
        p2, s2 = F.max_pool2d(b, 2, return_indices=True)
        h = F.dropout(F.relu(self.fc3(p2.flatten(1))), 0.3, self.training)
        return self.fc4(h), (a, p1, s1, b, p2, s2)

    def decode(self, x, maps, stacked):
        """The two loss terms. Stacked (SWWAE-all): conv2's decoder output
        feeds conv1's. Layerwise: each decoder starts from its own pooled
        output."""
        a, p1, s1, b, p2, s2 = maps
        u2 = F.max_unpool2d(p2, s2, 2, output_size=b.shape[-2:])
        r1 = F.relu(self.d21(F.relu(self.d22(u2))))
        u1 = F.max_unpool2d(r1 if stacked else p1, s1, 2,
                            output_size=a.shape[-2:])
        r0 = self.d11(F.relu(self.d12(u1)))
        n = x.shape[0]
        return [0.002 * ((r0 - x) ** 2).sum() / (2 * n),
                0.0005 * ((r1 - p1) ** 2).sum() / (2 * n)]

    def forward(self, x, decode):
        if decode == "layerwise":
            # The frozen classifier runs without gradients (its loss is
            # reported, not trained).
            with torch.no_grad():
                logits, maps = self.encode(x)
            return logits, self.decode(x, maps, stacked=False)
        logits, maps = self.encode(x)
        if not decode:
            return logits, []
        return logits, self.decode(x, maps, stacked=True)

    def decoder_parameters(self):
        return [p for m in (self.d22, self.d21, self.d12, self.d11)
                for p in m.parameters()]


def rate(decode, steps=30, warmup=5, batch=64, net=None, start=None):
    """Images/s of `net` (default a new Net); decode: False (classifier),
    True (SWWAE-all joint) or "layerwise" (decoders only); `start` runs
    before timing (e.g. a barrier of bench/peer_ddp.py's ranks)."""
    net = net or Net()
    params = (net.decoder_parameters() if decode == "layerwise"
              else list(net.parameters()))
    opt = torch.optim.SGD(params, lr=0.005, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))
    for i in range(warmup + steps):
        if i == warmup:
            if start:
                start()
            t0 = time.perf_counter()
        logits, recon = net(x, decode)
        ce = F.cross_entropy(logits, y)
        loss = sum(recon) if decode == "layerwise" else ce + sum(recon)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


if __name__ == "__main__":
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(1)
    for batch in [int(b) for b in sys.argv[1:]] or [64]:
        for name, decode in (("pretrain", False), ("joint", True),
                             ("decoders", "layerwise")):
            steps = max(30, 2560 // batch)  # as many images as netc's
            print(f"{name} {batch} "
                  f"{rate(decode, steps=steps, batch=batch):.1f}", flush=True)
    print(f"version {torch.__version__}")
