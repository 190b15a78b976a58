"""Shared fixtures: synthetic photo folders with exact ground truth, written by the tests themselves."""

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


def _write_phone_heic(path: Path, image: np.ndarray, orientation: int) -> None:
    """A photo as a phone saves it: HEIC, a portrait stored sideways with the turn to show it in the file (where
    pillow-heif writes the EXIF orientation it is given)."""
    pillow_heif.register_heif_opener()  # Pillow then writes HEIC
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    Image.fromarray(image).save(path, quality=95, exif=exif.tobytes())


@pytest.fixture
def write_phone_heic():
    """Writes ``image`` to a path as a phone's HEIC photo stored with an EXIF ``orientation`` (1 to 8)."""
    return _write_phone_heic
