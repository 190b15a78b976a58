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
from paired_scores import PhotoScores, halves, mean_pair, paired_gain, score_pair
from quality import check_finished, dataset_folder, ground_truth

Setting = tuple[float, float, float, float]  # confidence, spatial, colour, weight


def score_settings(
    run: Path, dataset: Path, iteration: int, settings: list[Setting]
) -> tuple[PhotoScores, dict[Setting, PhotoScores]]:
    """Every photo's score: of the run's own masks, and of its masks redrawn by the CRF, per setting."""
    store = RunFolder(run)
    photos = ImageSet.from_folder(dataset / "images")
    truth = ground_truth(dataset)

    run_scores: PhotoScores = {}
    crf_scores: dict[Setting, PhotoScores] = {setting: {} for setting in settings}
    for index, record in enumerate(photos):
        photo, mask = record.load(), store.read_mask(iteration, record.stem)
        run_scores[record.stem] = score_pair(truth.score(record.stem, mask))
        for setting in settings:
            confidence, *kernel = setting
            redrawn = crf_refine(photo, np.where(mask, confidence, 1 - confidence), *kernel)
            crf_scores[setting][record.stem] = score_pair(truth.score(record.stem, redrawn))
        if index % 50 == 0:
            print(f"{index}/{len(photos)} photos", flush=True)
    return run_scores, crf_scores


def report(run_scores: PhotoScores, crf_scores: dict[Setting, PhotoScores]) -> None:
    """The run's means, then each setting's means and per-photo gain over it, best on validation first."""
    parts = halves(list(run_scores))

    def mean_over_all(scores: PhotoScores) -> str:
        means = mean_pair(scores, parts["all"])
        return f"all photos {means[0]:.3f} / {means[1]:.3f}"

    def mean_validation_gain(setting: Setting) -> float:
        return float(np.mean([crf_scores[setting][stem][0] - run_scores[stem][0] for stem in parts["validation"]]))

    print(f"run's masks: {mean_over_all(run_scores)}")
    for setting in sorted(crf_scores, key=mean_validation_gain, reverse=True):
        print("confidence {}, spatial {}, colour {}, weight {}: ".format(*setting) + mean_over_all(crf_scores[setting]))
        for part in ("validation", "test"):
            print(f"  {part}: {paired_gain(crf_scores[setting], run_scores, parts[part])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("dataset", type=dataset_folder)
    parser.add_argument("--iteration", type=int, default=2, help="whose masks are redrawn")
    parser.add_argument("--confidence", type=float, nargs="+", default=[0.7, 0.8, 0.9], help="P(object) inside a mask")
    parser.add_argument("--spatial", type=float, nargs="+", default=[20, 50], help="appearance kernel width, pixels")
    parser.add_argument("--colour", type=float, nargs="+", default=[5, 13], help="appearance kernel width, RGB levels")
    parser.add_argument("--weight", type=float, nargs="+", default=[5, 10], help="appearance kernel strength")
    args = parser.parse_args()
    check_finished(parser, args.run, args.iteration)
    if not crf_available():
        parser.error("needs pydensecrf: pip install 'napari-gfn[crf]'")
    settings = list(itertools.product(args.confidence, args.spatial, args.colour, args.weight))
    report(*score_settings(args.run, args.dataset, args.iteration, settings))


if __name__ == "__main__":
    main()
