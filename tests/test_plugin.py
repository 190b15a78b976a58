"""The package as napari sees it: manifest, plugin list, sample data in a real viewer."""

import numpy as np
import pytest
from npe2 import PluginManager

from napari_gfn.reader import get_phone_photo_reader


def test_manifest_validates_and_is_discovered():
    manager = PluginManager.instance()
    manager.discover()
    manifest = manager.get_manifest("napari-gfn")
    assert manifest.display_name == "napari-gfn"
    keys = {sample.key for sample in manifest.contributions.sample_data}
    assert {"branch", "flower"} <= keys


@pytest.mark.gui
@pytest.mark.parametrize("key", ["branch", "flower"])
def test_sample_data_opens_in_a_real_viewer(make_napari_viewer, key):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-gfn", key)
    image, labels = viewer.layers
    assert image.rgb
    assert image.data.shape[-1] == 3
    assert labels.data.shape == image.data.shape[:2]
    assert set(np.unique(labels.data)) == {0, 1}


@pytest.mark.gui
@pytest.mark.parametrize("suffix", [".HEIC", ".avif"])
def test_a_phones_photo_opens_upright_in_a_real_viewer(make_napari_viewer, write_phone_photo, tmp_path, suffix):
    red_above_blue = np.zeros((32, 64, 3), np.uint8)
    red_above_blue[:16] = (220, 20, 20)
    red_above_blue[16:] = (20, 20, 220)
    write_phone_photo(tmp_path / f"IMG_0007{suffix}", red_above_blue, 6)  # a portrait: shown turned a quarter clockwise
    viewer = make_napari_viewer()
    viewer.open(tmp_path / f"IMG_0007{suffix}", plugin=None)  # any reader that takes it, as File › Open and a drop do
    (photo,) = viewer.layers
    assert photo.name == "IMG_0007"
    assert photo.rgb
    assert photo.data.shape == (64, 32, 3)
    assert np.abs(photo.data[:, 16:].astype(int) - (220, 20, 20)).max() <= 8  # what was above is now right
    assert np.abs(photo.data[:, :16].astype(int) - (20, 20, 220)).max() <= 8
    assert get_phone_photo_reader([str(tmp_path / f"IMG_0007{suffix}"), str(tmp_path / "IMG_0008.jpg")]) is None
