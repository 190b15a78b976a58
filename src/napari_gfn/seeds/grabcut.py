"""GrabCut seed: OpenCV's GrabCut started from a rectangle just inside the frame, a prior for centred subjects."""

from __future__ import annotations

from collections.abc import Generator

import numpy as np

from napari_gfn.engine.events import Notice
from napari_gfn.engine.grabcut import grabcut
from napari_gfn.engine.refine import SeedContext, SeedOutput

__all__ = ["GRABCUT_INSET", "grabcut_mask", "grabcut_seed"]

# The rectangle starts this fraction of the width (and height) in from each side: what touches the
# frame is taken as background, everything inside may be object.
GRABCUT_INSET = 0.05


def grabcut_mask(photo: np.ndarray, inset: float = GRABCUT_INSET, rounds: int = 5) -> np.ndarray:
    """The object of an H x W x 3 uint8 photo, by GrabCut from a rectangle ``inset`` in from the border."""
    height, width = photo.shape[:2]
    left, top = max(1, round(inset * width)), max(1, round(inset * height))
    rectangle = (left, top, width - 2 * left, height - 2 * top)
    found = grabcut(photo, np.zeros((height, width), np.uint8), rounds, rectangle)
    # A photo too plain for GrabCut's colour models has no object, so the area filter drops it.
    return np.zeros((height, width), dtype=bool) if found is None else found


def grabcut_seed(context: SeedContext) -> Generator[Notice, None, SeedOutput]:
    """Iteration 0 is every photo's GrabCut mask; no training and no labels are needed."""
    yield Notice(
        f"GrabCut seed: each photo's object is looked for inside a rectangle {GRABCUT_INSET:.0%} in from its border",
        level="info",
    )
    return SeedOutput(mask_of=lambda stem, small: grabcut_mask(small))
