"""The guided filter against an explicit-weight float64 oracle (Eq. 2-3 of He et al.)."""

import importlib
import itertools

import numpy as np
import pytest
import torch

from napari_gfn.network import GuidedFilter, boundary_map, guided_filter, guided_upsample, upsampling_coefficients


def _windows(height, width, radius):
    """Every clipped window as (centre index, flat pixel indices)."""
    for cy in range(height):
        for cx in range(width):
            rows = np.arange(max(cy - radius, 0), min(cy + radius, height - 1) + 1)
            cols = np.arange(max(cx - radius, 0), min(cx + radius, width - 1) + 1)
            yield cy * width + cx, (rows[:, None] * width + cols[None, :]).ravel()


def explicit_weights(guide, radius, eps):
    """W_ij(I) = 1/|w_i| sum_{k: i,j in w_k} 1/|w_k| (1 + (I_i-mu_k)^T (Sigma_k + eps U)^-1 (I_j-mu_k)).

    ``guide`` is K x H x W in float64; K = 1 is the grey guided filter, K = 3 the colour one.
    """
    channels, height, width = guide.shape
    pixels = guide.reshape(channels, -1).T
    weights = np.zeros((height * width, height * width))
    for _, members in _windows(height, width, radius):
        window = pixels[members]
        centred = window - window.mean(axis=0)
        sigma = centred.T @ centred / len(members)
        affinity = centred @ np.linalg.solve(sigma + eps * np.eye(channels), centred.T)
        weights[np.ix_(members, members)] += (1.0 + affinity) / len(members)
    counts = np.array([len(members) for _, members in _windows(height, width, radius)])
    return weights / counts[:, None]


def oracle_per_channel(guide, src, radius, eps):
    out = np.empty_like(src)
    for c in range(src.shape[0]):
        g = guide[c if guide.shape[0] > 1 else 0][None]
        out[c] = (explicit_weights(g, radius, eps) @ src[c].ravel()).reshape(src.shape[1:])
    return out


CASES = [
    (1, 1, 7, 9, 1, 1e-4),
    (1, 1, 8, 10, 2, 1e-2),
    (3, 3, 9, 8, 3, 1e-1),
    (1, 3, 10, 10, 4, 1.0),
    (3, 3, 6, 11, 4, 1e-3),
    (2, 2, 11, 7, 2, 1e-4),
]


@pytest.mark.parametrize(("guide_channels", "src_channels", "height", "width", "radius", "eps"), CASES)
def test_guided_filter_matches_explicit_weights(guide_channels, src_channels, height, width, radius, eps):
    rng = np.random.default_rng(radius * 100 + height)
    guide = rng.random((guide_channels, height, width))
    src = rng.random((src_channels, height, width))
    expected = oracle_per_channel(guide, src, radius, eps)
    got = (
        guided_filter(torch.from_numpy(guide[None]).float(), torch.from_numpy(src[None]).float(), radius, eps)[0]
        .double()
        .numpy()
    )
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("guide_channels", [1, 3])
@pytest.mark.parametrize(("height", "width", "radius", "eps"), [(7, 8, 1, 1e-3), (9, 9, 3, 1e-2), (8, 11, 2, 1.0)])
def test_guided_upsample_at_same_size_is_the_joint_guided_filter(guide_channels, height, width, radius, eps):
    rng = np.random.default_rng(height * width)
    guide = rng.random((guide_channels, height, width)) + 5.0  # an offset the centring must undo exactly
    src = rng.random((2, height, width))
    expected = np.stack(
        [(explicit_weights(guide, radius, eps) @ channel.ravel()).reshape(height, width) for channel in src]
    )
    guide_t = torch.from_numpy(guide[None]).float()
    got = guided_upsample(guide_t, torch.from_numpy(src[None]).float(), guide_t, radius, eps)
    np.testing.assert_allclose(got[0].double().numpy(), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("guide_channels", [1, 3])
def test_guided_upsample_applies_smoothed_oracle_coefficients_at_full_size(guide_channels):
    """Reference: A, b from the explicit float64 normal equations, box-averaged, bilinearly upsampled."""
    rng = np.random.default_rng(guide_channels)
    radius, eps, low, full = 2, 1e-2, (9, 10), (23, 31)
    guide_low = rng.random((guide_channels, *low))
    src_low = rng.random((2, *low))
    guide_full = rng.random((guide_channels, *full))
    slopes = np.zeros((2, guide_channels, *low))
    offsets = np.zeros((2, *low))
    for centre, members in _windows(*low, radius):
        y, x = divmod(centre, low[1])
        window = guide_low.reshape(guide_channels, -1)[:, members]
        sigma = np.cov(window, bias=True).reshape(guide_channels, guide_channels)
        for c in range(2):
            values = src_low[c].ravel()[members]
            cov = (window * values).mean(axis=1) - window.mean(axis=1) * values.mean()
            slopes[c, :, y, x] = np.linalg.solve(sigma + eps * np.eye(guide_channels), cov)
            offsets[c, y, x] = values.mean() - slopes[c, :, y, x] @ window.mean(axis=1)
    pool = torch.nn.AvgPool2d(2 * radius + 1, stride=1, padding=radius, count_include_pad=False)

    def smoothed_full(x):
        return torch.nn.functional.interpolate(pool(torch.from_numpy(x)), size=full, mode="bilinear")

    mean_slopes = smoothed_full(slopes).numpy()
    expected = (mean_slopes * guide_full[None]).sum(axis=1) + smoothed_full(offsets[None])[0].numpy()
    as_tensor = [torch.from_numpy(x[None]).float() for x in (guide_low, src_low, guide_full)]
    got = guided_upsample(*as_tensor, radius, eps)[0].double().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_guided_upsample_is_linear_in_its_source():
    """GFN filters only the two-class logit margin; that is exact because of this."""
    guide_low, guide_full = torch.rand(2, 1, 12, 14), torch.rand(2, 1, 48, 56)
    src = torch.randn(2, 2, 12, 14)
    margin = guided_upsample(guide_low, src[:, 1:] - src[:, :1], guide_full, 2, 1e-2)
    per_class = guided_upsample(guide_low, src, guide_full, 2, 1e-2)
    torch.testing.assert_close(margin, per_class[:, 1:] - per_class[:, :1], atol=1e-5, rtol=0)


def test_module_form_matches_function():
    guide, src = torch.rand(2, 1, 12, 13), torch.rand(2, 3, 12, 13)
    torch.testing.assert_close(GuidedFilter(2, 1e-2)(guide, src), guided_filter(guide, src, 2, 1e-2))


def test_gradcheck_both_inputs():
    guide = torch.rand(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    src = torch.rand(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda g, p: guided_filter(g, p, 2, 1e-2), (guide, src))


def test_gradcheck_guided_upsample():
    guide_low = torch.rand(1, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    src_low = torch.rand(1, 1, 5, 6, dtype=torch.float64, requires_grad=True)
    guide_full = torch.rand(1, 3, 10, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: guided_upsample(a, b, c, 1, 1e-1), (guide_low, src_low, guide_full))


def _naive_guided_filter(guide, src, radius, eps):
    """The textbook E[x^2] - E[x]^2 form, to show the offset test can fail."""
    pool = torch.nn.AvgPool2d(2 * radius + 1, stride=1, padding=radius, count_include_pad=False)
    mean_i, mean_p = pool(guide), pool(src)
    a = (pool(guide * src) - mean_i * mean_p) / (pool(guide * guide) - mean_i * mean_i + eps)
    b = mean_p - a * mean_i
    return pool(a) * guide + pool(b)


def test_large_guide_offset_gives_the_same_result():
    torch.manual_seed(0)
    guide, src = torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64)
    reference = guided_filter(guide, src, 4, 1e-3)
    shifted = guided_filter(guide + 1000.0, src, 4, 1e-3)
    # float32 stores guide + 1000 to ~6e-5, so that is the floor for "the same".
    torch.testing.assert_close(shifted, reference, atol=5e-4, rtol=0)
    naive_error = (_naive_guided_filter(guide + 1000.0, src, 4, 1e-3) - reference).abs().max()
    assert naive_error > 1e-2, "the naive form should break here, or this test proves nothing"


def test_tiny_variance_guide_is_finite_and_smooths():
    guide = 1.0 + 1e-7 * torch.rand(1, 1, 32, 32)
    src = torch.rand(1, 1, 32, 32)
    out = guided_filter(guide, src, 3, 1e-4)
    assert torch.isfinite(out).all()
    # A flat guide makes the filter a box mean: variance must drop sharply.
    assert out.var() < 0.2 * src.var()


def test_guided_upsample_snaps_to_fullres_edges():
    """A blurry low-resolution mask becomes a sharp one on the full-resolution photo's edge."""
    size, low = 256, 32
    columns = torch.arange(size).float()
    edge_at = 101  # not on the low-res grid
    photo = (columns >= edge_at).float().expand(1, 3, size, size).clone()
    truth = photo[:, :1]
    photo_low = torch.nn.functional.interpolate(photo, size=(low, low), mode="area")
    mask_low = torch.nn.functional.interpolate(truth, size=(low, low), mode="area")
    sharp = guided_upsample(photo_low, mask_low, photo, radius=2, eps=1e-4)
    blurry = torch.nn.functional.interpolate(mask_low, size=(size, size), mode="bilinear", align_corners=False)
    sharp_errors = ((sharp > 0.5) != (truth > 0.5)).sum()
    blurry_errors = ((blurry > 0.5) != (truth > 0.5)).sum()
    assert sharp_errors == 0
    assert blurry_errors > 0


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="channels"):
        guided_filter(torch.rand(1, 2, 8, 8), torch.rand(1, 3, 8, 8), 1, 1e-2)
    with pytest.raises(ValueError, match="differ"):
        guided_filter(torch.rand(1, 1, 8, 9), torch.rand(1, 1, 8, 8), 1, 1e-2)
    with pytest.raises(ValueError, match="radius"):
        guided_filter(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), -1, 1e-2)


def test_boundary_map_is_max_minus_min_filter():
    from scipy import ndimage

    x = torch.randn(2, 3, 13, 10)
    for kernel in (3, 5):
        expected = ndimage.maximum_filter(x.numpy(), size=(1, 1, kernel, kernel), mode="nearest") - (
            ndimage.minimum_filter(x.numpy(), size=(1, 1, kernel, kernel), mode="nearest")
        )
        np.testing.assert_allclose(boundary_map(x, kernel).numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("guide_channels", [1, 5])
def test_channel_chunks_give_the_same_result(monkeypatch, guide_channels):
    module = importlib.import_module("napari_gfn.network.guided_filter")

    guide, src = torch.rand(2, guide_channels, 20, 24), torch.rand(2, 5, 20, 24)
    whole = guided_filter(guide, src, 3, 1e-2)
    monkeypatch.setattr(module, "_CHUNK_ELEMENTS", 2 * 20 * 24 * 2)  # two channels per chunk
    torch.testing.assert_close(guided_filter(guide, src, 3, 1e-2), whole)


def test_chunked_gradients_match_and_pass_gradcheck(monkeypatch):
    module = importlib.import_module("napari_gfn.network.guided_filter")
    guide = torch.rand(1, 1, 7, 6, dtype=torch.float64, requires_grad=True)
    src = torch.rand(1, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    expected = torch.autograd.grad(guided_filter(guide, src, 2, 1e-2).square().sum(), (guide, src))
    monkeypatch.setattr(module, "_CHUNK_ELEMENTS", 7 * 6)  # one channel per chunk, recomputed in backward
    got = torch.autograd.grad(guided_filter(guide, src, 2, 1e-2).square().sum(), (guide, src))
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(lambda g, p: guided_filter(g, p, 2, 1e-2), (guide, src))


@pytest.mark.parametrize("guide_channels", [1, 3])
def test_upsampling_in_bands_of_rows_joins_seamlessly(guide_channels):
    """A tiled 24-megapixel photo relies on this: any bands of rows, stacked, give the whole-image output."""
    generator = torch.Generator().manual_seed(guide_channels)
    guide_low = torch.rand(1, guide_channels, 13, 17, generator=generator)
    src_low = torch.rand(1, 2, 13, 17, generator=generator)
    guide_full = torch.rand(1, guide_channels, 101, 67, generator=generator)
    whole = guided_upsample(guide_low, src_low, guide_full, 2, 1e-2)
    coefficients = upsampling_coefficients(guide_low, src_low, 2, 1e-2)
    bounds = [0, 1, 9, 40, 41, 77, 101]
    bands = [coefficients.apply(guide_full[..., a:b, :], 101, a) for a, b in itertools.pairwise(bounds)]
    torch.testing.assert_close(torch.cat(bands, dim=-2), whole, atol=1e-6, rtol=0)
