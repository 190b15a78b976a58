"""Memory and full resolution: peak RSS against the number of photos, and a 24-megapixel mask.

1. Labels synthetic sets of increasing size (seed plus one iteration, small
   working size) in fresh processes and records each one's peak RSS. Goal:
   under 10% growth from 200 to 2,000 photos.
2. Sharpens a working-resolution prediction to a 6000 x 4000 photo's full
   resolution (guided upsampling in bands of rows) and records the time and
   the peak RSS added. Goal: at most 2 s on the CPU.

    python benchmarks/memory.py [--sizes 200 2000] [--image-size 96] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def label_set(photos: int, image_size: int) -> dict:
    """Write ``photos`` synthetic photos and label them; runs in its own process (see ``--child``)."""
    from napari_gfn.config import RunConfig
    from napari_gfn.demo import write_sample_folder
    from napari_gfn.engine import run_labelling

    with tempfile.TemporaryDirectory() as tmp:
        sample = write_sample_folder(Path(tmp) / "sample", n=photos, size=160, seed=7)
        before = peak_rss_mb()
        config = RunConfig(
            images=str(sample / "images"),
            out=str(Path(tmp) / "run"),
            iterations=1,
            image_size=image_size,
            seed_epochs=1,
            epochs=1,
            min_steps=20,
            area_min=0.02,
        )
        started = time.perf_counter()
        for _ in run_labelling(config):
            pass
        masks = len(list((Path(tmp) / "run" / "iter_01" / "masks").glob("*.png")))
    return {
        "photos": photos,
        "masks_written": masks,
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb_before_run": round(before, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def full_resolution(repeats: int = 3) -> dict:
    """Time sharpening a 320-px prediction to a 6000 x 4000 photo."""
    from napari_gfn.engine.predict import sharpen_to_full_resolution
    from napari_gfn.engine.working import resize_image, working_shape

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:4000, :6000]
    inside = (yy - 2000) ** 2 / 1500**2 + (xx - 3000) ** 2 / 2200**2 < 1
    photo = np.where(inside[..., None], [190, 70, 120], [60, 130, 70]).astype(np.uint8)
    photo = np.clip(photo + rng.integers(-20, 21, photo.shape), 0, 255).astype(np.uint8)
    small = resize_image(photo, working_shape(photo.shape, 320))
    truth = torch.from_numpy(inside.astype(np.float32))[None, None]
    probability = torch.nn.functional.interpolate(truth, size=small.shape[:2], mode="area")[0, 0]
    del truth
    before = peak_rss_mb()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        mask = sharpen_to_full_resolution(probability, small, photo, 4, 1e-3)
        times.append(time.perf_counter() - started)
    return {
        "photo": "6000x4000",
        "median_seconds": round(float(np.median(times)), 3),
        "peak_rss_added_mb": round(peak_rss_mb() - before, 1),
        "mask_matches_the_ellipse": round(float(np.mean(mask == inside)), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # one labelling run, in its own process
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(label_set(args.child, args.image_size)))
        return

    result = {"threads": args.threads, "full_resolution": full_resolution(), "sets": []}
    print(json.dumps(result["full_resolution"]), flush=True)
    for photos in args.sizes:
        command = [sys.executable, __file__, "--child", str(photos), "--image-size", str(args.image_size)]
        command += ["--threads", str(args.threads)]
        line = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        result["sets"].append(json.loads(line))
        print(line, flush=True)
    sets = result["sets"]
    result["rss_growth"] = round(sets[-1]["peak_rss_mb"] / sets[0]["peak_rss_mb"] - 1, 4)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
