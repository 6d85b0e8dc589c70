#!/usr/bin/env python3
"""PyTorch peer of bench/data-parallel.sh: the net of bench/peer_fmnist.py
trained with DistributedDataParallel over gloo on the CPU.

    peer_ddp.py RANKS GLOBAL_BATCH STEPS

Starts RANKS processes (one thread each; RANKS=1: one process with as many
threads as cores and no DDP, the single-process baseline), each stepping on
GLOBAL_BATCH / RANKS random images, and prints, for the classifier step and
the SWWAE-all step, `pretrain <img/s>` and `joint <img/s>` counted over all
ranks, after 5 warm-up steps.
"""
import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_fmnist import Net, rate  # noqa: E402


def worker(rank, ranks, batch, steps, out):
    torch.manual_seed(1)
    if ranks == 1:
        torch.set_num_threads(os.cpu_count())
        rates = [rate(d, steps, batch=batch) for d in (False, True)]
    else:
        torch.set_num_threads(1)
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29517")
        dist.init_process_group("gloo", rank=rank, world_size=ranks)
        rates = []
        for decode in (False, True):
            # find_unused_parameters: the decoder is idle in the classifier
            # step.
            model = DDP(Net(), bucket_cap_mb=25, find_unused_parameters=True)
            rates.append(rate(decode, steps, batch=batch, net=model,
                              start=dist.barrier) * ranks)
        dist.destroy_process_group()
    if rank == 0:
        out.put(rates)


def main():
    ranks, global_batch, steps = map(int, sys.argv[1:4])
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=worker,
                         args=(r, ranks, global_batch // ranks, steps, out))
             for r in range(ranks)]
    for p in procs:
        p.start()
    rates = out.get()
    for p in procs:
        p.join()
    print(f"pretrain {rates[0]:.1f}")
    print(f"joint {rates[1]:.1f}")
    print(f"version {torch.__version__}")


if __name__ == "__main__":
    main()
