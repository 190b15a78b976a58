"""The GFN: shapes, switches, backbones and their weights, model files, and that it learns."""

import itertools
import warnings

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from torchvision import models

from napari_gfn.network import (
    BACKBONES,
    GFN,
    ModelFileError,
    build_backbone,
    load_model,
    missing_imagenet_weights,
    pretrained_efficientnet_lite0,
    read_model_card,
    save_model,
)
from napari_gfn.network.inference import fold_batchnorm
from napari_gfn.sample_data import make_sample_set

SWITCHES = list(itertools.product([False, True], repeat=3))


@pytest.mark.parametrize(("use_bg", "use_hgl", "use_gf"), SWITCHES)
def test_logits_come_back_at_the_input_size(use_bg, use_hgl, use_gf):
    model = GFN(pretrained=False, use_bg=use_bg, use_hgl=use_hgl, use_gf=use_gf).eval()
    for height, width in [(64, 64), (67, 45), (33, 101)]:
        with torch.no_grad():
            logits = model(torch.rand(2, 3, height, width))
        assert logits.shape == (2, 2, height, width)
        assert torch.isfinite(logits).all()


def test_switches_change_the_architecture():
    baseline = GFN(pretrained=False, use_bg=False, use_hgl=False, use_gf=False)
    full = GFN(pretrained=False, gf_radius=3, gf_eps=0.1)
    names = {name.split(".")[0] for name, _ in full.named_parameters()}
    assert {"boundary_gate", "hgl_high", "guide"} <= names
    assert not {"boundary_gate", "hgl_high", "guide"} & {n.split(".")[0] for n, _ in baseline.named_parameters()}
    assert (full.config.gf_radius, full.config.gf_eps) == (3, 0.1)


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "resnet18"])
def test_trains_at_batch_size_one(backbone):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = GFN(backbone=backbone, pretrained=False).train()
    logits = model(torch.rand(1, 3, 48, 40))
    F.cross_entropy(logits, torch.randint(0, 2, (1, 48, 40))).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_unknown_backbone_lists_the_valid_names():
    with pytest.raises(ValueError, match="resnet101") as error:
        GFN(backbone="vgg16")
    assert all(name in str(error.value) for name in BACKBONES)


def test_pretrained_false_reads_no_weights(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pretrained=False must not read weights")

    monkeypatch.setattr(torch, "load", refuse)
    for name in BACKBONES:  # every name the forms offer builds
        build_backbone(name, pretrained=False)


def test_lite0_imagenet_weights_classify_chelsea_as_a_cat():
    model = pretrained_efficientnet_lite0(with_head=True).eval()
    image = torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1)[None].float() / 255
    image = F.interpolate(image, size=(224, 224), mode="bilinear", antialias=True)
    with torch.no_grad():
        top = model((image - 0.5) / 0.5).argmax(1).item()
    assert 281 <= top <= 285


def test_gfn_uses_the_lite0_imagenet_weights():
    reference = pretrained_efficientnet_lite0()
    model = GFN()
    torch.testing.assert_close(model.backbone.body._conv_stem.weight, reference._conv_stem.weight)


def test_a_torchvision_backbone_without_cached_weights_is_said_to_start_from_random_weights(empty_torch_cache):
    missing = missing_imagenet_weights("resnet18")
    assert missing.startswith(
        f"no ImageNet weights for the resnet18 backbone in the local torch cache ({empty_torch_cache}"
    )
    assert "starts from random weights" in missing
    assert missing_imagenet_weights("efficientnet_lite0") is None  # its weights come with a package
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a run says so, once, rather than each network built
        backbone = build_backbone("resnet18")
    assert not torch.equal(backbone.body["conv1"].weight, build_backbone("resnet18").body["conv1"].weight)  # random


def test_torchvision_backbone_loads_weights_from_the_local_cache(empty_torch_cache):
    torch.manual_seed(3)
    reference = models.resnet18()
    url = models.ResNet18_Weights.IMAGENET1K_V1.url
    (empty_torch_cache / "checkpoints").mkdir()
    torch.save(reference.state_dict(), empty_torch_cache / "checkpoints" / url.rsplit("/", 1)[1])
    assert missing_imagenet_weights("resnet18") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backbone = build_backbone("resnet18")
    torch.testing.assert_close(backbone.body["conv1"].weight, reference.conv1.weight)


@pytest.mark.parametrize(("name", "stride"), [("resnet101", 16), ("efficientnet_lite0", 16), ("resnet18", 32)])
def test_output_stride(name, stride):
    backbone = build_backbone(name, pretrained=False, output_stride=stride).eval()
    with torch.no_grad():
        low, high = backbone(torch.rand(1, 3, 128, 128))
    assert low.shape[-1] == 128 // 4
    assert high.shape[-1] == 128 // stride
    assert (low.shape[1], high.shape[1]) == (backbone.low_channels, backbone.high_channels)


def _randomise_batchnorm(model):
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model.eval()


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "resnet18"])
def test_folding_batchnorm_keeps_the_output(backbone):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _randomise_batchnorm(GFN(backbone=backbone, pretrained=False))
    images = torch.rand(2, 3, 64, 72)
    with torch.no_grad():
        expected = model(images)
        folded = fold_batchnorm(model)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        torch.testing.assert_close(folded(images), expected, atol=1e-4, rtol=1e-4)


def test_save_then_load_gives_identical_outputs(tmp_path):
    model = _randomise_batchnorm(GFN(pretrained=False, gf_radius=3, gf_eps=0.05))
    path = save_model(model, tmp_path / "model.pt", class_names=["sky", "branch"], image_size=320, source="demo")
    loaded = load_model(path)
    images = torch.rand(2, 3, 57, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images), atol=0, rtol=0)
    card = read_model_card(path)
    assert card["config"]["backbone"] == "efficientnet_lite0"
    assert card["config"]["gf_radius"] == 3
    assert card["meta"] == {"class_names": ["sky", "branch"], "image_size": 320, "source": "demo"}
    assert card["normalisation"]["mean"] == [0.5, 0.5, 0.5]
    assert {"torch", "torchvision", "napari_gfn"} <= set(card["versions"])
    assert loaded.card["created"] == card["created"]
    assert not list(tmp_path.glob("*.tmp"))


def test_truncated_foreign_and_incompatible_files_are_named_in_the_error(tmp_path):
    path = save_model(GFN(pretrained=False), tmp_path / "model.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    payload = torch.load(path, weights_only=True)
    payload["config"]["num_classes"] = 5
    incompatible = tmp_path / "incompatible.pt"
    torch.save(payload, incompatible)
    text = tmp_path / "notes.pt"
    text.write_text("not a model")
    for bad, problem in [
        (truncated, "truncated or corrupt"),
        (foreign, "not a napari-gfn model"),
        (incompatible, "does not fit"),
        (text, "truncated or corrupt"),
        (tmp_path / "missing.pt", "no such model file"),
    ]:
        with pytest.raises(ModelFileError, match=problem) as error:
            load_model(bad)
        assert str(bad) in str(error.value)


def _foreground_iou(predicted, truth):
    return [((p & t).sum() / (p | t).sum()).item() for p, t in zip(predicted, truth, strict=True)]


@pytest.fixture(scope="module")
def flowers():
    sample = make_sample_set("flower", 8, 96, simple_fraction=0.5, seed=5)
    images = torch.from_numpy(np.stack(sample.images)).permute(0, 3, 1, 2).float() / 255
    return images, torch.from_numpy(np.stack(sample.masks)).long()


@pytest.mark.slow
@pytest.mark.parametrize(("use_bg", "use_hgl", "use_gf"), SWITCHES)
def test_learns_synthetic_flowers_with_every_switch_combination(flowers, use_bg, use_hgl, use_gf):
    images, masks = flowers
    torch.manual_seed(0)
    model = GFN(use_bg=use_bg, use_hgl=use_hgl, use_gf=use_gf)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(100):
        batch = torch.randint(0, len(images), (4,))
        x, y = images[batch], masks[batch]
        if step % 2:
            x, y = x.flip(-1), y.flip(-1)
        loss = F.cross_entropy(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        predicted = model.eval()(images).argmax(1).bool()
    assert np.mean(_foreground_iou(predicted, masks.bool())) > 0.87  # measured 0.909-0.987 across the eight
