"""napari-gfn: automatic pixel-level labelling of photographs with a Guided Filter Network."""

from napari_gfn._triton import load_triton_safely

__version__ = "0.1.0"

# Before any module of the package imports torch: napari imports the package only when its dock opens,
# after OpenGL has loaded an LLVM that Triton would clash with.
load_triton_safely()
