"""The labelling engine end to end: seeding, refinement, the run folder, cancelling and bad input."""

import errno
import itertools
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from datetime import datetime
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F
from PIL import ExifTags, Image
from scipy import ndimage

import napari_gfn
from napari_gfn import _atomic
from napari_gfn._atomic import atomic_write_mask_png
from napari_gfn.config import BULKY_OBJECT_SETTINGS, SEED_METHODS, THIN_OBJECT_SETTINGS, RunConfig
from napari_gfn.demo import write_sample_folder
from napari_gfn.engine import (
    CancelToken,
    GroundTruth,
    ImageSet,
    IterationResult,
    LabellingError,
    Notice,
    Progress,
    resolve_device,
    run_labelling,
    score_mask,
    trusted_stems,
)
from napari_gfn.engine.images import (
    IMAGE_SUFFIXES,
    ImageReadError,
    ImageRecord,
    read_mask,
    read_object_mask,
    to_rgb8,
)
from napari_gfn.engine.working import WorkingImages, resize_image, same_picture, working_shape
from napari_gfn.run_lock import RunLock, RunLockedError
from napari_gfn.sample_data import make_sample_set
from napari_gfn.seeds.otsu import otsu_mask
from napari_gfn.store import RunFolder, RunFolderError

# Plumbing runs: a few steps teach the network little, so every mask is trusted (the filter has its own test).
TINY = RunConfig(
    image_size=64, seed_epochs=2, epochs=1, min_steps=8, batch_size=4, area_min=0.0, area_max=1.0, iterations=2
)


def run_to_end(config, **kwargs):
    events = list(run_labelling(config, **kwargs))
    return [e for e in events if isinstance(e, IterationResult)], [e.message for e in events if isinstance(e, Notice)]


def test_area_filter_keeps_and_drops_the_right_images():
    def covering(fraction):
        mask = np.zeros((10, 10), dtype=bool)
        mask.flat[: round(fraction * 100)] = True
        return mask

    areas = {f"c{int(f * 100):02d}": float(np.mean(covering(f))) for f in (0.0, 0.05, 0.09, 0.1, 0.5, 0.9, 0.91, 1.0)}
    assert sorted(trusted_stems(areas, 0.1, 0.9)) == ["c10", "c50", "c90"]
    assert sorted(trusted_stems(areas, 0.0, 1.0)) == sorted(areas)


def branch_config(branch_folder, out):
    """Otsu seed, then two refinement rounds. Ground truth only scores; it also turns off the early stop."""
    return RunConfig(
        images=str(branch_folder / "images"),
        out=str(out),
        gt=str(branch_folder / "masks"),
        iterations=2,
        image_size=160,
        seed_epochs=8,
        epochs=4,
        min_steps=50,
    )


@pytest.fixture(scope="module")
def branch_run(branch_folder, tmp_path_factory):
    """One real run on synthetic branches."""
    out = tmp_path_factory.mktemp("runs") / "branch"
    results, notices = run_to_end(branch_config(branch_folder, out))
    return out, results, notices


def complex_stems(seed=2, n=16, size=160):
    sample = make_sample_set("branch", n, size, simple_fraction=0.5, seed=seed)
    return [f"branch_{i:03d}" for i, simple in enumerate(sample.simple) if not simple]


@pytest.mark.slow
def test_refinement_beats_the_seed_on_complex_images(branch_run, branch_folder):
    out, results, _ = branch_run
    store = RunFolder(out)
    assert [r.iteration for r in results] == [0, 1, 2]

    def complex_iou(iteration):
        scores = []
        for stem in complex_stems():
            truth = iio.imread(branch_folder / "masks" / f"{stem}.png") > 127
            scores.append(score_mask(store.read_mask(iteration, stem), truth).fg_iou)
        return np.mean(scores)

    assert complex_iou(2) > complex_iou(0)


@pytest.mark.slow
def test_run_folder_layout_and_metrics(branch_run, branch_folder):
    out, results, _ = branch_run
    store = RunFolder(out)
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["iterations"] == 2
    assert {"torch", "napari_gfn"} <= set(record["versions"])
    stems = sorted(p.stem for p in (branch_folder / "images").glob("*.png"))
    for iteration in (0, 1, 2):
        written = sorted(p.stem for p in (out / f"iter_{iteration:02d}" / "masks").glob("*.png"))
        assert written == stems
        mask = iio.imread(store.mask_path(iteration, stems[0]))
        assert mask.shape == (160, 160)
        assert set(np.unique(mask)) <= {0, 255}
    assert all((out / f"iter_{k:02d}" / "model.pt").is_file() for k in (1, 2))
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [0, 1, 2]
    assert all(result.metrics["fg_iou"] is not None for result in results)
    best = json.loads((out / "summary.json").read_text())["best_iteration"]
    assert best == max(results, key=lambda r: r.metrics["miou"]).iteration
    assert [r.is_best for r in results][best] or results[-1].iteration != best
    assert not list(out.rglob("*.tmp"))
    logged = [line[20:] for line in store.log_path.read_text().splitlines()]
    assert logged[0] == f"info: started on {len(stems)} photos from {branch_folder / 'images'}"
    assert [line for line in logged if re.match(r"info: iteration \d+: \d+ masks, ", line)] == [
        f"info: {result.describe()}" for result in results
    ]
    assert logged[-1] == "info: finished with iteration 2"
    assert store.how_it_ended() == "finished with iteration 2"


@pytest.mark.slow
def test_resume_without_the_cache_trains_as_the_uninterrupted_run_did(branch_run, branch_folder, tmp_path):
    from napari_gfn.network import load_model

    whole, results, _ = branch_run
    assert results[1].metrics["fg_iou"] > 0.3  # masks worth training on, so a wrong rebuild would show
    # A copy of the run as a kill during iteration 2 leaves it: iter_02 written but no metrics line, and the
    # cache deleted (documented as safe). The copy also stands for a run folder moved to another machine.
    out = tmp_path / "resumed"
    shutil.copytree(whole, out, ignore=shutil.ignore_patterns("cache"))
    (out / "iter_02" / "model.pt").write_bytes(b"junk")  # so only a retrained model can match
    copy = RunFolder(out)
    finished = [entry for entry in copy.metrics() if entry["iteration"] < 2]
    copy.metrics_path.unlink()
    for entry in finished:
        copy.finish_iteration(entry)
    run_to_end(branch_config(branch_folder, out), resume=True)
    assert RunFolder(out).finished_iterations() == [0, 1, 2]
    # The photos are at the working size, so the working masks rebuilt from the run folder equal those the
    # uninterrupted run trained on, and the round after the resume repeats it exactly.
    weights = [load_model(RunFolder(folder).model_path(2)).state_dict() for folder in (whole, out)]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])


def test_a_panoramas_working_copy_keeps_a_quarter_of_the_working_size_across():
    assert working_shape((300, 400), 320) == (240, 320)  # the long side at the working size
    assert working_shape((100, 100), 320) == (320, 320)
    assert working_shape((320, 1280), 320) == (80, 320)  # 4:1, where both rules meet
    # Beyond 4:1 the short side stays at 80 px, five rows of the network's features, and the long side grows.
    assert working_shape((60, 3000), 320) == (80, 4000)
    assert working_shape((1600, 80), 320) == (1600, 80)


def test_a_resumed_run_reads_no_working_copy_cached_under_an_earlier_resizing_rule(tiny_folder, tmp_path):
    config = TINY.updated(images=str(tiny_folder / "images"), out=str(tmp_path / "run"), iterations=1)
    run_to_end(config.updated(iterations=0))
    # Copies of another shape where the cache was kept before working copies of panoramas changed shape.
    earlier = tmp_path / "run" / "cache" / "images" / str(TINY.image_size)
    earlier.mkdir(parents=True, exist_ok=True)
    stems = ImageSet.from_folder(tiny_folder / "images").stems
    for stem in stems:
        iio.imwrite(earlier / f"{stem}.png", np.zeros((16, 48, 3), np.uint8))
    results, _ = run_to_end(config, resume=True)
    assert results[-1].iteration == 1
    working = RunFolder(tmp_path / "run").cache_dir / "images" / str(TINY.image_size)
    assert all(iio.imread(working / f"{stem}.png").shape == (64, 64, 3) for stem in stems)
    assert sorted(path.name for path in (tmp_path / "run" / "cache").iterdir()) == [working.parents[1].name]


def _saved_later(photo: Path, picture: np.ndarray | None = None) -> None:
    """``photo`` saved again (``picture`` instead, if given) a minute after it was last."""
    last = photo.stat().st_mtime_ns
    if picture is not None:
        iio.imwrite(photo, picture)
    os.utime(photo, ns=(last + 60 * 10**9,) * 2)


def test_a_working_copy_is_made_anew_when_its_photo_changes_and_tells_another_picture_from_a_copy(tmp_path):
    pictures = make_sample_set("flower", 2, 64, seed=1).images
    (tmp_path / "photos").mkdir()
    photo = tmp_path / "photos" / "p.png"
    iio.imwrite(photo, pictures[0])
    working = WorkingImages(ImageSet.from_folder(tmp_path / "photos"), 32, tmp_path / "cache")
    first = working.get("p")
    assert np.array_equal(first, resize_image(pictures[0], (32, 32)))
    assert working.is_current("p")  # cached from the photo as it is
    _saved_later(photo)  # the same picture, copied without its file times, say
    assert not working.is_current("p")
    before, now = working.renewed("p")
    assert np.array_equal(before, first)
    assert np.array_equal(now, first)
    assert same_picture(before, now)
    assert working.is_current("p")
    _saved_later(photo, pictures[1])  # another picture of the name
    assert np.array_equal(working.get("p"), resize_image(pictures[1], (32, 32)))
    _saved_later(photo, pictures[0])
    assert not working.is_current("p")
    before, now = working.renewed("p")
    assert np.array_equal(before, resize_image(pictures[1], (32, 32)))
    assert np.array_equal(now, first)
    assert not same_picture(before, now)


def test_a_resume_labels_photos_changed_since_anew_and_does_not_train_on_their_old_masks(tiny_folder, tmp_path):
    photos = shutil.copytree(tiny_folder / "images", tmp_path / "photos")
    config = TINY.updated(images=str(photos), out=str(tmp_path / "run"), iterations=1)
    run_to_end(config.updated(iterations=0))
    cropped, replaced, touched, other = (photos / f"{stem}.png" for stem in ImageSet.from_folder(photos).stems[:4])
    _saved_later(cropped, iio.imread(cropped)[4:44, 0:56])
    _saved_later(replaced, iio.imread(other)[::-1])
    _saved_later(touched)
    events = list(run_labelling(config, resume=True))
    notices = [event.message for event in events if isinstance(event, Notice)]
    # The three photos whose files changed are read again, with progress; the others' working copies stand.
    read_again = [event for event in events if isinstance(event, Progress) and "changed since" in event.phase]
    assert [(event.phase, event.done, event.total) for event in read_again[-1:]] == [
        ("iter 1 of 1: read photos changed since", 3, 3)
    ]
    assert (
        f"2 photos changed since iteration 0 was made: {cropped.stem}, {replaced.stem}; iteration 0's masks of them "
        "show them as they were, so iteration 1 does not train on them and labels them anew"
    ) in notices
    assert "iteration 1: training on 6 of 6 masks" in notices
    store = RunFolder(tmp_path / "run")
    assert store.read_mask(1, cropped.stem).shape == (40, 56)
    # With the cache deleted (documented as safe), the masks' shapes still tell a cropped photo.
    shutil.rmtree(store.root / "cache")
    _saved_later(touched, iio.imread(touched)[:, 8:])
    _, notices = run_to_end(config.updated(iterations=2), resume=True)
    assert any(notice.startswith(f"1 photo changed since iteration 1 was made: {touched.stem};") for notice in notices)
    assert "iteration 2: training on 7 of 7 masks" in notices
    assert store.read_mask(2, touched.stem).shape == (64, 56)
    # Cropped while a round trains: the round labels the photo as it is then, with no change from before to measure.
    for event in run_labelling(config.updated(iterations=3), resume=True):
        if isinstance(event, Progress) and event.phase == "iter 3 of 3: train" and event.done == 1:
            _saved_later(other, iio.imread(other)[:48])
    assert store.read_mask(3, other.stem).shape == (48, 64)
    stats = store.mask_stats(3)
    assert stats[other.stem].change_iou is None
    assert stats[cropped.stem].change_iou is not None


@pytest.mark.slow
def test_masks_between_iterations_live_on_disk_not_in_memory(branch_run, branch_folder):
    out, results, _ = branch_run
    store = RunFolder(out)
    stems = sorted(p.stem for p in (branch_folder / "images").glob("*.png"))
    # Only the last iteration's working masks stay cached: the next round trains on them.
    assert sorted(p.name for p in (store.cache_dir / "masks").iterdir()) == ["iter_02"]
    # The photos are 160 px, the working size: the cached masks equal the run folder's.
    for stem in stems:
        cached = iio.imread(store.cache_dir / "masks" / "iter_02" / f"{stem}.png") > 127
        np.testing.assert_array_equal(cached, store.read_mask(2, stem))
    # The change between iterations was computed from those files; recompute it from the run folder.
    for iteration in (1, 2):
        changes = []
        for stem in stems:
            new, old = store.read_mask(iteration, stem), store.read_mask(iteration - 1, stem)
            union = np.logical_or(new, old).sum()
            changes.append(np.logical_and(new, old).sum() / union if union else 1.0)
        assert results[iteration].metrics["change_iou"] == pytest.approx(np.mean(changes))


def _uncertain_share(probability: np.ndarray, threshold: float = 0.5, low: float = 0.2, high: float = 0.8) -> float:
    """The share of uncertain pixels as documented, restated in NumPy."""
    uncertain = (probability > low) & (probability < high)
    return np.count_nonzero(uncertain) / max(np.count_nonzero(uncertain | (probability >= threshold)), 1)


@pytest.mark.slow
def test_each_iteration_records_how_sure_it_was_of_every_mask(branch_run, branch_folder):
    from napari_gfn.engine.predict import MaskPredictor
    from napari_gfn.network import load_model

    out, _, notices = branch_run
    store = RunFolder(out)
    config = store.read_config()
    photos = {p.stem: iio.imread(p) for p in sorted((branch_folder / "images").glob("*.png"))}
    for iteration in (0, 1, 2):  # the Otsu seed's model predicted iteration 0
        stats = store.mask_stats(iteration)
        assert sorted(stats) == sorted(photos)
        predictor = MaskPredictor.for_run(load_model(store.model_path(iteration)), torch.device("cpu"), config)
        for stem, photo in photos.items():
            mask = store.read_mask(iteration, stem)  # the photos are at the working size, as the stored masks
            assert stats[stem].area == pytest.approx(np.mean(mask), abs=1e-6)
            probability = predictor.probability(photo).numpy()
            assert stats[stem].uncertain == pytest.approx(_uncertain_share(probability), rel=1e-5)
            if iteration == 0:
                assert stats[stem].change_iou is None
                continue
            previous = store.read_mask(iteration - 1, stem)
            union = np.logical_or(mask, previous).sum()
            assert stats[stem].change_iou == pytest.approx(np.logical_and(mask, previous).sum() / union, rel=1e-5)
    # The run ends by naming the last iteration's least certain masks.
    last = store.mask_stats(2)
    least_sure = sorted(last, key=lambda stem: -last[stem].uncertain)[:3]
    (check,) = [notice for notice in notices if notice.startswith("iteration 2: check first")]
    assert re.findall(r"(\w+) \(\d+% uncertain\)", check) == least_sure
    assert check.endswith(str(store.mask_stats_path(2)))


def test_photos_are_read_side_by_side_in_order_and_a_stopped_caller_leaves_no_read_running():
    from napari_gfn.engine.working import read_ahead

    both_reading = threading.Barrier(2, timeout=10)  # broken, and raising, unless two reads run at once
    started = []

    def read(stem: str) -> str:
        started.append(stem)
        if stem in ("a", "b"):
            both_reading.wait()
        if stem == "d":
            raise ImageReadError(stem, "is corrupt")
        time.sleep(0.01)
        return stem.upper()

    stems = list("abcdefghij")
    results = []
    for stem, reading in read_ahead(read, stems, depth=2):
        try:
            results.append((stem, reading.result()))
        except ImageReadError as error:
            results.append((stem, str(error)))
    assert results == [(stem, "d: is corrupt" if stem == "d" else stem.upper()) for stem in stems]
    started.clear()
    reads = read_ahead(read, stems, depth=2)
    assert [next(reads)[1].result() for _ in range(2)] == ["A", "B"]
    reads.close()
    assert len(started) <= 4  # the two taken, and the two read ahead when it stopped
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("napari-gfn-read")]


def test_mixed_types_and_sizes_come_back_at_full_resolution(tmp_path, write_phone_photo):
    sample = make_sample_set("flower", 6, 64, simple_fraction=0.5, seed=1)
    folder = tmp_path / "photos"
    folder.mkdir()
    grey = (sample.images[0].mean(-1)).astype(np.uint8)
    rgba = np.dstack([sample.images[1], np.full((64, 64), 200, np.uint8)])
    sixteen = sample.images[2].astype(np.uint16) * 257
    big = np.kron(sample.images[3], np.ones((2, 3, 1), np.uint8))
    iio.imwrite(folder / "grey.png", grey)
    iio.imwrite(folder / "rgba.png", rgba)
    iio.imwrite(folder / "sixteen.tif", sixteen)
    iio.imwrite(folder / "big.jpg", big)
    _write_with_orientation(folder / "sideways.jpg", big, 6)
    write_phone_photo(folder / "phone.heic", big, 6)
    write_phone_photo(folder / "android.avif", big, 8)
    iio.imwrite(folder / "plain_a.png", sample.images[4])
    iio.imwrite(folder / "plain_b.png", sample.images[5])
    config = TINY.updated(images=str(folder), out=str(tmp_path / "run"), iterations=1, simple_threshold=0.5)
    results, _ = run_to_end(config)
    store = RunFolder(tmp_path / "run")
    assert results[-1].iteration == 1
    sizes = {
        **dict.fromkeys(("grey", "rgba", "sixteen"), (64, 64)),
        "big": (128, 192),
        **dict.fromkeys(("sideways", "phone", "android"), (192, 128)),
    }
    for stem, shape in sizes.items():
        assert store.read_mask(1, stem).shape == shape


def _write_with_orientation(path, image, orientation):
    picture = Image.fromarray(image)
    exif = picture.getexif()
    exif[ExifTags.Base.Orientation] = orientation
    picture.save(path, exif=exif)


# The EXIF standard's meaning of each orientation: how to turn the stored pixels to show them.
UPRIGHT = {
    1: lambda a: a,
    2: np.fliplr,
    3: lambda a: np.rot90(a, 2),
    4: np.flipud,
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


@pytest.mark.parametrize("orientation", sorted(UPRIGHT))
def test_a_photo_stored_sideways_is_read_upright_as_its_exif_says(tmp_path, orientation):
    stored = np.random.default_rng(orientation).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    path = tmp_path / "photo.jpg"
    _write_with_orientation(path, stored, orientation)
    decoded = iio.imread(path)  # the stored pixels, after JPEG's losses
    assert np.array_equal(ImageRecord("photo", path=path).load(), UPRIGHT[orientation](decoded))


def _flat_patches() -> np.ndarray:
    """Patches of flat colour, which lossy formats keep, in an order that shows which way the photo is turned."""
    colours = np.array([[200, 50, 0], [0, 120, 255], [240, 240, 240], [10, 10, 10]], np.uint8)
    row = np.repeat(np.repeat(colours[None], 16, axis=0), 16, axis=1)
    return np.concatenate([row, row[:, ::-1]])


def test_a_photo_past_pillows_size_warning_reads_quietly_and_one_past_its_limit_is_refused_in_words(
    tmp_path, monkeypatch
):
    # Pillow's guard against decompression bombs, lowered from 89 megapixels so that the photos can be small.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    big = np.random.default_rng(5).integers(0, 256, (30, 40, 3), dtype=np.uint8)  # past the warning
    iio.imwrite(tmp_path / "big.png", big)
    iio.imwrite(tmp_path / "bigger.png", np.zeros((50, 50, 3), np.uint8))  # past twice the limit: Pillow refuses
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(ImageRecord("big", path=tmp_path / "big.png").load(), big)
    refusal = r"bigger.png: has more pixels than Pillow opens \(\d+ megapixels, its guard against decompression bombs\)"
    with pytest.raises(ImageReadError, match=f"{refusal}: save it as a TIFF, which is read at any size"):
        ImageRecord("bigger", path=tmp_path / "bigger.png").load()


def test_reading_photos_leaves_a_warning_shown_once_shown_once(tmp_path):
    iio.imwrite(tmp_path / "photo.png", np.zeros((8, 8, 3), np.uint8))
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("default")  # Python's rule: once per place in the code
        for _ in range(3):
            ImageRecord("photo", path=tmp_path / "photo.png").load()
            warnings.warn("a library's notice, given at each step", UserWarning, stacklevel=1)
    assert [str(warning.message) for warning in shown] == ["a library's notice, given at each step"]


def test_a_jpeg_saved_from_a_browser_and_a_jpeg_2000_scan_are_read(tmp_path):
    flat_patches = _flat_patches()
    # At full colour resolution (4:4:4), so that the patches keep their colours up to their edges.
    Image.fromarray(flat_patches).save(tmp_path / "saved from a browser.jfif", "JPEG", quality=95, subsampling=0)
    Image.fromarray(flat_patches).save(tmp_path / "herbarium sheet.jp2")  # lossless, Pillow's default
    scan, browser = ImageSet.from_folder(tmp_path)  # in order of name
    assert (scan.stem, browser.stem) == ("herbarium sheet", "saved from a browser")
    assert np.abs(browser.load().astype(int) - flat_patches).max() <= 8
    assert np.array_equal(scan.load(), flat_patches)


def test_a_cmyk_jpeg_is_read_in_its_colours(tmp_path):
    flat_patches = _flat_patches()
    Image.fromarray(flat_patches).convert("CMYK").save(tmp_path / "print.jpg", quality=95)
    photo = ImageRecord("print", path=tmp_path / "print.jpg").load()
    assert photo.shape == flat_patches.shape
    assert np.abs(photo.astype(int) - flat_patches).max() <= 8


# Users have pi-heif, not pillow-heif, which imageio would use if it could import it: read in a process without.
_READ_WITHOUT_PILLOW_HEIF = """
import sys
import numpy as np
sys.modules["pillow_heif"] = None
from napari_gfn.engine.images import ImageSet
photos = ImageSet.from_folder(sys.argv[1])
np.savez(sys.argv[2], **{photo.stem: photo.load() for photo in photos})
"""


@pytest.mark.parametrize("suffix", [".heic", ".avif"])
def test_a_phones_photos_are_read_upright_in_their_colours(tmp_path, write_phone_photo, suffix):
    stored = _flat_patches()
    (tmp_path / "phone").mkdir()
    write_phone_photo(tmp_path / "phone" / f"IMG_0001{suffix.upper()}", stored, 1)
    write_phone_photo(tmp_path / "phone" / f"IMG_0002{suffix}", stored, 6)
    read = tmp_path / "read.npz"
    reading = subprocess.run(
        [sys.executable, "-c", _READ_WITHOUT_PILLOW_HEIF, tmp_path / "phone", read], capture_output=True, text=True
    )
    assert reading.returncode == 0, reading.stderr
    photos = np.load(read)
    assert sorted(photos.files) == ["IMG_0001", "IMG_0002"]
    for stem, upright in (("IMG_0001", stored), ("IMG_0002", UPRIGHT[6](stored))):
        assert photos[stem].shape == upright.shape
        assert np.abs(photos[stem].astype(int) - upright).max() <= 8


def test_tiffs_of_palette_indices_inverted_grey_inks_and_ycbcr_are_read_in_the_colours_they_show(tmp_path):
    rng = np.random.default_rng(6)
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    indices = rng.integers(0, 256, (24, 40), dtype=np.uint8)
    colormap = palette.T.astype(np.uint16) * 257  # TIFF stores a palette in 16 bits
    tifffile.imwrite(tmp_path / "palette.tif", indices, photometric="palette", colormap=colormap)
    grey = rng.integers(0, 256, (24, 40), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "scan.tif", 255 - grey, photometric="miniswhite")  # 0 is white
    inks = rng.integers(0, 256, (24, 40, 4), dtype=np.uint8).astype(int)
    tifffile.imwrite(tmp_path / "print.tif", inks.astype(np.uint8), photometric="separated")  # C, M, Y, K
    Image.fromarray(_flat_patches()).convert("YCbCr").save(tmp_path / "video.tif")
    shown_as = {  # the colours each shows, and how far a reader's rounding may stray from them
        "palette": (palette[indices], 0),
        "scan": (np.repeat(grey[..., None], 3, axis=-1), 0),
        "print": ((255 - inks[..., :3]) * (255 - inks[..., 3:]) / 255, 1),  # inks without a colour profile
        "video": (_flat_patches(), 3),
    }
    for stem, (colours, tolerance) in shown_as.items():
        photo = ImageRecord(stem, path=tmp_path / f"{stem}.tif").load()
        assert photo.shape == (*colours.shape[:2], 3), stem
        assert np.abs(photo.astype(int) - colours).max() <= tolerance, stem


def test_a_colour_tiff_stored_plane_by_plane_reads_as_the_photo_and_a_grey_stack_is_still_refused(tmp_path):
    colour = np.random.default_rng(3).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "planes.tif", np.moveaxis(colour, -1, 0), photometric="rgb", planarconfig="separate")
    with tifffile.TiffFile(tmp_path / "planes.tif") as stored:
        assert stored.pages[0].planarconfig == tifffile.PLANARCONFIG.SEPARATE
    assert np.array_equal(ImageRecord("planes", path=tmp_path / "planes.tif").load(), colour)
    tifffile.imwrite(tmp_path / "stack.tif", np.moveaxis(colour, -1, 0), photometric="minisblack")
    with pytest.raises(ImageReadError, match=r"not a 2-D grey or colour photo \(array shape \(3, 24, 40\)\)"):
        ImageRecord("stack", path=tmp_path / "stack.tif").load()


def test_a_voc_masks_unlabelled_band_is_scored_as_neither_object_nor_background(tmp_path):
    truth = np.zeros((40, 50), bool)
    truth[10:30, 12:40] = True
    band = ndimage.binary_dilation(truth, iterations=3) & ~truth
    (tmp_path / "masks").mkdir()
    iio.imwrite(tmp_path / "masks" / "a.png", np.where(band, 255, truth * 15).astype(np.uint8))
    predicted = ndimage.binary_dilation(truth, iterations=2)  # spills into the band, where no label was drawn
    predicted[10:14, 12:20] = False
    predicted[0:3, 0:5] = True  # a false object pixel patch, outside the band

    def by_hand(keep):
        fg = np.sum(predicted & truth & keep) / np.sum((predicted | truth) & keep)
        bg = np.sum(~predicted & ~truth & keep) / np.sum((~predicted | ~truth) & keep)
        return pytest.approx(fg), pytest.approx((fg + bg) / 2)

    score = GroundTruth(tmp_path / "masks").score("a", predicted)
    assert (score.fg_iou, score.miou) == by_hand(~band)
    # With an ignore folder as well, both leave pixels out.
    left_out = np.zeros(truth.shape, np.uint8)
    left_out[:, :6] = 255
    (tmp_path / "ignore").mkdir()
    iio.imwrite(tmp_path / "ignore" / "a.png", left_out)
    score = GroundTruth(tmp_path / "masks", tmp_path / "ignore").score("a", predicted)
    assert (score.fg_iou, score.miou) == by_hand(~band & (left_out == 0))


def test_object_masks_read_alike_whatever_file_holds_them_and_a_photo_is_refused(tmp_path):
    truth = np.zeros((40, 50), bool)
    truth[5:27, 9:33] = True
    iio.imwrite(tmp_path / "jpeg.jpg", np.where(truth, 255, 0).astype(np.uint8), quality=90)
    assert len(np.unique(read_mask(tmp_path / "jpeg.jpg"))) > 2  # the JPEG's noise is there to be absorbed
    iio.imwrite(tmp_path / "ones.png", truth.astype(np.uint8))
    iio.imwrite(tmp_path / "labels.tif", truth.astype(np.uint16) * 3)  # an instance label, 16-bit
    grey = np.where(truth, 255, 0).astype(np.uint8)
    iio.imwrite(tmp_path / "rgb.jpg", np.stack([grey] * 3, axis=-1), quality=90)
    iio.imwrite(tmp_path / "rgba.png", np.stack([grey] * 3 + [np.full_like(grey, 255)], axis=-1))
    iio.imwrite(tmp_path / "grey-alpha.png", np.stack([grey, np.full_like(grey, 128)], axis=-1))
    # Instance labels from a segmentation tool: hundreds of objects, each its own value from 1 on, in 16 bits.
    labels = np.zeros(truth.shape, np.uint16)
    labels[truth] = np.arange(1, truth.sum() + 1)
    iio.imwrite(tmp_path / "many-labels.png", labels)
    iio.imwrite(tmp_path / "sixteen-bit.png", np.where(truth, 65535, 0).astype(np.uint16))
    iio.imwrite(tmp_path / "float.tif", truth.astype(np.float32))
    # A label image with a palette, as labelme saves one: index 0 black, 1 red.
    painted = Image.fromarray(truth.astype(np.uint8)).convert("P")  # the indices are the values
    painted.putpalette([0, 0, 0, 255, 0, 0])
    painted.save(tmp_path / "palette.png")
    painted.save(tmp_path / "palette.tif")
    # Pascal VOC's masks: a class label, and 255 in a band around the object where no label was drawn.
    band = ndimage.binary_dilation(truth, iterations=2) & ~truth
    iio.imwrite(tmp_path / "voc.png", np.where(band, 255, truth * 7).astype(np.uint8))
    iio.imwrite(tmp_path / "trimap.png", np.where(band, 127, truth * 255).astype(np.uint8))  # the band unknown
    for name in (
        "jpeg.jpg",
        "ones.png",
        "labels.tif",
        "rgb.jpg",
        "rgba.png",
        "grey-alpha.png",
        "many-labels.png",
        "sixteen-bit.png",
        "float.tif",
        "palette.png",
        "palette.tif",
        "voc.png",
        "trimap.png",
    ):
        np.testing.assert_array_equal(read_object_mask(tmp_path / name, truth.shape), truth, err_msg=name)
    # A small object's band covers more pixels than the object itself, in a VOC mask and in a trimap alike.
    small = np.zeros((40, 50), bool)
    small[18:21, 20:23] = True
    ring = ndimage.binary_dilation(small, iterations=2) & ~small
    iio.imwrite(tmp_path / "small-voc.png", np.where(ring, 255, small * 7).astype(np.uint8))
    iio.imwrite(tmp_path / "small-trimap.png", np.where(ring, 127, small * 255).astype(np.uint8))
    for name in ("small-voc.png", "small-trimap.png"):
        np.testing.assert_array_equal(read_object_mask(tmp_path / name), small, err_msg=name)
    # A photo given where masks were meant (--gt pointed at the photos) is named, not scored as a mask.
    photo = np.zeros((40, 50, 3), np.uint8)
    photo[..., 1] = 150
    iio.imwrite(tmp_path / "photo.png", photo)
    with pytest.raises(ImageReadError, match=r"photo\.png: is a colour picture, not a mask"):
        read_object_mask(tmp_path / "photo.png")
    iio.imwrite(tmp_path / "empty.png", np.zeros((40, 50), np.uint8))
    assert not read_object_mask(tmp_path / "empty.png").any()


def test_a_mask_the_size_of_the_sideways_photo_is_named_as_maybe_turned(tmp_path):
    iio.imwrite(tmp_path / "turned.png", np.zeros((40, 24), np.uint8))
    with pytest.raises(ImageReadError, match=r"turned\.png: mask is 24x40 but its photo is 40x24 \(turned sideways\?"):
        read_mask(tmp_path / "turned.png", (24, 40))
    iio.imwrite(tmp_path / "small.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(ImageReadError, match=r"10x10 but its photo is 40x24$"):
        read_mask(tmp_path / "small.png", (24, 40))


def test_conversions_to_rgb8():
    grey16 = np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)
    converted = to_rgb8(grey16)
    assert converted.shape == (2, 2, 3)
    assert converted.dtype == np.uint8
    assert converted[0, 1, 0] == 255
    assert converted[1, 0, 2] == 128
    rgba = np.zeros((3, 3, 4), np.uint8)
    rgba[..., 0] = 10
    assert to_rgb8(rgba).shape == (3, 3, 3)
    assert to_rgb8(np.full((2, 2), 0.5)).max() == 128
    with pytest.raises(ValueError, match="not a 2-D"):
        to_rgb8(np.zeros((2, 2, 2, 2)))


# The Otsu seed reads every photo before training; GrabCut meets a bad photo while it writes masks.
@pytest.mark.parametrize(("seed", "workers"), [("otsu", 0), ("grabcut", 2)])
def test_bad_files_are_named_and_skipped(tiny_folder, tmp_path, seed, workers):
    folder = tmp_path / "photos"
    shutil.copytree(tiny_folder / "images", folder)
    good = (folder / "flower_000.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 3])
    (folder / "cut short.jpg").write_bytes(
        iio.imwrite("<bytes>", iio.imread(folder / "flower_005.png"), extension=".jpg")[:200]
    )
    with pytest.raises(OSError, match=r"(?i)truncated") as cut_short:
        Image.open(folder / "cut short.jpg").load()  # what the decoder says, to be passed on
    (folder / "notes.txt").write_text("field notes")
    (folder / "notes.png").write_text("field notes, saved under a photo's name")
    for index in range(5):  # a camera's RAW files beside its JPEGs
        (folder / f"IMG_{index:04d}.CR2").write_bytes(b"raw")
    for name in ("flower_006.MOV", "flower_006.AAE", "flower_007.MOV"):  # what an iPhone saves beside its photos
        (folder / name).write_bytes(b"phone")
    (folder / "field trip.mov").write_bytes(b"a video, not beside a photo")
    (folder / "flower_005.png.xmp").write_text("<x:xmpmeta/>")  # a photo editor's record of its edits
    for name in ("Thumbs.db", "desktop.ini"):  # what Windows leaves in a folder it has shown
        (folder / name).write_bytes(b"windows")
    (folder / "unfinished copy.jpg").touch()
    iio.imwrite(folder / "sliver.png", np.zeros((1, 12, 3), np.uint8))
    # The same photo saved twice under one name: masks are named after photos, so one copy is skipped.
    Image.open(folder / "flower_003.png").save(folder / "flower_003.bmp")
    Image.open(folder / "flower_004.png").save(folder / "phone photo.webp", lossless=True)
    gt = tmp_path / "gt"
    shutil.copytree(tiny_folder / "masks", gt)
    iio.imwrite(gt / "flower_001.png", np.zeros((10, 12), np.uint8))
    (gt / "flower_002.png").unlink()
    shutil.copy(gt / "flower_004.png", gt / "phone photo.png")
    config = TINY.updated(
        images=str(folder), out=str(tmp_path / "run"), gt=str(gt), iterations=1, workers=workers, seed=seed
    )
    events = list(run_labelling(config))
    text = "\n".join(event.message for event in events if isinstance(event, Notice))
    assert "notes.txt: not a photo file napari-gfn reads" in text
    raw = f"5 files in {folder} (IMG_0000.CR2, IMG_0001.CR2, IMG_0002.CR2, ...): not photo files napari-gfn reads"
    assert raw in text
    assert "; a camera's RAW files: label the JPEGs the camera saved beside them, or export JPEGs" in text
    assert text.count(".CR2") == 3  # one message for all five
    messages = [event.message for event in events if isinstance(event, Notice)]
    reads = f"napari-gfn reads (it reads {', '.join(IMAGE_SUFFIXES)})"
    videos = f"2 files in {folder} (flower_006.MOV, flower_007.MOV): not photo files {reads}"
    assert f"skipped {videos}; the photos of the same names beside them are labelled" in messages
    edits = f"{folder / 'flower_006.AAE'}: not a photo file {reads}"
    assert f"skipped {edits}; the photo of the same name beside it is labelled" in messages
    assert f"skipped {folder / 'field trip.mov'}: not a photo file {reads}" in messages
    assert f"skipped {folder / 'flower_005.png.xmp'}: not a photo file {reads}; the photo of the same" in text
    assert "Thumbs.db" not in text
    assert "desktop.ini" not in text
    assert "truncated.png: cannot be read as an image" in text
    unknown = "notes.png: cannot be read as an image (corrupt or truncated?): no image format recognised in its bytes"
    assert f"{unknown}\n" in text
    assert f"cut short.jpg: cannot be read as an image (corrupt or truncated?): {cut_short.value}\n" in text
    assert "unfinished copy.jpg: the file is empty (0 bytes; an unfinished copy?)" in text
    assert "sliver.png: is 12x1 pixels: too small to label" in text
    assert "flower_003.png: has the same name as flower_003.bmp, which is labelled instead" in text
    assert "flower_001.png: mask is 12x10 but its photo is 64x64" in text
    assert "flower_002.png: no ground-truth mask" in text
    result = [event for event in events if isinstance(event, IterationResult)][-1]
    assert result.iteration == 1
    assert sorted(result.mask_paths) == [f"flower_{i:03d}" for i in range(8)] + ["phone photo"]
    assert result.metrics["fg_iou"] is not None
    # Skipped photos still count as done, so each phase's progress reaches its end.
    last_of_phase = {event.phase: event for event in events if isinstance(event, Progress)}
    assert all(event.done == event.total for event in last_of_phase.values()), last_of_phase


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("nothing here")
    config = TINY.updated(images=str(tmp_path / "empty"), out=str(tmp_path / "run"))
    with pytest.raises(LabellingError, match=r"empty: the folder holds no photos \(\.png, .*\)$"):
        run_to_end(config)
    for species in ("orchis", "ophrys", "dactylorhiza", "cypripedium"):
        (tmp_path / "empty" / species).mkdir()
    (tmp_path / "empty" / "ophrys" / "site a").mkdir()
    subfolders = r"nor do its subfolders \(cypripedium, dactylorhiza, ophrys, \.\.\.\) or theirs$"
    with pytest.raises(LabellingError, match=subfolders):
        run_to_end(config)


def test_a_photo_or_mask_given_for_its_folder_is_named_as_a_file(tiny_folder, tmp_path):
    photo, mask = (next((tiny_folder / kind).glob("*.png")) for kind in ("images", "masks"))
    for read in (ImageSet.from_folder, GroundTruth):
        with pytest.raises(ImageReadError, match=f"^{re.escape(str(photo))}: a file, not a folder: give the folder"):
            read(photo)
    with pytest.raises(ImageReadError, match=f"^{re.escape(str(mask))}: a file, not a folder"):
        GroundTruth(tiny_folder / "masks", ignore=mask)
    with pytest.raises(ImageReadError, match=f"^{re.escape(str(tmp_path / 'gone'))}: no such folder$"):
        ImageSet.from_folder(tmp_path / "gone")


def test_a_run_folder_or_its_masks_given_for_photos_is_named_as_a_run(branch_run, branch_folder, tmp_path):
    out, _, _ = branch_run
    of_the_run = f"a folder of the napari-gfn run {out}"
    working_copies = next((out / "cache").glob("*/images/*"))
    for given, what in (
        (out, "a napari-gfn run folder"),
        (out / "iter_01" / "masks", of_the_run),
        (working_copies, of_the_run),
    ):
        said = f"{given}: {what}, not a folder of photos: its photos are in {branch_folder / 'images'}; open the run"
        with pytest.raises(ImageReadError, match=f"^{re.escape(said)} to see its masks$"):
            ImageSet.from_folder(given)
    # A layer run's photos copied into its inputs/, and photos a user keeps in a run folder, are photos.
    record = json.loads((out / "run.json").read_text())
    record["config"]["images"] = None
    layer_run = tmp_path / "layer run"
    for kept in ("inputs/photos", "mine", "fixed"):
        (layer_run / kept).mkdir(parents=True)
        iio.imwrite(layer_run / kept / "p.png", np.zeros((8, 8, 3), np.uint8))
    (layer_run / "run.json").write_text(json.dumps(record))
    for kept in ("inputs/photos", "mine"):
        assert ImageSet.from_folder(layer_run / kept).stems == ["p"]
    said = f"{layer_run / 'fixed'}: a folder of the napari-gfn run {layer_run}, not a folder of photos: its photos "
    with pytest.raises(ImageReadError, match=f"^{re.escape(said)}came from napari layers; open the run"):
        ImageSet.from_folder(layer_run / "fixed")


def test_photos_sorted_into_subfolders_are_labelled_together(tmp_path):
    for site, stems in (("meadow", ["m1", "m2"]), ("wood", ["w1"])):
        (tmp_path / "photos" / site).mkdir(parents=True)
        for stem in stems:
            iio.imwrite(tmp_path / "photos" / site / f"{stem}.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "photos" / "wood" / "notes.txt").write_text("sunny")
    # A tree of species, year and site is read to its photos, whatever its depth.
    sorted_as = {"heath/2024/site b": "h1", "heath/2025": "h2", "meadow/rejects": "m9", "wood/2025": "w1"}
    for where, stem in sorted_as.items():
        (tmp_path / "photos" / where).mkdir(parents=True)
        iio.imwrite(tmp_path / "photos" / where / f"{stem}.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "photos" / "heath" / "2024" / "all photos").symlink_to(tmp_path / "photos")  # a link up the tree
    # A run kept beside the photos is not read as more photos.
    (tmp_path / "photos" / "run" / "inputs").mkdir(parents=True)
    (tmp_path / "photos" / "run" / "run.json").write_text("{}")
    iio.imwrite(tmp_path / "photos" / "run" / "copied.png", np.zeros((8, 8, 3), np.uint8))
    photos = ImageSet.from_folder(tmp_path / "photos")
    # A folder that holds photos has its own subfolders left alone, and says so once: meadow's rejects, and wood's
    # 2025 though its photo's name is one labelled (a camera may start its numbering again).
    assert photos.stems == ["h1", "h2", "m1", "m2", "w1"]
    assert photos[0].path == tmp_path / "photos" / "heath" / "2024" / "site b" / "h1.png"
    assert photos[4].path == tmp_path / "photos" / "wood" / "w1.png"
    assert photos.skipped == [
        f"{tmp_path / 'photos' / 'wood' / 'notes.txt'}: not a photo file napari-gfn reads "
        f"(it reads {', '.join(IMAGE_SUFFIXES)})",
        _left_out(tmp_path / "photos", "2 subfolders", "meadow/rejects, wood/2025"),
    ]
    # Two photos of one name deep in the tree are named with the folders that hold them.
    iio.imwrite(tmp_path / "photos" / "heath" / "2025" / "h1.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(
        ImageReadError,
        match=re.escape("share a name, and each mask is named after its photo: h1 (heath/2024/site b, heath/2025)"),
    ):
        ImageSet.from_folder(tmp_path / "photos")
    # A photo in the folder itself means the subfolders are something else (masks, runs): only it is read.
    iio.imwrite(tmp_path / "photos" / "p0.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "photos" / "empty").mkdir()
    photos = ImageSet.from_folder(tmp_path / "photos")
    assert photos.stems == ["p0"]
    # The subfolders that hold photos are named; an empty one and the run folder are not.
    assert photos.skipped == [_left_out(tmp_path / "photos", "3 subfolders", "heath, meadow, wood")]


def test_photos_of_one_name_are_refused_naming_each_name_once():
    arrays = [np.zeros((4, 4, 3), np.uint8)] * 5
    with pytest.raises(ValueError, match=re.escape("photos must have unique names; repeated: a, b")):
        ImageSet.from_arrays(arrays, names=["b", "a", "b", "a", "c"])


def test_a_subfolder_that_cannot_be_read_is_left_out_and_said_to_be(tmp_path, folders_named_locked_refused):
    for where in ("photos/site a", "photos/locked", "photos/site a/locked"):
        (tmp_path / where).mkdir(parents=True)
        iio.imwrite(tmp_path / where / f"{where.replace('/', '_')}.png", np.zeros((8, 8, 3), np.uint8))
    photos = ImageSet.from_folder(tmp_path / "photos")
    assert photos.stems == ["photos_site a"]
    locked = tmp_path / "photos" / "locked"
    left_out = f"{locked}: the folder cannot be read (Permission denied), so any photos in it are left out"
    assert photos.skipped == [left_out]
    # Below a folder of photos a subfolder is left out anyway, and goes unsaid when it cannot be looked into.
    assert ImageSet.from_folder(tmp_path / "photos" / "site a").skipped == []
    shutil.rmtree(tmp_path / "photos" / "site a")
    with pytest.raises(ImageReadError) as error:
        ImageSet.from_folder(tmp_path / "photos")
    assert str(error.value).endswith(
        f"nor do its subfolders (locked) or theirs that can be read; {locked} cannot be read (Permission denied)"
    )
    with pytest.raises(ImageReadError, match=re.escape(f"{locked}: the folder cannot be read (Permission denied)")):
        ImageSet.from_folder(locked)


def test_links_to_photos_that_are_not_there_are_named_not_passed_over(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    iio.imwrite(photos / "here.png", np.zeros((8, 8, 3), np.uint8))
    (photos / "here too.png").symlink_to(photos / "here.png")
    unplugged = tmp_path / "usb drive"
    (photos / "away.jpg").symlink_to(unplugged / "away.jpg")
    (photos / "notes.txt").symlink_to(unplugged / "notes.txt")  # not a photo: no word of it
    listed = ImageSet.from_folder(photos)
    assert sorted(listed.stems) == ["here", "here too"]
    away = f"{photos / 'away.jpg'} -> {unplugged / 'away.jpg'}"
    assert listed.skipped == [
        f"a link to a photo that is not there ({away}): the photo may be on a drive not connected, or moved"
    ]
    # Links alone, all dead: the folder's error says where its photos were to be.
    links = tmp_path / "links"
    links.mkdir()
    for name in ("a.png", "b.png", "c.png", "d.png"):
        (links / name).symlink_to(unplugged / name)
    named = ", ".join(f"{links / name} -> {unplugged / name}" for name in ("a.png", "b.png", "c.png"))
    with pytest.raises(ImageReadError) as error:
        ImageSet.from_folder(links)
    assert str(error.value).endswith(
        f"; 4 links to photos that are not there ({named}, ...): the photos may be on a drive not connected, or moved"
    )


def test_a_photo_gone_or_refused_by_the_system_is_said_so_not_called_corrupt(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("kept", "deleted", "a folder now"):
        iio.imwrite(photos / f"{name}.png", np.zeros((8, 8, 3), np.uint8))
    listed = ImageSet.from_folder(photos)
    (photos / "deleted.png").unlink()  # while a run worked
    (photos / "a folder now.png").unlink()
    (photos / "a folder now.png").mkdir()
    said = {}
    for record in listed:
        try:
            record.load()
        except ImageReadError as error:
            said[record.stem] = str(error)
    assert said == {
        "deleted": f"{photos / 'deleted.png'}: the file is gone (moved, renamed or deleted since it was listed)",
        "a folder now": f"{photos / 'a folder now.png'}: cannot be read ({os.strerror(errno.EISDIR)})",
    }


def _left_out(folder: Path, subfolders: str, names: str) -> str:
    return (
        f"the photos in {subfolders} of {folder} ({names}): a folder that holds photos itself keeps its subfolders "
        "out (rejects or thumbnails, say); to label them too, move the photos beside them into a subfolder of their "
        "own"
    )


def test_a_dataset_folder_of_images_and_masks_is_refused_naming_the_repeats(tmp_path):
    data = write_sample_folder(tmp_path / "data", kind="flower", n=4, size=32, seed=1)
    expected = (
        f"{data}: photos in different subfolders share a name, and each mask is named after its photo: "
        "flower_000 (images, masks), flower_001 (images, masks), flower_002 (images, masks), ...; "
        "choose the subfolder that holds the photos, or rename the repeats"
    )
    with pytest.raises(ImageReadError) as error:
        ImageSet.from_folder(data)
    assert str(error.value) == expected
    # Given as the ground truth by mistake, the same folder is named once, not as 4 photos that are not masks.
    with pytest.raises(
        ImageReadError, match=r"masks in different subfolders share a name.*flower_000 \(images, masks\)"
    ):
        GroundTruth(data)


def test_no_simple_photo_is_a_clear_error(tiny_folder, tmp_path):
    config = TINY.updated(images=str(tiny_folder / "images"), out=str(tmp_path / "run"), simple_threshold=0.999)
    with pytest.raises(LabellingError, match=r"no photo qualifies as simple.*--seed grabcut") as error:
        run_to_end(config)
    # The photos are 64 px, the working size, so the seed scored the photos themselves.
    scores = {path.stem: otsu_mask(iio.imread(path)) for path in (tiny_folder / "images").glob("*.png")}
    stem, best = max(scores.items(), key=lambda item: item[1].separability)
    assert (
        f"the most separable photo, {stem}, reaches {best.separability:.2f} and its object covers "
        f"{best.border_contact:.0%} of the border"
    ) in str(error.value)


def _outside_10_to_90(store: RunFolder, iteration: int) -> tuple[list[str], int]:
    """The photos whose mask of ``iteration`` the area filter does not trust, and how many masks there are."""
    masks = sorted((store.iteration_dir(iteration) / "masks").iterdir())
    return [path.stem for path in masks if not 0.1 <= np.mean(read_object_mask(path)) <= 0.9], len(masks)


def _named(notice: str, after: str) -> list[str]:
    return re.findall(r"(\w+) \(\d+\.\d%\)", notice.partition(after)[2])


def test_the_masks_the_area_filter_leaves_out_are_named(tiny_folder, tmp_path):
    photos = shutil.copytree(tiny_folder / "images", tmp_path / "photos")
    iio.imwrite(photos / "0_blank.png", np.full((64, 64, 3), 128, np.uint8))  # GrabCut finds no object in it
    config = TINY.updated(images=str(photos), out=str(tmp_path / "run"), seed="grabcut", iterations=1)
    _, notices = run_to_end(config.updated(area_min=0.1, area_max=0.9))
    store = RunFolder(tmp_path / "run")
    left_out, total = _outside_10_to_90(store, 0)
    assert left_out[0] == "0_blank"
    (training,) = [notice for notice in notices if notice.startswith("iteration 1: training on")]
    assert training.startswith(f"iteration 1: training on {total - len(left_out)} of {total} masks; left out")
    assert _named(training, "left out") == left_out[:3], training
    assert "0_blank (0.0%)" in training
    # No network drew GrabCut's masks, so the seed records no uncertainty; iteration 1's network does.
    assert {entry.uncertain for entry in store.mask_stats(0).values()} == {None}
    assert None not in {entry.uncertain for entry in store.mask_stats(1).values()}
    # After the last iteration, the masks it would not trust are named too.
    untrusted = "iteration 1: the area filter would not trust"
    to_check = [_named(notice, "would not trust") for notice in notices if notice.startswith(untrusted)]
    last_outside, _ = _outside_10_to_90(store, 1)
    assert to_check == ([last_outside[:3]] if last_outside else []), notices
    # Each iteration records how many of its own masks the next round trusts.
    for entry in store.metrics():
        outside, total = _outside_10_to_90(store, entry["iteration"])
        assert entry["trusted"] == total - len(outside), (entry, outside)


def test_a_resumed_run_whose_mask_figures_were_cut_short_names_the_file_and_finishes(tiny_folder, tmp_path):
    config = TINY.updated(images=str(tiny_folder / "images"), out=str(tmp_path / "run"), iterations=1)
    run_to_end(config)
    figures = RunFolder(tmp_path / "run").mask_stats_path(1)
    figures.write_text(figures.read_text()[:-5])
    _, notices = run_to_end(config, resume=True)
    assert any(notice.startswith(f"{figures}: cannot be read") for notice in notices), notices


def test_asking_whether_a_mask_is_trusted_does_not_read_it(tmp_path):
    from napari_gfn.engine.working import WorkingMasks

    masks = WorkingMasks(tmp_path).of_iteration(0, ["kept"])
    (tmp_path / "iter_00").mkdir()
    (tmp_path / "iter_00" / "kept.png").write_bytes(b"not a PNG: reading it would raise")
    assert "kept" in masks
    assert "other" not in masks


def test_all_masks_rejected_by_the_area_filter_stops_clearly(tiny_folder, tmp_path):
    config = TINY.updated(images=str(tiny_folder / "images"), out=str(tmp_path / "run"), area_min=0.97)
    events = []
    with pytest.raises(LabellingError, match="nothing to train on"):
        events.extend(run_labelling(config))
    assert [e.iteration for e in events if isinstance(e, IterationResult)] == [0]
    assert RunFolder(tmp_path / "run").finished_iterations() == [0]


def test_masks_that_stop_changing_end_the_run_early_and_it_says_so_only_with_rounds_left(tiny_folder, tmp_path):
    """Without true masks to score rounds by, a round whose masks changed little ends the run: more would only
    cost time. A converge IoU of 0 is met by every round, so the run ends after round 1."""
    config = TINY.updated(images=str(tiny_folder / "images"), out=str(tmp_path / "early"), converge_iou=0.0)
    results, notices = run_to_end(config.updated(iterations=3))
    assert [result.iteration for result in results] == [0, 1]
    assert any(notice.startswith("stopped after iteration 1: masks changed little") for notice in notices)
    results, notices = run_to_end(config.updated(out=str(tmp_path / "last"), iterations=1))
    assert [result.iteration for result in results] == [0, 1]
    assert not any("changed little" in notice for notice in notices)  # it ended where it was asked to


def _logged(events, error):
    """What the run's log should say of ``events`` and the ``error`` that stopped them, times left out."""
    notices = [
        f"{e.level}: {e.message}" if isinstance(e, Notice) else f"info: {e.describe()}"
        for e in events
        if isinstance(e, Notice | IterationResult)
    ]
    return [*notices, f"error: {error}"]


def test_the_run_folder_keeps_what_each_start_of_the_run_reported_and_why_it_stopped(tiny_folder, tmp_path):
    photos = shutil.copytree(tiny_folder / "images", tmp_path / "photos")
    (photos / "cut.png").write_bytes((photos / "flower_000.png").read_bytes()[:300])  # a copy that never finished
    config = TINY.updated(images=str(photos), out=str(tmp_path / "run"), seed="grabcut", iterations=1, area_min=0.97)
    began = datetime.now().replace(microsecond=0)
    runs = []
    for resume in (False, True):  # the resumed run meets the same empty area filter, and stops again
        events = []
        with pytest.raises(LabellingError, match="nothing to train on") as stopped:
            events.extend(run_labelling(config, resume=resume))
        runs.append((events, stopped.value))
    store = RunFolder(tmp_path / "run")
    lines = store.log_path.read_text().splitlines()
    times = [datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S") for line in lines]
    assert began <= times[0]
    assert times == sorted(times)
    assert times[-1] <= datetime.now()
    first, second = (_logged(events, error) for events, error in runs)
    assert "warning: skipped " + str(photos / "cut.png") in "\n".join(first)
    assert [line[20:] for line in lines] == [
        f"info: started on 9 photos from {photos}",
        *first,
        f"info: resumed on 9 photos from {photos}",
        *second,
    ]
    # Opened later, the run counts each warning once, and the error it stopped on.
    warnings = {line for line in first + second if line.startswith("warning: ")}
    assert store.logged_problems() == len(warnings) + 1
    record = json.loads(store.config_path.read_text())
    record["config"]["area_min"] = 0.0  # as if the run had asked for it: a resume now gets past the error
    store.config_path.write_text(json.dumps(record))
    run_to_end(config, resume=True)
    assert store.log_path.read_text().splitlines()[-1].endswith(" info: finished with iteration 1")
    assert store.logged_problems() == len(warnings) >= 1


def test_an_iteration_on_record_is_in_the_log_whichever_event_a_stop_lands_on(tiny_folder, tmp_path):
    """Ctrl-C or SIGTERM stops a run at whatever event it is yielding; the log must name every finished iteration."""
    truth = shutil.copytree(tiny_folder / "masks", tmp_path / "gt")
    next(truth.glob("*.png")).unlink()  # its notice comes out after iteration 0 is on record, before its result
    config = TINY.updated(images=str(tiny_folder / "images"), out=str(tmp_path / "run"), gt=str(truth), iterations=1)
    store = RunFolder(tmp_path / "run")
    events = run_labelling(config)
    stopped_on = next(event for event in events if store.finished_iterations())
    events.close()  # as a stop there leaves the run
    assert isinstance(stopped_on, Notice)
    assert stopped_on.message.startswith("not scored: ")
    assert store.finished_iterations() == [0]
    assert re.search(r" info: iteration 0: 8 masks, .* fg IoU", store.log_path.read_text())


def test_an_unexpected_error_is_logged_with_its_type(tiny_folder, tmp_path, monkeypatch):
    from napari_gfn.engine import refine

    def broken_seed(context):  # a bug in a seed method, not a problem with the photos
        yield Notice("seed started", level="info")
        return 1 / 0

    monkeypatch.setattr(refine, "_seed_methods", lambda: {"otsu": broken_seed})
    config = TINY.updated(images=str(tiny_folder / "images"), out=str(tmp_path / "run"))
    with pytest.raises(ZeroDivisionError):
        run_to_end(config)
    store = RunFolder(tmp_path / "run")
    logged = store.log_path.read_text().splitlines()
    assert logged[-2].endswith(" info: seed started")
    assert logged[-1].endswith(" error: ZeroDivisionError: division by zero")
    assert store.logged_problems() == 1
    assert store.how_it_ended() == "ZeroDivisionError: division by zero"
    # An error of several lines (torch's out-of-memory error, say) stays one entry, its later lines indented.
    store.append_log("error", "CUDA out of memory.\nTried to allocate 2 GiB.\n")
    first, second = store.log_path.read_text().splitlines()[-2:]
    assert (first[19:], second) == (" error: CUDA out of memory.", "    Tried to allocate 2 GiB.")
    assert store.logged_problems() == 1  # the run stopped on this error; its later line is no entry of its own


def test_a_run_says_where_it_computes_and_why_not_on_a_gpu(tiny_folder, tmp_path, monkeypatch):
    from napari_gfn.engine.training import describe_device

    config = TINY.updated(images=str(tiny_folder / "images"), out=str(tmp_path / "run"), seed="grabcut", iterations=0)
    _, notices = run_to_end(config)
    assert notices[0] == f"computing {describe_device(resolve_device('auto'))}"
    cpu = torch.device("cpu")
    on_cpu = "on the CPU (1 thread)"  # as in the dock on two cores, which leaves one to the GUI
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)  # a CPU-only wheel, the usual slip on a GPU server
    assert (
        describe_device(cpu)
        == f"{on_cpu}: this torch ({torch.__version__}) is built without CUDA, so no GPU can be used"
    )
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    assert describe_device("cpu") == f"{on_cpu}: torch finds no CUDA GPU"  # scripts pass a name
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert describe_device(cpu) == f"{on_cpu}, as asked, though a CUDA GPU is present"


def test_unknown_backbone_and_missing_cuda_are_clear(tiny_folder, tmp_path):
    with pytest.raises(ValueError, match=r"backbone \(--backbone\) must be one of efficientnet_lite0, .*got 'vgg'"):
        RunConfig(backbone="vgg")
    if not torch.cuda.is_available():
        config = TINY.updated(images=str(tiny_folder / "images"), out=str(tmp_path / "run"), device="cuda")
        with pytest.raises(LabellingError, match="no usable CUDA GPU"):
            run_to_end(config)


def test_progress_says_the_whole_runs_time_left_from_round_one_on(tiny_folder, tmp_path):
    # Ground truth only scores; it also turns off the early stop.
    config = TINY.updated(
        images=str(tiny_folder / "images"), out=str(tmp_path / "run"), gt=str(tiny_folder / "masks"), iterations=3
    )
    for run in (config, config.updated(iterations=4)):  # a run, then a resume, which times by the run's last round
        round_s = {entry["iteration"]: entry["elapsed_s"] for entry in RunFolder(config.out).metrics()}
        said_in = set()
        asked_at = time.monotonic()  # each round starts after this: as the run is asked for its next event
        received = []  # when the round's progress reports came
        for event in run_labelling(run, resume=run is not config):
            if isinstance(event, IterationResult):
                round_s[event.iteration] = event.elapsed_s
                asked_at, received = time.monotonic(), []
            if not isinstance(event, Progress):
                continue
            received.append(time.monotonic())
            round_now = int(event.phase.split()[1]) if event.phase.startswith("iter ") else 0
            rounds_after = run.iterations - round_now
            if round_now == 0:  # the seed's phases are not a round's
                assert event.run_left_s is None
            elif round_now == 1:  # untimed: as long as it has taken, and its phase's rest
                said_in.add((round_now, event.phase.split(": ")[1]) if event.run_left_s is not None else None)
                if event.phase.endswith("predict") and event.done == event.total:  # no rest left
                    assert rounds_after * (received[-2] - received[0]) <= event.run_left_s
                    assert event.run_left_s <= rounds_after * (time.monotonic() - asked_at)
            else:
                timed = round_s[round_now - 1]
                this_round_left = max(timed - (time.monotonic() - asked_at), 0)
                assert this_round_left + rounds_after * timed <= event.run_left_s <= (rounds_after + 1) * timed
                said_in.add((round_now, "timed"))
        assert said_in - {None} == (
            {(1, "train"), (1, "predict"), (2, "timed"), (3, "timed")} if run is config else {(4, "timed")}
        )


def test_cancel_keeps_finished_iterations(tiny_folder, tmp_path):
    cancel = CancelToken()
    config = TINY.updated(images=str(tiny_folder / "images"), out=str(tmp_path / "run"), iterations=3)
    finished = []
    for event in run_labelling(config, cancel=cancel):
        if isinstance(event, IterationResult):
            finished.append(event.iteration)
            cancel.cancel()
        last = event
    assert finished == [0]
    assert isinstance(last, Notice)
    assert "cancelled" in last.message
    store = RunFolder(tmp_path / "run")
    assert store.finished_iterations() == [0]
    assert len(list((tmp_path / "run" / "iter_00" / "masks").glob("*.png"))) == 8
    assert store.how_it_ended() == f"cancelled; finished iterations [0] are kept in {tmp_path / 'run'}"
    store.log_path.unlink()  # as in a run made before runs kept a log
    assert store.how_it_ended() == "no log (a run made before runs kept one)"


def test_a_run_repeats_exactly_with_its_random_seed(tiny_folder, tmp_path):
    from napari_gfn.network import load_model

    def trained_weights(name, global_seed, random_seed=0):
        torch.manual_seed(global_seed)  # whatever state torch's global generator is in before the run
        folder = tmp_path / name
        run_to_end(
            TINY.updated(images=str(tiny_folder / "images"), out=str(folder), iterations=1, random_seed=random_seed)
        )
        return load_model(RunFolder(folder).model_path(1)).state_dict()

    first, second = trained_weights("first", 1), trained_weights("second", 2)
    assert all(torch.equal(first[key], second[key]) for key in first)
    other = trained_weights("other", 1, random_seed=1)
    assert not all(torch.equal(first[key], other[key]) for key in first)


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.int32, np.float32])
def test_a_mask_is_written_as_a_0_255_png_whatever_its_type(tmp_path, dtype):
    rng = np.random.default_rng(0)
    mask = (rng.integers(0, 3, size=(37, 53)) * rng.integers(0, 2, size=(37, 53))).astype(dtype)
    path = atomic_write_mask_png(tmp_path / "mask.png", mask)
    written = iio.imread(path)
    assert written.dtype == np.uint8
    np.testing.assert_array_equal(written, np.where(mask != 0, 255, 0))
    assert 0 < np.mean(written == 255) < 1


def test_a_runs_files_get_the_mode_the_umask_gives_new_files_so_a_shared_folder_shares_them(
    tiny_folder, tmp_path, monkeypatch
):
    config = TINY.updated(images=str(tiny_folder / "images"), out=str(tmp_path / "run"), iterations=0)
    shared = 0o007  # a lab's project folder: the group reads and writes, others nothing
    before = os.umask(shared)
    try:
        run_to_end(config)
        (tmp_path / "opened.txt").write_text("as open() makes a file")
    finally:
        os.umask(before)
    expected = stat.S_IMODE((tmp_path / "opened.txt").stat().st_mode)
    assert expected == 0o660
    files = [path for path in (tmp_path / "run").rglob("*") if path.is_file()]
    assert len(files) > 10
    assert {str(path.relative_to(tmp_path)): stat.S_IMODE(path.stat().st_mode) for path in files} == {
        str(path.relative_to(tmp_path)): expected for path in files
    }
    # Elsewhere than on Linux, the umask read once.
    monkeypatch.setattr(_atomic, "open", lambda *args: _raise(OSError(errno.ENOENT, "no /proc")), raising=False)
    assert _atomic._mode_of_new_files() == 0o666 & ~before


def _raise(error: Exception):
    raise error


def test_existing_run_is_not_overwritten(tiny_folder, tmp_path):
    config = TINY.updated(images=str(tiny_folder / "images"), out=str(tmp_path / "run"), iterations=0)
    run_to_end(config)
    with pytest.raises(RunFolderError, match="already holds a run"):
        run_to_end(config)


def test_a_run_on_a_read_only_disk_is_refused_at_its_resume_not_after_a_rounds_training(
    tiny_folder, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    config = TINY.updated(images=str(tiny_folder / "images"), out=str(out), seed="grabcut", iterations=0)
    run_to_end(config)
    # A server's run opened over a read-only mount. The tests run as root, whom no permission keeps out, so the
    # system's refusal to make a file in the run folder is simulated.
    make_file = tempfile.TemporaryFile

    def read_only_run_folder(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == out:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return make_file(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only_run_folder)
    events = []
    with pytest.raises(RunFolderError) as refused:
        events.extend(run_labelling(config.updated(iterations=1), resume=True))
    assert str(refused.value) == (
        f"{out}: the run cannot be written there ({out}: {os.strerror(errno.EROFS)}): copy the run folder to a "
        "disk you can write, and resume the copy"
    )
    assert events == []  # no round began


def test_a_round_the_disk_has_no_room_for_is_refused_before_it_trains(tiny_folder, tmp_path, monkeypatch):
    from napari_gfn.engine.training import new_model

    out = tmp_path / "run"
    config = TINY.updated(images=str(tiny_folder / "images"), out=str(out), seed="grabcut", iterations=0)
    run_to_end(config)
    seed_wrote = sum(path.stat().st_size for path in out.rglob("*") if "iter_00" in path.parts and path.is_file())
    model_file = sum(weights.nbytes for weights in new_model(config, torch.device("cpu")).state_dict().values())
    # The tests' disk has room; one with less than the round needs is simulated.
    free = seed_wrote + model_file - 1
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=free))
    events = []
    with pytest.raises(LabellingError) as refused:
        events.extend(run_labelling(config.updated(iterations=1), resume=True))
    assert str(refused.value) == (
        f"iteration 1: the disk of {out} has {free / 1e6:.1f} MB free, and a round writes about "
        f"{(free + 1) / 1e6:.1f} MB (its masks and model file): make room, then resume the run"
    )
    assert not any(isinstance(event, Progress) and "train" in event.phase for event in events)
    assert RunFolder(out).finished_iterations() == [0]
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=free + 1))  # room enough
    run_to_end(config.updated(iterations=1), resume=True)
    assert RunFolder(out).finished_iterations() == [0, 1]


def test_a_run_being_written_is_refused_to_a_second_writer_until_its_writer_ends(tiny_folder, tmp_path):
    """Two processes writing one run would each discard the round the other is writing."""
    config = TINY.updated(images=str(tiny_folder / "images"), out=str(tmp_path / "run"), iterations=1)
    store, lock = RunFolder(config.out), RunLock(tmp_path / "run")
    first = run_labelling(config)
    next(first)  # started: its seed round is being written
    log = store.log_path.read_text()
    holder = f"process {os.getpid()} on {socket.gethostname()} (since "
    for second in (config, config.updated(iterations=2)):  # a new run over it, and a resume
        with pytest.raises(RunLockedError) as refused:
            run_to_end(second, resume=second.iterations == 2)
        assert str(refused.value).startswith(f"{store.root} is being written by {holder}")
        assert str(refused.value).endswith(
            "two processes must not write one run. Wait until it ends, or stop it, then continue the run."
        )
    assert store.log_path.read_text() == log  # the refusals wrote nothing in the run
    assert store.config_path.is_file()
    assert not lock.holder_is_gone()

    results = [event.iteration for event in first if isinstance(event, IterationResult)]
    assert results == [0, 1]
    assert lock.holder_is_gone()
    resumed, _ = run_to_end(config.updated(iterations=2), resume=True)
    assert [result.iteration for result in resumed] == [2]


def test_a_run_from_a_gpu_server_continues_on_this_machines_device(tiny_folder, tmp_path):
    """How to compute belongs to the machine that continues a run: before, the server's CUDA was asked for here."""
    config = TINY.updated(images=str(tiny_folder / "images"), out=str(tmp_path / "run"), iterations=0)
    run_to_end(config)
    store = RunFolder(config.out)
    record = json.loads(store.config_path.read_text())
    record["config"].update(device="cuda", workers=2)  # as the server ran it
    store.config_path.write_text(json.dumps(record))
    results, notices = run_to_end(config.updated(iterations=1, device="cpu"), resume=True)
    assert [result.iteration for result in results] == [1]
    assert any(notice.startswith("computing on the CPU") for notice in notices)
    assert store.read_config().device == "cuda"  # the run's record stays as it ran


def test_a_continued_run_keeps_its_own_settings_but_the_machines_and_more_iterations():
    run = RunConfig(iterations=3, epochs=2, image_size=256, device="cuda", workers=2)
    given = RunConfig(iterations=1, epochs=9, image_size=512, device="cpu", workers=0)
    assert run.continued_with(given) == RunConfig(iterations=3, epochs=2, image_size=256, device="cpu", workers=0)
    assert run.continued_with(given.updated(iterations=5)).iterations == 5


def test_a_folder_refused_for_a_run_is_left_as_it_was(tmp_path):
    """No lock files left in a home folder (or a file) given by mistake, to a new run or a resume."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="is not empty"), RunFolder(home).writing(TINY.updated(out=str(home))):
        pass
    with pytest.raises(RunFolderError, match="nothing to resume"), RunFolder(home).writing():
        pass
    notes = home / "notes.txt"
    with pytest.raises(RunFolderError, match=r"notes\.txt is a file, not a folder"), RunFolder(notes).writing(TINY):
        pass
    assert [entry.name for entry in home.iterdir()] == ["notes.txt"]
    assert notes.read_text() == "mine"


def test_a_run_opens_from_anywhere_and_resumes_after_moving_with_its_photos(tiny_folder, tmp_path, monkeypatch):
    project = tmp_path / "project"
    shutil.copytree(tiny_folder, project)
    monkeypatch.chdir(project)  # a run started with paths relative to where it was started
    run_to_end(TINY.updated(images="images", gt="masks", out="runs/first", iterations=1))
    monkeypatch.chdir(tmp_path)
    config = RunFolder(project / "runs" / "first").read_config()
    assert (config.images, config.gt) == (str(project / "images"), str(project / "masks"))

    moved = tmp_path / "elsewhere" / "project"  # the whole project copied to another machine, say
    shutil.move(project, moved)
    store = RunFolder(moved / "runs" / "first")
    config = store.read_config()
    assert (config.images, config.gt, config.out) == tuple(str(moved / p) for p in ("images", "masks", "runs/first"))
    before = store.read_mask(1, "flower_000")
    results, _ = run_to_end(TINY.updated(out=config.out, iterations=2), resume=True)
    assert [result.iteration for result in results] == [2]
    assert results[0].metrics["fg_iou"] is not None  # scored against the moved ground truth
    np.testing.assert_array_equal(store.read_mask(1, "flower_000"), before)


def test_a_run_made_in_its_photo_folder_and_copied_alone_resumes_on_the_photos_given(tiny_folder, tmp_path):
    photos = shutil.copytree(tiny_folder / "images", tmp_path / "photos")
    run_to_end(TINY.updated(images=str(photos), out=str(photos / "run"), iterations=0))
    run = shutil.copytree(photos / "run", tmp_path / "laptop" / "run")  # its parent folder holds no photo
    moved = shutil.move(photos, tmp_path / "photos elsewhere")
    with pytest.raises(LabellingError) as refused:
        run_to_end(TINY.updated(images=str(tmp_path / "nowhere"), out=str(run), iterations=1), resume=True)
    assert str(refused.value).startswith(
        f"cannot resume {run}: its photos cannot be read ({tmp_path / 'laptop'}: the folder holds no photos ("
    )
    assert str(refused.value).endswith(f"; {tmp_path / 'nowhere'}: no such folder)")
    results, notices = run_to_end(TINY.updated(images=str(moved), out=str(run), iterations=1), resume=True)
    assert [result.iteration for result in results] == [1]
    assert len(results[0].stems) == 8
    assert not any("where this run's own photos are" in notice for notice in notices)


def test_a_resumed_run_reads_its_photos_where_it_began_or_where_they_moved(tiny_folder, tmp_path):
    photos, run = tmp_path / "photos", str(tmp_path / "run")
    shutil.copytree(tiny_folder / "images", photos)
    run_to_end(TINY.updated(images=str(photos), out=run, iterations=0))
    two = tmp_path / "two photos"
    two.mkdir()
    for path in sorted(photos.iterdir())[:2]:
        shutil.copy(path, two)
    results, notices = run_to_end(TINY.updated(images=str(two), out=run, iterations=1), resume=True)
    assert f"photos are read from {photos}, where this run's own photos are, not from {two}" in notices
    assert len(results[0].stems) == 8

    moved = shutil.move(photos, tmp_path / "moved photos")
    results, notices = run_to_end(TINY.updated(images=str(moved), out=run, iterations=2), resume=True)
    assert [result.iteration for result in results] == [2]
    assert len(results[0].stems) == 8
    assert not any("where this run's own photos are" in notice for notice in notices)


def test_arrays_work_like_a_folder(tmp_path):
    sample = make_sample_set("flower", 6, 64, simple_fraction=0.5, seed=9)
    images = ImageSet.from_arrays(sample.images, [f"a{i}" for i in range(6)])
    results, _ = run_to_end(TINY.updated(out=str(tmp_path / "run"), iterations=0), images=images)
    assert sorted(results[0].mask_paths) == [f"a{i}" for i in range(6)]


def test_a_run_another_version_made_with_settings_this_one_lacks_names_both_versions(tmp_path):
    """A run from a GPU server's newer napari-gfn, opened on a laptop with an older one, say."""
    store = RunFolder(tmp_path / "run")
    store.create(RunConfig())
    record = json.loads(store.config_path.read_text())
    record["config"]["a_later_setting"] = 1
    store.config_path.write_text(json.dumps(record))
    with pytest.raises(RunFolderError) as same_version:
        store.read_config()
    assert str(same_version.value).endswith("unreadable run configuration: unknown run settings: a_later_setting")
    record["versions"]["napari_gfn"] = "9.0"
    store.config_path.write_text(json.dumps(record))
    with pytest.raises(RunFolderError) as later_version:
        store.read_config()
    assert str(later_version.value).endswith(
        f"unknown run settings: a_later_setting (the run was made by napari-gfn 9.0, and this is "
        f"{napari_gfn.__version__}: read it with napari-gfn 9.0)"
    )
    store.config_path.write_text(json.dumps(record)[:40])  # cut short: no version to name
    with pytest.raises(RunFolderError, match="unreadable run configuration: Expecting value: line 1 column 41"):
        store.read_config()


def test_run_config_round_trips_through_json_and_rejects_nonsense():
    config = RunConfig(
        images="photos", out="run", iterations=5, area_min=0.2, backbone="resnet50", predict_scales=(1, 2)
    )
    assert RunConfig.from_json(config.to_json()) == config
    assert config.predict_scales == (1.0, 2.0)
    with pytest.raises(ValueError, match="predict_scales"):
        RunConfig(predict_scales=(1.0, 0.0))
    with pytest.raises(ValueError, match="unknown run settings: colour"):
        RunConfig.from_dict({"colour": "green"})
    # Each setting by the names its users know: dock words and flag, the flag alone, or the run.json key.
    every_problem = (
        "mask threshold (--mask-threshold) must be between 0 and 1, got 1.5; "
        "area min (--area-min) must be at least 0 and below area max 0.1 (--area-max 0.1), got 0.9; "
        "upsample_eps must be above 0, got 0.0; --workers must be at least 0, got -1"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(every_problem)}$"):
        RunConfig(area_min=0.9, area_max=0.1, mask_threshold=1.5, workers=-1, upsample_eps=0.0)
    counts_and_shares = (
        "simple threshold (--simple-threshold) must be between 0 and 1, got 2.0; "
        "epochs per iteration (--epochs) must be at least 1, got 0; "
        "fewest steps per training (--min-steps) must be at least 1, got -5; "
        "--random-seed must be from 0 to 4294967295, got -3"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(counts_and_shares)}$"):
        RunConfig(simple_threshold=2.0, epochs=0, min_steps=-5, random_seed=-3)


def test_the_object_shape_settings_a_run_leaves_unset_are_its_seeds():
    def shape(config):
        return {name: getattr(config, name) for name in THIN_OBJECT_SETTINGS}

    assert set(THIN_OBJECT_SETTINGS) == set(BULKY_OBJECT_SETTINGS)
    assert all(THIN_OBJECT_SETTINGS[name] != BULKY_OBJECT_SETTINGS[name] for name in THIN_OBJECT_SETTINGS)
    assert shape(RunConfig(seed="ridge")) == THIN_OBJECT_SETTINGS
    for seed in set(SEED_METHODS) - {"ridge"}:
        assert shape(RunConfig(seed=seed)) == BULKY_OBJECT_SETTINGS
    given = RunConfig(seed="ridge", upsample_radius=32)
    assert shape(given) == {**THIN_OBJECT_SETTINGS, "upsample_radius": 32}
    assert json.loads(given.to_json())["grabcut_edge_band"] == 0  # run.json records the value the run used
    assert RunConfig.from_json(given.to_json()) == given


def test_a_config_given_a_new_seed_takes_its_shape_settings_unless_chosen_by_hand():
    def shape(config):
        return {name: getattr(config, name) for name in THIN_OBJECT_SETTINGS}

    assert shape(RunConfig().updated(seed="ridge")) == THIN_OBJECT_SETTINGS
    assert shape(RunConfig(seed="ridge").updated(seed="grabcut")) == BULKY_OBJECT_SETTINGS
    chosen = RunConfig(upsample_radius=8).updated(seed="ridge")
    assert shape(chosen) == {**THIN_OBJECT_SETTINGS, "upsample_radius": 8}
    assert RunConfig().updated(seed="ridge", min_steps=20).min_steps == 20  # a value given with the seed wins
    assert shape(RunConfig(seed="ridge").updated(seed="ridge", image_size=64)) == THIN_OBJECT_SETTINGS


def test_a_correction_no_longer_trusted_is_kept_aside_and_nothing_reads_it(tmp_path):
    store = RunFolder(tmp_path)
    store.create(RunConfig())
    assert store.forget_fixed_mask("photo") is None
    assert not (tmp_path / "untrusted").exists()  # nothing was trusted: nothing to keep
    corrected = np.zeros((4, 5), dtype=bool)
    corrected[1:3, 2:4] = True
    store.write_fixed_mask("photo", corrected)
    kept = store.forget_fixed_mask("photo")
    assert store.fixed_masks() == {}  # training, export and reopening read only these
    np.testing.assert_array_equal(iio.imread(kept) > 127, corrected)


@pytest.mark.parametrize(
    ("setting", "chosen", "before"),
    [
        ("predict_scales", (1.0, 2.0), (1.0,)),
        ("colour_jitter", 0.5, 0.0),
        ("cam_epochs", 8, RunConfig.seed_epochs),
        ("grabcut_edge_band", 2, 0),
    ],
)
def test_a_run_folder_from_before_a_setting_existed_keeps_computing_as_it_began(tmp_path, setting, chosen, before):
    store = RunFolder(tmp_path / "run")
    store.create(RunConfig(**{setting: chosen}))
    assert getattr(store.read_config(), setting) == chosen
    record = json.loads(store.config_path.read_text())
    del record["config"][setting]  # as run.json was written before the setting existed
    store.config_path.write_text(json.dumps(record))
    assert getattr(store.read_config(), setting) == before
    assert getattr(RunConfig(), setting) != before  # new runs do use the setting


def test_large_photos_are_sharpened_in_bands_with_the_same_mask(monkeypatch):
    from napari_gfn.engine import predict
    from napari_gfn.engine.working import resize_image

    sample = make_sample_set("branch", 1, 240, simple_fraction=0.0, seed=5)
    full, truth = sample.images[0], sample.masks[0]
    small = resize_image(full, (60, 60))
    probability = torch.nn.functional.interpolate(
        torch.from_numpy(truth.astype(np.float32))[None, None], size=(60, 60), mode="area"
    )[0, 0]
    whole = predict.sharpen_to_full_resolution(probability, small, full, 2, 1e-3)
    monkeypatch.setattr(predict, "_BAND_PIXELS", 240 * 7)  # bands of 7 rows, the last one shorter
    banded = predict.sharpen_to_full_resolution(probability, small, full, 2, 1e-3)
    assert whole.shape == truth.shape
    np.testing.assert_array_equal(banded, whole)
    assert np.mean(whole == truth) > 0.9  # and it is a mask of the branch, not an empty array


def test_bf16_autocast_paths_run_on_the_cpu_and_keep_the_guided_filter_in_float32():
    """The GPU's mixed-precision code, exercised on the CPU (autocast with bf16)."""
    from napari_gfn.engine.predict import MaskPredictor
    from napari_gfn.engine.training import PseudoLabelDataset, TrainingSettings, train_model
    from napari_gfn.engine.working import WorkingImages
    from napari_gfn.network import GFN

    torch.manual_seed(0)
    sample = make_sample_set("flower", 4, 64, simple_fraction=1.0, seed=3)
    images = ImageSet.from_arrays(sample.images, names=[f"f{i}" for i in range(4)])
    working = WorkingImages(images, 64)
    targets = {f"f{i}": mask.astype(np.uint8) for i, mask in enumerate(sample.masks)}
    model = GFN(pretrained=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.eval()(torch.rand(1, 3, 64, 64)).dtype == torch.float32  # the GF ends in float32
    before = [p.detach().clone() for p in model.parameters()]
    settings = TrainingSettings(epochs=1, min_steps=3, batch_size=2, crop_size=64, autocast_dtype=torch.bfloat16)
    dataset = PseudoLabelDataset(working, targets, 64)
    steps = list(train_model(model, dataset, settings, torch.device("cpu"), CancelToken(), "bf16"))
    assert steps[-1].done == 3
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))

    small = working.get("f0")
    plain = MaskPredictor(model, torch.device("cpu"), 4, 1e-3).probability(small)
    mixed = MaskPredictor(model, torch.device("cpu"), 4, 1e-3, autocast_dtype=torch.bfloat16).probability(small)
    assert mixed.dtype == torch.float32
    assert float((plain - mixed).abs().max()) < 0.1  # bf16 keeps ~3 significant digits


def test_prediction_averages_its_scales_each_resized_back_to_the_working_size():
    from napari_gfn.engine.predict import MaskPredictor

    torch.manual_seed(0)
    # Any segmentation network will do; 5x5 convolutions make its output depend on the scale.
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(3, 8, 5, padding=2), nn.ReLU(), nn.Conv2d(8, 2, 5, padding=2))
    small = make_sample_set("branch", 1, (48, 64), seed=2).images[0]
    photo = torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255

    def reference(scale):
        scaled = F.interpolate(photo, scale_factor=scale, mode="bilinear")
        with torch.no_grad():
            probabilities = torch.cat([model(scaled), model(scaled.flip(-1)).flip(-1)]).softmax(1)[:, 1:]
        return F.interpolate(probabilities.mean(0, keepdim=True), size=(48, 64), mode="bilinear")[0, 0]

    def predictor(*scales):
        return MaskPredictor(model, torch.device("cpu"), 4, 1e-3, autocast_dtype=None, scales=scales)

    def predicted(*scales):
        return predictor(*scales).probability(small)

    at_one, at_one_and_half = reference(1.0), reference(1.5)
    assert float((at_one - at_one_and_half).abs().max()) > 1e-3  # the scale changes what the network sees
    torch.testing.assert_close(predicted(1.5), at_one_and_half, atol=1e-4, rtol=0)
    torch.testing.assert_close(predictor(1.0).probability_at(small, 1.5), at_one_and_half, atol=1e-4, rtol=0)
    torch.testing.assert_close(predicted(1.0, 1.5), (at_one + at_one_and_half) / 2, atol=1e-4, rtol=0)


def test_a_pixel_is_object_where_the_averaged_probability_reaches_the_run_threshold():
    from napari_gfn.engine.predict import MaskPredictor, uncertain_share
    from napari_gfn.engine.working import resize_image

    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(3, 8, 5, padding=2), nn.ReLU(), nn.Conv2d(8, 2, 5, padding=2))
    with torch.no_grad():
        model[-1].weight *= 30  # an untrained network says ~0.5 everywhere; this spreads its probabilities
    full = make_sample_set("branch", 1, (96, 128), seed=2).images[0]
    small = resize_image(full, (48, 64))
    # Without the GrabCut edge band, which would move the edge: the threshold alone decides here.
    configs = (RunConfig(mask_threshold=threshold, grabcut_edge_band=0) for threshold in (0.4, 0.5))
    low, high = (MaskPredictor.for_run(model, torch.device("cpu"), config) for config in configs)
    probability = high.probability(small)
    assert float(probability.min()) < 0.4
    assert float(probability.max()) > 0.5

    full_masks = []
    for predictor in (low, high):
        full_mask, working_mask, uncertain = predictor.predict(small, full)
        np.testing.assert_array_equal(working_mask, (probability >= predictor.threshold).numpy())
        assert 0 < uncertain == pytest.approx(_uncertain_share(probability.numpy(), predictor.threshold))
        narrow = uncertain_share(probability, predictor.threshold, (0.4, 0.6))
        assert narrow == pytest.approx(_uncertain_share(probability.numpy(), predictor.threshold, 0.4, 0.6))
        assert full_mask.shape == full.shape[:2]
        # Where the photo is its own working size there is no sharpening: the threshold alone decides.
        np.testing.assert_array_equal(predictor.predict(small, small)[0], working_mask)
        full_masks.append(full_mask)
    low_full, high_full = full_masks
    assert np.all(low_full >= high_full)
    assert low_full.sum() > high_full.sum()


def test_the_batch_shrinks_only_when_memory_cannot_hold_it():
    from napari_gfn.engine.training import batch_size_that_fits

    assert batch_size_that_fits(8, bytes_per_sample=1e8, free_bytes=1e10) == 8
    assert batch_size_that_fits(8, bytes_per_sample=1e9, free_bytes=4e9) == 3  # 80% of 4 GB holds 3.2
    assert batch_size_that_fits(8, bytes_per_sample=1e10, free_bytes=1e9) == 1


def test_a_drawn_truth_mask_goes_to_the_one_photo_of_its_size():
    from napari_gfn.engine.metrics import truth_mask_for_photo

    photos = {"wide": np.zeros((4, 6, 3)), "tall": np.zeros((6, 4, 3)), "tall_too": np.zeros((6, 4, 3))}
    drawn = np.zeros((4, 6), np.int32)
    drawn[1, 2] = 3  # any label counts as object
    matched = truth_mask_for_photo("truth", drawn, photos)
    assert list(matched) == ["wide"]
    assert matched["wide"].dtype == np.uint8
    assert np.argwhere(matched["wide"]).tolist() == [[1, 2]]
    assert matched["wide"][1, 2] == 255
    with pytest.raises(ValueError, match=r"'truth' \(4x6\) .* matches 2"):
        truth_mask_for_photo("truth", np.zeros((6, 4)), photos)
    with pytest.raises(ValueError, match="matches 0"):
        truth_mask_for_photo("truth", np.zeros((5, 5)), photos)


def test_new_models_follow_the_random_seed_and_leave_the_global_state_alone():
    from napari_gfn.engine.training import new_model

    def weights(random_seed, **modules):
        model = new_model(RunConfig(random_seed=random_seed), torch.device("cpu"), **modules)
        return model.classifier.weight.detach().clone(), model

    torch.manual_seed(123)
    expected_next_draw = torch.rand(1)
    torch.manual_seed(123)
    first, _ = weights(0)
    assert torch.equal(torch.rand(1), expected_next_draw)
    assert torch.equal(weights(0)[0], first)
    assert not torch.equal(weights(1)[0], first)
    _, baseline = weights(0, use_bg=False, use_hgl=False, use_gf=False)
    assert not any(hasattr(baseline, name) for name in ("boundary_gate", "hgl_high", "guide"))


def test_colour_jitter_changes_the_photo_not_its_mask_and_repeats_with_the_seed():
    from napari_gfn.engine.training import PseudoLabelDataset
    from napari_gfn.engine.working import WorkingImages

    sample = make_sample_set("flower", 1, 64, seed=3)
    working = WorkingImages(ImageSet.from_arrays(sample.images, ["photo"]), 64)
    targets = {"photo": (sample.masks[0] > 0).astype(np.uint8)}

    def first_item(colour_jitter, seed=0):
        # Scale 1 and a crop the photo's size leave only the random mirror image as geometry.
        dataset = PseudoLabelDataset(
            working, targets, crop_size=64, scale_range=(1, 1), colour_jitter=colour_jitter, seed=seed
        )
        return dataset[0]

    jittered_image, jittered_target = first_item(0.3)
    mask = torch.from_numpy(targets["photo"]).long()
    assert torch.equal(jittered_target, mask) or torch.equal(jittered_target, mask.flip(-1))
    plain = torch.from_numpy(working.get("photo")).permute(2, 0, 1).float() / 255
    if not torch.equal(jittered_target, mask):
        plain = plain.flip(-1)
    assert float((jittered_image - plain).abs().mean()) > 0.01
    assert float(jittered_image.min()) >= 0
    assert float(jittered_image.max()) <= 1
    assert torch.equal(first_item(0.3)[0], jittered_image)
    assert not torch.equal(first_item(0.3, seed=1)[0], jittered_image)


def test_loader_workers_draw_their_own_augmentations():
    from napari_gfn.engine.training import PseudoLabelDataset, _loader
    from napari_gfn.engine.working import WorkingImages

    photo = make_sample_set("flower", 1, 64, seed=1).images[0]
    stems = [f"same_{index}" for index in range(8)]
    working = WorkingImages(ImageSet.from_arrays([photo] * 8, stems), 64)
    dataset = PseudoLabelDataset(working, {stem: np.zeros((64, 64), np.uint8) for stem in stems}, crop_size=48)
    loader = _loader(dataset, batch_size=1, device=torch.device("cpu"), workers=2, seed=0)
    # Batches alternate between the two workers; both start from the same photo and the same generator state.
    first_of_worker_0, first_of_worker_1 = (images for images, _ in itertools.islice(loader, 2))
    assert not torch.equal(first_of_worker_0, first_of_worker_1)


def test_phase_bars_start_one_bar_per_phase_and_follow_its_progress():
    import io

    from tqdm import tqdm

    from napari_gfn.engine import PhaseBars, Progress

    made = []

    def new_bar(phase, total, postfix):
        made.append(tqdm(total=total, desc=phase, postfix=postfix, file=io.StringIO()))
        return made[-1]

    bars = PhaseBars(new_bar)
    for event in (Progress("seed: train", 1, 4), Progress("seed: train", 3, 4), Progress("iter 0: predict", 2, 5)):
        bars.show(event)
    assert [(bar.desc, bar.total, bar.n) for bar in made] == [("seed: train", 4, 3), ("iter 0: predict", 5, 2)]
    bars.close()
    assert bars.bar is None
