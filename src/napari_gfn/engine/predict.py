"""Prediction: the network at working resolution, then guided upsampling to the photo's full resolution."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from napari_gfn.config import RunConfig
from napari_gfn.engine.grabcut import redraw_edge_band, scaled_band
from napari_gfn.engine.training import mixed_precision
from napari_gfn.engine.working import resize_mask
from napari_gfn.network import upsampling_coefficients
from napari_gfn.network.inference import inference_copy

__all__ = ["MaskPredictor", "Prediction", "sharpen_seed_mask", "sharpen_to_full_resolution", "uncertain_share"]


def _as_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(image).to(device).permute(2, 0, 1)[None].float() / 255


# Rows of the full-resolution photo sharpened at a time: the float guide and coefficients of one band
# stay near 100 MB even for a 6000-pixel-wide photo, where a whole 24-megapixel photo would need >1 GB.
_BAND_PIXELS = 4 * 1024 * 1024


def sharpen_to_full_resolution(
    probability: torch.Tensor, small: np.ndarray, full: np.ndarray, radius: int, eps: float, threshold: float = 0.5
) -> np.ndarray:
    """Object probability at working resolution (H x W) to a full-resolution boolean mask (probability >= threshold).

    The photo is the colour guide, so the mask's edges follow the photo's edges.
    Large photos are processed in bands of rows, so memory stays bounded.
    """
    device = probability.device
    if small.shape[:2] == full.shape[:2]:
        return (probability >= threshold).cpu().numpy()
    coefficients = upsampling_coefficients(_as_tensor(small, device), probability[None, None], radius, eps)
    height, width = full.shape[:2]
    band_rows = max(1, _BAND_PIXELS // width)
    mask = np.empty((height, width), dtype=bool)
    for first in range(0, height, band_rows):
        band = _as_tensor(full[first : first + band_rows], device)
        mask[first : first + band_rows] = (coefficients.apply(band, height, first)[0, 0] >= threshold).cpu().numpy()
    return mask


def sharpen_seed_mask(mask: np.ndarray, small: np.ndarray, full: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """A seed's boolean mask at working resolution, sharpened to full resolution as iteration 0 is written."""
    return sharpen_to_full_resolution(torch.from_numpy(mask.astype(np.float32)), small, full, radius, eps)


# Probabilities this far from both 0 and 1 count as uncertain: a round band, chosen before measuring, never tuned
# (benchmarks/uncertain_band.py measures how much the order of the masks depends on it).
UNCERTAIN_BAND = (0.2, 0.8)


def uncertain_share(probability: torch.Tensor, threshold: float, band: tuple[float, float] = UNCERTAIN_BAND) -> float:
    """Of the pixels called object (probability >= ``threshold``) or uncertain (inside ``band``), the uncertain.

    Relative to the object, so a small object's blurred outline counts as much as a large one's; and
    from 0 to 1, as an empty mask with a haze of doubt counts its haze.
    """
    low, high = band
    uncertain = (probability > low) & (probability < high)
    return float(uncertain.sum()) / max(int((uncertain | (probability >= threshold)).sum()), 1)


class Prediction(NamedTuple):
    """A photo's mask at full and at working resolution, and how unsure the network was of it."""

    full_mask: np.ndarray
    small_mask: np.ndarray
    uncertain: float  # uncertain_share of the probability the masks came from


@dataclass
class MaskPredictor:
    """Predicts object masks with a frozen, inference-optimised copy of a model."""

    model: torch.nn.Module
    device: torch.device
    upsample_radius: int
    upsample_eps: float
    autocast_dtype: torch.dtype | None = None  # None: mixed_precision(device)
    # The photo is also seen at these scales of the working size; the probabilities are averaged.
    scales: tuple[float, ...] = (1.0,)
    threshold: float = 0.5  # object where the averaged probability reaches this
    edge_band: int = 0  # GrabCut redraws the sharpened mask's edge by up to this many working pixels (0: off)
    # GrabCut's time grows with the pixel count (0.4 s at a long side of 640 px, 23 s at 4000 px), so the edge band of
    # larger photos is redrawn at this long side. Every photo measured in docs/results.md is smaller (720 px at most).
    edge_band_max_side: int = 1024

    @classmethod
    def for_run(cls, model: torch.nn.Module, device: torch.device, config: RunConfig) -> MaskPredictor:
        """A predictor with the run's sharpening and prediction scales."""
        return cls(
            model,
            device,
            config.upsample_radius,
            config.upsample_eps,
            scales=config.predict_scales,
            threshold=config.mask_threshold,
            edge_band=config.grabcut_edge_band,
        )

    def __post_init__(self) -> None:
        self.model = inference_copy(self.model).to(self.device)
        self.autocast_dtype = self.autocast_dtype or mixed_precision(self.device)

    @torch.inference_mode()
    def probability(self, small: np.ndarray) -> torch.Tensor:
        """Object probability (H x W tensor) for a working-resolution photo, averaged over the predictor's scales."""
        photo = _as_tensor(small, self.device)  # once, not once per scale
        return sum(self._at_scale(photo, scale) for scale in self.scales) / len(self.scales)

    @torch.inference_mode()
    def probability_at(self, small: np.ndarray, scale: float) -> torch.Tensor:
        """Object probability of the photo seen at ``scale`` times working size (and mirrored), at working size."""
        return self._at_scale(_as_tensor(small, self.device), scale)

    def _at_scale(self, photo: torch.Tensor, scale: float) -> torch.Tensor:
        if scale == 1:
            return self._mirror_averaged(photo)
        scaled = F.interpolate(photo, scale_factor=scale, mode="bilinear", align_corners=False)
        probability = self._mirror_averaged(scaled)[None, None]
        return F.interpolate(probability, size=photo.shape[-2:], mode="bilinear", align_corners=False)[0, 0]

    def _mirror_averaged(self, photo: torch.Tensor) -> torch.Tensor:
        batch = torch.cat([photo, photo.flip(-1)]).contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            logits = self.model(batch)
        probabilities = logits.float().softmax(1)[:, 1]
        return (probabilities[0] + probabilities[1].flip(-1)) / 2

    @torch.inference_mode()
    def predict(self, small: np.ndarray, full: np.ndarray) -> Prediction:
        """One photo's masks from its working-resolution and full-resolution copies."""
        probability = self.probability(small)
        return Prediction(*self.masks(probability, small, full), uncertain_share(probability, self.threshold))

    def masks(self, probability: torch.Tensor, small: np.ndarray, full: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(full-resolution mask, working-resolution mask) from the object probability at working resolution."""
        full_mask = sharpen_to_full_resolution(
            probability, small, full, self.upsample_radius, self.upsample_eps, self.threshold
        )
        if not self.edge_band:
            return full_mask, (probability >= self.threshold).cpu().numpy()
        # At full resolution, where the photo's colour edges are sharpest; the band keeps its width in working pixels.
        band = scaled_band(self.edge_band, max(small.shape[:2]), max(full.shape[:2]))
        full_mask = redraw_edge_band(full, full_mask, band, max_side=self.edge_band_max_side)
        return full_mask, resize_mask(full_mask, small.shape[:2])
