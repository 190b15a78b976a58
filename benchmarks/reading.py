"""Reading photos in worker processes: prediction throughput with ``--workers`` 0, 1, 2, ...

Writes a folder of large synthetic JPEG (or HEIC) photos, then predicts every one of them
(iteration 0 of a transfer-seed run, so there is no training) once per worker
count, each time into a fresh run folder. Reports photos per second. With 0 workers,
photos are read in threads of the run's own process.

    python benchmarks/reading.py [--photos 40] [--width 4000] [--height 3000] [--workers 0 1 2]
        [--suffix .jpg|.heic] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch


def write_photos(folder: Path, count: int, width: int, height: int, suffix: str = ".jpg") -> None:
    """JPEG or HEIC photos of an ellipse on noise: decoding them costs what a camera's photo costs."""
    from PIL import Image

    if suffix == ".heic":
        import pillow_heif  # the tests' HEIC writer (napari-gfn's own pi-heif only reads)

        pillow_heif.register_heif_opener()
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.ogrid[:height, :width]
    for index in range(count):
        radius = rng.uniform(0.25, 0.4)
        inside = (yy / height - 0.5) ** 2 + (xx / width - 0.5) ** 2 < radius**2
        photo = np.where(inside[..., None], np.uint8(170), np.uint8(60)).repeat(3, axis=2)
        photo += rng.integers(0, 50, photo.shape, dtype=np.uint8)
        Image.fromarray(photo).save(folder / f"photo_{index:03d}{suffix}", quality=90)


def predict_all(images: Path, model_file: Path, workers: int) -> float:
    """Seconds to predict and write every photo's mask (iteration 0 of a transfer-seed run)."""
    from napari_gfn.config import RunConfig
    from napari_gfn.engine import IterationResult, run_labelling

    with tempfile.TemporaryDirectory() as tmp:
        config = RunConfig(
            images=str(images),
            out=str(Path(tmp) / "run"),
            seed="transfer",
            source_model=str(model_file),
            iterations=0,
            device="cpu",
            workers=workers,
        )
        results = [event for event in run_labelling(config) if isinstance(event, IterationResult)]
    return results[0].elapsed_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--suffix", choices=[".jpg", ".heic"], default=".jpg")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    from napari_gfn.network import GFN, save_model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        images = Path(tmp) / "photos"
        write_photos(images, args.photos, args.width, args.height, args.suffix)
        model_file = save_model(GFN(), Path(tmp) / "model.pt")
        for workers in args.workers:
            seconds = predict_all(images, model_file, workers)
            rows.append({"workers": workers, "seconds": round(seconds, 1), "photos_per_s": args.photos / seconds})
            print(f"workers {workers}: {seconds:6.1f} s, {args.photos / seconds:.2f} photos/s", flush=True)
    report = {
        "photos": args.photos,
        "size": f"{args.width}x{args.height}",
        "suffix": args.suffix,
        "torch_threads": torch.get_num_threads(),
        "runs": rows,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
