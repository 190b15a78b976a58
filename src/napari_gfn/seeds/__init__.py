"""Initial (seed) masks: Otsu simple-to-complex, transfer from a source model, and CAM."""

from .otsu import OtsuResult, otsu_mask

__all__ = ["OtsuResult", "otsu_mask"]
