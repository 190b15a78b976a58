"""CAM seed: class activation maps (Zhou et al. 2016) from image-level labels, refined by a dense CRF.

A classifier (the run's backbone, global average pooling, a 1x1 classifier)
learns the photos' classes. Each photo's map for its class, averaged over
scales and flips, is thresholded into a soft object probability and refined
on the photo's colours: by ``pydensecrf`` when the optional ``crf`` extra is
installed, otherwise by a colour guided filter, which needs no compiler.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Generator, Mapping
from pathlib import Path, PureWindowsPath

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from napari_gfn.config import describe_seed, describe_setting
from napari_gfn.engine import distributed
from napari_gfn.engine.events import LabellingError, Notice, Progress
from napari_gfn.engine.images import ImageReadError, a_few, counted, photo_files, photo_subfolders
from napari_gfn.engine.refine import SeedContext, SeedOutput
from napari_gfn.engine.training import PseudoLabelDataset, TrainingSettings, train_model
from napari_gfn.engine.working import read_each
from napari_gfn.network import build_backbone, guided_upsample

__all__ = [
    "CamClassifier",
    "class_activation_map",
    "crf_available",
    "crf_refine",
    "object_probability",
    "read_image_labels",
    "refine_object_mask",
]

CAM_SCALES = (0.75, 1.0, 1.25)
EMBED_CHANNELS = 256
GUIDED_RADIUS_FRACTION = 0.03  # of the long side: about 10 px at 320 px
GUIDED_EPS = 1e-2


def read_image_labels(path: os.PathLike | str) -> tuple[dict[str, str], dict[str, str]]:
    """Image-level classes by photo stem, from an ``image,class`` CSV or a folder of class folders.

    Also returns, by stem, a message for each photo given two different classes: such photos are
    left out of the labels, so their class is predicted like an unlabelled photo's.
    """
    path = Path(path)
    if path.is_dir():
        pairs = _pairs_from_class_folders(path)
    elif path.is_file():
        pairs = _pairs_from_csv(path)
    else:
        raise LabellingError(f"{path}: no such labels file or folder")
    classes_of: dict[str, set[str]] = {}
    for stem, name in pairs:
        classes_of.setdefault(stem, set()).add(name)
    labels = {stem: names.pop() for stem, names in classes_of.items() if len(names) == 1}
    conflicts = {
        stem: f"{stem}: labelled both {' and '.join(sorted(names))} in {path}; its class is predicted instead"
        for stem, names in classes_of.items()
        if len(names) > 1
    }
    return labels, conflicts


def _pairs_from_csv(path: Path) -> list[tuple[str, str]]:
    text = _spreadsheet_text(path)
    reader = csv.DictReader(io.StringIO(text), dialect=_csv_dialect(text.partition("\n")[0]))
    reader.fieldnames = [name.strip().lower() for name in reader.fieldnames or []]
    if not {"image", "class"} <= set(reader.fieldnames):
        raise LabellingError(f"{path}: a labels CSV needs the columns image,class (found {reader.fieldnames})")
    # PureWindowsPath splits at both / and \, so a path column written on Windows gives its stem too.
    pairs = [
        (PureWindowsPath(row["image"].strip()).stem, row["class"].strip())
        for row in reader
        if row["image"] and row["class"]
    ]
    if not pairs:
        raise LabellingError(f"{path}: the labels file lists no image with a class")
    return pairs


def _spreadsheet_text(path: Path) -> str:
    # Spreadsheets write UTF-8 with a byte-order mark, or (Excel's plain "CSV") the system's 8-bit code page.
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        return path.read_text(encoding="latin-1")


def _csv_dialect(header: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        # Where the decimal mark is a comma, spreadsheets separate columns with semicolons.
        return csv.Sniffer().sniff(header, delimiters=",;\t")
    except csv.Error:
        return csv.excel


def _pairs_from_class_folders(folder: Path) -> list[tuple[str, str]]:
    pairs = [
        (photo.stem, class_folder.name)
        for class_folder in photo_subfolders(folder)  # as the photo reader lists them: a run folder is no class
        for photo in _class_photos(class_folder)
    ]
    if not pairs:
        raise LabellingError(f"{folder}: no class folder holds a photo; expected {folder}/<class>/<photo>")
    return pairs


def _class_photos(class_folder: Path) -> list[Path]:
    """A class's photos, sorted below it by year or site, say; none from a folder that cannot be read, whose
    photos the run's own listing says it leaves out."""
    try:
        return photo_files(class_folder)
    except ImageReadError:
        return []


class CamClassifier(nn.Module):
    """Backbone, global average pooling, 1x1 classifier; ``class_maps`` gives the CAMs before pooling."""

    def __init__(self, backbone: str, num_classes: int, pretrained: bool = True) -> None:
        super().__init__()
        self.backbone = build_backbone(backbone, pretrained=pretrained, output_stride=16)
        self.register_buffer("input_mean", torch.tensor(self.backbone.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(self.backbone.std).view(1, 3, 1, 1), persistent=False)
        # Lite0's last block is a linear bottleneck (signed features); a ReLU layer makes the evidence
        # non-negative, as CAM assumes, so a class map only lights up where its features are present.
        self.embed = nn.Sequential(
            nn.Conv2d(self.backbone.high_channels, EMBED_CHANNELS, 1, bias=False),
            nn.BatchNorm2d(EMBED_CHANNELS),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Conv2d(EMBED_CHANNELS, num_classes, 1)

    def class_maps(self, images: Tensor) -> Tensor:
        """B x classes x h x w evidence without the bias: its spatial mean plus the bias is the logit."""
        _, high = self.backbone((images - self.input_mean) / self.input_std)
        # The bias is the same at every pixel: it says nothing about where the object is.
        return F.conv2d(self.embed(high), self.classifier.weight)

    def forward(self, images: Tensor) -> Tensor:
        return self.class_maps(images).mean(dim=(-2, -1)) + self.classifier.bias


class _ClassLabelDataset(PseudoLabelDataset):
    """Augmented photos with their class index (the pixel target is a placeholder for the shared augmentation)."""

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        stem = self.stems[index]
        image = self.image(stem)
        image, _ = self._augment(image, torch.zeros(image.shape[1:], dtype=torch.uint8))
        return image, self.targets[stem]


@torch.inference_mode()
def class_activation_map(model: CamClassifier, image: Tensor, class_index: int | None = None) -> tuple[Tensor, int]:
    """The normalised (max 1) CAM of ``class_index`` for a 3 x H x W image in [0, 1], averaged over scales
    and flips, at the image's size; with no class given, the classifier's top class is used."""
    size = image.shape[-2:]
    total = torch.zeros(model.classifier.out_channels, *size, device=image.device)
    evidence = torch.zeros(model.classifier.out_channels, device=image.device)
    for scale in CAM_SCALES:
        scaled = F.interpolate(image[None], scale_factor=scale, mode="bilinear", align_corners=False)
        maps = model.class_maps(torch.cat([scaled, scaled.flip(-1)]))
        evidence += maps.mean(dim=(-2, -1)).sum(dim=0)
        maps = F.interpolate(F.relu(maps), size=size, mode="bilinear", align_corners=False)
        total += maps[0] + maps[1].flip(-1)
    if class_index is None:
        class_index = int((evidence / (2 * len(CAM_SCALES)) + model.classifier.bias).argmax())
    cam = total[class_index]
    return cam / cam.max().clamp_min(1e-6), class_index


def object_probability(cam: Tensor, threshold: float) -> Tensor:
    """Piecewise-linear map of a CAM to P(object): 0.5 at ``threshold``, kept within [0.05, 0.95]."""
    below = 0.5 * cam / threshold
    above = 0.5 + 0.5 * (cam - threshold) / (1 - threshold)
    return torch.where(cam < threshold, below, above).clamp(0.05, 0.95)


def crf_available() -> bool:
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        return False
    return True


def crf_refine(
    image: np.ndarray, probability: np.ndarray, spatial: float = 50, colour: float = 13, weight: float = 10
) -> np.ndarray:
    """Boolean mask from P(object) by a dense CRF (pydensecrf) on ``image``'s colours.

    ``spatial`` (pixels) and ``colour`` (RGB levels) are the widths of the appearance kernel, ``weight``
    its strength; the defaults are those of the CAM seed.
    """
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    height, width = probability.shape
    crf = dcrf.DenseCRF2D(width, height, 2)
    crf.setUnaryEnergy(unary_from_softmax(np.stack([1 - probability, probability]).astype(np.float32)))
    crf.addPairwiseGaussian(sxy=3, compat=3)
    # pydensecrf needs a writable C-contiguous array; a photo read from disk may be read-only.
    colours = np.require(image, np.uint8, ["C_CONTIGUOUS", "WRITEABLE"])
    crf.addPairwiseBilateral(sxy=spatial, srgb=colour, rgbim=colours, compat=weight)
    posterior = np.asarray(crf.inference(10)).reshape(2, height, width)
    return posterior[1] > posterior[0]


def _guided_refine(image: np.ndarray, probability: np.ndarray) -> np.ndarray:
    guide = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    source = torch.from_numpy(probability)[None, None].float()
    radius = max(2, round(GUIDED_RADIUS_FRACTION * max(probability.shape)))
    return (guided_upsample(guide, source, guide, radius, GUIDED_EPS)[0, 0] >= 0.5).numpy()


def refine_object_mask(image: np.ndarray, probability: np.ndarray, use_crf: bool) -> np.ndarray:
    """A boolean mask from P(object) that follows ``image``'s colour edges."""
    return crf_refine(image, probability) if use_crf else _guided_refine(image, probability)


def _labels_source(context: SeedContext) -> str:
    """The run's labels file or folder; without one, photos sorted into one folder per class are labelled by it."""
    config = context.config
    if config.labels:
        return config.labels
    photos = Path(config.images) if config.images else None
    if photos is not None and all(record.path and record.path.parent != photos for record in context.working.images):
        return str(photos)
    raise LabellingError(
        f"the CAM seed needs {describe_setting('labels')}: a CSV file with columns image,class, or a folder of "
        "class folders (photos already sorted into one folder per class need none: give their parent as the photos)"
    )


def _class_indices(context: SeedContext, labels: Mapping[str, str], source: str) -> tuple[dict[str, int], list[str]]:
    stems = set(context.working.stems)
    known = {stem: name for stem, name in labels.items() if stem in stems}
    classes = sorted(set(known.values()))
    if len(classes) < 2:
        found = f"only {classes[0]!r}" if classes else "no labelled photo"
        raise LabellingError(
            f"the CAM seed needs photos of at least two classes to learn what tells them apart, but "
            f"{source} has {found} among these photos. "
            f"Use {describe_seed('otsu')}, {describe_seed('grabcut')}, {describe_seed('ridge')} or "
            f"{describe_seed('transfer')} instead."
        )
    return {stem: classes.index(name) for stem, name in known.items()}, classes


def _what_is_labelled(
    context: SeedContext, labels: Mapping[str, str], class_of: Mapping[str, int], classes: list[str]
) -> str:
    """The labels the seed learns from, naming the photos they leave out and, from a labels file, the names it
    gives that are no photo's (a typo, say)."""
    config = context.config
    said = [
        f"CAM seed: {len(class_of)} labelled photos in {len(classes)} classes"
        + ("" if config.labels else " (the folders the photos are sorted into)")
    ]
    if unlabelled := [stem for stem in context.working.stems if stem not in class_of]:
        said.append(f"the class is predicted for {counted(len(unlabelled), 'unlabelled photo')} ({a_few(unlabelled)})")
    photos = set(context.working.stems)
    if config.labels and (not_photos := sorted(stem for stem in labels if stem not in photos)):
        said.append(
            f"{config.labels} also labels {counted(len(not_photos), 'photo')} not among these ({a_few(not_photos)})"
        )
    return "; ".join(said)


def _choose_refiner(name: str) -> Generator[Notice, None, bool]:
    """True for the dense CRF, False for the guided filter."""
    if name == "guided":
        return False
    if crf_available():
        return True
    if name == "crf":
        raise LabellingError(
            f"{describe_setting('cam_refiner', 'crf')} needs pydensecrf: pip install 'napari-gfn[crf]' (needs a C++ "
            "compiler), or choose guided or auto"
        )
    yield Notice("pydensecrf is not installed: refining CAMs with the guided filter", level="info")
    return False


def _read_photos(context: SeedContext) -> Generator[Progress | Notice, None, list[str]]:
    """Decode (and cache) every photo once up front, so a bad file is named before training, not during it."""
    # The shape only: the copies are cached, and hundreds of them need not sit in memory.
    shapes = yield from read_each(
        lambda stem: context.working.get(stem).shape, context.working.stems, context.cancel, "seed: read photos"
    )
    return list(shapes)


def cam_seed(context: SeedContext) -> Generator[Progress | Notice, None, SeedOutput]:
    """Train the classifier on image-level labels, then turn each photo's CAM into a refined mask."""
    config = context.config
    source = _labels_source(context)
    labels, conflicts = read_image_labels(source)
    for stem in context.working.stems:
        if stem in conflicts:
            yield Notice(conflicts[stem])
    class_of, classes = _class_indices(context, labels, source)
    yield Notice(_what_is_labelled(context, labels, class_of, classes), level="info")
    use_crf = yield from _choose_refiner(config.cam_refiner)  # before training: a missing CRF fails fast
    readable = yield from _read_photos(context)
    usable = set(readable)
    class_of = {stem: index for stem, index in class_of.items() if stem in usable}
    yield from context.missing_weights_notice()
    model = CamClassifier(config.backbone, len(classes), config.pretrained).to(context.device)
    dataset = _ClassLabelDataset(
        context.working, class_of, config.image_size, seed=config.random_seed + distributed.rank()
    )
    settings = TrainingSettings.from_config(config, config.cam_epochs)
    yield from train_model(model, dataset, settings, context.device, context.cancel, "seed: train classifier")

    def mask_of(stem: str, small: np.ndarray) -> np.ndarray:
        image = torch.from_numpy(small).permute(2, 0, 1).float().to(context.device) / 255
        cam, _ = class_activation_map(model, image, class_of.get(stem))
        probability = object_probability(cam, config.cam_threshold).cpu().numpy()
        return refine_object_mask(small, probability, use_crf)

    return SeedOutput(mask_of=mask_of)
