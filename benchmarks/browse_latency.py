"""Browsing a run: how long napari's GUI thread stalls, and how long a photo takes to show, on camera-size photos.

Labels synthetic photos of --width x --height pixels headless (GrabCut seed and one
round, so each photo has two iterations' masks), opens the run in the Auto-label
dock, clicks Next through the photos with --look seconds between clicks, as a user
looking at each photo leaves, then chooses up to --choices photos from the Photo
list that have no layers open (never the photo read ahead). For the
opening and each action it reports how long until the canvas draws the photo, and the
longest stall of the GUI thread from the action until the next: the worst lateness
of a 10 ms Qt timer (as benchmarks/ui_latency.py measures), which counts the
action's handler, the layers made after a read in a thread and the layers of
photos seen long ago closed after it alike. Reports their medians, and the
process's resident memory after each Next: --rounds 3 clicks through the photos
three times, to show whether memory grows with every photo browsed. --run browses
a run made before (to compare code versions on one run; give --keep to keep the
run this script makes).

    xvfb-run -a python benchmarks/browse_latency.py [--photos 6] [--width 6000] [--height 4000] [--look 3]
                                                    [--rounds 1] [--choices 4] [--run RUN | --keep RUN]
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
from ui_latency import TimerLateness, wait

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


def click_through(run: Path, look_s: float, rounds: int, choices: int) -> dict:
    viewer = napari.Viewer(title="browse latency")
    wait(2.0)
    _, dock = viewer.window.add_plugin_dock_widget("napari-gfn", "Auto-label")
    browser = dock.browser
    opening = timed(viewer, browser, lambda: dock.open_run(run), look_s)
    clicks, rss_mb = [], [current_rss_mb()]
    for _ in range(rounds * len(browser.photo.choices) - 1):
        clicks.append(timed(viewer, browser, lambda: browser.next_button.changed.emit(True), look_s))
        rss_mb.append(current_rss_mb())
    chosen = []
    for _ in range(choices):
        if (closed := _photo_not_open(viewer, browser)) is None:
            break
        chosen.append(timed(viewer, browser, lambda stem=closed: setattr(browser.photo, "value", stem), look_s))
    viewer.close()
    return (
        {"open": opening}
        | _summary("next", clicks)
        | _summary("choice", chosen)
        | {"rss_mb_after_each_photo": [round(rss) for rss in rss_mb]}
    )


def timed(viewer: napari.Viewer, browser, act, look_s: float) -> dict:
    """How long after ``act`` the canvas first draws the photo chosen, and the GUI thread's longest stall from
    ``act`` until ``look_s`` after that, as the user looks at the photo (and the layers of photos seen long ago
    close)."""
    drawn: list[float] = []

    def on_draw(_) -> None:
        if browser.run_layers is not None and browser.run_layers.current == browser.photo.value:
            drawn.append(time.perf_counter())

    # The scene canvas's own event, as napari has no public one: it comes with each real paint of the canvas.
    draws = viewer.window._qt_viewer.canvas._scene_canvas.events.draw
    draws.connect(on_draw)
    lateness = TimerLateness()
    lateness.start()
    wait(0.1)
    started = time.perf_counter()
    act()
    while not drawn:
        wait(0.005)
    wait(look_s)
    lateness.stop()
    draws.disconnect(on_draw)
    shown_ms = (drawn[0] - started) * 1000
    return {"shown_ms": round(shown_ms), "longest_pause_ms": round(lateness.summary()["worst_ms"])}


def _photo_not_open(viewer: napari.Viewer, browser) -> str | None:
    """The first photo in the list with no layer open that is not the one read ahead: what choosing a photo
    seen long ago, or never, from the Photo list costs."""
    stems = list(browser.photo.choices)
    read_ahead = stems[(stems.index(browser.photo.value) + 1) % len(stems)]
    open_now = {layer.metadata.get("napari_gfn", {}).get("stem") for layer in viewer.layers}
    return next((stem for stem in stems if stem not in open_now and stem != read_ahead), None)


def _summary(action: str, timings: list[dict]) -> dict:
    if not timings:
        return {}
    return {
        f"{action}_shown_ms": [timing["shown_ms"] for timing in timings],
        f"{action}_longest_pause_ms": [timing["longest_pause_ms"] for timing in timings],
        f"median_{action}_shown_ms": statistics.median(timing["shown_ms"] for timing in timings),
        f"median_{action}_longest_pause_ms": statistics.median(timing["longest_pause_ms"] for timing in timings),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=6)
    parser.add_argument("--width", type=int, default=6000)
    parser.add_argument("--height", type=int, default=4000)
    parser.add_argument("--look", type=float, default=3.0, help="seconds between clicks")
    parser.add_argument("--rounds", type=int, default=1, help="times to click through the photos")
    parser.add_argument("--choices", type=int, default=4, help="photos then chosen from the Photo list")
    made = parser.add_mutually_exclusive_group()
    made.add_argument("--run", type=Path, help="browse this run instead of making one")
    made.add_argument("--keep", type=Path, help="make the run here, and keep it")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or make_run(args.keep or Path(tmp) / "run", args.photos, args.width, args.height)
        result = {"run": str(run), "look_s": args.look} | click_through(run, args.look, args.rounds, args.choices)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
