"""Transfer, CAM, GrabCut and ridge seeds: source models, VOC parsing, class activation maps, and their clear errors."""

import json
import math
import re
import shutil

import cv2
import imageio.v3 as iio
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from napari_gfn.cli import main
from napari_gfn.config import BULKY_OBJECT_SETTINGS, VOC_CLASSES, RunConfig
from napari_gfn.demo import write_sample_folder
from napari_gfn.engine import IterationResult, LabellingError, Notice, score_mask
from napari_gfn.engine.source import LabelledSet
from napari_gfn.engine.working import WorkingImages
from napari_gfn.network import GFN, check_model_file_writable, missing_imagenet_weights, read_model_card, save_model
from napari_gfn.sample_data import make_sample_set
from napari_gfn.seeds import grabcut_mask, otsu_mask
from napari_gfn.seeds.cam import (
    CAM_SCALES,
    CamClassifier,
    class_activation_map,
    crf_available,
    crf_refine,
    object_probability,
    read_image_labels,
    refine_object_mask,
)
from napari_gfn.seeds.ridge import RidgeSettings, largest_web, ridge_mask, ridge_salience
from napari_gfn.store import RunFolder

SOURCE_FAST = ["--image-size", "64", "--epochs", "1", "--min-steps", "80"]


def mean_fg_iou(store: RunFolder, iteration: int, folder) -> float:
    scores = []
    for truth_path in sorted((folder / "masks").glob("*.png")):
        truth = iio.imread(truth_path) > 127
        scores.append(score_mask(store.read_mask(iteration, truth_path.stem), truth).fg_iou)
    return float(np.mean(scores))


def cam_run_config(folder, labels, run, **settings) -> RunConfig:
    """A CAM-seeded run of FOLDER/images, refined by the guided filter, which needs no crf extra."""
    return RunConfig(
        images=str(folder / "images"), out=str(run), seed="cam", labels=str(labels), cam_refiner="guided", **settings
    )


@pytest.fixture(scope="module")
def source_model(tmp_path_factory):
    """A source model trained through the CLI on synthetic flowers (default style)."""
    root = tmp_path_factory.mktemp("source")
    data = write_sample_folder(root / "data", kind="flower", n=16, size=64, seed=11)
    model = root / "flowers.pt"
    assert main(["train-source", str(data / "images"), str(data / "masks"), "--out", str(model), *SOURCE_FAST]) == 0
    return model


def test_a_backbone_without_weights_is_said_where_a_network_starts_from_it_and_only_there(
    tiny_folder, tmp_path, capsys, empty_torch_cache
):
    def times_said(*command: str) -> int:
        brief = ["--image-size", "64", "--epochs", "1", "--min-steps", "2", "--backbone", "resnet18"]
        assert main([*command, *brief]) == 0
        return capsys.readouterr().err.splitlines().count(f"warning: {missing_imagenet_weights('resnet18')}")

    model, photos = tmp_path / "source.pt", str(tiny_folder / "images")
    assert times_said("train-source", photos, str(tiny_folder / "masks"), "--out", str(model)) == 1
    label = ["label", photos, "--area-min", "0", "--area-max", "1"]  # networks this brief make masks of any area
    # A transfer run's networks start from the source model.
    transfer = [*label, "--out", str(tmp_path / "transfer"), "--seed", "transfer", "--source-model"]
    assert times_said(*transfer, str(model), "--iterations", "1") == 0
    # The CAM seed's classifier starts from the backbone, and so does its first round's network: said once.
    labels = tmp_path / "labels.csv"
    stems = sorted(path.stem for path in (tiny_folder / "images").iterdir())
    labels.write_text("image,class\n" + "".join(f"{stem},{('rose', 'iris')[i % 2]}\n" for i, stem in enumerate(stems)))
    cam = [*label, "--out", str(tmp_path / "cam"), "--seed", "cam", "--labels", str(labels), "--cam-refiner", "guided"]
    assert times_said(*cam, "--iterations", "1") == 1
    # GrabCut's seed makes no network; its first round makes one, and the rounds after fine-tune it.
    grabcut = [*label, "--out", str(tmp_path / "grabcut"), "--seed", "grabcut", "--iterations"]
    assert times_said(*grabcut, "0") == 0
    assert times_said(*grabcut, "1", "--resume") == 1
    assert times_said(*grabcut, "2", "--resume") == 0


def test_transfer_seed_beats_otsu_on_flowers_of_another_seed_and_style(source_model, tmp_path):
    target = write_sample_folder(
        tmp_path / "target", kind="flower", n=8, size=64, seed=12, simple_fraction=0.0, style=1
    )
    out = tmp_path / "run"
    argv = [
        "label",
        str(target / "images"),
        "--out",
        str(out),
        "--seed",
        "transfer",
        "--source-model",
        str(source_model),
    ]
    assert main([*argv, "--iterations", "0", "--image-size", "64"]) == 0
    transfer = mean_fg_iou(RunFolder(out), 0, target)
    otsu = np.mean(
        [
            score_mask(otsu_mask(iio.imread(path)).mask, iio.imread(target / "masks" / path.name) > 127).fg_iou
            for path in sorted((target / "images").glob("*.png"))
        ]
    )
    assert transfer > otsu + 0.2, (transfer, otsu)


def test_model_card_names_the_source_set(source_model):
    meta = read_model_card(source_model)["meta"]
    assert meta["source"].endswith("images")
    assert meta["photos"] == 16
    assert meta["image_size"] == 64


def _write_voc(root):
    """Two listed photos (one more listed but absent): cat = VOC index 8, dog = 12, outlines 255."""
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    indices = np.zeros((20, 30), np.uint8)
    indices[2:10, 3:12] = VOC_CLASSES.index("cat") + 1
    indices[12:18, 15:25] = VOC_CLASSES.index("dog") + 1
    indices[1, :] = 255
    palette = Image.fromarray(indices, mode="P")
    palette.putpalette([value for index in range(256) for value in (index, 255 - index, (7 * index) % 256)])
    for stem in ("2007_000001", "2007_000002"):
        iio.imwrite(root / "JPEGImages" / f"{stem}.jpg", np.full((20, 30, 3), 128, np.uint8))
        palette.save(root / "SegmentationClass" / f"{stem}.png")
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000001\n2007_000002\n2007_000404\n")
    return indices


def test_voc_layout_selects_the_class_and_ignores_255(tmp_path):
    indices = _write_voc(tmp_path / "VOC2012")
    labelled = LabelledSet.from_voc(tmp_path / "VOC2012", "cat")
    assert labelled.images.stems == ["2007_000001", "2007_000002"]
    assert len(labelled.missing) == 1
    assert "2007_000404" in labelled.missing[0]
    target = labelled.read_target(labelled.label_paths["2007_000001"])
    expected = np.zeros_like(indices)
    expected[indices == VOC_CLASSES.index("cat") + 1] = 1
    expected[indices == 255] = 255
    np.testing.assert_array_equal(target, expected)
    assert target[14, 20] == 0, "the dog is background when the cat is the object"


def test_voc_errors_are_clear(tmp_path):
    _write_voc(tmp_path / "VOC2012")
    with pytest.raises(LabellingError, match=r"unknown VOC class 'kitten'.*aeroplane"):
        LabelledSet.from_voc(tmp_path / "VOC2012", "kitten")
    with pytest.raises(LabellingError, match="not a VOC 2012 root"):
        LabelledSet.from_voc(tmp_path, "cat")


def test_train_source_from_voc_through_the_cli(tmp_path, capsys):
    _write_voc(tmp_path / "VOC2012")
    model = tmp_path / "cat.pt"
    argv = ["train-source", "--voc", str(tmp_path / "VOC2012"), "--class", "cat", "--out", str(model)]
    assert main([*argv, "--image-size", "32", "--epochs", "1", "--min-steps", "2"]) == 0
    assert read_model_card(model)["meta"]["class_names"] == ["background", "cat"]
    assert "2007_000404" in capsys.readouterr().err


def test_a_model_file_that_cannot_be_written_or_no_epochs_are_refused_before_training(tmp_path, capsys, source_model):
    data = write_sample_folder(tmp_path / "data", kind="flower", n=2, size=32, seed=1)
    (tmp_path / "a-file").write_text("")
    photo = data / "images" / "flower_000.png"
    refusals = {
        str(data): f"{data}: a folder, not a file: give the model file to write, such as {data / 'model.pt'}",
        str(tmp_path / "a-file" / "m.pt"): f"cannot be written ({tmp_path / 'a-file'}: Not a directory)",
        str(photo): f"{photo}: a file that is not a napari-gfn model file: the model would replace it; give a new name",
    }
    kept = photo.read_bytes()
    for out, refusal in refusals.items():
        assert main(["train-source", str(data / "images"), str(data / "masks"), "--out", out, *SOURCE_FAST]) == 1
        said = capsys.readouterr().err
        assert refusal in said
        assert "source: train" not in said
    assert photo.read_bytes() == kept
    check_model_file_writable(shutil.copy(source_model, tmp_path / "trained before.pt"))  # written over
    argv = ["train-source", str(data / "images"), str(data / "masks"), "--out", str(tmp_path / "m.pt"), "--epochs"]
    assert main([*argv, "0"]) == 1  # in train-source's words: it has no iterations
    assert "error: training epochs (--epochs) must be at least 1, got 0" in capsys.readouterr().err


def test_the_photos_folder_given_for_the_masks_too_is_refused_before_anything_is_read(tmp_path):
    data = write_sample_folder(tmp_path / "data", kind="flower", n=2, size=32, seed=1)
    same = data / "images" / ".." / "images"  # the same folder, written another way
    with pytest.raises(LabellingError, match=re.escape(f"{same} is the photos' folder, given for their masks too")):
        LabelledSet.from_folders(data / "images", same)


def test_source_photos_without_a_mask_are_named_once(tmp_path):
    data = write_sample_folder(tmp_path / "data", kind="flower", n=5, size=32, seed=1)
    for stem in ("flower_000", "flower_001", "flower_003", "flower_004"):
        (data / "masks" / f"{stem}.png").unlink()
    labelled = LabelledSet.from_folders(data / "images", data / "masks")
    assert labelled.images.stems == ["flower_002"]
    expected = (
        f"4 photos in {data / 'images'} have no mask in {data / 'masks'} (flower_000, flower_001, flower_003, ...)"
    )
    assert labelled.missing == (expected,)
    (data / "images" / "flower_000.png").unlink()
    (data / "images" / "flower_001.png").unlink()
    (data / "images" / "flower_003.png").unlink()
    missing = LabelledSet.from_folders(data / "images", data / "masks").missing
    assert missing == (f"{data / 'images' / 'flower_004.png'}: no mask in {data / 'masks'}",)


def test_source_masks_of_the_wrong_size_are_named_and_skipped(tmp_path):
    data = write_sample_folder(tmp_path / "data", kind="flower", n=3, size=48, seed=1)
    bad = data / "masks" / "flower_001.png"
    iio.imwrite(bad, np.zeros((10, 10), np.uint8))
    labelled = LabelledSet.from_folders(data / "images", data / "masks")
    working = WorkingImages(labelled.images, 32)
    from napari_gfn.engine import CancelToken, Notice

    events = labelled.working_targets(working, CancelToken(), "read")
    notices = []
    try:
        while True:
            event = next(events)
            if isinstance(event, Notice):
                notices.append(event.message)
    except StopIteration as stop:
        targets = stop.value
    assert sorted(targets) == ["flower_000", "flower_002"]
    assert any(str(bad) in message and "10x10" in message for message in notices)
    assert set(np.unique(targets["flower_000"])) == {0, 1}


def test_a_source_masks_unlabelled_band_stays_out_of_the_loss(tmp_path):
    data = write_sample_folder(tmp_path / "data", kind="flower", n=2, size=48, seed=1)
    truth = iio.imread(data / "masks" / "flower_000.png") > 127
    band = ndimage.binary_dilation(truth, iterations=2) & ~truth
    iio.imwrite(data / "masks" / "flower_000.png", np.where(band, 255, truth * 3).astype(np.uint8))  # as VOC's
    labelled = LabelledSet.from_folders(data / "images", data / "masks")
    target = labelled.read_target(labelled.label_paths["flower_000"])
    np.testing.assert_array_equal(target, np.where(band, 255, truth).astype(np.uint8))  # 255: ignored


def _label_error(argv, capsys) -> str:
    assert main(argv) == 1
    return capsys.readouterr().err


def test_bad_source_models_get_clear_errors(tiny_folder, tmp_path, capsys):
    images = str(tiny_folder / "images")

    # One run folder for every attempt: a run that failed before finishing an iteration can be restarted there.
    def label(*extra):
        return _label_error(["label", images, "--out", str(tmp_path / "run"), *extra], capsys)

    assert "--source-model" in label("--seed", "transfer")
    assert f"{tmp_path}: a folder, not a model file" in label("--seed", "transfer", "--source-model", str(tmp_path))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a model at all")
    message = label("--seed", "transfer", "--source-model", str(corrupt))
    assert str(corrupt) in message
    assert "corrupt" in message
    three = save_model(GFN(num_classes=3, pretrained=False), tmp_path / "three.pt")
    assert "3 classes" in label("--seed", "transfer", "--source-model", str(three))
    resnet = save_model(GFN(backbone="resnet18", pretrained=False), tmp_path / "resnet.pt")
    assert "--backbone resnet18" in label("--seed", "transfer", "--source-model", str(resnet))


def test_cam_label_problems_get_clear_errors(tiny_folder, tmp_path, capsys):
    images = str(tiny_folder / "images")
    stems = sorted(p.stem for p in (tiny_folder / "images").glob("*.png"))

    def label(labels, name):
        return _label_error(
            ["label", images, "--out", str(tmp_path / name), "--seed", "cam", "--labels", labels], capsys
        )

    one_class = tmp_path / "one.csv"
    one_class.write_text("image,class\n" + "".join(f"{stem},rose\n" for stem in stems))
    message = label(str(one_class), "one")
    assert "at least two classes" in message
    assert "--seed otsu" in message
    assert "--seed transfer" in message
    assert "--seed grabcut" in message
    no_columns = tmp_path / "bad.csv"
    no_columns.write_text("file,species\na,b\n")
    assert "image,class" in label(str(no_columns), "bad")
    assert "--labels" in _label_error(["label", images, "--out", str(tmp_path / "x"), "--seed", "cam"], capsys)


def test_the_cam_classifier_trains_for_cam_epochs_not_seed_epochs(tiny_folder, tmp_path):
    from napari_gfn.engine import Progress, run_labelling

    stems = sorted(p.stem for p in (tiny_folder / "images").glob("*.png"))
    labels = tmp_path / "labels.csv"
    labels.write_text("image,class\n" + "".join(f"{stem},{('rose', 'iris')[i % 2]}\n" for i, stem in enumerate(stems)))
    config = cam_run_config(
        tiny_folder,
        labels,
        tmp_path / "run",
        cam_epochs=3,
        seed_epochs=7,
        iterations=0,
        image_size=32,
        batch_size=4,
        min_steps=1,
    )
    totals = {
        event.total
        for event in run_labelling(config)
        if isinstance(event, Progress) and event.phase == "seed: train classifier"
    }
    assert totals == {3 * len(stems) // 4}  # 3 epochs of 2 batches
    assert RunFolder(tmp_path / "run").read_config().cam_epochs == 3


def test_the_cam_seed_names_the_photos_its_labels_leave_out_and_the_labels_of_no_photo(tiny_folder, tmp_path):
    from napari_gfn.engine import Notice, run_labelling

    stems = sorted(p.stem for p in (tiny_folder / "images").glob("*.png"))
    labels = tmp_path / "labels.csv"
    typo = stems[-1].replace("_", "-")  # the last photo's name mistyped
    rows = [f"{stem},{('rose', 'iris')[i % 2]}\n" for i, stem in enumerate([*stems[:-1], typo])]
    labels.write_text("image,class\n" + "".join(rows))
    config = cam_run_config(tiny_folder, labels, tmp_path / "run", cam_epochs=1, iterations=0, image_size=32)
    said = [event.message for event in run_labelling(config) if isinstance(event, Notice)]
    assert (
        f"CAM seed: 7 labelled photos in 2 classes; the class is predicted for 1 unlabelled photo ({stems[-1]}); "
        f"{labels} also labels 1 photo not among these ({typo})"
    ) in said


def test_labels_from_csv_and_class_folders_agree(tmp_path, folders_named_locked_refused):
    (tmp_path / "labels.csv").write_text("image,class\nrose_1.jpg,rose\ntulip_1,tulip\n")
    # A class's photos may be sorted further, by year or site; a class folder that cannot be read is left out, as
    # the run's listing of the photos leaves out its photos.
    for where, stem in (("rose", "rose_1"), ("tulip/2024/site a", "tulip_1"), ("locked", "iris_1")):
        (tmp_path / "folders" / where).mkdir(parents=True)
        iio.imwrite(tmp_path / "folders" / where / f"{stem}.png", np.zeros((4, 4, 3), np.uint8))
    expected = {"rose_1": "rose", "tulip_1": "tulip"}
    assert read_image_labels(tmp_path / "labels.csv") == (expected, {})
    assert read_image_labels(tmp_path / "folders") == (expected, {})


def test_photos_sorted_into_class_folders_are_their_own_cam_labels(tmp_path, capsys):
    """The usual layout for image-level labels, one folder per species, needs no labels file; nor do its masks."""
    species, truth = tmp_path / "species", tmp_path / "truth"
    for kind in ("branch", "flower"):
        data = write_sample_folder(tmp_path / kind, kind=kind, n=3, size=64, seed=3, simple_fraction=0.0)
        shutil.copytree(data / "images", species / kind)
        shutil.copytree(data / "masks", truth / kind)
    run = tmp_path / "run"
    quick = ["--iterations", "0", "--image-size", "64", "--cam-epochs", "1", "--min-steps", "2"]
    assert main(["label", str(species), "--seed", "cam", "--cam-refiner", "guided", "--out", str(run), *quick]) == 0
    message = "CAM seed: 6 labelled photos in 2 classes (the folders the photos are sorted into)"
    assert message in capsys.readouterr().err
    stems = [f"{kind}_{index:03d}" for kind in ("branch", "flower") for index in range(3)]
    assert all(RunFolder(run).has_mask(0, stem) for stem in stems)
    # True masks sorted like their photos are found by name in their folders.
    assert main(["evaluate", str(run), "--gt", str(truth), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)["iterations"][0]
    expected = np.mean(
        [
            score_mask(RunFolder(run).read_mask(0, path.stem), iio.imread(path) > 127).fg_iou
            for path in truth.rglob("*.png")
        ]
    )
    assert scored["fg_iou"] == pytest.approx(expected)


def test_labels_saved_by_a_spreadsheet_read_as_written(tmp_path):
    expected = {"rose_1": "Rosa canina", "tulip_1": "Tulipa sylvestris é"}
    # Excel's "CSV UTF-8": a byte-order mark; its locale may separate columns with ';' and write Windows paths.
    (tmp_path / "utf8.csv").write_text(
        "Image;Class\r\nC:\\photos\\rose_1.JPG;Rosa canina\r\ntulip_1.jpg;Tulipa sylvestris é\r\n", encoding="utf-8-sig"
    )
    # Excel's plain "CSV": the system's 8-bit code page.
    (tmp_path / "cp1252.csv").write_text(
        "image,class\nrose_1.jpg,Rosa canina\ntulip_1.jpg,Tulipa sylvestris é\n", encoding="cp1252"
    )
    (tmp_path / "tabs.tsv").write_text("image\tclass\nrose_1\tRosa canina\ntulip_1\tTulipa sylvestris é\n")
    for name in ("utf8.csv", "cp1252.csv", "tabs.tsv"):
        assert read_image_labels(tmp_path / name) == (expected, {}), name


def test_a_photo_given_two_classes_is_named_and_left_unlabelled(tmp_path):
    (tmp_path / "labels.csv").write_text("image,class\nrose_1.jpg,rose\nrose_1.jpg,rose\nmix.jpg,rose\nmix.png,tulip\n")
    labels, conflicts = read_image_labels(tmp_path / "labels.csv")
    assert labels == {"rose_1": "rose"}  # a repeated line with the same class is no conflict
    assert list(conflicts) == ["mix"]
    assert f"mix: labelled both rose and tulip in {tmp_path / 'labels.csv'}" in conflicts["mix"]
    for name in ("rose", "tulip"):
        (tmp_path / "folders" / name).mkdir(parents=True)
        iio.imwrite(tmp_path / "folders" / name / "mix.png", np.zeros((4, 4, 3), np.uint8))
    assert read_image_labels(tmp_path / "folders")[0] == {}


def test_class_maps_average_to_the_classifier_logits():
    """CAM's identity (Zhou et al.): global pooling of the bias-free class maps, plus the bias, is the logit."""
    torch.manual_seed(0)
    model = CamClassifier("efficientnet_lite0", 3).eval()
    images = torch.rand(2, 3, 64, 80)
    with torch.no_grad():
        maps = model.class_maps(images)
        torch.testing.assert_close(maps.mean(dim=(-2, -1)) + model.classifier.bias, model(images))
        cam, chosen = class_activation_map(model, images[0])
        views = [F.interpolate(images[:1], scale_factor=s, mode="bilinear") for s in CAM_SCALES]
        logits = sum(model(view) + model(view.flip(-1)) for view in views)
        assert chosen == int(logits.argmax())
        cams = [class_activation_map(model, images[0], index)[0] for index in range(3)]
    torch.testing.assert_close(cam, cams[chosen])
    lit = [cam for cam in cams if float(cam.max()) > 1e-3]
    assert lit, "random class weights have mixed signs, so some class must light up"
    for cam in cams:
        assert cam.shape == (64, 80)
        assert float(cam.min()) >= 0.0
    for cam in lit:
        assert float(cam.max()) == pytest.approx(1.0)


def test_object_probability_is_one_half_at_the_threshold_and_monotone():
    cam = torch.linspace(0, 1, 101)
    probability = object_probability(cam, 0.4)
    assert float(probability[40]) == pytest.approx(0.5)
    assert torch.all(probability[1:] >= probability[:-1])
    assert float(probability.min()) == pytest.approx(0.05)
    assert float(probability.max()) == pytest.approx(0.95)


@pytest.mark.parametrize(
    "use_crf", [False, pytest.param(True, marks=pytest.mark.skipif(not crf_available(), reason="no pydensecrf"))]
)
def test_refinement_snaps_a_blurred_probability_to_the_photo_edge(use_crf):
    """A disc photographed sharply, its probability blurred and shifted: refinement recovers the disc."""
    from scipy import ndimage

    yy, xx = np.mgrid[:96, :96]
    disc = (yy - 48) ** 2 + (xx - 44) ** 2 < 25**2
    photo = np.where(disc[..., None], [200, 60, 90], [40, 120, 50]).astype(np.uint8)
    blurred = ndimage.gaussian_filter(np.roll(disc, 2, axis=1).astype(float), 6)
    probability = np.clip(0.1 + 0.8 * blurred, 0.05, 0.95)
    refined = refine_object_mask(photo, probability, use_crf)
    thresholded = probability >= 0.5
    assert score_mask(refined, disc).fg_iou > 0.95
    assert score_mask(refined, disc).fg_iou > score_mask(thresholded, disc).fg_iou + 0.05


@pytest.mark.skipif(not crf_available(), reason="no pydensecrf")
def test_the_crf_takes_a_read_only_photo():
    """Photos read from disk can be read-only arrays; pydensecrf refuses those unless they are copied."""
    photo = np.zeros((32, 40, 3), np.uint8)
    photo[8:24, 10:30] = 200
    probability = np.full(photo.shape[:2], 0.3)
    probability[8:24, 10:30] = 0.7
    writable = crf_refine(photo, probability)
    photo.setflags(write=False)
    np.testing.assert_array_equal(crf_refine(photo, probability), writable)
    assert writable[16, 20]
    assert not writable[2, 2]


def test_without_pydensecrf_the_cam_seed_falls_back_or_names_the_fix(monkeypatch):
    from napari_gfn.seeds import cam

    def choose(name: str) -> tuple[list, bool]:
        returned = []

        def capture():
            returned.append((yield from cam._choose_refiner(name)))

        events = list(capture())
        return events, returned[0]

    monkeypatch.setattr(cam, "crf_available", lambda: False)  # whether this machine could build pydensecrf
    assert choose("guided") == ([], False)
    notices, use_crf = choose("auto")
    assert not use_crf
    assert [notice.message for notice in notices] == [
        "pydensecrf is not installed: refining CAMs with the guided filter"
    ]
    with pytest.raises(LabellingError, match=re.escape("CAM refiner crf (--cam-refiner crf) needs pydensecrf")):
        choose("crf")


@pytest.fixture(scope="module")
def two_kinds(tmp_path_factory):
    """Branches and flowers on the same garden clutter (no decoys), with a labels CSV of their kinds."""
    root = tmp_path_factory.mktemp("kinds")
    rows = ["image,class"]
    for kind in ("branch", "flower"):
        data = write_sample_folder(root / kind, kind=kind, n=8, size=192, seed=21, simple_fraction=0.0, style=2)
        for sub in ("images", "masks"):
            (root / sub).mkdir(exist_ok=True)
            for path in (data / sub).glob("*.png"):
                shutil.copy(path, root / sub / path.name)
        rows += [f"{path.stem},{kind}" for path in (data / "images").glob("*.png")]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.mark.slow
def test_cam_seed_is_clearly_positive_and_feeds_refinement(two_kinds, tmp_path):
    """End to end from image-level labels: a clearly positive seed, which refinement then improves.

    At CAM threshold 0.5 the seed scored 0.23-0.25 and the second iteration 0.26-0.31 in three runs of 100 steps a
    model; at 0.7 the seed is better (0.34) but its errors are systematic and refinement keeps them. With 60 steps
    the seed scores 0.239 and the first iteration 0.322, in 40% of the time.
    """
    config = cam_run_config(
        two_kinds,
        two_kinds / "labels.csv",
        tmp_path / "run",
        cam_threshold=0.5,
        gt=str(two_kinds / "masks"),  # scores only; it also turns off the early stop on converged masks
        iterations=1,
        image_size=192,
        cam_epochs=8,
        min_steps=60,
        epochs=4,
        area_min=0.03,
    )
    from napari_gfn.engine import run_labelling

    results = [event for event in run_labelling(config) if isinstance(event, IterationResult)]
    assert [result.iteration for result in results] == [0, 1]
    store = RunFolder(tmp_path / "run")
    seed, last = mean_fg_iou(store, 0, two_kinds), mean_fg_iou(store, 1, two_kinds)
    assert seed > 0.2, seed
    assert last > seed, (seed, last)


def test_training_a_source_model_reports_progress_and_can_be_cancelled(tmp_path):
    from napari_gfn.engine import CancelToken, Progress, RunCancelled
    from napari_gfn.engine.source import train_source_model

    data = write_sample_folder(tmp_path / "data", kind="flower", n=4, size=48, seed=1)
    cancel = CancelToken()
    config = RunConfig(image_size=32, epochs=1, min_steps=50, batch_size=2)
    events = train_source_model(LabelledSet.from_folders(data / "images", data / "masks"), config, "cpu", cancel)
    seen = []

    def watch_and_cancel_after_two_steps():
        for event in events:
            if isinstance(event, Progress) and event.phase == "source: train":
                seen.append((event.done, event.total))
                if event.done == 2:
                    cancel.cancel()

    with pytest.raises(RunCancelled):
        watch_and_cancel_after_two_steps()
    assert seen == [(0, 50), (1, 50), (2, 50)]


def test_grabcut_finds_centred_flowers_on_clutter_where_otsu_fails():
    sample = make_sample_set("flower", 8, 128, simple_fraction=0.0, seed=5)  # every background cluttered
    pairs = list(zip(sample.images, sample.masks, strict=True))
    grabcut = [score_mask(grabcut_mask(image), truth).fg_iou for image, truth in pairs]
    otsu = [score_mask(otsu_mask(image).mask, truth).fg_iou for image, truth in pairs]
    assert np.mean(grabcut) > 0.85, grabcut  # measured 0.92 (Otsu: 0.44)
    assert np.mean(grabcut) > np.mean(otsu) + 0.3


def test_grabcut_on_a_featureless_photo_finds_no_object():
    assert not grabcut_mask(np.full((40, 50, 3), 128, np.uint8)).any()


@pytest.mark.parametrize(("seed", "mask_of_photo"), [("grabcut", grabcut_mask), ("ridge", ridge_mask)])
def test_photo_only_seed_masks_are_iteration_0(seed, mask_of_photo, tiny_folder, tmp_path):
    config = RunConfig(images=str(tiny_folder / "images"), out=str(tmp_path / "run"), seed=seed, iterations=0)
    from napari_gfn.engine import run_labelling

    results = [event for event in run_labelling(config.updated(image_size=64)) if isinstance(event, IterationResult)]
    assert [result.iteration for result in results] == [0]
    store = RunFolder(tmp_path / "run")
    for path in sorted((tiny_folder / "images").glob("*.png")):
        # The photos are 64 px, the working size, so the written mask is the seed's own.
        np.testing.assert_array_equal(store.read_mask(0, path.stem), mask_of_photo(iio.imread(path)))


def test_ridge_seed_names_the_thin_object_settings_when_its_rounds_were_given_others(tiny_folder, tmp_path):
    from napari_gfn.engine import run_labelling

    def notices_until_the_seed(name, **settings):
        config = RunConfig(images=str(tiny_folder / "images"), out=str(tmp_path / name), seed="ridge", image_size=64)
        messages = []
        for event in run_labelling(config.updated(**settings)):  # leaving the loop stops the run after its seed
            if isinstance(event, IterationResult):
                return messages
            if isinstance(event, Notice):
                messages.append(event.message)
        return messages

    advice = (
        "sharpening radius 4 (--upsample-radius 4), GrabCut edge band 0 (--grabcut-edge-band 0), "
        "fewest steps per training 600 (--min-steps 600)"
    )
    assert any(advice in message for message in notices_until_the_seed("bulky", iterations=2, **BULKY_OBJECT_SETTINGS))
    own = notices_until_the_seed("its own settings", iterations=2)
    assert any(message.startswith("Ridge seed:") for message in own)  # notices were read, just not the advice
    assert not any(advice in message for message in own)
    seed_only = notices_until_the_seed("seed only", iterations=0, **BULKY_OBJECT_SETTINGS)
    assert not any(advice in message for message in seed_only)


def test_largest_web_keeps_the_biggest_connected_lines_and_widens_them():
    response = np.zeros((40, 60))
    response[10, 5:45] = 1.0
    response[11, 45] = 1.0  # touches the long line only at a corner: still the same web
    response[30, 50:55] = 1.0  # a separate, shorter line
    web = np.zeros((40, 60), dtype=bool)
    web[10, 5:45] = web[11, 45] = True
    np.testing.assert_array_equal(largest_web(response, share=0.05, widening=0.0), web)
    widened = ndimage.binary_dilation(web, structure=np.ones((3, 3), dtype=bool))
    np.testing.assert_array_equal(largest_web(response, share=0.05, widening=3 / 60), widened)


def test_ridge_salience_favours_lines_that_stand_out_from_their_surroundings_and_the_centre():
    response = np.zeros((60, 100))
    response[:, 50] = 1.0  # a lone line
    response[:, 5:25:2] = 1.0  # a dense texture of alike lines, like an orchard behind a tree
    assert ridge_salience(response, RidgeSettings(window=None, centre=None)) is response
    against_surroundings = ridge_salience(response, RidgeSettings(window=21 / 100, floor=0.25, centre=None))
    assert against_surroundings[30, 50] > 3 * against_surroundings[30, 15]
    towards_centre = ridge_salience(response, RidgeSettings(window=None, centre=0.3))
    for column in (15, 50):
        offset = (column + 0.5) / 100 - 0.5
        assert towards_centre[30, column] == pytest.approx(math.exp(-(offset**2) / (2 * 0.3**2)))


def test_ridge_mask_finds_a_thin_tree_on_sky_and_leaves_out_the_strokes_behind_it():
    height, width = 320, 200
    sky = np.linspace(150, 230, height)[:, None, None] * np.array([0.6, 0.8, 1.0])
    photo = np.broadcast_to(sky, (height, width, 3)).astype(np.uint8).copy()
    tree = np.zeros((height, width), np.uint8)
    cv2.line(tree, (100, 315), (100, 60), 1, 6)  # trunk
    for y, dx in [(240, -60), (200, 55), (160, -50), (120, 45), (80, -35)]:
        cv2.line(tree, (100, y), (100 + dx, y - 40), 1, 3)  # branches
    behind = np.zeros_like(tree)
    for x in (20, 175):
        cv2.line(behind, (x, 300), (x, 270), 1, 3)  # short strokes that touch nothing
    photo[(tree | behind) > 0] = (60, 50, 40)
    mask = ridge_mask(photo)
    assert mask[tree > 0].mean() > 0.9
    assert not mask[behind > 0].any()
