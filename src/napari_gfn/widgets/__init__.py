"""napari dock widgets: thin forms that build a run configuration, start the engine in a worker and show results."""

from .auto_label import AutoLabelWidget
from .export import ExportWidget
from .source_model import SourceModelWidget

__all__ = ["AutoLabelWidget", "ExportWidget", "SourceModelWidget"]
