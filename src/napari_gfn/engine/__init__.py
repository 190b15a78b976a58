"""The labelling engine: image sets, training, prediction, iterative refinement and metrics. No Qt, no napari."""

import lazy_loader

from .events import CancelToken, IterationResult, LabellingError, Notice, PhaseBars, Progress, RunCancelled
from .images import ImageReadError, ImageRecord, ImageSet
from .metrics import GroundTruth, evaluate_run, score_mask

# Refinement loads torch (4-5 s on a small machine), so it loads on first use: a napari dock that imports the
# engine opens at once, and its first run loads torch in the worker thread.
__getattr__, _, _refinement = lazy_loader.attach(
    __name__, submod_attrs={"refine": ["resolve_device", "run_labelling", "trusted_stems"]}
)

__all__ = [
    "CancelToken",
    "GroundTruth",
    "ImageReadError",
    "ImageRecord",
    "ImageSet",
    "IterationResult",
    "LabellingError",
    "Notice",
    "PhaseBars",
    "Progress",
    "RunCancelled",
    "evaluate_run",
    "score_mask",
    *_refinement,
]
