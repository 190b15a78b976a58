"""Guided filter speed: napari-gfn's filter against OpenCV and a plain integral-image version.

Times forward and backward passes on the CPU for sizes 512 and 2048, radius 4
and 16, one and 64 channels, and reports the goal ratio: at 2048^2, r=16, one
channel, forward time over OpenCV's ``cv2.ximgproc.guidedFilter``.

    python benchmarks/guided_filter.py [--threads 2] [--repeats 5] [--json out.json]

OpenCV (the contrib build, with ximgproc) is one of napari-gfn's dependencies.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from _timing import median_seconds
from napari_gfn.network import guided_filter


def integral_box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """The textbook 2-D integral image (cumsum over both axes), clipped windows."""
    padded = F.pad(x, (radius + 1, radius, radius + 1, radius))
    table = padded.cumsum(-1).cumsum(-2)
    width = 2 * radius + 1
    sums = table[..., width:, width:] - table[..., :-width, width:] - table[..., width:, :-width]
    sums = sums + table[..., :-width, :-width]
    counts = integral_box_counts(x.shape[-2:], radius, x)
    return sums / counts


def integral_box_counts(shape, radius, like):
    def counts(n):
        index = torch.arange(n)
        return (torch.clamp(index + radius, max=n - 1) - torch.clamp(index - radius, min=0) + 1).to(like.dtype)

    return counts(shape[0])[:, None] * counts(shape[1])[None, :]


def plain_cumsum_guided_filter(guide, src, radius, eps):
    mean_i, mean_p = integral_box_mean(guide, radius), integral_box_mean(src, radius)
    cov = integral_box_mean(guide * src, radius) - mean_i * mean_p
    var = integral_box_mean(guide * guide, radius) - mean_i * mean_i
    a = cov / (var + eps)
    b = mean_p - a * mean_i
    return integral_box_mean(a, radius) * guide + integral_box_mean(b, radius)


def time_torch(filter_function, guide, src, radius, repeats, backward):
    if not backward:
        with torch.no_grad():
            return median_seconds(lambda: filter_function(guide, src, radius, 1e-2), repeats)
    guide = guide.clone().requires_grad_(True)
    src = src.clone().requires_grad_(True)

    def step():
        filter_function(guide, src, radius, 1e-2).sum().backward()

    return median_seconds(step, repeats)


def time_opencv(guide, src, radius, repeats):
    import cv2

    guide_np = guide[0, 0].numpy()
    channels = [src[0, c].numpy() for c in range(src.shape[1])]
    # OpenCV filters at most 4 channels per call; more channels take one call each.
    return median_seconds(lambda: [cv2.ximgproc.guidedFilter(guide_np, c, radius, 1e-2) for c in channels], repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--radii", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--channels", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import cv2

        cv2.setNumThreads(args.threads)
        have_opencv = True
    except ImportError:
        have_opencv = False
        print("OpenCV (opencv-contrib-python-headless) not installed: its column stays empty")

    rows = []
    print(f"CPU, {args.threads} threads, median of {args.repeats}; times in ms")
    print("| size | r | channels | ours fwd | ours fwd+bwd | plain cumsum fwd | plain fwd+bwd | OpenCV fwd |")
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for radius in args.radii:
            for channels in args.channels:
                generator = torch.Generator().manual_seed(0)
                guide = torch.rand(1, 1, size, size, generator=generator)
                src = torch.rand(1, channels, size, size, generator=generator)
                repeats = args.repeats if size * size * channels <= 2048 * 2048 * 4 else 1
                row = {"size": size, "radius": radius, "channels": channels}
                row["ours_forward"] = time_torch(guided_filter, guide, src, radius, repeats, False)
                row["ours_backward"] = time_torch(guided_filter, guide, src, radius, repeats, True)
                # The plain version keeps every full-size intermediate: past ~16M values its backward
                # pass needs more than this machine's 24 GB, so it is not run there.
                small = size * size * channels <= 2048 * 2048 * 4
                row["plain_forward"] = time_torch(plain_cumsum_guided_filter, guide, src, radius, repeats, False)
                row["plain_backward"] = (
                    time_torch(plain_cumsum_guided_filter, guide, src, radius, repeats, True) if small else None
                )
                row["opencv_forward"] = time_opencv(guide, src, radius, repeats) if have_opencv else None
                rows.append(row)
                cells = [row[k] for k in ("ours_forward", "ours_backward", "plain_forward", "plain_backward")]
                cells.append(row["opencv_forward"])
                text = " | ".join("-" if c is None else f"{c * 1000:.1f}" for c in cells)
                print(f"| {size} | {radius} | {channels} | {text} |", flush=True)
    goal = [r for r in rows if (r["size"], r["radius"], r["channels"]) == (2048, 16, 1)]
    if goal and have_opencv:
        ratio = goal[0]["ours_forward"] / goal[0]["opencv_forward"]
        print(f"\nGoal (2048^2, r=16, 1 channel, forward): {ratio:.2f}x OpenCV's time (target <= 2x)")
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(rows, stream, indent=2)


if __name__ == "__main__":
    main()
