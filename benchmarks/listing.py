"""Listing a folder of photos: the time ``ImageSet.from_folder`` takes before a run (and the dock's Start) can begin.

Writes empty files named as photos (listing reads no pixels) in three layouts, then times the listing:
``flat``, N photos in one folder; ``beside``, N/2 photos with 20 subfolders of N/40 more, which are left
out and named in a warning; ``tree``, 20 site folders of N/40 photos, each with a thumbnails subfolder of
as many. Reports the median of 7 listings after one warm-up.

    python benchmarks/listing.py [--photos 2000 10000]

To time another version of napari-gfn, put its ``src`` first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _timing import median_seconds
from napari_gfn.engine.images import ImageSet

SUBFOLDERS = 20


def _touch(folder: Path, prefix: str, count: int) -> None:
    folder.mkdir(parents=True)
    for index in range(count):
        (folder / f"{prefix}_{index:05d}.jpg").touch()


def write_layouts(root: Path, photos: int) -> dict[str, Path]:
    _touch(root / "flat", "IMG", photos)
    _touch(root / "beside", "IMG", photos // 2)
    per_folder = photos // (2 * SUBFOLDERS)
    for index in range(SUBFOLDERS):
        _touch(root / "beside" / f"year {index:02d}", f"Y{index:02d}", per_folder)
        _touch(root / "tree" / f"site {index:02d}", f"S{index:02d}", per_folder)
        _touch(root / "tree" / f"site {index:02d}" / "thumbs", f"S{index:02d}", per_folder)
    return {name: root / name for name in ("flat", "beside", "tree")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, nargs="+", default=[2000, 10000])
    args = parser.parse_args()
    print("| photos | layout | photos listed | warnings | median listing |")
    print("|---|---|---|---|---|")
    for photos in args.photos:
        with tempfile.TemporaryDirectory() as temporary:
            for name, folder in write_layouts(Path(temporary), photos).items():
                listed = ImageSet.from_folder(folder)
                seconds = median_seconds(lambda folder=folder: ImageSet.from_folder(folder), repeats=7)
                print(f"| {photos} | {name} | {len(listed)} | {len(listed.skipped)} | {seconds * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
