"""Transfer seed: a source model trained on a labelled set with a similar class predicts iteration 0."""

from __future__ import annotations

from napari_gfn.config import describe_setting
from napari_gfn.network import GFN, ModelFileError, load_model

__all__ = ["load_source_model", "transfer_seed"]


def load_source_model(path: str | None, backbone: str, device) -> GFN:
    """The source model at ``path``, checked to be a two-class model with the run's backbone."""
    from napari_gfn.engine.events import LabellingError

    if not path:
        raise LabellingError(
            f"the transfer seed needs a {describe_setting('source_model')}: a model file from "
            "`napari-gfn train-source` or the Source model dock"
        )
    try:
        model = load_model(path, map_location=device)
    except ModelFileError as error:
        raise LabellingError(f"source model {error}") from None
    config = model.config
    if config.num_classes != 2:
        raise LabellingError(
            f"source model {path}: it predicts {config.num_classes} classes, but a source model must predict "
            "2 (background and object); train one with `napari-gfn train-source`"
        )
    if config.backbone != backbone:
        raise LabellingError(
            f"source model {path}: it was trained with the {config.backbone} backbone but this run uses "
            f"{backbone}; choose the {describe_setting('backbone', config.backbone)}"
        )
    return model


def transfer_seed(context):
    """Iteration 0 is the source model's prediction for every photo."""
    from napari_gfn.engine.events import Notice
    from napari_gfn.engine.refine import SeedOutput

    model = load_source_model(context.config.source_model, context.config.backbone, context.device)
    source = model.card.get("meta", {}).get("source", "an unnamed set")
    yield Notice(f"transfer seed: source model trained on {source}", level="info")
    return SeedOutput(model=model)
