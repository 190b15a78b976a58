"""Otsu seed: threshold photos with plain backgrounds and score how plain they are."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.color import rgb2gray
from skimage.filters import threshold_otsu

__all__ = ["OtsuResult", "otsu_mask"]


@dataclass(frozen=True)
class OtsuResult:
    """The object mask and Otsu's separability (between-class over total variance, 0..1)."""

    mask: np.ndarray
    separability: float


def _grey(image: np.ndarray) -> np.ndarray:
    return rgb2gray(image) if image.ndim == 3 else image.astype(float)


def _border(values: np.ndarray) -> np.ndarray:
    return np.concatenate([values[0], values[-1], values[1:-1, 0], values[1:-1, -1]])


def otsu_mask(image: np.ndarray) -> OtsuResult:
    """Otsu-threshold ``image``; the object is the class that touches the image border least."""
    grey = _grey(image)
    total_variance = grey.var()
    if total_variance == 0:
        return OtsuResult(np.zeros(grey.shape, dtype=bool), 0.0)
    bright = grey > threshold_otsu(grey)
    weight = bright.mean()
    between = weight * (1 - weight) * (grey[bright].mean() - grey[~bright].mean()) ** 2
    # Fraction of each class's pixels lying on the border: the background owns the frame.
    border = _border(bright)
    bright_share = border.sum() / max(bright.sum(), 1)
    dark_share = (~border).sum() / max((~bright).sum(), 1)
    mask = bright if bright_share <= dark_share else ~bright
    return OtsuResult(mask, float(between / total_variance))
