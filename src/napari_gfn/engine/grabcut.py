"""OpenCV's GrabCut, run one way everywhere: repeatable, and safe on photos too plain for its colour models."""

from __future__ import annotations

import cv2
import numpy as np

from napari_gfn.engine.working import resize_image, resize_mask, working_shape

__all__ = ["grabcut", "redraw_edge_band", "scaled_band"]


def grabcut(
    photo: np.ndarray, labels: np.ndarray, rounds: int, rectangle: tuple[int, int, int, int] | None = None
) -> np.ndarray | None:
    """The object (boolean mask) GrabCut finds from ``labels`` (cv2.GC_* per pixel) or from ``rectangle``.

    None when the photo has too few distinct colours to fit the colour models.
    """
    labels = labels.copy()
    background_model, object_model = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.setRNGSeed(0)  # GrabCut starts its colour models with k-means: the same input gives the same mask
    mode = cv2.GC_INIT_WITH_MASK if rectangle is None else cv2.GC_INIT_WITH_RECT
    try:
        cv2.grabCut(np.ascontiguousarray(photo), labels, rectangle, background_model, object_model, rounds, mode)
    except cv2.error:
        return None
    return (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)


def scaled_band(band: int, working_side: int, side: int) -> int:
    """``band`` pixels at a long side of ``working_side``, as pixels at a long side of ``side`` (at least 1)."""
    return max(1, round(band * side / working_side))


def redraw_edge_band(
    photo: np.ndarray, mask: np.ndarray, band: int, rounds: int = 5, max_side: int | None = None
) -> np.ndarray:
    """``mask`` with the pixels within ``band`` of its edge decided again by GrabCut, from this photo's colours.

    The mask's inside, eroded by ``band``, stays object and its outside, dilated by ``band``, stays
    background, so only the edge can move, by at most ``band`` pixels. A photo longer than ``max_side``
    is decided at that long side, and only the pixels GrabCut changed there change in ``mask``.
    """
    if band < 1 or mask.all() or not mask.any():
        return mask  # no band, or no edge to move: not worth shrinking a large photo for
    if max_side is not None and max(mask.shape) > max_side:
        return _redraw_shrunk(photo, mask, band, rounds, max_side)
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    inside = cv2.erode(mask.astype(np.uint8), disk).astype(bool)
    near = cv2.dilate(mask.astype(np.uint8), disk).astype(bool)
    labels = np.full(mask.shape, cv2.GC_BGD, np.uint8)
    labels[near] = cv2.GC_PR_BGD
    labels[mask] = cv2.GC_PR_FGD
    labels[inside] = cv2.GC_FGD
    redrawn = grabcut(photo, labels, rounds)
    return mask if redrawn is None else redrawn


def _redraw_shrunk(photo: np.ndarray, mask: np.ndarray, band: int, rounds: int, max_side: int) -> np.ndarray:
    shape = working_shape(mask.shape, max_side)
    shrunk = resize_mask(mask, shape)
    redrawn = redraw_edge_band(resize_image(photo, shape), shrunk, scaled_band(band, max(mask.shape), max_side), rounds)
    changed = resize_mask(redrawn != shrunk, mask.shape)
    return np.where(changed, resize_mask(redrawn, mask.shape), mask)
