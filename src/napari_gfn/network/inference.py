"""Inference-only copies of a network: batch norm folded into convolutions, channels-last memory."""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["fold_batchnorm", "inference_copy"]


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d into the Conv2d registered right before it, in place (eval mode only).

    Every module of this package registers a convolution directly before the
    batch norm that consumes its output; tests check that folding leaves the
    output unchanged for every backbone.
    """
    for parent in model.modules():
        children = list(parent.named_children())
        for (conv_name, conv), (bn_name, bn) in itertools.pairwise(children):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(parent, bn_name, nn.Identity())
    return model


def inference_copy(model: nn.Module) -> nn.Module:
    """A folded, channels-last, eval-mode copy of ``model`` for prediction; ``model`` is untouched."""
    fast = fold_batchnorm(copy.deepcopy(model).eval())
    return fast.to(memory_format=torch.channels_last)
