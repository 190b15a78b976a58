"""The bundled Guided Filter Network: pure torch, no napari, no Qt."""

from .backbones import BACKBONES, build_backbone, missing_imagenet_weights, pretrained_efficientnet_lite0
from .gfn import GFN, GFNConfig, boundary_map
from .guided_filter import (
    GuidedFilter,
    UpsamplingCoefficients,
    box_mean,
    guided_filter,
    guided_upsample,
    upsampling_coefficients,
)
from .model_file import ModelFileError, check_model_file_writable, load_model, read_model_card, save_model

__all__ = [
    "BACKBONES",
    "GFN",
    "GFNConfig",
    "GuidedFilter",
    "ModelFileError",
    "UpsamplingCoefficients",
    "boundary_map",
    "box_mean",
    "build_backbone",
    "check_model_file_writable",
    "guided_filter",
    "guided_upsample",
    "load_model",
    "missing_imagenet_weights",
    "pretrained_efficientnet_lite0",
    "read_model_card",
    "save_model",
    "upsampling_coefficients",
]
