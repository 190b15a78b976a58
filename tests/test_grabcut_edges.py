"""GrabCut redrawing a mask's edge band, alone and inside prediction, against shapes drawn exactly."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_gfn.config import RunConfig
from napari_gfn.engine import score_mask
from napari_gfn.engine.grabcut import redraw_edge_band, scaled_band
from napari_gfn.engine.predict import MaskPredictor
from napari_gfn.engine.working import resize_image, resize_mask


def _ellipse(shape: tuple[int, int], grow: float = 1.0) -> np.ndarray:
    """An ellipse over the middle third of the frame, its radii scaled by ``grow``."""
    height, width = shape
    yy, xx = np.ogrid[:height, :width]
    return ((yy - height / 2) / (height / 3 * grow)) ** 2 + ((xx - width / 2) / (width / 3 * grow)) ** 2 < 1


def _noisy_photo(inside: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    photo = np.where(inside[..., None], np.uint8(170), np.uint8(60)).repeat(3, axis=2)
    return photo + rng.integers(0, 60, photo.shape, dtype=np.uint8)


def test_the_edge_moves_onto_the_photo_edge_and_nowhere_beyond_the_band():
    truth = _ellipse((120, 160))
    photo = _noisy_photo(truth)
    loose = _ellipse((120, 160), grow=1.06)  # about 3 pixels too wide all round
    band = 5
    redrawn = redraw_edge_band(photo, loose, band)
    assert score_mask(loose, truth).fg_iou < 0.9
    assert score_mask(redrawn, truth).fg_iou > 0.97
    # Pixels farther than the band from the mask's edge keep their label.
    far_inside = ndimage.binary_erosion(loose, iterations=band + 1)
    far_outside = ~ndimage.binary_dilation(loose, iterations=band + 1)
    assert redrawn[far_inside].all()
    assert not redrawn[far_outside].any()


def test_a_large_photo_is_redrawn_at_a_smaller_size_where_the_mask_changes_and_nowhere_else():
    truth = _ellipse((480, 640))
    loose = _ellipse((480, 640), grow=1.06)  # about 12 pixels too wide all round
    band = 20
    redrawn = redraw_edge_band(_noisy_photo(truth), loose, band, max_side=160)
    assert score_mask(loose, truth).fg_iou < 0.9
    assert score_mask(redrawn, truth).fg_iou > 0.95
    # Where the quarter-size GrabCut kept the mask, the full-size mask's own pixels stay.
    assert redrawn[ndimage.binary_erosion(loose, iterations=band + 4)].all()
    assert not redrawn[~ndimage.binary_dilation(loose, iterations=band + 4)].any()


def test_a_narrow_band_cannot_reach_an_edge_that_is_farther_away():
    truth = _ellipse((120, 160))
    loose = _ellipse((120, 160), grow=1.3)  # the true edge is 6 to 8 pixels inside
    redrawn = redraw_edge_band(_noisy_photo(truth), loose, band=2)
    assert redrawn[truth].all()
    assert score_mask(redrawn, truth).fg_iou < 0.9


@pytest.mark.parametrize(
    ("mask", "band"),
    [
        (np.zeros((40, 50), bool), 3),  # no edge to move
        (np.ones((40, 50), bool), 3),
        (_ellipse((40, 50)), 0),  # band 0: off
    ],
)
def test_masks_without_an_edge_band_to_redraw_come_back_unchanged(mask, band):
    photo = _noisy_photo(_ellipse((40, 50), grow=0.8))
    np.testing.assert_array_equal(redraw_edge_band(photo, mask, band), mask)


@pytest.mark.parametrize(
    ("working_side", "side", "expected"),
    [(320, 320, 3), (320, 640, 6), (320, 1000, 9), (320, 50, 1)],  # 3 * 50 / 320 rounds to 0; a band stays >= 1
)
def test_the_band_keeps_its_width_relative_to_the_photo(working_side, side, expected):
    assert scaled_band(3, working_side, side) == expected


def test_prediction_redraws_the_full_resolution_edge_and_trains_on_it_at_working_size():
    truth = _ellipse((192, 256))
    full = _noisy_photo(truth, seed=1)
    small = resize_image(full, (96, 128))
    # A constant network stands in for a trained one: the probability handed over is the loose ellipse.
    model = torch.nn.Conv2d(3, 2, 1)
    # Narrow, smooth sharpening, which cannot move the edge by itself (the default would snap this easy photo).
    config = RunConfig(predict_scales=(1.0,), upsample_radius=1, upsample_eps=0.1, grabcut_edge_band=0)
    plain = MaskPredictor.for_run(model, torch.device("cpu"), config)
    banded = MaskPredictor.for_run(model, torch.device("cpu"), config.updated(grabcut_edge_band=3))
    probability = torch.from_numpy(_ellipse((96, 128), grow=1.08).astype(np.float32))
    plain_full, plain_small = plain.masks(probability, small, full)
    banded_full, banded_small = banded.masks(probability, small, full)
    np.testing.assert_array_equal(plain_small, probability.numpy() >= 0.5)
    assert score_mask(banded_full, truth).fg_iou > score_mask(plain_full, truth).fg_iou + 0.05
    # The next round trains on the redrawn mask, as a resumed run rebuilds it from the run folder.
    np.testing.assert_array_equal(banded_small, resize_mask(banded_full, small.shape[:2]))
