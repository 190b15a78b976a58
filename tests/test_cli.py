"""The `napari-gfn` command line: evaluate, resume after a kill, clear errors, open, export, the demo."""

import argparse
import errno
import fcntl
import importlib.metadata
import json
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import termios
import time
import warnings
from dataclasses import fields
from functools import partial

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import torch
from PIL import ExifTags, Image, ImageCms

from napari_gfn import cli
from napari_gfn._atomic import stops_held
from napari_gfn.cli import _HungUp, _label_config, _TerminalReport, _Terminated, build_parser, main
from napari_gfn.config import SETTING_HELP, SETTING_LABELS, RunConfig
from napari_gfn.demo import _demo_config, show_demo
from napari_gfn.network import missing_imagenet_weights, read_model_card
from napari_gfn.run_lock import RunLock
from napari_gfn.run_window import read_run
from napari_gfn.store import FINISHED, RunFolder

FAST = ["--image-size", "64", "--epochs", "1", "--seed-epochs", "2", "--min-steps", "8", "--area-min", "0"]


def test_evaluate_matches_a_hand_computation(tmp_path, capsys):
    store = RunFolder(tmp_path / "run")
    store.create(RunConfig())
    gt, ignore = tmp_path / "gt", tmp_path / "ignore"
    gt.mkdir()
    ignore.mkdir()
    truth_a = np.array([[1, 1, 0, 0]] * 4, dtype=bool)  # 8 object pixels
    truth_b = np.zeros((4, 4), dtype=bool)
    iio.imwrite(gt / "a.png", np.where(truth_a, 255, 0).astype(np.uint8))
    iio.imwrite(gt / "b.png", np.where(truth_b, 255, 0).astype(np.uint8))
    left_out = np.zeros((4, 4), np.uint8)
    left_out[3] = 255  # the last row of photo a is not scored
    iio.imwrite(ignore / "a.png", left_out)
    assert main(["evaluate", str(tmp_path / "run"), "--gt", str(gt), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"iterations": []}
    assert "has no finished iteration yet" in captured.err
    # Iteration 0: a is predicted as its first column only; b gets 2 false object pixels.
    pred_a0 = np.zeros((4, 4), dtype=bool)
    pred_a0[:, 0] = True
    pred_b0 = np.zeros((4, 4), dtype=bool)
    pred_b0[0, :2] = True
    store.write_mask(0, "a", pred_a0)
    store.write_mask(0, "b", pred_b0)
    store.finish_iteration({"iteration": 0})
    store.write_mask(1, "a", truth_a)
    store.write_mask(1, "b", truth_b)
    store.finish_iteration({"iteration": 1})

    # By hand, rows 0-2 of a only: fg 3/6, bg 6/9; b: fg union 2, intersection 0 -> 0; bg 14/16.
    fg_0 = (3 / 6 + 0.0) / 2
    miou_0 = ((3 / 6 + 6 / 9) / 2 + (0.0 + 14 / 16) / 2) / 2
    assert main(["evaluate", str(tmp_path / "run"), "--gt", str(gt), "--ignore", str(ignore), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["iterations"]
    assert [row["iteration"] for row in rows] == [0, 1]
    assert rows[0]["fg_iou"] == pytest.approx(fg_0)
    assert rows[0]["miou"] == pytest.approx(miou_0)
    # Iteration 1 is perfect; b has no object, so its fg IoU is 1 by convention (empty union).
    assert rows[1]["fg_iou"] == pytest.approx(1.0)
    assert rows[1]["miou"] == pytest.approx(1.0)
    # The same truth as 0/1 label images (napari's Labels, the Export dock's TIFFs) scores the same.
    labels = tmp_path / "gt-labels"
    labels.mkdir()
    iio.imwrite(labels / "a.tif", truth_a.astype(np.uint8))
    iio.imwrite(labels / "b.tif", truth_b.astype(np.uint8))
    assert main(["evaluate", str(tmp_path / "run"), "--gt", str(labels), "--ignore", str(ignore), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["iterations"] == rows
    # A mask file cut short (a run copied from a server) is named; the iteration is scored on the others.
    cut = store.mask_path(0, "b")
    cut.write_bytes(cut.read_bytes()[:30])
    assert main(["evaluate", str(tmp_path / "run"), "--gt", str(gt), "--ignore", str(ignore), "--json"]) == 0
    captured = capsys.readouterr()
    assert f"warning: not scored: {cut}: cannot be read as a mask" in captured.err
    first = json.loads(captured.out)["iterations"][0]
    assert (first["images"], first["fg_iou"]) == (1, pytest.approx(3 / 6))


def test_photos_without_ground_truth_are_named_in_one_warning(tmp_path, capsys):
    """Often only a few photos of a set have a true mask: the others are not scored, and said so once."""
    store = RunFolder(tmp_path / "run")
    store.create(RunConfig())
    mask = np.eye(4, dtype=bool)
    for stem in "abcde":
        store.write_mask(0, stem, mask)
    store.finish_iteration({"iteration": 0})
    (tmp_path / "gt").mkdir()
    iio.imwrite(tmp_path / "gt" / "c.png", np.where(mask, 255, 0).astype(np.uint8))
    assert main(["evaluate", str(tmp_path / "run"), "--gt", str(tmp_path / "gt"), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["iterations"][0]["images"] == 1
    warnings = [line for line in captured.err.splitlines() if "ground-truth" in line]
    assert warnings == [f"warning: not scored: 4 photos have no ground-truth mask in {tmp_path / 'gt'} (a, b, d, ...)"]
    # Masks all named otherwise: the warning shows how masks are found, and what the folder holds.
    # Then nothing is scored, which is an error: a script must not take the blanks for scores.
    (tmp_path / "gt" / "c.png").rename(tmp_path / "gt" / "c_mask.png")
    assert main(["evaluate", str(tmp_path / "run"), "--gt", str(tmp_path / "gt")]) == 1
    captured = capsys.readouterr()
    assert (
        "warning: not scored: 5 photos have no ground-truth mask in "
        f"{tmp_path / 'gt'} (a, b, c, ...); a photo's mask is found by the photo's name (IMG_1.jpg: IMG_1.png), "
        "and this folder holds c_mask.png, ..."
    ) in captured.err
    assert f"napari-gfn: error: no photo of {tmp_path / 'run'} was scored against {tmp_path / 'gt'}" in captured.err
    assert captured.out == ""
    assert main(["evaluate", str(tmp_path / "run"), "--gt", str(tmp_path / "gt"), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["iterations"][0]["images"] == 0
    # The photos given for their masks: one warning for them all, which asks, as nothing was scored.
    photos = tmp_path / "photos"
    photos.mkdir()
    for stem in "abcde":
        iio.imwrite(photos / f"{stem}.png", np.random.default_rng(0).integers(0, 256, (4, 4, 3), np.uint8))
    assert main(["evaluate", str(tmp_path / "run"), "--gt", str(photos)]) == 1
    assert _not_scored(capsys.readouterr().err) == [
        f"warning: not scored: 5 files in {photos} (a.png, b.png, c.png, ...) are colour pictures, not masks (a mask "
        f"is grey: 0/255, or 0/1 labels); is {photos} the photos rather than their masks?"
    ]
    iio.imwrite(photos / "e.png", np.where(mask, 255, 0).astype(np.uint8))  # one true mask among them
    assert main(["evaluate", str(tmp_path / "run"), "--gt", str(photos)]) == 0
    assert _not_scored(capsys.readouterr().err) == [
        f"warning: not scored: 4 files in {photos} (a.png, b.png, c.png, ...) are colour pictures, not masks (a mask "
        "is grey: 0/255, or 0/1 labels)"
    ]


def _not_scored(said: str) -> list[str]:
    return [line for line in said.splitlines() if line.startswith("warning: not scored")]


def test_commands_that_train_nothing_leave_torch_unloaded(tmp_path):
    """Commands that train nothing answer at once: torch takes seconds to load; only label and train-source use it."""
    RunFolder(tmp_path / "run").create(RunConfig())
    commands = [
        ["--help"],
        ["--version"],
        ["evaluate", str(tmp_path / "run"), "--gt", str(tmp_path)],
        ["open", str(tmp_path)],
        ["export", str(tmp_path / "run"), str(tmp_path / "out")],
    ]
    check = (
        "import sys\nfrom napari_gfn.cli import main\n"
        "try: main({})\nexcept SystemExit: pass\nprint('torch' in sys.modules)"
    )
    for argv in commands:
        ran = subprocess.run([sys.executable, "-c", check.format(argv)], capture_output=True, text=True, timeout=120)
        assert ran.stdout.splitlines()[-1] == "False", (argv, ran.stdout, ran.stderr)


def test_version_is_the_installed_packages(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out == f"napari-gfn {importlib.metadata.version('napari-gfn')}\n"


def _label_command(images, out, *extra):
    return [sys.executable, "-m", "napari_gfn", "label", str(images), "--out", str(out), *FAST, *extra]


def _wait_for_iterations(store, count, process, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(store.finished_iterations()) >= count:
            return
        if process.poll() is not None:
            raise AssertionError(f"run ended early: {process.stderr.read()}")
        time.sleep(0.2)
    raise AssertionError("run too slow")


@pytest.mark.slow
def test_resume_after_sigkill_completes_and_keeps_finished_iterations(tiny_folder, tmp_path):
    out = tmp_path / "run"
    store = RunFolder(out)
    process = subprocess.Popen(
        # Ground truth only scores here; it also turns off the early stop on converged masks.
        _label_command(
            tiny_folder / "images",
            out,
            "--iterations",
            "3",
            "--gt",
            str(tiny_folder / "masks"),
            "--upsample-radius",
            "3",
            "--grabcut-edge-band",
            "1",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_iterations(store, 2, process)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    finished = store.finished_iterations()
    assert finished[:2] == [0, 1]
    assert store.how_it_ended() is None  # killed outright, a run's log looks as if it were still working,
    assert RunLock(out).holder_is_gone()  # but its lock, which the system let go, tells
    kept = {p: p.read_bytes() for k in finished for p in (out / f"iter_{k:02d}" / "masks").glob("*.png")}
    shutil.rmtree(out / "cache")  # documented as safe to delete: resume rebuilds it from the run folder

    resumed = subprocess.run(
        _label_command(tiny_folder / "images", out, "--iterations", "3", "--resume"),  # settings come from run.json
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "not used" not in resumed.stderr  # the flags given again are the run's own
    assert store.finished_iterations() == [0, 1, 2, 3]
    assert store.how_it_ended() == "finished with iteration 3"
    assert (store.read_config().upsample_radius, store.read_config().grabcut_edge_band) == (3, 1)
    stems = sorted(p.stem for p in (tiny_folder / "images").glob("*.png"))
    for k in range(4):
        assert sorted(p.stem for p in (out / f"iter_{k:02d}" / "masks").glob("*.png")) == stems
        assert all(store.read_mask(k, stem).shape == (64, 64) for stem in stems)
    assert all(store.model_path(k).is_file() for k in (1, 2, 3))
    assert all(path.read_bytes() == data for path, data in kept.items())
    assert not list(out.rglob("*.tmp"))


@pytest.mark.parametrize(
    ("stop", "status", "said"), [(KeyboardInterrupt, 130, "interrupted"), (_Terminated, 143, "terminated")]
)
def test_a_stop_whose_unwinding_breaks_a_librarys_clean_up_is_still_said_as_a_stop(
    monkeypatch, capsys, tmp_path, stop, status, said
):
    def evaluate(args):
        try:
            raise stop
        finally:
            raise AttributeError("'PillowPlugin' object has no attribute 'images_to_write'")  # as imageio's did

    monkeypatch.setattr(cli, "_evaluate", evaluate)
    assert main(["evaluate", str(tmp_path), "--gt", str(tmp_path)]) == status
    assert capsys.readouterr().err.startswith(f"napari-gfn: {said}")


# A command whose stop signal lands at a chosen moment: right after the method named is first done in the thread
# where Python runs a signal's handler.
_STOPPED_AFTER = """
import signal
import sys
import threading
from {module} import {owner}
from napari_gfn.cli import main

# As in a terminal: a shell's background job (CI's, say) ignores Ctrl-C, and its children inherit that.
signal.signal(signal.SIGINT, signal.default_int_handler)
done = {owner}.{method}
sent = []
def stopped(*args, **kwargs):
    done(*args, **kwargs)
    if threading.current_thread() is threading.main_thread() and not sent:
        sent.append(signal.{signal})
        signal.raise_signal(signal.{signal})
{owner}.{method} = stopped
sys.exit(main(sys.argv[1:]))
"""


def _stopped_after(module, owner, method, stop, status, command) -> str:
    """The stderr of a command (its arguments after `napari-gfn`) stopped so, once it has exited with the stop's
    status."""
    script = _STOPPED_AFTER.format(module=module, owner=owner, method=method, signal=stop.name)
    stopped = subprocess.run([sys.executable, "-c", script, *command], capture_output=True, text=True, timeout=300)
    assert stopped.returncode == status, stopped.stderr
    return stopped.stderr


def _label_stopped_after(module, owner, method, stop, status, images, out) -> str:
    return _stopped_after(module, owner, method, stop, status, _label_command(images, out)[3:])


_STOPS = [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]


@pytest.mark.parametrize(("stop", "status", "said"), _STOPS)
@pytest.mark.parametrize(
    "method",
    [
        # Stopped before it has its list of images to write, imageio's Pillow plugin fails in its clean-up when
        # freed: CI once saw that failure printed below the run's last line.
        "__init__",
        # Python cannot raise from a __del__: it prints the stop and drops it, and the run went on to its end.
        "__del__",
    ],
)
def test_a_stop_that_lands_inside_a_librarys_object_stops_the_run_and_is_said_last(
    tiny_folder, tmp_path, method, stop, status, said
):
    store = RunFolder(tmp_path / "run")
    error = _label_stopped_after(
        "imageio.core.v3_plugin_api", "PluginV3", method, stop, status, tiny_folder / "images", store.root
    )
    assert error.strip().splitlines()[-1].startswith(f"napari-gfn: {said}")
    assert "Exception ignored" not in error
    assert store.how_it_ended().startswith(said)


@pytest.mark.parametrize(("stop", "status", "said"), _STOPS)
def test_a_stop_just_as_an_iteration_is_recorded_waits_for_its_log_line(tiny_folder, tmp_path, stop, status, said):
    store = RunFolder(tmp_path / "run")
    error = _label_stopped_after(
        "napari_gfn.store", "RunFolder", "finish_iteration", stop, status, tiny_folder / "images", store.root
    )
    assert error.strip().splitlines()[-1].startswith(f"napari-gfn: {said}; iteration 0 is kept in")
    assert store.finished_iterations() == [0]
    assert " info: iteration 0: 8 masks, " in store.log_path.read_text()
    assert store.how_it_ended().startswith(said)


@pytest.fixture
def ctrl_c_as_in_a_terminal():
    """Ctrl-C raises KeyboardInterrupt, as in a terminal; a shell's background job (CI's, say) ignores it."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def hang_up_as_in_a_terminal():
    """A hang-up stops the process, as in a terminal; one started under nohup ignores it."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGHUP, previous)


def test_stops_held_off_writes_that_go_together_are_let_through_after_them(
    ctrl_c_as_in_a_terminal, hang_up_as_in_a_terminal
):
    written = []

    def write_together(stop):
        with stops_held():
            signal.raise_signal(stop)
            written.append(f"record before {stop.name}")
            written.append(f"log line before {stop.name}")

    stops = [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, _Terminated), (signal.SIGHUP, _HungUp)]
    with cli._headless_stops():
        handlers = [signal.getsignal(stop) for stop, _ in stops]
        for stop, raised in stops:
            with pytest.raises(raised):
                write_together(stop)
            assert [signal.getsignal(stop) for stop, _ in stops] == handlers
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    assert written == [f"{part} before {name}" for name in names for part in ("record", "log line")]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stop", "status", "said", "logged"),
    [
        (signal.SIGINT, 130, "interrupted", "interrupted (Ctrl-C)"),
        # As a job scheduler stops a run at its time limit: the log's end lets napari following the run see it.
        (signal.SIGTERM, 143, "terminated", "terminated (SIGTERM: a job's time limit, or a kill, say)"),
    ],
)
def test_ctrl_c_or_sigterm_stops_a_run_keeping_its_finished_iterations_and_its_log_says_so(
    tiny_folder, tmp_path, capsys, stop, status, said, logged
):
    out = tmp_path / "run"
    store = RunFolder(out)
    process = subprocess.Popen(
        _label_command(tiny_folder / "images", out, "--iterations", "50", "--gt", str(tiny_folder / "masks")),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background job ignores Ctrl-C, and its children inherit that: the run must see it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        _wait_for_iterations(store, 1, process)
        # While it runs, a second writer is refused: it would discard the round being written.
        assert main(["label", str(tiny_folder / "images"), "--out", str(out), "--resume"]) == 1
        assert capsys.readouterr().err.startswith(
            f"napari-gfn: error: {out} is being written by process {process.pid} on {socket.gethostname()} (since "
        )
        assert not RunLock(out).holder_is_gone()
        process.send_signal(stop)
        _, error = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == status
    finished = store.finished_iterations()
    assert 1 <= len(finished) < 51
    assert error.strip().splitlines()[-1].startswith(f"napari-gfn: {said}; iteration")
    assert error.strip().endswith(f"kept in {out} (continue with --resume)")
    log = store.log_path.read_text().splitlines()
    assert log[-1].endswith(f" error: {logged}")
    assert store.how_it_ended() == logged
    assert sum(" info: iteration " in line and " masks, " in line for line in log) == len(finished)


def _started_in_a_terminal(command, cwd, hung_up: bool):
    """``command`` started in a terminal of its own (a pseudo-terminal that controls it, as an SSH session's
    does), and the terminal's other end: the test closes it as a dropped connection closes the session's.
    The kernel then hangs the command up, unless ``hung_up`` is False: as a shell leaves a job put in the
    background alone when it ends (bash does, unless told to hang its jobs up)."""
    other_end, terminal = os.openpty()
    process = subprocess.Popen(
        command,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=partial(_take_the_terminal, signal.SIG_DFL if hung_up else signal.SIG_IGN),
    )
    os.close(terminal)
    return process, other_end


def _take_the_terminal(on_hang_up) -> None:
    signal.signal(signal.SIGHUP, on_hang_up)  # whatever the tests run under
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _shown_until(done, terminal, process, timeout=300) -> bytes:
    """What the command shows in its terminal until ``done()``; read as it comes, as a full terminal blocks it."""
    shown, deadline = b"", time.monotonic() + timeout
    while not done():
        assert process.poll() is None, f"ended early: {shown.decode(errors='replace')}"
        assert time.monotonic() < deadline, "run too slow"
        if select.select([terminal], [], [], 0.2)[0]:
            try:
                shown += os.read(terminal, 65536)
            except OSError:  # the command closed its end (nohup does): nothing more comes
                time.sleep(0.2)
    return shown


@pytest.mark.slow
@pytest.mark.parametrize("started", ["in the terminal", "under nohup", "in the background"])
def test_a_terminal_that_closes_stops_a_run_saying_why_in_its_log_unless_the_run_is_not_hung_up(
    tiny_folder, tmp_path, started
):
    store = RunFolder(tmp_path / "run")
    in_the_terminal = started == "in the terminal"
    command = _label_command(tiny_folder / "images", store.root, "--iterations", "50" if in_the_terminal else "3")
    if started == "under nohup":
        command = ["nohup", *command]  # which ignores the hang-up, and sends the output to a file
    process, terminal = _started_in_a_terminal(command, tmp_path, hung_up=started != "in the background")
    try:
        _shown_until(lambda: store.finished_iterations(), terminal, process)
        os.close(terminal)  # the connection drops: the kernel hangs up the run's terminal
        process.wait(timeout=120)
    finally:
        process.kill()
    if not in_the_terminal:  # a run in the background writes its lines on to a terminal that is gone
        assert process.returncode == 0
        assert store.how_it_ended().startswith(FINISHED)
        return
    assert process.returncode == 129
    assert store.how_it_ended() == cli._HUNG_UP  # opened later, the run says why it stopped
    assert "start it with nohup" in store.how_it_ended()
    assert 1 <= len(store.finished_iterations()) < 51


def test_a_gpu_out_of_memory_is_said_in_one_line_with_what_to_do_and_what_is_kept(
    tiny_folder, tmp_path, capsys, monkeypatch
):
    # No GPU here: round 1's first training step fails as a GPU that other processes fill fails it.
    said = "CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of 3.81 GiB"

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError(said)

    monkeypatch.setattr(torch.optim.SGD, "step", out_of_memory)
    store = RunFolder(tmp_path / "run")
    command = ["label", str(tiny_folder / "images"), "--out", str(store.root), *FAST, "--seed", "grabcut"]
    assert main([*command, "--iterations", "1"]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith(f"napari-gfn: error: out of memory: {said}. To need less memory: a smaller image ")
    assert error[-1].endswith(f"; iteration 0 is kept in {store.root} (continue with --resume)")
    assert store.how_it_ended() == f"OutOfMemoryError: {said}"


@pytest.mark.slow
def test_sigterm_stops_a_source_training_with_words_and_no_model(tiny_folder, tmp_path):
    model = tmp_path / "source.pt"
    images, masks = tiny_folder / "images", tiny_folder / "masks"
    command = [sys.executable, "-m", "napari_gfn", "train-source", str(images), str(masks), "--out", str(model)]
    process = subprocess.Popen(
        [*command, "--image-size", "64", "--min-steps", "100000"], stderr=subprocess.PIPE, text=True
    )
    try:
        said = []
        while not any("training a source model" in line for line in said):
            said.append(process.stderr.readline())
            assert said[-1], "train-source ended before it trained"
        process.send_signal(signal.SIGTERM)
        _, error = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143
    assert error.strip().splitlines()[-1] == f"napari-gfn: terminated; no model was saved to {model}"
    assert not model.exists()


@pytest.mark.parametrize(("stop", "status", "said"), _STOPS)
def test_a_stop_just_after_the_source_model_is_saved_says_it_was_saved(tiny_folder, tmp_path, stop, status, said):
    model = tmp_path / "source.pt"
    command = ["train-source", str(tiny_folder / "images"), str(tiny_folder / "masks"), "--out", str(model)]
    fast = ["--image-size", "64", "--epochs", "1", "--min-steps", "8"]
    error = _stopped_after("napari_gfn.engine", "source", "save_model", stop, status, [*command, *fast])
    assert error.strip().splitlines()[-1] == f"napari-gfn: {said}; the model had been saved to {model}"
    assert read_model_card(model)["meta"]["photos"] == len(list((tiny_folder / "images").iterdir()))


def test_a_decoders_warning_names_its_file_once_each_and_a_backbone_without_weights_is_said_and_logged(
    tiny_folder, tmp_path, capsys, monkeypatch, save_with_a_damaged_exif_tag, empty_torch_cache
):
    photos = shutil.copytree(tiny_folder / "images", tmp_path / "photos")
    damaged = [save_with_a_damaged_exif_tag(photo) for photo in sorted(photos.glob("*.png"))[:2]]
    run, resnet = tmp_path / "run", ["--backbone", "resnet18", "--seed", "grabcut"]
    assert main(["label", str(photos), "--out", str(tmp_path / "seed alone"), *FAST, "--iterations", "0", *resnet]) == 0
    assert "no ImageNet weights" not in capsys.readouterr().err  # a GrabCut seed alone makes no network
    assert main(["label", str(photos), "--out", str(run), *FAST, "--iterations", "1", *resnet]) == 0
    error = capsys.readouterr().err.splitlines()
    no_weights = [line for line in error if "no ImageNet weights" in line]
    assert no_weights == [f"warning: {missing_imagenet_weights('resnet18')}"]
    logged = RunFolder(run).log_path.read_text().splitlines()  # opened later, the run says so
    (said_at,) = [index for index, line in enumerate(logged) if line.endswith(f" warning: {no_weights[0][9:]}")]
    (seed_at,) = [index for index, line in enumerate(logged) if " iteration 0: " in line]
    assert said_at < seed_at  # said as the run starts, not once the seed is done and its first round starts
    said = [line for line in error if "Tag data" in line]
    # Each photo is decoded once for its working copy and once more each iteration, its masks made at full size;
    # photos are decoded several at a time.
    assert sorted(said) == [f"warning: {photo}: Tag data larger than file. Skipping tag 270" for photo in damaged]
    logged = [line for line in RunFolder(run).log_path.read_text().splitlines() if "Tag data" in line]
    assert sorted(line.partition(" warning: ")[2] for line in logged) == [line[9:] for line in sorted(said)]
    assert main(["label", str(photos), "--out", str(run), "--resume", "--iterations", "2"]) == 0
    assert "no ImageNet weights" not in capsys.readouterr().err  # round 2 fine-tunes round 1's network

    def warn_three_times(args):
        for _ in range(3):
            warnings.warn("a library's warning about no file", UserWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(cli, "_evaluate", warn_three_times)
    # Shown by Python's own display (which pytest.warns records), and once, as Python's "default" rule would.
    with pytest.warns(UserWarning, match="about no file") as shown:
        status = main(["evaluate", str(run), "--gt", str(tiny_folder / "masks")])
    assert status == 0
    assert [str(warning.message) for warning in shown] == ["a library's warning about no file"]


def test_resume_without_iterations_ends_where_the_run_ends_and_says_how_to_go_further(tiny_folder, tmp_path, capsys):
    run = tmp_path / "run"
    label = ["label", str(tiny_folder / "images"), "--out", str(run), *FAST]
    assert main([*label, "--iterations", "0"]) == 0
    assert main([*label, "--resume"]) == 0  # not to the default count of rounds, as it did
    assert RunFolder(run).finished_iterations() == [0]
    said = "info: iteration 0 was the run's last: to refine further, resume with iterations 1 (--iterations 1) or more"
    out, error = capsys.readouterr()
    assert said in error.splitlines()
    assert f"Masks are in {run.resolve()}/iter_NN/masks (0 iterations this run)\n" in out
    assert not [line for line in error.splitlines() if "not trained on" in line]
    stem = sorted(RunFolder(run).masks_of(0))[0].stem
    RunFolder(run).write_draft(stem, ~RunFolder(run).read_mask(0, stem))  # painted in napari, never trusted
    assert main([*label, "--resume", "--iterations", "1"]) == 0
    assert RunFolder(run).finished_iterations() == [0, 1]
    out, error = capsys.readouterr()
    assert not [line for line in error.splitlines() if "was the run's last" in line]
    assert (
        f"warning: not trained on: the paint not trusted on the masks of 1 photo ({stem}): to have the rounds to come "
        "train on a correction, trust its layer in napari (napari-gfn open RUN, then Trust selected Labels layer)"
    ) in error.splitlines()
    assert f"Masks are in {run.resolve()}/iter_NN/masks (1 iteration this run)\n" in out


def test_a_resume_names_the_photos_added_and_gone_since_and_labels_those_it_has_now(tiny_folder, tmp_path, capsys):
    photos, run = shutil.copytree(tiny_folder / "images", tmp_path / "photos"), tmp_path / "run"
    label = ["label", str(photos), "--out", str(run), *FAST, "--seed", "grabcut"]
    assert main([*label, "--iterations", "0"]) == 0
    first, *others = sorted(photos.iterdir())
    first.rename(photos / "added later.png")
    (photos / "unreadable.png").write_bytes(b"not a photo")
    (photos / "also added.png").write_bytes(others[0].read_bytes())
    capsys.readouterr()
    assert main([*label, "--iterations", "1", "--resume"]) == 0
    said = capsys.readouterr().err.splitlines()
    assert (
        "info: 3 photos without a mask of iteration 0 (added since, or not read then): added later, also added, "
        "unreadable; later iterations label them"
    ) in said
    assert (
        f"info: 1 photo of iteration 0 no longer among the run's photos: {first.stem}; their masks so far stay in "
        "the run folder, and later iterations go on without them"
    ) in said
    assert RunFolder(run).has_mask(0, first.stem)
    assert sorted(path.stem for path in RunFolder(run).masks_of(1)) == sorted(
        ["added later", "also added", *(path.stem for path in others)]
    )


def test_resume_names_the_settings_given_that_the_run_does_not_use(tiny_folder, tmp_path, capsys, monkeypatch):
    """A run keeps the settings it began with; flags given to --resume that differ are named, not silently dropped."""
    truth = tiny_folder / "masks"
    label = ["label", str(tiny_folder / "images"), "--out", str(tmp_path / "run"), *FAST, "--gt", str(truth)]
    assert main([*label, "--iterations", "0"]) == 0
    monkeypatch.chdir(tiny_folder)
    capsys.readouterr()
    # The same truth folder named another way, and a machine setting, are not named; a setting the run has not is,
    # its default value too.
    again = [*label[:-1], "masks", "--iterations", "0", "--workers", "2", "--epochs", "9", "--ignore", "masks"]
    default_area = str(RunConfig().area_min)
    assert main([*again, "--area-min", default_area, "--resume"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        f"warning: not used: --area-min {default_area}, --epochs 9, --ignore masks: --resume continues the run "
        "with its own settings (--area-min 0.0, --epochs 1, no --ignore); a new --out uses them; "
        f"to score this run against the masks given: napari-gfn evaluate {tmp_path / 'run'} --gt masks --ignore masks"
    ]


def test_a_new_run_names_the_settings_given_that_it_would_not_read(tmp_path, capsys):
    """A source model given without --seed transfer, say, is likelier a seed forgotten than a setting meant to
    change nothing. The warnings come before the run starts: here it stops at once, on a folder of no photos."""
    photos = tmp_path / "photos"
    photos.mkdir()

    def warnings_given(*flags: str) -> list[str]:
        assert main(["label", str(photos), "--out", str(tmp_path / "run"), *flags]) == 1
        return [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]

    assert warnings_given("--source-model", "m.pt", "--cam-epochs", "3", "--ignore", "ig") == [
        "warning: not read by this run of the otsu seed (--seed otsu): --source-model m.pt is for the transfer "
        "seed (--seed transfer); --cam-epochs 3 is for the cam seed (--seed cam); --ignore ig is for scoring "
        "against true masks (--gt), and none are given"
    ]
    assert warnings_given("--simple", "plain", "--simple-max-border", "0.5") == [
        "warning: not read by this run of the otsu seed (--seed otsu): --simple-max-border 0.5 is for simple "
        "photos chosen automatically (--simple auto), not given as a folder"
    ]
    default = RunConfig().seed_epochs  # given at its default value, it is still a choice made
    assert warnings_given("--seed", "grabcut", "--seed-epochs", str(default)) == [
        f"warning: not read by this run of the grabcut seed (--seed grabcut): --seed-epochs {default} is for the "
        "otsu seed (--seed otsu)"
    ]
    assert warnings_given("--seed", "transfer", "--source-model", "m.pt", "--gt", "t", "--ignore", "ig") == []
    assert warnings_given("--simple-threshold", "0.4", "--seed-epochs", "2") == []


def test_progress_written_to_a_log_file_reads_as_whole_lines(capsys):
    """Under nohup on a server stderr is a file: no carriage-return redraws, a line at the start and at the end,
    each with the whole run's time left."""
    from napari_gfn.engine import IterationResult, Progress

    events = [Progress("iter 1: train", done, 5, run_left_s=100.0 - done) for done in range(6)]
    events.append(IterationResult(1, {}, {"images": 5, "trusted": 4}, None, elapsed_s=3.0))
    _TerminalReport()(events)
    captured = capsys.readouterr()
    assert "\r" not in captured.err
    bar_lines = [line for line in captured.err.splitlines() if line.startswith("iter 1: train")]
    assert len(bar_lines) == 2, captured.err  # the five updates come within one 30 s interval
    assert "0/5" in bar_lines[0]
    assert bar_lines[0].endswith("whole run 01:40 left]")
    assert "5/5" in bar_lines[1]
    assert bar_lines[1].endswith("whole run 01:35 left]")
    assert captured.out == "iteration 1: 5 masks, 4 trusted, 3 s\n"


def test_every_label_flag_sets_the_run_setting_of_its_name():
    """`label` passes its flags to RunConfig by name, so a flag named otherwise would be dropped without a word."""
    label = next(action for action in build_parser()._actions if action.dest == "command").choices["label"]
    field_names = {field.name for field in fields(RunConfig)}
    flags = {action.dest for action in label._actions} - {"help", "resume"}
    assert flags <= field_names, f"flags of `label` that set nothing: {sorted(flags - field_names)}"
    argv = ["label", "photos", "--out", "run", "--area-max", "0.7", "--grabcut-edge-band", "1"]
    config = _label_config(build_parser().parse_args(argv))
    assert (config.images, config.out, config.area_max, config.grabcut_edge_band) == ("photos", "run", 0.7, 1)
    assert config.upsample_radius == RunConfig().upsample_radius
    ridge = _label_config(build_parser().parse_args([*argv, "--seed", "ridge", "--min-steps", "300"]))
    assert (ridge.upsample_radius, ridge.grabcut_edge_band, ridge.min_steps) == (4, 1, 300)  # unset: the seed's


def test_every_setting_the_dock_shows_is_a_label_flag():
    """Messages name a setting by its dock words and its flag, so a dock user's run can be repeated headless."""
    label = next(action for action in build_parser()._actions if action.dest == "command").choices["label"]
    flags = {action.dest for action in label._actions} - {"help", "resume", "images", "out"}
    assert set(SETTING_LABELS) <= set(SETTING_HELP) == flags


def test_every_option_with_a_default_says_it_in_its_help():
    commands = next(action for action in build_parser()._actions if action.dest == "command").choices
    silent = [
        f"{name} {action.option_strings[0]}"
        for name, command in commands.items()
        for action in command._actions
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS)
        if "%(default)s" not in (action.help or "")
    ]
    assert not silent, f"options whose help hides their default: {silent}"
    label_help = commands["label"].format_help()
    assert f"(default: {RunConfig().area_min})" in label_help
    assert "(default: efficientnet_lite0)" in commands["train-source"].format_help()


def test_cli_errors_name_the_problem(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["label", str(tmp_path / "empty"), "--out", str(tmp_path / "run")]) == 1
    assert "empty: the folder holds no photos" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # a refused folder leaves no run folder behind
    with pytest.raises(SystemExit):
        main(["label", str(tmp_path), "--out", str(tmp_path / "run"), "--backbone", "vgg"])
    assert "invalid choice: 'vgg'" in capsys.readouterr().err
    assert main(["label", str(tmp_path), "--out", str(tmp_path / "run"), "--mask-threshold", "1.5"]) == 1
    assert "mask threshold (--mask-threshold) must be between 0 and 1, got 1.5" in capsys.readouterr().err
    assert main(["label", str(tmp_path), "--out", str(tmp_path / "run"), "--upsample-radius", "0"]) == 1
    assert "sharpening radius (--upsample-radius) must be at least 1, got 0" in capsys.readouterr().err
    assert main(["label", str(tmp_path), "--out", str(tmp_path / "run"), "--grabcut-edge-band", "-1"]) == 1
    assert "GrabCut edge band (--grabcut-edge-band) must be at least 0, got -1" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nothing"), "--gt", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"napari-gfn: error: {tmp_path / 'nothing'}: no such folder\n"
    (tmp_path / "a file").touch()
    assert main(["evaluate", str(tmp_path / "a file"), "--gt", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"napari-gfn: error: {tmp_path / 'a file'} is a file, not a run folder\n"
    (tmp_path / "photos").mkdir()
    iio.imwrite(tmp_path / "photos" / "a.png", np.zeros((8, 8, 3), np.uint8))
    assert (
        main(["label", str(tmp_path / "photos"), "--out", str(tmp_path / "a file" / "run"), "--seed", "grabcut"]) == 1
    )
    unmakeable = (
        f"{tmp_path / 'a file' / 'run'}: the run cannot be written there ({tmp_path / 'a file'}: Not a directory)"
    )
    assert unmakeable in capsys.readouterr().err
    # Checked before the photos are listed (seconds for hundreds): it comes before a photo folder's own error.
    assert main(["label", str(tmp_path / "empty"), "--out", str(tmp_path / "a file" / "run")]) == 1
    assert unmakeable in capsys.readouterr().err


def test_a_disk_that_takes_no_more_stops_a_run_in_one_line_naming_the_file_and_keeps_what_it_finished(
    tiny_folder, tmp_path
):
    run, store = tmp_path / "run", RunFolder(tmp_path / "run")
    images = str(tiny_folder / "images")
    assert main(["label", images, "--out", str(run), "--seed", "grabcut", "--iterations", "0", *FAST]) == 0

    def as_on_a_full_disk():
        # A file size limit makes the kernel refuse the writes of this process alone, past 1 MB: the masks fit, the
        # model file does not. Ignored, its signal leaves the write to fail (EFBIG), as a full disk's does (ENOSPC).
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    resume = [sys.executable, "-m", "napari_gfn", "label", images, "--out", str(run), "--resume", "--iterations", "1"]
    stopped = subprocess.run(resume, capture_output=True, text=True, preexec_fn=as_on_a_full_disk, timeout=300)
    assert stopped.returncode == 1
    # torch's own error about file positions, raised as its writer closes, would stand in the disk's place.
    assert "Traceback" not in stopped.stderr
    said = f"[Errno {errno.EFBIG}] {os.strerror(errno.EFBIG)}: '{store.model_path(1)}'"
    assert stopped.stderr.strip().splitlines()[-1] == (
        f"napari-gfn: error: {said}; iteration 0 is kept in {run} (continue with --resume)"
    )
    assert store.log_path.read_text().splitlines()[-1].endswith(f" error: {said}")
    assert store.finished_iterations() == [0]
    assert not [path for path in run.rglob("*") if path.name.endswith(".tmp")]
    # With room made, the same resume goes on.
    assert main(resume[3:]) == 0
    assert store.finished_iterations() == [0, 1]


def test_label_says_how_to_open_its_run_and_open_refuses_what_it_cannot_show(
    tiny_folder, tmp_path, capsys, monkeypatch
):
    assert main(["open", str(tmp_path)]) == 1
    assert f"{tmp_path} is not a napari-gfn run folder" in capsys.readouterr().err
    run, photos = tmp_path / "a run", shutil.copytree(tiny_folder / "images", tmp_path / "photos")
    argv = ["label", str(photos), "--seed", "grabcut", "--iterations", "0", "--out", str(run)]
    assert main(argv) == 0
    assert f"See them in napari: napari-gfn open '{run}'" in capsys.readouterr().out
    assert main(["open", str(run / "iter_00" / "masks")]) == 1
    said = f"{run / 'iter_00' / 'masks'} is a folder inside the run {run}: give the run folder itself"
    assert said in capsys.readouterr().err
    assert main([*argv[:-1], str(run / "iter_00" / "masks"), "--resume"]) == 1
    assert capsys.readouterr().err.strip().endswith(said)  # not followed by "there is nothing to resume"
    assert main([*argv[:-1], str(run / "iter_00" / "new")]) == 1  # a new run there would go with the iteration
    assert f"{run / 'iter_00' / 'new'} is inside the run {run}, which may delete" in capsys.readouterr().err
    assert not (run / "iter_00" / "new").exists()
    # A system error (here a file where the run keeps its cache) is one line naming the file, and says what is kept.
    shutil.rmtree(run / "cache")
    (run / "cache").touch()
    assert main(["label", str(photos), "--seed", "grabcut", "--iterations", "1", "--out", str(run), "--resume"]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"napari-gfn: error: [Errno 20] Not a directory: '{run / 'cache'}")
    kept = f"; iteration 0 is kept in {run} (continue with --resume)"
    assert error.endswith(kept)
    reason = error.removeprefix("napari-gfn: error: ").removesuffix(kept)
    assert RunFolder(run).log_path.read_text().splitlines()[-1].endswith(f" error: {reason}")  # the run's log too
    (run / "cache").unlink()
    # --resume given a folder that is not a run (a home folder, by mistake) leaves everything in it alone.
    home = tmp_path / "home"
    (home / "iter_01").mkdir(parents=True)
    (home / "notes" / ".draft.txt.tmp").parent.mkdir()
    (home / "notes" / ".draft.txt.tmp").write_text("an editor's unsaved draft")
    assert main(["label", str(photos), "--seed", "grabcut", "--out", str(home), "--resume"]) == 1
    assert f"{home} is not a napari-gfn run folder (no run.json)" in capsys.readouterr().err
    assert (home / "iter_01").is_dir()
    assert (home / "notes" / ".draft.txt.tmp").is_file()
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["open", str(run)]) == 1
    assert "no display to open napari on" in capsys.readouterr().err
    assert main(["open", str(run), "--photos", str(home)]) == 1  # its own photos are still where they were
    said = capsys.readouterr().err
    assert f"warning: photos are read from {photos}, where this run's own photos are, not from {home}\n" in said
    moved = tmp_path / "photos moved away"
    shutil.move(photos, moved)
    assert main(["open", str(run)]) == 1
    assert f"cannot show run {run}: its photos cannot be read ({photos}: no such folder)" in capsys.readouterr().err
    # Given their new folder, the run reads its photos there; photos without a mask in the run are not its own.
    _, config, found = read_run(run, moved)
    assert (config.images, found.stems) == (str(moved), sorted(path.stem for path in moved.iterdir()))
    other = tmp_path / "other photos"
    other.mkdir()
    iio.imwrite(other / "x.png", np.zeros((8, 8, 3), np.uint8))
    assert main(["open", str(run), "--photos", str(other)]) == 1
    refused = f"{photos}: no such folder; {other}: none of its photos has a mask in this run"
    assert refused in capsys.readouterr().err


def test_cutouts_are_the_photos_transparent_but_for_the_object(tiny_folder, tmp_path, capsys):
    photos = tmp_path / "photos"
    shutil.copytree(tiny_folder / "images", photos)
    # A camera's photo, stored turned a quarter (EXIF orientation 6), with its date and GPS position.
    taken = sorted(photos.iterdir())[4]
    exif = Image.Exif()
    exif[ExifTags.Base.Make], exif[ExifTags.Base.Orientation] = "Canon", 6
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = "2026:05:01 10:00:00"
    exif.get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitudeRef] = "N"
    Image.open(taken).save(taken, exif=exif.tobytes())
    run = tmp_path / "run"
    assert main(["label", str(photos), "--seed", "grabcut", "--iterations", "0", "--out", str(run)]) == 0
    store = RunFolder(run)
    capsys.readouterr()
    assert main(["export", str(run), str(tmp_path / "cut"), "--format", "cutout"]) == 0
    said = capsys.readouterr()
    assert said.out == f"wrote 8 files to {tmp_path / 'cut'}\n"
    unscored = "the last, as the run holds no scores against true masks to choose the best by"
    assert f"info: exporting iteration 0, {unscored}\n" in said.err
    for photo in sorted(photos.iterdir()):
        cutout = iio.imread(tmp_path / "cut" / f"{photo.stem}.png")
        mask = store.read_mask(0, photo.stem)
        assert 0 < mask.mean() < 1
        upright = np.rot90(iio.imread(photo), k=-1) if photo == taken else iio.imread(photo)
        np.testing.assert_array_equal(cutout[..., :3], upright * mask[..., None])  # black where clear
        np.testing.assert_array_equal(cutout[..., 3], mask.astype(np.uint8) * 255)
    # The EXIF goes with the cut-out, but for its orientation: its pixels are upright already.
    with Image.open(tmp_path / "cut" / f"{taken.stem}.png") as cutout:
        kept = cutout.getexif()
    assert (kept[ExifTags.Base.Make], ExifTags.Base.Orientation in kept) == ("Canon", False)
    assert kept.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] == "2026:05:01 10:00:00"
    assert kept.get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitudeRef] == "N"
    # A photo's RGB colour profile (a phone's Display P3, say) goes with its cut-out; one of other colours does not.
    rgb_profile, lab_profile = (
        ImageCms.ImageCmsProfile(ImageCms.createProfile(kind)).tobytes() for kind in ("sRGB", "LAB")
    )
    with_rgb, with_lab = sorted(photos.iterdir())[2:4]
    for photo, profile in ((with_rgb, rgb_profile), (with_lab, lab_profile)):
        Image.open(photo).save(photo, icc_profile=profile)
    assert main(["export", str(run), str(tmp_path / "profiled"), "--format", "cutout"]) == 0
    assert capsys.readouterr().out == f"wrote 8 files to {tmp_path / 'profiled'}\n"
    for photo, kept in ((with_rgb, rgb_profile), (with_lab, None)):
        with Image.open(tmp_path / "profiled" / photo.name) as cutout:
            assert cutout.info.get("icc_profile") == kept, photo.name
    # A photo gone since the run, and one replaced by another size, are named; the others are cut.
    gone, resized = sorted(photos.iterdir())[:2]
    gone.unlink()
    iio.imwrite(resized, np.zeros((20, 30, 3), np.uint8))
    assert main(["export", str(run), str(tmp_path / "some"), "--format", "cutout"]) == 0
    said = capsys.readouterr()
    assert f"warning: not exported, as their photos are no longer in {photos}: {gone.stem} (1 in all)" in said.err
    assert f"{store.mask_path(0, resized.stem)}: mask is 64x64 but its photo is 30x20" in said.err
    assert said.out == f"wrote 6 files to {tmp_path / 'some'}\n"
    # Photos moved away: cut-outs are refused in words, as there is nothing to cut, and made with --photos.
    shutil.move(photos, tmp_path / "elsewhere")
    assert main(["export", str(run), str(tmp_path / "none"), "--format", "cutout"]) == 1
    assert "error: cut-outs are cut from the run's photos, which are not found: " in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
    found = ["--photos", str(tmp_path / "elsewhere")]
    assert main(["export", str(run), str(tmp_path / "found"), "--format", "cutout", *found]) == 0
    assert capsys.readouterr().out == f"wrote 6 files to {tmp_path / 'found'}\n"


def test_export_never_writes_over_a_photo(tiny_folder, tmp_path, capsys):
    photos = tmp_path / "photos"
    shutil.copytree(tiny_folder / "images", photos)
    grey, colour = sorted(photos.iterdir())[:2]
    iio.imwrite(grey, iio.imread(grey).mean(axis=2).astype(np.uint8))  # the first a grey photo
    run = tmp_path / "run"
    assert main(["label", str(photos), "--seed", "grabcut", "--iterations", "0", "--out", str(run)]) == 0
    moved = photos.rename(tmp_path / "moved")  # PNG photos, named as their masks are
    before = {path.name: path.read_bytes() for path in moved.iterdir()}
    capsys.readouterr()
    # The run's photos where they are now, as given, even grey; or colour images, when the run's are not found.
    cutouts = ["--format", "cutout", "--photos", str(moved)]
    for given, named in (([], colour), (["--photos", str(moved)], grey), (cutouts, grey)):
        assert main(["export", str(run), str(moved), *given]) == 1
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f"napari-gfn: error: {moved} holds photos named as the masks are ({named.name}): masks exported there "
            "would overwrite them; choose another folder"
        )
    assert {path.name: path.read_bytes() for path in moved.iterdir()} == before
    # Masks or cut-outs written before are written over.
    for fmt in ("png", "cutout", "png"):
        assert main(["export", str(run), str(tmp_path / "out"), "--format", fmt, "--photos", str(moved)]) == 0
    assert f"wrote {len(before)} files to {tmp_path / 'out'}" in capsys.readouterr().out


def test_export_writes_the_masks_sorted_as_the_photos_are_with_corrections(tiny_folder, tmp_path, capsys):
    species = tmp_path / "species"
    photos = sorted((tiny_folder / "images").iterdir())
    folder_of = {photo.stem: "orchis/site a" if index % 2 else "ophrys" for index, photo in enumerate(photos)}
    for photo in photos:
        (species / folder_of[photo.stem]).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, species / folder_of[photo.stem])
    run = species / "run"
    truth = ["--gt", str(tiny_folder / "masks")]
    assert main(["label", str(species), "--seed", "grabcut", "--iterations", "0", "--out", str(run), *truth]) == 0
    store = RunFolder(run)
    corrected = photos[1].stem
    correction = ~store.read_mask(0, corrected)
    store.write_fixed_mask(corrected, correction)
    expected = {stem: store.read_mask(0, stem) for stem in folder_of} | {corrected: correction}
    capsys.readouterr()

    assert main(["export", str(run), str(tmp_path / "png")]) == 0
    sorted_as_photos = f"wrote 8 files to {tmp_path / 'png'}, sorted into 2 subfolders as the photos are\n"
    said = capsys.readouterr()
    assert said.out == sorted_as_photos
    miou = store.metrics()[0]["miou"]
    assert f"info: exporting iteration 0, the best against the true masks (mIoU {miou:.3f})\n" in said.err
    for stem, mask in expected.items():
        written = iio.imread(tmp_path / "png" / folder_of[stem] / f"{stem}.png")
        np.testing.assert_array_equal(written, mask.astype(np.uint8) * 255)
    store.write_draft(photos[2].stem, ~store.read_mask(0, photos[2].stem))  # paint in napari, never trusted
    store.write_draft(corrected, ~correction)  # and paint on a trusted correction
    assert main(["export", str(run), str(tmp_path / "tif"), "--format", "tif", "--iteration", "0"]) == 0
    assert capsys.readouterr().err.splitlines()[0] == (
        f"warning: not exported: the paint not trusted on the masks of 2 photos ({corrected}, {photos[2].stem}), "
        f"kept in {run / 'drafts'}: to export a correction, trust its layer in napari (Trust selected Labels "
        "layer), then export again"
    )
    for stem, mask in expected.items():
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "tif" / folder_of[stem] / f"{stem}.tif"), mask)

    assert main(["export", str(run), str(tmp_path / "none"), "--iteration", "1"]) == 1
    assert f"{run}: iteration 1 is not finished; finished: [0]" in capsys.readouterr().err
    assert main(["export", str(species), str(tmp_path / "none")]) == 1  # the photos' folder given for the run's
    assert capsys.readouterr().err == f"napari-gfn: error: {species} is not a napari-gfn run folder (no run.json)\n"
    assert main(["export", str(run), str(run / "iter_00" / "masks")]) == 1  # the run's own masks would change
    assert f"{run / 'iter_00' / 'masks'} is inside the run folder {run}: " in capsys.readouterr().err
    np.testing.assert_array_equal(store.read_mask(0, corrected), ~correction)
    (tmp_path / "a-file").write_text("")
    assert main(["export", str(run), str(tmp_path / "a-file")]) == 1
    assert f"{tmp_path / 'a-file'} is a file, not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", str(run), str(tmp_path / "none"), "--iteration", "first"])
    assert "'first': give best, last or an iteration number" in capsys.readouterr().err
    # A photo deleted since the run: its mask is still written, into the folder itself, and named.
    gone = photos[1].stem
    (species / folder_of[gone] / f"{gone}.png").unlink()
    assert main(["export", str(run), str(tmp_path / "one gone")]) == 0
    one_gone = f"masks written into {tmp_path / 'one gone'} itself, as their photos are no longer in {species}: "
    assert f"warning: {one_gone}{gone} (1 in all)" in capsys.readouterr().err
    np.testing.assert_array_equal(
        iio.imread(tmp_path / "one gone" / f"{gone}.png"), expected[gone].astype(np.uint8) * 255
    )
    assert len(list((tmp_path / "one gone").rglob("*.png"))) == 8
    # Photos moved away since the run: every mask is written, and the message says why none is sorted.
    (tmp_path / "elsewhere").mkdir()
    for folder in ("ophrys", "orchis"):
        shutil.move(species / folder, tmp_path / "elsewhere")
    assert main(["export", str(run), str(tmp_path / "flat")]) == 0
    outcome = capsys.readouterr()
    not_sorted = f"warning: every mask is written into {tmp_path / 'flat'} itself, not sorted as the photos are: "
    assert f"{not_sorted}{species}: the folder holds no photos (" in outcome.err
    assert outcome.out == f"wrote 8 files to {tmp_path / 'flat'}\n"
    assert sorted(path.stem for path in (tmp_path / "flat").iterdir()) == sorted(expected)
    assert main(["export", str(run), str(tmp_path / "found"), "--photos", str(tmp_path / "elsewhere")]) == 0
    assert (
        capsys.readouterr().out
        == f"wrote 8 files to {tmp_path / 'found'}, sorted into 2 subfolders as the photos are\n"
    )
    assert (tmp_path / "found" / folder_of[photos[0].stem] / f"{photos[0].stem}.png").is_file()
    # Photos given while the run's own are found: the run's own sort the masks, and the folder given is named.
    for folder in ("ophrys", "orchis"):
        shutil.move(tmp_path / "elsewhere" / folder, species)
    assert main(["export", str(run), str(tmp_path / "own"), "--photos", str(tmp_path / "elsewhere")]) == 0
    said = capsys.readouterr()
    assert (
        f"photos are read from {species}, where this run's own photos are, not from {tmp_path / 'elsewhere'}"
        in said.err
    )
    assert said.out == f"wrote 8 files to {tmp_path / 'own'}, sorted into 2 subfolders as the photos are\n"


@pytest.mark.slow
def test_headless_demo_labels_the_sample_photos_and_says_where_it_wrote(tmp_path, capsys, monkeypatch):
    # The seed alone: each refinement round would add as long again, and rounds are tested in test_engine.
    command = ["demo", "--headless", "--iterations", "0", "--out", str(tmp_path / "demo")]
    result = subprocess.run([sys.executable, "-m", "napari_gfn", *command], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    assert f"Wrote the demo run to {tmp_path / 'demo' / 'run'}" in result.stdout
    run = RunFolder(tmp_path / "demo" / "run")
    assert run.finished_iterations() == [0]
    photos = sorted(path.stem for path in (tmp_path / "demo" / "sample" / "images").glob("*.png"))
    assert len(photos) == 16
    assert all(run.has_mask(0, stem) for stem in photos)
    assert run.metrics()[0]["fg_iou"] > 0.5  # scored against the sample's true masks
    # A second demo replaces its own earlier run (what the demo's set-up does before labelling) ...
    _demo_config(tmp_path / "demo", iterations=0)
    assert not (tmp_path / "demo" / "run").exists()
    # ... but never a run of the user's that happens to sit in a folder named run.
    mine = tmp_path / "project" / "run"
    RunFolder(mine).create(RunConfig(images=str(tmp_path / "demo" / "sample" / "masks")))
    assert main(["demo", "--headless", "--out", str(tmp_path / "project")]) == 1
    assert f"{mine} holds something other than an earlier demo run" in capsys.readouterr().err
    assert (mine / "run.json").is_file()
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    assert main(["demo", "--headless", "--out", str(a_file)]) == 1
    assert f"{a_file} is a file, not a folder: choose a folder for the demo's photos and run" in capsys.readouterr().err
    windows = []
    monkeypatch.setattr("napari.Viewer", lambda **options: windows.append(options))
    with pytest.raises(ValueError, match="is a file, not a folder"):
        show_demo(a_file)  # the demo with a window: refused before one opens
    assert windows == []
