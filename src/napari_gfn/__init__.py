"""napari-gfn: automatic pixel-level labelling of photographs with a Guided Filter Network."""

__version__ = "0.1.0"
