"""Mask quality: foreground IoU and mIoU per photo, and across a run's iterations.

Conventions (the same as the anchor figures in the project notes): per photo,
pixels whose ignore mask is 255 are left out; IoU is 1 when the union is
empty; mIoU is the mean of the foreground and background IoU; a set's score
is the mean over its photos.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_gfn.engine.events import Progress
from napari_gfn.engine.images import (
    COLOUR_NOT_A_MASK,
    IMAGE_SUFFIXES,
    MASKS_ARE_GREY,
    ImageReadError,
    a_few,
    image_files,
    not_a_folder,
    read_mask,
    read_true_mask,
)
from napari_gfn.store import RunFolder, RunFolderError

__all__ = [
    "GroundTruth",
    "MaskScore",
    "evaluate_run",
    "iou",
    "mean_scores",
    "score_mask",
    "truth_mask_for_photo",
    "unscored_messages",
]


def iou(predicted: np.ndarray, truth: np.ndarray, keep: np.ndarray | None = None) -> float:
    if keep is not None:
        predicted, truth = predicted[keep], truth[keep]
    union = np.logical_or(predicted, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(predicted, truth).sum() / union)


def truth_mask_for_photo(name: str, truth: np.ndarray, photos: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A single true mask (any nonzero = object) as {stem: 0/255 mask} for the one photo of its size.

    A mask drawn in the viewer has no file name, so its size is the only link to its photo;
    when that size is ambiguous, the caller is told to use a folder of named masks instead.
    """
    same_size = [stem for stem, photo in photos.items() if photo.shape[:2] == truth.shape]
    if len(same_size) != 1:
        raise ValueError(
            f"ground-truth layer {name!r} ({truth.shape[1]}x{truth.shape[0]}) must match the size "
            f"of exactly one photo layer, but matches {len(same_size)}; use a ground-truth folder instead"
        )
    return {same_size[0]: np.where(np.asarray(truth) > 0, 255, 0).astype(np.uint8)}


@dataclass(frozen=True)
class MaskScore:
    fg_iou: float
    miou: float


def score_mask(predicted: np.ndarray, truth: np.ndarray, keep: np.ndarray | None = None) -> MaskScore:
    foreground = iou(predicted, truth, keep)
    background = iou(~predicted, ~truth, keep)
    return MaskScore(foreground, (foreground + background) / 2)


def mean_scores(scores: Iterable[MaskScore]) -> dict[str, float] | None:
    scores = list(scores)
    if not scores:
        return None
    return {
        "fg_iou": float(np.mean([s.fg_iou for s in scores])),
        "miou": float(np.mean([s.miou for s in scores])),
    }


_NO_TRUTH = "no ground-truth mask for this photo"


def unscored_messages(errors: Sequence[ImageReadError], scored: int) -> list[str]:
    """What kept photos from being scored; missing masks in one message, as often only a few photos have one, and
    colour pictures in one, as a folder of photos given for the masks makes hundreds.

    ``scored`` is how many photos were scored: when none was, the masks are likely named otherwise, or the folder
    is not the masks'.
    """
    grouped = {_NO_TRUTH: _missing_masks, COLOUR_NOT_A_MASK: _colour_pictures}
    messages = []
    for problem, one_message in grouped.items():
        alike = [error for error in errors if error.problem == problem]
        if alike:
            messages.append(str(alike[0]) if len(alike) == 1 else one_message(alike, scored))
    return messages + [str(error) for error in errors if error.problem not in grouped]


def _missing_masks(missing: list[ImageReadError], scored: int) -> str:
    names = a_few([Path(error.source).stem for error in missing])
    folder = Path(missing[0].source).parent
    naming = _naming(folder) if scored == 0 else ""
    return f"{len(missing)} photos have no ground-truth mask in {folder} ({names}){naming}"


def _colour_pictures(colour: list[ImageReadError], scored: int) -> str:
    folder = Path(os.path.commonpath([Path(error.source).parent for error in colour]))  # masks sorted by species
    names = a_few([Path(error.source).name for error in colour])
    photos = f"; is {folder} the photos rather than their masks?" if scored == 0 else ""
    return f"{len(colour)} files in {folder} ({names}) are colour pictures, not masks ({MASKS_ARE_GREY}){photos}"


def _naming(folder: Path) -> str:
    # Masks named otherwise (IMG_1_mask.png for IMG_1.jpg) are the usual reason that all are missing.
    example = next((path.name for path in sorted(folder.iterdir()) if path.suffix.lower() in IMAGE_SUFFIXES), None)
    if example is None:
        return ""
    return f"; a photo's mask is found by the photo's name (IMG_1.jpg: IMG_1.png), and this folder holds {example}, ..."


class GroundTruth:
    """True masks (and optional ignore masks) by photo stem, read on demand and checked for size."""

    def __init__(self, masks: os.PathLike | str, ignore: os.PathLike | str | None = None) -> None:
        self.masks = Path(masks)
        self.ignore = Path(ignore) if ignore else None
        for folder in (self.masks, self.ignore):
            if folder is not None and (problem := not_a_folder(folder)):
                raise ImageReadError(str(folder), problem)
        self._mask_paths = image_files(self.masks)
        self._ignore_paths = image_files(self.ignore) if self.ignore is not None else {}

    def load(self, stem: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
        """(truth, keep) for ``stem``, ``keep`` False where the ignore mask or the mask itself leaves pixels
        unlabelled (None when none is); raises ImageReadError naming a missing or wrong-sized file."""
        path = self._mask_paths.get(stem)
        if path is None:
            raise ImageReadError(str(self.masks / f"{stem}.png"), _NO_TRUTH)
        truth, keep = read_true_mask(path, shape)
        ignore_path = self._ignore_paths.get(stem)
        if ignore_path is not None:
            outside_ignore = read_mask(ignore_path, shape) != 255
            keep = outside_ignore if keep is None else keep & outside_ignore
        return truth, keep

    def score(self, stem: str, predicted: np.ndarray) -> MaskScore:
        truth, keep = self.load(stem, predicted.shape)
        return score_mask(predicted, truth, keep)


def evaluate_run(
    run: os.PathLike | str, truth: GroundTruth, on_progress: Callable[[Progress], object] | None = None
) -> tuple[list[dict], list[str]]:
    """Per finished iteration: mean fg IoU and mIoU over the photos with ground truth; plus problems met."""
    folder = RunFolder(run)
    folder.read_config()
    rows, problems, truth_errors = [], [], []
    iterations = folder.finished_iterations()
    paths = {k: folder.masks_of(k) for k in iterations}
    total, done = sum(len(p) for p in paths.values()), 0
    for iteration in iterations:
        scores = []
        for path in paths[iteration]:
            done += 1
            if on_progress is not None:
                on_progress(Progress("evaluate", done, total))
            try:
                predicted = folder.read_mask(iteration, path.stem)
            except RunFolderError as error:
                problems.append(str(error))
                continue
            try:
                scores.append(truth.score(path.stem, predicted))
            except ImageReadError as error:
                if iteration == iterations[0]:
                    truth_errors.append(error)
        summary = mean_scores(scores) or {"fg_iou": None, "miou": None}
        rows.append({"iteration": iteration, **summary, "images": len(scores)})
    first_scored = rows[0]["images"] if rows else 0
    return rows, unscored_messages(truth_errors, first_scored) + problems
