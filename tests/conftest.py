"""Shared fixtures: synthetic photo folders with exact ground truth, written by the tests themselves."""

import os
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
import torch
from PIL import ExifTags, Image

from napari_gfn.demo import write_sample_folder

# Two cores: let torch use both, and keep tests deterministic where they can be.
torch.manual_seed(0)

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="session")
def branch_folder(tmp_path_factory) -> Path:
    """16 synthetic branch photos (half on plain sky, half on clutter) with exact masks."""
    return write_sample_folder(tmp_path_factory.mktemp("branches"), kind="branch", n=16, size=160, seed=2)


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    """8 small synthetic flower photos: enough to exercise the whole path in seconds."""
    return write_sample_folder(tmp_path_factory.mktemp("tiny"), kind="flower", n=8, size=64, seed=4)


def _write_phone_photo(path: Path, image: np.ndarray, orientation: int) -> None:
    """A photo as a phone saves it: HEIC or AVIF, a portrait stored sideways with the turn to show it in the file
    (where pillow-heif and Pillow's AVIF writer put the EXIF orientation they are given)."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    if path.suffix.lower() == ".avif":
        # Pillow's default 4:2:0 colour moves flat patches' colours by up to 87 levels along their edges.
        Image.fromarray(image).save(path, quality=95, exif=exif.tobytes(), subsampling="4:4:4")
        return
    pillow_heif.register_heif_opener()  # Pillow then writes HEIC
    Image.fromarray(image).save(path, quality=95, exif=exif.tobytes())


@pytest.fixture
def write_phone_photo():
    """Writes ``image`` to a HEIC or AVIF path as a phone's photo stored with an EXIF ``orientation`` (1 to 8)."""
    return _write_phone_photo


def _save_with_a_damaged_exif_tag(photo: Path) -> Path:
    """The photo as a JPEG whose EXIF description claims more bytes than the file holds, as a damaged copy does."""
    exif = Image.Exif()
    exif[ExifTags.Base.ImageDescription] = "x" * 100
    damaged = photo.with_suffix(".jpg")
    Image.open(photo).save(damaged, quality=95, exif=exif.tobytes())
    data = damaged.read_bytes()
    entry = data.index(bytes.fromhex("010e0002") + (101).to_bytes(4, "big"))  # Pillow writes EXIF big-endian
    damaged.write_bytes(data[: entry + 4] + (5000).to_bytes(4, "big") + data[entry + 8 :])
    photo.unlink()
    return damaged


@pytest.fixture
def save_with_a_damaged_exif_tag():
    """Saves a photo over itself as a JPEG (returned) with a damaged EXIF tag, on which Pillow warns."""
    return _save_with_a_damaged_exif_tag


@pytest.fixture
def folders_named_locked_refused(monkeypatch):
    """Folders named ``locked`` cannot be listed, as an ext4 drive's lost+found cannot. The tests run as root, whom
    no folder's permissions keep out, so the system's refusal is simulated."""
    real_scandir = os.scandir

    def scandir(path):
        if not isinstance(path, int) and Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)


@pytest.fixture
def empty_torch_cache(tmp_path, monkeypatch):
    """A torch cache with no weights in it."""
    cache = tmp_path / "torch-cache"
    cache.mkdir()
    monkeypatch.setattr(torch.hub, "_hub_dir", str(cache))
    return cache
