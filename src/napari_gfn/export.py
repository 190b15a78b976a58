"""Exporting a run's labels: one file per photo, named after it, at the photo's full resolution."""

from __future__ import annotations

import io
import os
from collections.abc import Generator, Iterable
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from napari_gfn._atomic import atomic_write_mask_png, atomic_write_png, atomic_write_tiff
from napari_gfn.config import RunConfig
from napari_gfn.engine.events import CancelToken, LabellingError, Notice, Progress
from napari_gfn.engine.images import ImageReadError, ImageRecord, a_few, counted, read_object_mask, size_mismatch
from napari_gfn.engine.run_photos import find_run_photos, photos_not_read_from
from napari_gfn.store import RunFolder, RunFolderError

__all__ = ["EXPORT_FORMATS", "describe_export", "export_labels", "resolve_iteration"]

EXPORT_FORMATS = ("png", "tif", "cutout")
_SUFFIXES = {"png": ".png", "tif": ".tif", "cutout": ".png"}


def resolve_iteration(store: RunFolder, iteration: int | str) -> int:
    """An iteration number from ``"best"``, ``"last"`` or a number, checked to be finished."""
    finished = store.finished_iterations()
    if not finished:
        raise LabellingError(f"{store.root}: the run has no finished iteration to export")
    if iteration == "best":
        return store.best_iteration()
    if iteration == "last":
        return finished[-1]
    if int(iteration) not in finished:
        raise LabellingError(f"{store.root}: iteration {iteration} is not finished; finished: {finished}")
    return int(iteration)


def _why_chosen(store: RunFolder, asked: str, chosen: int) -> str:
    """Why "best" or "last" is iteration ``chosen``: by its score against true masks, or as the last finished."""
    score = next((entry.get("miou") for entry in store.metrics() if entry["iteration"] == chosen), None)
    if asked == "best" and score is not None:
        return f"the best against the true masks (mIoU {score:.3f})"
    if asked == "best":
        return "the last, as the run holds no scores against true masks to choose the best by"
    return "the last"


def export_labels(
    run_dir: os.PathLike | str,
    out_dir: os.PathLike | str,
    iteration: int | str = "best",
    fmt: str = "png",
    cancel: CancelToken | None = None,
    photos_now: os.PathLike | str | None = None,
) -> Generator[Progress | Notice, None, list[Path]]:
    """Write every photo's mask of one iteration to ``out_dir/<stem>.<fmt>``; returns the files.

    Photos sorted into subfolders (one per species, say) have their masks sorted the same way:
    ``out_dir/<subfolder>/<stem>.<fmt>``. PNG files hold 0/255; TIFF files are label images
    (0 background, 1 object); cut-outs are the photos as RGBA PNGs, transparent but for the object.
    A mask the user corrected and trusted replaces the iteration's mask; paint not trusted (a draft) is named.
    A mask file that cannot be read is named in a notice and the others are written. Photos found
    neither where they were nor in their place relative to the run are looked for in ``photos_now``.
    Files that would replace photos are refused before any is written.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}")
    cancel = cancel or CancelToken()
    store = RunFolder(run_dir)
    config = store.read_config()  # first, so that a folder that holds no run is said to be none
    chosen = resolve_iteration(store, iteration)
    out_dir = Path(out_dir)
    _check_out_dir(store, config, out_dir)
    if iteration in ("best", "last"):
        yield Notice(f"exporting iteration {chosen}, {_why_chosen(store, iteration, chosen)}", level="info")
    masks = {path.stem: path for path in store.masks_of(chosen)}
    masks.update(store.fixed_masks())
    if drafted := [stem for stem in store.drafts() if stem in masks]:
        yield Notice(
            f"not exported: the paint not trusted on the masks of {counted(len(drafted), 'photo')} ({a_few(drafted)}), "
            f"kept in {store.drafts_dir}: to export a correction, trust its layer in napari "
            "(Trust selected Labels layer), then export again"
        )
    cutting = fmt == "cutout"
    folder, photos = yield from _photos_of_masks(store, config.images, photos_now, list(masks), out_dir, cutting)
    if cutting:  # a mask whose photo is gone has nothing to cut; those were named together
        masks = {stem: path for stem, path in masks.items() if stem in photos}
    sorted_into = {stem: photos[stem].path.parent.relative_to(folder) for stem in masks if stem in photos}
    targets = {stem: out_dir / sorted_into.get(stem, "") / f"{stem}{_SUFFIXES[fmt]}" for stem in masks}
    _check_no_photo_is_replaced(targets.values(), photos.values())
    written = []
    for index, (stem, path) in enumerate(masks.items()):
        cancel.check()
        try:
            mask = read_object_mask(path)
            cutout = _cutout(photos[stem], mask, path) if cutting else None
        except ImageReadError as error:
            yield Notice(f"not exported: {error}")
        else:
            target = targets[stem]
            written.append(atomic_write_png(target, *cutout) if cutout is not None else _write(target, mask, fmt))
        yield Progress(f"export iteration {chosen}", index + 1, len(masks))
    return written


def describe_export(written: list[Path], out_dir: os.PathLike | str) -> str:
    """The line that reports an export: how many files, where, and into how many subfolders."""
    out_dir = Path(out_dir)
    subfolders = {path.parent for path in written} - {out_dir}
    sorted_into = f", sorted into {counted(len(subfolders), 'subfolder')} as the photos are" if subfolders else ""
    return f"wrote {len(written)} files to {out_dir}{sorted_into}"


def _photos_of_masks(
    store: RunFolder,
    recorded: str | None,
    photos_now: os.PathLike | str | None,
    stems: list[str],
    out_dir: Path,
    cutting: bool,
) -> Generator[Notice, None, tuple[Path | None, dict[str, ImageRecord]]]:
    """The run's photo folder and its photos by stem, which sort the masks as the photos are ("ophrys/" for a
    species' subfolder); none found sorts none, but leaves cut-outs nothing to cut, so they are refused."""
    if not recorded and not cutting:  # a run of arrays handed to the engine: nothing to sort by
        return None, {}
    try:
        folder, found = find_run_photos(store, recorded, str(photos_now) if photos_now else None)
    except RunFolderError as error:  # moved without its photos (from a GPU server, say)
        if cutting:
            raise LabellingError(
                f"cut-outs are cut from the run's photos, which are not found: {error}; give the folder they are "
                "in now (--photos, or the Photo folder)"
            ) from None
        yield Notice(f"every mask is written into {out_dir} itself, not sorted as the photos are: {error}")
        return None, {}
    if elsewhere := photos_not_read_from(folder, photos_now):
        yield Notice(elsewhere)
    photos = {record.stem: record for record in found.records}
    if missing := [stem for stem in stems if stem not in photos]:
        written = "not exported" if cutting else f"masks written into {out_dir} itself"
        yield Notice(f"{written}, as their photos are no longer in {folder}: {a_few(missing)} ({len(missing)} in all)")
    return Path(folder), photos


def _cutout(photo: ImageRecord, mask: np.ndarray, mask_path: Path) -> tuple[np.ndarray, dict]:
    """The photo as RGBA, opaque on the object, and transparent and black elsewhere; with Pillow's options
    that carry the photo's metadata to the PNG.

    Black, as a cut-out whose transparency is dropped should not show the background again; it also
    makes the PNG 2.5 times smaller and faster to write (12 MP: 3.1 MB in 1.2 s, against 7.7 MB in 2.8 s).
    """
    rgb = photo.load()
    if rgb.shape[:2] != mask.shape:
        raise size_mismatch(str(mask_path), "mask is", mask.shape, rgb.shape[:2])
    rgb[~mask] = 0
    return np.dstack([rgb, mask.astype(np.uint8) * 255]), _metadata_to_keep(photo.path)


def _metadata_to_keep(path: Path) -> dict:
    """The photo's EXIF (date, camera, GPS position) and colour profile (a phone's Display P3, say), as
    Pillow's PNG options, so that a cut-out shows the photo's colours and says where and when it was taken.

    The EXIF loses its orientation, as the cut-out's pixels are upright already; a profile that does not
    describe RGB (a CMYK or grey photo's) no longer fits the pixels. What Pillow cannot read is left out,
    as the photo itself was read.
    """
    from PIL import ExifTags, Image  # here, as the command line imports this module to list the formats

    try:
        with Image.open(path) as picture:
            profile, exif = picture.info.get("icc_profile"), picture.getexif()
    except (OSError, ValueError, Image.DecompressionBombError):
        return {}
    exif.pop(ExifTags.Base.Orientation, None)
    options = {"exif": exif.tobytes()} if exif else {}
    if profile and _describes_rgb(profile):
        options["icc_profile"] = profile
    return options


def _describes_rgb(profile: bytes) -> bool:
    from PIL import ImageCms

    try:
        return ImageCms.getOpenProfile(io.BytesIO(profile)).profile.xcolor_space == "RGB "
    except (OSError, ImageCms.PyCMSError):
        return False


_INPUT_FOLDERS = {"images": "photos", "simple": "simple photos", "gt": "ground-truth masks", "ignore": "ignore masks"}


def _check_out_dir(store: RunFolder, config: RunConfig, out_dir: Path) -> None:
    """Refuse to export into a folder the run reads or writes: masks are named after the photos, so PNG masks
    would overwrite PNG photos (or true masks, or the run's own masks) of the same name."""
    if out_dir.is_file():
        raise LabellingError(f"{out_dir} is a file, not a folder: choose a folder to write the masks to")
    inputs = config.paths()
    for name, what in _INPUT_FOLDERS.items():
        if name in inputs and out_dir.resolve() == Path(inputs[name]).resolve():
            raise LabellingError(
                f"{out_dir} holds the run's {what}: masks exported there could overwrite them; choose another folder"
            )
    # A layer run keeps its photos in the run folder: those are named above, as the more telling reason.
    if out_dir.resolve().is_relative_to(store.root.resolve()):
        raise LabellingError(
            f"{out_dir} is inside the run folder {store.root}: exported masks there would mix with the run's own "
            "files; choose a folder outside it"
        )


def _check_no_photo_is_replaced(targets: Iterable[Path], photos: Iterable[ImageRecord]) -> None:
    """Refuse, before anything is written, files that would replace photos: the run's own where they are now
    (given with --photos, say), or colour images, which no export writes (the photos of a run moved away)."""
    run_photos = {record.path.resolve() for record in photos}
    for target in targets:
        if target.resolve() in run_photos or _is_colour_image(target):
            raise LabellingError(
                f"{target.parent} holds photos named as the masks are ({target.name}): masks exported there would "
                "overwrite them; choose another folder"
            )


def _is_colour_image(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        shape = iio.improps(path).shape  # the header only
    except (OSError, ValueError):  # not an image: export may write over it, as over any file of its own
        return False
    return len(shape) == 3 and shape[-1] == 3


def _write(path: Path, mask: np.ndarray, fmt: str) -> Path:
    if fmt == "png":
        return atomic_write_mask_png(path, mask)
    return atomic_write_tiff(path, mask.astype(np.uint8))
