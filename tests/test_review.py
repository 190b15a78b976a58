"""The order masks are reviewed in, and the per-photo figures each iteration keeps in the run folder."""

import pytest

from napari_gfn.review import MaskStats, check_first, describe_mask
from napari_gfn.store import RunFolder, RunFolderError


def test_the_least_certain_masks_come_first_and_corrections_last():
    stats = {
        "a_sure": MaskStats(0.4, 0.98, 0.05),
        "b_corrected": MaskStats(0.3, 1.0, None),
        "c_unsure": MaskStats(0.5, 0.70, 0.60),
        "d_middling": MaskStats(0.95, 0.90, 0.20),
    }
    assert check_first(stats, 0.1, 0.9) == ["c_unsure", "d_middling", "a_sure", "b_corrected"]


def test_a_seed_without_a_network_is_ordered_by_the_area_filter():
    stats = {"a": MaskStats(0.5), "b": MaskStats(0.02), "c": MaskStats(0.3), "d": MaskStats(0.97)}
    assert check_first(stats, 0.1, 0.9) == ["b", "d", "a", "c"]


def test_the_figures_survive_the_run_folder(tmp_path):
    store = RunFolder(tmp_path / "run")
    stats = {"z_first": MaskStats(0.123456789, None, None), "a_second": MaskStats(0.5, 0.75, 1.5)}
    store.write_mask_stats(3, stats)
    read = store.mask_stats(3)
    assert list(read) == ["z_first", "a_second"]
    assert read["z_first"] == MaskStats(pytest.approx(0.123457, abs=1e-9), None, None)
    assert read["a_second"] == stats["a_second"]
    assert store.mask_stats(4) == {}  # an iteration, or a run made before the figures were kept, without any


def test_a_figures_file_cut_short_is_named(tmp_path):
    store = RunFolder(tmp_path / "run")
    store.write_mask_stats(1, {"a": MaskStats(0.5, 0.9, 0.1), "b": MaskStats(0.4, 0.8, 0.2)})
    path = store.mask_stats_path(1)
    path.write_text(path.read_text()[:-12])
    with pytest.raises(RunFolderError, match=f"^{path}: cannot be read"):
        store.mask_stats(1)


def test_a_mask_is_described_with_the_figures_it_has():
    assert describe_mask(2, MaskStats(0.25, 0.875, 0.4)) == (
        "iteration 2: object 25% of the photo; uncertain 40%; IoU 0.88 with iteration 1"
    )
    assert describe_mask(0, MaskStats(0.05)) == "iteration 0: object 5% of the photo"
