#!/usr/bin/python3
"""Writes a tiny image folder in torchvision's ImageFolder layout, for the
tests and examples/images.net:

    OUT/train/<class>/*.jpg|*.png   OUT/val/<class>/...

Four classes: three synthetic (checks: checkerboards, JPEG; discs: a disc on
a plain ground, PNG; stripes: stripes at an angle, JPEG) and `photos`:
random crops of the two photographs SciPy ships (scipy.misc.face, a raccoon
in colour, and scipy.misc.ascent, a grey staircase made RGB), as JPEG and
PNG. Sizes vary from 72 to 140 pixels a side (--sides), deterministic for
a seed.

--bad CASE then breaks the folder in one way, for the bad-input tests:
  empty-class   an empty class folder in train/
  truncated     a JPEG cut in half
  alpha         a PNG with an alpha channel
  png16         a PNG with 16 bits per sample
  small         a 40x40 image (smaller than a 64 crop without resizing)
  grey          a greyscale JPEG
  classes       val/ with a class folder train/ does not have

Needs Debian's python3-pil and python3-scipy (run with /usr/bin/python3).
"""
import argparse
import math
import os
import random
import warnings

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ["checks", "discs", "photos", "stripes"]


def photographs():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from scipy import misc
        face = misc.face()  # 768x1024x3
        ascent = misc.ascent().astype(np.uint8)  # 512x512 grey
    return [Image.fromarray(face), Image.fromarray(ascent).convert("RGB")]


def colour(rng):
    return tuple(rng.randrange(256) for _ in range(3))


def checks(rng, w, h):
    img = Image.new("RGB", (w, h), colour(rng))
    d = ImageDraw.Draw(img)
    p, c = rng.randrange(8, 20), colour(rng)
    for y in range(0, h, p):
        for x in range(0, w, p):
            if (x // p + y // p) % 2:
                d.rectangle([x, y, x + p - 1, y + p - 1], fill=c)
    return img


def discs(rng, w, h):
    img = Image.new("RGB", (w, h), colour(rng))
    r = rng.randrange(min(w, h) // 5, min(w, h) // 3)
    cx, cy = rng.randrange(r, w - r), rng.randrange(r, h - r)
    ImageDraw.Draw(img).ellipse([cx - r, cy - r, cx + r, cy + r],
                                fill=colour(rng))
    return img


def stripes(rng, w, h):
    a, b = np.array(colour(rng)), np.array(colour(rng))
    t, p = rng.uniform(0, math.pi), rng.uniform(6, 16)
    y, x = np.mgrid[0:h, 0:w]
    on = (np.floor((x * math.cos(t) + y * math.sin(t)) / p) % 2)[..., None]
    return Image.fromarray((a * on + b * (1 - on)).astype(np.uint8))


def photo(rng, w, h, photos):
    src = photos[rng.randrange(len(photos))]
    s = rng.uniform(1.5, 4.0)
    cw, ch = min(int(w * s), src.width), min(int(h * s), src.height)
    x, y = rng.randrange(src.width - cw + 1), rng.randrange(src.height - ch + 1)
    return src.crop((x, y, x + cw, y + ch)).resize((w, h), Image.BILINEAR)


def write(img, path, fmt):
    if fmt == "JPEG":
        img.save(path + ".jpg", "JPEG", quality=90)
    else:
        img.save(path + ".png", "PNG")


def make(out, per_class, val, seed, sides):
    rng = random.Random(seed)
    photos = photographs()
    makers = {"checks": checks, "discs": discs, "stripes": stripes}
    for split, n in (("train", per_class), ("val", val)):
        for c in CLASSES:
            d = os.path.join(out, split, c)
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                w, h = (rng.randrange(sides[0], sides[1] + 1) for _ in "wh")
                if c == "photos":
                    img, fmt = photo(rng, w, h, photos), "JPEG" if i % 2 else "PNG"
                else:
                    img = makers[c](rng, w, h)
                    fmt = "PNG" if c == "discs" else "JPEG"
                write(img, os.path.join(d, f"{c}-{i:03d}"), fmt)


def spoil(out, case):
    train = os.path.join(out, "train")
    if case == "empty-class":
        os.makedirs(os.path.join(train, "empty"))
    elif case == "truncated":
        path = os.path.join(train, "checks", "checks-000.jpg")
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])
    elif case == "alpha":
        Image.new("RGBA", (96, 96), (10, 200, 30, 128)).save(
            os.path.join(train, "discs", "alpha.png"))
    elif case == "png16":
        Image.new("I;16", (96, 96), 40000).save(
            os.path.join(train, "discs", "deep.png"))
    elif case == "small":
        Image.new("RGB", (40, 40), (200, 10, 10)).save(
            os.path.join(train, "checks", "small.jpg"))
    elif case == "grey":
        Image.new("L", (96, 96), 128).save(
            os.path.join(train, "stripes", "grey.jpg"))
    elif case == "classes":
        os.rename(os.path.join(out, "val", "stripes"),
                  os.path.join(out, "val", "zebras"))
    else:
        raise SystemExit(f"unknown --bad case '{case}'")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="the folder to write (created)")
    ap.add_argument("--per-class", type=int, default=24,
                    help="training images per class (24)")
    ap.add_argument("--val", type=int, default=8,
                    help="validation images per class (8)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sides", type=int, nargs=2, default=[72, 140],
                    metavar=("MIN", "MAX"), help="image sides (72 140)")
    ap.add_argument("--bad", help="break the folder in one way (see above)")
    a = ap.parse_args()
    make(a.out, a.per_class, a.val, a.seed, a.sides)
    if a.bad:
        spoil(a.out, a.bad)


if __name__ == "__main__":
    main()
