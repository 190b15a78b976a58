"""Photos and masks at the network's working resolution, cached on disk so a large set never sits in memory."""

from __future__ import annotations

import os
import shutil
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import TypeVar

import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from napari_gfn._atomic import atomic_write_mask_png, atomic_write_png
from napari_gfn.engine.events import CancelToken, Notice, Progress
from napari_gfn.engine.images import ImageReadError, ImageRecord, ImageSet

__all__ = [
    "WorkingImages",
    "WorkingMasks",
    "picture_difference",
    "read_ahead",
    "read_each",
    "read_photos",
    "resize_image",
    "resize_mask",
    "same_picture",
    "working_shape",
]

Read = TypeVar("Read")
# Photos read at once, one per core up to 4 (a 12-MP photo decoded is 36 MB): on 2 cores two at once read
# 12-MP JPEGs 1.5 times and HEICs 1.9 times as fast as one by one.
READ_AHEAD = min(4, os.cpu_count() or 1)
# Mean difference, in levels of 0-255, below which two working copies count as one picture (see same_picture).
# Low, as the two mistakes cost unequally: a photo wrongly counted as changed sits out one round's training; one
# wrongly counted as unchanged is trained on with a mask of another picture. benchmarks/same_picture.py measures it.
SAME_PICTURE_LEVELS = 4


def working_shape(shape: tuple[int, int], image_size: int) -> tuple[int, int]:
    """Scale (H, W) so the long side is ``image_size``, aspect kept, unless the short side would fall below a
    quarter of it: then the short side is that quarter, and the long side longer.

    At a long side of 320, a 20:1 strip would be 16 pixels across, a single row of the network's features,
    and its masks came out inverted or empty. Photos up to 4:1 are brought to the size they always were.
    """
    height, width = shape[:2]
    scale = max(image_size / max(height, width), image_size / 4 / min(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def picture_difference(copy: np.ndarray, other: np.ndarray) -> float:
    """The mean absolute difference of two working copies of one shape, in levels of 0-255."""
    return float(np.mean(np.abs(copy.astype(np.int16) - other)))


def same_picture(copy: np.ndarray, other: np.ndarray) -> bool:
    """Whether two working copies of one shape show the same picture, though saved anew (as another JPEG, say).

    Re-saving a photo as a JPEG moves its working copy by 0.2 to 4 levels on average (the median at qualities 95
    to 50); cutting 3% off each side, by about 20, and another photo of the set by 30 to 70.
    """
    return picture_difference(copy, other) < SAME_PICTURE_LEVELS


def resize_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Anti-aliased bilinear resize of an H x W x 3 uint8 photo."""
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    resized = F.interpolate(tensor, size=shape, mode="bilinear", antialias=True, align_corners=False)
    return resized[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Area-weighted resize of a boolean mask, thresholded at one half."""
    tensor = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None, None]
    resized = F.interpolate(tensor, size=shape, mode="area" if shape[0] <= mask.shape[0] else "nearest")
    return resized[0, 0].numpy() >= 0.5


class WorkingImages:
    """Lazily resized copies of an image set's photos (see :func:`working_shape`)."""

    def __init__(self, images: ImageSet, image_size: int, cache_dir: Path | None = None) -> None:
        self.images = images
        self.image_size = image_size
        self.cache_dir = cache_dir
        self._by_stem = {record.stem: record for record in images}
        self._memory: dict[str, np.ndarray] = {}
        self.failed: dict[str, ImageReadError] = {}

    @property
    def stems(self) -> list[str]:
        return self.images.stems

    def record(self, stem: str) -> ImageRecord:
        return self._by_stem[stem]

    def full(self, stem: str) -> np.ndarray:
        """The photo at full resolution; a photo that fails once is remembered in ``failed``."""
        if stem in self.failed:
            raise self.failed[stem]
        try:
            return self._by_stem[stem].load()
        except ImageReadError as error:
            self.failed[stem] = error
            raise

    def _cache_path(self, stem: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / f"{self.image_size}" / f"{stem}.png"

    def get(self, stem: str, full: np.ndarray | None = None) -> np.ndarray:
        """The working-resolution photo; ``full`` saves a decode when the caller has it already."""
        path = self._cache_path(stem)
        if path is None:
            if stem not in self._memory:
                self._memory[stem] = self._resize(stem, full)
            return self._memory[stem]
        if self._is_current(stem, path):
            return iio.imread(path)
        return self._cache(stem, path, self._resize(stem, full))

    def is_current(self, stem: str) -> bool:
        """Whether the photo's cached working copy was made of the photo's file as it is now. Without a cache
        folder, copies live as long as the process, and count as current."""
        path = self._cache_path(stem)
        return path is None or self._is_current(stem, path)

    def renewed(self, stem: str) -> tuple[np.ndarray | None, np.ndarray]:
        """The photo's working copy cached before, if any, and the copy made anew: for a photo whose copy is not
        current (the photo edited, replaced, or copied without its file times; or the cache deleted)."""
        path = self._cache_path(stem)
        before = iio.imread(path) if path.is_file() else None
        return before, self._cache(stem, path, self._resize(stem, None))

    def _cache(self, stem: str, path: Path, small: np.ndarray) -> np.ndarray:
        atomic_write_png(path, small)
        # The copy carries the time of the photo it was made of. A disk that refuses times set by hand (some network
        # mounts) leaves the copy never current: made anew at each use, slower but right.
        with suppress(OSError):
            if (photo_time := self._photo_time(stem)) is not None:
                os.utime(path, ns=(photo_time, photo_time))
        return small

    def _is_current(self, stem: str, path: Path) -> bool:
        """Whether the cached copy was made of the photo file as it is: their modification times agree."""
        try:
            copy_time = path.stat().st_mtime_ns
        except FileNotFoundError:
            return False
        photo_time = self._photo_time(stem)
        # Within 2 s: a FAT or exFAT drive keeps a file's time to 2 seconds, so the copy's is stored rounded.
        return photo_time is None or abs(copy_time - photo_time) < 2_000_000_000

    def _photo_time(self, stem: str) -> int | None:
        path = self._by_stem[stem].path
        try:
            return None if path is None else path.stat().st_mtime_ns
        except OSError:  # gone or unreadable now: decoding it says so
            return None

    def _resize(self, stem: str, full: np.ndarray | None) -> np.ndarray:
        full = self.full(stem) if full is None else full
        return resize_image(full, working_shape(full.shape, self.image_size))


class _PhotoReader(Dataset):
    """Decodes photos and their working copies; a file that fails is returned, not raised, so the set goes on."""

    def __init__(self, working: WorkingImages, stems: Sequence[str]) -> None:
        self.working = working
        self.stems = list(stems)

    def __len__(self) -> int:
        return len(self.stems)

    def __getitem__(self, index: int) -> tuple[str, tuple[torch.Tensor, torch.Tensor] | ImageReadError]:
        return self.read(self.stems[index])

    def read(self, stem: str) -> tuple[str, tuple[torch.Tensor, torch.Tensor] | ImageReadError]:
        try:
            full = self.working.full(stem)
            # Tensors, because a worker process hands them over in shared memory rather than through a pipe.
            return stem, (torch.from_numpy(full), torch.from_numpy(self.working.get(stem, full)))
        except ImageReadError as error:
            return stem, error


def _one_sample(sample):
    return sample


def read_photos(
    working: WorkingImages, stems: Sequence[str], workers: int = 0
) -> Iterator[tuple[str, tuple[np.ndarray, np.ndarray] | ImageReadError]]:
    """(stem, (full photo, working photo)) in the order of ``stems``, or (stem, error) for a file that fails.

    With ``workers`` > 0, that many processes decode ahead while the caller
    predicts. They are forked, so the napari GUI, whose Qt threads make
    forking unsafe, reads in its own process (``workers=0``), in threads.
    """
    reader = _PhotoReader(working, stems)
    if workers > 0:
        photos = DataLoader(reader, batch_size=None, num_workers=workers, collate_fn=_one_sample)
    else:
        photos = (reading.result() for _, reading in read_ahead(reader.read, stems))
    for stem, photo in photos:
        if isinstance(photo, ImageReadError):
            working.failed[stem] = photo
            yield stem, photo
        else:
            yield stem, (photo[0].numpy(), photo[1].numpy())


def read_ahead(
    read: Callable[[str], Read], stems: Sequence[str], depth: int = READ_AHEAD
) -> Iterator[tuple[str, Future[Read]]]:
    """Each stem with its ``read(stem)`` under way, in order, with up to ``depth`` reads running in threads.

    Pillow decodes and torch computes without holding the GIL, so photos decode side by side and
    while the caller works. ``result()`` raises what ``read`` raised. A caller that stops early
    leaves no read running.
    """
    pool = ThreadPoolExecutor(max_workers=depth, thread_name_prefix="napari-gfn-read")
    try:
        under_way: deque[tuple[str, Future[Read]]] = deque()
        for stem in stems:
            under_way.append((stem, pool.submit(read, stem)))
            if len(under_way) > depth:
                yield under_way.popleft()
        yield from under_way
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def read_each(
    read: Callable[[str], Read], stems: Sequence[str], cancel: CancelToken, phase: str
) -> Generator[Progress | Notice, None, dict[str, Read]]:
    """``read(stem)`` for every stem, side by side (see :func:`read_ahead`), with progress; a photo that
    cannot be read is named and left out of the results."""
    results = {}
    for index, (stem, reading) in enumerate(read_ahead(read, stems)):
        cancel.check()
        try:
            results[stem] = reading.result()
        except ImageReadError as error:
            yield Notice(f"skipped {error}")
        yield Progress(phase, index + 1, len(stems))
    return results


class WorkingMasks:
    """Every iteration's masks at working resolution, as PNG files in the run's cache.

    Training reads its targets from here one by one, so a run over 100,000
    photos holds no mask in memory between iterations, only their areas.
    """

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir

    def folder(self, iteration: int) -> Path:
        return self.cache_dir / f"iter_{iteration:02d}"

    def path(self, iteration: int, stem: str) -> Path:
        return self.folder(iteration) / f"{stem}.png"

    def discard(self, iteration: int) -> None:
        shutil.rmtree(self.folder(iteration), ignore_errors=True)

    def write(self, iteration: int, stem: str, mask: np.ndarray) -> None:
        atomic_write_mask_png(self.path(iteration, stem), mask)

    def read(self, iteration: int, stem: str) -> np.ndarray:
        return iio.imread(self.path(iteration, stem)) > 127

    def has(self, iteration: int, stem: str) -> bool:
        return self.path(iteration, stem).is_file()

    def of_iteration(self, iteration: int, stems: Sequence[str]) -> IterationMasks:
        return IterationMasks(self, iteration, list(stems))


class IterationMasks(Mapping):
    """A read-only mapping stem -> working mask of one iteration, read from disk on access."""

    def __init__(self, masks: WorkingMasks, iteration: int, stems: list[str]) -> None:
        self.masks = masks
        self.iteration = iteration
        self.stems = stems
        self._members = frozenset(stems)

    def __getitem__(self, stem: str) -> np.ndarray:
        if stem not in self._members:
            raise KeyError(stem)
        return self.masks.read(self.iteration, stem)

    def __contains__(self, stem: object) -> bool:  # Mapping's own would read the mask from disk
        return stem in self._members

    def __iter__(self) -> Iterator[str]:
        return iter(self.stems)

    def __len__(self) -> int:
        return len(self.stems)
