"""The benchmark scripts stay runnable: each imports and answers --help, and refuses at once what it cannot use."""

import json
import subprocess
import sys
from pathlib import Path

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
