"""The run folder, the source of truth of a labelling run.

Layout::

    RUN/run.json                 configuration (input paths absolute, and relative to RUN) and versions
    RUN/iter_NN/masks/<stem>.png 0/255 masks at each photo's full resolution
    RUN/iter_NN/model.pt         the network that produced iteration NN
    RUN/iter_NN/mask_stats.csv   each mask's area, change and uncertainty: which to check first
    RUN/metrics.jsonl            one line per finished iteration
    RUN/log.txt                  what the run reported (each start, skipped photos, each round, how it ended), timed
    RUN/writer.lock, writer.json the lock the process writing the run holds, and which process that is
    RUN/summary.json             the best iteration, when ground truth scored the run
    RUN/fixed/<stem>.png         masks the user corrected and trusts; later iterations keep them
    RUN/untrusted/<stem>.png     a correction the user stopped trusting, kept; nothing reads it
    RUN/drafts/<stem>.png        paint on a photo's mask in napari, not trusted yet: shown again when the run is opened
    RUN/drafts/removed/<stem>.png a draft whose layer the user removed, kept; nothing reads it
    RUN/cache/<format>/          resized photos and working-size masks, safe to delete
    RUN/inputs/<kind>/<stem>.png photos, simple photos or ground truth copied from napari layers

An iteration is finished once its line is in ``metrics.jsonl``, which is
written last and atomically. Anything of a later iteration is a leftover of
an interrupted run and is discarded on resume.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from napari_gfn._atomic import atomic_write_mask_png, atomic_write_png, atomic_write_text, why_unwritable
from napari_gfn._versions import library_versions
from napari_gfn.config import RunConfig
from napari_gfn.review import MaskStats, stats_from_csv, stats_to_csv
from napari_gfn.run_lock import RunLock

__all__ = ["CANCELLED", "FINISHED", "RunFolder", "RunFolderError"]

# Named anew whenever working copies change shape (2: a panorama's short side kept to a quarter of the working
# size), so that a run resumed under the new rule never pairs its cached copies with new ones.
_CACHE_FORMAT = "2"
# How far below RUN a run writes folders: RUN/cache/2/masks/iter_00.
_LAYOUT_DEPTH = 4


def _made_by_another_version(record: dict) -> str:
    """A run made by another napari-gfn (a newer one on a GPU server, say) may hold settings this one lacks."""
    from napari_gfn import __version__

    versions = record.get("versions")
    made_by = versions.get("napari_gfn") if isinstance(versions, dict) else None
    if not made_by or made_by == __version__:
        return ""
    return f" (the run was made by napari-gfn {made_by}, and this is {__version__}: read it with napari-gfn {made_by})"


def _settings_before_they_existed(saved: dict) -> dict:
    """The values a run folder written before a setting existed ran with; a resumed run keeps them."""
    return {
        "predict_scales": (1.0,),
        "colour_jitter": 0.0,
        "grabcut_edge_band": 0,
        "cam_epochs": saved.get("seed_epochs", RunConfig.seed_epochs),  # the CAM classifier trained as long
    }


def _relative_paths(root: Path, paths: dict[str, str]) -> dict[str, str]:
    relative = {}
    for name, path in paths.items():
        try:
            relative[name] = os.path.relpath(path, root)
        except ValueError:  # on another Windows drive there is no relative path
            continue
    return relative


# A log line as append_log writes it, "2026-12-05 08:40:12 warning: ...": its level and message.
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (\w+): (.*)$", re.MULTILINE)
# How the log's last entry begins when a run stopped by itself ("finished with iteration 3"), as an error
# entry does when one stopped it. A run still working, or one killed outright, has none of these last.
FINISHED = "finished with iteration"
CANCELLED = "cancelled"


# What a new run's folder may hold before its run.json: photos copied from napari layers, and its writer's lock.
_MADE_BEFORE_A_RUN = {"inputs", "writer.lock", "writer.json"}


def _is_written_by_a_run(name: str) -> bool:
    """Whether a run folder's entry of this name holds masks or working copies (see the layout above)."""
    return name in ("cache", "fixed", "untrusted", "drafts") or re.fullmatch(r"iter_\d+", name) is not None


def _masks_in(folder: Path) -> dict[str, Path]:
    """The masks in one of a run's folders of masks by photo (``fixed/``, ``drafts/``), by stem; not the temporary
    files of a write under way, whose names begin with a dot."""
    return {path.stem: path for path in sorted(folder.glob("*.png")) if not path.name.startswith(".")}


class RunFolderError(ValueError):
    """A run folder that is missing, foreign, or in the way of a new run."""


class RunFolder:
    """Reads and writes one run folder; every write is atomic."""

    def __init__(self, root: os.PathLike | str) -> None:
        self.root = Path(root)

    @classmethod
    def around(cls, folder: os.PathLike | str) -> RunFolder | None:
        """The run that ``folder`` is, or holds as its masks, corrections or working copies; else None.

        Not for a run's ``inputs/`` (photos copied from napari layers), nor a folder of photos a user put in a run.
        """
        folder = Path(folder).absolute()
        for depth, root in enumerate((folder, *folder.parents[:_LAYOUT_DEPTH])):
            if cls(root).is_run():
                return cls(root) if depth == 0 or _is_written_by_a_run(folder.parts[-depth]) else None
        return None

    def is_run(self) -> bool:
        """Whether this folder holds a run (its run.json), finished or not."""
        return self.config_path.is_file()

    # ---------------------------------------------------------------- layout
    @property
    def config_path(self) -> Path:
        return self.root / "run.json"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.json"

    @property
    def log_path(self) -> Path:
        return self.root / "log.txt"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache" / _CACHE_FORMAT

    @property
    def fixed_dir(self) -> Path:
        return self.root / "fixed"

    @property
    def drafts_dir(self) -> Path:
        return self.root / "drafts"

    def input_dir(self, kind: str) -> Path:
        return self.root / "inputs" / kind

    def iteration_dir(self, iteration: int) -> Path:
        return self.root / f"iter_{iteration:02d}"

    def mask_path(self, iteration: int, stem: str) -> Path:
        return self.iteration_dir(iteration) / "masks" / f"{stem}.png"

    def model_path(self, iteration: int) -> Path:
        return self.iteration_dir(iteration) / "model.pt"

    # ---------------------------------------------------------------- run lifecycle
    @contextmanager
    def writing(self, new_run: RunConfig | None = None) -> Iterator[None]:
        """Start the run ``new_run`` here, or continue this one, and keep every other process from doing
        either until the block ends: each would discard the round the other is writing.

        A RunFolderError when there is no run to continue or the folder is in the way of a new one, a
        RunLockedError naming the process that writes the run.
        """
        # Checked before the lock, so that a folder refused gets no lock file; checked again under it.
        if new_run is None:
            self.check_can_continue()  # before a round's training, not after it, when its first file is written
        else:
            self.check_room_for_new_run()
            self.root.mkdir(parents=True, exist_ok=True)
        with RunLock(self.root).held():
            if new_run is None:
                self.discard_unfinished()
            else:
                self.create(new_run)
            yield

    def create(self, config: RunConfig) -> None:
        """Start a new run here; refuses a folder that holds a run with a finished iteration.

        A run that stopped before finishing any iteration (a bad seed input,
        say) holds nothing worth keeping, so its folder can be reused at once.
        """
        self.check_room_for_new_run()
        if self.config_path.exists():
            self.discard_unfinished()
        self.root.mkdir(parents=True, exist_ok=True)
        root = self.root.absolute()
        paths = {name: os.path.abspath(os.path.expanduser(value)) for name, value in config.paths().items()}
        record = {
            "config": config.updated(out=str(root), **paths).to_dict(),
            "paths_from_run_folder": _relative_paths(root, paths),
            "versions": library_versions(),
        }
        atomic_write_text(self.config_path, json.dumps(record, indent=2, sort_keys=True))

    def read_config(self) -> RunConfig:
        """The run's settings, with its inputs where they are now.

        An input gone from where it was is looked for where it was relative to this folder (a run copied
        or moved together with its photos, to another machine, say). ``find_run_photos`` checks that the
        photo folder found holds the run's photos, or reads them from a folder the user gives.
        """
        if not self.is_run():
            raise RunFolderError(self._not_a_run())
        record = None  # until read: a file cut short names no version
        try:
            record = json.loads(self.config_path.read_text())
            saved = record["config"]
            config = RunConfig.from_dict({**_settings_before_they_existed(saved), **saved})
            moved = self._moved_paths(config, record.get("paths_from_run_folder", {}))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            made_by = _made_by_another_version(record) if isinstance(record, dict) else ""
            raise RunFolderError(f"{self.config_path}: unreadable run configuration: {error}{made_by}") from None
        return config.updated(out=str(self.root.absolute()), **moved)

    def check_room_for_new_run(self) -> None:
        """A RunFolderError if a new run cannot start here: a file, a folder of other things, or a run to resume."""
        if self.root.exists() and not self.root.is_dir():
            raise RunFolderError(f"{self.root} is a file, not a folder: choose an empty or new folder for the run")
        if (run := RunFolder.around(self.root)) and run.root != self.root.absolute():
            raise RunFolderError(
                f"{self.root} is inside the run {run.root}, which may delete its own folders (an unfinished "
                "iteration's, as it resumes): choose a folder outside it"
            )
        self._check_writable("choose another folder")
        if self.config_path.exists():
            if self.finished_iterations():
                raise RunFolderError(f"{self.root} already holds a run: resume it (--resume) or choose another folder")
        elif self.root.exists() and any(entry.name not in _MADE_BEFORE_A_RUN for entry in self.root.iterdir()):
            raise RunFolderError(f"{self.root} is not empty: choose an empty or new folder for the run")

    def check_can_continue(self) -> None:
        """A RunFolderError if the run here cannot be continued: no run, or a folder this process cannot write."""
        self._check_is_run()
        self._check_writable("copy the run folder to a disk you can write, and resume the copy")

    def _check_writable(self, advice: str) -> None:
        if reason := why_unwritable(self.root):
            raise RunFolderError(f"{self.root}: the run cannot be written there ({reason}): {advice}")

    def _check_is_run(self) -> None:
        if not self.is_run():
            raise RunFolderError(self._not_a_run(then=": there is nothing to resume"))

    def _not_a_run(self, then: str = "") -> str:
        """Why this folder holds no run, in the words for a path mistyped, a file, and a folder of other things;
        ``then`` follows each but the folder inside a run, whose advice is the run folder itself."""
        if not self.root.exists():
            return f"{self.root}: no such folder{then}"
        if not self.root.is_dir():
            return f"{self.root} is a file, not a run folder{then}"
        if run := RunFolder.around(self.root):  # an iteration's masks, say
            return f"{self.root} is a folder inside the run {run.root}: give the run folder itself"
        return f"{self.root} is not a napari-gfn run folder (no run.json){then}"

    def _moved_paths(self, config: RunConfig, from_run_folder: dict[str, str]) -> dict[str, str]:
        moved = {}
        for name, recorded in config.paths().items():
            beside = self.root / from_run_folder[name] if name in from_run_folder else None
            if not os.path.exists(recorded) and beside is not None and beside.exists():
                moved[name] = os.path.normpath(beside.absolute())
        return moved

    def discard_unfinished(self) -> None:
        """Remove iteration folders that have no metrics line (the iteration a kill interrupted), and a cache
        in an earlier format.

        Only in a run folder: ``--resume`` given another folder (a home folder, by mistake) deletes nothing.
        """
        self._check_is_run()
        finished = set(self.finished_iterations())
        for folder in self.root.glob("iter_*"):
            suffix = folder.name.removeprefix("iter_")
            if suffix.isdigit() and int(suffix) not in finished:
                shutil.rmtree(folder)
        for leftover in self.root.rglob(".*.tmp"):
            leftover.unlink(missing_ok=True)
        # Working copies cached in an earlier format are never read again: the disk space is the user's.
        for earlier in self.cache_dir.parent.glob("*"):
            if earlier.is_dir() and earlier != self.cache_dir:
                shutil.rmtree(earlier)

    # ---------------------------------------------------------------- the run's log
    def append_log(self, level: str, message: str) -> None:
        """Add a timed line to log.txt, which a resumed run continues. A message of several lines (an error
        from a library, say) has its later lines indented under the first, so that each timed line starts an entry.
        """
        entry = message.rstrip("\n").replace("\n", "\n    ")
        try:
            with self.log_path.open("a", encoding="utf-8") as log:
                log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {level}: {entry}\n")
        except OSError:  # the log only repeats what the run reports; a full disk must not stop the run here
            pass

    def logged_problems(self) -> int:
        """The different warnings log.txt holds, plus the error that stopped the run, if nothing ran after it.

        A warning each start repeats (a skipped photo) counts once, and an error a resume got past
        (a Ctrl-C) counts no more. A run made before runs kept a log has none.
        """
        lines = self._log_entries()
        warnings = {message for level, message in lines if level == "warning"}
        return len(warnings) + (bool(lines) and lines[-1][0] == "error")

    def how_it_ended(self) -> str | None:
        """The log's last entry, when it tells how the run stopped: finished, cancelled, or the error that
        stopped it. None while the log shows no end: the run is still working (on a server, say), or was
        killed outright. A run made before runs kept a log ended long ago.
        """
        if not self.log_path.is_file():
            return "no log (a run made before runs kept one)"
        lines = self._log_entries()
        if not lines:
            return None
        level, message = lines[-1]
        return message if level == "error" or message.startswith((FINISHED, CANCELLED)) else None

    def _log_entries(self) -> list[tuple[str, str]]:
        """Each entry's level and first line, oldest first; none for a run made before runs kept a log."""
        if not self.log_path.is_file():
            return []
        return _LOG_LINE.findall(self.log_path.read_text(encoding="utf-8", errors="replace"))

    # ---------------------------------------------------------------- per-iteration data
    def write_mask(self, iteration: int, stem: str, mask: np.ndarray) -> Path:
        return atomic_write_mask_png(self.mask_path(iteration, stem), mask)

    def read_mask(self, iteration: int, stem: str) -> np.ndarray:
        path = self.mask_path(iteration, stem)
        try:
            return iio.imread(path) > 127
        except Exception as error:  # a run folder copied from a server may hold a file cut short
            raise RunFolderError(f"{path}: cannot be read as a mask (cut short while copied?): {error}") from None

    def masks_of(self, iteration: int) -> list[Path]:
        """The masks ``iteration`` wrote, one per photo it labelled, in name order."""
        return sorted((self.iteration_dir(iteration) / "masks").glob("*.png"))

    def has_mask(self, iteration: int, stem: str) -> bool:
        return self.mask_path(iteration, stem).is_file()

    def mask_stats_path(self, iteration: int) -> Path:
        return self.iteration_dir(iteration) / "mask_stats.csv"

    def write_mask_stats(self, iteration: int, stats: Mapping[str, MaskStats]) -> Path:
        return atomic_write_text(self.mask_stats_path(iteration), stats_to_csv(stats))

    def mask_stats(self, iteration: int) -> dict[str, MaskStats]:
        """What ``iteration`` recorded about each mask; empty for a run made before it recorded any."""
        path = self.mask_stats_path(iteration)
        if not path.is_file():
            return {}
        try:
            return stats_from_csv(path.read_text())
        except (ValueError, KeyError, TypeError) as error:  # cut short by a copy from a server, say
            raise RunFolderError(f"{path}: cannot be read (cut short while copied?): {error}") from None

    def write_input(self, kind: str, stem: str, image: np.ndarray) -> Path:
        """Keep a copy of an in-memory input, so the run folder alone can be resumed and reopened."""
        return atomic_write_png(self.input_dir(kind) / f"{stem}.png", image)

    def fixed_mask_path(self, stem: str) -> Path:
        return self.fixed_dir / f"{stem}.png"

    def write_fixed_mask(self, stem: str, mask: np.ndarray) -> Path:
        """Trust a corrected mask: every later iteration trains on it and writes it unchanged."""
        self.check_still_here()
        return atomic_write_mask_png(self.fixed_mask_path(stem), mask)

    def check_still_here(self) -> None:
        """napari writes corrections into a run opened hours ago, maybe: one moved or deleted since is not made
        again where it was, as a folder of stray corrections beside nothing (FileNotFoundError, as the viewer
        reports a write that fails)."""
        if not self.is_run():
            raise FileNotFoundError(
                f"{self.root} is no longer a run folder (moved or deleted since it was opened): open the run "
                "where it is now (Open run)"
            )

    def forget_fixed_mask(self, stem: str) -> Path | None:
        """Stop trusting ``stem``'s correction: later iterations predict its mask again. The correction is
        moved to ``untrusted/``, where it is kept, not deleted: it is the user's work. None if none was trusted."""
        trusted = self.fixed_mask_path(stem)
        if not trusted.is_file():
            return None
        kept = self.root / "untrusted" / f"{stem}.png"
        kept.parent.mkdir(exist_ok=True)
        os.replace(trusted, kept)
        return kept

    def draft_path(self, stem: str) -> Path:
        return self.drafts_dir / f"{stem}.png"

    def write_draft(self, stem: str, mask: np.ndarray) -> Path:
        """Keep the paint on ``stem``'s mask, not trusted yet, so that napari closing or crashing loses none of it.
        Nothing trains on a draft."""
        self.check_still_here()
        return atomic_write_mask_png(self.draft_path(stem), mask)

    def drop_draft(self, stem: str) -> None:
        """``stem``'s draft is trusted, so kept in ``fixed/``: it is no draft any longer."""
        self.draft_path(stem).unlink(missing_ok=True)

    def set_draft_aside(self, stem: str) -> None:
        """The user removed ``stem``'s draft's layer: not shown again, but kept in ``drafts/removed/``, as
        napari cannot undo a layer's removal."""
        draft = self.draft_path(stem)
        if draft.is_file():
            kept = draft.parent / "removed" / draft.name
            kept.parent.mkdir(exist_ok=True)
            os.replace(draft, kept)

    def drafts(self) -> dict[str, Path]:
        return _masks_in(self.drafts_dir)

    def fixed_masks(self) -> dict[str, Path]:
        return _masks_in(self.fixed_dir)

    def best_iteration(self) -> int | None:
        """The iteration with the highest mIoU against ground truth, or the last one when unscored."""
        if self.summary_path.is_file():
            return json.loads(self.summary_path.read_text())["best_iteration"]
        finished = self.finished_iterations()
        return finished[-1] if finished else None

    def mark_best(self, iteration: int) -> None:
        atomic_write_text(self.summary_path, json.dumps({"best_iteration": iteration}, indent=2))

    def metrics(self) -> list[dict]:
        if not self.metrics_path.is_file():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def finished_iterations(self) -> list[int]:
        return [entry["iteration"] for entry in self.metrics()]

    def finish_iteration(self, metrics: dict) -> None:
        """Record an iteration as finished: rewrite metrics.jsonl atomically with one more line."""
        lines = [
            json.dumps(entry, sort_keys=True) for entry in self.metrics() if entry["iteration"] != metrics["iteration"]
        ]
        lines.append(json.dumps(metrics, sort_keys=True))
        atomic_write_text(self.metrics_path, "\n".join(lines) + "\n")
