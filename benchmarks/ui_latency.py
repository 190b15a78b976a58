"""GUI responsiveness during a run: how late a Qt timer fires while the Auto-label dock trains.

Opens a real napari viewer, starts an Auto-label run on synthetic sample photos
from a folder, and fires a 10 ms QTimer throughout. A timer's lateness (the
interval it took beyond 10 ms) is the time the event loop was busy or starved.
Reports p50, p95 and the worst lateness while idle and during the run (from
the moment the Start click's handler returns), and how long that handler took.
The goal is p95 < 50 ms and worst < 250 ms during the run.

    xvfb-run -a python benchmarks/ui_latency.py [--photos 32] [--image-size 160] [--all-cores] [--json out.json]

``--all-cores`` lets torch use every core for training (no core left for the GUI),
to show what the dock's thread limit is for.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtCore import QElapsedTimer, QEventLoop, QTimer

from napari_gfn.config import DEMO_CONFIG
from napari_gfn.demo import write_sample_folder
from napari_gfn.widgets import engine_task

TICK_MS = 10


class TimerLateness:
    """Records how late every tick of a repeating timer fires."""

    def __init__(self) -> None:
        self.late_ms: list[float] = []
        self._clock = QElapsedTimer()
        self._timer = QTimer()
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        self.late_ms.clear()
        self._clock.start()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _tick(self) -> None:
        self.late_ms.append(max(0.0, self._clock.restart() - TICK_MS))

    def summary(self) -> dict:
        late = np.asarray(self.late_ms)
        return {
            "ticks": int(late.size),
            "p50_ms": float(np.percentile(late, 50)),
            "p95_ms": float(np.percentile(late, 95)),
            "worst_ms": float(late.max()),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=DEMO_CONFIG.image_size)
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--all-cores", action="store_true", help="no core left for the GUI during training")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.all_cores:
        engine_task._leave_a_core_for_the_gui = lambda: None

    with tempfile.TemporaryDirectory() as tmp:
        sample = write_sample_folder(Path(tmp) / "sample", n=args.photos, size=args.image_size)
        viewer = napari.Viewer(title="ui latency")
        _, dock = viewer.window.add_plugin_dock_widget("napari-gfn", "Auto-label")
        dock.load_settings(
            DEMO_CONFIG.updated(images=str(sample / "images"), out=str(Path(tmp) / "run"), iterations=args.iterations)
        )
        wait(2.0)  # let the window settle
        lateness = TimerLateness()
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

    result = {"photos": args.photos, "image_size": args.image_size, "all_cores": args.all_cores}
    result |= {"start_click_ms": start_ms, "idle": idle, "during_run": run}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
