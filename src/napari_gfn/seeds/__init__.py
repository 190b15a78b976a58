"""Initial (seed) masks: Otsu simple-to-complex, transfer from a source model, CAM, and GrabCut."""

from .grabcut import grabcut_mask
from .otsu import OtsuResult, otsu_mask

__all__ = ["OtsuResult", "grabcut_mask", "otsu_mask"]
