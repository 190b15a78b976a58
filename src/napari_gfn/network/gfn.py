"""The Guided Filter Network: backbone + ASPP + DeepLabv3+ decoder, with the BG, HGL and GF modules.

With ``use_bg``, ``use_hgl`` and ``use_gf`` all off the network is a plain
DeepLabv3+ with the same backbone, ASPP and decoder, so ablations compare
like with like.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.segmentation.deeplabv3 import ASPP

from .backbones import build_backbone
from .guided_filter import guided_upsample

__all__ = ["GFN", "GFNConfig", "boundary_map"]


def boundary_map(x: Tensor, kernel_size: int = 3) -> Tensor:
    """maxpool(x) + maxpool(-x): the local max minus the local min, at the input's size."""
    pad = kernel_size // 2
    return F.max_pool2d(x, kernel_size, 1, pad) + F.max_pool2d(-x, kernel_size, 1, pad)


@dataclass(frozen=True)
class GFNConfig:
    """Everything needed to rebuild a GFN's architecture (weights aside)."""

    backbone: str = "efficientnet_lite0"
    num_classes: int = 2
    use_bg: bool = True
    use_hgl: bool = True
    use_gf: bool = True
    gf_radius: int = 2
    gf_eps: float = 1e-2
    output_stride: int = 16
    aspp_channels: int = 128
    low_channels: int = 48

    def to_dict(self) -> dict:
        return asdict(self)


def _conv_bn_relu(in_channels: int, out_channels: int, kernel: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _separable(in_channels: int, out_channels: int) -> nn.Sequential:
    """Depthwise 3x3 then pointwise: DeepLabv3+'s decoder conv at a fraction of the cost."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        _conv_bn_relu(in_channels, out_channels),
    )


def _aspp(in_channels: int, out_channels: int, output_stride: int) -> ASPP:
    rates = [6, 12, 18] if output_stride == 16 else [3, 6, 9]
    aspp = ASPP(in_channels, rates, out_channels)
    # The image-pooling branch normalises a 1x1 map: BatchNorm there fails at batch size 1.
    pooling = aspp.convs[-1]
    pooling[2] = nn.GroupNorm(1, out_channels)
    return aspp


def _resize(x: Tensor, size) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class GFN(nn.Module):
    """Guided Filter Network; ``forward`` maps [0, 1] RGB images to logits at the input's size."""

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        num_classes: int = 2,
        use_bg: bool = True,
        use_hgl: bool = True,
        use_gf: bool = True,
        pretrained: bool = True,
        **options,
    ) -> None:
        super().__init__()
        self.config = GFNConfig(backbone, num_classes, use_bg, use_hgl, use_gf, **options)
        cfg = self.config
        self.backbone = build_backbone(backbone, pretrained=pretrained, output_stride=cfg.output_stride)
        self.register_buffer("input_mean", torch.tensor(self.backbone.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(self.backbone.std).view(1, 3, 1, 1), persistent=False)
        self.aspp = _aspp(self.backbone.high_channels, cfg.aspp_channels, cfg.output_stride)
        self.low_proj = _conv_bn_relu(self.backbone.low_channels, cfg.low_channels)
        if use_bg:
            self.boundary_gate = nn.Sequential(
                nn.Conv2d(cfg.aspp_channels, cfg.low_channels, 1, bias=False),
                nn.BatchNorm2d(cfg.low_channels),
            )
        if use_hgl:
            self.hgl_high = nn.Conv2d(cfg.aspp_channels, cfg.low_channels, 1)
        self.decoder = nn.Sequential(
            _separable(cfg.aspp_channels + cfg.low_channels, cfg.aspp_channels),
            _separable(cfg.aspp_channels, cfg.aspp_channels),
        )
        self.classifier = nn.Conv2d(cfg.aspp_channels, num_classes, 1)
        if use_gf:
            self.register_buffer("margin_signs", torch.tensor([-1.0, 1.0]).view(1, 2, 1, 1), persistent=False)
            # BatchNorm keeps the guide near unit variance, so eps means the same throughout training.
            self.guide = nn.Sequential(nn.Conv2d(cfg.low_channels, 1, 1, bias=False), nn.BatchNorm2d(1))
            # A per-pixel colour transform of the photo lets the guide carry edges finer than stride 4.
            self.image_guide = nn.Sequential(
                nn.Conv2d(3, 8, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.Conv2d(8, 1, 1)
            )

    def forward(self, images: Tensor) -> Tensor:
        size = images.shape[-2:]
        images = (images - self.input_mean) / self.input_std
        low, high = self.backbone(images)
        high = self.aspp(high)
        low = self.low_proj(low)
        low_size = low.shape[-2:]
        if self.config.use_bg:
            # BG: the high-level boundary map, brought to the low level, gates its features.
            gate = torch.sigmoid(self.boundary_gate(boundary_map(high)))
            low = low * (1 + _resize(gate, low_size))
        # hgl_high is a 1x1 conv, which commutes with bilinear resizing: applied at stride 16 it costs 1/16.
        guidance = _resize(self.hgl_high(high), low_size) * low if self.config.use_hgl else low
        high = _resize(high, low_size)
        # HGL's guidance also feeds the decoder (residually), so +HGL alone is a real ablation step.
        decoder_low = low + guidance if self.config.use_hgl else low
        logits = self.classifier(self.decoder(torch.cat([high, decoder_low], dim=1)))
        if not self.config.use_gf:
            return _resize(logits, size)
        # GF: fit the filter at stride 4 on the HGL guidance, apply it at the input's resolution
        # (fast guided upsampling), so the mask takes the guidance's edges at full detail.
        guide_full = _resize(self.guide(guidance), size) + self.image_guide(images)
        guide_low = F.interpolate(guide_full, size=low_size, mode="area")
        radius, eps = self.config.gf_radius, self.config.gf_eps
        if self.config.num_classes != 2:
            return guided_upsample(guide_low, logits, guide_full, radius, eps)
        # Two-class softmax sees only the logit margin and the filter is linear in its source,
        # so filtering the margin alone gives the same probabilities for half the full-size work.
        half_margin = guided_upsample(guide_low, 0.5 * (logits[:, 1:] - logits[:, :1]), guide_full, radius, eps)
        return half_margin * self.margin_signs
