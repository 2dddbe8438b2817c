"""From a model reference to a ready ModelSpec: a registered name, a user factory, a Hugging Face checkpoint
folder or a spec as given, with a weights file's tensors (and recorded config) loaded."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgekit.models.hf_folder import is_checkpoint_folder, load_checkpoint_folder
from edgekit.models.spec import MODELS, ModelSpec, create_model
from edgekit.models.user import is_user_reference, load_user_model
from edgekit.training import load_state, read_weights

log = logging.getLogger(__name__)


def resolve_model(ref: str | ModelSpec, **config: Any) -> ModelSpec:
    """A ModelSpec from a registered name, a ``file.py:factory`` / ``module:factory`` reference, a Hugging Face
    checkpoint folder (config.json + safetensors, weights loaded), or as given."""
    if isinstance(ref, ModelSpec):
        return ref
    if ref not in MODELS.names() and is_checkpoint_folder(ref):  # a registered name wins over a folder of that name
        return load_checkpoint_folder(ref, **config)
    if is_user_reference(ref):
        return load_user_model(ref, **config)
    return create_model(ref, **config)


def prepare_model(model: str | ModelSpec, weights: str | Path | None = None, **config: Any) -> ModelSpec:
    """Build the model and load weights; a weights file's recorded config is the starting config.

    ``weights`` may also be a Hugging Face checkpoint folder (config.json + safetensors): its config builds
    the model of its ``model_type``, as when the folder itself is given as ``model``.
    """
    if weights is not None and is_checkpoint_folder(weights):
        spec = load_checkpoint_folder(weights, **config)
        if isinstance(model, str) and model != spec.name:
            log.warning("%s is a %s checkpoint; building %s, not %s", weights, spec.name, spec.name, model)
        return spec
    if weights is None:
        return resolve_model(model, **config)
    state, meta = read_weights(weights)
    if meta.get("model") and isinstance(model, str) and meta["model"] != model:
        log.warning("weights %s were saved for %s, loading them into %s", weights, meta["model"], model)
    spec = resolve_model(model, **{**meta.get("config", {}), **config})
    load_state(spec, state, str(weights))
    trained_on = meta.get("extra", {}).get("dataset")
    if spec.dataset is None and trained_on:
        # weights trained on a built-in dataset make it the model's own (calibration, INT8 accuracy)
        spec = replace(spec, dataset=trained_on)
    return spec
