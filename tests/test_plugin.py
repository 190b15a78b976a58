"""The package as napari sees it: manifest, plugin list, sample data in a real viewer."""

import json
import subprocess
import sys

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


def _red_above_blue() -> np.ndarray:
    """A landscape photo whose halves show which way it was turned."""
    photo = np.zeros((32, 64, 3), np.uint8)
    photo[:16] = (220, 20, 20)
    photo[16:] = (20, 20, 220)
    return photo


@pytest.mark.gui
@pytest.mark.parametrize("suffix", [".HEIC", ".avif"])
def test_a_phones_photo_opens_upright_in_a_real_viewer(make_napari_viewer, write_phone_photo, tmp_path, suffix):
    red_above_blue = _red_above_blue()
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


# Users have pi-heif, not pillow-heif, which imageio would use if it could import it: opened in a process without.
_HEIC_FOLDER_DROPPED = """
import json
import sys
sys.modules["pillow_heif"] = None
import napari
import numpy as np
viewer = napari.Viewer(show=False)
viewer.window.add_plugin_dock_widget("napari-gfn", "Auto-label")
[stack] = viewer.open(sys.argv[1], plugin="napari")  # napari's own reader, as when a folder is dropped
first = np.asarray(stack.data[0])  # napari reads a folder lazily
print(json.dumps({"shape": stack.data.shape, "left": first[:, :16].mean((0, 1)).tolist()}))
"""


@pytest.mark.gui
def test_a_folder_of_heic_photos_dropped_on_napari_opens_upright_once_the_dock_is_open(write_phone_photo, tmp_path):
    red_above_blue = _red_above_blue()
    (tmp_path / "phone").mkdir()
    for name in ("IMG_0001.HEIC", "IMG_0002.HEIC"):
        write_phone_photo(tmp_path / "phone" / name, red_above_blue, 6)  # portraits
    opened = subprocess.run(
        [sys.executable, "-c", _HEIC_FOLDER_DROPPED, tmp_path / "phone"], capture_output=True, text=True, timeout=600
    )
    assert opened.returncode == 0, opened.stderr[-3000:]  # napari's reader found no backend for HEIC
    stack = json.loads(opened.stdout.splitlines()[-1])
    assert stack["shape"] == [2, 64, 32, 3]
    assert np.abs(np.subtract(stack["left"], (20, 20, 220))).max() <= 8  # what was below is now left
