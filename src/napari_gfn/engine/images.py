"""Image sets: folders or arrays of photos, read lazily and converted to 8-bit RGB.

A photo is only decoded when it is used. Grayscale, RGBA, 16-bit and float photos are converted to uint8
RGB (CMYK JPEGs, TIFFs stored plane by plane or as palette indices, inks or YCbCr, and phones' HEIC and AVIF
photos too), and photos a camera stored sideways are turned upright as their EXIF orientation says; a file
that cannot be read raises :class:`ImageReadError` naming it, so a caller can skip it and go on.
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from imageio.core.request import InitializationError

from napari_gfn.store import RunFolder, RunFolderError

__all__ = [
    "COLOUR_NOT_A_MASK",
    "HEIF_SUFFIXES",
    "IMAGE_SUFFIXES",
    "MASKS_ARE_GREY",
    "ImageReadError",
    "ImageRecord",
    "ImageSet",
    "a_few",
    "counted",
    "file_being_decoded",
    "image_files",
    "let_pillow_read_heif",
    "photo_files",
    "photo_subfolders",
    "read_mask",
    "read_object_mask",
    "read_true_mask",
    "size_mismatch",
    "to_rgb8",
]

HEIF_SUFFIXES = (".heic", ".heif")
# .jfif: JPEGs saved from a web browser; .jp2: JPEG 2000, in which herbaria and image servers often keep scans.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", *HEIF_SUFFIXES, ".avif", ".jfif", ".jp2")


# What a mask file that is a photo is told: a folder of them given for masks is most often the photos' own folder.
MASKS_ARE_GREY = "a mask is grey: 0/255, or 0/1 labels"
COLOUR_NOT_A_MASK = f"is a colour picture, not a mask ({MASKS_ARE_GREY})"


class ImageReadError(ValueError):
    """A photo or mask file that cannot be used, with the file named in the message."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem

    def __reduce__(self):
        # Pickled when a DataLoader worker process hands a read failure back to the run.
        return type(self), (self.source, self.problem)


def _rescale_to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == bool:
        return image.astype(np.uint8) * 255
    if np.issubdtype(image.dtype, np.integer):
        # 16-bit photos rarely use the full range: scale by what the type can hold.
        top = 255 if image.max(initial=0) <= 255 else np.iinfo(image.dtype).max
        return np.round(image.astype(np.float64) * (255.0 / top)).astype(np.uint8)
    finite = np.nan_to_num(image.astype(np.float64))
    top = 1.0 if finite.max(initial=0) <= 1.0 else finite.max()
    return np.round(np.clip(finite / top, 0, 1) * 255).astype(np.uint8)


def to_rgb8(image: np.ndarray, source: str = "array") -> np.ndarray:
    """Any 2-D grey, grey+alpha, RGB or RGBA photo as H x W x 3 uint8."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] in (2, 4):
        image = image[..., :-1]  # drop alpha: the photo's colours are what the network sees
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ImageReadError(source, f"not a 2-D grey or colour photo (array shape {image.shape})")
    if min(image.shape[:2]) < 2:
        raise ImageReadError(source, f"is {image.shape[1]}x{image.shape[0]} pixels: too small to label")
    image = _rescale_to_uint8(image)
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return np.ascontiguousarray(image)


def _decode(path: Path, palette_as_indices: bool) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        return _decode_tiff(path, palette_as_indices)
    if suffix in HEIF_SUFFIXES:
        let_pillow_read_heif()
    # A camera stores a portrait photo sideways with an EXIF orientation tag, and photo viewers and
    # annotation tools show it upright: masks are made for the photo people see.
    return _decode_with_pillow(path, palette_as_indices, rotate=True)


# Pillow hands these colour models over as stored, and their channels would pass for R, G, B (and alpha).
_NOT_RGB = {"CMYK", "YCbCr", "LAB", "HSV"}


def _decode_with_pillow(path: Path, palette_as_indices: bool, rotate: bool) -> np.ndarray:
    from PIL import Image  # here, as the photo reader's module is imported at every start-up

    _quiet_pillows_size_warning(Image.DecompressionBombWarning)
    with iio.imopen(path, "r", plugin="pillow") as file:
        stored_as = file.metadata(exclude_applied=False)["mode"]
        if stored_as in _NOT_RGB:
            return file.read(rotate=rotate, mode="RGB")
        # By default a palette image comes as the colours it shows; a mask's indices are its labels.
        return file.read(rotate=rotate, mode="P" if stored_as == "P" and palette_as_indices else None)


def _quiet_pillows_size_warning(warning: type[Warning]) -> None:
    """Above 89 megapixels Pillow warns of a "decompression bomb DOS attack", naming no file: a guard for servers
    opening strangers' images. These are the user's own photos, and a 95-megapixel one labels in 4.6 GB.

    Looked for at each read, as a caller may reset the warning filters (pytest does, per test); added only when
    missing, as each change to the filters makes every warning already shown once show again.
    """
    if ("ignore", None, warning, None, 0) not in warnings.filters:
        warnings.filterwarnings("ignore", category=warning)


@functools.cache
def let_pillow_read_heif() -> None:
    """Pillow reads a phone's HEIC photos only through a plugin; registered when first needed, as it loads libheif.

    pi-heif decodes only, so that no encoder under the GPL comes with it. It turns the photo as the file's own
    rotation says and sets the EXIF orientation to 1, so that the photo is not turned twice.
    """
    import pi_heif

    pi_heif.register_heif_opener()


def _decode_tiff(path: Path, palette_as_indices: bool) -> np.ndarray:
    """As stored, with no orientation; but a colour TIFF stored plane by plane, which tifffile reads channels
    first, comes back channels last, as every other photo does. tifffile hands over palette indices, grey with
    0 for white, inks and YCbCr as stored, where their values would pass for grey or R, G, B: Pillow reads
    those TIFFs in the colours they show."""
    import tifffile  # here, as the photo reader's module is imported at every start-up

    with iio.imopen(path, "r", plugin="tifffile") as file:
        tags = file.metadata(index=0, page=0)
        coded = tifffile.PHOTOMETRIC
        if tags.get("PhotometricInterpretation") in (coded.PALETTE, coded.MINISWHITE, coded.SEPARATED, coded.YCBCR):
            return _decode_with_pillow(path, palette_as_indices, rotate=False)
        image = file.read()
        planes = tags.get("planar_configuration")
    if planes == tifffile.PLANARCONFIG.SEPARATE and image.ndim == 3:  # RR...GG...BB..., not RGBRGB...
        return np.moveaxis(image, 0, -1)
    return image


# Decoders warn of a damaged file (Pillow's "Corrupt EXIF data", say) without naming it, and photos are decoded
# in several threads at once.
_decoding = threading.local()


def file_being_decoded() -> Path | None:
    """The photo or mask file this thread is decoding, if any: the one a decoder's warning is about."""
    return getattr(_decoding, "path", None)


def _read_file(path: Path, palette_as_indices: bool = False) -> np.ndarray:
    _decoding.path = path
    try:
        image = _decode(path, palette_as_indices)
    except Exception as error:  # decoders raise many types for corrupt or truncated files
        raise ImageReadError(str(path), _why_unreadable(path, error)) from None
    finally:
        _decoding.path = None
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    return image


_REFUSALS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def _why_unreadable(path: Path, error: Exception) -> str:
    # An empty file is a copy or sync that never finished, more often than a corrupt one.
    if path.is_file() and path.stat().st_size == 0:
        return "the file is empty (0 bytes; an unfinished copy?)"
    # The system's refusal to open the file, not its bytes' fault: imageio raises it, or wraps it.
    refused = next((cause for cause in (error, error.__cause__) if isinstance(cause, _REFUSALS)), None)
    if isinstance(refused, FileNotFoundError):
        return "the file is gone (moved, renamed or deleted since it was listed)"
    if refused is not None:
        return _cannot_be_read(refused)
    from PIL import Image

    if isinstance(error.__cause__, Image.DecompressionBombError):
        limit = 2 * Image.MAX_IMAGE_PIXELS / 1e6
        return (
            f"has more pixels than Pillow opens ({limit:.0f} megapixels, its guard against decompression bombs): "
            "save it as a TIFF, which is read at any size, or downscale it"
        )
    # imageio says only that its plugin could not open the file, and why is in the decoder's error it wraps; for a
    # file Pillow does not know at all, that error names only the plugin and the path, so say what it means.
    if isinstance(error.__cause__, InitializationError):
        reason = "no image format recognised in its bytes"
    elif "error occurred while initializing plugin" in str(error) and error.__cause__:
        reason = error.__cause__
    else:
        reason = error
    return f"cannot be read as an image (corrupt or truncated?): {reason}"


def image_files(folder: Path) -> dict[str, Path]:
    """Image files by stem, in ``folder`` or, when it holds none itself, its subfolders; of two suffixes, .png first.

    Masks are found this way: sorted into one folder per species, as their photos may be, they are found too.
    """
    # A subfolder that cannot be read goes unsaid here: the photos whose masks it holds are named as having none.
    paths = [path for path in _listed_files(folder, "masks")[0] if _is_photo(path)]
    found: dict[str, Path] = {}
    for path in sorted(paths, key=lambda path: IMAGE_SUFFIXES.index(path.suffix.lower())):
        found.setdefault(path.stem, path)
    return found


def size_mismatch(source: str, what_is: str, shape: tuple[int, int], photo_shape: tuple[int, int]) -> ImageReadError:
    """The error for a mask or label file whose size is not its photo's, e.g. ``what_is="mask is"``."""
    turned = (
        " (turned sideways? photos are read upright, as their EXIF orientation says)"
        if tuple(shape) == tuple(photo_shape)[::-1]
        else ""
    )
    sizes = f"{shape[1]}x{shape[0]} but its photo is {photo_shape[1]}x{photo_shape[0]}"
    return ImageReadError(source, f"{what_is} {sizes}{turned}")


def _is_coloured(picture: np.ndarray) -> bool:
    # A grey mask saved as RGB keeps equal channels (a JPEG's noise moves them a few levels at most).
    # np.ptp keeps the photo's own dtype: no wide copy of a 24-megapixel mask.
    return bool(np.ptp(picture, axis=-1).max(initial=0) > 32)


def read_mask(path: os.PathLike | str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A mask file as a uint8 array (0/255 object masks, or 255 = ignore); checks its size."""
    mask = _read_grey(Path(path), shape)
    return _rescale_to_uint8(mask) if mask.dtype != np.uint8 else mask


def _read_grey(path: Path, shape: tuple[int, int] | None) -> np.ndarray:
    """A mask file's grey values as stored (any dtype); a colour picture or a size not ``shape`` is refused."""
    mask = _read_file(path, palette_as_indices=True)
    if mask.ndim == 3:
        if mask.shape[-1] in (2, 4):
            mask = mask[..., :-1]  # alpha says how opaque, not which pixels are object
        if _is_coloured(mask):
            raise ImageReadError(str(path), COLOUR_NOT_A_MASK)
        mask = mask[..., 0]
    if shape is not None and mask.shape != tuple(shape):
        raise size_mismatch(str(path), "mask is", mask.shape, shape)
    return mask


def read_object_mask(path: os.PathLike | str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A true or corrected mask file as a boolean object mask; checks its size (see :func:`read_true_mask`)."""
    return read_true_mask(path, shape)[0]


def read_true_mask(
    path: os.PathLike | str, shape: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """(object, labelled) from a mask file; ``labelled`` is None when every pixel is labelled. Checks the size.

    A 0/255 mask (0/65535 in 16 bits) is cut at the middle of its type's range, which also absorbs
    a JPEG's noise. A label image, whose values all lie below that (0/1 masks, napari's Labels, this
    plugin's label TIFFs, an instance image of hundreds of labels), is object wherever it is not 0.
    An 8-bit one may also leave pixels unlabelled with 255, as Pascal VOC's masks do in a band around
    each object: those are neither object nor background. A trimap's 255 is its foreground.
    """
    mask = _read_grey(Path(path), shape)
    if not np.issubdtype(mask.dtype, np.integer):  # floats (0..1, or any range) and booleans
        mask = _rescale_to_uint8(mask)
    middle = np.iinfo(mask.dtype).max // 2
    if mask.max(initial=0) <= middle:
        return mask > 0, None
    if mask.dtype == np.uint8 and _is_labels_with_void(mask, middle):
        labelled = mask != 255
        return (mask > 0) & labelled, labelled
    return mask > middle, None


def _is_labels_with_void(mask: np.ndarray, middle: int) -> bool:
    """Labels below the middle, and 255, nothing between, and 255 meets the background more than the labels do.

    VOC's unlabelled band lies between each object and the background, whatever the object's size; a
    trimap's foreground (255) is kept from the background by its unknown band (127 or so). A 0/255 mask
    has no labels, and a JPEG's noise fills the gap.
    """
    if np.any((mask > middle) & (mask < 255)):
        return False
    labels = (mask > 0) & (mask <= middle)
    if not labels.any():
        return False
    background = mask == 0
    return _pixels_meeting(mask == 255, background) > _pixels_meeting(labels, background)


def _pixels_meeting(first: np.ndarray, second: np.ndarray) -> int:
    """How many pairs of side-by-side or stacked pixels hold one of ``first`` and one of ``second``."""
    return sum(
        np.count_nonzero(a[:, :-1] & b[:, 1:]) + np.count_nonzero(a[:-1] & b[1:])
        for a, b in ((first, second), (second, first))
    )


def a_few(names: Sequence[str]) -> str:
    """The first three of ``names``, for a message about many files: "a, b, c, ..."."""
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def counted(number: int, thing: str) -> str:
    """``number`` things, for a message: "1 photo", "3 photos"."""
    return f"{number} {thing}{'' if number == 1 else 's'}"


# Photo formats this plugin does not read, which cameras write: what to do with them instead.
_CONVERT = dict.fromkeys(
    (".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf", ".dng"),
    "a camera's RAW files: label the JPEGs the camera saved beside them, or export JPEGs",
)


def _not_photos(paths: list[Path], beside_photos: bool) -> str:
    """One message for a folder's files of one type that are not photos: a camera's RAW files come in hundreds.

    Files beside a photo of their name (a RAW file beside its JPEG, an iPhone's Live Photo video or edit record
    beside its photo, an editor's `.xmp` record) are said to be, as that photo is labelled.
    """
    advice = _CONVERT.get(paths[0].suffix.lower())
    if beside_photos and len(paths) == 1:
        advice = "the photo of the same name beside it is labelled"
    elif beside_photos:
        advice = "the photos of the same names beside them are labelled"
    reads = f"napari-gfn reads (it reads {', '.join(IMAGE_SUFFIXES)})" + (f"; {advice}" if advice else "")
    if len(paths) == 1:
        return f"{paths[0]}: not a photo file {reads}"
    return f"{len(paths)} files in {paths[0].parent} ({a_few([path.name for path in paths])}): not photo files {reads}"


# Files Windows writes into the folders it shows, and hides; macOS's start with a dot.
_SYSTEM_FILES = {"thumbs.db", "desktop.ini"}


def _contents(folder: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """``folder``'s visible files, its subfolders that may hold photos (not hidden, not a run folder), and its
    links that lead nowhere."""
    files, subfolders, dead_links = [], [], []
    # One scandir pass: a folder's entries know their type, where a Path's is_dir costs a stat each.
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                subfolders.append(Path(entry.path))
            elif entry.is_file() and entry.name.lower() not in _SYSTEM_FILES:
                files.append(Path(entry.path))
            elif entry.is_symlink() and not os.path.exists(entry.path):
                dead_links.append(Path(entry.path))
    return sorted(files), sorted(path for path in subfolders if not RunFolder(path).is_run()), sorted(dead_links)


def photo_subfolders(folder: Path) -> list[Path]:
    """``folder``'s subfolders that may hold photos: not hidden, and not a napari-gfn run folder."""
    return _contents(folder)[1]


def _links_to_photos_not_there(links: list[Path]) -> str:
    """One message for the links to photos that lead nowhere: a folder of links to a drive not connected holds
    hundreds."""
    one = len(links) == 1
    what = "a link to a photo that is" if one else f"{len(links)} links to photos that are"
    named = a_few([f"{link} -> {_link_target(link)}" for link in links[:4]])
    return f"{what} not there ({named}): the photo{'' if one else 's'} may be on a drive not connected, or moved"


def _link_target(link: Path) -> str:
    try:
        return os.readlink(link)
    except OSError:  # gone since it was listed
        return "?"


def _is_photo(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _repeated_names(photos: list[Path], folder: Path) -> list[str]:
    """Photo names found in more than one folder below ``folder``, each with the folders: "horse001 (images, masks)"."""
    folders_of: dict[str, dict[Path, None]] = {}  # a dict keeps the folders in the order found, once each
    for path in photos:
        folders_of.setdefault(path.stem, {})[path.parent] = None
    return [
        f"{stem} ({', '.join(where.relative_to(folder).as_posix() for where in folders)})"
        for stem, folders in folders_of.items()
        if len(folders) > 1
    ]


# Why two files of one name in different subfolders cannot both be used.
_ONE_NAME_EACH = {
    "photos": "each mask is named after its photo",
    "masks": "each is matched to its photo by name",
}


def photo_files(folder: Path) -> list[Path]:
    """The photo files in ``folder``, found as :meth:`ImageSet.from_folder` finds them (subfolders at any depth)."""
    # A subfolder that cannot be read goes unsaid here: the run, listing the same photos, says so.
    return [path for path in _listed_files(folder, "photos")[0] if _is_photo(path)]


def _listed_files(folder: Path, what: str) -> tuple[list[Path], _FolderTree]:
    """``folder``'s files; or, when it holds no image itself, its subfolders' by the same rule, at any depth.
    Also the walk, which knows the subfolders it could not read and those it left out.

    Photos are often sorted by species, year or site (``orchids/2024/site A/``). A folder that holds
    images has its subfolders left alone: they hold something else (rejects, thumbnails). The images
    found must have distinct names: a dataset's images/ and masks/ share theirs, and then it is one of
    them that is wanted, not their parent.
    """
    if what == "photos" and (run := RunFolder.around(folder)):
        raise ImageReadError(str(folder), _a_run_not_photos(run, folder))
    tree = _FolderTree({folder.resolve()})
    files = list(tree.files(folder))
    if error := tree.unreadable.pop(folder, None):
        raise ImageReadError(str(folder), f"the folder {_cannot_be_read(error)}")
    repeated = _repeated_names([path for path in files if _is_photo(path)], folder)
    if repeated:
        raise ImageReadError(
            str(folder),
            f"{what} in different subfolders share a name, and {_ONE_NAME_EACH[what]}: {a_few(repeated)}; "
            f"choose the subfolder that holds the {what}, or rename the repeats",
        )
    return files, tree


def _a_run_not_photos(run: RunFolder, folder: Path) -> str:
    """Why a run folder, or one of its folders of masks and working copies, is not labelled as photos."""
    what = "a napari-gfn run folder" if run.root == folder.absolute() else f"a folder of the napari-gfn run {run.root}"
    try:
        photos = run.read_config().images
    except RunFolderError:
        photos = ""
    where = f"its photos are in {photos}" if photos else "its photos came from napari layers"
    return f"{what}, not a folder of photos: {where}; open the run to see its masks"


class _FolderTree:
    """A walk down a folder tree by the rule of :func:`_listed_files`, noting the folders it could not list and
    those it left out."""

    def __init__(self, seen: set[Path]) -> None:
        self.seen = seen  # resolved paths
        self.unreadable: dict[Path, OSError] = {}
        self.left_out: list[Path] = []  # the subfolders of folders that hold images
        self.dead_links: list[Path] = []  # links to images that lead nowhere

    def unseen(self, subfolders: list[Path]) -> Iterator[Path]:
        """``subfolders`` but those walked already: a link up the tree would walk it again, or forever."""
        for subfolder in subfolders:
            if (real := subfolder.resolve()) not in self.seen:
                self.seen.add(real)
                yield subfolder

    def files(self, folder: Path) -> Iterator[Path]:
        try:
            files, subfolders, dead_links = _contents(folder)
        except OSError as error:  # no permission (an ext4 drive's lost+found), or removed meanwhile
            self.unreadable[folder] = error
            return
        self.dead_links += filter(_is_photo, dead_links)
        yield from files
        if any(map(_is_photo, files)):
            self.left_out += subfolders
            return
        for subfolder in self.unseen(subfolders):
            yield from self.files(subfolder)


def _subfolders_left_out(folder: Path, walked: _FolderTree) -> list[str]:
    """Why the photos below folders of photos are not labelled, naming those folders' subfolders that hold photos,
    so that a year sorted into a subfolder beside last year's photos is not lost unsaid. One message for the
    tree: fifty sites may each hold a folder of thumbnails."""
    # A walk of its own, so that what it cannot read goes unsaid: left out anyway, and it may hold no photo.
    tree = _FolderTree(set(walked.seen))
    holding_photos = [
        subfolder.relative_to(folder).as_posix()
        for subfolder in tree.unseen(walked.left_out)
        # Up to the first photo: a large tree below a folder of photos (a photo library) is not walked whole.
        if any(map(_is_photo, tree.files(subfolder)))
    ]
    if not holding_photos:
        return []
    return [
        f"the photos in {counted(len(holding_photos), 'subfolder')} of {folder} ({a_few(holding_photos)}): a folder "
        "that holds photos itself keeps its subfolders out (rejects or thumbnails, say); to label them too, move "
        "the photos beside them into a subfolder of their own"
    ]


def not_a_folder(path: Path) -> str | None:
    """Why ``path`` is not a folder to read, or None: a photo or mask file given for its folder is said so."""
    if path.is_dir():
        return None
    return "a file, not a folder: give the folder that holds it" if path.exists() else "no such folder"


def _why_no_photos(folder: Path, tree: _FolderTree) -> str:
    problem = f"the folder holds no photos ({', '.join(IMAGE_SUFFIXES)})"
    if subfolders := photo_subfolders(folder):
        problem += f", nor do its subfolders ({a_few([path.name for path in subfolders])}) or theirs"
    if tree.unreadable:
        unread = [f"{path} {_cannot_be_read(error)}" for path, error in tree.unreadable.items()]
        problem += f" that can be read; {a_few(unread)}"
    if tree.dead_links:
        problem += f"; {_links_to_photos_not_there(tree.dead_links)}"
    return problem


def _cannot_be_read(error: OSError) -> str:
    return f"cannot be read ({error.strerror or error})"


@dataclass(frozen=True)
class ImageRecord:
    """One photo: a stable stem (used for every file written about it) and where its pixels are."""

    stem: str
    path: Path | None = None
    array: np.ndarray | None = None

    @property
    def source(self) -> str:
        return str(self.path) if self.path is not None else f"image {self.stem!r}"

    def load(self) -> np.ndarray:
        raw = _read_file(self.path) if self.path is not None else self.array
        return to_rgb8(raw, self.source)


class ImageSet(Sequence):
    """An ordered set of photos with unique stems; nothing is decoded until ``load``."""

    def __init__(self, records: Sequence[ImageRecord], skipped: Sequence[str] = ()) -> None:
        stems = [record.stem for record in records]
        duplicates = sorted(stem for stem, count in Counter(stems).items() if count > 1)
        if duplicates:
            raise ValueError(f"photos must have unique names; repeated: {', '.join(duplicates)}")
        self.records = list(records)
        self.skipped = list(skipped)

    @classmethod
    def from_folder(cls, folder: os.PathLike | str) -> ImageSet:
        """Every photo in ``folder``, sorted by name; other files are listed in ``skipped``.

        A folder that holds no photo itself gives the photos of its subfolders, at any depth (run
        folders left out), which must then have distinct names.
        """
        folder = Path(folder)
        if problem := not_a_folder(folder):
            raise ImageReadError(str(folder), problem)
        files, tree = _listed_files(folder, "photos")
        photos = [path for path in files if _is_photo(path)]
        if not photos:
            raise ImageReadError(str(folder), _why_no_photos(folder, tree))
        records: dict[str, ImageRecord] = {}
        others: dict[tuple[Path, str, bool], list[Path]] = {}
        # A file named as a photo but for its suffix (IMG_0001.MOV), or with one more (IMG_0001.JPG.xmp).
        beside_a_photo = {*photos, *(path.with_suffix("") for path in photos)}
        skipped = []
        for path in files:
            if not _is_photo(path):
                beside = path.with_suffix("") in beside_a_photo
                others.setdefault((path.parent, path.suffix.lower(), beside), []).append(path)
            elif path.stem in records:
                # Masks and ground truth are named after the photo's stem, so two photos cannot share one.
                kept = records[path.stem].path.name
                skipped.append(f"{path}: has the same name as {kept}, which is labelled instead")
            else:
                records[path.stem] = ImageRecord(path.stem, path=path)
        not_photos = [_not_photos(paths, beside_photos) for (*_, beside_photos), paths in others.items()]
        folders_skipped = [
            f"{path}: the folder {_cannot_be_read(error)}, so any photos in it are left out"
            for path, error in tree.unreadable.items()
        ]
        folders_skipped += _subfolders_left_out(folder, tree)
        if tree.dead_links:
            skipped.append(_links_to_photos_not_there(tree.dead_links))
        return cls(list(records.values()), not_photos + skipped + folders_skipped)

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray], names: Sequence[str] | None = None) -> ImageSet:
        if len(arrays) == 0:
            raise ValueError("no images given")
        names = names or [f"image_{index:04d}" for index in range(len(arrays))]
        return cls([ImageRecord(str(name), array=np.asarray(a)) for name, a in zip(names, arrays, strict=True)])

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index):
        return self.records[index]

    @property
    def stems(self) -> list[str]:
        return [record.stem for record in self.records]

    def subset(self, stems: Sequence[str]) -> ImageSet:
        wanted = set(stems)
        return ImageSet([record for record in self.records if record.stem in wanted])
