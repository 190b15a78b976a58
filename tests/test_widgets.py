"""The dock widgets in a real napari viewer (Xvfb): runs, cancel, export, the writer, reopening, errors."""

import errno
import gc
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import torch
from magicgui.widgets import FileEdit
from napari.layers import Labels
from napari.utils import progress
from napari.utils.notifications import notification_manager
from qtpy.QtCore import QObject, QTimer
from qtpy.QtWidgets import QPlainTextEdit

from napari_gfn.cli import main as cli_main
from napari_gfn.config import (
    BULKY_OBJECT_SETTINGS,
    DEMO_CONFIG,
    SEED_METHODS,
    SEED_OWN_SETTINGS,
    SETTING_HELP,
    SETTING_LABELS,
    THIN_OBJECT_SETTINGS,
    RunConfig,
)
from napari_gfn.demo import open_demo, write_sample_folder
from napari_gfn.engine import ImageRecord, Notice, Progress
from napari_gfn.network import missing_imagenet_weights
from napari_gfn.run_window import open_run_window
from napari_gfn.store import CANCELLED, RunFolder
from napari_gfn.widgets import AutoLabelWidget, ExportWidget, SourceModelWidget, engine_task, run_layers
from napari_gfn.widgets.log_window import LOG_REREAD_MS
from napari_gfn.widgets.path_fields import chosen_path
from napari_gfn.widgets.run_follower import FOLLOW_MS
from napari_gfn.widgets.run_layers import iteration_layer_name
from napari_gfn.widgets.stepwise import StepwiseWork

pytestmark = pytest.mark.gui

# Small enough for a run of a few seconds per iteration on two cores.
QUICK = RunConfig(
    image_size=64, seed_epochs=2, epochs=1, min_steps=8, batch_size=4, area_min=0.0, area_max=1.0, converge_iou=1.1
)
RUN_TIMEOUT_MS = 240_000
# torch's own thread count, read as pytest collects this module, before any job sets one.
TORCH_THREADS = torch.get_num_threads()


def _dock(viewer, name):
    _, widget = viewer.window.add_plugin_dock_widget("napari-gfn", name)
    return widget


def _open_photos(viewer, folder: Path) -> list[str]:
    paths = sorted((folder / "images").glob("*.png"))
    for path in paths:
        viewer.add_image(iio.imread(path), name=path.stem, rgb=True)
    return [path.stem for path in paths]


def _layer_run(viewer, folder: Path, run_dir: Path, iterations: int) -> AutoLabelWidget:
    widget = _dock(viewer, "Auto-label")
    widget.load_settings(QUICK.updated(iterations=iterations))
    widget.input_kind.value = "Image layers"
    widget.run_folder.value = run_dir
    return widget


def _folder_form(viewer, folder: Path) -> AutoLabelWidget:
    """An Auto-label dock set to label the photos of ``folder`` into ``folder/run``: enough for its settings."""
    widget = _dock(viewer, "Auto-label")
    widget.input_kind.value = "Folder"
    widget.images_folder.value = folder
    widget.run_folder.value = folder / "run"
    return widget


def _messages_since(seen: int) -> list[str]:
    """The notifications shown after the first ``seen``."""
    return [str(record.message) for record in notification_manager.records[seen:]]


def _assert_start_refused(widget: AutoLabelWidget, expected: str) -> None:
    """Start names the problem (``expected`` in a notification) and starts nothing."""
    seen = len(notification_manager.records)
    widget.start()
    messages = _messages_since(seen)
    assert any(expected in message for message in messages), messages
    assert widget.status.value.startswith("not started: ")
    assert expected in widget.status.value  # in full: napari's notification shows one line of it
    assert widget.store is None


def _wait_until_done(qtbot, task) -> None:
    qtbot.waitUntil(lambda: task.status in ("finished", "cancelled", "failed"), timeout=RUN_TIMEOUT_MS)


def _on_screen(qtbot, browser) -> None:
    """Wait until the photo chosen is on screen (one not read ahead is read in a thread first), and the layers of
    photos shown long ago are closed (after it, in turns of their own)."""
    qtbot.waitUntil(
        lambda: browser.run_layers.current == browser.photo.value and not browser.closing.busy, timeout=10_000
    )


def _torch_threads_of_a_new_thread() -> int:
    # torch copies its thread count into each thread once, so an older thread (this one) keeps what it read first.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(torch.get_num_threads).result()


@pytest.mark.parametrize(
    ("name", "kind"),
    [("Source model", SourceModelWidget), ("Auto-label", AutoLabelWidget), ("Export labels", ExportWidget)],
)
def test_each_dock_opens_through_the_manifest(make_napari_viewer, name, kind):
    viewer = make_napari_viewer()
    assert isinstance(_dock(viewer, name), kind)


# napari opens a plugin's dock after its OpenGL canvas exists, so napari-gfn (and torch) load after the
# graphics driver; on Linux with Mesa, that driver has brought an LLVM of its own into the process.
_DOCK_OPENED_AFTER_OPENGL = """
import sys
import napari
viewer = napari.Viewer(show=False)
print("llvm" if any("/libLLVM" in line for line in open("/proc/self/maps")) else "no llvm", flush=True)
for dock in ("Auto-label", "Source model", "Export labels"):
    viewer.window.add_plugin_dock_widget("napari-gfn", dock)
print("docks open", "with torch" if "torch" in sys.modules else "without torch", flush=True)
from napari_gfn.widgets.engine_task import _load_the_engine
_load_the_engine()  # as a run's worker does: torch, torchvision and with them Triton
import torch
print("engine loaded", float(torch.nn.functional.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 3, 3))), flush=True)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_the_docks_open_in_a_napari_whose_opengl_loaded_an_llvm_and_leave_torch_to_the_run():
    opened = subprocess.run(
        [sys.executable, "-c", _DOCK_OPENED_AFTER_OPENGL], capture_output=True, text=True, timeout=600
    )
    if opened.stdout.startswith("no llvm"):
        pytest.skip("this machine's OpenGL loads no LLVM, so nothing can clash with Triton's")
    assert opened.returncode == 0, opened.stderr[-3000:]  # Triton's LLVM binding to Mesa's was a SIGSEGV (-11)
    # torch loads in a run's worker thread, not as a dock opens (4-5 s of a frozen viewer on two cores)
    assert opened.stdout.splitlines() == ["llvm", "docks open without torch", "engine loaded 9.0"]


_TORCH_LIBRARIES_BEFORE_TORCH = """
import sys
from napari_gfn.widgets.engine_task import _load_torch_libraries
_load_torch_libraries()
maps = open("/proc/self/maps").read()
print("torch imported" if "torch" in sys.modules else "torch not imported", "/libtorch_cpu.so" in maps, flush=True)
import torch
print(float(torch.nn.functional.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 3, 3))), flush=True)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_torch_imports_and_computes_after_its_libraries_were_loaded_without_the_gil():
    loaded = subprocess.run(
        [sys.executable, "-c", _TORCH_LIBRARIES_BEFORE_TORCH], capture_output=True, text=True, timeout=600
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.splitlines() == ["torch not imported True", "9.0"]


def test_the_auto_label_docks_settings_say_what_they_do(make_napari_viewer):
    widget = _dock(make_napari_viewer(), "Auto-label")
    settings = (
        "seed",
        "simple",
        "iterations",
        "area_min",
        "area_max",
        "upsample_radius",
        "grabcut_edge_band",
        "device",
    )
    for name in settings:
        assert getattr(widget, name).native.toolTip() == SETTING_HELP[name] != ""
    assert "ridge" in widget.seed.native.toolTip()


def test_a_long_status_or_note_wraps_instead_of_widening_its_dock(make_napari_viewer, qtbot):
    """One line of a long message (a run folder's path, an error) widened its dock, and napari's canvas shrank."""
    viewer = make_napari_viewer(show=True)  # a hidden window's layouts do not take their widgets' new sizes
    auto_label, exporter, source = (_dock(viewer, name) for name in ("Auto-label", "Export labels", "Source model"))
    long_message = "stopped following /a/run/folder/on/a/server: the disk it was on stopped answering " * 4
    lines = auto_label.status.native.fontMetrics().height()
    for dock, label in (
        (auto_label, auto_label.status),
        (auto_label, auto_label.browser.note),
        (exporter, exporter.status),
        (source, source.card),
    ):
        narrowest = dock.native.minimumSizeHint().width()
        label.value = long_message
        qtbot.wait(10)  # the layout takes the label's new size
        assert dock.native.minimumSizeHint().width() == narrowest
        assert label.native.heightForWidth(300) > 4 * lines  # the whole message, in lines


def test_the_settings_messages_advise_are_dock_fields_by_the_same_words(make_napari_viewer, tmp_path):
    # Messages name a setting by its SETTING_LABELS words and its flag (the ridge seed's advice, a failed
    # Otsu seed, an empty area filter): a dock user must find a field so labelled, whose value reaches the run.
    widget = _folder_form(make_napari_viewer(), tmp_path)
    fields = {field.label: field for form in (widget, widget._advanced_form) for field in form}
    advised = {
        "simple_threshold": 0.55,
        "simple_max_border": 0.4,
        "area_min": 0.2,
        "area_max": 0.7,
        "device": "cpu",
        "upsample_radius": 4,
        "grabcut_edge_band": 0,
        "min_steps": 600,
        "cam_threshold": 0.35,
        "cam_refiner": "guided",
    }
    for name, value in advised.items():
        words = SETTING_LABELS[name]
        fields[words[0].upper() + words[1:]].value = value
    config, _, _ = widget._run_config()
    assert {name: getattr(config, name) for name in advised} == advised
    assert widget.simple_threshold.tooltip == SETTING_HELP["simple_threshold"]
    assert widget.cam_refiner.native.isHidden()  # the CAM seed's fields show with the CAM seed only
    widget.seed.value = "cam"
    assert not widget.cam_refiner.native.isHidden()


def test_the_object_shape_settings_follow_the_seed_unless_typed_in(make_napari_viewer, tmp_path):
    widget = _folder_form(make_napari_viewer(), tmp_path)

    def shape() -> dict:
        config, _, _ = widget._run_config()
        return {name: getattr(config, name) for name in THIN_OBJECT_SETTINGS}

    assert shape() == BULKY_OBJECT_SETTINGS  # the Otsu seed is chosen first
    seen = len(notification_manager.records)
    widget.seed.value = "ridge"
    assert shape() == THIN_OBJECT_SETTINGS
    assert any(
        "Advanced settings for the ridge seed (--seed ridge): sharpening radius 4" in message
        for message in _messages_since(seen)
    )
    widget.seed.value = "grabcut"
    assert shape() == BULKY_OBJECT_SETTINGS
    widget.min_steps.value = 300
    widget.seed.value = "ridge"
    assert shape() == {**THIN_OBJECT_SETTINGS, "min_steps": 300}
    reopened = RunConfig(seed="ridge", upsample_radius=32)  # a run's own values, whatever its seed's are
    widget.seed.value = "otsu"
    widget.load_settings(reopened)
    assert shape() == {name: getattr(reopened, name) for name in THIN_OBJECT_SETTINGS}


def test_each_seeds_own_settings_show_with_that_seed_alone(make_napari_viewer):
    widget = _dock(make_napari_viewer(), "Auto-label")
    fields = {name: getattr(widget, "image_labels" if name == "labels" else name) for name in SEED_OWN_SETTINGS}
    for seed in SEED_METHODS:
        widget.seed.value = seed
        shown = {name for name, field in fields.items() if not field.native.isHidden()}
        assert shown == {name for name, own_seed in SEED_OWN_SETTINGS.items() if own_seed == seed}, seed


def test_a_hidden_field_of_another_seed_neither_stops_a_start_nor_is_recorded(make_napari_viewer, tmp_path):
    widget = _folder_form(make_napari_viewer(), tmp_path)
    widget.seed.value = "transfer"
    widget.source_model.value = tmp_path / "source.pt"
    widget.seed.value = "otsu"
    for simple in ("folder", "chosen layers"):  # each asks for what it names, none given
        widget.simple.value = simple
        widget.seed.value = "grabcut"  # which reads no simple photos: the field hides
        config, _, _ = widget._run_config()
        assert (config.simple, config.source_model) == (RunConfig().simple, None)
        widget.seed.value = "otsu"


def test_a_layer_chosen_and_then_renamed_stays_chosen(make_napari_viewer):
    """napari resets a dock's choices as a layer is renamed; a photo chosen alone would become "none = all"."""
    viewer = make_napari_viewer()
    for name in ("orchid", "other", "plain"):
        viewer.add_image(np.zeros((20, 30, 3), np.uint8), name=name, rgb=True)
    viewer.add_labels(np.zeros((20, 30), np.uint8), name="truth")
    widget = _dock(viewer, "Auto-label")
    widget.image_layers.value = ["orchid"]
    widget.simple_layers.value = ["plain"]
    widget.truth.value = "truth"
    for layer, name in (("orchid", "Orchid 1"), ("plain", "plain 1"), ("truth", "truth of Orchid 1")):
        viewer.layers[layer].name = name
    assert (widget.image_layers.value, widget.simple_layers.value) == (["Orchid 1"], ["plain 1"])
    assert widget.truth.value == "truth of Orchid 1"
    viewer.layers.remove("Orchid 1")  # removed, it is no longer chosen
    assert widget.image_layers.value == []


def test_a_stack_layer_is_not_offered_as_a_photo_and_a_run_of_all_layers_leaves_it_out(
    make_napari_viewer, qtbot, tiny_folder, tmp_path
):
    viewer = make_napari_viewer()
    photos = [iio.imread(path) for path in sorted((tiny_folder / "images").glob("*.png"))[:2]]
    viewer.add_image(np.stack(photos), name="time series", rgb=True)
    widget = _layer_run(viewer, tiny_folder, tmp_path / "run", iterations=0)
    _assert_start_refused(
        widget, "no Image layer holds one photo (time series: stacks of images): open photos, or choose a folder"
    )
    viewer.add_image(photos[0], name="photo", rgb=True)
    widget.image_layers.reset_choices()
    assert list(widget.image_layers.choices) == ["photo"]
    seen = len(notification_manager.records)
    widget.start()
    assert "not labelled: time series: stacks of images, not single photos" in _messages_since(seen)
    _wait_until_done(qtbot, widget.task)
    assert widget.task.status == "finished"
    assert sorted(path.stem for path in (tmp_path / "run" / "iter_00" / "masks").iterdir()) == ["photo"]


def test_a_folder_napari_opened_as_a_stack_is_labelled_as_a_folder(make_napari_viewer, qtbot, tiny_folder, tmp_path):
    photos = shutil.copytree(tiny_folder / "images", tmp_path / "photos")
    viewer = make_napari_viewer()
    [stack] = viewer.open(photos, plugin="napari")  # as when a folder is dropped on the viewer
    [true_masks] = viewer.open(tiny_folder / "masks", plugin="napari")  # dropped beside it: a grey stack
    assert (stack.ndim, stack.rgb, true_masks.ndim, true_masks.rgb) == (3, True, 3, False)
    widget = _layer_run(viewer, tiny_folder, tmp_path / "run", iterations=0)
    widget.seed.value = "grabcut"
    seen = len(notification_manager.records)
    widget.start()
    said = f"{stack.name}: napari opened {photos} as a stack; labelling that folder's photos (Photos from: Folder)"
    assert f"{said}, scored against the true masks in {tiny_folder / 'masks'} (Ground truth: folder)" in (
        _messages_since(seen)
    )
    _wait_until_done(qtbot, widget.task)
    assert widget.task.status == "finished", _messages_since(seen)
    assert (widget.input_kind.value, widget.images_folder.value) == ("Folder", photos)
    assert not stack.visible
    assert true_masks.visible
    [scores] = RunFolder(tmp_path / "run").metrics()
    assert scores["fg_iou"] > 0.5  # GrabCut finds the synthetic flowers
    labelled = sorted(path.name for path in (tmp_path / "run" / "iter_00" / "masks").iterdir())
    assert labelled == sorted(path.name for path in photos.iterdir())
    assert RunFolder(tmp_path / "run").read_config().images == str(photos)


def test_settings_that_contradict_each_other_are_named_in_the_docks_words(make_napari_viewer, tmp_path):
    widget = _folder_form(make_napari_viewer(), tmp_path)
    widget.area_min.value, widget.area_max.value = 0.95, 0.9  # each in its spin box's range, not together
    _assert_start_refused(
        widget, "area min (--area-min) must be at least 0 and below area max 0.9 (--area-max 0.9), got 0.95"
    )


def test_a_labels_layer_as_ground_truth_of_a_folder_run_is_refused_saying_what_scores_a_folder(
    make_napari_viewer, tiny_folder, tmp_path
):
    viewer = make_napari_viewer()
    widget = _folder_form(viewer, tiny_folder / "images")
    widget.run_folder.value = tmp_path / "run"
    viewer.add_labels(np.zeros((64, 64), np.uint8), name="drawn truth")
    widget.truth.value = "drawn truth"
    _assert_start_refused(
        widget,
        "the ground-truth layer 'drawn truth' scores a run of Image layers, matched to its photo by size; a run of "
        "a photo folder is scored against a folder of true masks named as the photos (Ground truth: folder)",
    )


def test_a_path_typed_or_pasted_into_a_field_is_read_as_meant(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    field = FileEdit(mode="d")
    field.line_edit.value = ' "~/orchid photos" '  # a file manager's "copy as path" brings the quotes
    assert chosen_path(field, "a folder") == tmp_path / "orchid photos"
    field.line_edit.value = "  "
    with pytest.raises(ValueError, match=r"^choose a folder$"):
        chosen_path(field, "a folder")


def test_an_empty_folder_field_asks_for_the_folder_instead_of_using_naparis_own(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # magicgui reads an empty field as "."
    iio.imwrite(tmp_path / "holiday.png", np.zeros((8, 8, 3), np.uint8))  # not to be labelled
    viewer = make_napari_viewer()
    widget = _folder_form(viewer, tmp_path)
    widget.images_folder.line_edit.value = ""
    exporter = _dock(viewer, "Export labels")
    exporter.run_folder.value = tmp_path
    exporter.out_folder.line_edit.value = ""
    source = _dock(viewer, "Source model")
    source.images.line_edit.value = ""
    seen = len(notification_manager.records)
    widget.start()
    exporter.export()
    source.train()
    messages = _messages_since(seen)
    assert "choose the folder of photos to label" in messages
    assert "choose the folder to export to" in messages
    assert "choose the folder of labelled photos" in messages
    assert widget.store is None
    assert not exporter.task.running
    assert not source.task.running


def test_two_photo_layers_that_would_write_one_file_are_named_before_a_run(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    photo = np.zeros((20, 30, 3), np.uint8)
    viewer.add_image(photo, name="Orchid 1", rgb=True)
    viewer.add_image(photo, name="orchid 1", rgb=True)
    widget = _layer_run(viewer, tmp_path, tmp_path / "run", iterations=1)
    _assert_start_refused(widget, "layers 'Orchid 1' and 'orchid 1' would both be saved as orchid 1.png in the run")


def test_a_layer_run_into_a_folder_of_other_things_is_refused_before_anything_is_written(make_napari_viewer, tmp_path):
    """The layers' copies are written into the run folder first: a home folder chosen by mistake stays as it was."""
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((20, 30, 3), np.uint8), name="orchid", rgb=True)
    home = tmp_path / "home"
    home.mkdir()
    notes = home / "notes.txt"
    notes.write_text("mine")
    widget = _layer_run(viewer, tmp_path, home, iterations=1)
    _assert_start_refused(widget, f"{home} is not empty: choose an empty or new folder for the run")
    widget.run_folder.value = notes
    _assert_start_refused(widget, f"{notes} is a file, not a folder: choose an empty or new folder for the run")
    assert [entry.name for entry in home.iterdir()] == ["notes.txt"]
    assert notes.read_text() == "mine"


def test_start_on_a_run_of_other_photos_is_refused_and_photo_layers_not_in_it_are_named(
    make_napari_viewer, qtbot, finished_layer_run, tiny_folder, tmp_path
):
    """Start continues the run in the run folder, on its own photos: new layers there would be left out unsaid."""
    run = shutil.copytree(finished_layer_run["run"], tmp_path / "run")
    first = finished_layer_run["stems"][0]
    log = RunFolder(run).log_path.read_text()
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((20, 30, 3), np.uint8), name="orchid", rgb=True)
    widget = _layer_run(viewer, tmp_path, run, iterations=2)
    _assert_start_refused(
        widget, f"{run} holds a run of other photos: choose a new run folder to label orchid, or open the run to see it"
    )
    assert RunFolder(run).log_path.read_text() == log
    viewer.add_image(iio.imread(tiny_folder / "images" / f"{first}.png"), name=first, rgb=True)  # one of its photos
    seen = len(notification_manager.records)
    widget.start()
    _wait_until_done(qtbot, widget.task)
    assert widget.task.status == "finished"
    assert (
        f"not labelled: orchid: Start continues the run in {run}, and they are not among its photos; a new run "
        "folder labels them"
    ) in _messages_since(seen)
    assert widget.browser.photo.choices == tuple(finished_layer_run["stems"])  # the run's photos, all of them


def test_a_multiscale_photo_layer_is_labelled_at_its_finest_level(make_napari_viewer, qtbot, tiny_folder, tmp_path):
    viewer = make_napari_viewer()
    photo = iio.imread(sorted((tiny_folder / "images").glob("*.png"))[0])
    viewer.add_image([photo, photo[::2, ::2]], name="large", rgb=True, multiscale=True)
    viewer.add_image(photo[:40], name="small", rgb=True)
    widget = _layer_run(viewer, tiny_folder, tmp_path / "run", iterations=0)
    widget.seed.value = "grabcut"
    widget.start()
    _wait_until_done(qtbot, widget.task)
    assert widget.task.status == "finished"
    store = RunFolder(tmp_path / "run")
    assert store.read_mask(0, "large").shape == photo.shape[:2]
    assert store.read_mask(0, "small").shape == (40, photo.shape[1])


def test_photos_sorted_into_species_folders_are_labelled_by_cam_without_a_labels_file(
    make_napari_viewer, qtbot, tmp_path
):
    species = tmp_path / "species"
    for kind in ("branch", "flower"):
        data = write_sample_folder(tmp_path / kind, kind=kind, n=2, size=64, seed=3, simple_fraction=0.0)
        shutil.copytree(data / "images", species / kind)
    viewer = make_napari_viewer()
    widget = _folder_form(viewer, species)  # the run folder sits beside the species folders
    widget.load_settings(QUICK.updated(iterations=0, cam_epochs=1, cam_refiner="guided"))
    widget.seed.value = "cam"
    seen = len(notification_manager.records)
    widget.start()
    _wait_until_done(qtbot, widget.task)
    assert widget.task.status == "finished", _messages_since(seen)
    assert any("4 labelled photos in 2 classes (the folders" in message for message in _messages_since(seen))
    assert sorted(widget.run_layers.stems) == ["branch_000", "branch_001", "flower_000", "flower_001"]
    # Exported from the dock, which follows the run on screen, the masks are sorted as the photos are.
    exporter = _dock(viewer, "Export labels")
    exporter.out_folder.value = tmp_path / "masks"
    exporter.export()
    _wait_until_done(qtbot, exporter.task)
    assert exporter.status.value == f"wrote 4 files to {tmp_path / 'masks'}, sorted into 2 subfolders as the photos are"
    for stem in widget.run_layers.stems:
        written = iio.imread(tmp_path / "masks" / stem.split("_")[0] / f"{stem}.png")
        np.testing.assert_array_equal(written, RunFolder(species / "run").read_mask(0, stem).astype(np.uint8) * 255)
    # Photos moved since the run: sorted only when the dock's Photo folder says where they are now.
    (tmp_path / "moved").mkdir()
    for kind in ("branch", "flower"):
        shutil.move(species / kind, tmp_path / "moved")
    for out, photo_folder in [("flat", ""), ("sorted", str(tmp_path / "moved"))]:
        exporter.out_folder.value, exporter.photo_folder.line_edit.value = tmp_path / out, photo_folder
        exporter.export()
        _wait_until_done(qtbot, exporter.task)
        sorted_into = ", sorted into 2 subfolders as the photos are" if photo_folder else ""
        assert exporter.status.value == f"wrote 4 files to {tmp_path / out}{sorted_into}"
        assert (tmp_path / out / ("branch" if photo_folder else "") / "branch_000.png").is_file()
    # Cut-outs: each photo, transparent but for its object.
    exporter.format.value = "cut-out PNG (photo, background transparent)"
    exporter.out_folder.value = tmp_path / "cut"
    exporter.export()
    _wait_until_done(qtbot, exporter.task)
    cutout = iio.imread(tmp_path / "cut" / "branch" / "branch_000.png")
    mask = RunFolder(species / "run").read_mask(0, "branch_000")
    np.testing.assert_array_equal(cutout[..., 3] == 255, mask)
    photo = iio.imread(tmp_path / "moved" / "branch" / "branch_000.png")
    np.testing.assert_array_equal(cutout[mask][:, :3], photo[mask])


@pytest.fixture(scope="module")
def layer_run_made_first():
    """The first two-iteration layer run of this module, kept for the tests that only read its run folder."""
    return {}


@pytest.fixture
def finished_layer_run(layer_run_made_first, make_napari_viewer, qtbot, tiny_folder, tmp_path_factory):
    """A finished two-iteration run on image layers: the first run test's, or one made here when run alone."""
    if not layer_run_made_first:
        run = tmp_path_factory.mktemp("layer-run") / "run"
        _finish_layer_run(make_napari_viewer(), qtbot, tiny_folder, run, layer_run_made_first)
    return layer_run_made_first


def _finish_layer_run(viewer, qtbot, folder: Path, run: Path, made: dict) -> AutoLabelWidget:
    stems = _open_photos(viewer, folder)
    viewer.layers.selection.clear()  # no layer selected, as after a click in the layer list's empty space
    widget = _layer_run(viewer, folder, run, iterations=2)
    widget.start()
    _wait_until_done(qtbot, widget.task)
    assert widget.task.status == "finished"
    made.update(run=run, stems=stems)
    return widget


def test_otsu_run_adds_one_labels_layer_per_photo_and_iteration(
    make_napari_viewer, qtbot, tiny_folder, tmp_path, layer_run_made_first
):
    viewer = make_napari_viewer()
    ticks = []  # a 5 ms timer's ticks: the event loop turned, and napari answered the user
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(None))
    timer.start(5)
    ticks_when_added = {}
    viewer.layers.events.inserted.connect(lambda event: ticks_when_added.setdefault(event.value.name, len(ticks)))
    widget = _finish_layer_run(viewer, qtbot, tiny_folder, tmp_path / "run", layer_run_made_first)
    timer.stop()
    stems = layer_run_made_first["stems"]

    # Each photo's mask is added in a turn of its own: adding them all at once froze the viewer.
    for iteration in (0, 1, 2):
        ticks_then = [ticks_when_added[iteration_layer_name(stem, iteration)] for stem in stems]
        assert len(set(ticks_then)) == len(stems), ticks_then
    store = RunFolder(tmp_path / "run")
    assert store.finished_iterations() == [0, 1, 2]
    for stem in stems:
        photo = viewer.layers[stem].data
        for iteration in (0, 1, 2):
            layer = viewer.layers[iteration_layer_name(stem, iteration)]
            assert layer.data.shape == photo.shape[:2]
            assert set(np.unique(layer.data)) <= {0, 1}
            np.testing.assert_array_equal(layer.data, store.read_mask(iteration, stem))
    shown = widget.browser.photo.value  # one photo at a time, as in a folder run: the masks are all of a size
    assert {layer.name for layer in viewer.layers if layer.visible} == {
        shown,
        *(iteration_layer_name(shown, iteration) for iteration in (0, 1, 2)),
    }
    assert not viewer.layers.selection  # none selected before: Trust must not find another photo's hidden mask
    plotted = widget.plot.plotted()
    assert len(plotted["mask change (IoU with previous)"]) == 2  # iterations 1 and 2 have a previous one
    assert widget.browser.note.value.startswith("iteration 2: ")  # the last iteration's figures of the photo shown


def _plot_shown_at_its_smallest_height(qtbot):
    from napari_gfn.widgets.metrics_plot import MetricsPlot

    plot = MetricsPlot()
    qtbot.addWidget(plot)
    plot.resize(320, plot.minimumHeight())
    plot.show()
    qtbot.waitExposed(plot)
    return plot


def test_the_metrics_plot_keeps_its_labels_inside_at_its_smallest_height(qtbot):
    from matplotlib.transforms import Bbox

    plot = _plot_shown_at_its_smallest_height(qtbot)
    two_scored_iterations = [{"iteration": 0, "fg_iou": 0.5, "miou": 0.6}, {"iteration": 1, "fg_iou": 0.7, "miou": 0.8}]
    for rows in (two_scored_iterations, [{"iteration": 0, "change_iou": None}]):  # curves, or words in their place
        plot.show_metrics(rows)
        plot.draw()
        figure = plot.figure.bbox
        assert figure.height <= plot.minimumHeight() * plot.devicePixelRatioF() + 1  # drawn at the size asked for
        drawn = plot.axes.get_tightbbox(plot.get_renderer())  # the axes with its tick labels, axis label and words
        assert Bbox.union([figure, drawn]).bounds == figure.bounds, drawn  # nothing drawn outside the canvas


def test_a_point_at_the_top_of_the_metrics_plot_is_drawn_whole(qtbot):
    """Mask change reaches 1 as a run settles; its point there must not be cut by the frame."""
    from matplotlib.colors import to_rgb

    plot = _plot_shown_at_its_smallest_height(qtbot)
    plot.show_metrics(
        [{"iteration": 0, "change_iou": None}, {"iteration": 1, "change_iou": 1.0}, {"iteration": 2, "change_iou": 0.6}]
    )
    plot.draw()
    pixels = np.asarray(plot.buffer_rgba())[..., :3].astype(int)
    line_colour = np.asarray([round(255 * c) for c in to_rgb(plot.axes.lines[0].get_color())])
    of_the_line = np.abs(pixels - line_colour).max(axis=-1) < 40

    def drawn_around(iteration, value):  # the line crosses both points' squares alike (it is point-symmetric)
        x, y = plot.axes.transData.transform((iteration, value))
        row, column = round(pixels.shape[0] - y), round(x)
        return of_the_line[row - 9 : row + 10, column - 9 : column + 10].sum()

    assert drawn_around(1, 1.0) >= 0.95 * drawn_around(2, 0.6) > 0


def test_the_metrics_plot_says_when_it_will_show_figures_rather_than_stay_blank(qtbot):
    from napari_gfn.widgets.metrics_plot import MetricsPlot

    plot = MetricsPlot()
    qtbot.addWidget(plot)
    assert plot.note() == "no iteration has finished yet"
    plot.show_metrics([{"iteration": 0, "change_iou": None, "fg_iou": None}])  # a seed, without ground truth
    assert plot.plotted() == {}
    assert plot.note() == "mask change is plotted from iteration 1;\nIoU when the run has ground truth"
    low, high = plot.axes.get_xlim()
    assert [tick for tick in plot.axes.get_xticks() if low <= tick <= high] == [0]  # the one iteration there is
    plot.show_metrics([{"iteration": 0, "change_iou": None}, {"iteration": 1, "change_iou": 0.9}])
    assert plot.note() == ""


def test_the_metrics_plot_spans_every_iteration_with_whole_number_ticks(qtbot):
    from napari_gfn.widgets.metrics_plot import MetricsPlot

    plot = MetricsPlot()
    qtbot.addWidget(plot)
    plot.show_metrics([{"iteration": 0, "change_iou": None}, {"iteration": 1, "change_iou": 0.84}])  # one point
    low, high = plot.axes.get_xlim()
    assert [tick for tick in plot.axes.get_xticks() if low <= tick <= high] == [0, 1]


# napari makes a Labels layer's colours inside warnings.catch_warnings, which it uses to hide this warning, while
# superqt's worker enters and leaves its own in the job's thread as the job starts and ends. The filters are one set
# for the process, so the two can undo each other, and napari's hidden warning then reaches pytest: third-party, and
# seen only in this test, which makes layers as the job starts.
@pytest.mark.filterwarnings("ignore:Conversion from CIE-LAB")
def test_a_folder_run_browsed_while_it_works_shows_each_photo_with_its_masks_once_and_as_on_disk(
    make_napari_viewer, qtbot, tiny_folder, tmp_path, monkeypatch
):
    """Photos read in a thread, iterations arriving, layers closed: clicked at random while the run works, the
    viewer ends with every photo's layers once, the photo under its masks, and the masks as the run wrote them."""

    monkeypatch.setattr(run_layers, "OPEN_PHOTOS_BUDGET", 3)
    viewer = make_napari_viewer()
    widget = _folder_form(viewer, tmp_path)
    widget.load_settings(QUICK.updated(iterations=2, seed="grabcut"))
    widget.images_folder.value, widget.run_folder.value = tiny_folder / "images", tmp_path / "run"
    widget.start()
    browser, clicks = widget.browser, np.random.default_rng(0)
    while widget.task.status == "running":
        qtbot.wait(150)
        if clicks.random() < 0.7:
            browser.step(+1)
        else:
            browser.photo.value = clicks.choice(list(browser.photo.choices))
    assert widget.task.status == "finished"
    store = RunFolder(tmp_path / "run")
    for stem in browser.photo.choices:
        browser.photo.value = stem
        _on_screen(qtbot, browser)
        layers = [layer for layer in viewer.layers if layer.metadata["napari_gfn"]["stem"] == stem]
        assert [layer.name for layer in layers] == [stem, *(iteration_layer_name(stem, k) for k in (0, 1, 2))]
        for iteration, layer in enumerate(layers[1:]):
            np.testing.assert_array_equal(layer.data > 0, store.read_mask(iteration, stem))
        assert [layer.name for layer in viewer.layers if layer.visible] == [layer.name for layer in layers]


def test_cancel_keeps_finished_iterations_on_screen_and_on_disk(make_napari_viewer, qtbot, tiny_folder, tmp_path):
    viewer = make_napari_viewer()
    stems = _open_photos(viewer, tiny_folder)
    widget = _layer_run(viewer, tiny_folder, tmp_path / "run", iterations=20)
    widget.start()
    qtbot.waitUntil(lambda: iteration_layer_name(stems[-1], 0) in viewer.layers, timeout=RUN_TIMEOUT_MS)
    widget.cancel_button.changed.emit(True)
    _wait_until_done(qtbot, widget.task)
    assert widget.task.status == "cancelled"
    finished = RunFolder(tmp_path / "run").finished_iterations()
    assert 0 in finished
    assert max(finished) < 20  # 20 iterations were asked for: the run stopped early
    for iteration in finished:
        assert iteration_layer_name(stems[0], iteration) in viewer.layers


def test_export_writes_what_the_layers_show(make_napari_viewer, qtbot, finished_layer_run, tmp_path):
    run, stems = finished_layer_run["run"], finished_layer_run["stems"]
    viewer = make_napari_viewer()
    exporter = _dock(viewer, "Export labels")
    exporter.run_folder.value = run
    exporter.iteration.value = 2
    for label, suffix, scale in (("PNG (0/255)", "png", 255), ("label TIFF (0/1)", "tif", 1)):
        exporter.format.value = label
        exporter.out_folder.value = tmp_path / suffix
        exporter.export()
        _wait_until_done(qtbot, exporter.task)
        assert exporter.task.status == "finished"
        written = sorted((tmp_path / suffix).iterdir())
        assert [path.stem for path in written] == stems
        for path in written:
            expected = RunFolder(run).read_mask(2, path.stem).astype(np.uint8) * scale
            data = iio.imread(path) if suffix == "png" else tifffile.imread(path)
            np.testing.assert_array_equal(data, expected)


def test_an_export_can_be_cancelled_and_keeps_the_files_it_wrote(
    make_napari_viewer, qtbot, finished_layer_run, tmp_path, monkeypatch
):
    from napari_gfn import export

    first_written, go_on = threading.Event(), threading.Event()
    write = export._write

    def write_then_wait(*args):  # holds the export after its first file until the test has clicked Cancel
        written = write(*args)
        first_written.set()
        go_on.wait(timeout=30)
        return written

    monkeypatch.setattr(export, "_write", write_then_wait)
    exporter = _dock(make_napari_viewer(), "Export labels")
    exporter.run_folder.value, exporter.out_folder.value = finished_layer_run["run"], tmp_path / "out"
    exporter.export()
    assert exporter.cancel_button.enabled
    assert not exporter.export_button.enabled
    assert first_written.wait(timeout=30)
    exporter.cancel_button.clicked.emit()
    go_on.set()
    _wait_until_done(qtbot, exporter.task)
    assert exporter.task.status == "cancelled"
    assert exporter.status.value == "cancelled; the files written before are kept"
    assert len(list((tmp_path / "out").iterdir())) == 1 < len(finished_layer_run["stems"])
    assert exporter.export_button.enabled
    assert not exporter.cancel_button.enabled


def test_export_refuses_the_folder_of_the_runs_photos(make_napari_viewer, qtbot, finished_layer_run):
    run = finished_layer_run["run"]
    photos = RunFolder(run).read_config().images  # a layer run keeps its photos as PNG files in the run folder
    before = {path.name: path.read_bytes() for path in Path(photos).iterdir()}
    exporter = _dock(make_napari_viewer(), "Export labels")
    exporter.run_folder.value, exporter.out_folder.value = run, photos
    seen = len(notification_manager.records)
    exporter.export()
    _wait_until_done(qtbot, exporter.task)
    assert exporter.task.status == "failed"
    messages = _messages_since(seen)
    assert any(f"{photos} holds the run's photos: masks exported there could" in m for m in messages), messages
    assert exporter.status.value.startswith(f"export stopped: {photos} holds the run's photos: masks exported there")
    assert {path.name: path.read_bytes() for path in Path(photos).iterdir()} == before


_EXPORT_IN_A_FRESH_VIEWER = """
import sys, time
import napari
from qtpy.QtWidgets import QApplication
viewer = napari.Viewer(show=False)
_, exporter = viewer.window.add_plugin_dock_widget("napari-gfn", "Export labels")
exporter.run_folder.value, exporter.out_folder.value = sys.argv[1], sys.argv[2]
exporter.export()
while exporter.task.running:
    QApplication.processEvents()
    time.sleep(0.01)
print(exporter.task.status, "with torch" if "torch" in sys.modules else "without torch", flush=True)
"""


def test_an_export_in_a_fresh_viewer_writes_the_masks_without_loading_torch(tmp_path):
    # A run trained on a GPU server, exported on a laptop: torch would take seconds to load, for nothing.
    store = RunFolder(tmp_path / "run")
    store.create(RunConfig())
    masks = {"a": np.eye(5, dtype=bool), "b": np.zeros((3, 4), dtype=bool)}
    for stem, mask in masks.items():
        store.write_mask(0, stem, mask)
    store.finish_iteration({"iteration": 0})
    exported = subprocess.run(
        [sys.executable, "-c", _EXPORT_IN_A_FRESH_VIEWER, str(store.root), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert exported.stdout.splitlines()[-1] == "finished without torch"
    for stem, mask in masks.items():
        np.testing.assert_array_equal(iio.imread(tmp_path / "out" / f"{stem}.png"), mask.astype(np.uint8) * 255)


def test_labels_writer_round_trips_through_napari(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    small = rng.integers(0, 3, size=(40, 50)).astype(np.int32)
    wide = small.copy()
    wide[0, 0] = 300  # needs 16 bits
    for name, data, suffix in (("small", small, ".png"), ("wide", wide, ".png"), ("tiff", wide, ".tif")):
        layer = viewer.add_labels(data, name=name)
        path = str(tmp_path / f"{name}{suffix}")
        assert layer.save(path, plugin="napari-gfn") == [path]
        back = viewer.open(path, layer_type="labels")[0].data
        np.testing.assert_array_equal(np.asarray(back), data)


def test_a_photo_of_another_size_is_fitted_to_the_view_and_one_of_the_same_size_keeps_the_users_zoom(
    make_napari_viewer, qtbot, tmp_path
):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, (height, width) in {"a1": (64, 80), "a2": (64, 80), "b": (150, 40)}.items():
        rows, columns = np.mgrid[:height, :width]
        disc = (rows - height / 2) ** 2 + (columns - width / 2) ** 2 < (min(height, width) / 3) ** 2
        iio.imwrite(photos / f"{name}.png", np.dstack([np.where(disc, 220, 40)] * 3).astype(np.uint8))
    run = tmp_path / "run"
    assert cli_main(["label", str(photos), "--out", str(run), "--seed", "grabcut", "--iterations", "0"]) == 0
    viewer = make_napari_viewer()
    browser = open_run_window(viewer, run).browser
    _on_screen(qtbot, browser)
    viewer.scene.camera.zoom *= 7  # zoomed in to look at an edge
    zoomed = viewer.scene.camera.zoom
    browser.step(+1)
    _on_screen(qtbot, browser)
    assert browser.photo.value == "a2"
    assert viewer.scene.camera.zoom == zoomed
    browser.step(+1)
    _on_screen(qtbot, browser)
    assert browser.photo.value == "b"
    np.testing.assert_allclose(viewer.scene.camera.center[-2:], ((150 - 1) / 2, (40 - 1) / 2))
    assert viewer.scene.camera.zoom < zoomed


def test_open_run_folder_restores_the_layers(make_napari_viewer, qtbot, finished_layer_run):
    run, stems = finished_layer_run["run"], finished_layer_run["stems"]
    viewer = make_napari_viewer()
    widget = open_run_window(viewer, run)  # what `napari-gfn open RUN` shows
    _on_screen(qtbot, widget.browser)
    store = RunFolder(run)
    for iteration in (0, 1, 2):
        layer = viewer.layers[iteration_layer_name(stems[0], iteration)]
        np.testing.assert_array_equal(layer.data, store.read_mask(iteration, stems[0]))
    assert iteration_layer_name(stems[1], 0) not in viewer.layers  # other photos load only when shown
    widget.browser.next_button.changed.emit(True)
    assert widget.browser.photo.value == stems[1]
    _on_screen(qtbot, widget.browser)
    assert viewer.layers[iteration_layer_name(stems[1], 2)].visible
    assert not viewer.layers[iteration_layer_name(stems[0], 2)].visible
    assert len(widget.plot.plotted()["mask change (IoU with previous)"]) == 2
    assert not widget.follower.following  # its log says it finished


def test_a_server_run_continues_here_with_this_machines_settings_and_its_own_others(
    make_napari_viewer, qtbot, finished_layer_run, tmp_path
):
    """A command-line run from a server, with photo-reading processes and CUDA: Start here reads the photos in
    napari's own process (forking a Qt application is unsafe), on the device the form gives. The run's other
    settings stay its own, and Start names those the form changed."""
    run = shutil.copytree(finished_layer_run["run"], tmp_path / "run")
    record = json.loads((run / "run.json").read_text())
    # Values the command line takes as given, past the form's choices, range and decimals: the form holds them.
    record["config"].update(workers=2, device="cuda:1", learning_rate=0.00123456789, area_min=0.123, cam_epochs=1000)
    (run / "run.json").write_text(json.dumps(record))
    widget = open_run_window(make_napari_viewer(), run)
    assert widget.device.value == "cuda:1"  # the form shows how the run ran
    widget.device.value = "cpu"
    config, _, _ = widget._run_config()
    assert (config.workers, config.device) == (0, "cpu")

    def unused_said_by_start() -> list[str]:
        seen = len(notification_manager.records)
        widget.start()
        _wait_until_done(qtbot, widget.task)
        assert widget.task.status == "finished"
        return [message for message in _messages_since(seen) if message.startswith("Start continues the run")]

    assert unused_said_by_start() == []
    widget.iterations.value, widget.image_size.value = 1, 96
    assert unused_said_by_start() == [
        f"Start continues the run in {run} with its own settings (iterations 2, image size 64), not the form's "
        "iterations 1, image size 96: a new run folder uses them"
    ]
    assert RunFolder(run).read_config().learning_rate == 0.00123456789


def test_a_run_still_working_elsewhere_shows_each_iteration_as_it_finishes(
    make_napari_viewer, qtbot, finished_layer_run, tmp_path
):
    run, stems = finished_layer_run["run"], finished_layer_run["stems"]
    store = RunFolder(shutil.copytree(run, tmp_path / "server" / "run"))
    metrics, log = store.metrics_path.read_text(), store.log_path.read_text()
    last_round = tmp_path / "iter_02 being written"

    def last_round_training():
        """The run as a server's disk holds it while its last round trains: what that round writes is held back."""
        if store.iteration_dir(2).exists():
            shutil.move(store.iteration_dir(2), last_round)
        store.metrics_path.write_text("".join(metrics.splitlines(keepends=True)[:2]))
        lines = log.splitlines(keepends=True)
        store.log_path.write_text("".join(lines[: next(i for i, line in enumerate(lines) if "iteration 2:" in line)]))
        # Its writer, named as the server's process names itself: a lock on another machine may not reach this one.
        (store.root / "writer.json").write_text('{"host": "gpu-server", "pid": 4242, "since": "2026-12-05 08:00:00"}')

    last_round_training()
    seed, round_one = store.metrics_path.read_text().splitlines()
    round_one = json.dumps({**json.loads(round_one), "elapsed_s": 1800.0})  # half an hour, as on hundreds of photos
    store.metrics_path.write_text(f"{seed}\n{round_one}\n")
    viewer = make_napari_viewer()
    widget = open_run_window(viewer, store.root)
    _on_screen(qtbot, widget.browser)
    following = r"following run, which may still be running: 2 of 3 iterations finished; last written at \d\d:\d\d:\d\d"
    # One round left, as long as the last, from the time the last ended (when it wrote its line in metrics.jsonl).
    ends = store.metrics_path.stat().st_mtime + 1800
    ends_about = f"; at its last round's pace, it ends about {time.strftime('%H:%M', time.localtime(ends))}"
    assert re.fullmatch(following + re.escape(ends_about), widget.status.value), widget.status.value
    assert len(widget.plot.plotted()["mask change (IoU with previous)"]) == 1
    assert iteration_layer_name(stems[0], 2) not in viewer.layers
    being_corrected = viewer.layers[iteration_layer_name(stems[0], 1)]
    viewer.layers.selection.active = being_corrected

    # The round ends on the server: its masks, then its line in metrics.jsonl (seen first half copied), then
    # its log entries.
    shutil.move(last_round, store.iteration_dir(2))
    half_a_line = len(metrics.splitlines()[-1]) // 2
    store.metrics_path.write_text(metrics[:-half_a_line])
    qtbot.wait(FOLLOW_MS + 1000)
    assert widget.follower.following
    assert iteration_layer_name(stems[0], 2) not in viewer.layers
    store.metrics_path.write_text(metrics)
    seen = len(notification_manager.records)
    store.log_path.write_text(log)
    qtbot.waitUntil(lambda: not widget.follower.following, timeout=3 * FOLLOW_MS)
    assert widget.status.value == "run: finished with iteration 2"
    assert f"run {store.root}: finished with iteration 2" in _messages_since(seen)
    np.testing.assert_array_equal(viewer.layers[iteration_layer_name(stems[0], 2)].data, store.read_mask(2, stems[0]))
    assert len(widget.plot.plotted()["mask change (IoU with previous)"]) == 2
    assert widget.browser.note.value.startswith("iteration 2: ")
    assert viewer.layers.selection.active is being_corrected  # the new layer did not take the user's brush

    last_round_training()
    widget.open_run(store.root)
    assert widget.follower.following
    widget.open_run(run)  # another run on screen: the first is no longer followed
    assert not widget.follower.following

    # The round fails on the server: its end is a warning, with the log a click away.
    widget.open_run(store.root)
    seen = len(notification_manager.records)
    store.append_log("error", "CUDA out of memory.")
    qtbot.waitUntil(lambda: not widget.follower.following, timeout=3 * FOLLOW_MS)
    assert widget.status.value == "run: CUDA out of memory."
    [warning] = notification_manager.records[seen:]
    assert str(warning.message) == f"run {store.root}: CUDA out of memory. (its log holds 1 problem: {store.log_path})"
    assert [button for button, _ in warning.actions] == ["Show log"]

    # Start on a run followed: refused once, as a resume would discard the round the server is writing.
    last_round_training()
    widget.open_run(store.root)
    seen = len(notification_manager.records)
    widget.start()
    assert _messages_since(seen) == [
        f"{store.root} may still be running elsewhere: its log shows no end, and it last wrote at "
        f"{widget.follower.last_written_at}. Two processes must not write one run: wait until it ends (this dock "
        "shows when). If the process running it was stopped (killed, or its machine restarted), press Start "
        "again to continue the run here."
    ]
    assert widget.status.value.startswith(f"not started: {store.root} may still be running elsewhere")
    assert widget.task.status == "idle"
    assert store.finished_iterations() == [0, 1]
    widget.start()  # again: the server's job was killed, so the round is run here
    assert not widget.follower.following
    _wait_until_done(qtbot, widget.task)
    assert widget.task.status == "finished"
    assert store.finished_iterations() == [0, 1, 2]
    assert store.how_it_ended() == "finished with iteration 2"

    # Killed on the server without a word (for lack of memory, say): long quiet, it has likely stopped; but
    # not while the seed works, which on hundreds of photos can take long, and has no round to measure by.
    an_hour_ago = time.time() - 3600

    def quiet_for_an_hour():
        for path in (store.metrics_path, store.log_path):
            os.utime(path, (an_hour_ago, an_hour_ago))

    last_round_training()
    store.metrics_path.write_text(metrics.splitlines(keepends=True)[0])
    quiet_for_an_hour()
    widget.open_run(store.root)
    seed_only = r"following run, which may still be running: 1 of 3 iterations finished; last written at [:\d]+"
    assert re.fullmatch(seed_only, widget.status.value), widget.status.value
    last_round_training()
    quiet_for_an_hour()
    widget.open_run(store.root)
    assert widget.follower.following
    likely_stopped = ", 60 min ago, over 3 times its longest round: it has likely stopped without a word (killed?)"
    assert widget.status.value.endswith(likely_stopped), widget.status.value
    widget.status.value = ""
    qtbot.waitUntil(lambda: widget.status.value.endswith(likely_stopped), timeout=2 * FOLLOW_MS)  # said as time passes

    # Run on this machine, and killed while followed: the system lets its lock go, and following ends.
    last_round_training()
    writer = subprocess.Popen([sys.executable, "-c", _HOLD_RUN, str(store.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "writing\n"
        widget.open_run(store.root)
        assert widget.follower.following  # its writer was looked for, and is alive
        seen, task_status = len(notification_manager.records), widget.task.status
        widget.start()  # refused for as long as the writer lives
        [refusal] = _messages_since(seen)
        assert refusal.startswith(f"{store.root} is being written by process {writer.pid} on {socket.gethostname()}")
        assert (widget.task.status, widget.follower.following) == (task_status, True)
    finally:
        writer.kill()
        writer.wait()
    qtbot.waitUntil(lambda: not widget.follower.following, timeout=3 * FOLLOW_MS)
    assert re.fullmatch(
        rf"run: stopped without logging how it ended: process {writer.pid} on {re.escape(socket.gethostname())} "
        r"\(since [-\d]+ [:\d]+\), which was writing it, has ended \(killed, or crashed\); Start continues the run",
        widget.status.value,
    ), widget.status.value
    assert not widget.follower.refuses_start(store.root)
    widget.open_run(store.root)  # opened after the kill: not followed, and the status says why
    assert not widget.follower.following
    assert widget.status.value.startswith("run: stopped without logging how it ended: ")

    # The server's disk goes away while the run is followed: following stops, and what is shown stays.
    last_round_training()
    widget.open_run(store.root)
    shutil.move(store.root, tmp_path / "unmounted")
    qtbot.waitUntil(lambda: not widget.follower.following, timeout=3 * FOLLOW_MS)
    assert widget.status.value == (
        f"stopped following {store.root}: its folder no longer holds the run (moved, deleted, or its disk unmounted)"
    )
    assert len(widget.plot.plotted()["mask change (IoU with previous)"]) == 1


# A process that writes a run (as a resumed ``napari-gfn label`` does) and says so, until it is killed.
_HOLD_RUN = """
import sys, time
from napari_gfn.store import RunFolder
with RunFolder(sys.argv[1]).writing():
    print("writing", flush=True)
    time.sleep(600)
"""


def test_runs_of_photos_named_alike_each_show_their_own_photos_in_one_viewer(
    make_napari_viewer, qtbot, tiny_folder, tmp_path
):
    from napari_gfn.cli import main

    sources = sorted((tiny_folder / "images").glob("*.png"))
    for camera, photos in (("camera_a", sources[:2]), ("camera_b", sources[2:4])):
        (tmp_path / camera).mkdir()
        for index, source in enumerate(photos):  # cameras name their photos alike
            shutil.copy(source, tmp_path / camera / f"IMG_{index:04d}.png")
    runs = {"camera_a": "camera_a", "camera_b": "camera_b", "camera_a_again": "camera_a"}
    for run, camera in runs.items():
        command = ["label", str(tmp_path / camera), "--seed", "grabcut", "--iterations", "0"]
        assert main([*command, "--out", str(tmp_path / f"run_{run}")]) == 0
    runs = {run: tmp_path / f"run_{run}" for run in runs}
    viewer = make_napari_viewer()
    widget = open_run_window(viewer, runs["camera_a"])
    _on_screen(qtbot, widget.browser)
    camera_a_layers = list(viewer.layers)
    assert [layer.name for layer in camera_a_layers] == ["IMG_0000", "IMG_0000 · iter 0"]

    widget.open_run(runs["camera_b"])
    _on_screen(qtbot, widget.browser)
    assert not any(layer.visible for layer in camera_a_layers)  # hidden, not removed
    photo, mask = (layer for layer in viewer.layers if layer.visible)
    np.testing.assert_array_equal(photo.data, iio.imread(tmp_path / "camera_b" / "IMG_0000.png"))
    np.testing.assert_array_equal(mask.data, RunFolder(runs["camera_b"]).read_mask(0, "IMG_0000"))
    viewer.layers.selection.active = camera_a_layers[1]
    seen = len(notification_manager.records)
    widget.trust_selected()  # the other run's mask of a photo of the same name is no correction of this run's
    assert _messages_since(seen) == ["select a Labels layer of a photo in the run (its mask, corrected) to trust it"]
    assert not RunFolder(runs["camera_b"]).fixed_masks()

    widget.open_run(runs["camera_a"])  # opened again, it shows its own layers again and adds none
    _on_screen(qtbot, widget.browser)
    assert len(viewer.layers) == 4
    assert [layer for layer in viewer.layers if layer.visible] == camera_a_layers
    widget.open_run(runs["camera_a_again"])  # another run of the same photos shows the same photo layer
    _on_screen(qtbot, widget.browser)
    assert len(viewer.layers) == 5
    assert [layer.name for layer in viewer.layers if layer.visible] == ["IMG_0000", "IMG_0000 · iter 0 [2]"]
    # The runs' photo layers are their display, not photos the user opened: Image layers offers none of them.
    viewer.add_image(iio.imread(sources[5]), name="opened by hand", rgb=True)
    assert widget.image_layers.choices == ("opened by hand",)


def test_open_run_on_a_folder_that_is_no_run_says_why_and_shows_nothing(
    make_napari_viewer, qtbot, finished_layer_run, tmp_path
):
    viewer = make_napari_viewer()
    widget = _dock(viewer, "Auto-label")
    inside = finished_layer_run["run"] / "iter_01" / "masks"
    refusals = {
        inside: f"{inside} is a folder inside the run {finished_layer_run['run']}: give the run folder itself",
        tmp_path: f"{tmp_path} is not a napari-gfn run folder (no run.json)",
    }
    for folder, refusal in refusals.items():
        seen = len(notification_manager.records)
        widget.open_run(folder)
        assert _messages_since(seen) == [refusal]
        assert widget.status.value == f"not opened: {refusal}"  # in full: napari's notification shows a line
    assert widget.store is None
    assert len(viewer.layers) == 0


def test_a_run_copied_away_from_its_photos_opens_and_exports_with_the_photo_folder_given(
    make_napari_viewer, qtbot, tiny_folder, tmp_path
):
    from napari_gfn.cli import main

    species = tmp_path / "species"
    stems = sorted(path.stem for path in (tiny_folder / "images").iterdir())
    folder_of = {stem: ("ophrys", "orchis")[index % 2] for index, stem in enumerate(stems)}
    for stem, folder in folder_of.items():
        (species / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(tiny_folder / "images" / f"{stem}.png", species / folder)
    assert main(["label", str(species), "--seed", "grabcut", "--iterations", "0", "--out", str(species / "run")]) == 0
    # The run alone to a laptop, the photos somewhere else: the run's parent folder is no longer its photos'.
    run = shutil.copytree(species / "run", tmp_path / "laptop" / "run")
    photos = Path(shutil.move(species, tmp_path / "photos elsewhere"))
    viewer = make_napari_viewer()
    widget = _dock(viewer, "Auto-label")
    widget.open_run_folder.value = run
    seen = len(notification_manager.records)
    widget.open_button.changed.emit(True)
    assert any(
        f"cannot show run {run}: its photos cannot be read ({tmp_path / 'laptop'}: the folder holds no photos" in m
        and "photos elsewhere are read from the folder given" in m
        for m in _messages_since(seen)
    ), _messages_since(seen)
    assert widget.run_layers is None
    widget.input_kind.value, widget.images_folder.value = "Folder", photos
    widget.open_button.changed.emit(True)
    assert widget.run_layers.stems == sorted(stems, key=lambda stem: (folder_of[stem], stem))  # folder by folder
    _on_screen(qtbot, widget.browser)
    layer = viewer.layers[iteration_layer_name(stems[0], 0)]
    np.testing.assert_array_equal(layer.data, RunFolder(run).read_mask(0, stems[0]))
    assert widget.images_folder.value == photos  # a later Start resumes the run on these photos
    # The Export labels dock exports the run on screen sorted as its photos are, where they are now.
    exporter = _dock(viewer, "Export labels")
    exporter.out_folder.value = tmp_path / "masks"
    exporter.export()
    _wait_until_done(qtbot, exporter.task)
    assert exporter.status.value == f"wrote 8 files to {tmp_path / 'masks'}, sorted into 2 subfolders as the photos are"
    for stem, folder in folder_of.items():
        written = iio.imread(tmp_path / "masks" / folder / f"{stem}.png")
        np.testing.assert_array_equal(written, RunFolder(run).read_mask(0, stem).astype(np.uint8) * 255)


def test_a_photo_the_run_could_not_read_says_why_when_browsed(
    make_napari_viewer, qtbot, tiny_folder, tmp_path, monkeypatch
):
    from napari_gfn.cli import main

    photos = shutil.copytree(tiny_folder / "images", tmp_path / "photos")
    (photos / "cut.png").write_bytes((photos / "flower_000.png").read_bytes()[:300])  # a copy that never finished
    assert main(["label", str(photos), "--seed", "grabcut", "--iterations", "0", "--out", str(tmp_path / "run")]) == 0
    seen = len(notification_manager.records)
    viewer = make_napari_viewer()
    browser = open_run_window(viewer, tmp_path / "run").browser  # opened later, as from a server
    _on_screen(qtbot, browser)
    assert browser.photo.value == "flower_000"  # not the photo first by name, which shows nothing
    assert viewer.layers["flower_000"].visible
    log = RunFolder(tmp_path / "run").log_path
    [warning] = [record for record in notification_manager.records[seen:] if "reported" in str(record.message)]
    assert f"reported 1 problem while it worked (photos skipped, say): see {log}" in str(warning.message)
    assert "warning: skipped " in log.read_text()
    [(button, show_log)] = warning.actions
    log_window = show_log(None)  # what the warning's button does
    assert button == "Show log"
    assert log_window.isVisible()
    shown = log_window.findChild(QPlainTextEdit)
    assert shown.toPlainText() == log.read_text()

    def logged_elsewhere(lines):  # by a run still working on a server, say
        for line in range(lines):
            RunFolder(tmp_path / "run").append_log("info", f"round line {line}")
        qtbot.waitUntil(lambda: shown.toPlainText().endswith(f" round line {lines - 1}\n"), timeout=3 * LOG_REREAD_MS)

    scroll = shown.verticalScrollBar()
    logged_elsewhere(60)
    assert shown.toPlainText() == log.read_text()
    assert scroll.value() == scroll.maximum() > 0  # the end, where the new lines are, stays in view
    scroll.setValue(0)  # the user reads the start
    logged_elsewhere(2)
    assert scroll.value() == 0
    log_window.close()
    moved = log.rename(log.with_suffix(".moved"))
    assert show_log(None).findChild(QPlainTextEdit).toPlainText() == f"{log}: cannot be read: No such file or directory"
    moved.rename(log)
    monkeypatch.setattr(run_layers, "OPEN_LAYERS_BUDGET", 0)  # every photo seen before is closed: "cut" has none
    browser.photo.value = "cut"
    _on_screen(qtbot, browser)
    assert browser.note.value.startswith("not labelled: cannot be read as an image (corrupt or truncated?): ")
    browser.next_button.changed.emit(True)  # a photo that was labelled shows its mask's figures again
    _on_screen(qtbot, browser)
    area = RunFolder(tmp_path / "run").mask_stats(0)[browser.photo.value].area
    assert browser.note.value.startswith(f"iteration 0: object {area:.0%} of the photo")
    log.unlink()  # as a run made before runs kept a log: nothing to warn of
    seen = len(notification_manager.records)
    open_run_window(make_napari_viewer(), tmp_path / "run")
    assert not any("reported" in message for message in _messages_since(seen))


def test_the_photos_can_be_browsed_least_certain_mask_first(make_napari_viewer, qtbot, finished_layer_run, tmp_path):
    from napari_gfn.review import MaskStats
    from napari_gfn.widgets.photo_browser import BY_NAME, CHECK_FIRST

    run, stems = Path(shutil.copytree(finished_layer_run["run"], tmp_path / "run")), finished_layer_run["stems"]
    # The tiny run's network is sure of every pixel; give its photos figures that differ, in no particular order.
    uncertain = np.random.default_rng(0).permutation(len(stems)) / 10
    RunFolder(run).write_mask_stats(2, {s: MaskStats(0.5, 0.9, u) for s, u in zip(stems, uncertain, strict=True)})
    viewer = make_napari_viewer()
    browser = open_run_window(viewer, run).browser
    stats = RunFolder(run).mask_stats(2)
    assert list(browser.photo.choices) == stems  # by name until asked
    browser.order.value = CHECK_FIRST
    order = list(browser.photo.choices)
    assert sorted(order) == sorted(stems)
    assert [stats[stem].uncertain for stem in order] == sorted(uncertain, reverse=True)
    browser.photo.value = order[0]
    browser.next_button.changed.emit(True)
    assert browser.photo.value == order[1]
    _on_screen(qtbot, browser)
    assert viewer.layers[iteration_layer_name(order[1], 2)].visible
    assert f"; uncertain {stats[order[1]].uncertain:.0%};" in browser.note.value
    assert browser.note.value.startswith("iteration 2: ")
    browser.order.value = BY_NAME
    assert list(browser.photo.choices) == stems
    assert browser.photo.value == order[1]  # the photo on screen stays
    # A run made before the figures were recorded: the order cannot change, and the dock says why.
    RunFolder(run).mask_stats_path(2).unlink()
    browser = open_run_window(make_napari_viewer(), run).browser
    browser.order.value = CHECK_FIRST
    assert list(browser.photo.choices) == stems
    assert browser.note.value == "iteration 2 recorded no figures (an older run): photos in name order"


def test_the_next_photo_is_read_while_the_one_on_screen_is_looked_at(
    make_napari_viewer, qtbot, finished_layer_run, tmp_path, monkeypatch
):
    from napari_gfn.review import MaskStats
    from napari_gfn.widgets.photo_browser import CHECK_FIRST

    run, stems = Path(shutil.copytree(finished_layer_run["run"], tmp_path / "run")), finished_layer_run["stems"]
    store = RunFolder(run)
    # Checked first, stems[3] follows stems[1]; by name, stems[2] does.
    uncertain = {stems[1]: 0.9, stems[3]: 0.8} | {stem: 0.1 for stem in stems if stem not in (stems[1], stems[3])}
    store.write_mask_stats(2, {stem: MaskStats(0.5, 0.9, uncertain[stem]) for stem in stems})
    reads = []  # (stem, what, thread) of every photo and mask the dock reads
    load_photo, read_mask = ImageRecord.load, RunFolder.read_mask
    monkeypatch.setattr(ImageRecord, "load", lambda r: reads.append((r.stem, "photo", _thread())) or load_photo(r))
    monkeypatch.setattr(
        RunFolder, "read_mask", lambda f, k, stem: reads.append((stem, k, _thread())) or read_mask(f, k, stem)
    )
    viewer = make_napari_viewer()
    browser = open_run_window(viewer, run).browser
    ahead = {(stems[1], what, "read-ahead") for what in ("photo", 0, 1, 2)}
    qtbot.waitUntil(lambda: ahead <= set(reads))
    browser.next_button.changed.emit(True)
    _on_screen(qtbot, browser)
    read_for_the_next = [read for read in reads if read[0] == stems[1]]
    assert sorted(read_for_the_next, key=str) == sorted(ahead, key=str)  # each once, none in the GUI thread
    photo = iio.imread(Path(store.read_config().images) / f"{stems[1]}.png")
    np.testing.assert_array_equal(viewer.layers[stems[1]].data, photo)
    for iteration in (0, 1, 2):
        shown = viewer.layers[iteration_layer_name(stems[1], iteration)]
        np.testing.assert_array_equal(shown.data, read_mask(store, iteration, stems[1]))
    assert (stems[3], "photo", "read-ahead") not in reads
    browser.order.value = CHECK_FIRST  # a new order has its own next photo
    qtbot.waitUntil(lambda: (stems[3], "photo", "read-ahead") in reads)


def test_a_photo_opened_or_chosen_is_read_in_a_thread_while_the_viewer_answers(
    make_napari_viewer, qtbot, finished_layer_run, tmp_path, monkeypatch
):
    """A camera-size photo takes about a second to read: the GUI thread only makes its layers."""
    run, stems = Path(shutil.copytree(finished_layer_run["run"], tmp_path / "run")), finished_layer_run["stems"]
    reads, held = [], threading.Event()  # (stem, thread) of every photo read; the read of stems[4] waits for held
    load_photo = ImageRecord.load

    def load(record):
        reads.append((record.stem, _thread()))
        if record.stem == stems[4]:
            held.wait(timeout=30)
        return load_photo(record)

    monkeypatch.setattr(ImageRecord, "load", load)
    viewer = make_napari_viewer()
    browser = open_run_window(viewer, run).browser
    _on_screen(qtbot, browser)
    assert reads[0] == (stems[0], "read-ahead")  # the first photo too
    browser.photo.value = stems[4]  # chosen from the list: not the photo read ahead
    qtbot.waitUntil(lambda: (stems[4], "read-ahead") in reads)
    qtbot.wait(100)  # the viewer answers events while the photo is read
    assert browser.note.value == f"reading {stems[4]}..."
    assert browser.run_layers.current == stems[0]
    assert viewer.layers[stems[0]].visible  # still on screen
    browser.photo.value = stems[5]  # the user moves on before the read ends: only the last choice shows
    held.set()
    _on_screen(qtbot, browser)
    assert browser.run_layers.current == stems[5]
    assert stems[4] not in viewer.layers
    assert viewer.layers[iteration_layer_name(stems[5], 2)].visible
    assert browser.note.value.startswith("iteration 2: ")
    assert all(thread == "read-ahead" for _, thread in reads), reads


def test_a_photo_chosen_again_while_read_shows_once_its_latest_read_ends_and_the_viewer_never_waits(
    make_napari_viewer, qtbot, finished_layer_run, tmp_path, monkeypatch
):
    """Chosen, left and chosen again: the first read ending must not make the GUI thread wait for the second."""
    run, stems = Path(shutil.copytree(finished_layer_run["run"], tmp_path / "run")), finished_layer_run["stems"]
    reads, gates = [], []  # the stems of the photos read; one gate per read of stems[4], opened by the test
    load_photo = ImageRecord.load

    def load(record):
        reads.append(record.stem)
        if record.stem == stems[4]:
            gate = threading.Event()
            gates.append(gate)
            gate.wait(timeout=10)
        return load_photo(record)

    monkeypatch.setattr(ImageRecord, "load", load)
    browser = open_run_window(make_napari_viewer(), run).browser
    _on_screen(qtbot, browser)
    browser.photo.value = stems[4]
    qtbot.waitUntil(lambda: len(gates) == 1)
    browser.photo.value = stems[5]  # left before its read ends...
    browser.photo.value = stems[4]  # ...and chosen again: a second read, queued behind the first
    gates[0].set()
    qtbot.waitUntil(lambda: len(gates) == 2)
    qtbot.wait(200)  # the first read's end has been taken in
    assert browser.run_layers.current == stems[0]  # still the photo before: its latest read is not done
    assert browser.note.value == f"reading {stems[4]}..."
    assert stems[5] not in reads  # left before its read began: never read
    gates[1].set()
    _on_screen(qtbot, browser)
    assert browser.run_layers.current == stems[4]


def test_a_photo_chosen_whose_waiting_read_is_called_off_by_another_is_read_again_and_shown(
    make_napari_viewer, qtbot, finished_layer_run, tmp_path, monkeypatch
):
    """A read waiting in the read thread is called off when another photo is to be read ahead (the order changed,
    say); if it was the read of the photo chosen, that photo must still show, and nothing may raise."""
    from napari_gfn.widgets.photo_browser import CHECK_FIRST

    run, stems = Path(shutil.copytree(finished_layer_run["run"], tmp_path / "run")), finished_layer_run["stems"]
    gate = threading.Event()
    load_photo = ImageRecord.load

    def load(record):
        if record.stem == stems[4]:
            gate.wait(timeout=10)
        return load_photo(record)

    monkeypatch.setattr(ImageRecord, "load", load)
    browser = open_run_window(make_napari_viewer(), run).browser
    _on_screen(qtbot, browser)
    browser.photo.value = stems[4]  # its read holds the read thread...
    browser.photo.value = stems[2]  # ...so this one's waits behind it
    browser.order.value = CHECK_FIRST  # the photo after stems[2] is to be read ahead: stems[2]'s read is called off
    gate.set()
    _on_screen(qtbot, browser)
    assert browser.run_layers.current == stems[2]
    assert iteration_layer_name(stems[2], 2) in browser.run_layers.viewer.layers


def test_an_iteration_arriving_after_its_photo_showed_it_from_disk_adds_no_second_layer(
    make_napari_viewer, qtbot, finished_layer_run, tmp_path
):
    """The masks an iteration brings are read in the worker and added in later turns of the event loop: the user
    may show the photo meanwhile, its finished iterations read from disk."""
    run, stems = Path(shutil.copytree(finished_layer_run["run"], tmp_path / "run")), finished_layer_run["stems"]
    viewer = make_napari_viewer()
    browser = open_run_window(viewer, run).browser
    _on_screen(qtbot, browser)
    browser.run_layers.add_iteration(2, {stems[0]: RunFolder(run).read_mask(2, stems[0])})
    assert [layer.name for layer in viewer.layers if layer.name.startswith(stems[0])] == [
        stems[0],
        *(iteration_layer_name(stems[0], iteration) for iteration in (0, 1, 2)),
    ]


# Opens a run in a fresh napari and prints the libraries the GUI thread imported as it made the first photo's layers.
_FIRST_PHOTO_SHOWN = """
import sys, time
import napari
from qtpy.QtWidgets import QApplication
from napari_gfn.run_window import open_run_window
from napari_gfn.widgets import photo_browser
shown = photo_browser.PhotoBrowser._shown
def recorded(self, stem):
    before = set(sys.modules)
    shown(self, stem)
    print(sorted({name.split(".")[0] for name in set(sys.modules) - before} & {"pandas", "scipy", "skimage"}))
photo_browser.PhotoBrowser._shown = recorded
browser = open_run_window(napari.Viewer(show=False), sys.argv[1]).browser
while browser.run_layers.current != browser.photo.value:
    QApplication.processEvents()
    time.sleep(0.01)
"""


def test_the_libraries_napari_loads_for_its_first_layers_are_loaded_while_the_first_photo_is_read(finished_layer_run):
    """napari imports pandas, SciPy and scikit-image parts as it makes its first layers: 0.7 s of a frozen viewer
    on opening a run, unless they were imported in the thread that reads the photo."""
    opened = subprocess.run(
        [sys.executable, "-c", _FIRST_PHOTO_SHOWN, str(finished_layer_run["run"])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert opened.returncode == 0, opened.stderr[-3000:]
    assert opened.stdout.splitlines() == ["[]"]


def test_trusting_a_labels_layer_not_the_size_of_the_photo_says_both_sizes(
    make_napari_viewer, qtbot, finished_layer_run, tmp_path
):
    run, stems = Path(shutil.copytree(finished_layer_run["run"], tmp_path / "run")), finished_layer_run["stems"]
    viewer = make_napari_viewer()
    widget = open_run_window(viewer, run)
    _on_screen(qtbot, widget.browser)
    height, width = viewer.layers[iteration_layer_name(stems[0], 0)].data.shape
    seen = len(notification_manager.records)
    viewer.add_labels(np.ones((height, width // 2), np.uint8), name="drawn by hand")  # selected as it is added
    widget.trust_selected()
    viewer.add_labels(np.ones((2, height, width), np.uint8), name="a stack")
    widget.trust_selected()
    assert _messages_since(seen) == [
        f"Labels layer 'drawn by hand': mask is {width // 2}x{height} but its photo is {width}x{height}: draw the "
        "correction on its mask, or on a Labels layer of the photo's size",
        "Labels layer 'a stack' has 3 dimensions, and a mask of a photo 2: draw the correction on its mask, or on a "
        "Labels layer of the photo's size",
    ]
    assert not RunFolder(run).fixed_masks()


def test_browsing_closes_the_layers_of_photos_shown_long_ago_painted_or_trusted_ones_once_they_are_on_disk(
    make_napari_viewer, qtbot, finished_layer_run, tmp_path, monkeypatch
):

    run, stems = Path(shutil.copytree(finished_layer_run["run"], tmp_path / "run")), finished_layer_run["stems"]
    viewer = make_napari_viewer()
    widget = open_run_window(viewer, run)
    _on_screen(qtbot, widget.browser)
    one_photo = sum(layer.data.nbytes for layer in viewer.layers)  # the photo and its three iterations' masks
    monkeypatch.setattr(run_layers, "OPEN_LAYERS_BUDGET", int(2.5 * one_photo))
    painted = viewer.layers[iteration_layer_name(stems[0], 1)]
    painted.paint((3, 3), 1)  # a correction begun, not trusted
    paint = painted.data.copy()
    untrusted = viewer.layers.selection.active = viewer.layers[iteration_layer_name(stems[0], 0)]
    untrusted.paint((3, 3), 1)
    widget.trust_selected()
    widget.untrust_selected()  # a correction no longer trusted: kept only in untrusted/, which nothing shows
    widget.browser.step(+1)
    _on_screen(qtbot, widget.browser)
    own = viewer.add_labels(np.zeros(painted.data.shape, np.uint8), name="drawn by hand")
    widget.trust_selected()
    widget.untrust_selected()  # the user's own layer, trusted by mistake: it keeps the run's marker
    trusted = viewer.layers.selection.active = viewer.layers[iteration_layer_name(stems[1], 2)]
    trusted.paint((3, 3), 1)  # a correction, trusted
    widget.trust_selected()
    _wait_for_drafts(qtbot)
    with monkeypatch.context() as disk:  # paint whose draft cannot be written (a full disk, say) is kept open
        _read_only_below(disk, run / "drafts")
        unsaved = viewer.layers[iteration_layer_name(stems[1], 1)]
        unsaved.paint((3, 3), 1)
        _wait_for_drafts(qtbot)

    def held_bytes():  # of the layers the budget counts: all but the user's and the correction no longer trusted
        return sum(layer.data.nbytes for layer in viewer.layers if layer not in (own, untrusted))

    for _ in range(3):
        widget.browser.step(+1)
        _on_screen(qtbot, widget.browser)
        assert held_bytes() <= run_layers.OPEN_LAYERS_BUDGET
    assert painted not in viewer.layers  # its paint is on disk, as its draft
    assert trusted not in viewer.layers  # on disk, trusted
    assert own in viewer.layers
    assert untrusted in viewer.layers
    assert unsaved in viewer.layers
    assert iteration_layer_name(stems[2], 0) not in viewer.layers  # closed as stems[4] came
    assert list(RunFolder(run).drafts()) == [stems[0]]  # closing a painted layer is no removal by the user
    widget.browser.photo.value = stems[2]  # a photo whose layers were closed shows again, read anew
    _on_screen(qtbot, widget.browser)
    for iteration in (0, 1, 2):
        shown = viewer.layers[iteration_layer_name(stems[2], iteration)].data
        np.testing.assert_array_equal(shown, RunFolder(run).read_mask(iteration, stems[2]))
    for stem, kept, data in ((stems[0], "draft", paint), (stems[1], "trusted", trusted.data)):
        widget.browser.photo.value = stem
        _on_screen(qtbot, widget.browser)
        shown = [layer for layer in viewer.layers if layer.visible]
        assert shown[0].name == stem  # the photo read anew goes under its masks
        assert shown[-1].name == f"{stem} · {kept}"
        np.testing.assert_array_equal(shown[-1].data, data > 0)


def test_a_layer_the_user_removes_is_freed_so_removing_layers_frees_memory(
    make_napari_viewer, qtbot, finished_layer_run
):
    viewer = make_napari_viewer()
    open_run_window(viewer, finished_layer_run["run"])
    name = iteration_layer_name(finished_layer_run["stems"][0], 1)
    qtbot.waitUntil(lambda: name in viewer.layers, timeout=10000)
    removed = weakref.ref(viewer.layers[name])
    viewer.layers.remove(name)
    qtbot.wait(50)
    gc.collect()
    assert removed() is None


def test_start_on_a_run_that_cannot_be_written_here_refuses_once_and_leaves_the_viewer_as_it_was(
    make_napari_viewer, qtbot, finished_layer_run, tiny_folder, tmp_path, monkeypatch
):
    run = Path(shutil.copytree(finished_layer_run["run"], tmp_path / "run"))
    _read_only_below(monkeypatch, run)  # a colleague's run, on a shared server (root may write anywhere)
    viewer = make_napari_viewer()
    _open_photos(viewer, tiny_folder)
    layers = list(viewer.layers)
    widget = _layer_run(viewer, tiny_folder, run, iterations=3)
    refusal = (
        f"{run}: the run cannot be written there ({run}: {os.strerror(errno.EROFS)}): copy the run folder to a "
        "disk you can write, and resume the copy"
    )
    seen = len(notification_manager.records)
    _assert_start_refused(widget, refusal)
    assert _messages_since(seen) == [refusal]  # once: not again as the run's layers are taken
    assert list(viewer.layers) == layers


def test_two_painted_layers_of_one_photo_stay_open_as_its_one_draft_holds_the_paint_of_one(
    make_napari_viewer, qtbot, finished_layer_run, tmp_path, monkeypatch
):
    monkeypatch.setattr(run_layers, "OPEN_PHOTOS_BUDGET", 0)
    run, stems = Path(shutil.copytree(finished_layer_run["run"], tmp_path / "run")), finished_layer_run["stems"]
    viewer = make_napari_viewer()
    browser = open_run_window(viewer, run).browser
    _on_screen(qtbot, browser)
    painted = [viewer.layers[iteration_layer_name(stems[0], iteration)] for iteration in (1, 2)]
    for layer in painted:
        layer.paint((3, 3), 1)
    _wait_for_drafts(qtbot)
    for _ in range(3):
        browser.step(+1)
        _on_screen(qtbot, browser)
    assert iteration_layer_name(stems[1], 0) not in viewer.layers  # photos shown long ago are closed
    assert all(layer in viewer.layers for layer in painted)
    np.testing.assert_array_equal(iio.imread(RunFolder(run).draft_path(stems[0])) > 0, painted[-1].data > 0)


def test_a_layer_run_of_many_photos_brings_the_masks_of_the_photo_on_screen_and_keeps_every_photo_layer(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    """napari takes longer to add a layer the more it holds: a layer run of 200 photos given every photo's masks
    paused the viewer 500 times over 0.25 s. Enough photos here that the first photo shown hides the others in one
    batch (napari redraws once, not at each)."""
    count = run_layers.OPEN_PHOTOS_BUDGET + 18
    assert (count - 1) * count > run_layers.VISIBLE_CHANGES_BATCHED_ABOVE
    folder = write_sample_folder(tmp_path / "many", kind="flower", n=count, size=32, seed=5)
    viewer = make_napari_viewer()
    stems = _open_photos(viewer, folder)
    widget = _layer_run(viewer, folder, tmp_path / "run", iterations=1)
    widget.start()
    _wait_until_done(qtbot, widget.task)
    assert widget.task.status == "finished"
    browser = widget.browser

    def shown(stem):
        return {stem, *(iteration_layer_name(stem, iteration) for iteration in (0, 1))}

    assert {layer.name for layer in viewer.layers if layer.visible} == shown(browser.photo.value)
    assert {layer.name for layer in viewer.layers} == set(stems) | shown(browser.photo.value)
    monkeypatch.setattr(run_layers, "OPEN_PHOTOS_BUDGET", 1)
    store = RunFolder(tmp_path / "run")
    for _ in range(3):
        browser.step(+1)
        _on_screen(qtbot, browser)
        on_screen = browser.photo.value
        assert {layer.name for layer in viewer.layers if layer.visible} == shown(on_screen)
        for iteration in (0, 1):
            mask = viewer.layers[iteration_layer_name(on_screen, iteration)].data > 0
            np.testing.assert_array_equal(mask, store.read_mask(iteration, on_screen))
    masks_open = {layer.metadata["napari_gfn"]["stem"] for layer in viewer.layers if "napari_gfn" in layer.metadata}
    assert len(masks_open) <= 2  # the photo on screen's, and the one the budget of 1 keeps
    assert set(stems) <= {layer.name for layer in viewer.layers}  # the user's photos are never closed


def test_browsing_many_photos_keeps_few_open_and_touches_only_the_layers_that_change(
    make_napari_viewer, qtbot, finished_layer_run, tmp_path, monkeypatch
):
    """napari takes longer to add or show a layer the more layers it holds, hidden or not: hundreds of small
    photos browsed would make each Next take seconds."""

    monkeypatch.setattr(run_layers, "OPEN_PHOTOS_BUDGET", 2)
    run, stems = Path(shutil.copytree(finished_layer_run["run"], tmp_path / "run")), finished_layer_run["stems"]
    viewer = make_napari_viewer()
    browser = open_run_window(viewer, run).browser
    _on_screen(qtbot, browser)
    touched = set()  # the photos whose layers got a visible event
    for _ in range(len(stems) + 2):
        before = browser.photo.value
        touched.clear()
        for layer in viewer.layers:
            layer.events.visible.connect(lambda event, stem=layer.metadata["napari_gfn"]["stem"]: touched.add(stem))
        browser.step(+1)
        _on_screen(qtbot, browser)
        assert touched <= {before, browser.photo.value}
        others = {layer.metadata["napari_gfn"]["stem"] for layer in viewer.layers} - {browser.photo.value}
        assert len(others) <= 2
        assert {layer.name for layer in viewer.layers if layer.visible} == {
            browser.photo.value,
            *(iteration_layer_name(browser.photo.value, iteration) for iteration in (0, 1, 2)),
        }

    # Closing comes after the photo is on screen, a photo's layers per turn of the event loop: at once, they froze
    # the viewer for over a second.
    monkeypatch.setattr(run_layers, "OPEN_PHOTOS_BUDGET", 0)
    ticks, ticks_when = [], {"added": set(), "closed": {}}  # a 5 ms timer's ticks: napari answered meanwhile
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(None))
    timer.start(5)
    viewer.layers.events.inserted.connect(lambda event: ticks_when["added"].add(len(ticks)))
    viewer.layers.events.removed.connect(
        lambda event: ticks_when["closed"].setdefault(event.value.metadata["napari_gfn"]["stem"], set()).add(len(ticks))
    )
    browser.step(+1)
    _on_screen(qtbot, browser)
    timer.stop()
    closed = ticks_when["closed"]
    assert len(closed) >= 2, closed  # the photo before and those the budget of 2 kept, as it is now 0
    assert all(len(when) == 1 for when in closed.values()), closed  # a photo's layers together
    assert len({min(when) for when in closed.values()}) == len(closed), closed  # each photo in a turn of its own
    assert min(min(when) for when in closed.values()) > max(ticks_when["added"]), ticks_when
    left = browser.photo.value
    browser.step(-1)
    _on_screen(qtbot, browser)
    assert iteration_layer_name(left, 0) in viewer.layers  # over budget, but what Next would show again


def _thread() -> str:
    name = threading.current_thread().name
    return "read-ahead" if name.startswith("napari-gfn-read-ahead") else name


def test_a_mask_cut_short_in_a_copied_run_is_named_and_the_rest_shows_and_exports(
    make_napari_viewer, qtbot, finished_layer_run, tmp_path
):
    run = Path(shutil.copytree(finished_layer_run["run"], tmp_path / "copied run"))
    first, second = finished_layer_run["stems"][:2]
    cut = RunFolder(run).mask_path(1, first)
    cut.write_bytes(cut.read_bytes()[:40])
    viewer = make_napari_viewer()
    seen = len(notification_manager.records)
    browser = open_run_window(viewer, run).browser
    _on_screen(qtbot, browser)
    messages = _messages_since(seen)
    assert any(f"{cut}: cannot be read as a mask" in message for message in messages), messages
    assert iteration_layer_name(first, 0) in viewer.layers
    assert iteration_layer_name(first, 1) not in viewer.layers
    assert iteration_layer_name(first, 2) in viewer.layers

    exporter = _dock(viewer, "Export labels")
    exporter.run_folder.value, exporter.iteration.value, exporter.out_folder.value = run, 1, tmp_path / "out"
    exporter.export()
    _wait_until_done(qtbot, exporter.task)
    assert exporter.task.status == "finished"
    messages = _messages_since(seen)
    assert any(f"not exported: {cut}: cannot be read" in message for message in messages), messages
    written = sorted(path.stem for path in (tmp_path / "out").iterdir())
    assert written == sorted(set(finished_layer_run["stems"]) - {first})
    np.testing.assert_array_equal(
        iio.imread(tmp_path / "out" / f"{second}.png") > 0, RunFolder(run).read_mask(1, second)
    )


def test_a_trusted_correction_is_kept_by_later_iterations(
    make_napari_viewer, qtbot, tiny_folder, tmp_path, monkeypatch
):
    viewer = make_napari_viewer()
    stems = _open_photos(viewer, tiny_folder)
    widget = _layer_run(viewer, tiny_folder, tmp_path / "run", iterations=1)
    widget.start()
    _wait_until_done(qtbot, widget.task)
    layer = viewer.layers[iteration_layer_name(stems[0], 1)]
    corrected = np.zeros_like(layer.data)
    corrected[10:40, 12:30] = 1  # a hand-drawn box, unlike anything the network predicts
    layer.data = corrected.copy()  # the layer's own array, which painting changes
    viewer.layers.selection.active = layer
    widget.browser.photo.value = stems[0]
    widget.trust_selected()
    assert layer.name == f"{stems[0]} · trusted"
    assert widget.browser.note.value.startswith("trusted; iteration 1: ")
    layer.paint((5, 5), 1)  # painted on after it was trusted: the run has the mask as trusted, not this
    painted_after_trust = layer.data > 0
    begun = viewer.layers[iteration_layer_name(stems[1], 1)]
    begun.paint((20, 20), 1)  # a correction begun, and not trusted

    widget.iterations.value = 2
    seen = len(notification_manager.records)
    widget.start()  # the run folder has finished iterations: the run continues
    said = [message for message in _messages_since(seen) if message.startswith("not trained on")]
    assert said == [
        f"not trained on: the paint in 2 layers ({layer.name}, {begun.name}), not trusted since: to have the "
        "rounds to come train on a correction, select its layer and press Trust selected Labels layer"
    ]
    _wait_until_done(qtbot, widget.task)
    assert widget.task.status == "finished"
    np.testing.assert_array_equal(RunFolder(tmp_path / "run").read_mask(2, stems[0]), corrected > 0)
    np.testing.assert_array_equal(viewer.layers[iteration_layer_name(stems[0], 2)].data, corrected)
    assert viewer.layers.selection.active is layer  # iteration 2's layers came without taking the selection
    for stem in (stems[1], stems[0]):  # browsing away and back shows the same one trusted layer
        widget.browser.photo.value = stem
    assert [layer.name for layer in viewer.layers if "trusted" in layer.name] == [f"{stems[0]} · trusted"]
    assert len({layer.name for layer in viewer.layers}) == len(viewer.layers) == 8 + 8 * 3  # no layer shown twice

    # Reopened later, the correction shows on top of the photo's iterations, the paint since as a draft above it,
    # and the note says it is trusted.
    reopened = make_napari_viewer()
    dock = open_run_window(reopened, tmp_path / "run")
    browser = dock.browser
    browser.photo.value = stems[0]
    _on_screen(qtbot, browser)
    assert [layer.name for layer in reopened.layers][-2:] == [f"{stems[0]} · trusted", f"{stems[0]} · draft"]
    np.testing.assert_array_equal(reopened.layers[-2].data, corrected)
    np.testing.assert_array_equal(reopened.layers[-1].data, painted_after_trust)
    assert browser.note.value.startswith("trusted; iteration 2: ")
    browser.photo.value = stems[1]
    _on_screen(qtbot, browser)
    assert not browser.note.value.startswith("trusted")
    assert not reopened.layers[f"{stems[0]} · trusted"].visible
    assert sum(layer.name.endswith("· trusted") for layer in reopened.layers) == 1

    # Trusted by mistake: Stop trusting moves the file aside, keeps the layer, and Trust takes it up again.
    fixed = RunFolder(tmp_path / "run").fixed_masks()[stems[0]]
    browser.photo.value = stems[0]
    _on_screen(qtbot, browser)
    reopened.layers.selection.active = reopened.layers[f"{stems[0]} · trusted"]
    seen = len(notification_manager.records)
    dock.untrust_selected()
    assert not fixed.exists()
    kept = tmp_path / "run" / "untrusted" / f"{stems[0]}.png"
    assert f"{stems[0]}: no longer trusted (the correction is kept in {kept})" in _messages_since(seen)[0]
    np.testing.assert_array_equal(iio.imread(kept) > 0, corrected > 0)  # the user's work is not lost
    names = [layer.name for layer in reopened.layers]
    assert f"{stems[0]} · not trusted" in names
    assert f"{stems[0]} · trusted" not in names
    assert browser.note.value.startswith("iteration 2: ")
    seen = len(notification_manager.records)
    dock.untrust_selected()
    assert _messages_since(seen) == [f"{stems[0]} has no trusted correction"]
    browser.photo.value = stems[1]
    browser.photo.value = stems[0]  # nothing trusted to show again
    _on_screen(qtbot, browser)
    assert not any(layer.name.endswith("· trusted") for layer in reopened.layers)
    reopened.layers.selection.active = reopened.layers[f"{stems[0]} · not trusted"]
    # A run that cannot be written (a read-only mount; simulated, as root may write anywhere) says so, and the
    # correction stays in its layer.
    with monkeypatch.context() as disk:
        _read_only_below(disk, fixed.parent)
        seen = len(notification_manager.records)
        dock.trust_selected()
    assert _messages_since(seen) == [
        f"{stems[0]}: the correction cannot be trusted: [Errno {errno.EROFS}] {os.strerror(errno.EROFS)}: "
        f"'{fixed}'; it stays in its layer (File > Save Selected Layers... saves it elsewhere)"
    ]
    assert not fixed.exists()
    assert f"{stems[0]} · not trusted" in [layer.name for layer in reopened.layers]
    dock.trust_selected()
    np.testing.assert_array_equal(iio.imread(fixed) > 0, corrected > 0)
    assert f"{stems[0]} · trusted" in [layer.name for layer in reopened.layers]


def test_paint_not_trusted_is_kept_as_a_draft_through_napari_closing_until_trusted_or_its_layer_removed(
    make_napari_viewer, qtbot, tiny_folder, tmp_path, monkeypatch
):
    viewer = make_napari_viewer()
    stems = _open_photos(viewer, tiny_folder)[:3]
    widget = _layer_run(viewer, tiny_folder, tmp_path / "run", iterations=1)
    widget.start()
    _wait_until_done(qtbot, widget.task)
    store = RunFolder(tmp_path / "run")
    painted = {}
    for stem in stems:
        layer = viewer.layers[iteration_layer_name(stem, 1)]
        layer.paint(tuple(np.argwhere(layer.data == 0)[0]), 1)  # where the iteration found background
        painted[stem] = layer.data > 0
        assert (painted[stem] != store.read_mask(1, stem)).any()
    qtbot.waitUntil(lambda: set(store.drafts()) == set(stems), timeout=5000)
    for stem, mask in painted.items():
        qtbot.waitUntil(partial(_file_holds, store.draft_path(stem), mask), timeout=5000)
    # A stroke undone (napari says nothing of an Undo but a refresh of the layer) is undone in the draft too;
    # showing the layer again, which refreshes it as well, leaves its draft as it is.
    layer = viewer.layers[iteration_layer_name(stems[0], 1)]
    layer.paint(tuple(np.argwhere(layer.data == 0)[0]), 1)
    _wait_for_drafts(qtbot)
    assert not _file_holds(store.draft_path(stems[0]), painted[stems[0]])
    layer.undo()
    _wait_for_drafts(qtbot)
    assert _file_holds(store.draft_path(stems[0]), painted[stems[0]])
    written = store.draft_path(stems[0]).stat().st_mtime_ns
    layer.visible = False
    layer.visible = True
    _wait_for_drafts(qtbot)
    assert store.draft_path(stems[0]).stat().st_mtime_ns == written
    viewer.close()  # napari's own close, which removes every layer first
    qtbot.wait(100)
    assert set(store.drafts()) == set(stems)

    reopened = make_napari_viewer()
    dock = open_run_window(reopened, tmp_path / "run")
    dock.browser.photo.value = stems[0]
    _on_screen(qtbot, dock.browser)
    draft = reopened.layers[-1]
    assert draft.name == f"{stems[0]} · draft"
    np.testing.assert_array_equal(draft.data, painted[stems[0]])
    assert dock.run_layers.painted_since_trusted() == [f"{stem} · draft" for stem in stems]
    draft.paint(tuple(np.argwhere(draft.data == 0)[0]), 1)  # a last stroke, trusted before its draft is written
    reopened.layers.selection.active = draft
    dock.trust_selected()  # a trusted draft is a draft no longer
    np.testing.assert_array_equal(iio.imread(store.fixed_mask_path(stems[0])), draft.data * 255)
    _wait_for_drafts(qtbot)
    assert not store.draft_path(stems[0]).exists()
    draft.undo()  # the stroke trusted, undone: the layer holds paint not trusted again
    _wait_for_drafts(qtbot)
    assert _file_holds(store.draft_path(stems[0]), painted[stems[0]])
    assert dock.run_layers.painted_since_trusted() == [f"{stems[0]} · trusted", *(f"{s} · draft" for s in stems[1:])]
    draft.redo()  # the stroke back: the layer holds the mask trusted again
    _wait_for_drafts(qtbot)
    assert not store.draft_path(stems[0]).exists()
    assert dock.run_layers.painted_since_trusted() == [f"{s} · draft" for s in stems[1:]]
    draft.undo()
    _wait_for_drafts(qtbot)
    assert _file_holds(store.draft_path(stems[0]), painted[stems[0]])
    dock.trust_selected()
    _wait_for_drafts(qtbot)
    assert not store.draft_path(stems[0]).exists()

    dock.browser.photo.value = stems[1]
    _on_screen(qtbot, dock.browser)
    reopened.layers.remove(f"{stems[1]} · draft")  # not shown again, but kept: napari cannot undo a removal
    removed = tmp_path / "run" / "drafts" / "removed" / f"{stems[1]}.png"
    qtbot.waitUntil(removed.exists, timeout=5000)
    np.testing.assert_array_equal(iio.imread(removed) > 0, painted[stems[1]])
    dock.browser.photo.value = stems[2]
    _on_screen(qtbot, dock.browser)
    dock.browser.photo.value = stems[1]
    _on_screen(qtbot, dock.browser)
    assert not any(layer.name.endswith("· draft") and layer.visible for layer in reopened.layers)
    assert list(store.drafts()) == [stems[2]]

    # Drafts that cannot be written (a disk that filled, say; simulated, as root may write anywhere) are said
    # once, at the stroke after: the thread that writes them cannot show a message.
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "run", copy)
    with monkeypatch.context() as disk:
        _read_only_below(disk, store.draft_path(stems[2]).parent)
        dock.browser.photo.value = stems[2]
        _on_screen(qtbot, dock.browser)
        seen = len(notification_manager.records)
        _three_strokes(qtbot, reopened.layers[f"{stems[2]} · draft"])
    assert [message for message in _messages_since(seen) if "cannot be written" in message] == [
        f"{store.draft_path(stems[2])}: cannot be written: [Errno {errno.EROFS}] {os.strerror(errno.EROFS)}: "
        f"'{store.draft_path(stems[2])}': paint not trusted would be lost when napari closes: save its layer "
        "elsewhere (File > Save Selected Layers...)"
    ]

    # A run opened from where it cannot be written (a colleague's, on a shared server) says so on opening, before
    # any paint is lost, and not again at each stroke.
    _read_only_below(monkeypatch, copy)
    seen = len(notification_manager.records)
    dock = open_run_window(make_napari_viewer(), copy)
    dock.browser.photo.value = stems[2]
    _on_screen(qtbot, dock.browser)
    _three_strokes(qtbot, dock.viewer.layers[f"{stems[2]} · draft"])
    assert [message for message in _messages_since(seen) if "cannot be written" in message] == [
        f"{copy} cannot be written here ({copy}: {os.strerror(errno.EROFS)}): neither paint (kept as drafts) nor "
        "Trust can be saved in it. To correct its masks, copy the run folder to a disk you can write and open the copy"
    ]
    # A draft or trusted mask of another size than its photo (the photo replaced by another of its name since) is
    # named, not shown.
    other_sizes = [RunFolder(copy).draft_path(stems[1]), RunFolder(copy).fixed_mask_path(stems[1])]
    for other_size in other_sizes:
        other_size.parent.mkdir(exist_ok=True)
        iio.imwrite(other_size, np.full((10, 12), 255, np.uint8))
    seen = len(notification_manager.records)
    dock.browser.photo.value = stems[1]
    _on_screen(qtbot, dock.browser)
    assert [message for message in _messages_since(seen) if "not shown" in message] == [
        f"{shown} not shown: {other_size}: mask is 12x10 but its photo is 64x64"
        for shown, other_size in zip(("trusted correction", "draft"), other_sizes[::-1], strict=True)
    ]
    assert not dock.viewer.layers[-1].name.endswith(("· draft", "· trusted"))


def _read_only_below(monkeypatch, folder: Path) -> None:
    """Files cannot be made in ``folder`` nor below it, as on a read-only mount (root may write anywhere)."""
    for make in ("mkstemp", "TemporaryFile"):
        monkeypatch.setattr(tempfile, make, partial(_refused_below, folder, getattr(tempfile, make)))


def _refused_below(folder: Path, make, *args, dir=None, **kwargs):
    if dir is not None and Path(dir).is_relative_to(folder):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    return make(*args, dir=dir, **kwargs)


def _three_strokes(qtbot, layer) -> None:
    for label in (1, 0, 1):  # each a change
        layer.paint((5, 5), label)
        qtbot.wait(200)


def test_a_run_moved_while_open_is_not_made_again_where_it_was_by_paint_or_a_trust(
    make_napari_viewer, qtbot, finished_layer_run, tmp_path
):
    run, stem = Path(shutil.copytree(finished_layer_run["run"], tmp_path / "run")), finished_layer_run["stems"][0]
    viewer = make_napari_viewer()
    dock = open_run_window(viewer, run)
    _on_screen(qtbot, dock.browser)
    run.rename(tmp_path / "run, renamed")  # in a file manager, as napari shows it
    mask = viewer.layers[iteration_layer_name(stem, 2)]
    viewer.layers.selection.active = mask
    seen = len(notification_manager.records)
    _three_strokes(qtbot, mask)  # the draft's trouble is said at the stroke after the one that met it
    dock.trust_selected()
    gone = (
        f"{run} is no longer a run folder (moved or deleted since it was opened): open the run where it is now "
        "(Open run)"
    )
    dock.browser.step(1)  # another photo: shown, without masks
    _on_screen(qtbot, dock.browser)
    dock.browser.step(-1)
    _on_screen(qtbot, dock.browser)
    assert _messages_since(seen) == [
        f"{RunFolder(run).draft_path(stem)}: cannot be written: {gone}: paint not trusted would be lost when napari "
        "closes: save its layer elsewhere (File > Save Selected Layers...)",
        f"{stem}: the correction cannot be trusted: {gone}; it stays in its layer (File > Save Selected Layers... "
        "saves it elsewhere)",
        f"masks not shown: {gone}",
    ]
    assert not run.exists()
    assert not RunFolder(tmp_path / "run, renamed").fixed_masks()


def test_an_undo_back_to_the_mask_trusted_drops_its_draft_with_the_dock_closed(
    make_napari_viewer, qtbot, finished_layer_run, tmp_path
):
    run, stem = Path(shutil.copytree(finished_layer_run["run"], tmp_path / "run")), finished_layer_run["stems"][0]
    store, viewer = RunFolder(run), make_napari_viewer()
    closed, layer = _trust_paint_and_close_the_dock(viewer, qtbot, run, stem)
    qtbot.wait(50)  # Qt deletes the dock's widgets in its event loop
    gc.collect()
    assert closed() is None
    assert store.draft_path(stem).exists()
    layer.undo()
    _wait_for_drafts(qtbot)
    assert not store.draft_path(stem).exists()
    np.testing.assert_array_equal(iio.imread(store.fixed_mask_path(stem)) > 0, layer.data > 0)


def _trust_paint_and_close_the_dock(viewer, qtbot, run: Path, stem: str) -> tuple[weakref.ref, Labels]:
    """A stroke on a mask just trusted, then the dock closed; its own function, so that no frame keeps the dock."""
    dock = open_run_window(viewer, run)
    _on_screen(qtbot, dock.browser)
    layer = viewer.layers[iteration_layer_name(stem, 2)]
    viewer.layers.selection.active = layer
    dock.trust_selected()
    layer.paint(tuple(np.argwhere(layer.data == 0)[0]), 1)
    qtbot.waitUntil(RunFolder(run).draft_path(stem).exists, timeout=5000)
    viewer.window.remove_dock_widget("all")  # what the dock's X does
    return weakref.ref(dock), layer


def _wait_for_drafts(qtbot) -> None:
    """Until every draft asked for is written: the paint's, asked after napari's stroke ends, then the thread's."""
    qtbot.wait(50)
    run_layers._DRAFT_WRITER.submit(int).result()


def _file_holds(path: Path, mask: np.ndarray) -> bool:
    return np.array_equal(iio.imread(path) > 0, mask)


def _broken_source_model(widget, tmp_path, monkeypatch) -> str:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a model")
    widget.seed.value = "transfer"
    widget.source_model.value = broken
    return "broken.pt"


def _area_range_nothing_passes(widget, tmp_path, monkeypatch) -> str:
    widget.area_min.value = 0.97
    return "nothing to train on"


def _gpu_out_of_memory(widget, tmp_path, monkeypatch) -> str:
    def out_of_memory(*args, **kwargs):  # as a GPU that other processes fill fails a step (no GPU here)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")

    monkeypatch.setattr(torch.optim.SGD, "step", out_of_memory)
    return "out of memory: CUDA out of memory. Tried to allocate 20.00 MiB. To need less memory: a smaller image size"


@pytest.mark.parametrize("break_the_run", [_broken_source_model, _area_range_nothing_passes, _gpu_out_of_memory])
def test_an_error_in_the_worker_is_a_notification_not_a_crash(
    make_napari_viewer, qtbot, tiny_folder, tmp_path, monkeypatch, break_the_run
):
    viewer = make_napari_viewer()
    _open_photos(viewer, tiny_folder)
    widget = _layer_run(viewer, tiny_folder, tmp_path / "run", iterations=1)
    expected = break_the_run(widget, tmp_path, monkeypatch)
    seen = len(notification_manager.records)
    widget.start()
    _wait_until_done(qtbot, widget.task)
    assert widget.task.status == "failed"
    messages = _messages_since(seen)
    assert any(expected in message for message in messages), messages
    # In full in the dock too: napari's notification shows a line of it.
    assert widget.status.value.startswith("auto-label stopped: ")
    assert expected in widget.status.value
    assert widget.start_button.enabled  # the dock is ready for another try


def test_closing_the_viewer_mid_run_neither_hangs_nor_loses_iterations(
    make_napari_viewer, qtbot, tiny_folder, tmp_path
):
    viewer = make_napari_viewer()
    stems = _open_photos(viewer, tiny_folder)
    widget = _layer_run(viewer, tiny_folder, tmp_path / "run", iterations=20)
    task = widget.task
    widget.start()
    qtbot.waitUntil(lambda: iteration_layer_name(stems[-1], 0) in viewer.layers, timeout=RUN_TIMEOUT_MS)
    # The dock's status line says where the run is and its ETA, as the bar in napari's activity dock (closed) does.
    progress = re.compile(r"running: [\w ]+: [\w ]+: \d+ of \d+, (\d\d:\d\d|\?) left")
    qtbot.waitUntil(lambda: bool(progress.fullmatch(widget.status.value)), timeout=RUN_TIMEOUT_MS)
    # The whole run's time left follows; once a refinement round is timed, each round after as long as the last.
    whole_run = re.compile(
        r"running: iter (\d+) of 20: [\w ]+: \d+ of \d+, (?:\d\d:\d\d|\?) left, whole run (\d+):(\d\d) left"
    )
    said = []

    def said_from_a_timed_round():
        said.append(whole_run.fullmatch(widget.status.value))
        return bool(said[-1]) and int(said[-1][1]) >= 2

    qtbot.waitUntil(said_from_a_timed_round, timeout=60_000)
    round_now, minutes, seconds = map(int, said[-1].groups())
    last_round_s = {entry["iteration"]: entry["elapsed_s"] for entry in RunFolder(tmp_path / "run").metrics()}
    rounds_after, round_s = 20 - round_now, last_round_s[round_now - 1]
    assert rounds_after * round_s - 1 <= 60 * minutes + seconds <= (rounds_after + 1) * round_s + 1
    # What napari's dialog lists when its window is closed by hand now, as at work: the job by its name.
    assert "napari-worker: Executing napari-gfn auto-label" in viewer.window._task_status_manager.get_status()
    viewer.close()
    qtbot.waitUntil(lambda: not task.worker.is_running, timeout=RUN_TIMEOUT_MS)
    qtbot.waitUntil(lambda: gc.get_freeze_count() == 0)  # the job's clean-up ran: the heap is collected again,
    assert _torch_threads_of_a_new_thread() == TORCH_THREADS  # and training's cores are given back
    store = RunFolder(tmp_path / "run")
    assert 0 in store.finished_iterations()
    for iteration in store.finished_iterations():
        assert all(store.has_mask(iteration, stem) for stem in stems)
    # Opened later, the run reads as cancelled, as it was, not as killed or still working.
    assert store.how_it_ended().startswith(CANCELLED)


# A script that uses napari as a user's script or notebook may: a run started in the Auto-label dock, the viewer
# closed once iteration 0 is in, and Python left to exit at once, while the run's worker is mid-step.
_CLOSE_MID_RUN_AND_EXIT = """
import sys, time
import napari
from qtpy.QtWidgets import QApplication
from napari_gfn.config import RunConfig
from napari_gfn.store import RunFolder
config = RunConfig.from_json(sys.argv[1])
viewer = napari.Viewer(show=False)
_, dock = viewer.window.add_plugin_dock_widget("napari-gfn", "Auto-label")
dock.load_settings(config)
dock.start()
while not RunFolder(config.out).finished_iterations():
    QApplication.processEvents()
    time.sleep(0.05)
viewer.close()
"""


def test_python_exiting_just_after_the_viewer_closed_mid_run_ends_the_run_as_cancelled_not_with_a_crash(
    tiny_folder, tmp_path
):
    store = RunFolder(tmp_path / "run")
    config = QUICK.updated(iterations=20, images=str(tiny_folder / "images"), out=str(store.root))
    script = [sys.executable, "-c", _CLOSE_MID_RUN_AND_EXIT, config.to_json()]
    exited = subprocess.run(script, capture_output=True, text=True, timeout=RUN_TIMEOUT_MS / 1000)
    assert exited.returncode == 0, exited.stderr  # PyQt aborts a process whose worker outlives its Qt objects
    assert "RuntimeError" not in exited.stderr
    assert store.how_it_ended().startswith(CANCELLED)
    assert 0 in store.finished_iterations()


def test_a_job_runs_with_the_older_heap_left_out_of_garbage_collection(qtbot):
    task = engine_task.EngineTask("freeze check")
    frozen_during_the_job = []

    def job(cancel):
        frozen_during_the_job.append(gc.get_freeze_count())
        yield from ()

    assert gc.get_freeze_count() == 0
    task.start(job)
    _wait_until_done(qtbot, task)
    assert task.status == "finished"
    assert frozen_during_the_job[0] > 10_000  # napari's and torch's objects, not a handful
    assert gc.get_freeze_count() == 0  # scanned again once the job has ended


def test_stepwise_work_runs_its_steps_in_order_in_later_turns_and_goes_on_past_one_that_fails(qtbot):
    parent = QObject()
    work = StepwiseWork(parent)
    done = []

    def failing_step():
        done.append("failed")
        raise RuntimeError("a step's own error")

    with qtbot.capture_exceptions() as errors:
        work.add([partial(done.append, 1), failing_step])
        work.add([partial(done.append, 2)])
        assert done == []  # nothing runs in the caller's turn
        qtbot.waitUntil(lambda: 2 in done, timeout=5_000)
    assert done == [1, "failed", 2]
    assert [str(error[1]) for error in errors] == ["a step's own error"]


def test_the_job_settings_stay_until_the_last_of_two_jobs_ends(qtbot):
    first, second = engine_task.EngineTask("first"), engine_task.EngineTask("second")
    second_ended = threading.Event()
    seen_by_the_first_after_the_second = []
    threads_of_the_second = []

    def first_job(cancel):
        second_ended.wait(timeout=RUN_TIMEOUT_MS / 1000)
        seen_by_the_first_after_the_second.append((gc.get_freeze_count(), _torch_threads_of_a_new_thread()))
        yield from ()

    def second_job(cancel):
        threads_of_the_second.append(torch.get_num_threads())
        yield from ()

    first.start(first_job)
    qtbot.waitUntil(lambda: gc.get_freeze_count() > 0)
    second.start(second_job)
    _wait_until_done(qtbot, second)
    second_ended.set()
    _wait_until_done(qtbot, first)
    assert (first.status, second.status) == ("finished", "finished")
    frozen, threads = seen_by_the_first_after_the_second[0]
    assert frozen > 10_000
    assert threads == threads_of_the_second[0] == max(1, TORCH_THREADS - 1)
    assert gc.get_freeze_count() == 0
    assert _torch_threads_of_a_new_thread() == TORCH_THREADS


def test_warnings_that_come_together_share_one_notification_and_one_alone_shows_as_is(qtbot):
    task = engine_task.EngineTask("many", uses_torch=False)
    empty = [f"skipped /photos/IMG_{index:04d}.JPG: the file is empty" for index in range(30)]

    def burst(cancel):
        yield Notice("a seed's note", level="info")
        for message in empty:
            yield Notice(message)

    def one_later(cancel):
        yield Notice("only this one")

    seen = len(notification_manager.records)
    task.start(burst)
    _wait_until_done(qtbot, task)
    shown = _messages_since(seen)
    assert shown == ["a seed's note", "many: 30 warnings\n" + "\n".join(empty)]
    task.start(one_later)
    _wait_until_done(qtbot, task)
    qtbot.wait(engine_task.WARNING_BATCH_MS + 200)  # the timer set for the burst finds nothing left to show
    assert _messages_since(seen + 2) == ["only this one"]


# The photo browser may read a damaged photo for the screen after the run has ended; its warning then goes to
# Python's display, as it does outside a run in napari, and pytest would list it.
@pytest.mark.filterwarnings("ignore:Tag data larger than file")
def test_a_run_says_its_backbone_has_no_weights_and_a_decoders_warning_names_its_file_once(
    make_napari_viewer, qtbot, tiny_folder, tmp_path, save_with_a_damaged_exif_tag, empty_torch_cache
):
    photos = shutil.copytree(tiny_folder / "images", tmp_path / "photos")
    damaged = [save_with_a_damaged_exif_tag(photo) for photo in sorted(photos.glob("*.png"))[:2]]
    widget = _folder_form(make_napari_viewer(), photos)
    widget.load_settings(QUICK.updated(iterations=1, backbone="resnet18"))  # whose weights the cache lacks
    seen = len(notification_manager.records)
    widget.start()
    _wait_until_done(qtbot, widget.task)
    assert widget.task.status == "finished", _messages_since(seen)
    qtbot.wait(engine_task.WARNING_BATCH_MS + 200)
    said = [line for message in _messages_since(seen) for line in message.splitlines()]
    assert said.count(missing_imagenet_weights("resnet18")) == 1
    # Each photo is decoded for its working copy and again for each iteration's masks.
    warned = sorted(line for line in said if "Tag data" in line)
    assert warned == [f"{photo}: Tag data larger than file. Skipping tag 270" for photo in damaged]


def test_every_progress_bar_a_job_opens_in_naparis_activity_dock_is_closed(make_napari_viewer, qtbot):
    make_napari_viewer()  # its activity dock draws each bar, letting Qt events in: the job's next reports, its end
    task = engine_task.EngineTask("quick", uses_torch=False)

    def quick_reports(cancel):
        for phase in ("copy photos layers", "copy gt layers", "iter 0 of 1: predict"):
            for done in range(1, 41):
                yield Progress(phase, done, 40)

    task.start(quick_reports)
    _wait_until_done(qtbot, task)
    assert task.status == "finished"
    assert list(progress._all_instances) == []


def test_a_jobs_warnings_show_once_but_not_deprecations_or_naparis_own(qtbot):
    task = engine_task.EngineTask("warn", uses_torch=False)

    def warn(cancel):
        for _ in range(2):
            warnings.warn("a library's warning", UserWarning, stacklevel=1)
            warnings.warn("a deprecation, for programmers", DeprecationWarning, stacklevel=1)
            yield Notice("a step", level="info")
        yield "a result, which the GUI thread takes"
        assert warned_in_the_gui_thread.wait(10)  # while this job runs, and superqt's worker takes warnings

    warned_in_the_gui_thread = threading.Event()

    def in_the_gui_thread(result):
        warnings.warn("napari's own", UserWarning, stacklevel=1)
        warned_in_the_gui_thread.set()

    seen = len(notification_manager.records)
    task.start(warn, on_result=in_the_gui_thread)
    _wait_until_done(qtbot, task)
    qtbot.wait(engine_task.WARNING_BATCH_MS + 200)
    assert [message for message in _messages_since(seen) if message != "a step"] == ["a library's warning"]


def test_the_demo_opens_the_sample_photos_with_the_dock_ready_to_start(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    dock = open_demo(viewer, tmp_path)
    photos = sorted((tmp_path / "sample" / "images").glob("*.png"))
    assert [layer.name for layer in viewer.layers] == [path.stem for path in photos]
    config, inputs, _ = dock._run_config()
    assert sorted(inputs["photos"]) == [path.stem for path in photos]
    assert config.gt == str(tmp_path / "sample" / "masks")
    assert config.out == str(tmp_path / "run")
    assert (config.iterations, config.image_size, config.epochs) == (
        DEMO_CONFIG.iterations,
        DEMO_CONFIG.image_size,
        DEMO_CONFIG.epochs,
    )
    assert dock.start_button.enabled
    dock.upsample_radius.value = 4  # advanced settings reach the run's configuration
    dock.grabcut_edge_band.value = 2
    assert (dock._run_config()[0].upsample_radius, dock._run_config()[0].grabcut_edge_band) == (4, 2)


def test_a_source_model_shows_its_card_and_seeds_the_auto_label_dock(make_napari_viewer, qtbot, tmp_path):
    from napari_gfn.network import GFN, save_model

    path = save_model(
        GFN(pretrained=False),
        tmp_path / "orchids.pt",
        class_names=["background", "orchid"],
        image_size=256,
        source="orchid photos",
        photos=40,
    )
    viewer = make_napari_viewer()
    auto_label = _dock(viewer, "Auto-label")
    source = _dock(viewer, "Source model")
    source.open_model(path)
    qtbot.waitUntil(lambda: source.open_button.enabled)
    for line in (
        "backbone: efficientnet_lite0",
        "classes: background, orchid",
        "training size: 256 px",
        "source set: orchid photos (40 photos)",
    ):
        assert line in source.card.value
    assert auto_label.seed.value == "transfer"
    assert Path(auto_label.source_model.value) == path


def test_training_in_the_dock_saves_offers_the_model_and_never_replaces_an_earlier_one(
    make_napari_viewer, qtbot, tiny_folder, tmp_path, monkeypatch
):
    from napari_gfn.network import read_model_card

    monkeypatch.setenv("HOME", str(tmp_path))
    earlier = tmp_path / "source-model.pt"
    earlier.write_bytes(b"a model trained last week")
    viewer = make_napari_viewer()
    auto_label = _dock(viewer, "Auto-label")
    source = _dock(viewer, "Source model")
    assert Path(source.out_file.value) == tmp_path / "source-model-2.pt"
    source.images.value, source.masks.value = tiny_folder / "images", tiny_folder / "masks"
    source.epochs.value, source.image_size.value = 1, 64
    source.train()
    _wait_until_done(qtbot, source.task)
    assert source.task.status == "finished"
    qtbot.waitUntil(lambda: Path(auto_label.source_model.value) == tmp_path / "source-model-2.pt")
    assert read_model_card(tmp_path / "source-model-2.pt")["meta"]["photos"] == 8
    assert earlier.read_bytes() == b"a model trained last week"
    assert Path(source.out_file.value) == tmp_path / "source-model-3.pt"  # ready for the next training


def test_a_save_as_the_dock_cannot_write_is_refused_before_training(make_napari_viewer, qtbot, tiny_folder, tmp_path):
    viewer = make_napari_viewer()
    source = _dock(viewer, "Source model")
    source.images.value, source.masks.value = tiny_folder / "images", tiny_folder / "masks"
    source.epochs.value, source.image_size.value = 1, 64
    source.out_file.value = tmp_path
    seen = len(notification_manager.records)
    source.train()
    _wait_until_done(qtbot, source.task)
    assert source.task.status == "failed"
    messages = _messages_since(seen)
    assert any(f"{tmp_path}: a folder, not a file" in message for message in messages)
    assert not any("training a source model" in message for message in messages)
    assert source.status.value.startswith(f"source model training stopped: {tmp_path}: a folder, not a file")


def test_an_unreadable_model_file_is_named_and_the_model_chosen_before_stays(make_napari_viewer, qtbot, tmp_path):
    from napari_gfn.network import GFN, save_model

    good = save_model(GFN(pretrained=False), tmp_path / "good.pt", source="orchid photos")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:5000])
    viewer = make_napari_viewer()
    auto_label = _dock(viewer, "Auto-label")
    source = _dock(viewer, "Source model")
    source.open_model(good)
    qtbot.waitUntil(lambda: source.open_button.enabled)
    card = source.card.value
    seen = len(notification_manager.records)
    source.open_model(truncated)
    assert not source.open_button.enabled  # read in a worker thread
    qtbot.waitUntil(lambda: source.open_button.enabled)
    messages = _messages_since(seen)
    assert any(str(truncated) in message and "truncated or corrupt" in message for message in messages)
    assert source.card.value == card
    assert Path(auto_label.source_model.value) == good


def test_a_runtime_error_while_reading_a_card_is_named_and_frees_the_dock(
    make_napari_viewer, qtbot, monkeypatch, tmp_path
):
    from napari_gfn.network import GFN, save_model

    path = save_model(GFN(pretrained=False), tmp_path / "model.pt")

    def broken_install() -> None:
        raise RuntimeError("operator torchvision::nms does not exist")

    monkeypatch.setattr(engine_task, "_load_the_engine", broken_install)
    source = _dock(make_napari_viewer(), "Source model")
    seen = len(notification_manager.records)
    source.open_model(path)
    qtbot.waitUntil(lambda: source.open_button.enabled)
    messages = _messages_since(seen)
    assert any("torchvision::nms" in message for message in messages), messages
    assert source.card.value == "No model chosen."
