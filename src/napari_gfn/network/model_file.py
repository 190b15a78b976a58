"""Model files: a GFN's weights plus everything needed to rebuild and use it."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import torch

from napari_gfn._atomic import atomic_write, why_unwritable
from napari_gfn._versions import library_versions

from .gfn import GFN, GFNConfig

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ModelFileError",
    "check_model_file_writable",
    "load_model",
    "read_model_card",
    "save_model",
]

FORMAT = "napari-gfn/model"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A model file that cannot be read or does not fit this version of napari-gfn."""

    def __init__(self, path: os.PathLike | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)


def save_model(model: GFN, path: os.PathLike | str, **meta) -> Path:
    """Write ``model`` and ``meta`` (class names, image size, source set, ...) atomically to ``path``."""
    path = Path(path)
    meta.setdefault("class_names", ["background", "object"][: model.config.num_classes])
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "normalisation": {"mean": list(model.backbone.mean), "std": list(model.backbone.std)},
        "meta": meta,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
    }
    return atomic_write(path, lambda stream: _save(payload, stream))


def _save(payload: dict, stream) -> None:
    try:
        torch.save(payload, stream)
    except RuntimeError as error:
        # torch's zip writer, closing after a write failed (a full disk), raises its own error about file
        # positions in place of the one that says what happened.
        if isinstance(error.__context__, OSError):
            raise error.__context__ from None
        raise


def check_model_file_writable(path: os.PathLike | str) -> None:
    """Refuse a model file that could not be written, before the training that would fill it, not after."""
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(path, f"a folder, not a file: give the model file to write, such as {path / 'model.pt'}")
    if reason := why_unwritable(path.parent):  # save_model makes missing folders
        raise ModelFileError(path, f"cannot be written ({reason})")
    if path.is_file():  # a model trained before is written over; a photo given by a slip of the keyboard is not
        try:
            _read_payload(path)
        except ModelFileError:
            raise ModelFileError(
                path, "a file that is not a napari-gfn model file: the model would replace it; give a new name"
            ) from None


def _read_payload(path: Path) -> dict:
    if path.is_dir():
        raise ModelFileError(path, "a folder, not a model file: give the model file itself (MODEL.pt)")
    if not path.is_file():
        raise ModelFileError(path, "no such model file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise ModelFileError(path, "not a readable napari-gfn model file (truncated or corrupt?)") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(path, "not a napari-gfn model file (no napari-gfn model header)")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFileError(
            path, f"written by a newer napari-gfn (format {payload['format_version']}); please upgrade"
        )
    return payload


def read_model_card(path: os.PathLike | str) -> dict:
    """The model's description (architecture, meta, versions, date) without building it."""
    payload = _read_payload(Path(path))
    return {key: value for key, value in payload.items() if key != "state_dict"}


def load_model(path: os.PathLike | str, map_location: str | torch.device = "cpu") -> GFN:
    """Rebuild the GFN saved at ``path``, in eval mode, with its card in ``model.card``."""
    path = Path(path)
    payload = _read_payload(path)
    try:
        config = GFNConfig(**payload["config"])
        model = GFN(pretrained=False, **config.to_dict())
        model.load_state_dict(payload["state_dict"])
    except (TypeError, KeyError, RuntimeError, ValueError) as error:
        raise ModelFileError(path, f"does not fit this version of napari-gfn: {error}") from None
    model.card = {key: value for key, value in payload.items() if key != "state_dict"}
    return model.to(map_location).eval()
