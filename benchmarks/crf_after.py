"""A dense CRF on a finished iteration's masks: does it move their edges closer to the objects?

Each photo's mask of RUN/iter_NN becomes P(object) = CONFIDENCE inside and 1 - CONFIDENCE outside;
the CAM seed's dense CRF (``napari_gfn.seeds.cam.crf_refine``, which needs the ``crf`` extra) then
redraws it on the full-resolution photo, once per setting, and every mask is scored against
DATASET/masks (and DATASET/ignore when present). A setting is chosen on the validation half of the
split docs/results.md uses (photos sorted by name, even positions) and reported on the test half.

    python benchmarks/crf_after.py RUN DATASET_DIR [--iteration 2] [--confidence 0.7 0.9] [--spatial 20 50]
        [--colour 5 13] [--weight 5 10]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from napari_gfn.engine import ImageSet
from napari_gfn.seeds.cam import crf_available, crf_refine
from napari_gfn.store import RunFolder
from paired_scores import halves, paired_gain
from quality import ground_truth

Setting = tuple[float, float, float, float]  # confidence, spatial, colour, weight
RUN_MASKS: Setting = (0.0, 0.0, 0.0, 0.0)  # stands for the run's own masks


def score_settings(run: Path, dataset: Path, iteration: int, settings: list[Setting]) -> dict[Setting, dict]:
    """Per setting (and for the run's masks), every photo's (fg IoU, mIoU)."""
    store = RunFolder(run)
    photos = ImageSet.from_folder(dataset / "images")
    truth = ground_truth(dataset)
    scores: dict[Setting, dict[str, np.ndarray]] = {setting: {} for setting in [RUN_MASKS, *settings]}

    def keep(setting: Setting, stem: str, mask: np.ndarray) -> None:
        score = truth.score(stem, mask)
        scores[setting][stem] = np.array([score.fg_iou, score.miou])

    for index, record in enumerate(photos):
        photo, mask = record.load(), store.read_mask(iteration, record.stem)
        keep(RUN_MASKS, record.stem, mask)
        for setting in settings:
            confidence, *kernel = setting
            keep(setting, record.stem, crf_refine(photo, np.where(mask, confidence, 1 - confidence), *kernel))
        if index % 50 == 0:
            print(f"{index}/{len(photos)} photos", flush=True)
    return scores


def report(scores: dict[Setting, dict]) -> None:
    """Each setting's means and per-photo gain over the run's masks, the best on the validation half first."""
    parts = halves(list(scores[RUN_MASKS]))

    def mean_gain(setting: Setting, part: str) -> float:
        return float(np.mean([scores[setting][stem][0] - scores[RUN_MASKS][stem][0] for stem in parts[part]]))

    for setting in sorted(scores, key=lambda setting: -mean_gain(setting, "validation")):
        name = "confidence {}, spatial {}, colour {}, weight {}".format(*setting)
        name = "run's masks" if setting == RUN_MASKS else name
        means = np.mean([scores[setting][stem] for stem in parts["all"]], axis=0)
        print(f"{name}: all photos {means[0]:.3f} / {means[1]:.3f}")
        if setting != RUN_MASKS:
            for part in ("validation", "test"):
                print(f"  {part}: {paired_gain(scores[setting], scores[RUN_MASKS], parts[part])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--iteration", type=int, default=2, help="whose masks are redrawn")
    parser.add_argument("--confidence", type=float, nargs="+", default=[0.7, 0.8, 0.9], help="P(object) inside a mask")
    parser.add_argument("--spatial", type=float, nargs="+", default=[20, 50], help="appearance kernel width, pixels")
    parser.add_argument("--colour", type=float, nargs="+", default=[5, 13], help="appearance kernel width, RGB levels")
    parser.add_argument("--weight", type=float, nargs="+", default=[5, 10], help="appearance kernel strength")
    args = parser.parse_args()
    if not crf_available():
        parser.error("needs pydensecrf: pip install 'napari-gfn[crf]'")
    settings = list(itertools.product(args.confidence, args.spatial, args.colour, args.weight))
    report(score_settings(args.run, args.dataset, args.iteration, settings))


if __name__ == "__main__":
    main()
