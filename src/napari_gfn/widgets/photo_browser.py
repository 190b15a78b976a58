"""The Auto-label dock's photo browser: one photo of a run on screen, in name order or the masks to check first."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from functools import partial

from magicgui.widgets import ComboBox, Container, PushButton, Widget
from napari.utils.notifications import show_error
from qtpy.QtCore import QObject, Qt, Signal, Slot

from napari_gfn.review import MaskStats, check_first, describe_mask
from napari_gfn.store import RunFolder, RunFolderError

from .message_label import message_label
from .run_layers import RunLayers
from .stepwise import StepwiseWork

__all__ = ["BY_NAME", "CHECK_FIRST", "PhotoBrowser"]

BY_NAME, CHECK_FIRST = "by name", "check first"


class _FilesRead(QObject):
    """Brings word of a photo's files read in a thread to the GUI thread, which alone may make layers.

    A child of a widget of the dock, with a slot of its own: Qt drops the word once the dock is closed. Always
    queued, even from the GUI thread: a read called off there (another photo to read ahead) says so at once,
    and taken in at once it would show its photo from within the call that is replacing its read.
    """

    of = Signal(object, str)  # the RunLayers read for, and the photo's stem

    def __init__(self, parent: QObject, arrived: Callable[[RunLayers, str], None]) -> None:
        super().__init__(parent)
        self._arrived = arrived
        self.of.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    @Slot(object, str)
    def _deliver(self, run_layers: RunLayers, stem: str) -> None:
        self._arrived(run_layers, stem)


class PhotoBrowser:
    """The Photo list, its order, ◀ Previous / Next ▶, and what the last iteration recorded about the photo shown.

    Not a container of its own: its widgets sit in the dock's form, so their labels line up with the rest.
    """

    def __init__(self, area_range: Callable[[], tuple[float, float]]) -> None:
        self._area_range = area_range  # the seed's order follows the area filter of the form
        self.run_layers: RunLayers | None = None
        self.store: RunFolder | None = None
        self._iteration: int | None = None
        self._stats: dict[str, MaskStats] = {}
        self.order = ComboBox(label="Photo order", choices=[BY_NAME, CHECK_FIRST])
        self.order.tooltip = (
            "check first: the masks the network was least sure of in the last iteration first. Uncertain: of the "
            "pixels it called object or gave a probability between 0.2 and 0.8, the share it was unsure of. "
            "Trusted corrections come last"
        )
        self.photo = ComboBox(label="Photo", choices=self._photo_choices)
        self.previous_button = PushButton(text="◀ Previous")
        self.next_button = PushButton(text="Next ▶")
        self.note = message_label("")
        self._unreadable_to_pass = 0
        self._files_read = _FilesRead(self.photo.native, self._files_arrived)
        self.closing = StepwiseWork(self.photo.native)  # old photos' layers, after the photo chosen is on screen
        self._buttons = Container(widgets=[self.previous_button, self.next_button], layout="horizontal", labels=False)
        self.order.changed.connect(self._order_chosen)
        self.photo.changed.connect(self._show)
        self.previous_button.changed.connect(lambda: self.step(-1))
        self.next_button.changed.connect(lambda: self.step(+1))

    @property
    def widgets(self) -> list[Widget]:
        return [self.order, self.photo, self._buttons, self.note]

    def browse(self, run_layers: RunLayers, store: RunFolder) -> None:
        """Browse another run: the photo on screen stays if the run has it, else the first of the chosen order
        that can be read shows."""
        self.run_layers, self.store = run_layers, store
        self._read_stats()
        self._reorder()
        self._unreadable_to_pass = len(self.photo.choices) - 1
        self._show(self.photo.value)

    def refresh(self) -> None:
        """Take up the figures of the run's last finished iteration (after each one), keeping the photo shown."""
        self._read_stats()
        self._reorder()

    def _read_stats(self) -> None:
        finished = self.store.finished_iterations()
        self._iteration = finished[-1] if finished else None
        try:
            self._stats = self.store.mask_stats(self._iteration) if self._iteration is not None else {}
        except RunFolderError as error:
            self._stats = {}
            show_error(f"{error}; the photos stay in name order")

    def _reorder(self, *_) -> None:
        shown = self.photo.value
        with self.photo.changed.blocked():
            self.photo.choices = []  # else magicgui keeps the order of the choices it already has
            self.photo.reset_choices()
            if shown in self.photo.choices:
                self.photo.value = shown
        self._describe(self.photo.value)

    def _order_chosen(self, *_) -> None:
        self._reorder()
        self._read_next()

    def step(self, step: int) -> None:
        if self.photo.choices:
            self.photo.value = self._stepped(self.photo.value, step)

    def _stepped(self, stem: str, step: int) -> str:
        stems = list(self.photo.choices)
        return stems[(stems.index(stem) + step) % len(stems)]

    def _photo_choices(self, *_) -> list[str]:
        # A callable, because napari resets every choice of the dock whenever a layer is added.
        stems = self.run_layers.stems if self.run_layers is not None else []
        if self.order.value != CHECK_FIRST or not self._stats:
            return stems
        known = {stem: self._stats[stem] for stem in stems if stem in self._stats}
        return check_first(known, *self._area_range()) + [stem for stem in stems if stem not in known]

    def _show(self, stem: str | None) -> None:
        """Show ``stem`` once its files are read: in a thread, so that the viewer answers meanwhile (a 24-MP
        photo takes about a second), unless they were read ahead."""
        if stem is None or self.run_layers is None:
            self._describe(stem)
            return
        reading = self.run_layers.read_ahead(stem)
        if reading is None or reading.done():
            self._shown(stem)
            return
        self.note.value = f"reading {self.run_layers.photo_name(stem)}..."
        reading.add_done_callback(partial(self._say_files_read, self.run_layers, stem))

    def _say_files_read(self, run_layers: RunLayers, stem: str, _) -> None:
        with suppress(RuntimeError):  # the dock was closed while the files were read
            self._files_read.of.emit(run_layers, stem)

    def _files_arrived(self, run_layers: RunLayers, stem: str) -> None:
        """Show the photo whose files were read, unless another photo or run was chosen meanwhile. Through
        :meth:`_show` again, as the read that ended may not be the photo's latest (chosen, left and chosen
        again): then its latest read is waited for in the same way, never in the GUI thread."""
        if run_layers is self.run_layers and stem == self.photo.value and stem != run_layers.current:
            self._show(stem)

    def _shown(self, stem: str) -> None:
        self.run_layers.show(stem)
        # Opening a run steps past photos that cannot be read, as they show nothing; each stays listed, its note
        # saying why.
        if stem in self.run_layers.unreadable and self._unreadable_to_pass > 0:
            self._unreadable_to_pass -= 1
            self.step(+1)
            return
        self._unreadable_to_pass = 0
        self._read_next()
        self._describe(stem)
        if not self.closing.busy:  # else the step waiting closes for this photo too, and goes on while it must
            self.closing.add([self._close_photos_shown_long_ago])

    def _close_photos_shown_long_ago(self) -> None:
        if self.run_layers is not None and self.run_layers.close_a_photo_shown_long_ago():
            self.closing.add([self._close_photos_shown_long_ago])

    def _read_next(self) -> None:
        """Have the photo after the one on screen read while it is looked at: Next is the likely click."""
        if self.run_layers is not None and self.photo.value in self.photo.choices:
            self.run_layers.read_ahead(self._stepped(self.photo.value, +1))

    def _describe(self, stem: str | None) -> None:
        stats = self._stats.get(stem) if stem is not None else None
        unreadable = self.run_layers.unreadable.get(stem) if self.run_layers is not None else None
        trusted = self.store is not None and stem is not None and self.store.fixed_mask_path(stem).is_file()
        if stats is not None:
            self.note.value = ("trusted; " if trusted else "") + describe_mask(self._iteration, stats)
        elif trusted:
            self.note.value = "trusted"
        elif unreadable is not None:
            self.note.value = f"not labelled: {unreadable}"
        elif self._iteration is not None and not self._stats and self.order.value == CHECK_FIRST:
            # Runs made before the figures were recorded have none: say why the order did not change.
            self.note.value = f"iteration {self._iteration} recorded no figures (an older run): photos in name order"
        else:
            self.note.value = ""
