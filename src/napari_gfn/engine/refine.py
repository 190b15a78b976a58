"""Iterative refinement: seed masks, then train-predict-filter rounds, each one saved as it finishes.

:func:`run_labelling` is a generator. It yields :class:`Progress` and
:class:`Notice` events while it works and one :class:`IterationResult` per
finished iteration. The command line iterates it; the napari widget runs it
in a worker thread.
"""

from __future__ import annotations

import shutil
import time
from collections import ChainMap
from collections.abc import Callable, Container, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from napari_gfn._atomic import stops_held
from napari_gfn.config import RunConfig, describe_setting
from napari_gfn.engine import distributed
from napari_gfn.engine.events import (
    CancelToken,
    Event,
    IterationResult,
    LabellingError,
    Notice,
    Progress,
    RunCancelled,
    describe_error,
)
from napari_gfn.engine.images import ImageReadError, ImageSet, a_few, counted, read_object_mask
from napari_gfn.engine.metrics import GroundTruth, iou, mean_scores, unscored_messages
from napari_gfn.engine.predict import MaskPredictor, sharpen_seed_mask
from napari_gfn.engine.run_photos import find_run_photos, photos_not_read_from
from napari_gfn.engine.time_left import RunTimeLeft
from napari_gfn.engine.training import describe_device, missing_weights_notice, new_model, train_on_targets
from napari_gfn.engine.working import (
    WorkingImages,
    WorkingMasks,
    read_each,
    read_photos,
    resize_mask,
    same_picture,
    working_shape,
)
from napari_gfn.network import GFN, load_model, save_model
from napari_gfn.review import MaskStats, check_first
from napari_gfn.store import CANCELLED, FINISHED, RunFolder, RunFolderError

__all__ = ["Event", "SeedContext", "SeedOutput", "resolve_device", "run_labelling", "trusted_stems"]


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is an error, not a silent CPU run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LabellingError(
            f"device {name!r} was requested but this machine has no usable CUDA GPU; choose "
            f"{describe_setting('device', 'cpu')}"
        )
    return torch.device(name)


def trusted_stems(areas: Mapping[str, float], area_min: float, area_max: float) -> list[str]:
    """The photos whose mask's object covers between ``area_min`` and ``area_max`` of the photo (inclusive)."""
    return [stem for stem, area in areas.items() if area_min <= area <= area_max]


MaskOfPhoto = Callable[[str, np.ndarray], np.ndarray]
# A photo's mask at full and at working resolution, and its uncertain_share when a network predicted it.
_Masks = tuple[np.ndarray, np.ndarray, float | None]


@dataclass(frozen=True)
class SeedOutput:
    """Iteration 0 comes from a model that predicts every photo, or from ``mask_of(stem, working_photo)``.

    ``mask_of`` returns a boolean mask at working resolution. It is called once
    per photo while iteration 0 is written, so seed masks never pile up in
    memory and, under torchrun, each process computes only its own share.
    """

    model: torch.nn.Module | None = None
    mask_of: MaskOfPhoto | None = None


@dataclass
class SeedContext:
    """What a seed method may use: the settings, the photos, and the engine's training loop."""

    config: RunConfig
    working: WorkingImages
    device: torch.device
    cancel: CancelToken
    store: RunFolder
    missing_weights_said: bool = field(default=False, init=False)  # the run's own record, not a setting

    def missing_weights_notice(self) -> Iterator[Notice]:
        """Before the run's first network is made from the backbone: a warning if it has no ImageNet weights.

        Said once a run: a CAM run makes two such networks (its classifier, then its first round's GFN).
        """
        if not self.missing_weights_said:
            self.missing_weights_said = True
            yield from missing_weights_notice(self.config)

    def new_model(self) -> Generator[Notice, None, GFN]:
        """A fresh GFN, after that warning."""
        yield from self.missing_weights_notice()
        return new_model(self.config, self.device)

    def train(
        self,
        model: torch.nn.Module,
        working: WorkingImages,
        targets: Mapping[str, np.ndarray],
        phase: str,
        epochs: int,
    ) -> Iterator[Progress]:
        yield from train_on_targets(
            self.config, model, working, targets, phase=phase, epochs=epochs, device=self.device, cancel=self.cancel
        )


SeedMethod = Callable[[SeedContext], Generator[Event, None, SeedOutput]]


def _seed_methods() -> dict[str, SeedMethod]:
    from napari_gfn.seeds.cam import cam_seed
    from napari_gfn.seeds.grabcut import grabcut_seed
    from napari_gfn.seeds.otsu import otsu_seed
    from napari_gfn.seeds.ridge import ridge_seed
    from napari_gfn.seeds.transfer import transfer_seed

    return {"otsu": otsu_seed, "transfer": transfer_seed, "cam": cam_seed, "grabcut": grabcut_seed, "ridge": ridge_seed}


# What each seed does with networks, for the missing-weights warning at a run's start; a seed added above is
# added here too. Those that train one from the backbone (the Otsu seed's GFN, the CAM seed's classifier), and
# those that leave round 1 a GFN to fine-tune (the transfer seed's comes from its source model).
_SEEDS_TRAINING_FROM_THE_BACKBONE = ("otsu", "cam")
_SEEDS_LEAVING_A_NETWORK = ("otsu", "transfer")


class _Run:
    """The state of one run between iterations: photos still usable and their latest masks' areas.

    Masks go to disk as they are made (full resolution in the run folder,
    working resolution in its cache), so memory does not grow with the set.
    """

    def __init__(self, config: RunConfig, store: RunFolder, images: ImageSet, cancel: CancelToken) -> None:
        self.config = config
        self.store = store
        self.cancel = cancel
        self.device = resolve_device(config.device)
        self.working = WorkingImages(images, config.image_size, store.cache_dir / "images")
        self.working_masks = WorkingMasks(store.cache_dir / "masks")
        self.truth = GroundTruth(config.gt, config.ignore) if config.gt else None
        self.latest: int | None = None  # the last finished iteration
        self.areas: dict[str, float] = {}  # of the latest iteration's masks
        self.notices: list[Notice] = []
        self.truth_checked = False
        # One for the whole run, so that it gives its warning once
        self.context = SeedContext(config, self.working, self.device, cancel, store)

    @property
    def active(self) -> list[str]:
        """Photos still in the run: those that have not failed to load."""
        return [stem for stem in self.working.stems if stem not in self.working.failed]

    def latest_masks(self, stems: Sequence[str]) -> Mapping[str, np.ndarray]:
        """The latest iteration's working masks of ``stems``, read from disk on access."""
        return self.working_masks.of_iteration(self.latest, stems)

    def load_fixed(self) -> dict[str, np.ndarray]:
        """The user's trusted corrections at full resolution, re-read each iteration so one made mid-run counts."""
        fixed = {}
        for stem, path in self.store.fixed_masks().items():
            if stem not in self.active:
                continue
            try:
                fixed[stem] = read_object_mask(path, self.working.full(stem).shape[:2])
            except ImageReadError as error:
                self.notices.append(Notice(f"corrected mask not used: {error}"))
        return fixed

    def phase(self, iteration: int, step: str) -> str:
        """A progress bar's name: the round and how many the run has ("iter 1 of 3: train"), as each bar's ETA
        is its phase's alone."""
        return f"iter {iteration} of {self.config.iterations}: {step}"

    def forget_changed_photos(self, iteration: int) -> Generator[Event, None, None]:
        """Leaves out of ``iteration``'s training the latest masks of photos whose file has changed since they were
        made (the photo edited, or replaced by another of its name): they are masks of another picture. The round
        labels those photos anew."""
        stale = [stem for stem in distributed.shard(list(self.areas)) if not self.working.is_current(stem)]
        phase = self.phase(iteration, "read photos changed since")
        readable = yield from read_each(self._changed_since_latest, stale, self.cancel, phase)
        # None for a photo that cannot be read now (named by read_each): every rank then leaves out the same.
        changed = distributed.gather_dicts({stem: readable.get(stem) for stem in stale})
        for stem, is_changed in changed.items():
            if is_changed is None:
                self.working.failed.setdefault(stem, ImageReadError(stem, "another process could not read it"))
            if is_changed is not False:
                del self.areas[stem]
        if names := [stem for stem, is_changed in changed.items() if is_changed]:
            one = len(names) == 1
            masks, them, were = ("mask", "it", "it was") if one else ("masks", "them", "they were")
            yield Notice(
                f"{counted(len(names), 'photo')} changed since iteration {self.latest} was made: {a_few(names)}; "
                f"iteration {self.latest}'s {masks} of {them} show{'s' if one else ''} {them} as {were}, so iteration "
                f"{iteration} does not train on {them} and labels {them} anew"
            )

    def _changed_since_latest(self, stem: str) -> bool:
        """Whether the photo's working copy, made anew as its file has changed, is of another picture than the
        latest mask: another shape than the mask, or unlike the copy cached before."""
        before, now = self.working.renewed(stem)
        if now.shape[:2] != self.working_masks.read(self.latest, stem).shape:
            return True
        return before is not None and not same_picture(before, now)

    def _keep(self, iteration: int, stem: str, masks: _Masks) -> MaskStats:
        full_mask, small_mask, uncertain = masks
        self.store.write_mask(iteration, stem, full_mask)
        self.working_masks.write(iteration, stem, small_mask)
        change = None
        if self.latest is not None and stem in self.areas:
            previous = self.working_masks.read(self.latest, stem)
            # Of another shape when the photo was edited while this round worked: no change to measure.
            change = iou(small_mask, previous) if previous.shape == small_mask.shape else None
        return MaskStats(float(np.mean(small_mask)), change, uncertain)

    def predict_iteration(
        self, iteration: int, model: torch.nn.Module, fixed: Mapping[str, np.ndarray] | None = None
    ) -> Generator[Event, None, dict[str, MaskStats]]:
        """Predict, sharpen and write every photo's mask.

        A photo with a trusted correction in ``fixed`` gets that mask, never a prediction.
        """
        fixed = fixed or {}
        predictor = MaskPredictor.for_run(model, self.device, self.config)

        def masks_for(stem: str, full: np.ndarray, small: np.ndarray) -> _Masks:
            if stem in fixed:
                return fixed[stem], resize_mask(fixed[stem], small.shape[:2]), None
            return predictor.predict(small, full)

        return (yield from self._write_iteration(iteration, self.active, self.phase(iteration, "predict"), masks_for))

    def write_masks(self, iteration: int, mask_of: MaskOfPhoto) -> Generator[Event, None, dict[str, MaskStats]]:
        """Write a seed's working-resolution masks, sharpened to full resolution on the photo."""

        def masks_for(stem: str, full: np.ndarray, small: np.ndarray) -> _Masks:
            small_mask = np.asarray(mask_of(stem, small), dtype=bool)
            sharp = sharpen_seed_mask(small_mask, small, full, self.config.upsample_radius, self.config.upsample_eps)
            return sharp, small_mask, None

        return (
            yield from self._write_iteration(iteration, self.active, self.phase(iteration, "seed masks"), masks_for)
        )

    def _write_iteration(
        self,
        iteration: int,
        stems: Sequence[str],
        phase: str,
        masks_for: Callable[[str, np.ndarray, np.ndarray], _Masks],
    ) -> Generator[Event, None, dict[str, MaskStats]]:
        """Write this rank's share of ``stems``; photos that fail to load are named and dropped."""
        stats = {}
        mine = distributed.shard(stems)
        for index, (stem, photo) in enumerate(read_photos(self.working, mine, self.config.workers)):
            self.cancel.check()
            if isinstance(photo, ImageReadError):
                yield Notice(f"skipped {photo}")
            else:
                stats[stem] = self._keep(iteration, stem, masks_for(stem, *photo))
            yield Progress(phase, index + 1, len(mine))
        return self._gathered(stats)  # also a barrier: every mask is on disk before rank 0 scores them

    def _gathered(self, stats: dict[str, MaskStats]) -> dict[str, MaskStats]:
        """Every rank's share of an iteration's mask statistics, in the photos' order.

        A photo another rank could not read (or that has no mask) is marked failed
        here too, so every rank shards the same list of photos in the next iteration.
        """
        gathered = distributed.gather_dicts(stats)
        for stem in self.active:
            if stem not in gathered:
                self.working.failed[stem] = ImageReadError(stem, "has no mask: another process could not read it")
        return {stem: gathered[stem] for stem in self.active}

    def finish(self, iteration: int, stats: dict[str, MaskStats], model, started: float) -> IterationResult:
        changes = [entry.change_iou for entry in stats.values() if entry.change_iou is not None]
        areas = {stem: entry.area for stem, entry in stats.items()}
        metrics = {
            "iteration": iteration,
            "images": len(stats),
            "trusted": len(self.trusted_for_next_round(areas)),
            "change_iou": float(np.mean(changes)) if changes else None,
            "elapsed_s": round(time.perf_counter() - started, 3),
        }
        checkpoint = self.store.model_path(iteration) if model is not None else None
        best = None
        if distributed.is_main():
            metrics.update(self._truth_scores(iteration, stats) or {})
            if model is not None:
                save_model(model, checkpoint, image_size=self.config.image_size, iteration=iteration)
            self.store.write_mask_stats(iteration, stats)
            best = self._best_iteration_with(metrics)
        result = IterationResult(
            iteration=iteration,
            mask_paths={stem: self.store.mask_path(iteration, stem) for stem in stats},
            metrics=metrics,
            checkpoint=checkpoint,
            elapsed_s=metrics["elapsed_s"],
            is_best=best == iteration,
            stems=list(stats),
        )
        if distributed.is_main():
            # Logged with its record, not as the result passes the log on its way out: a Ctrl-C or SIGTERM
            # landing in between would leave a finished iteration that the log never names.
            with stops_held():
                self.store.finish_iteration(metrics)
                self.store.append_log("info", result.describe())
            if best is not None:
                self.store.mark_best(best)
            if self.latest is not None:  # only the latest iteration's working masks are read again
                self.working_masks.discard(self.latest)
        distributed.barrier()  # the next iteration starts from rank 0's checkpoint
        self.latest = iteration
        self.areas = areas
        return result

    def trusted_for_next_round(self, areas: Mapping[str, float]) -> set[str]:
        """The photos whose masks of ``areas`` the next round trains on: those the area filter trusts, and every
        correction the user trusted."""
        corrected = (stem for stem in self.store.fixed_masks() if stem in self.active)
        return {*trusted_stems(areas, self.config.area_min, self.config.area_max), *corrected}

    def _truth_scores(self, iteration: int, stems: Iterable[str]) -> dict | None:
        if self.truth is None:
            return None
        scores, errors = [], []
        for stem in stems:
            try:
                scores.append(self.truth.score(stem, self.store.read_mask(iteration, stem)))
            except ImageReadError as error:
                errors.append(error)
        if not self.truth_checked:
            self.notices.extend(Notice(f"not scored: {message}") for message in unscored_messages(errors, len(scores)))
        self.truth_checked = True
        return mean_scores(scores)

    def drain_notices(self) -> Iterator[Notice]:
        notices, self.notices = self.notices, []
        yield from notices

    def _best_iteration_with(self, metrics: dict) -> int | None:
        """The best-scoring iteration once ``metrics`` is recorded (a resumed iteration replaces its old line)."""
        earlier = [entry for entry in self.store.metrics() if entry["iteration"] != metrics["iteration"]]
        scored = [entry for entry in (*earlier, metrics) if entry.get("miou") is not None]
        return max(scored, key=lambda entry: entry["miou"])["iteration"] if scored else None

    def reload(self, iteration: int) -> None:
        """Pick up a finished iteration's masks (for --resume); its working masks are rebuilt if the cache is gone."""
        areas = {}
        for stem in distributed.shard(self.active):
            if not self.store.has_mask(iteration, stem):
                continue
            if not self.working_masks.has(iteration, stem):
                mask = self.store.read_mask(iteration, stem)
                small = resize_mask(mask, working_shape(mask.shape, self.config.image_size))
                self.working_masks.write(iteration, stem, small)
            areas[stem] = float(np.mean(self.working_masks.read(iteration, stem)))
        self.areas = distributed.gather_dicts(areas)
        self.latest = iteration


def _open_images(config: RunConfig, images: ImageSet | None) -> ImageSet:
    """A new run's photos: ``images`` when given, else those of ``config.images``, or an error naming the problem."""
    if images is not None:
        return images
    if not config.images:
        raise LabellingError("no photos given: pass a folder of photos")
    try:
        return ImageSet.from_folder(config.images)
    except ImageReadError as error:
        raise LabellingError(str(error)) from None


def _resumed_photos(
    store: RunFolder, config: RunConfig, given: str | None, images: ImageSet | None
) -> tuple[RunConfig, ImageSet]:
    """A resumed run's photos: its own, where they are now, else those of the folder given."""
    if images is not None:
        return config, images
    try:
        folder, images = find_run_photos(store, config.images, given)
    except RunFolderError as error:
        raise LabellingError(f"cannot resume {store.root}: its photos cannot be read ({error})") from None
    return config.updated(images=folder), images


def _run_folder(config: RunConfig) -> RunFolder:
    if not config.out:
        raise LabellingError("no run folder given (--out RUN)")
    return RunFolder(config.out)


def _written_here(store: RunFolder, new_run: RunConfig | None) -> AbstractContextManager:
    """The run started (``new_run``) or continued by the one process that keeps its records, which holds
    the run against other writers until this one ends."""
    return store.writing(new_run) if distributed.is_main() else nullcontext()


def run_labelling(
    config: RunConfig,
    images: ImageSet | None = None,
    *,
    resume: bool = False,
    cancel: CancelToken | None = None,
) -> Iterator[Event]:
    """Label every photo: seed (iteration 0), then up to ``config.iterations`` refinement rounds.

    Every finished iteration is on disk before it is yielded; a cancel (or a
    kill) loses at most the iteration in progress, and ``resume=True``
    continues from the last finished one. The run's log (``RUN/log.txt``)
    keeps every notice, iteration line and the error that stops the run.
    """
    cancel = cancel or CancelToken()
    given = config.images
    store = _run_folder(config)
    if not resume:
        if distributed.is_main():  # before the photos are listed, which takes seconds for hundreds
            store.check_room_for_new_run()
        images = _open_images(config, images)  # a folder refused here leaves no run folder behind
    with _written_here(store, None if resume else config):
        distributed.barrier()  # the other ranks start once run.json is written and leftovers are gone
        if resume:
            config = store.read_config().continued_with(config)
        yield from _logged(store, _label_photos(config, store, images, given, resume, cancel))


def _logged(store: RunFolder, events: Iterator[Event]) -> Iterator[Event]:
    """``events``, with each notice and the error that stops the run kept in the run's log (an iteration's line
    is written as the iteration is recorded, in :meth:`_Run.finish`).

    A run started on a server is often opened later, when its notices are long gone from the terminal.
    """
    log = _run_log(store)
    try:
        for event in events:
            if isinstance(event, Notice):
                log(event.level, event.message)
            yield event
    except Exception as error:  # Ctrl-C is logged by the command line, wherever in its loop it lands
        log("error", describe_error(error))
        raise


def _run_log(store: RunFolder) -> Callable[[str, str], None]:
    """Writes a line to the run's log, in the one process that keeps the run's records."""
    return store.append_log if distributed.is_main() else lambda level, message: None


def _label_photos(
    config: RunConfig, store: RunFolder, images: ImageSet | None, given: str | None, resume: bool, cancel: CancelToken
) -> Iterator[Event]:
    if resume:
        config, images = _resumed_photos(store, config, given, images)
        if elsewhere := photos_not_read_from(config.images, given):
            yield Notice(elsewhere)
    log = _run_log(store)
    log("info", f"{'resumed' if resume else 'started'} on {len(images)} photos from {config.images or 'napari layers'}")
    for message in images.skipped:
        yield Notice(f"skipped {message}")
    run = _Run(config, store, images, cancel)
    yield Notice(f"computing {describe_device(run.device)}", level="info")
    finished = store.finished_iterations()
    if _makes_a_network_from_the_backbone(config, store, finished[-1] if finished else None):
        yield from run.context.missing_weights_notice()  # now, not when its first network is made minutes later
    try:
        time_left = RunTimeLeft()
        if finished:
            run.reload(finished[-1])
            yield from _resuming(run, finished[-1])
        else:
            yield from time_left.said_by(_seed_iteration(run))
        first = (finished[-1] + 1) if finished else 1
        round_s = _last_round_s(store)
        for iteration in range(first, config.iterations + 1):
            time_left.start_round(round_s, rounds_after=config.iterations - iteration)
            result = yield from time_left.said_by(_refine_iteration(run, iteration))
            round_s = result.elapsed_s
            yield result
            change = result.metrics["change_iou"]
            rounds_left = iteration < config.iterations
            if rounds_left and run.truth is None and change is not None and change >= config.converge_iou:
                yield Notice(
                    f"stopped after iteration {iteration}: masks changed little (mean IoU with the previous "
                    f"iteration {change:.3f} >= {config.converge_iou})",
                    level="info",
                )
                break
        yield from _masks_to_check(run)
        log("info", f"{FINISHED} {run.latest}")
    except RunCancelled:
        kept = store.finished_iterations()
        yield Notice(f"{CANCELLED}; finished iterations {kept} are kept in {store.root}", level="info")


def _makes_a_network_from_the_backbone(config: RunConfig, store: RunFolder, last_finished: int | None) -> bool:
    """Whether the run will make a network from its backbone: its seed's, or the first round's GFN after a seed
    that left no network to fine-tune."""
    if last_finished is None:
        leaves_none = config.seed not in _SEEDS_LEAVING_A_NETWORK
        return config.seed in _SEEDS_TRAINING_FROM_THE_BACKBONE or (leaves_none and config.iterations >= 1)
    return config.iterations > last_finished and not store.model_path(last_finished).is_file()


def _last_round_s(store: RunFolder) -> float | None:
    """How long the run's last refinement round took (a resumed run's, say); None before one finished."""
    rounds = [entry["elapsed_s"] for entry in store.metrics() if entry["iteration"] >= 1]
    return rounds[-1] if rounds else None


def _resuming(run: _Run, last: int) -> Iterator[Notice]:
    """What a run resumed after its iteration ``last`` finds: which photos changed, and whether a round is left."""
    yield Notice(f"resuming after iteration {last}", level="info")
    yield from _photos_changed_since(run, last)
    if last >= run.config.iterations:
        yield Notice(
            f"iteration {last} was the run's last: to refine further, resume with "
            f"{describe_setting('iterations', last + 1)} or more",
            level="info",
        )


def _photos_changed_since(run: _Run, iteration: int) -> Iterator[Notice]:
    """A resumed run's photos that ``iteration`` did not label, and those it labelled that are gone: a folder
    may gain or lose photos between two sittings of a run, and the run goes on with the photos it has now."""
    labelled = {path.stem for path in run.store.masks_of(iteration)}
    photos = set(run.active)
    if unlabelled := sorted(photos - labelled):
        yield Notice(
            f"{counted(len(unlabelled), 'photo')} without a mask of iteration {iteration} (added since, or not "
            f"read then): {a_few(unlabelled)}; later iterations label them",
            level="info",
        )
    if gone := sorted(labelled - photos):
        yield Notice(
            f"{counted(len(gone), 'photo')} of iteration {iteration} no longer among the run's photos: "
            f"{a_few(gone)}; their masks so far stay in the run folder, and later iterations go on without them",
            level="info",
        )


def _masks_to_check(run: _Run) -> Iterator[Notice]:
    """After the last iteration, the masks most likely wrong: the network's least certain, and the area filter's."""
    config, iteration = run.config, run.latest
    try:
        stats = run.store.mask_stats(iteration)
    except RunFolderError as error:  # a resumed copy's last iteration, cut short: its masks are what count
        yield Notice(str(error))
        stats = {}
    if unsure := [stem for stem in check_first(stats, config.area_min, config.area_max) if stats[stem].uncertain]:
        named = [f"{stem} ({stats[stem].uncertain:.0%} uncertain)" for stem in unsure]
        where = run.store.mask_stats_path(iteration)
        yield Notice(f"iteration {iteration}: check first {a_few(named)}; every photo's figures: {where}", "info")
    if outside := _outside_area_range(run.areas, run.trusted_for_next_round(run.areas), config):
        yield Notice(f"iteration {iteration}: the area filter would not trust {outside}", level="info")


def _seed_iteration(run: _Run) -> Generator[Event, None, None]:
    started = time.perf_counter()
    methods = _seed_methods()
    if run.config.seed not in methods:
        raise LabellingError(f"the {run.config.seed!r} seed is not available in this version")
    output = yield from methods[run.config.seed](run.context)
    if output.model is not None:
        stats = yield from run.predict_iteration(0, output.model)
    else:
        stats = yield from run.write_masks(0, output.mask_of)
    result = run.finish(0, stats, output.model, started)
    yield from run.drain_notices()
    yield result


def _outside_area_range(areas: Mapping[str, float], kept: Container[str], config: RunConfig) -> str:
    """The masks, but ``kept``, that the area filter does not trust: the photos to look at first."""
    outside = [f"{stem} ({area:.1%})" for stem, area in areas.items() if stem not in kept]
    if not outside:
        return ""
    where = f"{config.area_min:.0%}-{config.area_max:.0%}"
    return f"{counted(len(outside), 'mask')} with the object outside {where} of the photo: {a_few(outside)}"


def _check_room(run: _Run, iteration: int, model: GFN) -> None:
    """Before a round trains for minutes, whether its disk has room for what it will write: as much as the round
    before wrote (its folder, and its masks' working copies), and a model file where that round (the seed) wrote
    none."""
    before = iteration - 1
    needed = sum(_bytes_under(folder) for folder in (run.store.iteration_dir(before), run.working_masks.folder(before)))
    if not run.store.model_path(before).is_file():
        needed += sum(weights.nbytes for weights in model.state_dict().values())
    disk = shutil.disk_usage(run.store.root)
    # Some network and FUSE disks say nothing of their room (a total of 0) and take writes all the same.
    if disk.total and disk.free < needed:
        raise LabellingError(
            f"iteration {iteration}: the disk of {run.store.root} has {disk.free / 1e6:.1f} MB free, and a round "
            f"writes about {needed / 1e6:.1f} MB (its masks and model file): make room, then resume the run"
        )


def _bytes_under(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def _refine_iteration(run: _Run, iteration: int) -> Generator[Event, None, IterationResult]:
    started = time.perf_counter()
    config = run.config
    yield from run.forget_changed_photos(iteration)
    fixed = run.load_fixed()
    predicted = trusted_stems({s: a for s, a in run.areas.items() if s not in fixed}, config.area_min, config.area_max)
    corrections = {s: resize_mask(m, working_shape(m.shape, config.image_size)) for s, m in fixed.items()}
    trusted = ChainMap(corrections, run.latest_masks(predicted))
    if not trusted:
        raise LabellingError(
            f"iteration {iteration}: no mask of iteration {iteration - 1} covers {config.area_min:.0%}-"
            f"{config.area_max:.0%} of its photo, so there is nothing to train on. Lower the "
            f"{describe_setting('area_min')} or raise the {describe_setting('area_max')}, or try another seed."
        )
    yield from run.drain_notices()
    corrected = f" ({len(fixed)} corrected by hand)" if fixed else ""
    outside = _outside_area_range(run.areas, trusted, config)
    left_out = f"; left out {outside}" if outside else ""
    yield Notice(
        f"iteration {iteration}: training on {len(trusted)} of {len(run.areas)} masks{corrected}{left_out}", "info"
    )
    previous = run.store.model_path(iteration - 1)
    if previous.is_file():  # a round fine-tunes the network of the round before
        model = load_model(previous, map_location=run.device)
    else:  # the seed made its masks without one
        model = yield from run.context.new_model()
    _check_room(run, iteration, model)
    yield from run.context.train(model, run.working, trusted, run.phase(iteration, "train"), config.epochs)
    stats = yield from run.predict_iteration(iteration, model, fixed)
    result = run.finish(iteration, stats, model, started)
    yield from run.drain_notices()
    return result
