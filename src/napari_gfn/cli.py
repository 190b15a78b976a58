"""The `napari-gfn` command line: the same work as the dock widgets, without a screen."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _has_display() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _demo(args: argparse.Namespace) -> int:
    from napari_gfn.demo import run_demo, show_demo

    headless = args.headless or not _has_display()
    result = run_demo(Path(args.out), quiet=False)
    if headless:
        print(f"Wrote the demo run to {result.out.resolve()}")
        return 0
    show_demo(result)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="napari-gfn", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the main job on built-in synthetic sample data")
    demo.add_argument("--headless", action="store_true", help="no window, even when a display is present")
    demo.add_argument(
        "--out", default="demo-output", help="folder for the demo's output (default: %(default)s)"
    )
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
