"""Browsing a run: how long each Next click holds napari's GUI thread, on camera-size photos.

Labels synthetic photos of --width x --height pixels headless (GrabCut seed and one
round, so each photo has two iterations' masks), opens the run in the Auto-label
dock, and clicks Next through the photos with --look seconds between clicks, as a
user looking at each photo leaves. A click's handler runs in the GUI thread, so
the viewer is frozen for as long as it takes. Reports every click's time and
their median, and the process's resident memory after each click: --rounds 3
clicks through the photos three times, to show whether memory grows with every
photo browsed. --run browses a run made before (to compare code versions on one
run; give --keep to keep the run this script makes).

    xvfb-run -a python benchmarks/browse_latency.py [--photos 6] [--width 6000] [--height 4000] [--look 3]
                                                    [--rounds 1] [--run RUN | --keep RUN]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import napari

from _timing import current_rss_mb
from ui_latency import wait

_WRITE_PHOTOS = """
import pathlib, imageio.v3 as iio
from napari_gfn.sample_data import make_sample_set
folder = pathlib.Path({folder!r}); folder.mkdir(parents=True)
for index, image in enumerate(make_sample_set("flower", {photos}, ({height}, {width}), seed=3).images):
    iio.imwrite(folder / f"photo_{{index:02d}}.jpg", image, quality=92)
"""


def make_run(run: Path, photos: int, width: int, height: int) -> Path:
    """Camera-size JPEGs, labelled by the command line as a user would."""
    folder = run.parent / f"{run.name}-photos"
    subprocess.run(
        [sys.executable, "-c", _WRITE_PHOTOS.format(folder=str(folder), photos=photos, width=width, height=height)],
        check=True,
    )
    label = ["label", str(folder), "--out", str(run), "--seed", "grabcut", "--iterations", "1"]
    subprocess.run([sys.executable, "-m", "napari_gfn", *label], check=True, stdout=subprocess.DEVNULL)
    return run


def click_through(run: Path, look_s: float, rounds: int) -> dict:
    viewer = napari.Viewer(title="browse latency")
    wait(2.0)
    _, dock = viewer.window.add_plugin_dock_widget("napari-gfn", "Auto-label")
    started = time.perf_counter()
    dock.open_run(run)
    open_ms = (time.perf_counter() - started) * 1000
    clicks_ms, rss_mb = [], [current_rss_mb()]
    for _ in range(rounds * len(dock.browser.photo.choices) - 1):
        wait(look_s)
        started = time.perf_counter()
        dock.browser.next_button.changed.emit(True)
        clicks_ms.append((time.perf_counter() - started) * 1000)
        rss_mb.append(current_rss_mb())
    viewer.close()
    return {
        "open_ms": open_ms,
        "next_click_ms": clicks_ms,
        "median_next_click_ms": statistics.median(clicks_ms),
        "rss_mb_after_each_photo": [round(rss) for rss in rss_mb],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=6)
    parser.add_argument("--width", type=int, default=6000)
    parser.add_argument("--height", type=int, default=4000)
    parser.add_argument("--look", type=float, default=3.0, help="seconds between clicks")
    parser.add_argument("--rounds", type=int, default=1, help="times to click through the photos")
    made = parser.add_mutually_exclusive_group()
    made.add_argument("--run", type=Path, help="browse this run instead of making one")
    made.add_argument("--keep", type=Path, help="make the run here, and keep it")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or make_run(args.keep or Path(tmp) / "run", args.photos, args.width, args.height)
        result = {"run": str(run), "look_s": args.look} | click_through(run, args.look, args.rounds)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
