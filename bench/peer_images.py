"""torchvision's loader for bench/images.sh: ImageFolder with PIL decoding
and the same augmentation as bench/images.net (the shorter side resized to a
random size in [256, 512] with PIL's antialiased bilinear filter, a random
224 crop, a random mirror, ToTensor and Normalize), through a DataLoader
with --workers worker processes (0: in this process). Prints images/s of
one shuffled pass over the folder, after a warm-up pass.
"""
import argparse
import random
import time

import torch
from torchvision import datasets, transforms
from torchvision.transforms import functional as F


class RandomShorterSide:
    """Resizes the shorter side to a random size in [lo, hi]."""

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def __call__(self, img):
        return F.resize(img, random.randint(self.lo, self.hi),
                        interpolation=transforms.InterpolationMode.BILINEAR)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", help="the split: FOLDER/<class>/<image>")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(1)
    tf = transforms.Compose([
        RandomShorterSide(256, 512),
        transforms.RandomCrop(224),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406],
                             std=[0.229, 0.224, 0.225]),
    ])
    ds = datasets.ImageFolder(a.folder, tf)
    dl = torch.utils.data.DataLoader(
        ds, batch_size=a.batch, shuffle=True, num_workers=a.workers,
        persistent_workers=a.workers > 0)
    for _ in dl:  # warm-up: workers started, files cached
        pass
    t0 = time.perf_counter()
    n = sum(x.shape[0] for x, _ in dl)
    secs = time.perf_counter() - t0
    print(f"{n / secs:.1f}")


if __name__ == "__main__":
    main()
