"""Iterative refinement: seed masks, then train-predict-filter rounds, each one saved as it finishes.

:func:`run_labelling` is a generator. It yields :class:`Progress` and
:class:`Notice` events while it works and one :class:`IterationResult` per
finished iteration. The command line iterates it; the napari widget runs it
in a worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from napari_gfn.config import RunConfig
from napari_gfn.engine import distributed
from napari_gfn.engine.events import (
    CancelToken,
    IterationResult,
    LabellingError,
    Notice,
    Progress,
    RunCancelled,
)
from napari_gfn.engine.images import ImageReadError, ImageSet, read_mask
from napari_gfn.engine.metrics import GroundTruth, iou, mean_scores
from napari_gfn.engine.predict import MaskPredictor, sharpen_to_full_resolution
from napari_gfn.engine.training import new_model, train_on_targets
from napari_gfn.engine.working import WorkingImages, resize_mask, working_shape
from napari_gfn.network import GFN, load_model, save_model
from napari_gfn.store import RunFolder

__all__ = ["Event", "SeedContext", "SeedOutput", "resolve_device", "run_labelling", "trusted_masks"]

Event = Progress | Notice | IterationResult


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is an error, not a silent CPU run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LabellingError(f"device {name!r} was requested but this machine has no usable CUDA GPU; use --device cpu")
    return torch.device(name)


def trusted_masks(masks: Mapping[str, np.ndarray], area_min: float, area_max: float) -> dict[str, np.ndarray]:
    """The masks whose object covers between ``area_min`` and ``area_max`` of the photo (inclusive)."""
    return {stem: mask for stem, mask in masks.items() if area_min <= float(np.mean(mask)) <= area_max}


@dataclass(frozen=True)
class SeedOutput:
    """Iteration 0 comes either from a model that predicts every photo or from masks at working resolution."""

    model: torch.nn.Module | None = None
    masks: dict[str, np.ndarray] | None = None


@dataclass
class SeedContext:
    """What a seed method may use: the settings, the photos, and the engine's training loop."""

    config: RunConfig
    working: WorkingImages
    device: torch.device
    cancel: CancelToken
    store: RunFolder

    def new_model(self) -> GFN:
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
    from napari_gfn.seeds.otsu import otsu_seed
    from napari_gfn.seeds.transfer import transfer_seed

    return {"otsu": otsu_seed, "transfer": transfer_seed, "cam": cam_seed}


class _Run:
    """The state of one run between iterations: photos still usable and their latest masks."""

    def __init__(self, config: RunConfig, store: RunFolder, images: ImageSet, cancel: CancelToken) -> None:
        self.config = config
        self.store = store
        self.cancel = cancel
        self.device = resolve_device(config.device)
        self.working = WorkingImages(images, config.image_size, store.cache_dir / "images")
        self.truth = GroundTruth(config.gt, config.ignore) if config.gt else None
        self.masks: dict[str, np.ndarray] = {}
        self.notices: list[Notice] = []
        self.truth_checked = False

    @property
    def active(self) -> list[str]:
        """Photos still in the run: those that have not failed to load."""
        return [stem for stem in self.working.stems if stem not in self.working.failed]

    def context(self) -> SeedContext:
        return SeedContext(self.config, self.working, self.device, self.cancel, self.store)

    def load_fixed(self) -> dict[str, np.ndarray]:
        """The user's trusted corrections at full resolution, re-read each iteration so one made mid-run counts."""
        fixed = {}
        for stem, path in self.store.fixed_masks().items():
            if stem not in self.active:
                continue
            try:
                fixed[stem] = read_mask(path, self.working.full(stem).shape[:2]) > 127
            except ImageReadError as error:
                self.notices.append(Notice(f"corrected mask not used: {error}"))
        return fixed

    def predict_iteration(
        self, iteration: int, model: torch.nn.Module, fixed: Mapping[str, np.ndarray] | None = None
    ) -> Iterator[Event]:
        """Predict, sharpen and write every photo's mask; photos that fail to load are named and dropped.

        A photo with a trusted correction in ``fixed`` gets that mask, never a prediction.
        """
        fixed = fixed or {}
        predictor = MaskPredictor(model, self.device, self.config.upsample_radius, self.config.upsample_eps)
        phase = f"iter {iteration}: predict"
        new_masks = {}
        stems = distributed.shard(self.active)
        for index, stem in enumerate(stems):
            self.cancel.check()
            try:
                full = self.working.full(stem)
            except ImageReadError as error:
                yield Notice(f"skipped {error}")
                continue
            if stem in fixed:
                full_mask = fixed[stem]
                small_mask = resize_mask(full_mask, working_shape(full_mask.shape, self.config.image_size))
            else:
                full_mask, small_mask = predictor.predict(self.working.get(stem, full), full)
            self.store.write_mask(iteration, stem, full_mask)
            new_masks[stem] = small_mask
            yield Progress(phase, index + 1, len(stems))
        return self._gathered(new_masks)

    def _gathered(self, masks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every rank's share of an iteration's working masks, in the photos' order.

        A photo another rank could not read is marked failed here too, so every rank
        shards the same list of photos in the next iteration.
        """
        gathered = distributed.gather_masks(masks)
        for stem in self.active:
            if stem not in gathered:
                self.working.failed[stem] = ImageReadError(stem, "could not be read by another process")
        return {stem: gathered[stem] for stem in self.active}

    def write_masks(self, iteration: int, small_masks: Mapping[str, np.ndarray]) -> Iterator[Event]:
        """Write seed masks given at working resolution, sharpened to full resolution on the photo."""
        mine = distributed.shard(list(small_masks))
        for index, stem in enumerate(mine):
            self.cancel.check()
            full = self.working.full(stem)
            probability = torch.from_numpy(small_masks[stem].astype(np.float32))
            full_mask = sharpen_to_full_resolution(
                probability,
                self.working.get(stem, full),
                full,
                self.config.upsample_radius,
                self.config.upsample_eps,
            )
            self.store.write_mask(iteration, stem, full_mask)
            yield Progress(f"iter {iteration}: write", index + 1, len(mine))
        distributed.barrier()  # every mask is on disk before rank 0 scores them

    def finish(
        self, iteration: int, new_masks: dict[str, np.ndarray], model, started: float, trusted: int
    ) -> IterationResult:
        previous = self.masks
        changes = [iou(new_masks[s], previous[s]) for s in new_masks if s in previous]
        metrics = {
            "iteration": iteration,
            "images": len(new_masks),
            "trusted": trusted,
            "change_iou": float(np.mean(changes)) if changes else None,
            "elapsed_s": round(time.perf_counter() - started, 3),
        }
        checkpoint = self.store.model_path(iteration) if model is not None else None
        best = None
        if distributed.is_main():
            metrics.update(self._truth_scores(iteration, new_masks) or {})
            if model is not None:
                save_model(model, checkpoint, image_size=self.config.image_size, iteration=iteration)
            self.store.finish_iteration(metrics)
            best = self._mark_best()
        distributed.barrier()  # the next iteration starts from rank 0's checkpoint
        self.masks = new_masks
        return IterationResult(
            iteration=iteration,
            mask_paths={stem: self.store.mask_path(iteration, stem) for stem in new_masks},
            metrics=metrics,
            checkpoint=checkpoint,
            elapsed_s=metrics["elapsed_s"],
            is_best=best == iteration,
            stems=list(new_masks),
        )

    def _truth_scores(self, iteration: int, masks: Mapping[str, np.ndarray]) -> dict | None:
        if self.truth is None:
            return None
        scores = []
        for stem in masks:
            try:
                scores.append(self.truth.score(stem, self.store.read_mask(iteration, stem)))
            except ImageReadError as error:
                if not self.truth_checked:
                    self.notices.append(Notice(f"not scored: {error}"))
        self.truth_checked = True
        return mean_scores(scores)

    def drain_notices(self) -> Iterator[Notice]:
        notices, self.notices = self.notices, []
        yield from notices

    def _mark_best(self) -> int | None:
        scored = [entry for entry in self.store.metrics() if entry.get("miou") is not None]
        if not scored:
            return None
        best = max(scored, key=lambda entry: entry["miou"])["iteration"]
        self.store.mark_best(best)
        return best

    def reload_masks(self, iteration: int) -> None:
        """Working-resolution masks of a finished iteration, read back from disk (for --resume)."""
        self.masks = {}
        for stem in self.active:
            if not self.store.has_mask(iteration, stem):
                continue
            mask = self.store.read_mask(iteration, stem)
            self.masks[stem] = resize_mask(mask, working_shape(mask.shape, self.config.image_size))


def _open_images(config: RunConfig, images: ImageSet | None) -> ImageSet:
    if images is not None:
        return images
    if not config.images:
        raise LabellingError("no photos given: pass a folder of photos")
    try:
        return ImageSet.from_folder(config.images)
    except ImageReadError as error:
        raise LabellingError(str(error)) from None


def _start_store(config: RunConfig, resume: bool) -> tuple[RunConfig, RunFolder]:
    if not config.out:
        raise LabellingError("no run folder given (--out RUN)")
    store = RunFolder(config.out)
    if distributed.is_main():
        if resume:
            store.discard_unfinished()
        else:
            store.create(config)
    distributed.barrier()  # the other ranks start once run.json is written and leftovers are gone
    if resume:
        saved = store.read_config()
        config = saved.updated(iterations=max(saved.iterations, config.iterations))
    return config, store


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
    continues from the last finished one.
    """
    cancel = cancel or CancelToken()
    config, store = _start_store(config, resume)
    images = _open_images(config, images)
    for message in images.skipped:
        yield Notice(f"skipped {message}")
    run = _Run(config, store, images, cancel)
    finished = store.finished_iterations()
    try:
        if finished:
            run.reload_masks(finished[-1])
            yield Notice(f"resuming after iteration {finished[-1]}", level="info")
        else:
            yield from _seed_iteration(run)
        first = (finished[-1] + 1) if finished else 1
        for iteration in range(first, config.iterations + 1):
            result = yield from _refine_iteration(run, iteration)
            yield result
            change = result.metrics["change_iou"]
            if run.truth is None and change is not None and change >= config.converge_iou:
                yield Notice(
                    f"stopped after iteration {iteration}: masks changed little (mean IoU with the previous "
                    f"iteration {change:.3f} >= {config.converge_iou})",
                    level="info",
                )
                break
    except RunCancelled:
        kept = store.finished_iterations()
        yield Notice(f"cancelled; finished iterations {kept} are kept in {store.root}", level="info")


def _seed_iteration(run: _Run) -> Generator[Event, None, None]:
    started = time.perf_counter()
    methods = _seed_methods()
    if run.config.seed not in methods:
        raise LabellingError(f"the {run.config.seed!r} seed is not available in this version")
    output = yield from methods[run.config.seed](run.context())
    if output.model is not None:
        masks = yield from run.predict_iteration(0, output.model)
    else:
        yield from run.write_masks(0, output.masks)
        masks = output.masks
    trusted = len(trusted_masks(masks, run.config.area_min, run.config.area_max))
    result = run.finish(0, masks, output.model, started, trusted)
    yield from run.drain_notices()
    yield result


def _refine_iteration(run: _Run, iteration: int) -> Generator[Event, None, IterationResult]:
    started = time.perf_counter()
    config = run.config
    fixed = run.load_fixed()
    trusted = trusted_masks({s: m for s, m in run.masks.items() if s not in fixed}, config.area_min, config.area_max)
    trusted.update({s: resize_mask(m, working_shape(m.shape, config.image_size)) for s, m in fixed.items()})
    if not trusted:
        raise LabellingError(
            f"iteration {iteration}: no mask of iteration {iteration - 1} covers {config.area_min:.0%}-"
            f"{config.area_max:.0%} of its photo, so there is nothing to train on. Widen the area range "
            "(--area-min/--area-max) or try another seed."
        )
    yield from run.drain_notices()
    corrected = f" ({len(fixed)} corrected by hand)" if fixed else ""
    yield Notice(f"iteration {iteration}: training on {len(trusted)} of {len(run.masks)} masks{corrected}", "info")
    previous = run.store.model_path(iteration - 1)
    model = load_model(previous, map_location=run.device) if previous.is_file() else run.context().new_model()
    yield from run.context().train(model, run.working, trusted, f"iter {iteration}: train", config.epochs)
    masks = yield from run.predict_iteration(iteration, model, fixed)
    result = run.finish(iteration, masks, model, started, len(trusted))
    yield from run.drain_notices()
    return result
