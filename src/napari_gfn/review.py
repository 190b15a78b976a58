"""Which masks to check first: what an iteration records about each photo's mask, and the order to review them in."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["MaskStats", "check_first", "describe_mask", "stats_from_csv", "stats_to_csv"]


@dataclass(frozen=True)
class MaskStats:
    """What an iteration records about one photo's mask; the mask itself stays on disk."""

    area: float  # the share of the photo the object covers
    change_iou: float | None = None  # IoU with the previous iteration's mask, when there is one
    # Of the pixels the network called object or was unsure of (object probability between 0.2 and 0.8), the
    # share it was unsure of. None where no network predicted the mask: a seed's masks and a trusted correction.
    uncertain: float | None = None


def check_first(stats: Mapping[str, MaskStats], area_min: float, area_max: float) -> list[str]:
    """The photos in the order to check their masks: the ones the network is least sure of first.

    On real photographs this order finds the worst masks far sooner than the area
    filter does (benchmarks/check_first.py). Masks no network predicted come last,
    but a seed's masks (no figure at all) are ordered by the area filter alone:
    those it would not trust first.
    """
    by_name = sorted(stats)
    if all(entry.uncertain is None for entry in stats.values()):
        return sorted(by_name, key=lambda stem: area_min <= stats[stem].area <= area_max)
    return sorted(by_name, key=lambda stem: -_or_below_all(stats[stem].uncertain))


def _or_below_all(value: float | None) -> float:
    return -math.inf if value is None else value


def describe_mask(iteration: int, stats: MaskStats) -> str:
    """One line about a mask, for a person deciding whether to check it."""
    parts = [f"iteration {iteration}: object {stats.area:.0%} of the photo"]
    if stats.uncertain is not None:
        parts.append(f"uncertain {stats.uncertain:.0%}")
    if stats.change_iou is not None:
        parts.append(f"IoU {stats.change_iou:.2f} with iteration {iteration - 1}")
    return "; ".join(parts)


_COLUMNS = ("photo", "area", "change_iou", "uncertain")


def stats_to_csv(stats: Mapping[str, MaskStats]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_COLUMNS)
    for stem, entry in stats.items():
        writer.writerow([stem, *(_cell(value) for value in (entry.area, entry.change_iou, entry.uncertain))])
    return out.getvalue()


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def stats_from_csv(text: str) -> dict[str, MaskStats]:
    rows = csv.DictReader(io.StringIO(text))
    return {
        row["photo"]: MaskStats(float(row["area"]), _number(row["change_iou"]), _number(row["uncertain"]))
        for row in rows
    }


def _number(cell: str | None) -> float | None:
    if cell is None:  # csv gives None for the cells of a row cut short
        raise ValueError("a row ends early")
    return float(cell) if cell else None
