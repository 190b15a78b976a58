"""The `napari-gfn` command line: the same work as the dock widgets, without a screen, and napari opened on a run."""

from __future__ import annotations

import argparse
import errno
import json
import os
import shlex
import signal
import sys
import traceback
import warnings
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import fields
from functools import partial
from pathlib import Path
from typing import TextIO

from napari_gfn import __version__
from napari_gfn.config import (
    BACKBONES,
    BULKY_OBJECT_SETTINGS,
    CAM_REFINERS,
    DEMO_CONFIG,
    SEED_METHODS,
    SETTING_HELP,
    THIN_OBJECT_SETTINGS,
    VOC_CLASSES,
    RunConfig,
    describe_seed,
    setting_flag,
    settings_not_read,
)

__all__ = ["build_parser", "main"]


def _has_display() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


# How often a bar writes a line when stderr is a log file rather than a terminal.
LOG_LINE_INTERVAL_S = 30.0


class _LogLines:
    """A log file as tqdm's output: each redraw of a bar becomes one line, and clearing a bar writes nothing."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        # tqdm redraws in place with "\r" and padding; a log of a run on a server should read line by line.
        line = text.strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def _new_bar(phase: str, total: int, postfix: str | None):
    """A progress bar with ETA on stderr: redrawn in a terminal, a line every LOG_LINE_INTERVAL_S in a log file."""
    from tqdm import tqdm

    if sys.stderr.isatty():
        return tqdm(total=total, desc=phase, postfix=postfix, unit="step", leave=False, file=sys.stderr)
    # maxinterval too, or tqdm's monitor thread would redraw sooner.
    log_interval = {"mininterval": LOG_LINE_INTERVAL_S, "maxinterval": LOG_LINE_INTERVAL_S}
    return tqdm(total=total, desc=phase, postfix=postfix, unit="step", file=_LogLines(sys.stderr), **log_interval)


class _TerminalReport:
    """Renders engine events: one progress bar (with ETA) per phase, notices and iteration lines."""

    def __init__(self) -> None:
        from napari_gfn.engine import PhaseBars

        self.bars = PhaseBars(_new_bar)

    def __call__(self, events: Iterable) -> list:
        from tqdm import tqdm

        from napari_gfn.engine import IterationResult, Notice, Progress

        results = []
        try:
            for event in events:
                if isinstance(event, Progress):
                    self.show_progress(event)
                elif isinstance(event, Notice):
                    tqdm.write(f"{event.level}: {event.message}", file=sys.stderr)
                elif isinstance(event, IterationResult):
                    self.close()
                    results.append(event)
                    print(event.describe(), flush=True)
        finally:  # an error or Ctrl-C: the bar's last line goes out now, before the message that says why
            self.close()
        return results

    def run(self, events: Generator):
        """Render a generator's events and return what it returns (a trained model, say)."""
        returned = []

        def capture():
            returned.append((yield from events))

        self(capture())
        return returned[0]

    def show_progress(self, event) -> None:
        _raise_a_dropped_stop()  # at each step a run makes
        self.bars.show(event)

    def close(self) -> None:
        self.bars.close()


def _label_config(args: argparse.Namespace) -> RunConfig:
    """The run settings of `label`: each of its flags, but --resume, is named after the RunConfig field it sets."""
    field_names = {field.name for field in fields(RunConfig)}
    settings = {name: value for name, value in vars(args).items() if name in field_names}
    if args.resume and "iterations" not in getattr(args, "settings_given", ()):
        settings["iterations"] = 0  # the run's own count, then: a resume keeps the larger
    return RunConfig(**settings)


def _label(args: argparse.Namespace) -> int:
    from napari_gfn.engine import distributed, run_labelling
    from napari_gfn.engine.images import counted

    config = _label_config(args)
    distributed.join_process_group(args.device)
    if not distributed.is_main():  # under torchrun, rank 0 alone reports
        for _ in run_labelling(config, resume=args.resume):
            pass
        distributed.leave_process_group()
        return 0
    given = getattr(args, "settings_given", set())
    if args.resume:
        _say_flags_not_used(config, given)
        _say_drafts_not_trained_on(config)
    else:
        _say_settings_not_read(config, given)
    results = _TerminalReport()(run_labelling(config, resume=args.resume))
    distributed.leave_process_group()
    print(f"Masks are in {Path(args.out).resolve()}/iter_NN/masks ({counted(len(results), 'iteration')} this run)")
    print(f"See them in napari: napari-gfn open {shlex.quote(args.out)}")
    return 0


def _say_flags_not_used(config: RunConfig, given: set[str]) -> None:
    """Warn of the settings given that --resume leaves unused: the run's rounds keep the settings it began with,
    so that they stay alike."""
    from napari_gfn.store import RunFolder, RunFolderError

    try:
        continued = RunFolder(config.out).read_config().continued_with(config)
    except RunFolderError:  # the run itself names what is wrong with its folder
        return
    unused = [
        name
        for names in _LABEL_SETTINGS.values()
        for name in names
        if name in given and not _same_setting(getattr(config, name), getattr(continued, name))
    ]
    if unused:
        flags = ", ".join(_as_flag(name, getattr(config, name)) for name in unused)
        runs = ", ".join(_as_flag(name, getattr(continued, name)) for name in unused)
        print(
            f"warning: not used: {flags}: --resume continues the run with its own settings ({runs}); "
            f"a new --out uses them{_scoring_advice(config, unused)}",
            file=sys.stderr,
        )


def _say_settings_not_read(config: RunConfig, given: set[str]) -> None:
    """Warn of the settings given that the run would not read: a source model given without --seed transfer,
    say, is more likely a seed forgotten than a setting meant to change nothing."""
    if unread := settings_not_read(config, given):
        flags = "; ".join(f"{_as_flag(name, getattr(config, name))} is for {what}" for name, what in unread.items())
        print(
            f"warning: not read by this run of {describe_seed(config.seed)}: {flags}",
            file=sys.stderr,
        )


def _say_drafts_not_trained_on(config: RunConfig) -> None:
    """Warn of paint in napari not trusted (drafts): the rounds to come do not train on it."""
    from napari_gfn.engine.images import a_few, counted
    from napari_gfn.store import RunFolder

    if drafted := list(RunFolder(config.out).drafts()):
        print(
            f"warning: not trained on: the paint not trusted on the masks of {counted(len(drafted), 'photo')} "
            f"({a_few(drafted)}): to have the rounds to come train on a correction, trust its layer in napari "
            "(napari-gfn open RUN, then Trust selected Labels layer)",
            file=sys.stderr,
        )


def _scoring_advice(config: RunConfig, unused: list[str]) -> str:
    """True masks need no new run: `evaluate` scores every iteration of this one against them."""
    if not config.gt or not {"gt", "ignore"} & set(unused):
        return ""
    command = ["napari-gfn", "evaluate", config.out, "--gt", config.gt]
    if config.ignore:
        command += ["--ignore", config.ignore]
    return f"; to score this run against the masks given: {shlex.join(command)}"


def _as_flag(name: str, value: object) -> str:
    return f"no {setting_flag(name)}" if value is None else f"{setting_flag(name)} {value}"


def _same_setting(given: object, runs: object) -> bool:
    """Whether a setting given is the run's: a folder or file named another way (relative, say) is the same,
    and a name (of a seed, say) is only itself."""
    if isinstance(given, str) and isinstance(runs, str):
        return Path(given).resolve() == Path(runs).resolve()
    return given == runs


def _train_source(args: argparse.Namespace) -> int:
    # Taken first, so that a stop at any later moment can tell whether this run had written the model.
    args.model_file_before = _file_stamp(args.out)
    from napari_gfn.engine import resolve_device
    from napari_gfn.engine.source import LabelledSet, train_source_model_file

    if args.voc:
        if args.images or args.masks or not args.voc_class:
            raise ValueError("with --voc ROOT give --class NAME and no IMAGES or MASKS folders")
        labelled = LabelledSet.from_voc(args.voc, args.voc_class, split=args.split)
    elif args.images and args.masks:
        labelled = LabelledSet.from_folders(args.images, args.masks)
    else:
        raise ValueError("give IMAGES and MASKS folders, or --voc ROOT --class NAME")
    if args.epochs < 1:  # before RunConfig's own check, which names a label run's epochs per iteration
        raise ValueError(f"training epochs (--epochs) must be at least 1, got {args.epochs}")
    config = RunConfig(epochs=args.epochs, **{name: getattr(args, name) for name in _MODEL_SETTINGS})
    events = train_source_model_file(labelled, config, resolve_device(args.device), args.out, args.voc_class)
    path = _TerminalReport().run(events)
    print(f"Saved the source model to {path.resolve()}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from napari_gfn.engine import GroundTruth, evaluate_run

    report = _TerminalReport()
    rows, problems = evaluate_run(args.run, GroundTruth(args.gt, args.ignore), on_progress=report.show_progress)
    report.close()
    for problem in problems:
        print(f"warning: not scored: {problem}", file=sys.stderr)
    if not rows:
        print(f"warning: {args.run} has no finished iteration yet, so there is nothing to score", file=sys.stderr)
    # Iterations with no photo scored mean the true masks given were not usable (a wrong folder, say): a script
    # that reads the scores must not take a table of blanks for a result.
    nothing_scored = bool(rows) and not any(row["images"] for row in rows)
    if args.json:
        print(json.dumps({"iterations": rows}))
    elif not nothing_scored:
        _print_scores(rows)
    if nothing_scored:
        print(
            f"napari-gfn: error: no photo of {args.run} was scored against {args.gt} (see the warnings)",
            file=sys.stderr,
        )
        return 1
    return 0


def _print_scores(rows: list[dict]) -> None:
    if rows:
        print("iteration  fg IoU   mIoU    photos")
    for row in rows:
        fg = "-" if row["fg_iou"] is None else f"{row['fg_iou']:.4f}"
        miou = "-" if row["miou"] is None else f"{row['miou']:.4f}"
        print(f"{row['iteration']:>9}  {fg:>6}  {miou:>6}  {row['images']:>6}")


def _export(args: argparse.Namespace) -> int:
    from napari_gfn.export import describe_export, export_labels

    exporting = export_labels(args.run, args.out, args.iteration, args.format, photos_now=args.photos)
    written = _TerminalReport().run(exporting)
    print(describe_export(written, args.out))
    return 0


def _iteration_to_export(text: str) -> int | str:
    if text.isdigit():
        return int(text)
    if text in ("best", "last"):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: give best, last or an iteration number")


def _demo(args: argparse.Namespace) -> int:
    from napari_gfn.demo import run_demo, show_demo

    if args.headless or not _has_display():
        run_dir = run_demo(Path(args.out), report=_TerminalReport(), iterations=args.iterations)
        print(f"Wrote the demo run to {run_dir.resolve()}")
        return 0
    show_demo(Path(args.out), args.iterations)
    return 0


def _open(args: argparse.Namespace) -> int:
    from napari_gfn.engine.run_photos import photos_not_read_from
    from napari_gfn.run_window import read_run, show_run

    run, photos = Path(args.run), Path(args.photos) if args.photos else None
    _, config, _ = read_run(run, photos)  # a run that cannot be shown is an error here, not in a window
    if elsewhere := photos_not_read_from(config.images, photos):
        print(f"warning: {elsewhere}", file=sys.stderr)
    if not _has_display():
        print(
            f"napari-gfn: error: no display to open napari on; copy {run} to a machine with a screen and open "
            "it there (its photos found in their place relative to it, or given with --photos)",
            file=sys.stderr,
        )
        return 1
    show_run(run, photos)
    return 0


# The settings of the network and its training that `label` and `train-source` share.
_MODEL_SETTINGS = ("backbone", "device", "image_size", "min_steps", "random_seed")
# The settings `label` shows, by heading.
_LABEL_SETTINGS = {
    "iteration 0 (the seed)": (
        "seed",
        "simple",
        "simple_threshold",
        "simple_max_border",
        "source_model",
        "labels",
        "cam_threshold",
        "cam_refiner",
        "cam_epochs",
        "seed_epochs",
    ),
    "refinement rounds": (
        "iterations",
        "area_min",
        "area_max",
        "epochs",
        "mask_threshold",
        "upsample_radius",
        "grabcut_edge_band",
    ),
    "network and training": (*_MODEL_SETTINGS, "gf_radius", "gf_eps", "learning_rate", "workers"),
    "scoring against true masks": ("gt", "ignore"),
}


def _add_settings(command, names: Sequence[str], *, with_seed: bool = False) -> None:
    """One option per RunConfig field in ``names``, named after it, with its default and SETTING_HELP's words.

    ``with_seed``: the command has --seed, so the object-shape settings it leaves unset take the seed's values.
    """
    choices = {"seed": SEED_METHODS, "cam_refiner": CAM_REFINERS, "backbone": BACKBONES}
    defaults = RunConfig()
    for name in names:
        default = getattr(defaults, name)
        options = {"choices": choices[name]} if name in choices else {}
        help_text = SETTING_HELP[name]
        if with_seed and name in BULKY_OBJECT_SETTINGS:
            options["type"] = int
            help_text += f" (default: {default}; {THIN_OBJECT_SETTINGS[name]} with {setting_flag('seed')} ridge)"
            default = None
        elif default is not None:
            options["type"] = type(default)
            help_text += " (default: %(default)s)"
        command.add_argument(setting_flag(name), default=default, help=help_text, action=_StoreSetting, **options)


class _StoreSetting(argparse.Action):
    """Store a setting's value and that it was given: a flag given at its default value is still a choice."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        namespace.settings_given = {*getattr(namespace, "settings_given", ()), self.dest}


def _add_label_parser(commands) -> None:
    label = commands.add_parser("label", help="label a folder of photos (seed, then iterative refinement)")
    label.add_argument(
        "images",
        help="folder of photos (PNG, JPEG, TIFF, WebP, HEIC, AVIF, JPEG 2000), "
        "or a tree of folders of photos (species/year/site, say)",
    )
    label.add_argument("--out", required=True, help="run folder (created; or resumed with --resume)")
    for heading, names in _LABEL_SETTINGS.items():
        _add_settings(label.add_argument_group(heading), names, with_seed=True)
    label.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out after its last finished iteration, with its own settings but --iterations "
        "(if given, the larger is kept), --device and --workers",
    )
    label.set_defaults(handler=_label)


def _add_train_source_parser(commands) -> None:
    train = commands.add_parser("train-source", help="train a source model for --seed transfer on labelled photos")
    train.add_argument("images", nargs="?", help="folder of photos")
    train.add_argument("masks", nargs="?", help="folder of masks (0/255 or 0/1) with the photos' stems")
    train.add_argument("--out", required=True, help="model file to write (MODEL.pt)")
    train.add_argument("--voc", metavar="ROOT", help="a PASCAL VOC 2012 root instead of IMAGES and MASKS")
    train.add_argument("--class", dest="voc_class", choices=VOC_CLASSES, help="the VOC class that is the object")
    train.add_argument(
        "--split", default="train", help="VOC split listed in ImageSets/Segmentation (default: %(default)s)"
    )
    train.add_argument("--epochs", type=int, default=8, help="training epochs (default: %(default)s)")
    _add_settings(train, _MODEL_SETTINGS)
    train.set_defaults(handler=_train_source)


def _add_photos_option(command) -> None:
    command.add_argument(
        "--photos", metavar="DIR", help="where the run's photos are now, if neither where they were nor beside the run"
    )


def _add_export_parser(commands) -> None:
    from napari_gfn.export import EXPORT_FORMATS

    export = commands.add_parser(
        "export", help="write one iteration's masks, corrections included, to a folder: one file per photo"
    )
    export.add_argument("run", help="run folder")
    export.add_argument("out", help="folder to write to (photos sorted into subfolders get their masks sorted so)")
    export.add_argument(
        "--iteration",
        type=_iteration_to_export,
        default="best",
        metavar="best|last|N",
        help="best (by ground truth, else the last), last, or a number (default: %(default)s)",
    )
    export.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        default="png",
        help="png: 0/255; tif: label image 0/1; cutout: the photo as a PNG, transparent but for the object "
        "(default: %(default)s)",
    )
    _add_photos_option(export)
    export.set_defaults(handler=_export)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="napari-gfn", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_label_parser(commands)

    evaluate = commands.add_parser("evaluate", help="score every iteration of a run against true masks")
    evaluate.add_argument("run", help="run folder")
    evaluate.add_argument("--gt", required=True, help="folder of true masks (0/255 or 0/1)")
    evaluate.add_argument("--ignore", help="folder of ignore masks (255 = leave out)")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    evaluate.set_defaults(handler=_evaluate)

    _add_train_source_parser(commands)
    _add_export_parser(commands)

    opening = commands.add_parser("open", help="open a run folder in napari, to browse, compare and correct its masks")
    opening.add_argument("run", help="run folder (from `napari-gfn label` or the Auto-label dock)")
    _add_photos_option(opening)
    opening.set_defaults(handler=_open)

    demo = commands.add_parser(
        "demo",
        help="built-in synthetic sample data: opened in napari with the Auto-label dock ready, or labelled headless",
    )
    demo.add_argument("--headless", action="store_true", help="no window, even when a display is present")
    demo.add_argument("--out", default="demo-output", help="folder for the demo's output (default: %(default)s)")
    demo.add_argument(
        "--iterations",
        type=int,
        default=DEMO_CONFIG.iterations,
        help="refinement rounds after the seed, each about as long as the seed's training (default: %(default)s)",
    )
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    headless = args.command in _HEADLESS_COMMANDS
    with _output_past_a_hang_up() if headless else nullcontext():
        return _ended(args, headless)


def _ended(args: argparse.Namespace, headless: bool) -> int:
    """Run the command, say how it ended, and give its exit status."""
    from napari_gfn.engine import LabellingError

    try:
        with _headless(args) if headless else nullcontext():
            return _handled(args)
    # A bad photo, model file or run folder raises a ValueError of its own kind, with the file named.
    except (LabellingError, ValueError) as error:
        print(f"napari-gfn: error: {error}", file=sys.stderr)
        return 1
    # A full disk, a read-only or missing folder: the system's words name the file. A GPU's memory taken
    # (by other processes, on a shared server) or a photo too large for the memory: torch's or numpy's words.
    except (OSError, MemoryError) as error:
        print(f"napari-gfn: error: {error}{_kept(args)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:
        return _stopped(args, stop, "interrupted", "interrupted (Ctrl-C)", 130)
    except _HungUp as stop:
        return _stopped(args, stop, "hung up (its terminal closed)", _HUNG_UP, 129)
    except _Terminated as stop:
        return _stopped(args, stop, "terminated", "terminated (SIGTERM: a job's time limit, or a kill, say)", 143)


# Logged, as the terminal that would have shown it is gone: the run is opened later to see why it stopped.
_HUNG_UP = (
    "hung up (SIGHUP: its terminal closed, or the SSH connection to it dropped): to keep a long run going "
    "after its terminal closes, start it with nohup, or inside tmux or screen"
)


def _handled(args: argparse.Namespace) -> int:
    from napari_gfn.engine.events import out_of_memory

    try:
        return args.handler(args)
    except Exception as error:
        # A library's clean-up that fails as a Ctrl-C or SIGTERM unwinds it (imageio's PNG writer, cut off
        # mid-write, says it has no images_to_write) raises its own error in the stop's place: the stop happened.
        stop = _stop_behind(error)
        if stop is not None:
            raise stop from None
        if (in_words := out_of_memory(error)) is not None:  # torch's is a RuntimeError, but not a bug to trace back
            raise in_words from None
        raise


def _stop_behind(error: BaseException) -> BaseException | None:
    return next((cause for cause in _causes(error) if isinstance(cause, KeyboardInterrupt | _Terminated)), None)


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error``, then the error it was raised from or while handling, and so on back."""
    cause: BaseException | None = error
    while cause is not None:
        yield cause
        cause = cause.__cause__ or cause.__context__


class _Terminated(BaseException):
    """SIGTERM, which a job scheduler sends at a run's time limit and `kill` sends by default.

    Not an Exception, as KeyboardInterrupt is not: it stops a run the same way, and nothing catches it on the way.
    """


class _HungUp(_Terminated):
    """SIGHUP: the terminal the command ran in closed, as when an SSH connection to a server drops."""


# Stopped by its scheduler, a job on a server says so; a run logs its end, so napari following it sees it stopped.
# `open` and `demo` keep the default: SIGTERM ends them at once, as it ends napari itself.
_HEADLESS_COMMANDS = ("label", "train-source", "export", "evaluate")


@contextmanager
def _output_past_a_hang_up() -> Iterator[None]:
    """What a command prints to a terminal that has hung up is dropped: a run left working in the background
    (`napari-gfn label ... &`, then logged out) goes on to its end, and its log keeps what it says."""
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _DroppedOnceHungUp(sys.stdout), _DroppedOnceHungUp(sys.stderr)
    try:
        yield
    finally:
        if not (sys.stdout.hung_up or sys.stderr.hung_up):  # else the streams' last flush, at exit, would fail
            sys.stdout, sys.stderr = streams


class _DroppedOnceHungUp:
    """A text stream whose writes are dropped once its terminal has hung up (EIO); other failures still raise."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.hung_up = False

    def write(self, text: str) -> int:
        self._unless_hung_up(self._stream.write, text)
        return len(text)

    def flush(self) -> None:
        self._unless_hung_up(self._stream.flush)

    def _unless_hung_up(self, call: Callable, *args) -> None:
        if self.hung_up:
            return
        try:
            call(*args)
        except OSError as error:
            if error.errno != errno.EIO:
                raise
            self.hung_up = True

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextmanager
def _headless(args: argparse.Namespace) -> Iterator[None]:
    """How a command without a window takes a stop, and says a warning."""
    with _headless_stops(), _decoders_warnings_named(partial(_log_to_run, args, "warning")):
        yield


@contextmanager
def _decoders_warnings_named(log: Callable[[str], None]) -> Iterator[None]:
    """A decoder's warning about a file (Pillow's "Corrupt EXIF data", say) names the file, once for each file,
    and is ``log``ged: a run opened later counts it among its problems.

    Python's own display names the decoder's line of code instead, and shows a warning for the first file alone.
    """
    from tqdm import tqdm

    from napari_gfn.engine.images import file_being_decoded

    shown = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        decoded = file_being_decoded()
        seen = (decoded, str(message), category, filename, lineno)
        if seen in shown:  # as Python's "default" rule would, but once for each file decoded
            return
        shown.add(seen)
        if decoded is None:
            show_as_python_does(message, category, filename, lineno, file, line)
        else:
            tqdm.write(f"warning: {decoded}: {message}", file=sys.stderr)
            log(f"{decoded}: {message}")

    with warnings.catch_warnings():
        show_as_python_does = warnings.showwarning
        warnings.showwarning = show
        # After the filters there are, which still hide what they hide, in place of Python's last rule, "default",
        # which remembers a warning's line of code and not the file decoded; show() remembers both.
        warnings.filterwarnings("always", append=True)
        yield


@contextmanager
def _headless_stops() -> Iterator[None]:
    """SIGTERM, and SIGHUP unless ignored (under nohup), stop the command as Ctrl-C does, and none is lost
    where Python drops it."""
    stops = {signal.SIGTERM: _raise_terminated}
    if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # no SIGHUP on Windows
        stops[signal.SIGHUP] = _raise_hung_up
    previous = {number: signal.signal(number, handler) for number, handler in stops.items()}
    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: _keep_a_dropped_stop(unraisable, hook)
    try:
        yield
    finally:
        sys.unraisablehook = hook
        for number, handler in previous.items():
            signal.signal(number, handler)
        _dropped_stops.clear()


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated


def _raise_hung_up(signum: int, frame: object) -> None:
    raise _HungUp


# A stop raised inside a __del__ (imageio's plugins have one) cannot go on from there: Python prints it and drops
# it, and the run would go on to its end. Such a stop is kept instead, and raised again at the run's next step.
_dropped_stops: list[BaseException] = []


def _keep_a_dropped_stop(unraisable, hook: Callable) -> None:
    if isinstance(unraisable.exc_value, KeyboardInterrupt | _Terminated):
        _dropped_stops.append(unraisable.exc_value)
    else:
        hook(unraisable)


def _raise_a_dropped_stop() -> None:
    if _dropped_stops:
        raise _dropped_stops.pop()


def _free_quietly_what_it_cut_off(stop: BaseException) -> None:
    """Free the objects a stop left half-made before the run says its last word, and without their complaints.

    Freed later, imageio's Pillow plugin cut off before it had its list of images to write fails in its clean-up
    and prints that error below the line saying the run stopped. The failure is the stop's doing, not news.
    """
    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        for error in _causes(stop):
            traceback.clear_frames(error.__traceback__)
    finally:
        sys.unraisablehook = hook


def _stopped(args: argparse.Namespace, stop: BaseException, said: str, logged: str, status: int) -> int:
    """A ``label`` stopped from outside says so, in the terminal and in its log, as a run stopped by an error does."""
    _free_quietly_what_it_cut_off(stop)
    _log_to_run(args, "error", logged)
    print(f"napari-gfn: {said}{_kept(args)}", file=sys.stderr)
    return status


def _kept(args: argparse.Namespace) -> str:
    """What a stopped ``label`` leaves for ``--resume`` (the iterations its run folder finished), or whether a
    stopped ``train-source`` had saved its model."""
    from napari_gfn.store import RunFolder

    if args.command == "train-source":
        saved = hasattr(args, "model_file_before") and _file_stamp(args.out) != args.model_file_before
        return f"; {'the model had been saved to' if saved else 'no model was saved to'} {args.out}"
    finished = RunFolder(args.out).finished_iterations() if args.command == "label" else []
    if not finished:
        return ""
    kept = f"iteration {finished[0]} is" if len(finished) == 1 else f"iterations {finished[0]}-{finished[-1]} are"
    return f"; {kept} kept in {args.out} (continue with --resume)"


def _file_stamp(path: str) -> tuple[int, int] | None:
    """Which file ``path`` is and when it was written: a model saved over it (a new file moved in) changes both."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns


def _log_to_run(args: argparse.Namespace, level: str, message: str) -> None:
    """Add to the log of the run ``label`` writes, once it is a run; other commands write no run."""
    if args.command != "label":
        return
    from napari_gfn.engine import distributed
    from napari_gfn.store import RunFolder

    store = RunFolder(args.out)
    if store.is_run() and distributed.is_main():
        store.append_log(level, message)


if __name__ == "__main__":
    sys.exit(main())
