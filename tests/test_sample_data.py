"""Synthetic sample data: exact masks, realistic difficulty, determinism, clear errors."""

import numpy as np
import pytest
from scipy import ndimage
from skimage.color import rgb2gray

from napari_gfn.sample_data import make_sample_set
from napari_gfn.seeds import otsu_mask


def iou(a, b):
    return np.logical_and(a, b).sum() / max(np.logical_or(a, b).sum(), 1)


@pytest.fixture(scope="module", params=["branch", "flower"])
def sample(request):
    return request.param, make_sample_set(request.param, 16, 160, simple_fraction=0.5, seed=3)


def test_shapes_and_types(sample):
    _, s = sample
    assert len(s.images) == len(s.masks) == len(s.simple) == 16
    assert sum(s.simple) == 8
    for image, mask in zip(s.images, s.masks, strict=True):
        assert image.dtype == np.uint8
        assert image.shape == (160, 160, 3)
        assert mask.dtype == bool
        assert mask.shape == (160, 160)
        assert 0.02 < mask.mean() < 0.6


def test_masks_are_exactly_the_painted_object(sample):
    """On plain backgrounds the mask's edge is the image's edge, to the pixel.

    Grey levels are split halfway between the object's and the background's
    means; the one-pixel rings just inside and just outside the mask must fall
    on their own side. A mask shifted by a single pixel fails this.
    """
    _, s = sample
    for image, mask, simple in zip(s.images, s.masks, s.simple, strict=True):
        if not simple:
            continue
        grey = rgb2gray(image)
        inside, outside = grey[mask].mean(), grey[~mask].mean()
        looks_like_object = (grey > (inside + outside) / 2) == (inside > outside)
        inner_ring = mask & ~ndimage.binary_erosion(mask)
        outer_ring = ndimage.binary_dilation(mask) & ~mask
        assert looks_like_object[inner_ring].mean() > 0.97
        assert (~looks_like_object[outer_ring]).mean() > 0.9
        shifted = np.roll(mask, 1, axis=1)
        shifted_ring = shifted & ~ndimage.binary_erosion(shifted)
        assert looks_like_object[shifted_ring].mean() < 0.9


def test_otsu_separates_simple_but_not_complex_images(sample):
    _, s = sample
    simple = [iou(otsu_mask(i).mask, m) for i, m, f in zip(s.images, s.masks, s.simple, strict=True) if f]
    complex_ = [iou(otsu_mask(i).mask, m) for i, m, f in zip(s.images, s.masks, s.simple, strict=True) if not f]
    assert np.mean(simple) >= 0.9
    assert min(simple) >= 0.85
    assert np.mean(complex_) < np.mean(simple) - 0.25


def test_otsu_separability_ranks_simple_images_higher(sample):
    kind, s = sample
    scores = np.array([otsu_mask(i).separability for i in s.images])
    simple = np.array(s.simple)
    # Every simple image scores above the median complex image.
    assert scores[simple].min() > np.median(scores[~simple]), kind


def test_same_seed_same_output_and_different_seed_differs():
    a = make_sample_set("flower", 4, 64, 0.5, seed=11)
    b = make_sample_set("flower", 4, 64, 0.5, seed=11)
    c = make_sample_set("flower", 4, 64, 0.5, seed=12)
    for x, y in zip(a.images + a.masks, b.images + b.masks, strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.simple == b.simple
    assert any(not np.array_equal(x, y) for x, y in zip(a.images, c.images, strict=True))


def test_rectangular_size():
    s = make_sample_set("branch", 2, (96, 128), 1.0, seed=0)
    assert s.images[0].shape == (96, 128, 3)
    assert s.masks[1].shape == (96, 128)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "tree", "n": 2, "size": 64}, "unknown kind"),
        ({"kind": "branch", "n": 0, "size": 64}, "positive"),
        ({"kind": "branch", "n": -3, "size": 64}, "positive"),
        ({"kind": "flower", "n": 2, "size": 8}, "at least"),
        ({"kind": "flower", "n": 2, "size": (64, 4)}, "at least"),
        ({"kind": "flower", "n": 2, "size": 64, "simple_fraction": 1.5}, "simple_fraction"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_sample_set(**kwargs)


@pytest.mark.parametrize("kind", ["branch", "flower"])
def test_styles_repaint_the_same_objects(kind):
    plain, garden, bare = (make_sample_set(kind, 3, 64, simple_fraction=0.0, seed=5, style=s) for s in (0, 1, 2))
    for index in range(3):
        np.testing.assert_array_equal(plain.masks[index], garden.masks[index])
        np.testing.assert_array_equal(garden.masks[index], bare.masks[index])
        assert np.abs(plain.images[index].astype(int) - garden.images[index]).mean() > 10
        # Style 2 is style 1 without decoys: the object itself is painted identically.
        object_pixels = garden.masks[index]
        np.testing.assert_array_equal(garden.images[index][object_pixels], bare.images[index][object_pixels])
        assert (garden.images[index] != bare.images[index]).any()
    with pytest.raises(ValueError, match="style"):
        make_sample_set(kind, 1, 64, style=3)
