"""A run folder as napari layers: each photo with one Labels layer per iteration, shown a photo at a time."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from functools import cache, partial
from pathlib import Path
from weakref import WeakValueDictionary

import napari
import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_warning
from qtpy.QtCore import QTimer

from napari_gfn._atomic import why_unwritable
from napari_gfn.engine import ImageReadError, ImageSet
from napari_gfn.engine.images import read_object_mask, size_mismatch
from napari_gfn.store import RunFolder, RunFolderError

__all__ = [
    "METADATA_KEY",
    "RunLayers",
    "draft_layer_name",
    "import_what_napari_layers_import",
    "iteration_layer_name",
    "trusted_layer_name",
]

METADATA_KEY = "napari_gfn"
# A mask layer's marker holds this once the layer is painted on, until it is trusted (its mask written to the run).
PAINTED_SINCE_TRUSTED = "painted_since_trusted"


def iteration_layer_name(photo: str, iteration: int) -> str:
    return f"{photo} · iter {iteration}"


def trusted_layer_name(photo: str) -> str:
    return f"{photo} · trusted"


def draft_layer_name(photo: str) -> str:
    return f"{photo} · draft"


# A folder run closes the layers of the photos shown longest ago once the layers it could close hold more
# than this many bytes, or belong to more photos than this besides the one on screen: browsing hundreds of
# camera-size photos would otherwise keep them all (270 MB of memory each at 24 MP), and napari takes longer to
# add a layer the more layers it has, hidden or not (each Next took 18 ms longer per photo seen, 1 s after 40
# photos of 600 x 400).
OPEN_LAYERS_BUDGET = 512 * 2**20
OPEN_PHOTOS_BUDGET = 8
# Layers shown or hidden at once times the layers open, above which napari is asked to redraw once, not at each:
# a change costs napari about 0.5 ms per layer open, and a batch's end 0.3 s.
VISIBLE_CHANGES_BATCHED_ABOVE = 600

# One thread for every run on screen: it reads one photo ahead, and a read takes under a second.
_READ_AHEAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-gfn-read-ahead")
_PHOTO = "photo"

# One thread writes every run's drafts, in the order asked: a paint's draft never lands after the Trust that
# followed it. A draft write that a later change of the same draft outdates is skipped (a stroke a second).
_DRAFT_WRITER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-gfn-drafts")
_drafts_asked: dict[Path, int] = {}  # a draft's path -> how many changes of it were asked
_drafts_done: dict[Path, int] = {}  # a draft's path -> the number of the last change made
_draft_layers: dict[Path, int] = {}  # a draft's path -> the layer (unique_id) whose paint it holds, once asked
_drafts_written: dict[Path, bytes] = {}  # a draft's path -> the digest of the mask the thread wrote there last
_trusted_as: dict[int, bytes] = {}  # a layer (unique_id) trusted here -> the digest of the mask trusted
_refreshes_to_check: set[int] = set()  # the layers (unique_id) refreshed, to be checked for an Undo
_dabbed: set[int] = set()  # those painted on since: the stroke's end is said
_closing: set[int] = set()  # the layers (unique_id) a run is closing as shown long ago: not removed by the user
_draft_problems: dict[Path, str] = {}  # a run's folder -> why a draft of it could not be written
_draft_problems_said: set[Path] = set()  # once each: not at every stroke
# A run's folder -> the RunLayers that shows it last: a Redo of paint trusted asks it for the photo's draft.
_shown_runs: WeakValueDictionary[Path, RunLayers] = WeakValueDictionary()

# A photo's files as read ahead: its pixels under _PHOTO and each iteration's mask under its number, or the
# error reading one raised, raised again when it is used.
PhotoFiles = dict[object, object]


class RunLayers:
    """Keeps the viewer's layers of one run: photos, iteration masks, and which photo is shown.

    ``photo_layers`` maps stems to the user's own Image layers (a run started
    from layers): up to ``OPEN_PHOTOS_BUDGET`` photos then get their iteration
    layers at once. Any other run shows one photo at a time and reads a photo's
    masks only when it is shown, so hundreds of masks never load together; the
    masks of photos shown long ago are closed once all they hold is on disk
    (paint as its draft). A user's photo layers are never closed.
    """

    def __init__(
        self,
        viewer: napari.Viewer,
        store: RunFolder,
        photos: ImageSet,
        photo_layers: Mapping[str, str] | None = None,
    ) -> None:
        self.viewer = viewer
        self.store = store
        self.photos = photos
        self.photo_layers = dict(photo_layers or {})
        self.current: str | None = None  # the photo on screen, once one is
        self._shown_size: tuple[int, ...] | None = None  # its height and width, as the view was fitted to
        self.unreadable: dict[str, str] = {}  # stem -> why its photo cannot be shown (nor was labelled)
        self._layers: dict[str, list] = {}
        self._read_ahead: tuple[str, Future[PhotoFiles]] | None = None
        self._wanted_next: str | None = None  # the photo read ahead last, its files read or already open
        self._shown_last: list[str] = []  # oldest first
        self._on_disk: bool | None = None  # whether the run folder was there when a photo was last shown
        self._take_over_shown_layers()
        _shown_runs[_resolved(str(store.root))] = self
        viewer.layers.events.removed.connect(self._on_layer_removed)
        self._say_if_read_only()
        for stem, name in self.photo_layers.items():  # hidden but for the photo shown, as the run's own layers are
            if name in self.viewer.layers:
                self._remember(stem, self.viewer.layers[name])

    def _take_over_shown_layers(self) -> None:
        """Take up this run's layers already in the viewer (from when it ran or was opened before, and is
        continued with Start, say), so that none is added twice; hide other runs' layers. Those stay, as one
        may hold a correction not trusted yet."""
        for layer in self.viewer.layers:
            marker = layer.metadata.get(METADATA_KEY)
            if marker is None:
                continue
            if self._is_ours(marker):
                self._remember(marker["stem"], layer)
            else:
                layer.visible = False

    def _say_if_read_only(self) -> None:
        """A run opened from where it cannot be written (a colleague's, on a shared server) keeps no correction:
        said before any is painted."""
        if self.store.root in _draft_problems_said or not (reason := why_unwritable(self.store.root)):
            return
        _draft_problems_said.add(self.store.root)
        show_warning(
            f"{self.store.root} cannot be written here ({reason}): neither paint (kept as drafts) nor Trust can "
            "be saved in it. To correct its masks, copy the run folder to a disk you can write and open the copy"
        )

    @property
    def stems(self) -> list[str]:
        return self.photos.stems

    def photo_name(self, stem: str) -> str:
        return self.photo_layers.get(stem, stem)

    def masks_to_show(self, iteration: int, stems: list[str]) -> dict[str, np.ndarray]:
        """Read the masks :meth:`add_iteration` shows: every photo's for a layer run of a few photos, else the photo
        on screen's. napari takes longer to add a layer the more it holds: a layer run of 200 photos, given
        every mask, paused the viewer 500 times over 0.25 s (up to 4 s) as its iterations came.

        Called in the worker thread, because decoding PNGs in the GUI thread, while
        training holds the GIL, stalls the viewer for a quarter of a second.
        """
        every_photo = self.photo_layers and len(self.photo_layers) <= OPEN_PHOTOS_BUDGET
        shown = stems if every_photo else [stem for stem in stems if stem == self.current]
        return {stem: self.store.read_mask(iteration, stem) for stem in shown}

    def add_iteration(self, iteration: int, masks: Mapping[str, np.ndarray]) -> None:
        """Show a just-finished iteration's masks, as read by :meth:`masks_to_show`, but for a photo shown since
        (its masks then came from disk)."""
        with self._selection_kept():
            for stem, mask in masks.items():
                if not self._has_mask_layer(stem, iteration):
                    self._add_mask(stem, iteration, mask)

    def _say_if_gone(self) -> None:
        """A run moved or deleted while shown shows its photos without masks: said once, as it is first met.
        Not before the run's folder is made (by its job, after a new run's first photos show)."""
        try:
            self.store.check_still_here()
            self._on_disk = True
        except FileNotFoundError as error:
            if self._on_disk:
                show_warning(f"masks not shown: {error}")
            self._on_disk = False

    def add_finished_iterations(self) -> None:
        """Show the photo on screen's masks of the iterations finished since it was shown (a run followed as
        another process writes it)."""
        if self.current is None:  # no photo shown yet: its masks come with it
            return
        with self._selection_kept():
            self._add_finished_masks(self.current)

    def show(self, stem: str) -> None:
        """Make ``stem`` the photo on screen, with all its finished iterations; other photos are hidden.

        The layers of photos shown long ago stay until :meth:`close_a_photo_shown_long_ago` closes them.
        """
        self.current = stem
        self._say_if_gone()
        files = self._files_read_ahead(stem)
        photo = self._photo_layer(stem, files)
        self._add_finished_masks(stem, files)
        shape = photo.data.shape[:2] if photo is not None else None
        self._add_trusted(stem, shape)
        self._add_draft(stem, shape)
        self._show_only(stem)
        self._shown_last = [*(shown for shown in self._shown_last if shown != stem), stem]
        if photo is not None and photo.data.shape[:2] != self._shown_size:
            # napari fits the view to the first layer it shows, and keeps that view: a photo of another size
            # would show cut off, or small in a corner. One of the same size keeps the view the user zoomed to.
            # napari fits to given layers only if they have the viewer's dimensions: with a stack open, to all.
            self.viewer.reset_view(layers=[photo] if photo.ndim == self.viewer.dims.ndim else None)
            self._shown_size = photo.data.shape[:2]

    def _show_only(self, stem: str) -> None:
        """Show ``stem``'s layers and hide the others', setting only the layers that change."""
        changes = [
            (layer, layer_stem == stem)
            for layer_stem, layers in self._layers.items()
            for layer in layers
            if layer.visible != (layer_stem == stem)
        ]
        # napari redraws every layer's overlays at each visible event, so a change costs more the more layers are
        # open, and hiding a layer run's other 199 photos one by one took 20 s. A batch defers that to its end, which
        # costs a garbage collection, 0.3 s: as much as a Next's few changes one by one in a folder run.
        batched = len(changes) * len(self.viewer.layers) > VISIBLE_CHANGES_BATCHED_ABOVE
        with self.viewer.layers.batched_update() if batched else nullcontext():
            for layer, visible in changes:
                layer.visible = visible

    def close_a_photo_shown_long_ago(self) -> bool:
        """Close the layers of the photo shown longest ago if the layers that could be closed are over budget;
        whether one was.

        A photo per call, so that the viewer answers between two: napari removes a layer in about 50 ms and
        collects garbage after each batch (0.25 s), and closing four photos at once froze it for 1.1 to 1.7 s.
        Never the photo on screen, nor the one read ahead (with Next, say), which would then be read again.
        """
        # By unique_id: a plugin's viewer hands out a new proxy of a layer at each access.
        open_now = {layer.unique_id for layer in self.viewer.layers}
        closable = {
            other: [layer for layer in layers if layer.unique_id in open_now and self._kept_on_disk(layer)]
            for other, layers in self._layers.items()
        }
        held = sum(layer.data.nbytes for layers in closable.values() for layer in layers)
        photos_held = sum(bool(layers) for other, layers in closable.items() if other != self.current)
        if held <= OPEN_LAYERS_BUDGET and photos_held <= OPEN_PHOTOS_BUDGET:
            return False
        # Photos whose layers were taken over (shown in an earlier opening) are the oldest.
        oldest_first = [other for other in closable if other not in self._shown_last] + self._shown_last
        kept = (self.current, self._wanted_next)
        old = next((other for other in oldest_first if closable.get(other) and other not in kept), None)
        if old is None:
            return False
        closed = {layer.unique_id for layer in closable[old]}
        _closing.update(closed)  # not removed by the user: a draft among them stays a draft
        try:
            with self.viewer.layers.batched_update():
                for layer in closable[old]:
                    self.viewer.layers.remove(layer)
        finally:
            _closing.difference_update(closed)
        self._shown_last = [shown for shown in self._shown_last if shown != old]
        return True

    def _kept_on_disk(self, layer) -> bool:
        """Whether ``layer`` is one this run made and all of it is on disk, where showing its photo again finds
        it: a photo, or an iteration's mask not painted on; a correction trusted and not painted on since; paint
        whose draft is written, unless another layer of its photo is painted on too.

        A user's own layer once trusted carries the run's marker too, but none of the keys of a layer made here:
        never closed. Nor is a correction no longer trusted, kept only in ``untrusted/``.
        """
        marker = layer.metadata.get(METADATA_KEY) or {}
        made_here = any(key in marker for key in ("photo", "iteration", "fixed", "draft"))
        if not (made_here and self._is_ours(marker)):
            return False
        if marker.get(PAINTED_SINCE_TRUSTED):  # a photo's one draft holds one layer's paint: the other's would be lost
            return _draft_holds(layer) and len(self._painted_layers(marker["stem"])) == 1
        return bool(marker.get("trusted")) or not marker.get("edited")

    def read_ahead(self, stem: str) -> Future[PhotoFiles] | None:
        """Start reading the files of ``stem`` that have no layer yet, in a thread; None if there are none.

        The photo the user is likely to show next is read so, and a photo chosen is read so before it is
        shown: only making the layers is then left for the GUI thread. On a 24-MP photo with two iterations,
        reading its files is more than half of the time showing it takes.
        """
        self._wanted_next = stem
        if self._read_ahead is not None and self._read_ahead[0] == stem:
            return self._read_ahead[1]
        if self._read_ahead is not None:
            self._read_ahead[1].cancel()
            self._read_ahead = None
        reads: dict[object, Callable[[], np.ndarray]] = {}
        record = self._record(stem)
        if self._shown_photo_layer(stem, record.path) is None:
            reads[_PHOTO] = record.load
        for iteration in self._masks_without_layers(stem):
            reads[iteration] = partial(self.store.read_mask, iteration, stem)
        if not reads:
            return None
        self._read_ahead = (stem, _READ_AHEAD.submit(_read_all, reads))
        return self._read_ahead[1]

    def _files_read_ahead(self, stem: str) -> PhotoFiles:
        if self._read_ahead is None or self._read_ahead[0] != stem:
            return {}
        _, future = self._read_ahead
        self._read_ahead = None
        return future.result()  # ended: the browser shows a photo once its read has

    def _masks_without_layers(self, stem: str) -> list[int]:
        return [
            iteration
            for iteration in self.store.finished_iterations()
            if not self._has_mask_layer(stem, iteration) and self.store.has_mask(iteration, stem)
        ]

    def _add_finished_masks(self, stem: str, files: PhotoFiles | None = None) -> None:
        for iteration in self._masks_without_layers(stem):
            try:
                mask = _read_or_take(files or {}, iteration, partial(self.store.read_mask, iteration, stem))
                self._add_mask(stem, iteration, mask)
            except RunFolderError as error:
                show_warning(str(error))  # the other iterations still show

    @contextmanager
    def _selection_kept(self) -> Iterator[None]:
        """napari selects each layer it adds. An iteration that arrives on its own must leave the user's layer
        selected: it may be a correction being painted, about to be trusted. Nor may it leave one of its own
        selected where none was: a hidden mask of another photo, which Trust would then trust."""
        active = self.viewer.layers.selection.active
        yield
        if active is None:
            self.viewer.layers.selection.clear()
        elif active in self.viewer.layers:
            self.viewer.layers.selection.active = active

    def trust(self, layer, stem: str) -> None:
        """Write ``layer``'s mask as ``stem``'s trusted correction (OSError if it cannot be), then mark the layer so:
        renamed so if it is one of ours, and shown with its photo."""
        mask = _mask_of(layer)
        self.store.write_fixed_mask(stem, mask)
        meta = layer.metadata.get(METADATA_KEY)
        if meta is not None:
            layer.name = trusted_layer_name(self.photo_name(stem))
        marker = {**(meta or self._marker(stem)), "trusted": True}
        marker.pop(PAINTED_SINCE_TRUSTED, None)
        layer.metadata[METADATA_KEY] = marker
        _trusted_as[layer.unique_id] = _digest(mask)  # an Undo may take it back
        self._remember(stem, layer)
        self._redraft(stem, removed=False)

    def painted_since_trusted(self) -> list[str]:
        """The names of this run's mask layers painted on and not trusted since, and of drafts of photos not
        shown since they were painted: the run does not train on them."""
        painted = {stem: self._painted_layers(stem) for stem in self.stems}
        drafts = self.store.drafts()
        return [layer.name for layers in painted.values() for layer in layers] + [
            draft_layer_name(self.photo_name(stem)) for stem in self.stems if stem in drafts and not painted[stem]
        ]

    def _painted_layers(self, stem: str) -> list:
        return [layer for layer in self._mask_layers(stem) if layer.metadata[METADATA_KEY].get(PAINTED_SINCE_TRUSTED)]

    def _add_draft(self, stem: str, shape: tuple[int, int] | None) -> None:
        """Paint not trusted from when the run was shown before (napari closed, or crashed), on top: the user may
        paint on, trust it, or remove its layer. Not if a layer painted on since holds the newer paint."""
        path = self.store.draft_path(stem)
        if not path.is_file() or self._painted_layers(stem):
            return
        try:
            mask = read_object_mask(path, shape)
        except ImageReadError as error:  # cut short, or the photo was replaced by another of its name
            show_warning(f"draft not shown: {error}")
            return
        painted = {"edited": True, PAINTED_SINCE_TRUSTED: True}
        layer = self._add_labels(stem, mask, draft_layer_name(self.photo_name(stem)), draft=True, **painted)
        _draft_layers[path] = layer.unique_id  # its paint is on disk

    def _on_layer_removed(self, event) -> None:
        marker = event.value.metadata.get(METADATA_KEY)
        ours = bool(marker) and self._is_ours(marker)
        self._forget(event.value.unique_id, marker["stem"] if ours else None)
        _trusted_as.pop(event.value.unique_id, None)  # no Undo can reach a removed layer
        if event.value.unique_id in _closing:
            return
        if ours and marker.get(PAINTED_SINCE_TRUSTED):
            # Later: napari's Viewer.close removes every layer, and closing must keep the drafts.
            QTimer.singleShot(0, partial(self._redraft_unless_closed, marker["stem"]))

    def _forget(self, removed: int, stem: str | None) -> None:
        """A layer removed (``stem``'s, if it is marked as this run's) is forgotten, so that its memory is freed,
        and it is no longer shown with its photo (the refresh of a mask painted on writes its draft)."""
        for photo in [stem] if stem in self._layers else list(self._layers):  # a user's photo layer has no marker
            self._layers[photo] = [layer for layer in self._layers[photo] if layer.unique_id != removed]

    def _redraft_unless_closed(self, stem: str) -> None:
        if len(self.viewer.layers):  # none left: the viewer closed, or the user removed all (the drafts stay)
            self._redraft(stem, removed=True)

    def _redraft(self, stem: str, *, removed: bool) -> None:
        """``stem``'s draft after one of its layers was trusted or removed: the paint of another layer of its
        painted on, if one is left; else none (set aside, for a removed layer)."""
        if painted := self._painted_layers(stem):
            _save_draft(painted[-1])
        else:
            change = self.store.set_draft_aside if removed else self.store.drop_draft
            _ask_draft_change(self.store, stem, partial(change, stem))

    def mark_untrusted(self, stem: str) -> None:
        """``stem``'s trusted layers no longer hold a trusted mask; they stay, so a correction is not lost."""
        photo = self.photo_name(stem)
        for layer in self._mask_layers(stem):
            was_trusted = layer.metadata[METADATA_KEY].pop("trusted", False)
            if was_trusted and layer.name == trusted_layer_name(photo):  # a user's own layer keeps its name
                layer.name = f"{photo} · not trusted"

    def _add_trusted(self, stem: str, shape: tuple[int, int] | None) -> None:
        """A correction trusted in an earlier session, on top of the iterations: the mask later iterations keep."""
        path = self.store.fixed_mask_path(stem)
        if not path.is_file() or any(layer.metadata[METADATA_KEY].get("trusted") for layer in self._mask_layers(stem)):
            return
        try:
            mask = read_object_mask(path, shape)
        except ImageReadError as error:  # the rounds to come do not use it either, and say so
            show_warning(f"trusted correction not shown: {error}")
            return
        self._add_labels(stem, mask, trusted_layer_name(self.photo_name(stem)), trusted=True, fixed=True)

    def stem_of(self, layer) -> str | None:
        """The photo a Labels layer belongs to: one of ours by its metadata, a user's by the photo on screen.
        Another run's layer belongs to none of this run's photos, even one of the same name."""
        meta = layer.metadata.get(METADATA_KEY)
        if meta is not None:
            return meta["stem"] if self._is_ours(meta) else None
        photo = self._photo_on_screen()
        return self.current if photo is not None and layer.data.shape == photo.data.shape[:2] else None

    def size_problem(self, layer) -> str | None:
        """Why a user's Labels layer is no mask of the photo on screen, when the reason is its size."""
        photo = self._photo_on_screen()
        if METADATA_KEY in layer.metadata or photo is None or layer.data.shape == photo.data.shape[:2]:
            return None
        if layer.data.ndim != 2:
            return f"Labels layer {layer.name!r} has {layer.data.ndim} dimensions, and a mask of a photo 2"
        return str(size_mismatch(f"Labels layer {layer.name!r}", "mask is", layer.data.shape, photo.data.shape[:2]))

    def _photo_on_screen(self):
        return self._photo_layer(self.current) if self.current is not None else None

    def _record(self, stem: str):
        return self.photos[self.stems.index(stem)]

    def _photo_layer(self, stem: str, files: PhotoFiles | None = None):
        record = self._record(stem)
        layer = self._shown_photo_layer(stem, record.path)
        if layer is None:
            try:
                pixels = _read_or_take(files or {}, _PHOTO, record.load)
            except ImageReadError as error:
                # The run reported it as it skipped it, but a run opened later never showed that report.
                self.unreadable[stem] = error.problem
                return None
            # Marked, so that another run's photo of this name is told apart, and one of this file is shared.
            marker = {METADATA_KEY: self._marker(stem, photo=str(record.path) if record.path else None)}
            layer = self.viewer.add_image(pixels, name=self.photo_name(stem), rgb=True, metadata=marker)
            self._put_under_its_masks(stem, layer)
        self._remember(stem, layer)
        return layer

    def _put_under_its_masks(self, stem: str, photo) -> None:
        """A photo read anew, as its layers were closed but for a mask painted on, goes under that mask."""
        masks = {mask.unique_id for mask in self._mask_layers(stem)}
        places = [index for index, layer in enumerate(self.viewer.layers) if layer.unique_id in masks]
        if places:
            here = next(index for index, layer in enumerate(self.viewer.layers) if layer.unique_id == photo.unique_id)
            self.viewer.layers.move(here, min(places))

    def _shown_photo_layer(self, stem: str, path: Path | None):
        """``stem``'s photo among the viewer's layers: one this run added; one another run added of the same
        file (two runs over one folder, compared); or a layer of the photo's name that no run added (the
        user's). Another run's photo of the same name (IMG_0001 from another camera) is not it.
        """
        for layer in self._layers.get(stem, []):
            if layer in self.viewer.layers and isinstance(layer, Image):
                return layer
        for layer in self.viewer.layers:
            marker = layer.metadata.get(METADATA_KEY)
            if path is not None and isinstance(layer, Image) and marker and marker.get("photo") == str(path):
                return layer
        name = self.photo_name(stem)
        if name in self.viewer.layers and METADATA_KEY not in self.viewer.layers[name].metadata:
            return self.viewer.layers[name]
        return None

    def _mask_layers(self, stem: str) -> list:
        """``stem``'s Labels layers of this run still in the viewer: its iterations and its trusted correction."""
        return [
            layer
            for layer in self._layers.get(stem, [])
            if layer in self.viewer.layers and isinstance(layer, Labels) and METADATA_KEY in layer.metadata
        ]

    def _has_mask_layer(self, stem: str, iteration: int) -> bool:
        return any(layer.metadata[METADATA_KEY].get("iteration") == iteration for layer in self._mask_layers(stem))

    def _add_mask(self, stem: str, iteration: int, mask: np.ndarray | None = None) -> None:
        if mask is None:
            mask = self.store.read_mask(iteration, stem)
        self._add_labels(stem, mask, iteration_layer_name(self.photo_name(stem), iteration), iteration=iteration)

    def _add_labels(self, stem: str, mask: np.ndarray, name: str, **about) -> Labels:
        """A Labels layer of ``stem``'s, marked as this run's (``about``: its iteration, or that it is trusted)."""
        marker = {METADATA_KEY: self._marker(stem, **about)}
        # Hidden unless its photo is on screen: a layer run's iterations bring every photo's mask at once.
        visible = stem == self.current
        layer = self.viewer.add_labels(mask.astype(np.uint8), name=name, opacity=0.5, metadata=marker, visible=visible)
        # A mask painted on is the user's work until trusted: kept as a draft, and closed only once that is written.
        for change in (layer.events.paint, layer.events.data):
            change.connect(partial(_painted, layer))
        # An Undo or Redo is said by no event of its own: only by the layer's refresh, which a dab also brings.
        layer.events.set_data.connect(partial(_refreshed, layer))
        layer.events.labels_update.connect(partial(_refreshed, layer, dab=True))
        self._remember(stem, layer)
        return layer

    def _marker(self, stem: str, **about) -> dict:
        """What marks a Labels layer as this run's: its photo, the run and ``about`` it."""
        return {"stem": stem, **about, "run": str(self.store.root)}

    def _is_ours(self, marker: dict) -> bool:
        """Whether a layer's marker names this run's folder, however the folder was given (relative, say)."""
        return _resolved(marker["run"]) == _resolved(str(self.store.root))

    def _remember(self, stem: str, layer) -> None:
        layers = self._layers.setdefault(stem, [])
        if layer not in layers:
            layers.append(layer)


@cache
def _resolved(path: str) -> Path:
    """A folder's own path, looked up once: browsing asks it of every open layer at each photo."""
    return Path(path).resolve()


def _painted(layer, *_) -> None:
    marker = layer.metadata[METADATA_KEY]
    marker.update({"edited": True, PAINTED_SINCE_TRUSTED: True})
    _draft_layers.pop(RunFolder(marker["run"]).draft_path(marker["stem"]), None)  # on disk again once written
    # Once the paint is in: napari says a brush's dab, or a fill, is painted before it changes the layer's data.
    QTimer.singleShot(0, partial(_save_draft, layer))


def _refreshed(layer, *_, dab: bool = False) -> None:
    if dab:
        _dabbed.add(layer.unique_id)
    if layer.unique_id not in _refreshes_to_check:
        _refreshes_to_check.add(layer.unique_id)
        QTimer.singleShot(0, partial(_save_draft_after_undo, layer))


def _save_draft_after_undo(layer) -> None:
    """A mask layer refreshed, unless by a stroke (whose end asks for its draft): an Undo or Redo may have changed
    it. A layer trusted here that no longer holds the mask trusted is painted on again (an Undo took the paint
    trusted back), and one painted since that holds it again is trusted again (a Redo brought it back). Another
    layer painted on has its draft written again, unless unchanged (the layer shown again, say)."""
    _refreshes_to_check.discard(layer.unique_id)
    marker = layer.metadata[METADATA_KEY]
    painted = bool(marker.get(PAINTED_SINCE_TRUSTED))
    if layer.unique_id in _dabbed:
        _dabbed.discard(layer.unique_id)
    elif _trusted_here(layer) and _holds_mask_trusted(layer) == painted:
        _trusted_again(layer) if painted else _painted(layer)
    elif painted:
        _save_draft(layer)


def _trusted_here(layer) -> bool:
    return bool(layer.metadata[METADATA_KEY].get("trusted")) and layer.unique_id in _trusted_as


def _holds_mask_trusted(layer) -> bool:
    return _digest(_mask_of(layer)) == _trusted_as[layer.unique_id]


def _trusted_again(layer) -> None:
    """A layer painted since it was trusted holds the mask trusted again: its paint needs no draft."""
    marker = layer.metadata[METADATA_KEY]
    marker.pop(PAINTED_SINCE_TRUSTED)
    stem = marker["stem"]
    if run_layers := _shown_runs.get(_resolved(marker["run"])):
        run_layers._redraft(stem, removed=False)
        return
    # The dock was closed (its X removes it): with no list of the photo's other layers, the draft goes only if
    # it holds this layer's paint, which is now the mask trusted.
    store = RunFolder(marker["run"])
    if _draft_layers.get(store.draft_path(stem)) == layer.unique_id:
        _ask_draft_change(store, stem, partial(store.drop_draft, stem))


def _save_draft(layer) -> None:
    """Keep a copy of a run's painted mask layer as its photo's draft, written in the drafts' thread; not if
    the layer was trusted since it was painted."""
    marker = layer.metadata[METADATA_KEY]
    if not marker.get(PAINTED_SINCE_TRUSTED):
        return
    store, stem = RunFolder(marker["run"]), marker["stem"]
    if store.root in _draft_problems and store.root not in _draft_problems_said:
        _draft_problems_said.add(store.root)
        show_warning(
            f"{_draft_problems[store.root]}: paint not trusted would be lost when napari closes: save its layer "
            "elsewhere (File > Save Selected Layers...)"
        )
    mask = _mask_of(layer)  # copied here: painting goes on as the thread writes
    _ask_draft_change(store, stem, partial(_write_draft_unless_written, store, stem, mask), write=True)
    _draft_layers[store.draft_path(stem)] = layer.unique_id


def _mask_of(layer) -> np.ndarray:
    return np.asarray(layer.data) > 0


def _digest(mask: np.ndarray) -> bytes:
    """A mask's fingerprint: 8 ms at 24 MP, where the mask itself would hold 24 MB."""
    return hashlib.blake2b(np.packbits(mask).tobytes() + repr(mask.shape).encode()).digest()


def _write_draft_unless_written(store: RunFolder, stem: str, mask: np.ndarray) -> None:
    path = store.draft_path(stem)
    digest = _digest(mask)
    if _drafts_written.get(path) != digest:
        store.write_draft(stem, mask)
        _drafts_written[path] = digest


def _draft_holds(layer) -> bool:
    """Whether the draft on disk holds all the paint of ``layer``: written from it, and nothing asked since."""
    marker = layer.metadata[METADATA_KEY]
    path = RunFolder(marker["run"]).draft_path(marker["stem"])
    return _draft_layers.get(path) == layer.unique_id and _drafts_done.get(path) == _drafts_asked.get(path)


def _ask_draft_change(store: RunFolder, stem: str, change: Callable[[], object], *, write: bool = False) -> None:
    path = store.draft_path(stem)
    asked = _drafts_asked[path] = _drafts_asked.get(path, 0) + 1
    _draft_layers.pop(path, None)
    _DRAFT_WRITER.submit(_change_draft, store, path, change, asked, write)


def _change_draft(store: RunFolder, path: Path, change: Callable[[], object], asked: int, write: bool) -> None:
    if write and _drafts_asked[path] != asked:
        return  # a later change of this draft outdates it
    if not write:
        _drafts_written.pop(path, None)  # dropped, or set aside
    try:
        change()
    except OSError as error:  # a run on a read-only mount, or a full disk
        _draft_problems[store.root] = f"{path}: cannot be written: {error}"
    else:
        _drafts_done[path] = asked


@cache
def import_what_napari_layers_import() -> None:
    """Import what napari imports as it makes its first Image and Labels layers (0.7 s on opening a run of
    camera-size photos): called in a worker thread, so that the GUI thread finds them loaded."""
    import pandas  # noqa: F401
    import scipy.linalg
    import scipy.ndimage  # noqa: F401
    import skimage.color.colorconv
    import skimage.exposure
    import skimage.util  # noqa: F401


def _read_all(reads: Mapping[object, Callable[[], np.ndarray]]) -> PhotoFiles:
    import_what_napari_layers_import()
    files: PhotoFiles = {}
    for key, read in reads.items():
        try:
            files[key] = read()
        except (ImageReadError, RunFolderError) as error:
            files[key] = error
    return files


def _read_or_take(files: PhotoFiles, key: object, read: Callable[[], np.ndarray]) -> np.ndarray:
    """The file read ahead under ``key`` (raising the error its read raised), or, if it was not, read now."""
    if key not in files:
        return read()
    value = files[key]
    if isinstance(value, Exception):
        raise value
    return value
