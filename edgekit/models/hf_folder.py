"""Bring your own checkpoint: a local Hugging Face folder (``config.json`` + safetensors weights, and
optionally ``tokenizer.json`` or ``spiece.model``) built as the edgekit model of its ``model_type``.

Only safetensors are read (a ``pytorch_model.bin`` is a pickle); nothing is downloaded. The folder's
tokenizer file travels into the bundle, so ``edgekit generate`` tokenizes exactly as the checkpoint does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from edgekit.errors import BundleError, UnsupportedOptionError
from edgekit.models.bart import BartConfig
from edgekit.models.spec import ModelSpec, create_model
from edgekit.models.t5 import T5Config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointFamily:
    model: str  # the registered edgekit model that takes these weights
    config_from_hf: Callable[[dict[str, Any]], dict[str, Any]]  # config.json -> the model's config values


# transformers' model_type -> the edgekit model built for it
HF_FAMILIES = {
    "t5": CheckpointFamily("t5", T5Config.from_hf),
    "mt5": CheckpointFamily("t5", T5Config.from_hf),  # T5 v1.1's layout, a larger vocabulary
    "bart": CheckpointFamily("bart", BartConfig.from_hf),
}

# tokenizer files in the order they are preferred, with the manifest kind that reads them back
TOKENIZER_FILES = (("tokenizer.json", "tokenizers-json"), ("spiece.model", "sentencepiece"))


def is_checkpoint_folder(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / "config.json").is_file()


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    model_type: str
    family: CheckpointFamily
    config: dict[str, Any]  # the edgekit model's config values
    tokenizer_file: Path | None
    tokenizer_kind: str | None


def read_checkpoint(path: str | Path) -> Checkpoint:
    root = Path(path)
    try:
        hf_config = json.loads((root / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot read {root / 'config.json'}: {exc}") from None
    model_type = hf_config.get("model_type")
    family = HF_FAMILIES.get(model_type)
    if family is None:
        raise UnsupportedOptionError(f"model_type of {root}", model_type, sorted(HF_FAMILIES))
    try:
        config = family.config_from_hf(hf_config)
    except KeyError as exc:
        raise BundleError(f"{root / 'config.json'} lacks {exc.args[0]!r}, which a {model_type} config has") from None
    found = next(((root / name, kind) for name, kind in TOKENIZER_FILES if (root / name).is_file()), (None, None))
    return Checkpoint(root, model_type, family, config, *found)


def read_safetensors(root: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's ``model.safetensors`` or of the shards its index names."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    index = root / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError) as exc:
            raise BundleError(f"cannot read {index}: {exc}") from None
    elif (root / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    elif any(root.glob("*.bin")):
        raise BundleError(
            f"{root} holds PyTorch .bin weights (pickles, which edgekit does not load); save the model with "
            "safetensors (save_pretrained(..., safe_serialization=True)) and try again"
        )
    else:
        raise BundleError(f"{root} has no model.safetensors")
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        if Path(shard).is_absolute() or ".." in Path(shard).parts:
            raise BundleError(f"{index} names a shard outside the folder: {shard}")
        try:
            state.update(load_file(str(root / shard)))
        except (OSError, SafetensorError) as exc:
            raise BundleError(f"cannot read weights {root / shard}: {str(exc).splitlines()[0][:200]}") from None
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_checkpoint_folder(path: str | Path, **overrides: Any) -> ModelSpec:
    """The folder's model with its weights loaded; ``overrides`` set export sizes such as ``max_source``."""
    from edgekit.training import load_state

    ckpt = read_checkpoint(path)
    spec = create_model(ckpt.family.model, **{**ckpt.config, **overrides})
    load_state(spec, read_safetensors(ckpt.path), str(ckpt.path))
    spec.module.eval()
    log.info("loaded %s checkpoint %s (%d parameters)", ckpt.model_type, ckpt.path, spec.parameters)
    return with_tokenizer(spec, ckpt)


def with_tokenizer(spec: ModelSpec, ckpt: Checkpoint) -> ModelSpec:
    """The spec with the checkpoint's tokenizer file as a bundle asset, named in ``extras.seq2seq``."""
    layout = dict(spec.extras["seq2seq"])
    ids = {k: layout["tokenizer"][k] for k in ("pad_id", "bos_id", "eos_id", "vocab_size")}
    assets = dict(spec.assets)
    if ckpt.tokenizer_file is None:
        log.warning("%s has no tokenizer.json or spiece.model: the bundle will run, but not from text", ckpt.path)
        layout["tokenizer"] = {"kind": "none", **ids}
    else:
        layout["tokenizer"] = {"kind": ckpt.tokenizer_kind, **ids, "file": ckpt.tokenizer_file.name}
        assets[ckpt.tokenizer_file.name] = str(ckpt.tokenizer_file)
    source = {"folder": ckpt.path.resolve().name, "model_type": ckpt.model_type}
    return replace(spec, extras={**spec.extras, "seq2seq": layout, "checkpoint": source}, assets=assets)
