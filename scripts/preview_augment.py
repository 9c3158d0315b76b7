"""Preview the fine-tune augmentation: the original plus n augmented samples in one PNG grid.

    python scripts/preview_augment.py photo.jpg -o grid.png --n 16 --rotation 8
    python scripts/preview_augment.py data/fashion/ -o grid.png      # first image in the folder
    python scripts/preview_augment.py -o grid.png                    # a drawn test image

Each sample is titled with the parameters drawn for it. Sample i uses
``np.random.default_rng([seed, i])``, so a grid is reproducible from its seed.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout

from fashionrec.config import FLIP_AXES, AugmentConfig
from fashionrec.data.augment import Augmenter
from fashionrec.data.images import IMAGE_SUFFIXES, decode_image, resize

TITLE_H = 26  # pixels above each tile for its two title lines


def test_image(size: int = 224) -> Image.Image:
    """Stripes, a square grid and an asymmetric shape: shows rotation, shear and flips."""
    img = Image.new("RGB", (size, size), (235, 230, 220))
    draw = ImageDraw.Draw(img)
    step = size // 14
    for i, x in enumerate(range(0, size, step)):  # vertical stripes, two colours
        draw.rectangle([x, 0, x + step // 2, size // 3], fill=(200, 40, 40) if i % 2 else (40, 90, 200))
    for y in range(size // 3 + step, size, step):  # horizontal grid lines
        draw.line([(0, y), (size, y)], fill=(120, 120, 120), width=1)
    s = size
    # A "T-shirt" that is not symmetric top-bottom, so a vertical flip is obvious.
    draw.polygon([(0.30 * s, 0.40 * s), (0.70 * s, 0.40 * s), (0.85 * s, 0.52 * s), (0.75 * s, 0.60 * s),
                  (0.68 * s, 0.55 * s), (0.68 * s, 0.92 * s), (0.32 * s, 0.92 * s), (0.32 * s, 0.55 * s),
                  (0.25 * s, 0.60 * s), (0.15 * s, 0.52 * s)], fill=(30, 140, 70), outline=(0, 0, 0))
    draw.ellipse([0.42 * s, 0.55 * s, 0.50 * s, 0.63 * s], fill=(250, 200, 0))  # a badge left of centre
    return img


def load_image(path: str | None) -> tuple[Image.Image, str]:
    if path is None:
        return test_image(), "test image"
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SystemExit(f"{p}: no image files found")
        p = files[0]
    elif not p.exists():
        raise SystemExit(f"{p}: no such file or folder")
    return decode_image(p), p.name


def titles(params: dict) -> tuple[str, str]:
    def signed(v, digits):
        return f"{round(v, digits) + 0.0:+.{digits}f}"  # + 0.0 turns -0.0 into 0.0

    h, s, l = (signed(v, 0) for v in params["hsl"])
    flip = "" if params["flip"] == "none" else f" flip {params['flip']}"
    return (f"rot {signed(params['angle'], 1)} sh {signed(params['shear'], 2)} ar {params['aspect']:.3f}",
            f"hsl {h},{s},{l}{flip}")


def grid(tiles: list[tuple[Image.Image, tuple[str, str]]], tile: int) -> Image.Image:
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    out = Image.new("RGB", (cols * tile, rows * (tile + TITLE_H)), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default()
    for i, (img, lines) in enumerate(tiles):
        x, y = (i % cols) * tile, (i // cols) * (tile + TITLE_H)
        out.paste(img, (x, y + TITLE_H))
        for j, line in enumerate(lines):
            draw.text((x + 3, y + 1 + 12 * j), line, fill=(0, 0, 0), font=font)
    return out


def main(argv=None) -> int:
    defaults = AugmentConfig()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("image", nargs="?",
                    help="an image, or a folder (its first image); none: a drawn test image")
    ap.add_argument("-o", "--output", required=True, help="PNG grid to write")
    ap.add_argument("--n", type=int, default=15, help="augmented samples (default 15)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=192, help="tile size in pixels (default 192)")
    ap.add_argument("--rotation", type=float, default=defaults.rotation, help="max |degrees| (texture: 8)")
    ap.add_argument("--hsl-shift", type=float, default=defaults.hsl_shift)
    ap.add_argument("--shear", type=float, default=defaults.shear)
    ap.add_argument("--aspect-ratio", type=float, nargs=2, default=defaults.aspect_ratio,
                    metavar=("LO", "HI"))
    ap.add_argument("--flip", choices=FLIP_AXES, default=defaults.flip)
    ap.add_argument("--flip-prob", type=float, default=defaults.flip_prob)
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error("--n must be >= 1")
    if args.size < 16:
        ap.error("--size must be >= 16")
    try:
        cfg = AugmentConfig(rotation=args.rotation, hsl_shift=args.hsl_shift, shear=args.shear,
                            aspect_ratio=tuple(args.aspect_ratio), flip=args.flip, flip_prob=args.flip_prob)
    except ValueError as e:
        ap.error(str(e))

    img, name = load_image(args.image)
    aug = Augmenter(cfg)
    # As the batch loader does: augment at full size, then squash to the square input size.
    tiles = [(resize(img, args.size), (f"original: {name}"[:30], f"seed {args.seed}"))]
    for i in range(args.n):
        params = aug.sample_params(np.random.default_rng([args.seed, i]))
        tiles.append((resize(aug.apply(img, params), args.size), titles(params)))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid(tiles, args.size).save(out)
    print(f"wrote {out} ({len(tiles)} tiles)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
