"""The run configuration: one dataclass shared by the command line, the widgets and the run folder."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace

__all__ = [
    "BACKBONES",
    "BULKY_OBJECT_SETTINGS",
    "CAM_REFINERS",
    "DEMO_CONFIG",
    "SEED_METHODS",
    "SEED_OWN_SETTINGS",
    "SETTING_HELP",
    "SETTING_LABELS",
    "THIN_OBJECT_SETTINGS",
    "VOC_CLASSES",
    "RunConfig",
    "describe_seed",
    "describe_setting",
    "object_shape_settings",
    "setting_flag",
    "settings_in_words",
    "settings_not_read",
    "shape_settings_for_new_seed",
]

SEED_METHODS = ("otsu", "transfer", "cam", "grabcut", "ridge")
# The encoders napari_gfn.network builds, named here so that a form can list them without loading torch.
BACKBONES = ("efficientnet_lite0", "resnet18", "resnet50", "resnet101")
# PASCAL VOC 2012's object classes, in its label order (index 0 is background), for source models.
VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
# "auto" uses the dense CRF when pydensecrf is installed and the guided filter otherwise.
CAM_REFINERS = ("auto", "crf", "guided")
# How to compute, which is the continuing machine's and not the run's: a run from a GPU server continues on a
# laptop's CPU, and one from the command line with photo-reading processes continues in napari, whose process
# must not fork.
MACHINE_SETTINGS = ("device", "workers")

# Refinement settings whose best value depends on the object's shape. A run that leaves one unset takes its
# seed's: the ridge seed's objects are thin, every other seed's are bulky.
# Bulky objects (chosen on validation splits of horses and flowers17; docs/results.md):
# - upsample_radius: sharpening to full resolution, radius in working-size pixels. A wide window with a tiny eps
#   lets the mask follow the photo's colour edges (benchmarks/upsample_search.py, at image_size 320).
# - grabcut_edge_band: GrabCut decides again, from each photo's own colours, the pixels within this many
#   working-size pixels of a predicted mask's edge (0: off). Over two rounds, 3 gained +0.016 fg IoU on horses
#   (two random seeds), +0.009 on flowers17 from GrabCut seeds and +0.041 on horses from the Otsu seed.
# - min_steps: the fewest SGD steps a round trains for, a 300-photo round's length (4 epochs of 38 batches), so
#   that small sets learn as long as that. With 60, a 40-photo cherry-dev run collapsed.
BULKY_OBJECT_SETTINGS = {"upsample_radius": 32, "grabcut_edge_band": 3, "min_steps": 150}
# Thin objects (chosen on cherry-dev's validation half): a narrow sharpening window, no edge band (it snaps
# branch masks onto bark edges, away from the polylines) and longer rounds. With the bulky settings, rounds after
# a ridge seed lost (0.378 -> 0.244 -> 0.140 fg IoU on cherry-dev); with these they gain.
THIN_OBJECT_SETTINGS = {"upsample_radius": 4, "grabcut_edge_band": 0, "min_steps": 600}


def object_shape_settings(seed: str) -> dict[str, int]:
    """The refinement settings a run of ``seed`` takes unless given others: thin objects' for the ridge seed."""
    return THIN_OBJECT_SETTINGS if seed == "ridge" else BULKY_OBJECT_SETTINGS


def shape_settings_for_new_seed(current: dict[str, int], old_seed: str, new_seed: str) -> dict[str, int]:
    """The object-shape settings that change when ``old_seed`` becomes ``new_seed``: those still at the old
    seed's own values, which were not chosen by hand, take the new seed's."""
    before, after = object_shape_settings(old_seed), object_shape_settings(new_seed)
    return {name: value for name, value in after.items() if value != before[name] and current[name] == before[name]}


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides what a labelling run computes.

    Paths are strings so the configuration round-trips through JSON unchanged.
    ``simple`` is "auto" (photos chosen by Otsu separability and border
    contact) or a folder of plain-background photos. The refinement settings
    that suit the object's shape take the seed's values when left unset.
    """

    images: str | None = None
    out: str | None = None
    seed: str = "otsu"
    simple: str = "auto"
    simple_threshold: float = 0.8
    simple_max_border: float = 0.15
    source_model: str | None = None
    labels: str | None = None
    cam_threshold: float = 0.5
    cam_refiner: str = "auto"
    # Epochs of the CAM seed's classifier. On flowers17's validation half, 4 gave a better seed than 12
    # (+0.060 fg IoU), likely because a classifier trained longer needs less of the object to tell the classes
    # apart, so its maps shrink (docs/results.md).
    cam_epochs: int = 4
    iterations: int = 3
    converge_iou: float = 0.98
    area_min: float = 0.1
    area_max: float = 0.9
    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    device: str = "auto"
    image_size: int = 320
    seed_epochs: int = 12
    # A round's epochs. On horses, half and twice as many steps per round both lost to this (-0.04 and -0.03 fg IoU
    # after one round): too few learn too little, too many learn the seed's mistakes (docs/results.md).
    epochs: int = 4
    min_steps: int | None = None  # None: the seed's own value (object_shape_settings)
    batch_size: int = 8
    learning_rate: float = 0.007
    momentum: float = 0.9
    weight_decay: float = 2e-4
    # Training photos' brightness, contrast and saturation vary by up to this fraction; their hue turns by up to
    # a sixth of it, as a fraction of the colour circle.
    # 0.3, fixed before measuring, adds +0.003 test mIoU on horses (docs/results.md).
    colour_jitter: float = 0.3
    gf_radius: int = 2
    gf_eps: float = 1e-2
    upsample_radius: int | None = None  # None: the seed's own value (object_shape_settings)
    upsample_eps: float = 1e-5
    # Prediction averages the network's probability over these scales of the working size (each with its
    # mirror image): chosen on the same validation splits (benchmarks/upsample_search.py --scale-sets).
    predict_scales: tuple[float, ...] = (1.0, 1.25, 1.5)
    # A pixel is object where the network's averaged probability reaches this. A lower value keeps more of
    # thin objects, whose probability falls below 0.5 at their edges; on cherry-dev 0.4-0.45 gained
    # +0.004 to +0.025 fg IoU over 0.5, depending on the model (docs/results.md), so 0.5 stays the default.
    mask_threshold: float = 0.5
    grabcut_edge_band: int | None = None  # None: the seed's own value (object_shape_settings)
    gt: str | None = None
    ignore: str | None = None
    random_seed: int = 0
    # Processes that decode photos ahead of the network (0: the run's own process, as in the napari GUI).
    workers: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "predict_scales", tuple(float(scale) for scale in self.predict_scales))  # JSON lists
        for name, value in object_shape_settings(self.seed).items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        problems = [
            f"{_setting_in_messages(name)} must be {rule}, got {getattr(self, name)!r}"
            for name, valid, rule in self._rules()
            if not valid
        ]
        if problems:
            raise ValueError("; ".join(problems))

    def _rules(self) -> list[tuple[str, bool, str]]:
        """(setting, whether its value is valid, the rule in words) for each setting with a limited range."""
        device_valid = self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")
        return [
            ("seed", self.seed in SEED_METHODS, f"one of {', '.join(SEED_METHODS)}"),
            ("cam_refiner", self.cam_refiner in CAM_REFINERS, f"one of {', '.join(CAM_REFINERS)}"),
            ("backbone", self.backbone in BACKBONES, f"one of {', '.join(BACKBONES)}"),
            ("device", device_valid, "auto, cpu, cuda or cuda:N"),
            ("simple_threshold", 0.0 <= self.simple_threshold <= 1.0, "between 0 and 1"),
            ("simple_max_border", 0.0 <= self.simple_max_border <= 1.0, "between 0 and 1"),
            ("cam_threshold", 0.0 < self.cam_threshold < 1.0, "between 0 and 1"),
            ("mask_threshold", 0.0 < self.mask_threshold < 1.0, "between 0 and 1"),
            (
                "area_min",
                0.0 <= self.area_min < self.area_max,
                f"at least 0 and below {describe_setting('area_max', self.area_max)}",
            ),
            ("area_max", self.area_max <= 1.0, "at most 1"),
            ("iterations", self.iterations >= 0, "at least 0"),
            ("cam_epochs", self.cam_epochs >= 1, "at least 1"),
            ("seed_epochs", self.seed_epochs >= 1, "at least 1"),
            ("epochs", self.epochs >= 1, "at least 1"),
            ("min_steps", self.min_steps >= 1, "at least 1"),
            ("image_size", self.image_size >= 32, "at least 32"),
            ("batch_size", self.batch_size >= 1, "at least 1"),
            ("learning_rate", self.learning_rate > 0, "above 0"),
            ("gf_radius", self.gf_radius >= 1, "at least 1"),
            ("gf_eps", self.gf_eps > 0, "above 0"),
            ("upsample_radius", self.upsample_radius >= 1, "at least 1"),
            ("upsample_eps", self.upsample_eps > 0, "above 0"),
            (
                "predict_scales",
                bool(self.predict_scales) and min(self.predict_scales) > 0,
                "one or more numbers above 0",
            ),
            ("grabcut_edge_band", self.grabcut_edge_band >= 0, "at least 0"),
            ("colour_jitter", 0.0 <= self.colour_jitter < 1.0, "at least 0 and below 1"),
            ("workers", self.workers >= 0, "at least 0"),
            # torch takes seeds up to 2**64 - 1, and a process's is the run's plus its rank.
            ("random_seed", 0 <= self.random_seed < 2**32, f"from 0 to {2**32 - 1}"),
        ]

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict) -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown run settings: {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        return cls.from_dict(json.loads(text))

    def updated(self, **changes) -> RunConfig:
        """A copy with ``changes``; a new seed also brings its object-shape settings where this config has the
        old seed's own."""
        if "seed" in changes:
            current = {name: getattr(self, name) for name in object_shape_settings(self.seed)}
            changes = shape_settings_for_new_seed(current, self.seed, changes["seed"]) | changes
        return replace(self, **changes)

    def continued_with(self, given: RunConfig) -> RunConfig:
        """This run's settings as a start that continues it computes with them: the run's own, for its
        iterations to stay alike, but ``given``'s machine settings and iteration count, if larger."""
        here = {name: getattr(given, name) for name in MACHINE_SETTINGS}
        return replace(self, iterations=max(self.iterations, given.iterations), **here)

    def paths(self) -> dict[str, str]:
        """The settings that name an input file or folder, by name (``simple`` only when it is a folder)."""
        named = {name: getattr(self, name) for name in ("images", "simple", "source_model", "labels", "gt", "ignore")}
        return {name: value for name, value in named.items() if value and not (name == "simple" and value == "auto")}


# What each setting a person can choose does: each is a `napari-gfn label` option, and these words are its --help
# and the dock's tooltip.
SETTING_HELP = {
    "seed": "how iteration 0 is made: otsu (learns from the plain-background photos first), transfer (a model "
    "trained on a similar labelled set), cam (class maps from image-level labels), grabcut (a rectangle inset "
    "from the border), ridge (thin line-like structures, such as branches)",
    "simple": "the plain-background photos the Otsu seed learns from first: chosen automatically ('auto', by Otsu "
    "separability and border contact) or given as a folder (in the Auto-label dock, also as Image layers)",
    "simple_threshold": "Otsu separability a photo needs to count as simple when simple photos are chosen "
    "automatically",
    "simple_max_border": "largest share of the image border a simple photo's object may cover (1 = no limit)",
    "source_model": "model file for the transfer seed (from `napari-gfn train-source` or the Source model dock)",
    "labels": "for the CAM seed: CSV with columns image,class, or a folder of class folders (not needed when the "
    "photos are sorted into one folder per class)",
    "cam_threshold": "share of a photo's peak class activation above which a pixel leans to the object",
    "cam_refiner": "how class maps become masks: dense CRF (needs the crf extra), guided filter, or auto",
    "cam_epochs": "training epochs of the CAM seed's classifier",
    "iterations": "refinement rounds after the seed",
    "gt": "folder of true masks (0/255 or 0/1, same stems): scores every iteration",
    "ignore": "folder of ignore masks (255 = leave the pixel out of the score)",
    "area_min": "smallest share of its photo a mask's object may cover to be trained on in the next round",
    "area_max": "largest share of its photo a mask's object may cover to be trained on in the next round",
    "backbone": "the network's encoder: efficientnet_lite0 has its ImageNet weights installed; a ResNet uses "
    "torchvision's only when they are already in the local torch cache",
    "device": "auto (CUDA when present), cpu or cuda",
    "image_size": "long side, in pixels, of the photos the network sees (a panorama past 4:1 keeps a quarter of "
    "it across); masks come back at full size",
    "epochs": "training epochs per refinement round",
    "seed_epochs": "training epochs of the Otsu seed's GFN",
    "min_steps": "fewest SGD steps each training runs for, so that small sets learn long enough",
    "learning_rate": "SGD learning rate of every training",
    "gf_radius": "window radius of the guided filter inside the network (the GF module)",
    "gf_eps": "smoothing of the guided filter inside the network: larger follows the guidance's edges less",
    "mask_threshold": "object probability at which a pixel is object; lower keeps more of thin objects",
    "upsample_radius": "window, in working-size pixels, of the guided filter that sharpens masks to full "
    "resolution; about 4 suits thin objects such as branches",
    "grabcut_edge_band": "GrabCut redraws each predicted mask's edge from the photo's colours, moving it by up to "
    "this many working-size pixels; 0, off, suits thin objects such as branches",
    "random_seed": "sets new weights, augmentations and batch order, so that a run repeats",
    "workers": "processes that read photos ahead of the network (0: threads of the main process)",
}

# The settings that one seed alone reads, and that seed: given for a run of another, they change nothing.
SEED_OWN_SETTINGS = {
    "simple": "otsu",
    "simple_threshold": "otsu",
    "simple_max_border": "otsu",
    "seed_epochs": "otsu",
    "source_model": "transfer",
    "labels": "cam",
    "cam_threshold": "cam",
    "cam_refiner": "cam",
    "cam_epochs": "cam",
}


def settings_not_read(config: RunConfig, given: Iterable[str]) -> dict[str, str]:
    """The settings among ``given`` that a run of ``config`` would not read, each with what it is for."""
    what_for = {name: describe_seed(seed) for name, seed in SEED_OWN_SETTINGS.items() if seed != config.seed}
    if config.seed == "otsu" and config.simple != "auto":
        for name in ("simple_threshold", "simple_max_border"):
            what_for[name] = (
                f"simple photos chosen automatically ({setting_flag('simple')} auto), not given as a folder"
            )
    if not config.gt:
        what_for["ignore"] = f"scoring against true masks ({setting_flag('gt')}), and none are given"
    return {
        field.name: what_for[field.name]
        for field in fields(RunConfig)
        if field.name in given and field.name in what_for
    }


# What the Auto-label dock calls each setting it shows, as written in running text (the dock capitalises the
# first letter). Messages name a setting by these words and its command-line flag, so both front ends find it.
SETTING_LABELS = {
    "seed": "seed",
    "simple": "simple photos",
    "simple_threshold": "simple threshold",
    "simple_max_border": "simple max border",
    "source_model": "source model",
    "labels": "image labels",
    "cam_epochs": "classifier epochs",
    "cam_threshold": "CAM threshold",
    "cam_refiner": "CAM refiner",
    "iterations": "iterations",
    "area_min": "area min",
    "area_max": "area max",
    "backbone": "backbone",
    "image_size": "image size",
    "gf_radius": "guided filter r",
    "gf_eps": "guided filter eps",
    "learning_rate": "learning rate",
    "epochs": "epochs per iteration",
    "seed_epochs": "seed epochs",
    "min_steps": "fewest steps per training",
    "mask_threshold": "mask threshold",
    "upsample_radius": "sharpening radius",
    "grabcut_edge_band": "GrabCut edge band",
    "device": "device",
}


def _setting_in_messages(name: str) -> str:
    """A setting as its messages name it: by its dock words and flag where it has them, else by its run.json key."""
    if name in SETTING_LABELS:
        return describe_setting(name)
    return setting_flag(name) if name in SETTING_HELP else name


def setting_flag(name: str) -> str:
    """The command-line option of a RunConfig field: ``upsample_radius`` is ``--upsample-radius``."""
    return "--" + name.replace("_", "-")


def describe_setting(name: str, value: object = None) -> str:
    """A setting as the dock and the command line name it, for messages: "sharpening radius 4 (--upsample-radius 4)"."""
    shown = "" if value is None else f" {value}"
    return f"{SETTING_LABELS[name]}{shown} ({setting_flag(name)}{shown})"


def settings_in_words(values: dict[str, object]) -> str:
    """Settings by their dock words, for messages: "sharpening radius 4, GrabCut edge band 0"."""
    return ", ".join(f"{SETTING_LABELS[name]} {value}" for name, value in values.items())


def describe_seed(name: str) -> str:
    """A seed method as the dock and the command line name it, for messages: "the ridge seed (--seed ridge)"."""
    return f"the {name} seed ({setting_flag('seed')} {name})"


# The demo's settings, below the tables RunConfig's checks read since it is made at import. Small photos, so
# that it finishes in about four minutes on two CPU cores, but the default training length: with 60 steps a
# round the first round lost (fg IoU 0.785 -> 0.747 -> 0.782, as `napari-gfn demo --headless` prints it), and
# with the default 150 it gains (0.894 -> 0.909 -> 0.905). Thin branches cover less than 10% of some photos.
DEMO_CONFIG = RunConfig(iterations=2, image_size=160, area_min=0.05)
