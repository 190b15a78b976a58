"""GUI responsiveness: how long opening the Auto-label dock takes, and how late a Qt timer fires while it trains.

Opens a real napari viewer first and the dock from the plugin after it, as a
user does (nothing of napari-gfn or torch is loaded before), and reports how
long that took. Then starts an Auto-label run on synthetic sample photos from a
folder, and fires a 10 ms QTimer throughout. A timer's lateness (the interval
it took beyond 10 ms) is the time the event loop was busy or starved. Reports
p50, p95 and the worst lateness while idle and during the run (from the moment
the Start click's handler returns), and how long that handler took. The goal
is p95 < 50 ms and worst < 250 ms during the run.

    xvfb-run -a python benchmarks/ui_latency.py [--photos 32] [--image-size 160] [--all-cores] [--model-card]
                                                [--layers] [--json out.json]

``--layers`` opens the photos as Image layers and labels those, as a run from
layers does: up to 8 photos then each get a Labels layer at each iteration, not
only the one on screen; more, the one on screen alone, as in a folder run.

``--model-card`` first opens a model file in the Source model dock and reports
the timer's lateness while the dock reads its card (which loads torch, so the
run that follows finds it loaded).

``--all-cores`` lets torch use every core for training (no core left for the GUI),
to show what the dock's thread limit is for.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtCore import QElapsedTimer, QEventLoop, QTimer

TICK_MS = 10
DEMO_IMAGE_SIZE = 160  # napari_gfn.config.DEMO_CONFIG's, not imported before the dock opens


def _in_another_process(code: str) -> Path:
    """Run ``code``, which prints a path, in another process, so that this one loads nothing of napari-gfn."""
    written = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return Path(written.stdout.strip())


def write_sample_photos(folder: Path, photos: int, size: int) -> Path:
    """The demo's sample photos."""
    return _in_another_process(
        "import pathlib; from napari_gfn.demo import write_sample_folder as w; "
        f"print(w(pathlib.Path({str(folder)!r}), n={photos}, size={size}))"
    )


def write_model_file(path: Path) -> Path:
    """An untrained GFN's model file."""
    return _in_another_process(
        f"from napari_gfn.network import GFN, save_model; print(save_model(GFN(pretrained=False), {str(path)!r}))"
    )


class TimerLateness:
    """Records how long every tick of a repeating timer took to come."""

    def __init__(self) -> None:
        self.intervals_ms: list[float] = []
        self._clock = QElapsedTimer()
        self._timer = QTimer()
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        self.intervals_ms.clear()
        self._clock.start()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _tick(self) -> None:
        self.intervals_ms.append(self._clock.restart())

    def summary(self) -> dict:
        intervals = np.asarray(self.intervals_ms, dtype=float)
        late = np.maximum(0.0, intervals - TICK_MS)
        worst = int(late.argmax())
        return {
            "ticks": int(late.size),
            "p50_ms": float(np.percentile(late, 50)),
            "p95_ms": float(np.percentile(late, 95)),
            "worst_ms": float(late[worst]),
            "pauses_over_250_ms": int((late > 250).sum()),
            "worst_ends_at_s": float(intervals[: worst + 1].sum() / 1000),  # from start(): what the pause was
        }


def wait(seconds: float, until=lambda: False) -> None:
    """Run Qt's event loop, as napari does, for ``seconds`` or until ``until()`` is true."""
    loop = QEventLoop()
    check = QTimer()
    check.timeout.connect(lambda: until() and loop.quit())
    check.start(50)
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()
    check.stop()


def read_card_in_the_dock(viewer: napari.Viewer, model_file: Path, lateness: TimerLateness) -> dict:
    """The timer's lateness from the "Use this model" click until the Source model dock shows the card."""
    _, source = viewer.window.add_plugin_dock_widget("napari-gfn", "Source model")
    lateness.start()
    started = time.perf_counter()
    source.open_model(model_file)
    click_ms = (time.perf_counter() - started) * 1000
    wait(600, until=lambda: source.open_button.enabled)
    lateness.stop()
    return lateness.summary() | {"click_ms": click_ms, "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=DEMO_IMAGE_SIZE)
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--all-cores", action="store_true", help="no core left for the GUI during training")
    parser.add_argument("--model-card", action="store_true", help="first read a model card in the Source model dock")
    parser.add_argument("--layers", action="store_true", help="label the photos opened as Image layers")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        sample = write_sample_photos(Path(tmp) / "sample", args.photos, args.image_size)
        model_file = write_model_file(Path(tmp) / "model.pt") if args.model_card else None
        viewer = napari.Viewer(title="ui latency")
        wait(2.0)  # let the window settle
        opening = time.perf_counter()
        _, dock = viewer.window.add_plugin_dock_widget("napari-gfn", "Auto-label")
        dock_open_ms = (time.perf_counter() - opening) * 1000
        from napari_gfn.config import DEMO_CONFIG
        from napari_gfn.widgets import engine_task

        if args.all_cores:
            engine_task._leave_a_core_for_the_gui = lambda: None
        lateness = TimerLateness()
        # Before the run's settings are loaded: choosing a model switches the Auto-label dock to the transfer seed.
        card = read_card_in_the_dock(viewer, model_file, lateness) if model_file else None
        dock.load_settings(
            DEMO_CONFIG.updated(images=str(sample / "images"), out=str(Path(tmp) / "run"), iterations=args.iterations)
        )
        if args.layers:
            viewer.open(sorted((sample / "images").iterdir()), layer_type="image", rgb=True)
            dock.input_kind.value = "Image layers"
        wait(2.0)  # let the window settle
        lateness.start()
        wait(5.0)
        idle = lateness.summary()

        started = time.perf_counter()
        dock.start()  # the click's own handler: shows the first photo
        start_ms = (time.perf_counter() - started) * 1000
        lateness.start()
        wait(3600, until=lambda: dock.task.status in ("finished", "cancelled", "failed"))
        lateness.stop()
        run = lateness.summary() | {"seconds": time.perf_counter() - started, "status": dock.task.status}
        viewer.close()

    result = {"photos": args.photos, "image_size": args.image_size, "all_cores": args.all_cores, "layers": args.layers}
    result |= {"dock_open_ms": dock_open_ms, "start_click_ms": start_ms, "idle": idle, "during_run": run}
    if card is not None:
        result["model_card"] = card
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
