"""A run's photos found again: where they were, in their place relative to the run, or in a folder the user gives."""

from __future__ import annotations

import os

from napari_gfn.store import RunFolder, RunFolderError

from .images import ImageReadError, ImageSet

__all__ = ["find_run_photos", "photos_not_read_from"]


def find_run_photos(store: RunFolder, recorded: str | None, given: str | None) -> tuple[str, ImageSet]:
    """The first of ``recorded`` (the photo folder ``read_config`` gives) and ``given`` that holds the run's
    photos, with the photos; a RunFolderError naming what each folder lacks.

    A folder holds them when one of its photos has a mask in the run's first finished iteration (any photos
    do for a run that finished none). Existing is not enough: copied away from its photos, a run that was
    made inside its photo folder finds its new parent folder in the photos' place.
    """
    problems = []
    for folder in dict.fromkeys(folder for folder in (recorded, given) if folder):
        try:
            photos = ImageSet.from_folder(folder)
        except ImageReadError as error:
            problems.append(str(error))
            continue
        if _has_a_mask_for_one_of(store, photos):
            return folder, photos
        problems.append(f"{folder}: none of its photos has a mask in this run")
    raise RunFolderError("; ".join(problems) or "the run records no photo folder")


def _has_a_mask_for_one_of(store: RunFolder, photos: ImageSet) -> bool:
    finished = store.finished_iterations()
    return not finished or any(store.has_mask(finished[0], stem) for stem in photos.stems)


def photos_not_read_from(found: str | None, given: os.PathLike | str | None) -> str:
    """What to say when a folder was ``given`` but the run found its own photos in ``found``; "" otherwise."""
    if given and found and os.path.abspath(given) != os.path.abspath(found):
        return f"photos are read from {found}, where this run's own photos are, not from {given}"
    return ""
