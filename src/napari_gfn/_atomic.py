"""Atomic file writes: write a temporary file beside the target, flush it to disk, then rename; and a stop (Ctrl-C,
SIGTERM, SIGHUP) held off the writes that go together."""

from __future__ import annotations

import functools
import io
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "atomic_write",
    "atomic_write_mask_png",
    "atomic_write_png",
    "atomic_write_text",
    "atomic_write_tiff",
    "stops_held",
    "why_unwritable",
]


def atomic_write(path: os.PathLike | str, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(stream)`` on a temporary file and move it over ``path`` only once it is complete.

    A reader, or a run killed mid-write, sees either the old file or the new
    one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _naming(path):
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            # mkstemp makes a file only its owner can read: a run's masks, or the labels exported, would be
            # kept from the colleagues who share the folder (a project's folder on a lab server).
            os.chmod(temporary, _mode_of_new_files())
            with os.fdopen(handle, "wb") as stream:
                write(stream)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    return path


def _mode_of_new_files() -> int:
    """The mode ``open`` gives a new file: 0o666 less the process's umask."""
    try:
        with open("/proc/self/status") as status:  # Linux: the umask, read without setting it
            umask = next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration):
        umask = _umask_read_once()
    return 0o666 & ~umask


@functools.cache
def _umask_read_once() -> int:
    # Elsewhere than on Linux, the umask is read only by setting it, for every thread at once: so once.
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """A system error in the block as the same kind of error about ``path``: a write that fails (a full disk)
    names no file, and a temporary file's name means nothing to the person who must make room."""
    try:
        yield
    except OSError as error:
        if error.errno is None:
            raise
        raise OSError(error.errno, error.strerror, str(path)) from error


def why_unwritable(folder: os.PathLike | str) -> str | None:
    """Why files could not be written in ``folder``, made with its missing parents if need be; None if they can.

    The folder that decides is the nearest one that exists, and trying a file there is the one sure test
    (permissions, a read-only mount, a file where a folder should be).
    """
    existing = next(path for path in (Path(folder).absolute(), *Path(folder).absolute().parents) if path.exists())
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        return f"{existing}: {error.strerror}"
    return None


def atomic_write_text(path: os.PathLike | str, text: str) -> Path:
    return atomic_write(path, lambda stream: stream.write(text.encode("utf-8")))


def _atomic_write_encoded(path: os.PathLike | str, encode: Callable[[io.BytesIO], object]) -> Path:
    # Encoders such as tifffile want a named file; encoding into memory first sidesteps that.
    buffer = io.BytesIO()
    encode(buffer)
    data = buffer.getvalue()
    return atomic_write(path, lambda stream: stream.write(data))


def atomic_write_png(path: os.PathLike | str, image, options: dict | None = None) -> Path:
    """Encode ``image`` (uint8 or uint16 array) as PNG in memory, with Pillow's ``options``, then write it
    atomically."""
    import imageio.v3 as iio

    return _atomic_write_encoded(path, lambda buffer: iio.imwrite(buffer, image, extension=".png", **(options or {})))


def atomic_write_mask_png(path: os.PathLike | str, mask) -> Path:
    """Write an object mask (nonzero or True: object) as a 0/255 PNG, atomically."""
    import numpy as np

    # Through bool and uint8: np.where(mask, 255, 0) makes an int64 array first, 0.25 s at 24 MP.
    return atomic_write_png(path, np.asarray(mask, dtype=bool).astype(np.uint8) * 255)


def atomic_write_tiff(path: os.PathLike | str, image) -> Path:
    """Encode ``image`` (any array) as TIFF in memory, then write it atomically."""
    import tifffile

    return _atomic_write_encoded(path, lambda buffer: tifffile.imwrite(buffer, image))


# SIGHUP (a terminal closed) stops a run as the others do; Windows has none.
_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextmanager
def stops_held() -> Iterator[None]:
    """Hold a Ctrl-C, SIGTERM or SIGHUP until the block ends, then let it stop the process as it would have.

    For writes that go together (an iteration's record and its log line), which a stop between them would part.
    A SIGKILL or a power cut still can.
    """
    handlers = [signal.getsignal(number) for number in _STOP_SIGNALS]
    # Python runs signal handlers in the main thread only, so no stop lands in another (the dock's worker); and a
    # handler set from outside Python (None here) could not be put back.
    if threading.current_thread() is not threading.main_thread() or None in handlers:
        yield
        return
    held: list[int] = []
    try:
        for number in _STOP_SIGNALS:
            signal.signal(number, lambda received, frame: held.append(received))
        yield
    finally:
        for number, handler in zip(_STOP_SIGNALS, handlers, strict=True):
            signal.signal(number, handler)
        for number in held:
            signal.raise_signal(number)
