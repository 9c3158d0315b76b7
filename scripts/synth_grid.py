"""Draw one synthetic garment per (category x texture) pair as a labelled 9 x 5 grid PNG.

    python scripts/synth_grid.py grid.png                  # 96 px tiles
    python scripts/synth_grid.py grid.png --size 64 --seed 3

Rows are categories, columns textures. Tile (r, c) uses ``np.random.default_rng([seed, r, c])``,
so a grid is reproducible from its seed. ``--zoom`` enlarges small tiles (nearest neighbour) so
the pixels a 64 px network sees can be inspected.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout

from fashionrec.data.synth import CATEGORIES, TEXTURES, draw_garment

LABEL_W, TITLE_H, GAP = 70, 18, 4


def grid(size: int = 96, seed: int = 0, zoom: int = 1) -> Image.Image:
    tile = size * zoom
    width = LABEL_W + len(TEXTURES) * (tile + GAP)
    height = TITLE_H + len(CATEGORIES) * (tile + GAP)
    out = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default()
    for c, texture in enumerate(TEXTURES):
        draw.text((LABEL_W + c * (tile + GAP) + 4, 3), texture, fill=(0, 0, 0), font=font)
    for r, category in enumerate(CATEGORIES):
        y = TITLE_H + r * (tile + GAP)
        draw.text((4, y + tile // 2 - 6), category, fill=(0, 0, 0), font=font)
        for c, texture in enumerate(TEXTURES):
            img = draw_garment(category, texture, size, np.random.default_rng([seed, r, c]))
            if zoom > 1:
                img = img.resize((tile, tile), Image.NEAREST)
            out.paste(img, (LABEL_W + c * (tile + GAP), y))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="PNG file to write")
    parser.add_argument("--size", type=int, default=96, help="image side in pixels (default 96)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--zoom", type=int, default=1, help="enlarge each tile by this factor (default 1)")
    args = parser.parse_args(argv)
    if args.size < 16 or args.zoom < 1:
        parser.error("--size must be >= 16 and --zoom >= 1")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    grid(args.size, args.seed, args.zoom).save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
