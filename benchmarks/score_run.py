"""Per-photo scores of a run folder's finished iterations, written as the CSV that ``quality.py`` writes.

For runs that ``quality.py`` did not start or finish, such as ``napari-gfn label ... --resume``
or a run stopped early:

    python benchmarks/score_run.py RUN DATASET CSV

DATASET is a folder with ``masks/`` and optional ``ignore/``. The CSV has the columns photo,
iteration, fg_iou, miou; ``paired_scores.py`` reads it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from quality import ground_truth, truth_folder, write_per_photo_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="run folder")
    parser.add_argument("dataset", type=truth_folder, help="folder with masks/ and optional ignore/")
    parser.add_argument("csv", type=Path, help="CSV to write")
    args = parser.parse_args()
    write_per_photo_scores(args.run, ground_truth(args.dataset), args.csv)


if __name__ == "__main__":
    main()
