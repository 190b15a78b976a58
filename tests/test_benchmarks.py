"""The benchmark scripts stay runnable: each answers --help and refuses at once what it cannot use, and the
quality benchmark runs to its table on a small synthetic set."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from skimage.filters import threshold_otsu

from napari_gfn.demo import write_sample_folder

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

# One process for all (torch and napari load once): each script run as __main__ with its arguments.
_RUN_EACH = """
import contextlib, io, json, runpy, sys
folder, arguments_of = sys.argv[1], json.loads(sys.argv[2])
sys.path.insert(0, folder)
outcomes = {}
for script, arguments in arguments_of.items():
    sys.argv = [script, *arguments]
    said = io.StringIO()
    try:
        with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
            runpy.run_path(script, run_name="__main__")
        outcomes[script] = [None, said.getvalue()]
    except SystemExit as end:
        outcomes[script] = [end.code, said.getvalue()]
    except Exception as error:
        outcomes[script] = ["raised", f"{type(error).__name__}: {error}"]
print(json.dumps(outcomes))
"""


def _run_each(arguments_of: dict[str, list[str]]) -> dict[str, list]:
    """Each script's (exit code, or "raised"; what it printed), by name: ``arguments_of`` by script name."""
    arguments_of = {str(BENCHMARKS / name): arguments for name, arguments in arguments_of.items()}
    command = [sys.executable, "-c", _RUN_EACH, str(BENCHMARKS), json.dumps(arguments_of)]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=300)
    return {Path(script).name: outcome for script, outcome in json.loads(done.stdout.splitlines()[-1]).items()}


def test_every_benchmark_script_answers_help():
    scripts = sorted(path.name for path in BENCHMARKS.glob("*.py") if not path.name.startswith("_"))
    outcomes = _run_each({script: ["--help"] for script in scripts})
    assert len(outcomes) > 20
    failed = {name: said for name, (code, said) in outcomes.items() if code != 0 or "usage:" not in said}
    assert failed == {}


def test_a_dataset_or_iteration_given_to_a_benchmark_is_checked_before_any_work(tmp_path):
    photos = tmp_path / "images"  # the photos' folder given for the dataset, a common slip
    photos.mkdir()
    dataset = tmp_path / "dataset"
    for part in ("images", "masks"):
        (dataset / part).mkdir(parents=True)
    outcomes = _run_each(
        {
            "quality.py": [str(photos)],
            "figures.py": [str(tmp_path), str(photos), "--stems", "a", "--out", str(tmp_path / "a.png")],
            "score_run.py": [str(tmp_path), str(tmp_path / "nowhere")],
            "edge_band.py": [str(tmp_path), str(dataset)],  # a dataset, but no run with the iteration asked
        }
    )
    assert {name: code for name, (code, _) in outcomes.items()} == dict.fromkeys(outcomes, 2)
    for name in ("quality.py", "figures.py"):
        assert f"{photos} is not a dataset folder: it has no images/ or masks/" in outcomes[name][1]
    assert f"{tmp_path / 'nowhere'}: no such folder" in outcomes["score_run.py"][1]
    assert f"{tmp_path}: iteration 2 is not finished; finished: []" in outcomes["edge_band.py"][1]


def _plain_otsu_fg_iou(photo: Path, mask: Path) -> float:
    """Issue 4's baseline by hand: Otsu's threshold on luminance, the smaller class taken as the object."""
    grey = iio.imread(photo)[..., :3] @ np.array([0.2125, 0.7154, 0.0721]) / 255
    bright = grey > threshold_otsu(grey)
    found = ~bright if bright.mean() > 0.5 else bright
    truth = iio.imread(mask) > 127
    return (found & truth).sum() / (found | truth).sum()


def test_the_quality_benchmark_reports_every_iteration_beside_plain_otsu_and_each_photos_scores(tmp_path):
    dataset = write_sample_folder(tmp_path / "flowers", kind="flower", n=6, size=96)
    # The GrabCut seed, as it needs no training to find the flowers: the rows' scores are not all 0.
    quick = ["--seed", "grabcut", "--iterations", "1", "--image-size", "64", "--epochs", "1", "--set", "min_steps=8"]
    wide_filter = ["--set", "area_min=0", "--set", "area_max=1"]
    out = tmp_path / "results"
    outcomes = _run_each({"quality.py": [str(dataset), "--out", str(out), *quick, *wide_filter]})
    code, said = outcomes["quality.py"]
    assert code is None, said
    result = json.loads((out / "flowers-grabcut.json").read_text())
    photos = sorted((dataset / "images").glob("*.png"))
    by_hand = np.mean([_plain_otsu_fg_iou(photo, dataset / "masks" / photo.name) for photo in photos])
    assert abs(result["plain_otsu"]["fg_iou"] - by_hand) < 1e-9
    assert [row["iteration"] for row in result["iterations"]] == [0, 1]
    assert result["iterations"][0]["fg_iou"] > 0.5
    with (out / "flowers-grabcut.csv").open() as stream:
        per_photo = list(csv.DictReader(stream))
    for row in result["iterations"]:
        scores = [float(line["fg_iou"]) for line in per_photo if int(line["iteration"]) == row["iteration"]]
        assert len(scores) == len(photos)
        assert abs(np.mean(scores) - row["fg_iou"]) < 1e-4  # the CSV's are rounded to 4 places
        assert f"| {row['iteration']} | {row['fg_iou']:.3f} | {row['miou']:.3f} | " in said
    gain = result["iterations"][-1]["fg_iou"] - result["plain_otsu"]["fg_iou"]
    assert f"plain Otsu: fg IoU {by_hand:.3f}" in said
    assert f"final minus plain Otsu (fg IoU): {gain:+.3f} (goal >= +0.15)" in said
