"""The whole run's time left, as said during a run, against the time the run then took to end.

Runs ``run_labelling`` (Otsu seed, every round run: no early stop) on a folder of photos, or on the built-in
synthetic set, and prints a table: at points of each round (its first report with a figure, a quarter, half
and three quarters of its training, the start and middle of its prediction), the figure said, the time the run
really had left then, and the error.

    python benchmarks/time_left.py [IMAGES] [--first N] [--iterations 3] [--image-size 320] [--out RUN]

``--first N`` labels the first N photos of IMAGES by name (linked into a temporary folder).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from napari_gfn.config import RunConfig
from napari_gfn.demo import write_sample_folder
from napari_gfn.engine import Progress, run_labelling


def said_during(config: RunConfig) -> tuple[list[tuple[float, Progress]], float]:
    """Each progress report with a figure and when it came; when the run ended."""
    said = []
    for event in run_labelling(config):
        if isinstance(event, Progress) and event.run_left_s is not None:
            said.append((time.monotonic(), event))
    return said, time.monotonic()


def points_of(said: list[tuple[float, Progress]]) -> list[tuple[str, float, Progress]]:
    """The reports to show: per phase, its first with a figure and those at a quarter, half, three quarters."""
    points, shown = [], set()
    for when, event in said:
        for name, fraction in (("first", 0.0), ("1/4", 0.25), ("1/2", 0.5), ("3/4", 0.75)):
            key = (event.phase, name)
            if key not in shown and event.done >= fraction * event.total:
                shown.add(key)
                points.append((name, when, event))
    return points


def first_photos(images: Path, count: int, folder: Path) -> Path:
    folder.mkdir()
    for photo in sorted(path for path in images.iterdir() if path.is_file())[:count]:
        (folder / photo.name).symlink_to(photo.resolve())
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="?", type=Path, help="a folder of photos (the synthetic set if left out)")
    parser.add_argument("--first", type=int, help="label only the first N photos of IMAGES, by name")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=RunConfig().image_size)
    parser.add_argument("--out", type=Path, help="the run folder (a temporary one if left out)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        images = args.images or write_sample_folder(Path(temporary) / "sample") / "images"
        if args.first:
            images = first_photos(images, args.first, Path(temporary) / "first")
        out = args.out or Path(temporary) / "run"
        config = RunConfig(
            images=str(images), out=str(out), iterations=args.iterations, image_size=args.image_size, converge_iou=1.1
        )
        started = time.monotonic()
        said, ended = said_during(config)
    photos = f"{args.images or 'the synthetic set'}" + (f", its first {args.first} photos" if args.first else "")
    print(f"{photos}: {args.iterations} rounds, image size {args.image_size}, {ended - started:.0f} s in all")
    print("| phase | point | said left | really left | error |")
    print("|---|---|---|---|---|")
    for name, when, event in points_of(said):
        really = ended - when
        error = (event.run_left_s - really) / really
        print(
            f"| {event.phase} | {name} ({event.done}/{event.total}) | {event.run_left_s:.0f} s | {really:.0f} s "
            f"| {error:+.0%} |"
        )


if __name__ == "__main__":
    main()
