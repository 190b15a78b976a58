"""Differentiable guided filter (He et al. 2013) and fast guided upsampling, in pure torch.

Box means use clipped windows: a border pixel averages only the pixels that
exist, divided by their true count. Every box sum is a pair of 1-D prefix sums
over zero-padded data, so the cost is O(H*W) whatever the radius. Guides and sources are centred
before the moments are taken, which keeps the variance exact in float32 even
for guides with a large offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

__all__ = [
    "GuidedFilter",
    "UpsamplingCoefficients",
    "box_mean",
    "guided_filter",
    "guided_upsample",
    "upsampling_coefficients",
]


_PREFIX_BLOCK = 32


def _box_sum(x: Tensor, radius: int) -> Tensor:
    """Sums over the clipped (2r+1)x(2r+1) window around every pixel of (..., H, W).

    One zero-padding copy serves both axes. Along rows the prefix sum is a
    cumsum over contiguous memory; across rows torch's cumsum strides through
    memory and is ~15x slower, so that prefix sum is one small triangular
    matmul per block of rows plus a cumsum over the block totals.
    """
    height = x.shape[-2]
    width = 2 * radius + 1
    tail = radius + (-(height + width)) % _PREFIX_BLOCK
    prefix = F.pad(x, (radius + 1, radius, radius + 1, tail)).cumsum(-1)
    row_sums = prefix[..., width:] - prefix[..., :-width]
    blocks = row_sums.unflatten(-2, (-1, _PREFIX_BLOCK))
    lower = torch.ones(_PREFIX_BLOCK, _PREFIX_BLOCK, dtype=x.dtype, device=x.device).tril()
    within = lower @ blocks
    totals = within[..., -1, :]
    # In place: matmul's backward needs its inputs, not its output.
    prefix = within.add_((totals.cumsum(-2) - totals).unsqueeze(-2)).flatten(-3, -2)
    return prefix[..., width : width + height, :] - prefix[..., :height, :]


def _window_counts(height: int, width: int, radius: int, like: Tensor) -> Tensor:
    """Number of pixels in each clipped (2r+1)x(2r+1) window of an H x W image."""

    def counts(n: int) -> Tensor:
        index = torch.arange(n, device=like.device)
        return (torch.clamp(index + radius, max=n - 1) - torch.clamp(index - radius, min=0) + 1).to(like.dtype)

    return counts(height)[:, None] * counts(width)[None, :]


def box_mean(x: Tensor, radius: int) -> Tensor:
    """Mean over the clipped (2r+1)x(2r+1) window around every pixel of (..., H, W)."""
    return _box_sum(x, radius).div_(_window_counts(*x.shape[-2:], radius, x))


def _check_inputs(guide: Tensor, src: Tensor, radius: int, eps: float) -> None:
    if guide.dim() != 4 or src.dim() != 4:
        raise ValueError(f"guide and src must be B x C x H x W, got {tuple(guide.shape)} and {tuple(src.shape)}")
    if guide.shape[0] != src.shape[0] or guide.shape[-2:] != src.shape[-2:]:
        raise ValueError(f"guide {tuple(guide.shape)} and src {tuple(src.shape)} differ in batch or size")
    if radius < 0 or int(radius) != radius:
        raise ValueError(f"radius must be a non-negative integer, got {radius}")
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")


def _working_dtype(*tensors: Tensor) -> torch.dtype:
    # Half precision loses the moments entirely; float64 is kept for oracles and gradcheck.
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _centred(x: Tensor) -> Tensor:
    return x - x.mean(dim=(-2, -1), keepdim=True).detach()


def _per_channel_coefficients(guide: Tensor, src: Tensor, radius: int, eps: float) -> tuple[Tensor, Tensor]:
    """Linear coefficients A, b with each src channel guided by its own guide channel."""
    mean_i, mean_ii, mean_p, mean_ip = (box_mean(moment, radius) for moment in (guide, guide * guide, src, guide * src))
    variance = torch.clamp(mean_ii - mean_i * mean_i, min=0.0)
    slope = (mean_ip - mean_i * mean_p) / (variance + eps)
    return slope, mean_p - slope * mean_i


# Tensors above glibc's largest mmap threshold (32 MiB) are mapped fresh, and page faults then
# cost more than the arithmetic: large inputs are filtered in channel chunks below that size.
# When gradients are needed each chunk is recomputed in the backward pass instead of keeping its
# ~20 intermediates, so 64 channels at 2048^2 fit in memory.
_CHUNK_ELEMENTS = 4 * 1024 * 1024


def guided_filter(guide: Tensor, src: Tensor, radius: int, eps: float) -> Tensor:
    """Edge-preserving filter of ``src`` (B x C x H x W) steered by ``guide``.

    ``guide`` has one channel (shared by all of ``src``'s channels) or C
    channels (channel c guides channel c). ``eps`` is in squared guide units.
    """
    _check_inputs(guide, src, radius, eps)
    if guide.shape[1] not in (1, src.shape[1]):
        raise ValueError(f"guide must have 1 or {src.shape[1]} channels, got {guide.shape[1]}")
    channels_per_chunk = max(1, _CHUNK_ELEMENTS // (src.shape[0] * src.shape[-2] * src.shape[-1]))
    if src.shape[1] <= channels_per_chunk:
        return _guided_filter(guide, src, radius, eps)
    recompute = torch.is_grad_enabled() and (guide.requires_grad or src.requires_grad)
    chunks = []
    for start in range(0, src.shape[1], channels_per_chunk):
        part = slice(start, start + channels_per_chunk)
        arguments = (guide if guide.shape[1] == 1 else guide[:, part], src[:, part], radius, eps)
        if recompute:
            chunks.append(checkpoint(_guided_filter, *arguments, use_reentrant=False))
        else:
            chunks.append(_guided_filter(*arguments))
    return torch.cat(chunks, dim=1)


def _guided_filter(guide: Tensor, src: Tensor, radius: int, eps: float) -> Tensor:
    dtype = _working_dtype(guide, src)
    with torch.autocast(device_type=src.device.type, enabled=False):
        guide = _centred(guide.to(dtype))
        src_mean = src.to(dtype).mean(dim=(-2, -1), keepdim=True)
        slope, offset = _per_channel_coefficients(guide, src.to(dtype) - src_mean, radius, eps)
        return box_mean(slope, radius) * guide + box_mean(offset, radius) + src_mean


def _joint_coefficients(guide: Tensor, src: Tensor, radius: int, eps: float) -> tuple[Tensor, Tensor]:
    """A (B x C x K x H x W) and b (B x C x H x W) with the K guide channels taken jointly."""
    batch, guide_channels = guide.shape[:2]
    src_channels = src.shape[1]
    mean_i = box_mean(guide, radius)
    mean_p = box_mean(src, radius)
    products = (guide[:, :, None] * guide[:, None, :]).flatten(1, 2)
    cross = (src[:, :, None] * guide[:, None, :]).flatten(1, 2)
    shape = (batch, guide_channels, guide_channels, *guide.shape[-2:])
    sigma = box_mean(products, radius).view(shape) - mean_i[:, :, None] * mean_i[:, None, :]
    cov = box_mean(cross, radius).view(batch, src_channels, guide_channels, *guide.shape[-2:])
    cov = cov - mean_p[:, :, None] * mean_i[:, None, :]
    identity = torch.eye(guide_channels, dtype=guide.dtype, device=guide.device)
    # Pixels last so linalg.solve batches one small K x K system per pixel.
    system = sigma.permute(0, 3, 4, 1, 2) + eps * identity
    rhs = cov.permute(0, 3, 4, 2, 1)
    slope = torch.linalg.solve(system, rhs).permute(0, 4, 3, 1, 2)
    offset = mean_p - (slope * mean_i[:, None]).sum(dim=2)
    return slope, offset


def guided_upsample(guide_lowres: Tensor, src_lowres: Tensor, guide_fullres: Tensor, radius: int, eps: float) -> Tensor:
    """Fast guided upsampling: fit A, b at low resolution, apply them to the full-resolution guide.

    The guide's channels are filtered jointly (a colour guide uses the full
    3x3 covariance), so a mask predicted at low resolution snaps to the
    edges of the full-resolution photo.
    """
    if guide_fullres.dim() != 4 or guide_fullres.shape[:2] != guide_lowres.shape[:2]:
        raise ValueError(
            f"guide_fullres {tuple(guide_fullres.shape)} must match guide_lowres {tuple(guide_lowres.shape)} "
            "in batch and channels"
        )
    coefficients = upsampling_coefficients(guide_lowres, src_lowres, radius, eps)
    return coefficients.apply(guide_fullres)


@dataclass(frozen=True)
class UpsamplingCoefficients:
    """Low-resolution linear coefficients of guided upsampling: output = sum_k A_k I_k + b.

    :meth:`apply` works on any band of rows of the full-resolution guide, so a
    24-megapixel photo can be processed in tiles of bounded memory; the bands
    join seamlessly because the coefficients are upsampled exactly as a whole.
    """

    slope: Tensor  # B x C x K x h x w
    offset: Tensor  # B x C x h x w

    def apply(self, guide_rows: Tensor, full_height: int | None = None, first_row: int = 0) -> Tensor:
        """Output rows ``first_row ...`` for ``guide_rows`` (B x K x rows x W), a band of a ``full_height`` guide."""
        full_height = guide_rows.shape[-2] if full_height is None else full_height
        rows = range(first_row, first_row + guide_rows.shape[-2])
        with torch.autocast(device_type=self.offset.device.type, enabled=False):
            guide_rows = guide_rows.to(self.offset.dtype)
            slope = _bilinear_rows(self.slope.flatten(1, 2), full_height, rows, guide_rows.shape[-1])
            offset = _bilinear_rows(self.offset, full_height, rows, guide_rows.shape[-1])
            if self.slope.shape[2] == 1:
                return torch.addcmul(offset, slope, guide_rows)
            slope = slope.unflatten(1, self.slope.shape[1:3])
            return (slope * guide_rows[:, None]).sum(dim=2) + offset


def upsampling_coefficients(
    guide_lowres: Tensor, src_lowres: Tensor, radius: int, eps: float
) -> UpsamplingCoefficients:
    """The coefficients that :func:`guided_upsample` applies to the full-resolution guide."""
    _check_inputs(guide_lowres, src_lowres, radius, eps)
    dtype = _working_dtype(guide_lowres, src_lowres)
    with torch.autocast(device_type=src_lowres.device.type, enabled=False):
        guide_offset = guide_lowres.to(dtype).mean(dim=(-2, -1), keepdim=True)
        src_offset = src_lowres.to(dtype).mean(dim=(-2, -1), keepdim=True)
        guide_lowres = guide_lowres.to(dtype) - guide_offset
        src_lowres = src_lowres.to(dtype) - src_offset
        if guide_lowres.shape[1] == 1:
            # One guide channel: the joint solve is a division, so skip the per-pixel linear systems.
            slope, offset = _per_channel_coefficients(guide_lowres, src_lowres, radius, eps)
            mean_slope, mean_offset = box_mean(torch.cat([slope, offset], dim=1), radius).chunk(2, dim=1)
            mean_slope = mean_slope[:, :, None]
        else:
            slope, offset = _joint_coefficients(guide_lowres, src_lowres, radius, eps)
            mean_slope = box_mean(slope.flatten(1, 2), radius).unflatten(1, slope.shape[1:3])
            mean_offset = box_mean(offset, radius)
        # Undo the centring at low resolution (upsampling is linear): full-size work is one multiply-add.
        mean_offset = mean_offset + src_offset - (mean_slope * guide_offset[:, None]).sum(dim=2)
    return UpsamplingCoefficients(mean_slope, mean_offset)


def _bilinear_rows(x: Tensor, full_height: int, rows: range, full_width: int) -> Tensor:
    """Rows ``rows`` of ``F.interpolate(x, (full_height, full_width), mode="bilinear")``, computed alone."""
    height = x.shape[-2]
    if height == full_height:
        band = x[..., rows.start : rows.stop, :]
    else:
        # F.interpolate's sampling (align_corners=False): source = (row + 0.5) * scale - 0.5, clamped at 0.
        position = (torch.arange(rows.start, rows.stop, device=x.device, dtype=x.dtype) + 0.5) * (height / full_height)
        position = (position - 0.5).clamp(min=0)
        above = position.floor().long().clamp(max=height - 1)
        below = (above + 1).clamp(max=height - 1)
        weight = (position - above).view(-1, 1)
        band = torch.lerp(x[..., above, :], x[..., below, :], weight)
    if band.shape[-1] == full_width:
        return band
    return F.interpolate(band, size=(band.shape[-2], full_width), mode="bilinear", align_corners=False)


class GuidedFilter(nn.Module):
    """Module form of :func:`guided_filter` with a fixed radius and eps."""

    def __init__(self, radius: int, eps: float) -> None:
        super().__init__()
        self.radius = radius
        self.eps = eps

    def forward(self, guide: Tensor, src: Tensor) -> Tensor:
        return guided_filter(guide, src, self.radius, self.eps)

    def extra_repr(self) -> str:
        return f"radius={self.radius}, eps={self.eps}"
