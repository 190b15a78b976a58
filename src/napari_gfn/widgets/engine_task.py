"""One engine job in napari's worker thread, with an evented status, progress bars and notifications."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import gc
import importlib.util
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path

from magicgui.widgets import PushButton
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning
from psygnal import Signal
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QWidget

from napari_gfn.engine.events import (
    CancelToken,
    Notice,
    PhaseBars,
    Progress,
    RunCancelled,
    describe_error,
    out_of_memory,
)
from napari_gfn.engine.images import file_being_decoded

__all__ = ["EngineTask", "Job", "job_settings"]

# A job turns a cancel token into the engine's event generator (which may return a value).
Job = Callable[[CancelToken], Generator]

# The warnings Python hides unless asked: for programmers, not for a run's user.
_HIDDEN_BY_DEFAULT = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)

# Warnings that come within this time of the first share one notification: a folder copied only in part
# can hold a hundred empty photos, and a hundred notifications would bury the viewer.
WARNING_BATCH_MS = 500

# The status line says where a job is at most this often: a phase that reads photos makes dozens of steps a second.
PROGRESS_SAID_EVERY_S = 0.25


def _load_torch_libraries() -> None:
    """Load torch's C++ libraries (libtorch and what it needs) through a ctypes call, which releases the GIL.

    ``import torch`` loads them through Python's own dlopen, which holds the GIL for the half second or more
    their start-up code takes, so napari's GUI thread stalled even though torch loaded in a worker thread.
    The import then finds them loaded. libtorch_python, which needs the GIL, is left to the import.
    """
    if not sys.platform.startswith("linux") or "torch" in sys.modules:
        return
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return
    libtorch = Path(spec.submodule_search_locations[0], "lib", "libtorch.so")
    dlopen = getattr(ctypes.CDLL(None), "dlopen", None)
    if dlopen is None or not libtorch.is_file():
        return
    dlopen.restype = ctypes.c_void_p
    dlopen.argtypes = (ctypes.c_char_p, ctypes.c_int)
    dlopen(os.fsencode(libtorch), os.RTLD_NOW | os.RTLD_LOCAL)  # on failure (NULL) the import loads it as usual


def _load_the_engine() -> None:
    """Import the engine's torch-bound modules, which take seconds the first time, in a job's worker thread, so
    that the GUI never waits for them."""
    _load_torch_libraries()
    import napari_gfn.engine.refine
    import napari_gfn.engine.source  # noqa: F401


@functools.cache
def _all_threads() -> int:
    """torch's own thread count, read before any job sets it."""
    import torch

    return torch.get_num_threads()


def _set_torch_threads(count: int) -> None:
    import torch

    torch.set_num_threads(count)


class JobFailed(Exception):
    """A job's RuntimeError, re-raised as a plain Exception.

    superqt's worker swallows a RuntimeError as if the worker had been deleted: no ``errored``
    and no ``finished`` signal, so the dock would wait for ever.
    """


def _leave_a_core_for_the_gui() -> None:
    """Train on all cores but one, so Qt's event loop is never starved on a small machine.

    torch keeps a count per thread, copied from the last one set when the thread first uses torch,
    so every job sets it in its own worker thread, which may have run an earlier job.
    """
    _set_torch_threads(max(1, _all_threads() - 1))


class _JobSettings:
    """The process-wide settings of running jobs, set when the first starts and undone when the last ends.

    The first also loads the engine, in its worker thread. Every object that exists when the first job starts
    (napari's heap) is kept out of garbage collection: a full collection scans about 0.6 M objects once napari
    and torch are loaded, holding the GIL for about 0.2 s, and falling while the viewer added an iteration's
    layer, it doubled that pause. What the jobs make is still collected. Two docks may run jobs at once (a
    source model training beside a labelling run), so the first to end must not unfreeze the heap or give
    all cores back under the other.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            self._running += 1
            if self._running == 1:
                gc.freeze()  # first, or the many objects of torch's import set off full collections of it
                _load_the_engine()
                gc.freeze()  # the engine's modules join it
        _leave_a_core_for_the_gui()
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0:
                    gc.unfreeze()
                    _set_torch_threads(_all_threads())


job_settings = _JobSettings()


def _drive(job: Job, cancel: CancelToken, uses_torch: bool) -> Generator:
    try:
        with job_settings() if uses_torch else contextlib.nullcontext():
            return (yield from job(cancel))
    except RunCancelled:
        return None
    except RuntimeError as error:
        raise JobFailed(str(out_of_memory(error) or error)) from error
    finally:
        # No gc.collect() here: a full collection of napari's heap holds the GIL for a third of a second.
        if uses_torch:
            _release_gpu_memory()


def _release_gpu_memory() -> None:
    """Hand the GPU memory of a finished job back to other programs."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# Each job's worker, while it exists, and the job's cancel token; see _let_jobs_end.
_cancel_tokens: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@atexit.register
def _let_jobs_end(seconds: float = 30) -> None:
    """Cancel each job still running at exit (napari closed mid-run) and wait, up to ``seconds``, for it to end.

    Each stops at its next cancel check, usually within a second, as a cancelled job does: a run's log says so,
    and a run opened later reads as cancelled, not as killed. Python deletes the Qt objects a worker reports
    through only after this; a worker still running then would fail on them, and PyQt would abort the process.
    """
    deadline = time.monotonic() + seconds
    running = [(worker, cancel) for worker, cancel in list(_cancel_tokens.items()) if worker.is_running]
    for _, cancel in running:
        cancel.cancel()
    while any(worker.is_running for worker, _ in running) and time.monotonic() < deadline:
        time.sleep(0.05)


class _NamedJob(functools.partial):
    """A worker's function, named as napari lists it when the window is closed mid-job: "Executing napari-gfn
    auto-label", where a function shows as "Executing <function _relay at 0x7f...>"."""

    def __new__(cls, name: str, func: Callable, /, *args):
        named = super().__new__(cls, func, *args)
        named.name = name
        return named

    def __str__(self) -> str:
        return f"napari-gfn {self.name}"


def _relay(events: Generator, quitting: Callable[[], bool], cancel: CancelToken) -> Generator:
    """The worker's generator function, over a job that :class:`EngineTask` keeps a handle on.

    napari quits every worker as it quits itself, and a quit worker takes no next step. So a job whose worker is
    quitting is ended here, in the worker's thread, where it runs: see :func:`_end_as_cancelled`.
    """
    while True:
        try:
            event = next(events)
        except StopIteration as end:
            return end.value
        if quitting():
            _end_as_cancelled(events, cancel)
            return None
        yield event


def _end_as_cancelled(events: Generator, cancel: CancelToken) -> None:
    """Cancel a job whose worker quits, and let it go on to its next cancel check (the engine checks just after
    each event), where it stops as a cancelled job does: a run's log says so (a run opened later reads as
    cancelled, not as killed), and the job's clean-up (the cores and the frozen heap given back) runs now.
    """
    cancel.cancel()
    for _ in events:  # nobody is left to show them
        pass


class EngineTask:
    """Runs one job at a time; ``status`` is idle, running, cancelling, finished, cancelled or failed.

    Events reach the GUI thread through the worker's ``yielded`` signal:
    :class:`Progress` drives a bar (with ETA) in napari's activity dock,
    :class:`Notice` becomes a notification (warnings that come together share one),
    anything else goes to ``on_result``.
    """

    status_changed = Signal(str)
    # The status with the phase under way and its ETA, then the whole run's once known ("running: iter 2 of 3: train:
    # 40 of 150, 00:45 left, whole run 09:40 left"): napari's activity dock, which shows the phase's bar, starts closed.
    # After "failed", why the job stopped.
    progress_changed = Signal(str)

    def __init__(self, name: str, uses_torch: bool = True) -> None:
        """``uses_torch=False`` for jobs that need none of it (an export), so that they start at once."""
        self.name = name
        self.uses_torch = uses_torch
        self.status = "idle"
        self.worker = None
        self._cancel = CancelToken()
        self._bars = PhaseBars(
            lambda phase, total, postfix: progress(total=total, desc=f"{self.name}: {phase}", postfix=postfix)
        )
        self.dock_closed = False  # once the attached dock is destroyed, nothing may touch its widgets
        self._progress_said_at = 0.0
        self._warnings: list[str] = []
        self._job_warnings: list[str] = []  # appended to in the threads that warned
        self._job_warnings_shown: set[str] = set()

    def attach(
        self,
        dock: QWidget,
        on_status: Callable[[str], None] | None = None,
        *,
        start_buttons: Sequence[PushButton] = (),
        cancel_button: PushButton | None = None,
    ) -> None:
        """Report status changes to ``dock``; when the dock is destroyed (the viewer closed), cancel the job
        and stop calling into the dock, while the engine keeps every finished iteration on disk.

        ``start_buttons`` are disabled while a job runs; ``cancel_button`` cancels it and is enabled only then.
        """
        buttons = [(button, False) for button in start_buttons]
        if cancel_button is not None:
            cancel_button.changed.connect(self.cancel)
            buttons.append((cancel_button, True))
        if buttons:
            self.status_changed.connect(lambda _: self._enable(buttons))
        if on_status is not None:
            self.status_changed.connect(on_status)
            self.progress_changed.connect(on_status)
        dock.destroyed.connect(self._on_dock_closed)

    def _enable(self, buttons: Sequence[tuple[PushButton, bool]]) -> None:
        for button, while_running in buttons:
            button.enabled = self.running == while_running

    def _on_dock_closed(self, *_) -> None:
        self.dock_closed = True
        self.status_changed.disconnect()
        self.progress_changed.disconnect()
        self.cancel()

    @property
    def running(self) -> bool:
        return self.status in ("running", "cancelling")

    def start(
        self,
        job: Job,
        on_result: Callable[[object], None] | None = None,
        on_returned: Callable[[object], None] | None = None,
    ) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self._cancel = CancelToken()
        events = _drive(job, self._cancel, self.uses_torch)
        connections = {
            "yielded": lambda event: self._on_event(event, on_result),
            "errored": self._on_error,  # connected here, or the worker also re-raises the error in the GUI thread
            "finished": self._on_finished,
            # A quit that lands between an event and the job's next step finds the job waiting there.
            "aborted": functools.partial(_end_as_cancelled, events, self._cancel),
        }
        if on_returned is not None:
            connections["returned"] = lambda value: self.dock_closed or on_returned(value)
        quitting = lambda: worker.abort_requested  # noqa: E731 (the worker it names is made next)
        relay = _NamedJob(self.name, _relay, events, quitting, self._cancel)
        worker = create_worker(relay, _connect=connections, _start_thread=False)
        # superqt's worker hands on the warnings raised while it runs, which napari does not show: a ResNet with
        # no ImageNet weights, or a damaged photo. A decoder's names no file, and only the thread that warned knows
        # which file it was decoding: so each is taken there, not queued.
        worker.warned.connect(self._keep_a_warning, type=Qt.ConnectionType.DirectConnection)
        self._job_warnings.clear()  # any that came after the last job had ended
        self._job_warnings_shown.clear()
        self.worker = worker
        _cancel_tokens[worker] = self._cancel
        self._set_status("running")
        worker.start()

    def cancel(self) -> None:
        """Ask the job to stop; the engine checks at least once per batch, and finished work stays."""
        if self.running:
            self._cancel.cancel()
            self._set_status("cancelling")

    def _set_status(self, status: str) -> None:
        self.status = status
        self.status_changed.emit(status)

    def _keep_a_warning(self, shown: tuple) -> None:
        message, category = shown[:2]
        # While a job runs, superqt's worker takes every thread's warnings: the GUI thread's are napari's own.
        if threading.current_thread() is threading.main_thread() or issubclass(category, _HIDDEN_BY_DEFAULT):
            return
        decoded = file_being_decoded()
        self._job_warnings.append(str(message) if decoded is None else f"{decoded}: {message}")

    def _show_job_warnings(self) -> None:
        """The warnings kept since the last event, each once a job."""
        while self._job_warnings:
            message = self._job_warnings.pop(0)
            if message not in self._job_warnings_shown:
                self._job_warnings_shown.add(message)
                self._warn(message)

    def _on_event(self, event: object, on_result: Callable[[object], None] | None) -> None:
        self._show_job_warnings()
        if isinstance(event, Progress):
            self._bars.show(event)
            self._say_progress()
        elif isinstance(event, Notice) and event.level == "info":
            show_info(event.message)
        elif isinstance(event, Notice):
            self._warn(event.message)
        elif on_result is not None and not self.dock_closed:
            on_result(event)

    def _say_progress(self) -> None:
        now = time.monotonic()
        bar = self._bars.bar
        # The job's end can come while napari updates the bar (it lets Qt events in): then nothing is under way.
        if not self.running or bar is None or now - self._progress_said_at < PROGRESS_SAID_EVERY_S:
            return
        self._progress_said_at = now
        said = "{n_fmt} of {total_fmt}, {remaining} left{postfix}"  # the postfix: the whole run's time left
        counts = bar.format_meter(**{**bar.format_dict, "bar_format": said})
        self.progress_changed.emit(f"{self.status}: {self._bars.phase}: {counts}")

    def _warn(self, message: str) -> None:
        if not self._warnings:
            QTimer.singleShot(WARNING_BATCH_MS, self._show_warnings)
        self._warnings.append(message)

    def _show_warnings(self) -> None:
        warnings, self._warnings = self._warnings, []
        if len(warnings) == 1:
            show_warning(warnings[0])
        elif warnings:
            show_warning(f"{self.name}: {len(warnings)} warnings\n" + "\n".join(warnings))

    def _on_error(self, error: Exception) -> None:
        self._show_job_warnings()
        self._show_warnings()
        # A job's RuntimeError (a LabellingError, say) comes as JobFailed, whose message is the job's own.
        detail = str(error) if isinstance(error, JobFailed) else describe_error(error)
        stopped = f"{self.name} stopped: {detail}"
        show_error(stopped)
        self._set_status("failed")
        # Then why, for the dock's status line: napari's notification shows the first line of it, a path or so.
        self.progress_changed.emit(stopped)

    def _on_finished(self) -> None:
        self._show_job_warnings()
        self._show_warnings()
        self._bars.close()
        if self.status == "failed":
            return
        self._set_status("cancelled" if self._cancel.cancelled else "finished")
