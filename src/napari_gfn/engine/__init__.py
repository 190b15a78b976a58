"""The labelling engine: image sets, training, prediction, iterative refinement and metrics. No Qt, no napari."""

from .events import CancelToken, IterationResult, LabellingError, Notice, PhaseBars, Progress, RunCancelled
from .images import ImageReadError, ImageRecord, ImageSet
from .metrics import GroundTruth, evaluate_run, score_mask
from .refine import resolve_device, run_labelling, trusted_stems

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
    "resolve_device",
    "run_labelling",
    "score_mask",
    "trusted_stems",
]
