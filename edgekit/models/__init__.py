"""The model zoo: ``create_model(name, **config)``, ``list_models(pattern)`` and user factories.

Each family lives in its own file and registers its presets with ``@register_model``.
"""

from __future__ import annotations

from typing import Any

from edgekit.models import bart, cnn, lmuformer, seq2seq, slab, t5, tinyvit, vit  # noqa: F401  (registration)
from edgekit.models.hf_folder import is_checkpoint_folder, load_checkpoint_folder
from edgekit.models.spec import MODELS, ModelEntry, ModelSpec, register_model, run_module
from edgekit.models.user import is_user_reference, load_user_model

__all__ = [
    "MODELS",
    "ModelEntry",
    "ModelSpec",
    "create_model",
    "list_models",
    "register_model",
    "run_module",
    "resolve_model",
]


def create_model(name: str, **config: Any) -> ModelSpec:
    """Build a registered model (unknown names raise with close-match suggestions)."""
    return MODELS.get(name).build(**config)


def list_models(pattern: str = "*") -> list[str]:
    return MODELS.names(pattern)


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
