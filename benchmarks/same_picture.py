"""How far a photo's working copy moves when the photo is saved anew, edited, or replaced.

A resumed run makes a photo's working copy anew when the photo's file has changed, and counts the photo as
another picture when the new copy differs from the cached one by ``SAME_PICTURE_LEVELS`` or more on average
(``napari_gfn.engine.working.same_picture``). This script measures that mean difference, in levels of 0-255,
on real photos for changes that keep the picture (re-saved as JPEG at another quality) and changes that do not
(brighter, cropped, turned half round, another photo of the set). It reports the median, the 5th and 95th
percentiles and the share counted as the same picture.

    python benchmarks/same_picture.py ../shared/datasets/horses [--photos 100] [--image-size 320]
"""

from __future__ import annotations

import argparse
import io
import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from napari_gfn.engine.images import ImageSet
from napari_gfn.engine.working import SAME_PICTURE_LEVELS, picture_difference, resize_image, working_shape


def _jpeg(photo: np.ndarray, quality: int) -> np.ndarray:
    saved = io.BytesIO()
    Image.fromarray(photo).save(saved, format="JPEG", quality=quality)
    return np.array(Image.open(saved).convert("RGB"))


def _cropped(photo: np.ndarray, share: float) -> np.ndarray:
    """``share`` of each side cut off: the picture's proportions, and so its working shape, are kept."""
    height, width = photo.shape[:2]
    top, left = round(height * share), round(width * share)
    return photo[top : height - top, left : width - left]


# Each change, and whether the photo still shows the same picture after it.
CHANGES: dict[str, tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], bool]] = {
    "re-saved, JPEG quality 95": (lambda photo, _: _jpeg(photo, 95), True),
    "re-saved, JPEG quality 75": (lambda photo, _: _jpeg(photo, 75), True),
    "re-saved, JPEG quality 50": (lambda photo, _: _jpeg(photo, 50), True),
    "10% brighter": (lambda photo, _: np.array(ImageEnhance.Brightness(Image.fromarray(photo)).enhance(1.1)), False),
    "3% cut off each side": (lambda photo, _: _cropped(photo, 0.03), False),
    "turned half round": (lambda photo, _: np.ascontiguousarray(photo[::-1, ::-1]), False),
    "the next photo of the set": (lambda _, following: following, False),
}


def mean_difference(photo: np.ndarray, changed: np.ndarray, image_size: int) -> float | None:
    """Mean absolute difference of the two working copies, or None when their shapes differ (always another
    picture to a run)."""
    shape = working_shape(photo.shape, image_size)
    if working_shape(changed.shape, image_size) != shape:
        return None
    return picture_difference(resize_image(photo, shape), resize_image(changed, shape))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path, help="a dataset folder with images/")
    parser.add_argument("--photos", type=int, default=100, help="photos measured, the first by name")
    parser.add_argument("--image-size", type=int, default=320)
    args = parser.parse_args()
    photos = list(ImageSet.from_folder(args.dataset / "images"))[: args.photos + 1]
    decoded = [record.load() for record in photos]
    print(f"{len(decoded) - 1} photos of {args.dataset}; same picture below {SAME_PICTURE_LEVELS} levels")
    print("| change | same picture? | median | 5th pct | 95th pct | counted as the same picture |")
    print("|---|---|---|---|---|---|")
    for name, (change, keeps_picture) in CHANGES.items():
        differences = []
        for photo, following in itertools.pairwise(decoded):
            following = np.array(Image.fromarray(following).resize(photo.shape[1::-1]))
            differences.append(mean_difference(photo, change(photo, following), args.image_size))
        comparable = np.array([value for value in differences if value is not None])
        same = np.mean([value is not None and value < SAME_PICTURE_LEVELS for value in differences])
        low, median, high = np.percentile(comparable, [5, 50, 95]) if comparable.size else (np.nan,) * 3
        print(f"| {name} | {'yes' if keeps_picture else 'no'} | {median:.2f} | {low:.2f} | {high:.2f} | {same:.0%} |")


if __name__ == "__main__":
    main()
