"""The package as napari sees it: manifest, plugin list, sample data in a real viewer."""

import numpy as np
import pytest
from npe2 import PluginManager


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
