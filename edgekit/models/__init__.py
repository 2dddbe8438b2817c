"""The model zoo: ``create_model(name, **config)``, ``list_models(pattern)``, user factories, and
``prepare_model`` (a reference plus weights -> a ready ModelSpec).

Each family lives in its own file and registers its presets with ``@register_model``.
"""

from __future__ import annotations

from edgekit.models import bart, cnn, lmuformer, seq2seq, slab, t5, tinyvit, vit  # noqa: F401  (registration)
from edgekit.models.prepare import prepare_model, resolve_model
from edgekit.models.spec import MODELS, ModelEntry, ModelSpec, create_model, list_models, register_model, run_module

__all__ = [
    "MODELS",
    "ModelEntry",
    "ModelSpec",
    "create_model",
    "list_models",
    "prepare_model",
    "register_model",
    "run_module",
    "resolve_model",
]
