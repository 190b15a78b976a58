"""Synthetic plant photographs with exact ground truth, for tests, the demo and napari's sample data.

Objects are drawn as binary masks first and then painted, so every mask is
exactly the set of object pixels. "Simple" images put the object on a plain
background (Otsu separates them); "complex" ones add texture and distractors
of the object's own colour, which is where a learned model has to help.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage
from skimage import draw

__all__ = ["KINDS", "STYLES", "SampleSet", "branch_sample", "flower_sample", "make_sample_set"]

KINDS = ("branch", "flower")
MIN_SIZE = 32


@dataclass
class SampleSet:
    """Parallel lists: RGB uint8 images, boolean object masks, and whether each image is simple."""

    images: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    simple: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)


def _shape(size) -> tuple[int, int]:
    height, width = (size, size) if np.isscalar(size) else tuple(size)
    if int(height) != height or int(width) != width or min(height, width) < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE} pixels per side, got {size!r}")
    return int(height), int(width)


@dataclass(frozen=True)
class _Palette:
    """The colours of one drawing style; a second style tests whether a model transfers."""

    bark: tuple[int, int, int]
    branch_clutter: tuple[tuple[int, int, int], ...]
    petals: tuple[tuple[int, int, int], ...]
    flower_clutter: tuple[tuple[int, int, int], ...]
    # Object-coloured decoys on complex images: what defeats Otsu, and what a class map cannot tell apart.
    distractors: bool = True


_GARDEN = ((110, 90, 60), (80, 115, 55), (45, 38, 30), (175, 150, 110))

STYLES = (
    _Palette(
        bark=(75, 55, 40),
        branch_clutter=((95, 120, 70), (140, 150, 110), (170, 180, 190)),
        petals=((235, 120, 170), (245, 215, 70), (240, 240, 235), (250, 150, 60)),
        flower_clutter=((60, 95, 50), (120, 110, 80), (30, 45, 30), (150, 160, 120)),
    ),
    # One garden background for both kinds, so only the objects tell the kinds apart (the CAM tests need that).
    _Palette(
        bark=(105, 98, 92),
        branch_clutter=_GARDEN,
        petals=((175, 90, 215), (225, 60, 60), (130, 150, 245)),
        flower_clutter=_GARDEN,
    ),
)
# The garden without decoys: clutter only, for tests of what refinement adds to class activation maps.
STYLES = (*STYLES, replace(STYLES[1], distractors=False))


def make_sample_set(
    kind: str,
    n: int,
    size: int | tuple[int, int] = 256,
    simple_fraction: float = 0.5,
    seed: int = 0,
    style: int = 0,
) -> SampleSet:
    """Draw ``n`` images of ``kind`` ("branch" or "flower"), about ``simple_fraction`` of them simple.

    ``style`` picks one of the colour palettes in ``STYLES``. The same
    arguments always give the same images.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    if int(n) != n or n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not 0.0 <= simple_fraction <= 1.0:
        raise ValueError(f"simple_fraction must be between 0 and 1, got {simple_fraction!r}")
    if style not in range(len(STYLES)):
        raise ValueError(f"style must be one of 0..{len(STYLES) - 1}, got {style!r}")
    shape = _shape(size)
    rng = np.random.default_rng(seed)
    n_simple = round(n * simple_fraction)
    simple = rng.permutation([True] * n_simple + [False] * (n - n_simple)).tolist()
    painter = _paint_branch if kind == "branch" else _paint_flower
    result = SampleSet()
    for is_simple, child in zip(simple, rng.spawn(n), strict=True):
        image, mask = painter(shape, bool(is_simple), child, STYLES[style])
        result.images.append(image)
        result.masks.append(mask)
        result.simple.append(bool(is_simple))
    return result


# ---------------------------------------------------------------- drawing helpers


def _tapered_segment(mask: np.ndarray, start, end, width_start: float, width_end: float) -> None:
    """Fill a quadrilateral from ``start`` to ``end`` whose width tapers, with round joints."""
    (y0, x0), (y1, x1) = start, end
    length = max(np.hypot(y1 - y0, x1 - x0), 1e-6)
    ny, nx = -(x1 - x0) / length, (y1 - y0) / length
    rows = [
        y0 + ny * width_start / 2,
        y1 + ny * width_end / 2,
        y1 - ny * width_end / 2,
        y0 - ny * width_start / 2,
    ]
    cols = [
        x0 + nx * width_start / 2,
        x1 + nx * width_end / 2,
        x1 - nx * width_end / 2,
        x0 - nx * width_start / 2,
    ]
    mask[draw.polygon(rows, cols, mask.shape)] = True
    mask[draw.disk((y1, x1), max(width_end / 2, 0.5), shape=mask.shape)] = True


def _smooth_noise(shape, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Zero-mean, unit-variance noise with structures about ``scale`` pixels wide."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), scale)
    return (noise - noise.mean()) / (noise.std() + 1e-12)


def _paint(canvas: np.ndarray, mask: np.ndarray, colour, rng: np.random.Generator, texture: float) -> None:
    """Paint ``colour`` with per-pixel texture onto ``canvas`` where ``mask`` is set."""
    shade = 1.0 + texture * _smooth_noise(mask.shape, rng, 1.5)[mask, None]
    canvas[mask] = np.asarray(colour, dtype=float) * shade


def _sky(shape, rng: np.random.Generator) -> np.ndarray:
    top = np.array([150, 190, 235]) + rng.uniform(-15, 15, 3)
    bottom = np.array([190, 212, 240]) + rng.uniform(-10, 10, 3)
    ramp = np.linspace(0.0, 1.0, shape[0])[:, None, None]
    return np.broadcast_to(top * (1 - ramp) + bottom * ramp, (*shape, 3)).copy()


def _clutter(shape, rng: np.random.Generator, palette) -> np.ndarray:
    """A textured background mixing ``palette`` colours in blotches of several sizes."""
    weights = np.stack([_smooth_noise(shape, rng, rng.uniform(3, 12)) for _ in palette], axis=-1)
    weights = np.exp(2.0 * weights)
    weights /= weights.sum(axis=-1, keepdims=True)
    return weights @ np.asarray(palette, dtype=float)


def _finish(canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    canvas = canvas + rng.normal(0.0, 3.0, canvas.shape)
    return np.clip(np.round(canvas), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- branches


def _grow_branch(mask, start, angle, length, width, depth, rng) -> None:
    end = (start[0] + length * np.sin(angle), start[1] + length * np.cos(angle))
    _tapered_segment(mask, start, end, width, width * 0.72)
    if depth == 0 or width * 0.72 < 1.2:
        return
    for _ in range(rng.integers(2, 4)):
        turn = rng.choice([-1, 1]) * rng.uniform(0.3, 0.8)
        _grow_branch(
            mask,
            end,
            angle + turn,
            length * rng.uniform(0.6, 0.8),
            width * rng.uniform(0.55, 0.7),
            depth - 1,
            rng,
        )


def _branch_mask(shape, rng) -> np.ndarray:
    height, width = shape
    mask = np.zeros(shape, dtype=bool)
    start = (height - 1.0, width * rng.uniform(0.35, 0.65))
    angle = -np.pi / 2 + rng.uniform(-0.25, 0.25)
    _grow_branch(mask, start, angle, height * rng.uniform(0.3, 0.4), min(shape) * rng.uniform(0.085, 0.11), 4, rng)
    return mask


def _paint_branch(shape, simple: bool, rng: np.random.Generator, palette: _Palette) -> tuple[np.ndarray, np.ndarray]:
    mask = _branch_mask(shape, rng)
    bark = np.array(palette.bark) + rng.uniform(-15, 15, 3)
    if simple:
        canvas = _sky(shape, rng)
    else:
        colours = [*palette.branch_clutter[:2], [bark[0] + 10, bark[1] + 8, bark[2] + 5], *palette.branch_clutter[2:]]
        canvas = _clutter(shape, rng, colours)
        distractors = np.zeros(shape, dtype=bool)
        for _ in range(rng.integers(3, 6)):
            y, x = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
            angle, length = rng.uniform(0, 2 * np.pi), min(shape) * rng.uniform(0.2, 0.5)
            end = (y + length * np.sin(angle), x + length * np.cos(angle))
            thickness = min(shape) * rng.uniform(0.02, 0.05)
            _tapered_segment(distractors, (y, x), end, thickness, thickness * 0.7)
        # Painting nothing (rather than skipping the call) keeps the random stream, so the object is identical.
        shown = distractors & ~mask if palette.distractors else np.zeros(shape, dtype=bool)
        _paint(canvas, shown, bark * rng.uniform(0.9, 1.15), rng, 0.15)
    _paint(canvas, mask, bark, rng, 0.15)
    return _finish(canvas, rng), mask


# ---------------------------------------------------------------- flowers

_LEAF = [35, 80, 30]


def _ellipse(mask, centre, radii, angle) -> None:
    rows, cols = draw.ellipse(centre[0], centre[1], radii[0], radii[1], shape=mask.shape, rotation=angle)
    mask[rows, cols] = True


def _leaves(shape, rng, count, near=None) -> np.ndarray:
    leaves = np.zeros(shape, dtype=bool)
    for _ in range(count):
        if near is None:
            centre = (rng.uniform(0, shape[0]), rng.uniform(0, shape[1]))
        else:
            centre = (near[0] + rng.uniform(0.2, 0.5) * shape[0], near[1] + rng.uniform(-0.3, 0.3) * shape[1])
        length = min(shape) * rng.uniform(0.12, 0.22)
        _ellipse(leaves, centre, (length, length * 0.35), rng.uniform(0, np.pi))
    return leaves


def _flower_mask(shape, rng, centre, radius) -> tuple[np.ndarray, np.ndarray]:
    petals = np.zeros(shape, dtype=bool)
    count = rng.integers(5, 9)
    phase = rng.uniform(0, 2 * np.pi)
    for k in range(count):
        angle = phase + 2 * np.pi * k / count
        offset = 0.55 * radius
        petal_centre = (centre[0] + offset * np.sin(angle), centre[1] + offset * np.cos(angle))
        # skimage's rotation turns the row axis towards the column axis.
        _ellipse(petals, petal_centre, (0.5 * radius, 0.22 * radius), np.pi / 2 - angle)
    disc = np.zeros(shape, dtype=bool)
    disc[draw.disk(centre, 0.22 * radius, shape=shape)] = True
    return petals | disc, disc


def _paint_flower(shape, simple: bool, rng: np.random.Generator, palette: _Palette) -> tuple[np.ndarray, np.ndarray]:
    height, width = shape
    centre = (height * rng.uniform(0.4, 0.6), width * rng.uniform(0.4, 0.6))
    radius = min(shape) * rng.uniform(0.22, 0.3)
    mask, disc = _flower_mask(shape, rng, centre, radius)
    petal = np.asarray(palette.petals[rng.integers(len(palette.petals))]) + rng.uniform(-10, 10, 3)
    if simple:
        canvas = np.broadcast_to(np.array([35, 40, 45]) + rng.uniform(-10, 10, 3), (*shape, 3)).astype(float)
    else:
        canvas = _clutter(shape, rng, palette.flower_clutter)
        decoys = np.zeros(shape, dtype=bool)
        for _ in range(rng.integers(3, 7)):
            decoy_centre = (rng.uniform(0, height), rng.uniform(0, width))
            decoy_radius = min(shape) * rng.uniform(0.03, 0.08)
            _ellipse(
                decoys,
                decoy_centre,
                (decoy_radius, decoy_radius * rng.uniform(0.4, 1.0)),
                rng.uniform(0, np.pi),
            )
        shown = decoys if palette.distractors else np.zeros(shape, dtype=bool)
        _paint(canvas, shown, petal * rng.uniform(0.85, 1.05), rng, 0.08)
        _paint(canvas, _leaves(shape, rng, rng.integers(3, 7)), _LEAF, rng, 0.12)
    stem = np.zeros(shape, dtype=bool)
    _tapered_segment(stem, centre, (height - 1.0, centre[1] + rng.uniform(-0.1, 0.1) * width), 4.0, 4.0)
    _paint(canvas, stem | _leaves(shape, rng, rng.integers(1, 4), near=centre), _LEAF, rng, 0.12)
    _paint(canvas, mask, petal, rng, 0.06)
    _paint(canvas, disc, [200, 150, 40], rng, 0.1)
    return _finish(canvas, rng), mask


# ---------------------------------------------------------------- napari sample data


def _as_layers(kind: str, title: str) -> list[tuple]:
    sample = make_sample_set(kind, 1, 384, simple_fraction=0.0, seed=7)
    return [
        (sample.images[0], {"name": f"{title} (synthetic)", "rgb": True}, "image"),
        (sample.masks[0].astype(np.uint8), {"name": f"{title} ground truth", "opacity": 0.4}, "labels"),
    ]


def branch_sample() -> list[tuple]:
    """A cluttered synthetic branch photo and its exact mask."""
    return _as_layers("branch", "Branch")


def flower_sample() -> list[tuple]:
    """A cluttered synthetic flower photo and its exact mask."""
    return _as_layers("flower", "Flower")
