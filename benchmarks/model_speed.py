"""GFN speed on the CPU (and GPU when present): images/s for inference and training, and peak memory.

Each configuration runs in a fresh process so its peak resident memory is its own.
Inference uses the deployment path (``inference_copy``: batch norm folded,
channels-last); training is one SGD step on a batch with cross-entropy, in
channels-last as ``train_model`` trains, and its time is also compared with the
default memory layout's, the two steps run alternately.

    python benchmarks/model_speed.py [--sizes 256 512] [--backbones efficientnet_lite0 resnet18]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import warnings

import torch
import torch.nn.functional as F

from _timing import interleaved_ratio, median_seconds
from napari_gfn.network import GFN
from napari_gfn.network.inference import inference_copy

MODULE_SETS = {"baseline": (False, False, False), "gfn": (True, True, True)}


def _model(backbone: str, variant: str, device: str) -> GFN:
    use_bg, use_hgl, use_gf = MODULE_SETS[variant]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision weights may be absent: speed does not depend on them
        return GFN(backbone=backbone, use_bg=use_bg, use_hgl=use_hgl, use_gf=use_gf).to(device)


def _inference(model: GFN, images: torch.Tensor, device: str):
    fast = inference_copy(model)
    fast_images = images.contiguous(memory_format=torch.channels_last)

    def infer():
        with torch.inference_mode():
            fast(fast_images)
        if device == "cuda":
            torch.cuda.synchronize()

    return infer


def _train_step(model: GFN, images: torch.Tensor, memory_format: torch.memory_format, device: str):
    model.to(memory_format=memory_format).train()
    images = images.contiguous(memory_format=memory_format)
    labels = torch.randint(0, 2, (images.shape[0], *images.shape[2:]), device=device)
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def train_step():
        loss = F.cross_entropy(model(images), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        sync()

    return train_step


def _measure(backbone: str, variant: str, size: int, batch: int, threads: int, repeats: int, device: str) -> dict:
    torch.set_num_threads(threads)
    model = _model(backbone, variant, device)
    images = torch.rand(batch, 3, size, size, device=device)
    infer = _inference(model, images, device)
    train_step = _train_step(model, images, torch.channels_last, device)
    inference_seconds = median_seconds(infer, repeats)
    train_seconds = median_seconds(train_step, repeats)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "backbone": backbone,
        "variant": variant,
        "size": size,
        "batch": batch,
        "device": device,
        "inference_images_per_s": batch / inference_seconds,
        "train_images_per_s": batch / train_seconds,
        "inference_ms_per_batch": inference_seconds * 1000,
        "peak_rss_mib": peak,
        "peak_cuda_mib": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None,
    }


def _forward_ratio(backbone: str, size: int, batch: int, threads: int, repeats: int, device: str) -> float:
    """GFN inference time over the baseline's, the two run alternately in one process."""
    torch.set_num_threads(threads)
    images = torch.rand(batch, 3, size, size, device=device)
    gfn, baseline = (_inference(_model(backbone, variant, device), images, device) for variant in ("gfn", "baseline"))
    return interleaved_ratio(gfn, baseline, 3 * repeats)


def _layout_ratio(backbone: str, size: int, batch: int, threads: int, repeats: int, device: str) -> float:
    """GFN training step time in channels-last over the default layout's, the two run alternately."""
    torch.set_num_threads(threads)
    images = torch.rand(batch, 3, size, size, device=device)
    channels_last, default = (
        _train_step(_model(backbone, "gfn", device), images, layout, device)
        for layout in (torch.channels_last, torch.contiguous_format)
    )
    return interleaved_ratio(channels_last, default, repeats)


def _run_isolated(function, *args):
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(function, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--backbones", nargs="+", default=["efficientnet_lite0", "resnet18"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    settings = (args.batch, args.threads, args.repeats)
    print(f"{args.threads} CPU threads, batch {args.batch}, median of {args.repeats}")
    print("| device | backbone | size | variant | inference img/s | train img/s | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for device in devices:
        for backbone in args.backbones:
            for size in args.sizes:
                pair = {}
                for variant in MODULE_SETS:
                    row = _run_isolated(_measure, backbone, variant, size, *settings, device)
                    rows.append(row)
                    pair[variant] = row
                    print(
                        f"| {device} | {backbone} | {size} | {variant} | {row['inference_images_per_s']:.1f} "
                        f"| {row['train_images_per_s']:.1f} | {row['peak_rss_mib']:.0f} |",
                        flush=True,
                    )
                ratio = _run_isolated(_forward_ratio, backbone, size, *settings, device)
                pair["gfn"]["forward_time_vs_baseline"] = ratio
                print(f"|  |  |  | GFN forward time / baseline (interleaved) | {ratio:.3f} |  |  |", flush=True)
                layout = _run_isolated(_layout_ratio, backbone, size, *settings, device)
                pair["gfn"]["train_time_channels_last_vs_default"] = layout
                print(f"|  |  |  | GFN train step, channels-last / default (interleaved) |  | {layout:.3f} |  |")
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(rows, stream, indent=2)


if __name__ == "__main__":
    main()
