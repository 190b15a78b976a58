"""Labelled source sets (a mask folder or PASCAL VOC 2012) and training a source model on one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from napari_gfn.config import VOC_CLASSES, RunConfig
from napari_gfn.engine.events import CancelToken, LabellingError, Notice, Progress
from napari_gfn.engine.images import (
    ImageReadError,
    ImageRecord,
    ImageSet,
    a_few,
    image_files,
    read_true_mask,
    size_mismatch,
)
from napari_gfn.engine.training import IGNORE, describe_device, missing_weights_notice, new_model, train_on_targets
from napari_gfn.engine.working import WorkingImages, read_each
from napari_gfn.network import GFN, check_model_file_writable, save_model

__all__ = ["LabelledSet", "train_source_model", "train_source_model_file"]

TargetReader = Callable[[Path], np.ndarray]


def _object_mask_target(path: Path) -> np.ndarray:
    """A mask file (0/255 or a label image) as training targets: 1 = object, 0 = background, and
    ``IGNORE`` where the mask leaves pixels unlabelled (as Pascal VOC's masks do), which stay out of the loss."""
    object_mask, labelled = read_true_mask(path)
    target = object_mask.astype(np.uint8)
    if labelled is not None:
        target[~labelled] = IGNORE
    return target


def _voc_target(class_index: int) -> TargetReader:
    def read(path: Path) -> np.ndarray:
        try:
            with Image.open(path) as picture:
                if picture.mode != "P":
                    raise ImageReadError(str(path), f"not a VOC class-index (palette) PNG (mode {picture.mode})")
                indices = np.asarray(picture)
        except OSError as error:
            raise ImageReadError(str(path), f"cannot be read: {error}") from None
        # VOC marks object outlines and difficult pixels 255: they stay out of the loss.
        return np.where(indices == IGNORE, IGNORE, indices == class_index).astype(np.uint8)

    return read


def _unpaired(photos: list[ImageRecord], images: os.PathLike | str, masks: Path) -> tuple[str, ...]:
    """The photos of a labelled set without a mask, named in one message (a set may have hundreds)."""
    if len(photos) <= 1:
        return tuple(f"{photo.path}: no mask in {masks}" for photo in photos)
    return (f"{len(photos)} photos in {images} have no mask in {masks} ({a_few([p.stem for p in photos])})",)


@dataclass(frozen=True)
class LabelledSet:
    """Photos with pixel labels; ``read_target`` turns a label file into 0/1 targets with 255 = ignore."""

    name: str
    images: ImageSet
    label_paths: dict[str, Path]
    read_target: TargetReader
    missing: tuple[str, ...] = ()

    @classmethod
    def from_folders(cls, images: os.PathLike | str, masks: os.PathLike | str) -> LabelledSet:
        """Photos in ``images`` and 0/255 masks with the same stems in ``masks``."""
        masks = Path(masks)
        if not masks.is_dir():
            raise LabellingError(f"{masks}: no such mask folder")
        if masks.resolve() == Path(images).resolve():  # one folder chosen twice, in the dock's two fields, say
            raise LabellingError(f"{masks} is the photos' folder, given for their masks too: give the masks' folder")
        try:
            photos = ImageSet.from_folder(images)
            mask_paths = image_files(masks)
        except ImageReadError as error:
            raise LabellingError(str(error)) from None
        found = {stem: mask_paths.get(stem) for stem in photos.stems}
        paired = {stem: path for stem, path in found.items() if path is not None}
        if not paired:
            raise LabellingError(f"{masks}: no mask has the stem of a photo in {images}")
        unpaired = [photo for photo in photos if found[photo.stem] is None]
        return cls(str(images), photos.subset(paired), paired, _object_mask_target, _unpaired(unpaired, images, masks))

    @classmethod
    def from_voc(cls, root: os.PathLike | str, class_name: str, split: str = "train") -> LabelledSet:
        """A PASCAL VOC 2012 segmentation split: ``class_name`` is the object, every other class background."""
        root = Path(root)
        if class_name not in VOC_CLASSES:
            raise LabellingError(f"unknown VOC class {class_name!r}; VOC classes: {', '.join(VOC_CLASSES)}")
        listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not listing.is_file():
            raise LabellingError(f"{root}: not a VOC 2012 root ({listing.relative_to(root)} is missing)")
        stems = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        records, labels, missing = [], {}, []
        for stem in stems:
            photo = root / "JPEGImages" / f"{stem}.jpg"
            label = root / "SegmentationClass" / f"{stem}.png"
            if photo.is_file() and label.is_file():
                records.append(ImageRecord(stem, path=photo))
                labels[stem] = label
            else:
                missing.append(f"{stem}: listed in {listing.name} but its JPEG or class PNG is missing")
        if not records:
            raise LabellingError(f"{root}: no photo of the {split} split has both its JPEG and class PNG")
        target = _voc_target(VOC_CLASSES.index(class_name) + 1)  # index 0 is background
        return cls(f"VOC2012 {split} ({class_name})", ImageSet(records), labels, target, tuple(missing))

    def working_targets(
        self, working: WorkingImages, cancel: CancelToken, phase: str
    ) -> Generator[Progress | Notice, None, dict[str, np.ndarray]]:
        """Every usable pair's targets at working resolution; unreadable or mis-sized pairs are named and skipped."""
        targets = yield from read_each(lambda stem: self._working_target(working, stem), working.stems, cancel, phase)
        if not targets:
            raise LabellingError(f"{self.name}: no photo and label pair could be read")
        return targets

    def _working_target(self, working: WorkingImages, stem: str) -> np.ndarray:
        full = working.full(stem)
        target = self.read_target(self.label_paths[stem])
        if target.shape != full.shape[:2]:
            raise size_mismatch(str(self.label_paths[stem]), "labels are", target.shape, full.shape[:2])
        small = working.get(stem, full)
        resized = torch.nn.functional.interpolate(
            torch.from_numpy(target)[None, None].float(), size=small.shape[:2], mode="nearest"
        )
        return resized[0, 0].to(torch.uint8).numpy()


def train_source_model(
    labelled: LabelledSet,
    config: RunConfig,
    device: torch.device,
    cancel: CancelToken | None = None,
    model: GFN | None = None,
) -> Generator[Progress | Notice, None, GFN]:
    """Train a GFN on a labelled set with the run recipe (``config.epochs`` epochs); returns it in eval mode.

    ``model`` is the network to train; by default a fresh GFN built from ``config``.
    """
    cancel = cancel or CancelToken()
    for problem in labelled.missing:
        yield Notice(f"skipped {problem}")
    with tempfile.TemporaryDirectory(prefix="napari-gfn-source-") as cache:
        working = WorkingImages(labelled.images, config.image_size, Path(cache))
        targets = yield from labelled.working_targets(working, cancel, "source: read")
        yield Notice(
            f"training a source model on {len(targets)} labelled photos of {labelled.name}, {describe_device(device)}",
            level="info",
        )
        if model is None:
            yield from missing_weights_notice(config)
            model = new_model(config, device)
        yield from train_on_targets(
            config, model, working, targets, phase="source: train", epochs=config.epochs, device=device, cancel=cancel
        )
    return model.eval()


def train_source_model_file(
    labelled: LabelledSet,
    config: RunConfig,
    device: torch.device,
    path: os.PathLike | str,
    object_name: str | None = None,
    cancel: CancelToken | None = None,
) -> Generator[Progress | Notice, None, Path]:
    """Train a source model (:func:`train_source_model`) and write it to ``path`` with its card: what the
    object is, which set taught it, at what size. Returns the path.

    A path that could not be written is refused first, not after the training.
    """
    check_model_file_writable(path)
    model = yield from train_source_model(labelled, config, device, cancel)
    return save_model(
        model,
        path,
        class_names=["background", object_name or "object"],
        image_size=config.image_size,
        source=labelled.name,
        photos=len(labelled.images),
    )
