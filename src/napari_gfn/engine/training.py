"""Training a GFN on (pseudo) masks: the paper's recipe, scaled for the CPU.

SGD with momentum, weight decay and poly learning-rate decay; cross-entropy
with pixels marked 255 ignored; random scale, crop and flip.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision.transforms.v2 import functional as TF

from napari_gfn.config import RunConfig
from napari_gfn.engine import distributed
from napari_gfn.engine.events import CancelToken, Notice, Progress
from napari_gfn.engine.images import counted
from napari_gfn.engine.working import WorkingImages
from napari_gfn.network import GFN, missing_imagenet_weights

__all__ = [
    "IGNORE",
    "PseudoLabelDataset",
    "TrainingSettings",
    "batch_size_that_fits",
    "describe_device",
    "missing_weights_notice",
    "mixed_precision",
    "new_model",
    "train_model",
    "train_on_targets",
]

IGNORE = 255


@dataclass(frozen=True)
class TrainingSettings:
    epochs: int
    min_steps: int
    batch_size: int = 8
    learning_rate: float = 0.007
    momentum: float = 0.9
    weight_decay: float = 2e-4
    crop_size: int = 320
    # New layers learn 10x faster than the ImageNet backbone (DeepLab practice): a CPU run has few steps.
    head_lr_multiplier: float = 10.0
    # None: bf16 autocast on GPUs that support it, float32 elsewhere (see mixed_precision).
    autocast_dtype: torch.dtype | None = None
    workers: int = 0  # processes that load and augment batches
    random_seed: int = 0  # batch order and dropout follow it, so a run repeats exactly

    @classmethod
    def from_config(cls, config: RunConfig, epochs: int) -> TrainingSettings:
        return cls(
            epochs=epochs,
            min_steps=config.min_steps,
            batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            crop_size=config.image_size,
            workers=config.workers,
            random_seed=config.random_seed,
        )


class PseudoLabelDataset(Dataset):
    """Working-resolution photos with their masks (uint8: 0, 1, or 255 = ignore), augmented."""

    def __init__(
        self,
        working: WorkingImages,
        targets: Mapping[str, np.ndarray],
        crop_size: int,
        scale_range: tuple[float, float] = (0.75, 1.25),
        colour_jitter: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.working = working
        self.stems = list(targets)
        self.targets = targets
        self.crop_size = crop_size
        self.scale_range = scale_range
        self.colour_jitter = colour_jitter
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.stems)

    def image(self, stem: str) -> torch.Tensor:
        """The working-resolution photo as a 3 x H x W float tensor in [0, 1]."""
        return torch.from_numpy(self.working.get(stem)).permute(2, 0, 1).float() / 255

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        stem = self.stems[index]
        image = self.image(stem)
        target = torch.from_numpy(np.asarray(self.targets[stem], dtype=np.uint8))
        if target.shape != image.shape[1:]:
            target = F.interpolate(target[None, None].float(), size=image.shape[1:], mode="nearest")[0, 0].byte()
        return self._augment(image, target)

    def _jitter_colours(self, image: torch.Tensor) -> torch.Tensor:
        # Factors come from the dataset's own generator, so a run's augmentations repeat with its seed.
        strength = self.colour_jitter
        brightness, contrast, saturation = self.rng.uniform(1 - strength, 1 + strength, size=3)
        image = TF.adjust_brightness(image, float(brightness))
        image = TF.adjust_contrast(image, float(contrast))
        image = TF.adjust_saturation(image, float(saturation))
        return TF.adjust_hue(image, float(self.rng.uniform(-strength, strength) / 6))

    def _augment(self, image: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.colour_jitter > 0:
            image = self._jitter_colours(image)
        scale = self.rng.uniform(*self.scale_range)
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[2] * scale)))
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        target = F.interpolate(target[None, None].float(), size=size, mode="nearest")[0, 0].long()
        crop = self.crop_size
        pad_h, pad_w = max(crop - size[0], 0), max(crop - size[1], 0)
        image = F.pad(image, (0, pad_w, 0, pad_h), value=0.5)
        target = F.pad(target, (0, pad_w, 0, pad_h), value=IGNORE)
        top = self.rng.integers(0, image.shape[1] - crop + 1)
        left = self.rng.integers(0, image.shape[2] - crop + 1)
        image = image[:, top : top + crop, left : left + crop]
        target = target[top : top + crop, left : left + crop]
        if self.rng.random() < 0.5:
            image, target = image.flip(-1), target.flip(-1)
        return image.contiguous(), target.contiguous()


def _parameter_groups(model: torch.nn.Module, settings: TrainingSettings) -> list[dict]:
    backbone = {id(p) for p in model.backbone.parameters()}
    head = [p for p in model.parameters() if id(p) not in backbone]
    return [
        {"params": list(model.backbone.parameters()), "lr": settings.learning_rate},
        {"params": head, "lr": settings.learning_rate * settings.head_lr_multiplier},
    ]


def mixed_precision(device: torch.device) -> torch.dtype | None:
    """bf16 autocast on GPUs that support it; None (float32) elsewhere, where bf16 is rarely faster.

    The guided filter turns autocast off inside and always works in float32.
    """
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def batch_size_that_fits(requested: int, bytes_per_sample: float, free_bytes: float, headroom: float = 0.8) -> int:
    """The requested batch size, or less when ``free_bytes`` (times ``headroom``) cannot hold it; at least 1."""
    return int(max(1, min(requested, headroom * free_bytes // max(bytes_per_sample, 1.0))))


def _channels_last_on(device: torch.device, images: torch.Tensor) -> torch.Tensor:
    return images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)


def _gpu_batch_size(model: torch.nn.Module, dataset: Dataset, requested: int, device: torch.device) -> int:
    """Measure one training sample's GPU memory and keep the batch within the memory that is free."""
    torch.cuda.reset_peak_memory_stats(device)
    baseline = torch.cuda.memory_allocated(device)
    image, target = dataset[0]
    with torch.autocast("cuda", dtype=mixed_precision(device), enabled=mixed_precision(device) is not None):
        target = torch.as_tensor(target)[None].to(device)
        # In the layout training uses, whose activations can take a different amount of memory.
        loss = F.cross_entropy(model(_channels_last_on(device, image[None])).float(), target, ignore_index=IGNORE)
    loss.backward()
    model.zero_grad(set_to_none=True)
    per_sample = torch.cuda.max_memory_allocated(device) - baseline
    free, _ = torch.cuda.mem_get_info(device)
    return batch_size_that_fits(requested, per_sample, free)


def _own_augmentations(worker_id: int) -> None:
    # A forked worker inherits the dataset's generator: reseed it, or every worker repeats the same crops.
    info = torch.utils.data.get_worker_info()
    info.dataset.rng = np.random.default_rng(info.seed)


def _loader(dataset: Dataset, batch_size: int, device: torch.device, workers: int, seed: int) -> DataLoader:
    options = {
        "drop_last": True,
        "pin_memory": device.type == "cuda",  # page-locked batches copy to the GPU asynchronously
        "num_workers": workers,
        "persistent_workers": workers > 0,  # training passes over the set many times
        "worker_init_fn": _own_augmentations if workers > 0 else None,
    }
    if distributed.world_size() == 1:
        return DataLoader(dataset, batch_size=batch_size, shuffle=True, **options)
    # DistributedSampler pads every rank's share to the same length, so all ranks step in lockstep.
    sampler = DistributedSampler(dataset, shuffle=True, seed=seed)
    per_rank = max(1, min(batch_size // distributed.world_size(), len(sampler)))
    return DataLoader(dataset, batch_size=per_rank, sampler=sampler, **options)


def _data_parallel(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    if distributed.world_size() == 1:
        return model
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def _batches_forever(loader: DataLoader) -> Iterator:
    for epoch in itertools.count():
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)  # a new shuffle every pass, the same on every rank
        yield from loader


def train_model(
    model: torch.nn.Module,
    dataset: PseudoLabelDataset,
    settings: TrainingSettings,
    device: torch.device | str,
    cancel: CancelToken,
    phase: str,
) -> Iterator[Progress]:
    """Train ``model`` in place; yields progress after every step and checks ``cancel`` before each.

    Under torchrun the model is wrapped in DistributedDataParallel and each rank
    takes its share of every batch, so the global batch and the number of steps
    stay those of a single process.
    """
    device = torch.device(device)
    # Channels-last suits the convolutions on GPUs and CPUs alike: on two CPU cores a GFN training step
    # (EfficientNet-Lite0, 320 px) takes 0.77 times as long as in the default layout (benchmarks/model_speed.py).
    model.to(device, memory_format=torch.channels_last).train()
    batch_size = min(settings.batch_size, len(dataset))
    if device.type == "cuda":
        batch_size = _gpu_batch_size(model, dataset, batch_size, device)
    steps = max(settings.epochs * math.ceil(len(dataset) / batch_size), settings.min_steps)
    # torch's global generator starts each process from a random seed; seeded here, the batch order (one
    # process) and the dropout masks of two runs with the same settings are the same.
    torch.manual_seed(settings.random_seed + distributed.rank())
    loader = _loader(dataset, batch_size, device, settings.workers, settings.random_seed)
    optimiser = torch.optim.SGD(
        _parameter_groups(model, settings), momentum=settings.momentum, weight_decay=settings.weight_decay
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: (1 - step / steps) ** 0.9)
    network = _data_parallel(model, device)
    autocast_dtype = settings.autocast_dtype or mixed_precision(device)
    batches = _batches_forever(loader)
    yield Progress(phase, 0, steps)
    for step in range(steps):
        cancel.check()
        images, targets = next(batches)
        images = _channels_last_on(device, images)
        targets = targets.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = network(images)
        loss = F.cross_entropy(logits.float(), targets, ignore_index=IGNORE)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        yield Progress(phase, step + 1, steps)
    model.eval()


def describe_device(device: torch.device | str) -> str:
    """Where training runs, and on the CPU why: a CPU-only torch on a GPU server would otherwise go unnoticed."""
    device = torch.device(device)  # callers and scripts pass "cpu" as often as a torch.device
    if device.type == "cuda":
        return f"on {device} ({torch.cuda.get_device_name(device)})"
    threads = torch.get_num_threads()
    on_cpu = f"on the CPU ({counted(threads, 'thread')})"
    if torch.cuda.is_available():
        return f"{on_cpu}, as asked, though a CUDA GPU is present"
    if torch.version.cuda is None:
        return f"{on_cpu}: this torch ({torch.__version__}) is built without CUDA, so no GPU can be used"
    return f"{on_cpu}: torch finds no CUDA GPU"


def missing_weights_notice(config: RunConfig) -> Iterator[Notice]:
    """A warning when the networks :func:`new_model` makes would start from random weights, for want of the
    backbone's ImageNet weights."""
    if config.pretrained and (missing := missing_imagenet_weights(config.backbone)):
        yield Notice(missing)


def new_model(config: RunConfig, device: torch.device, **modules: bool) -> GFN:
    """A fresh GFN with the run's architecture settings (``modules``: use_bg, use_hgl, use_gf to switch off).

    The new layers' initial weights follow ``config.random_seed``, so a run repeats exactly.
    """
    cfg = config
    with torch.random.fork_rng(devices=[]):  # leaves the caller's random state alone
        torch.manual_seed(cfg.random_seed)
        model = GFN(
            backbone=cfg.backbone, pretrained=cfg.pretrained, gf_radius=cfg.gf_radius, gf_eps=cfg.gf_eps, **modules
        )
    return model.to(device)


def train_on_targets(
    config: RunConfig,
    model: torch.nn.Module,
    working: WorkingImages,
    targets: Mapping[str, np.ndarray],
    *,
    phase: str,
    epochs: int,
    device: torch.device,
    cancel: CancelToken,
) -> Iterator[Progress]:
    """Train ``model`` on working-resolution ``targets`` (0, 1, 255 = ignore) with the run's recipe."""
    # Each rank draws its own augmentations: the same seed everywhere would repeat them across ranks.
    dataset = PseudoLabelDataset(
        working,
        targets,
        config.image_size,
        colour_jitter=config.colour_jitter,
        seed=config.random_seed + distributed.rank(),
    )
    yield from train_model(model, dataset, TrainingSettings.from_config(config, epochs), device, cancel, phase)
