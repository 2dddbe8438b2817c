"""Training and evaluation on the built-in datasets, and the weights file format.

A weights file is ``torch.save({"edgekit_weights": 1, "model": name, "config": {...},
"state_dict": {...}})`` and is read back with ``weights_only=True`` (no pickled code runs).
A bare state dict, as most checkpoints are, loads too.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from edgekit.data import Split, load_dataset
from edgekit.errors import BundleError, EdgekitError
from edgekit.models.spec import ModelSpec
from edgekit.types import jsonable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    epochs: int
    train_loss: float
    test_accuracy: float
    train_seconds: float
    history: tuple[tuple[int, float, float], ...]  # (epoch, mean train loss, test accuracy)
    # Intra-op threads while training: reductions split differently across thread counts (and CPUs pick
    # different kernels), so bit-identical weights are promised only for the same count on the same CPU.
    threads: int = 1


def train_classifier(
    spec: ModelSpec,
    dataset: str = "digits",
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 3e-3,
    weight_decay: float = 0.05,
    seed: int = 0,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> TrainResult:
    """Train ``spec.module`` in place with AdamW and a cosine schedule; returns held-out accuracy."""
    split = load_dataset(dataset, tuple(spec.example_inputs[0].shape))
    _check_classes(spec, split)
    torch.manual_seed(seed)
    module = spec.module
    x_train, y_train = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train)
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=max(1, epochs * steps_per_epoch), pct_start=0.1
    )
    generator = torch.Generator().manual_seed(seed)
    # Models with a training-time schedule (SLAB's PRepBN) expose on_train_step(step, total_steps).
    step_hook = getattr(module, "on_train_step", None)
    total_steps, step = epochs * steps_per_epoch, 0
    history: list[tuple[int, float, float]] = []
    start = time.perf_counter()
    loss_value = float("nan")
    for epoch in range(1, epochs + 1):
        module.train()
        order = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            if step_hook:
                step_hook(step, total_steps)
            step += 1
            loss = F.cross_entropy(module(x_train[idx]), y_train[idx], label_smoothing=0.05)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(idx)
        loss_value = total / len(order)
        accuracy = evaluate_module(spec, split)
        history.append((epoch, loss_value, accuracy))
        log.info("epoch %d/%d: loss %.4f, held-out accuracy %.2f%%", epoch, epochs, loss_value, 100 * accuracy)
        if on_epoch:
            on_epoch(epoch, loss_value, accuracy)
    module.eval()
    accuracy = history[-1][2] if history else float("nan")
    return TrainResult(
        epochs, loss_value, accuracy, time.perf_counter() - start, tuple(history), torch.get_num_threads()
    )


def evaluate_module(spec: ModelSpec, split: Split, batch_size: int = 256) -> float:
    spec.module.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(split.x_test), batch_size):
            logits = spec.module(torch.from_numpy(split.x_test[i : i + batch_size]))
            correct += int((logits.argmax(-1).numpy() == split.y_test[i : i + batch_size]).sum())
    return correct / len(split.x_test)


def _check_classes(spec: ModelSpec, split: Split) -> None:
    outputs = spec.module(spec.example_inputs[0])
    if outputs.shape[-1] != split.num_classes:
        raise EdgekitError(
            f"{spec.name} has {outputs.shape[-1]} outputs but the dataset has {split.num_classes} classes; "
            f"build it with --set num_classes={split.num_classes}"
        )


def save_weights(path: str | Path, spec: ModelSpec, extra: dict[str, Any] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "edgekit_weights": 1,
        "model": spec.name,
        "config": jsonable(spec.config),
        "state_dict": spec.module.state_dict(),
        "extra": jsonable(extra or {}),
    }
    torch.save(payload, path)
    return path


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, metadata) from an edgekit weights file or a bare/wrapped state dict."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"weights file {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses pickled code: say so rather than dump the unpickler error
        raise BundleError(
            f"cannot read weights {path}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        ) from None
    if isinstance(payload, dict) and "edgekit_weights" in payload:
        return payload["state_dict"], {
            "model": payload.get("model"),
            "config": payload.get("config") or {},
            "extra": payload.get("extra") or {},
        }
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        return payload["state_dict"], {}
    if isinstance(payload, dict) and isinstance(payload.get("model"), dict):
        return payload["model"], {}
    if isinstance(payload, dict) and all(isinstance(v, torch.Tensor) for v in payload.values()):
        return payload, {}
    raise BundleError(f"{path} holds no state dict (expected a dict of tensors, or one under 'state_dict' or 'model')")


def load_state(spec: ModelSpec, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load weights strictly, with one line that names the first missing, unexpected or mis-shaped key.

    A model that knows other key layouts (TinyViT: timm and Cream) maps them first through its
    ``remap_state_dict(state) -> (state, our key -> key in the file)``; errors name both keys.
    """
    origin: dict[str, str] = {}
    remap = getattr(spec.module, "remap_state_dict", None)
    if callable(remap):
        state_dict, origin = remap(state_dict)

    def named(key: str) -> str:
        return key if origin.get(key, key) == key else f"{key} (in the file: {origin[key]})"

    own = spec.module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if wrong:
        k = wrong[0]
        raise BundleError(
            f"{source}: {named(k)} has shape {tuple(state_dict[k].shape)} "
            f"but {spec.name} expects {tuple(own[k].shape)} "
            f"({len(wrong)} mismatched tensor(s)); build the model with the config the weights were trained with"
        )
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s), e.g. {missing[0]}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s), e.g. {named(unexpected[0])}")
        raise BundleError(f"{source} does not fit {spec.name}: {'; '.join(parts)}")
    spec.module.load_state_dict(state_dict)
    spec.module.eval()
