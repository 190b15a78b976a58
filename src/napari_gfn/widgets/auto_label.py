"""The "Auto-label" dock: choose photos and a seed, run refinement in the background, browse and trust masks."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import NamedTuple

import napari
import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    PushButton,
    Select,
    SpinBox,
)
from magicgui.widgets.bases import ValueWidget
from napari.layers import Image, Labels
from napari.utils.notifications import Notification, notification_manager, show_error, show_info, show_warning
from superqt import QCollapsible

from napari_gfn.config import (
    BACKBONES,
    CAM_REFINERS,
    SEED_METHODS,
    SEED_OWN_SETTINGS,
    SETTING_HELP,
    SETTING_LABELS,
    RunConfig,
    describe_seed,
    object_shape_settings,
    settings_in_words,
    shape_settings_for_new_seed,
)
from napari_gfn.engine import CancelToken, ImageReadError, ImageSet, IterationResult, Progress
from napari_gfn.engine.images import a_few, counted, image_files, let_pillow_read_heif, to_rgb8
from napari_gfn.engine.metrics import truth_mask_for_photo
from napari_gfn.run_lock import RunLock
from napari_gfn.run_window import read_run
from napari_gfn.store import RunFolder, RunFolderError

from .engine_task import EngineTask
from .log_window import show_log
from .message_label import message_label
from .metrics_plot import MetricsPlot
from .path_fields import chosen_path, given_path
from .photo_browser import PhotoBrowser
from .run_follower import RunFollower
from .run_layers import METADATA_KEY, RunLayers, import_what_napari_layers_import
from .shared_state import shared_state
from .stepwise import StepwiseWork

__all__ = ["AutoLabelWidget", "photo_stems"]

# The longest the worker waits for the GUI to show an iteration (a closed dock never answers), and the more for each
# mask it shows: napari takes longer to add a layer the more it holds (0.3 s at 64 layers).
_GUI_HANDOFF_SECONDS = 10.0
_GUI_SECONDS_PER_MASK = 1.0

IMAGE_LAYERS, FOLDER = "Image layers", "Folder"
SIMPLE_CHOICES = {"automatic": "auto", "folder": "folder", "chosen layers": "layers"}
NO_TRUTH, TRUTH_FOLDER = "none", "folder"


class _ShownIteration(NamedTuple):
    """A finished iteration with the masks the dock shows, read in the worker thread.

    The worker waits for ``shown`` before training on: creating layers is Python
    work in the GUI thread, and sharing the GIL with training would double its pause.
    """

    result: IterationResult
    masks: dict[str, np.ndarray]
    shown: threading.Event


def _photo_stem(layer_name: str) -> str:
    """A file name for a layer's photo: the layer's name without path separators or a leading dot."""
    return re.sub(r"[/\\:\x00]", "_", layer_name).lstrip(".") or "photo"


def photo_stems(layer_names: Sequence[str]) -> dict[str, str]:
    """Each photo layer's file name stem, mapped to the layer's name; two layers may not share a file."""
    stems: dict[str, str] = {}
    for name in layer_names:
        stem = _photo_stem(name)
        # macOS and Windows file names ignore case, so "Photo" and "photo" would write one file.
        clash = next((other for other in stems if other.casefold() == stem.casefold()), None)
        if clash is not None:
            raise ValueError(
                f"layers {stems[clash]!r} and {name!r} would both be saved as {stem}.png in the run folder: "
                "rename one of them"
            )
        stems[stem] = name
    return stems


def _folder_read_from(layer: Image) -> str | None:
    """The folder napari read ``layer`` from (a folder dropped on the viewer), if it was read from one."""
    path = layer.source.path
    return path if path and Path(path).is_dir() else None


def _masks_named_as(photo_folder: str, stacks: Sequence[Image]) -> str | None:
    """The one folder napari read one of ``stacks`` from whose images are named as photos of ``photo_folder``,
    as a run finds true masks: those photos' true masks (a dataset's masks/, dropped beside its images/)."""
    photos = image_files(Path(photo_folder)).keys()
    folders = {_folder_read_from(layer) for layer in stacks} - {None}
    named_as_photos = [folder for folder in folders if photos & image_files(Path(folder)).keys()]
    return named_as_photos[0] if len(named_as_photos) == 1 else None


def _label(setting: str) -> str:
    words = SETTING_LABELS[setting]
    return words[0].upper() + words[1:]


def _as_list(value) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]


def _default_run_folder() -> Path:
    return Path.home() / "napari-gfn-runs" / datetime.now().strftime("run-%Y%m%d-%H%M%S")


class AutoLabelWidget(Container):
    """Label photos with a seed plus iterative GFN refinement; every iteration appears as Labels layers."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.task = EngineTask("auto-label")
        self.shared = shared_state(viewer)
        self.run_layers: RunLayers | None = None
        self.store: RunFolder | None = None
        self.photo_folder: Path | None = None  # the run on screen's photos (they may have moved since the run)
        self._base_config = RunConfig()  # settings without a field in the form (kept from load_settings)
        defaults = RunConfig()
        self._seed_of_settings = defaults.seed  # whose own values the object-shape settings were given
        self._layers_chosen: dict[ValueWidget, list] = {}  # by layer field, kept through renames
        self._build_input()
        self._build_seed(defaults)
        self._build_settings(defaults)
        self.start_button = PushButton(text="Start")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.open_run_folder = FileEdit(label="Open run folder", mode="d")
        self.open_button = PushButton(text="Open run")
        self.status = message_label("idle")
        self.browser = PhotoBrowser(lambda: (self.area_min.value, self.area_max.value))
        self.trust_button = PushButton(text="Trust selected Labels layer")
        self.untrust_button = PushButton(text="Stop trusting")
        self.untrust_button.tooltip = "later iterations predict the selected layer's photo's mask again"
        trust_buttons = Container(widgets=[self.trust_button, self.untrust_button], layout="horizontal", labels=False)
        self.plot = MetricsPlot()
        super().__init__(
            widgets=[
                self.input_kind,
                self.image_layers,
                self.images_folder,
                self.run_folder,
                self.seed,
                self.simple,
                self.simple_threshold,
                self.simple_max_border,
                self.simple_folder,
                self.simple_layers,
                self.source_model,
                self.image_labels,
                self.cam_epochs,
                self.cam_threshold,
                self.cam_refiner,
                self.truth,
                self.truth_folder,
                self.iterations,
                self.area_min,
                self.area_max,
                self.start_button,
                self.cancel_button,
                self.status,
                self.open_run_folder,
                self.open_button,
                *self.browser.widgets,
                trust_buttons,
            ]
        )
        self.native.layout().insertWidget(self.index(self.start_button), self.advanced)
        self.native.layout().addWidget(self.plot)
        self.follower = RunFollower(
            self.native, self._follow_run_progress, self.status.set_value, self._say_followed_run_ended
        )
        self._iteration_steps = StepwiseWork(self.native)
        for name in ("seed", "simple", *_FORM_SETTINGS):
            getattr(self, name).tooltip = SETTING_HELP[name]
        self._connect()
        self._show_relevant_fields()
        # napari's own reader opens a dropped folder through Pillow, which Start can then label: of HEIC photos too.
        let_pillow_read_heif()

    # ------------------------------------------------------------------ form
    def _build_input(self) -> None:
        self.input_kind = ComboBox(label="Photos from", choices=[IMAGE_LAYERS, FOLDER])
        self.image_layers = Select(label="Image layers (none = all)", choices=self._image_layer_names)
        self.images_folder = FileEdit(label="Photo folder", mode="d")
        self.run_folder = FileEdit(label="Run folder", mode="d", value=_default_run_folder())

    def _build_seed(self, defaults: RunConfig) -> None:
        self.seed = ComboBox(label=_label("seed"), choices=list(SEED_METHODS))
        self.simple = ComboBox(label=_label("simple"), choices=list(SIMPLE_CHOICES))
        self.simple_threshold = FloatSpinBox(
            label=_label("simple_threshold"), value=defaults.simple_threshold, min=0, max=1, step=0.05
        )
        self.simple_max_border = FloatSpinBox(
            label=_label("simple_max_border"), value=defaults.simple_max_border, min=0, max=1, step=0.05
        )
        self.simple_folder = FileEdit(label="Simple photo folder", mode="d")
        self.simple_layers = Select(label="Simple photo layers", choices=self._image_layer_names)
        self.source_model = FileEdit(label=_label("source_model"), mode="r", filter="*.pt")
        self.image_labels = FileEdit(label=f"{_label('labels')} (CSV or class folders)", mode="r")
        self.cam_epochs = SpinBox(label=_label("cam_epochs"), value=defaults.cam_epochs, min=1, max=500)
        self.cam_threshold = FloatSpinBox(
            label=_label("cam_threshold"), value=defaults.cam_threshold, min=0.05, max=0.95, step=0.05
        )
        self.cam_refiner = ComboBox(label=_label("cam_refiner"), choices=list(CAM_REFINERS), value=defaults.cam_refiner)
        self.truth = ComboBox(label="Ground truth", choices=self._truth_choices)
        self.truth_folder = FileEdit(label="Ground-truth folder", mode="d")

    def _build_settings(self, defaults: RunConfig) -> None:
        self.iterations = SpinBox(label=_label("iterations"), value=defaults.iterations, min=0, max=50)
        self.area_min = FloatSpinBox(label=_label("area_min"), value=defaults.area_min, min=0, max=1, step=0.05)
        self.area_max = FloatSpinBox(label=_label("area_max"), value=defaults.area_max, min=0, max=1, step=0.05)
        self.backbone = ComboBox(label=_label("backbone"), choices=list(BACKBONES), value=defaults.backbone)
        self.image_size = SpinBox(label=_label("image_size"), value=defaults.image_size, min=32, max=2048, step=32)
        self.gf_radius = SpinBox(label=_label("gf_radius"), value=defaults.gf_radius, min=1, max=32)
        self.gf_eps = FloatSpinBox(label=_label("gf_eps"), value=defaults.gf_eps, min=1e-6, max=1, step=1e-3)
        self.learning_rate = FloatSpinBox(
            label=_label("learning_rate"), value=defaults.learning_rate, min=1e-6, max=1, step=1e-3
        )
        self.epochs = SpinBox(label=_label("epochs"), value=defaults.epochs, min=1, max=500)
        self.seed_epochs = SpinBox(label=_label("seed_epochs"), value=defaults.seed_epochs, min=1, max=500)
        self.min_steps = SpinBox(label=_label("min_steps"), value=defaults.min_steps, min=1, max=100_000, step=50)
        self.mask_threshold = FloatSpinBox(
            label=_label("mask_threshold"), value=defaults.mask_threshold, min=0.05, max=0.95, step=0.05
        )
        self.upsample_radius = SpinBox(label=_label("upsample_radius"), value=defaults.upsample_radius, min=1, max=256)
        self.grabcut_edge_band = SpinBox(
            label=_label("grabcut_edge_band"), value=defaults.grabcut_edge_band, min=0, max=32
        )
        self.device = ComboBox(label=_label("device"), choices=["auto", "cpu", "cuda"], value=defaults.device)
        self.gf_eps.native.setDecimals(6)
        self.learning_rate.native.setDecimals(6)
        advanced = Container(
            widgets=[
                self.backbone,
                self.image_size,
                self.gf_radius,
                self.gf_eps,
                self.learning_rate,
                self.epochs,
                self.seed_epochs,
                self.min_steps,
                self.mask_threshold,
                self.upsample_radius,
                self.grabcut_edge_band,
                self.device,
            ]
        )
        self.advanced = QCollapsible("Advanced settings")
        self.advanced.addWidget(advanced.native)
        self._advanced_form = advanced  # keeps the magicgui container alive with its native widget

    def _connect(self) -> None:
        for widget in (self.input_kind, self.seed, self.simple, self.truth):
            widget.changed.connect(self._show_relevant_fields)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_layer_choices)
        for widget in (self.image_layers, self.simple_layers, self.truth):
            widget.changed.connect(self._remember_layers_chosen)
        self._remember_layers_chosen()
        self.shared.source_model_changed.connect(self._use_source_model)
        if self.shared.source_model is not None:
            self._use_source_model(self.shared.source_model)
        self.seed.changed.connect(self._follow_seed)
        self.start_button.changed.connect(self.start)
        self.open_button.changed.connect(self._open_chosen_run)
        self.trust_button.changed.connect(self.trust_selected)
        self.untrust_button.changed.connect(self.untrust_selected)
        self.task.attach(
            self.native,
            self.status.set_value,
            start_buttons=[self.start_button, self.open_button],
            cancel_button=self.cancel_button,
        )

    def _image_layer_names(self, *_, stacks: bool = False) -> list[str]:
        """The Image layers that hold one photo each or, with ``stacks``, a stack of images (a time series,
        a z-stack), which a run cannot label. napari counts an RGB layer's colours out of ``ndim``. The photo
        layers a run shows (of a folder, opened or labelled before, hidden or not) are left out: "none = all"
        means the photos the user opened."""
        layers = (
            layer for layer in self.viewer.layers if isinstance(layer, Image) and METADATA_KEY not in layer.metadata
        )
        return [layer.name for layer in layers if (layer.ndim != 2) == stacks]

    def _take_folder_of_stacks(self) -> None:
        """With no layer of one photo open, switch the form to the folder napari read the stacks of colour
        photos (or else of any images) from, if one folder: napari opens a dropped folder as a stack. A grey
        stack of their true masks becomes the ground truth, if none is chosen. Otherwise say what to do."""
        stacks = [self.viewer.layers[name] for name in self._image_layer_names(stacks=True)]
        photos = [layer for layer in stacks if layer.rgb] or stacks
        names = a_few([layer.name for layer in photos])
        folders = {_folder_read_from(layer) for layer in photos}
        folder = folders.pop() if len(folders) == 1 else None
        if folder is None:
            held = f"no Image layer holds one photo ({names}: stacks of images)" if stacks else "no Image layer is open"
            raise ValueError(f"{held}: open photos, or choose a folder of photos")
        for layer in photos:
            layer.visible = False  # the run shows the photos one at a time
        self.input_kind.value, self.images_folder.value = FOLDER, folder
        said = f"{names}: napari opened {folder} as a stack; labelling that folder's photos (Photos from: Folder)"
        truth = _masks_named_as(folder, [layer for layer in stacks if layer not in photos])
        if truth and self.truth.value == NO_TRUTH:
            self.truth.value, self.truth_folder.value = TRUTH_FOLDER, truth
            said += f", scored against the true masks in {truth} (Ground truth: folder)"
        show_info(said)

    def _truth_choices(self, *_) -> list[str]:
        labels = [
            layer.name
            for layer in self.viewer.layers
            if isinstance(layer, Labels) and METADATA_KEY not in layer.metadata
        ]
        return [NO_TRUTH, TRUTH_FOLDER, *labels]

    def _refresh_layer_choices(self, *_) -> None:
        for widget in (self.image_layers, self.simple_layers, self.truth):
            widget.reset_choices()

    def _remember_layers_chosen(self, *_) -> None:
        """The layers each layer field holds, as layers: napari renames a layer before it resets the choices."""
        by_name = {layer.name: layer for layer in self.viewer.layers}
        self._layers_chosen = {
            widget: [by_name[name] for name in _as_list(widget.value) if name in by_name]
            for widget in (self.image_layers, self.simple_layers, self.truth)
        }

    def reset_choices(self, *_) -> None:
        """napari resets the choices as a layer is renamed: a layer chosen stays chosen, by its new name."""
        chosen = self._layers_chosen
        super().reset_choices()
        for widget, layers in chosen.items():
            names = [layer.name for layer in layers if layer in self.viewer.layers]
            if names and names != _as_list(widget.value):
                widget.value = names if isinstance(widget, Select) else names[0]
        self._remember_layers_chosen()

    def _show_relevant_fields(self, *_) -> None:
        from_layers = self.input_kind.value == IMAGE_LAYERS
        self.image_layers.visible = from_layers
        self.images_folder.visible = not from_layers
        for name in ("seed_epochs", "source_model", "cam_epochs", "cam_threshold", "cam_refiner"):
            getattr(self, name).visible = self._seed_reads(name)
        self.image_labels.visible = self._seed_reads("labels")
        simple = self.simple.value if self._seed_reads("simple") else None
        self.simple.visible = simple is not None
        self.simple_threshold.visible = self.simple_max_border.visible = simple == "automatic"
        self.simple_folder.visible = simple == "folder"
        self.simple_layers.visible = simple == "chosen layers"
        self.truth_folder.visible = self.truth.value == TRUTH_FOLDER

    def _seed_reads(self, setting: str) -> bool:
        """Whether the seed chosen reads ``setting``: another seed's own settings are hidden, and not read."""
        return SEED_OWN_SETTINGS.get(setting, self.seed.value) == self.seed.value

    def _use_source_model(self, path: Path | None) -> None:
        if path is not None:
            self.source_model.value = path
            self.seed.value = "transfer"

    def _follow_seed(self, seed: str) -> None:
        """Advanced settings still at the last seed's own values take the new seed's; a value typed in stays."""
        current = {name: getattr(self, name).value for name in object_shape_settings(seed)}
        changed = shape_settings_for_new_seed(current, self._seed_of_settings, seed)
        self._seed_of_settings = seed
        for name, value in changed.items():
            getattr(self, name).value = value
        if changed:
            show_info(f"Advanced settings for {describe_seed(seed)}: {settings_in_words(changed)}")

    def load_settings(self, config: RunConfig) -> None:
        """Fill the form from a run configuration (a reopened run, or the demo's settings)."""
        self._base_config = config
        self._seed_of_settings = config.seed  # the run's own values fill the fields below, whatever its seed's are
        if config.images:
            self.input_kind.value = FOLDER
            self.images_folder.value = config.images
        if config.out:
            self.run_folder.value = config.out
        self.seed.value = config.seed
        if config.simple != "auto":
            self.simple.value, self.simple_folder.value = "folder", config.simple
        if config.source_model:
            self.source_model.value = config.source_model
        if config.labels:
            self.image_labels.value = config.labels
        if config.gt:
            self.truth.value, self.truth_folder.value = TRUTH_FOLDER, config.gt
        for name in _FORM_SETTINGS:
            _hold_exactly(getattr(self, name), getattr(config, name))
        self._show_relevant_fields()

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        """Start labelling, or continue the run in the run folder when it has finished iterations."""
        try:
            config, inputs, photo_layers = self._run_config()
            store = RunFolder(config.out)
            RunLock(store.root).refuse_if_held()  # before this run takes the viewer and writes the run's inputs
            resume = bool(store.finished_iterations())
            if resume:
                store.check_can_continue()  # before it takes the viewer, which would then say so too
                run_config, photos, photo_layers = _resumed_photos(store, config, photo_layers)
                photo_folder = run_config.images
            else:
                store.check_room_for_new_run()  # before the layers' copies are written into the folder
                photo_folder, photos = config.images, self._photos(config, inputs)
        except (ValueError, RunFolderError, ImageReadError) as error:
            self._say_not_done("not started", str(error))
            return
        if resume and self.follower.refuses_start(store.root):
            self._say_run_followed(store)
            return
        if resume:
            _say_settings_not_used(config, run_config.continued_with(config), store)
        left_out = self._image_layer_names(stacks=True) if photo_layers and not self.image_layers.value else []
        if left_out:  # "none = all" took every photo layer but these
            show_info(f"not labelled: {a_few(left_out)}: stacks of images, not single photos")
        self.follower.stop()  # this run now fills the viewer
        self.store, self.photo_folder = store, Path(photo_folder)
        self.run_layers = RunLayers(self.viewer, store, photos, photo_layers)
        if painted := self.run_layers.painted_since_trusted():
            show_warning(
                f"not trained on: the paint in {counted(len(painted), 'layer')} ({a_few(painted)}), not trusted "
                "since: to have the rounds to come train on a correction, select its layer and press Trust "
                "selected Labels layer"
            )
        self.browser.browse(self.run_layers, store)
        self.plot.show_metrics(store.metrics())
        self._share_run()

        run_layers = self.run_layers

        def job(cancel: CancelToken):
            import_what_napari_layers_import()  # for the first iteration's layers: here, not in the GUI thread
            from napari_gfn.engine import run_labelling  # torch-bound: loaded in the worker, never by the dock

            if not resume:
                yield from _write_inputs(store, inputs, cancel)
            for event in run_labelling(config, resume=resume, cancel=cancel):
                if not isinstance(event, IterationResult):
                    yield event
                    continue
                shown = threading.Event()
                masks = run_layers.masks_to_show(event.iteration, event.stems)
                yield _ShownIteration(event, masks, shown)
                _wait_until_shown(shown, cancel, _GUI_HANDOFF_SECONDS + _GUI_SECONDS_PER_MASK * len(masks))

        self.task.start(job, on_result=self._on_result)

    def _say_not_done(self, not_done: str, why: str) -> None:
        """Say why Start or Open run did nothing: in a notification, and in full in the status line (napari's
        notification shows one line of it)."""
        show_error(why)
        self.status.value = f"{not_done}: {why}"

    def _say_run_followed(self, store: RunFolder) -> None:
        """Why Start did not continue ``store``: it may still be working elsewhere (a killed job logs no end)."""
        self._say_not_done(
            "not started",
            f"{store.root} may still be running elsewhere: its log shows no end, and it last wrote at "
            f"{self.follower.last_written_at}. Two processes must not write one run: wait until it ends (this "
            "dock shows when). If the process running it was stopped (killed, or its machine restarted), "
            "press Start again to continue the run here.",
        )

    def _run_config(self) -> tuple[RunConfig, dict[str, dict[str, np.ndarray]], dict[str, str]]:
        """The configuration from the form, the layer arrays the run folder keeps a copy of, and photo layers."""
        run_dir = chosen_path(self.run_folder, "a run folder")
        inputs: dict[str, dict[str, np.ndarray]] = {}
        photo_layers: dict[str, str] = {}
        if self.input_kind.value == IMAGE_LAYERS and not (self.image_layers.value or self._image_layer_names()):
            self._take_folder_of_stacks()
        if self.input_kind.value == IMAGE_LAYERS:
            photo_layers = photo_stems(self.image_layers.value or self._image_layer_names())
            inputs["photos"] = {stem: self._pixels(name) for stem, name in photo_layers.items()}
            images = RunFolder(run_dir).input_dir("photos")
        else:
            images = chosen_path(self.images_folder, "the folder of photos to label")
        seed_files = {}
        if self._seed_reads("source_model"):
            what = "a source model file: open or train one in the Source model dock"
            seed_files["source_model"] = str(chosen_path(self.source_model, what))
        if self._seed_reads("labels") and self.image_labels.line_edit.value.strip():
            # Empty: the engine labels photos sorted into class folders by their folders, or asks for labels.
            seed_files["labels"] = str(chosen_path(self.image_labels, "the image-level labels"))
        config = self._base_config.updated(
            images=str(images),
            out=str(run_dir),
            seed=self.seed.value,
            simple=self._simple_photos(run_dir, inputs) if self._seed_reads("simple") else RunConfig.simple,
            source_model=seed_files.get("source_model"),
            labels=seed_files.get("labels"),
            gt=self._truth_folder(run_dir, inputs),
            workers=0,  # napari's process reads the photos itself: forking a Qt application is unsafe
            **{name: getattr(self, name).value for name in _FORM_SETTINGS},
        )
        return config, inputs, photo_layers

    def _simple_photos(self, run_dir: Path, inputs: dict) -> str:
        """The Otsu seed's simple photos: "auto", a folder, or the layers chosen (copied into the run)."""
        simple = SIMPLE_CHOICES[self.simple.value]
        if simple == "folder":
            return str(chosen_path(self.simple_folder, "the folder of simple (plain-background) photos"))
        if simple == "layers":
            if not self.simple_layers.value:
                raise ValueError("choose the simple (plain-background) photo layers, or pick another option")
            simple_layers = photo_stems(self.simple_layers.value)
            inputs["simple"] = {stem: self._pixels(name) for stem, name in simple_layers.items()}
            return str(RunFolder(run_dir).input_dir("simple"))
        return simple

    def _truth_folder(self, run_dir: Path, inputs: dict) -> str | None:
        """Ground truth from a folder, or from a Labels layer matched to the one photo of its size."""
        if self.truth.value == NO_TRUTH:
            return None
        if self.truth.value == TRUTH_FOLDER:
            return str(chosen_path(self.truth_folder, "the ground-truth folder"))
        if "photos" not in inputs:  # a drawn mask has no name, so only a photo layer of its size can be its photo
            raise ValueError(
                f"the ground-truth layer {self.truth.value!r} scores a run of Image layers, matched to its photo by "
                "size; a run of a photo folder is scored against a folder of true masks named as the photos "
                "(Ground truth: folder)"
            )
        truth = np.asarray(self._pixels(self.truth.value))
        inputs["gt"] = truth_mask_for_photo(self.truth.value, truth, inputs.get("photos", {}))
        return str(RunFolder(run_dir).input_dir("gt"))

    def _pixels(self, layer_name: str):
        """A layer's data at full resolution: a multiscale layer (a very large image) holds a list, finest first."""
        layer = self.viewer.layers[layer_name]
        return layer.data[0] if layer.multiscale else layer.data

    def _photos(self, config: RunConfig, inputs: dict) -> ImageSet:
        if "photos" in inputs:
            stems, arrays = zip(*inputs["photos"].items(), strict=True)
            return ImageSet.from_arrays(arrays, names=stems)
        return ImageSet.from_folder(config.images)

    def _on_result(self, shown: _ShownIteration) -> None:
        """Show a finished iteration a photo's mask at a time: napari takes 0.15 to 0.5 s to add a Labels layer,
        so adding a layer run's 32 masks at once froze the viewer for 9 s. The worker goes on once they are shown
        and the plot and canvas redrawn."""
        steps = []
        if self.run_layers is not None:
            add = self.run_layers.add_iteration
            steps = [partial(add, shown.result.iteration, {stem: mask}) for stem, mask in shown.masks.items()]
            steps.append(self._show_run_progress)
        self._iteration_steps.add([*steps, shown.shown.set])

    def _follow_run_progress(self) -> None:
        """The run on screen, written by another process, finished an iteration or logged a line."""
        self.run_layers.add_finished_iterations()
        self._show_run_progress()

    def _show_run_progress(self) -> None:
        """The photo browser, the plot and the other docks, once the run on screen finished an iteration."""
        self.browser.refresh()
        self.plot.show_metrics(self.store.metrics())
        self._share_run()

    # ------------------------------------------------------------------ inspecting
    def _open_chosen_run(self) -> None:
        try:
            folder = chosen_path(self.open_run_folder, "the run folder to open")
        except ValueError as error:
            self._say_not_done("not opened", str(error))
            return
        self.open_run(folder, given_path(self.images_folder) if self.input_kind.value == FOLDER else None)

    def open_run(self, folder: Path, photos_now: Path | None = None) -> None:
        """Show a run folder (from the command line or a GPU server, say): its settings, metrics and masks.

        Photos the run cannot find where they were are read from ``photos_now`` (the form's Photo folder).
        """
        try:
            store, config, photos = read_run(folder, photos_now)
        except RunFolderError as error:
            self._say_not_done("not opened", str(error))
            return
        self.load_settings(config)
        self.store, self.photo_folder = store, Path(config.images)
        self.run_layers = RunLayers(self.viewer, store, photos)
        self.plot.show_metrics(store.metrics())
        self._share_run()
        self.browser.browse(self.run_layers, store)
        self.follower.follow(store)  # a run still working on a server adds its iterations as they finish
        if problems := store.logged_problems():  # the run may have been made on a server, its notices unseen
            said = f"run {store.root} reported {counted(problems, 'problem')} while it worked (photos skipped, say)"
            self._warn_with_log(store, f"{said}: see {store.log_path}")

    def _say_followed_run_ended(self, ended: str) -> None:
        """How the run followed ended; a warning with its log a click away if the log holds problems."""
        said = f"run {self.store.root}: {ended}"
        if problems := self.store.logged_problems():
            holds = f"its log holds {counted(problems, 'problem')}"
            self._warn_with_log(self.store, f"{said} ({holds}: {self.store.log_path})")
        else:
            show_info(said)

    def _warn_with_log(self, store: RunFolder, said: str) -> None:
        notification_manager.dispatch(
            Notification(said, "warning", actions=[("Show log", lambda _: show_log(store.log_path, self.native))])
        )

    def _share_run(self) -> None:
        """Tell the other docks (Export labels) which run is on screen, and where its photos are read from."""
        self.shared.show_run(self.store.root, self.photo_folder)

    def trust_selected(self) -> None:
        """Keep the selected Labels layer as this photo's mask: later iterations train on it and never change it."""
        layer = self.viewer.layers.selection.active
        stem = self._photo_of(layer)
        if stem is None:
            show_error(self._not_a_mask_to_trust(layer))
            return
        try:
            self.run_layers.trust(layer, stem)
        except OSError as error:  # a run on a read-only mount, or a full disk
            show_error(
                f"{stem}: the correction cannot be trusted: {error}; it stays in its layer "
                "(File > Save Selected Layers... saves it elsewhere)"
            )
            return
        self.browser.refresh()
        show_info(f"{stem}: the corrected mask is trusted; later iterations keep it")

    def _not_a_mask_to_trust(self, layer) -> str:
        """Why the selected layer cannot be trusted: its size, for a user's Labels layer not the photo's size."""
        size_problem = self.run_layers.size_problem(layer) if isinstance(layer, Labels) and self.run_layers else None
        if size_problem:
            return f"{size_problem}: draw the correction on its mask, or on a Labels layer of the photo's size"
        return "select a Labels layer of a photo in the run (its mask, corrected) to trust it"

    def untrust_selected(self) -> None:
        """Stop trusting the selected layer's photo's correction (trusted by mistake, say); its layer stays."""
        stem = self._photo_of(self.viewer.layers.selection.active)
        if stem is None:
            show_error("select a Labels layer of a photo in the run to stop trusting its correction")
            return
        try:
            kept = self.store.forget_fixed_mask(stem)
        except OSError as error:
            show_error(f"{stem}: still trusted: {error}")
            return
        if kept is None:
            show_error(f"{stem} has no trusted correction")
            return
        self.run_layers.mark_untrusted(stem)
        self.browser.refresh()
        show_info(f"{stem}: no longer trusted (the correction is kept in {kept}); later iterations predict its mask")

    def _photo_of(self, layer) -> str | None:
        """The run's photo a selected Labels layer belongs to, if any."""
        return self.run_layers.stem_of(layer) if isinstance(layer, Labels) and self.run_layers else None


_FORM_SETTINGS = (
    "simple_threshold",
    "simple_max_border",
    "iterations",
    "area_min",
    "area_max",
    "backbone",
    "image_size",
    "gf_radius",
    "gf_eps",
    "learning_rate",
    "epochs",
    "seed_epochs",
    "min_steps",
    "cam_epochs",
    "cam_threshold",
    "cam_refiner",
    "mask_threshold",
    "upsample_radius",
    "grabcut_edge_band",
    "device",
)


def _say_settings_not_used(form: RunConfig, continued: RunConfig, store: RunFolder) -> None:
    """Name the form's settings that a Start continuing a run leaves unused: its rounds keep the settings the
    run began with, so that they stay alike."""
    unused = {
        name: getattr(form, name)
        for name in ("seed", *_FORM_SETTINGS)
        if getattr(form, name) != getattr(continued, name)
    }
    if unused:
        the_runs = settings_in_words({name: getattr(continued, name) for name in unused})
        show_warning(
            f"Start continues the run in {store.root} with its own settings ({the_runs}), not the form's "
            f"{settings_in_words(unused)}: a new run folder uses them"
        )


def _hold_exactly(field: ValueWidget, value: object) -> None:
    """Put a run's setting in its form field as it is: one given on the command line may lie outside the
    field's range or choices (``--device cuda:1``), which the field refuses, or have more decimals than it
    shows, which it rounds away."""
    if isinstance(field, ComboBox) and value not in field.choices:
        field.choices = (*field.choices, value)
    if isinstance(field, FloatSpinBox):  # first: Qt rounds the range to the decimals too
        field.native.setDecimals(max(field.native.decimals(), -Decimal(repr(value)).as_tuple().exponent))
    if isinstance(field, SpinBox | FloatSpinBox):
        field.min, field.max = min(field.min, value), max(field.max, value)
    field.value = value


def _resumed_photos(
    store: RunFolder, config: RunConfig, photo_layers: dict[str, str]
) -> tuple[RunConfig, ImageSet, dict[str, str]]:
    """What Start shows of the run it continues: its settings, its own photos, found as the run finds them
    (in the form's photo folder, if they moved), and those of the chosen photo layers that are among them.

    A RunFolderError if none of the chosen layers is; a warning naming those that are not.
    """
    _, run_config, photos = read_run(store.root, Path(config.images) if config.images else None)
    in_run = {stem: name for stem, name in photo_layers.items() if stem in photos.stems}
    left_out = [name for stem, name in photo_layers.items() if stem not in in_run]
    if left_out and not in_run:
        raise RunFolderError(
            f"{store.root} holds a run of other photos: choose a new run folder to label {a_few(left_out)}, "
            "or open the run to see it"
        )
    if left_out:
        show_warning(
            f"not labelled: {a_few(left_out)}: Start continues the run in {store.root}, and they are not among its "
            "photos; a new run folder labels them"
        )
    return run_config, photos, in_run


def _wait_until_shown(shown: threading.Event, cancel: CancelToken, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not shown.wait(0.05) and not cancel.cancelled and time.monotonic() < deadline:
        pass


def _write_inputs(store: RunFolder, inputs: dict[str, dict[str, np.ndarray]], cancel: CancelToken):
    """Copy layer photos (as 8-bit RGB) and ground truth into the run folder, in the worker thread."""
    for kind, arrays in inputs.items():
        for index, (stem, data) in enumerate(arrays.items()):
            cancel.check()
            image = data if kind == "gt" else to_rgb8(np.asarray(data), f"layer {stem!r}")
            store.write_input(kind, stem, image)
            yield Progress(f"copy {kind} layers", index + 1, len(arrays))
