"""Seconds to redraw one photo's edge band with GrabCut, by photo size, at full size and as a run does it.

A synthetic flower photo and its exact mask are enlarged to each long side; the band is the default
(3 working pixels at image size 320), scaled to the photo as prediction scales it. "full size" runs
GrabCut on every pixel; "as a run" shrinks photos longer than prediction's cap first.

    python benchmarks/edge_band_speed.py [--sides 640 1024 2000 4000] [--repeats 1]
"""

from __future__ import annotations

import argparse
from functools import partial

import numpy as np

from _timing import median_seconds
from napari_gfn.config import RunConfig
from napari_gfn.engine.grabcut import redraw_edge_band, scaled_band
from napari_gfn.engine.predict import MaskPredictor
from napari_gfn.engine.working import resize_image, resize_mask
from napari_gfn.sample_data import make_sample_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sides", type=int, nargs="+", default=[640, 1024, 2000, 4000])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    sample = make_sample_set("flower", 1, (240, 320), seed=1)
    config = RunConfig()
    print("| long side (px) | band (px) | full size (s) | as a run (s) |")
    print("|---|---|---|---|")
    for side in args.sides:
        shape = (side * 3 // 4, side)
        photo = resize_image(sample.images[0], shape)
        mask = resize_mask(np.asarray(sample.masks[0]) > 0, shape)
        band = scaled_band(config.grabcut_edge_band, config.image_size, side)
        redraw = partial(redraw_edge_band, photo, mask, band)
        full = median_seconds(redraw, args.repeats)
        capped = median_seconds(partial(redraw, max_side=MaskPredictor.edge_band_max_side), args.repeats)
        print(f"| {side} | {band} | {full:.2f} | {capped:.2f} |", flush=True)


if __name__ == "__main__":
    main()
