"""Ridge seed: the largest connected web of thin, line-like structures, a prior for trees and branches."""

from __future__ import annotations

from collections.abc import Generator

import cv2
import numpy as np
from skimage.filters import sato
from skimage.measure import label

from napari_gfn.engine.events import Notice
from napari_gfn.engine.refine import SeedContext, SeedOutput

__all__ = ["largest_web", "ridge_mask", "ridge_response", "ridge_seed"]

# Chosen on the even-numbered photos of cherry-dev at the working size (long side 320 px) and
# reported on the odd ones (benchmarks/ridge_search.py; docs/results.md).
RIDGE_SIGMAS = (2, 3, 4)  # line half-widths looked for, in working-size pixels
RIDGE_SHARE = 0.3  # the strongest 30% of the photo's ridge response is line
RIDGE_WIDENING = 5 / 320  # lines are widened by this fraction of the long side


def ridge_response(photo: np.ndarray, sigmas: tuple[float, ...] = RIDGE_SIGMAS) -> np.ndarray:
    """How line-like each pixel of an H x W x 3 photo is, for dark lines (branches on sky) and light ones (bark)."""
    grey = photo.astype(np.float32).mean(axis=-1) / 255.0
    dark = sato(grey, sigmas=sigmas, black_ridges=True)
    light = sato(grey, sigmas=sigmas, black_ridges=False)
    return np.maximum(dark, light)


def ridge_mask(
    photo: np.ndarray,
    sigmas: tuple[float, ...] = RIDGE_SIGMAS,
    share: float = RIDGE_SHARE,
    widening: float = RIDGE_WIDENING,
) -> np.ndarray:
    """The object of an H x W x 3 uint8 photo: its strongest ridges' largest connected web, widened."""
    return largest_web(ridge_response(photo, sigmas), share, widening)


def largest_web(response: np.ndarray, share: float, widening: float) -> np.ndarray:
    """The largest connected part of the ``share`` most line-like pixels, widened by ``widening`` of the long side."""
    lines = response > np.quantile(response, 1.0 - share)
    # A tree is one connected web of trunk and branches; the trees behind it break up into small pieces.
    parts = label(lines, connectivity=2)
    if parts.max() == 0:
        return lines
    sizes = np.bincount(parts.ravel())
    sizes[0] = 0
    web = parts == sizes.argmax()
    width = round(widening * max(response.shape))
    if width < 2:
        return web
    return cv2.dilate(web.astype(np.uint8), np.ones((width, width), np.uint8)) > 0


def ridge_seed(context: SeedContext) -> Generator[Notice, None, SeedOutput]:
    """Iteration 0 is every photo's ridge mask; no training and no labels are needed."""
    yield Notice(
        "Ridge seed: each photo's object is its largest connected web of thin lines (trunk and branches)",
        level="info",
    )
    return SeedOutput(mask_of=lambda stem, small: ridge_mask(small))
