"""Memory and full resolution: peak RSS against the number of photos, and a 24-megapixel mask.

1. Labels synthetic sets of increasing size (seed plus one iteration, small
   working size), each in a fresh process that does nothing else, and records
   each one's peak RSS. Goal: under 10% growth from 200 to 2,000 photos.
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

from _timing import current_rss_mb


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def label_set(images: Path, image_size: int) -> dict:
    """Label the photos in ``images``; runs in its own process (see ``--child``), so its peak RSS is the run's."""
    from napari_gfn.config import RunConfig
    from napari_gfn.engine import run_labelling

    with tempfile.TemporaryDirectory() as tmp:
        before = current_rss_mb()
        config = RunConfig(
            images=str(images),
            out=str(Path(tmp) / "run"),
            iterations=1,
            image_size=image_size,
            seed_epochs=1,
            epochs=1,
            min_steps=40,
            area_min=0.0,  # memory is measured here, not quality: every mask trains the next iteration
            area_max=1.0,
        )
        started = time.perf_counter()
        for _ in run_labelling(config):
            pass
        masks = len(list((Path(tmp) / "run" / "iter_01" / "masks").glob("*.png")))
    return {
        "photos": len(list(images.glob("*.png"))),
        "masks_written": masks,
        "seconds": round(time.perf_counter() - started, 1),
        "rss_mb_before_run": round(before, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def write_sets(root: Path, sizes: list[int]) -> dict[int, Path]:
    """One synthetic folder of the largest size; smaller sets link to its first photos."""
    from napari_gfn.demo import write_sample_folder

    largest = write_sample_folder(root / "all", n=max(sizes), size=160, seed=7) / "images"
    photos = sorted(largest.glob("*.png"))
    folders = {}
    for size in sizes:
        folder = root / f"set_{size}"
        folder.mkdir()
        for photo in photos[:size]:
            (folder / photo.name).symlink_to(photo)
        folders[size] = folder
    return folders


def full_resolution(repeats: int = 3) -> dict:
    """Time sharpening a 320-px prediction to a 6000 x 4000 photo."""
    from napari_gfn.engine.predict import sharpen_to_full_resolution
    from napari_gfn.engine.working import resize_image, working_shape

    # Built with open grids and uint8 noise, so making the photo does not set the peak RSS itself.
    yy, xx = np.ogrid[:4000, :6000]
    inside = (yy - 2000) ** 2 / 1500**2 + (xx - 3000) ** 2 / 2200**2 < 1
    photo = np.where(inside[..., None], np.uint8(150), np.uint8(60)).repeat(3, axis=2)
    photo += np.random.default_rng(0).integers(0, 40, photo.shape, dtype=np.uint8)
    small = resize_image(photo, working_shape(photo.shape, 320))
    truth = torch.from_numpy(inside.astype(np.float32))[None, None]
    probability = torch.nn.functional.interpolate(truth, size=small.shape[:2], mode="area")[0, 0]
    del truth
    before = current_rss_mb()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        mask = sharpen_to_full_resolution(probability, small, photo, 4, 1e-3)
        times.append(time.perf_counter() - started)
    return {
        "photo": "6000x4000",
        "median_seconds": round(float(np.median(times)), 3),
        # Peak RSS (which may have been set while making the photo) over the RSS before sharpening: an upper bound.
        "peak_rss_over_start_mb": round(peak_rss_mb() - before, 1),
        "mask_matches_the_ellipse": round(float(np.mean(mask == inside)), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # one labelling run, in its own process
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(label_set(args.child, args.image_size)))
        return

    result = {"threads": args.threads, "full_resolution": full_resolution(), "sets": []}
    print(json.dumps(result["full_resolution"]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for folder in write_sets(Path(tmp), args.sizes).values():
            command = [sys.executable, __file__, "--child", str(folder), "--image-size", str(args.image_size)]
            command += ["--threads", str(args.threads)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            result["sets"].append(json.loads(output.strip().splitlines()[-1]))
            print(json.dumps(result["sets"][-1]), flush=True)
    sets = result["sets"]
    result["rss_growth"] = round(sets[-1]["peak_rss_mb"] / sets[0]["peak_rss_mb"] - 1, 4)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
