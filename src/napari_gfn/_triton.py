"""Loads Triton, which torch imports with torchvision, so that OpenGL's LLVM cannot crash napari."""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.util
import os
import sys
from pathlib import Path

__all__ = ["load_triton_safely"]


def load_triton_safely() -> None:
    """Import Triton now; when an LLVM is already loaded, first load Triton's library apart from it.

    Triton >= 3.7 exports the LLVM it is built with. Loaded into a process that already holds another LLVM,
    as napari's does on Linux once Mesa's OpenGL driver is in, libtriton's start-up code binds to that LLVM
    and the whole viewer dies (SIGSEGV as the dock opens). The other order is safe, so without an LLVM in the
    process Triton is simply imported before OpenGL can bring one. torch imports Triton as torchvision loads,
    so this runs before napari-gfn imports either.
    """
    if not sys.platform.startswith("linux") or "triton" in sys.modules:
        return
    spec = importlib.util.find_spec("triton")
    if spec is None or not spec.submodule_search_locations:
        return
    if _llvm_is_loaded():
        # RTLD_DEEPBIND: libtriton resolves its own symbols before the process's; the import below reuses it.
        for library in Path(spec.submodule_search_locations[0], "_C").glob("libtriton*.so"):
            ctypes.CDLL(str(library), mode=os.RTLD_NOW | os.RTLD_LOCAL | os.RTLD_DEEPBIND)
    with contextlib.suppress(ImportError):  # torch works without Triton, as when its own import of it fails
        importlib.import_module("triton")


def _llvm_is_loaded() -> bool:
    with open("/proc/self/maps") as maps:
        return any(Path(line.split()[-1]).name.startswith("libLLVM") for line in maps if "/" in line)
