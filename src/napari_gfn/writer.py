"""napari's File > Save Layers for Labels layers: PNG or TIFF label images that read back unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_gfn._atomic import atomic_write_png, atomic_write_tiff

__all__ = ["write_labels"]


def _png_array(data: np.ndarray, path: Path) -> np.ndarray:
    """Label values as the smallest unsigned type PNG holds; PNG cannot store negative or > 16-bit labels."""
    if data.ndim != 2:
        raise ValueError(f"{path}: PNG holds one 2-D label image, but the layer is {data.ndim}-D; save it as .tif")
    low, high = (int(data.min()), int(data.max())) if data.size else (0, 0)
    if low < 0 or high > np.iinfo(np.uint16).max:
        raise ValueError(f"{path}: labels {low}..{high} do not fit a PNG (0..65535); save it as .tif")
    return data.astype(np.uint8 if high <= np.iinfo(np.uint8).max else np.uint16)


def write_labels(path: str, data: np.ndarray, meta: dict) -> list[str]:
    """Write a Labels layer's array to ``path`` (.png or .tif/.tiff); the label values are kept as they are."""
    target = Path(path)
    data = np.asarray(data)
    if target.suffix.lower() == ".png":
        atomic_write_png(target, _png_array(data, target))
    elif target.suffix.lower() in (".tif", ".tiff"):
        atomic_write_tiff(target, data)
    else:
        raise ValueError(f"{target}: napari-gfn writes labels as .png or .tif, not {target.suffix or 'no suffix'}")
    return [str(target)]
