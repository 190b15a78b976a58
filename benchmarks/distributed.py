"""One process against torchrun with N gloo processes: wall time of the same labelling run on the CPU.

Labels a synthetic set twice with the same settings: once as one process
using every core, once under ``torchrun --nproc_per_node N`` with the cores
split between the processes. Reports wall times and each run's mIoU per iteration.

    python benchmarks/distributed.py [--photos 32] [--processes 2] [--iterations 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from napari_gfn.demo import write_sample_folder
from napari_gfn.store import RunFolder

SETTINGS = ["--image-size", "128", "--epochs", "2", "--seed-epochs", "4", "--min-steps", "40", "--area-min", "0.02"]


def timed_run(command: list[str], environment: dict, run: Path) -> dict:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=os.environ | environment)
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 1), "miou": [round(row["miou"], 4) for row in RunFolder(run).metrics()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=32)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    cores = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        sample = write_sample_folder(Path(tmp) / "sample", kind="flower", n=args.photos, size=160, seed=3)
        label = ["label", str(sample / "images"), "--gt", str(sample / "masks"), "--device", "cpu", *SETTINGS]
        label += ["--iterations", str(args.iterations)]
        single = timed_run(
            [sys.executable, "-m", "napari_gfn", *label, "--out", f"{tmp}/one"],
            {"OMP_NUM_THREADS": str(cores)},
            Path(tmp) / "one",
        )
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(args.processes)]
        parallel = timed_run(
            [*torchrun, "-m", "napari_gfn", *label, "--out", f"{tmp}/many"],
            {"OMP_NUM_THREADS": str(max(1, cores // args.processes))},
            Path(tmp) / "many",
        )
    result = {
        "photos": args.photos,
        "cores": cores,
        "one_process": single,
        f"{args.processes}_gloo_processes": parallel,
        "speed_up": round(single["seconds"] / parallel["seconds"], 3),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
