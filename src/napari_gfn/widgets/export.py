"""The "Export labels" dock: write one iteration's masks, or the best, for every photo of a run."""

from __future__ import annotations

from pathlib import Path

import napari
from magicgui.widgets import ComboBox, Container, FileEdit, PushButton
from napari.utils.notifications import show_error, show_info

from napari_gfn.engine import CancelToken
from napari_gfn.export import describe_export, export_labels
from napari_gfn.store import RunFolder

from .engine_task import EngineTask
from .message_label import message_label
from .path_fields import chosen_path, given_path
from .shared_state import shared_state

__all__ = ["ExportWidget"]

FORMAT_NAMES = {
    "PNG (0/255)": "png",
    "label TIFF (0/1)": "tif",
    "cut-out PNG (photo, background transparent)": "cutout",
}
_STATUS_LINES = {"running": "exporting ...", "cancelled": "cancelled; the files written before are kept", "failed": ""}


class ExportWidget(Container):
    """Masks at full resolution, named after their photos; trusted corrections replace the iteration's mask."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.task = EngineTask("export", uses_torch=False)
        self.run_folder = FileEdit(label="Run folder", mode="d")
        self.iteration = ComboBox(label="Iteration", choices=self._iteration_choices)
        self.format = ComboBox(label="Format", choices=list(FORMAT_NAMES))
        self.out_folder = FileEdit(label="Export to", mode="d")
        self.photo_folder = FileEdit(label="Photo folder", mode="d")
        self.photo_folder.tooltip = (
            "where the run's photos are now, if they were moved since the run (a run copied from a server, say); "
            "masks of photos sorted into subfolders are sorted the same way"
        )
        self.export_button = PushButton(text="Export")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = message_label("")
        super().__init__(
            widgets=[
                self.run_folder,
                self.iteration,
                self.format,
                self.out_folder,
                self.photo_folder,
                self.export_button,
                self.cancel_button,
                self.status,
            ]
        )
        self.run_folder.changed.connect(self.iteration.reset_choices)
        self.shared = shared_state(viewer)
        self.shared.run_changed.connect(self._follow_run)
        if self.shared.run is not None:
            self._follow_run(self.shared.run)
        self.export_button.changed.connect(self.export)
        self.task.attach(
            self.native, self._on_status, start_buttons=[self.export_button], cancel_button=self.cancel_button
        )

    def _iteration_choices(self, *_) -> list:
        finished = RunFolder(Path(self.run_folder.value)).finished_iterations() if self.run_folder.value else []
        return ["best", "last", *finished]

    def _follow_run(self, run: Path | None) -> None:
        """Offer the run on screen (and its newest iterations) for export."""
        if run is not None:
            self.run_folder.value = run
            self.iteration.reset_choices()

    def export(self) -> None:
        try:
            run_dir = chosen_path(self.run_folder, "the run folder to export")
            out_dir = chosen_path(self.out_folder, "the folder to export to")
        except ValueError as error:
            show_error(str(error))
            return
        iteration, fmt = self.iteration.value, FORMAT_NAMES[self.format.value]
        # The run on screen may have been opened with its photos found elsewhere (the Auto-label dock's Photo folder).
        on_screen = self.shared.run and Path(self.shared.run).resolve() == run_dir.resolve()
        photos_now = given_path(self.photo_folder) or (self.shared.run_photos if on_screen else None)

        def job(cancel: CancelToken):
            return (yield from export_labels(run_dir, out_dir, iteration, fmt, cancel, photos_now))

        self.task.start(job, on_returned=lambda written: self._on_written(written, out_dir))

    def _on_written(self, written: list[Path] | None, out_dir: Path) -> None:
        if written:
            self.status.value = describe_export(written, out_dir)
            show_info(self.status.value)

    def _on_status(self, status: str) -> None:
        if status in _STATUS_LINES:  # a finished export's line comes from _on_written
            self.status.value = _STATUS_LINES[status]
        elif self.task.status == "failed":  # why it stopped; progress lines are napari's activity dock's
            self.status.value = status
