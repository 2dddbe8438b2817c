"""User models: ``path/to/file.py:factory`` or ``package.module:factory``.

The contract (also in the README): ``factory(**config)`` returns either an
:class:`edgekit.ModelSpec`, or a tuple ``(module, example_inputs)`` where ``example_inputs`` is a
tensor or a tuple of tensors with the static shapes the export should use. Inputs are then named
``input`` (``input_0``, ``input_1`` ... when there are several) and outputs ``output`` likewise.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import torch

from edgekit.errors import UserCodeError
from edgekit.models.spec import ModelSpec, run_module

_REFERENCE = re.compile(r"^(?P<target>.+?):(?P<attr>[A-Za-z_][A-Za-z0-9_]*)$")


def is_user_reference(ref: str) -> bool:
    return bool(_REFERENCE.match(ref))


def load_user_model(ref: str, **config: Any) -> ModelSpec:
    match = _REFERENCE.match(ref)
    if not match:
        raise UserCodeError(f"{ref!r} is not a model reference; use path/to/file.py:factory or package.module:factory")
    target, attr = match["target"], match["attr"]
    module = _import_target(target, ref)
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise UserCodeError(f"{ref}: {target} has no callable named {attr!r}")
    try:
        produced = factory(**config)
    except Exception as exc:  # the user's code: report it in one line, the trace under --debug
        raise UserCodeError(f"{ref}: the factory raised {type(exc).__name__}: {exc}") from exc
    return _to_spec(produced, ref, config)


def _import_target(target: str, ref: str):
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target)
        if not path.is_file():
            raise UserCodeError(f"{ref}: no such file {path}")
        name = f"edgekit_user_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise UserCodeError(f"{ref}: {path} cannot be imported as Python")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise UserCodeError(f"{ref}: importing {path} raised {type(exc).__name__}: {exc}") from exc
        return module
    try:
        return importlib.import_module(target)
    except Exception as exc:
        raise UserCodeError(f"{ref}: cannot import {target!r} ({type(exc).__name__}: {exc})") from exc


def _to_spec(produced: Any, ref: str, config: dict[str, Any]) -> ModelSpec:
    if isinstance(produced, ModelSpec):
        produced.module.eval()
        return produced
    if not (isinstance(produced, tuple) and len(produced) == 2 and isinstance(produced[0], torch.nn.Module)):
        raise UserCodeError(
            f"{ref}: the factory returned {type(produced).__name__}; it must return an edgekit.ModelSpec "
            "or a tuple (torch.nn.Module, example_inputs)"
        )
    module, example = produced
    inputs = (example,) if isinstance(example, torch.Tensor) else tuple(example)
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise UserCodeError(f"{ref}: example_inputs must be a tensor or a tuple of tensors")
    module.eval()
    try:
        outputs = run_module(module, inputs)
    except Exception as exc:
        raise UserCodeError(f"{ref}: the module failed on its example inputs: {type(exc).__name__}: {exc}") from exc
    return ModelSpec(
        name=ref.rsplit(":", 1)[1],
        family="user",
        module=module,
        example_inputs=inputs,
        input_names=_names("input", len(inputs)),
        output_names=_names("output", len(outputs)),
        config=dict(config),
        task="classification" if len(outputs) == 1 and outputs[0].ndim == 2 else "generic",
    )


def _names(stem: str, count: int) -> tuple[str, ...]:
    return (stem,) if count == 1 else tuple(f"{stem}_{i}" for i in range(count))
