"""The "Source model" dock: open a model file and read its card, or train one on a labelled set."""

from __future__ import annotations

import re
from itertools import chain, count
from pathlib import Path

import napari
from magicgui.widgets import ComboBox, Container, FileEdit, PushButton, SpinBox
from napari.qt.threading import create_worker

from napari_gfn.config import BACKBONES, SETTING_HELP, VOC_CLASSES, RunConfig
from napari_gfn.engine import CancelToken

from .engine_task import EngineTask, job_settings
from .message_label import message_label
from .path_fields import chosen_path
from .shared_state import shared_state

__all__ = ["SourceModelWidget", "describe_card"]


def describe_card(card: dict) -> str:
    """The lines of a model card a user needs to judge a source model."""
    meta = card.get("meta", {})
    return "\n".join(
        [
            f"backbone: {card['config']['backbone']}",
            f"classes: {', '.join(meta.get('class_names', []))}",
            f"training size: {meta.get('image_size', '?')} px",
            f"date: {card.get('created', '?')}",
            f"source set: {meta.get('source', 'not recorded')} ({meta.get('photos', '?')} photos)",
        ]
    )


def _unused_model_path(path: Path) -> Path:
    """``path`` if no file is there, else the first free ``NAME-2.pt``, ``NAME-3.pt``, ... beside it.

    The dock's Save-as field moves on to a free name after each training, so a second training does not
    replace the first model unasked; a name the user picks in the Save dialog is still theirs to overwrite.
    """
    base = re.sub(r"-\d+$", "", path.stem)
    numbered = (path.with_name(f"{base}-{number}{path.suffix}") for number in count(2))
    return next(candidate for candidate in chain([path], numbered) if not candidate.exists())


def _read_model_card(path: Path) -> tuple[Path, dict]:
    """A short job of its own: like a run, it loads torch the first time, without stalling the GUI."""
    with job_settings():
        from napari_gfn.network import read_model_card

        return path, read_model_card(path)


class SourceModelWidget(Container):
    """Choose the model whose predictions seed a transfer run."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.shared = shared_state(viewer)
        self.task = EngineTask("source model training")
        self.model_file = FileEdit(label="Model file", mode="r", filter="*.pt")
        self.open_button = PushButton(text="Use this model")
        self.card = message_label("No model chosen.")
        self.source_kind = ComboBox(label="Train from", choices=["mask folders", "VOC root"])
        self.images = FileEdit(label="Photos", mode="d")
        self.masks = FileEdit(label="Masks (0/255 or 0/1)", mode="d")
        self.voc_root = FileEdit(label="VOC root", mode="d", visible=False)
        self.voc_class = ComboBox(label="VOC class", choices=list(VOC_CLASSES), visible=False)
        self.backbone = ComboBox(label="Backbone", choices=list(BACKBONES), value=RunConfig.backbone)
        self.epochs = SpinBox(label="Epochs", value=8, min=1, max=500)
        self.image_size = SpinBox(label="Image size", value=RunConfig.image_size, min=64, max=2048, step=32)
        self.out_file = FileEdit(
            label="Save as", mode="w", filter="*.pt", value=_unused_model_path(Path.home() / "source-model.pt")
        )
        self.train_button = PushButton(text="Train source model")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = message_label("idle")
        for name in ("backbone", "image_size"):
            getattr(self, name).tooltip = SETTING_HELP[name]
        super().__init__(
            widgets=[
                self.model_file,
                self.open_button,
                self.card,
                self.source_kind,
                self.images,
                self.masks,
                self.voc_root,
                self.voc_class,
                self.backbone,
                self.epochs,
                self.image_size,
                self.out_file,
                self.train_button,
                self.cancel_button,
                self.status,
            ]
        )
        self.open_button.changed.connect(self._open_chosen_model)
        self.source_kind.changed.connect(self._show_source_fields)
        self.train_button.changed.connect(self.train)
        self.task.attach(
            self.native, self.status.set_value, start_buttons=[self.train_button], cancel_button=self.cancel_button
        )

    def _open_chosen_model(self) -> None:
        try:
            path = chosen_path(self.model_file, "a model file to open")
        except ValueError as error:
            napari.utils.notifications.show_error(str(error))
            return
        self.open_model(path)

    def open_model(self, path: Path) -> None:
        """Read the card of the model at ``path`` and offer the model to the Auto-label dock.

        The card is read in a worker thread: reading it loads torch, unless a run or a training already has,
        which takes seconds.
        """
        card_before = self.card.value
        self.open_button.enabled = False
        self.card.value = f"Reading {Path(path).name} ..."
        self._card_reader = create_worker(
            _read_model_card,
            Path(path),
            _connect={"returned": self._show_card, "errored": lambda error: self._card_unreadable(error, card_before)},
        )

    def _show_card(self, path_and_card: tuple[Path, dict]) -> None:
        if self.task.dock_closed:  # the viewer closed while the card was read
            return
        path, card = path_and_card
        self.open_button.enabled = True
        self.model_file.value = path
        self.card.value = describe_card(card)
        self.shared.choose_source_model(path)

    def _card_unreadable(self, error: Exception, card_before: str) -> None:
        napari.utils.notifications.show_error(str(error))
        if not self.task.dock_closed:  # the model chosen before, if any, stays chosen
            self.open_button.enabled = True
            self.card.value = card_before

    def train(self) -> None:
        config = RunConfig(
            backbone=self.backbone.value, epochs=self.epochs.value, image_size=self.image_size.value, device="auto"
        )
        from_voc = self.source_kind.value == "VOC root"
        voc_class = self.voc_class.value
        try:
            out = chosen_path(self.out_file, "where to save the model")
            folders = (
                [chosen_path(self.voc_root, "the VOC root (the folder holding JPEGImages)")]
                if from_voc
                else [
                    chosen_path(self.images, "the folder of labelled photos"),
                    chosen_path(self.masks, "the folder of their masks"),
                ]
            )
        except ValueError as error:
            napari.utils.notifications.show_error(str(error))
            return

        def job(cancel: CancelToken):
            from napari_gfn.engine import resolve_device
            from napari_gfn.engine.source import LabelledSet, train_source_model_file

            labelled = LabelledSet.from_voc(*folders, voc_class) if from_voc else LabelledSet.from_folders(*folders)
            object_name = voc_class if from_voc else None
            device = resolve_device(config.device)
            return (yield from train_source_model_file(labelled, config, device, out, object_name, cancel))

        self.task.start(job, on_returned=self._trained)

    def _trained(self, path: Path | None) -> None:
        if path is None:  # cancelled
            return
        self.out_file.value = _unused_model_path(path)
        self.open_model(path)

    def _show_source_fields(self, kind: str) -> None:
        from_voc = kind == "VOC root"
        for widget in (self.voc_root, self.voc_class):
            widget.visible = from_voc
        for widget in (self.images, self.masks):
            widget.visible = not from_voc
