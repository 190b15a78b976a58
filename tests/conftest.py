"""Shared fixtures: synthetic photo folders with exact ground truth, written by the tests themselves."""

from pathlib import Path

import pytest
import torch

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
