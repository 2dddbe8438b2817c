"""What a model factory returns, and the registry that names the factories."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from edgekit.errors import ConfigError, UnsupportedOptionError
from edgekit.registry import Registry
from edgekit.types import TensorSpec


class _GraphIO:
    """Input and output specs of anything with a module, example inputs and I/O names (a model, a graph)."""

    module: torch.nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]

    @property
    def input_specs(self) -> tuple[TensorSpec, ...]:
        return tuple(
            TensorSpec(n, tuple(t.shape), _numpy_dtype_name(t.dtype))
            for n, t in zip(self.input_names, self.example_inputs, strict=True)
        )

    def output_specs(self) -> tuple[TensorSpec, ...]:
        """Traced by running the module once on its example inputs."""
        outputs = run_module(self.module, self.example_inputs)
        return tuple(
            TensorSpec(n, tuple(t.shape), _numpy_dtype_name(t.dtype))
            for n, t in zip(self.output_names, outputs, strict=True)
        )

    def flops(self) -> int:
        """Floating-point operations of one forward pass on the example inputs (a multiply-add counts 2)."""
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter, torch.no_grad():
            self.module(*self.example_inputs)
        return int(counter.get_total_flops())


@dataclass(frozen=True)
class SubGraph(_GraphIO):
    """One of several graphs a model exports together (an encoder, a decoder step ...).

    ``sample_inputs(count, seed)`` gives ``count`` input sets of the kind the graph meets when it runs (a
    decoder step's integer position and the cache earlier steps wrote, not N(0, 1) floats): export
    verification uses them after the example inputs. None: random inputs of the right shapes will do.
    """

    name: str
    module: torch.nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    sample_inputs: Callable[[int, int], list[dict[str, np.ndarray]]] | None = None


def with_named_inputs(base: type[torch.nn.Module], count: int) -> type[torch.nn.Module]:
    """A subclass of ``base`` whose ``forward(self, arg_0, ..., arg_{count-1})`` calls ``self.run((arg_0, ...))``.

    torch.fx (BatchNorm folding) and torch.export want one named parameter per graph input; a ``*args``
    forward would reach them as a single opaque argument.
    """
    params = ", ".join(f"arg_{i}" for i in range(count))
    source = f"def forward(self, {params}):\n    return self.run(({params}{',' if count == 1 else ''}))\n"
    namespace: dict = {}
    exec(compile(source, f"<edgekit {base.__name__} signature>", "exec"), namespace)  # noqa: S102  (our template)
    return type(f"{base.__name__}{count}", (base,), {"forward": namespace["forward"]})


@dataclass(frozen=True)
class ModelSpec(_GraphIO):
    """A model ready to export: the module in eval mode, example inputs and named I/O.

    ``config`` holds the factory arguments that built it, so a bundle or a weights file can
    rebuild the same architecture. ``dataset`` names the built-in dataset the model fits, if any.
    """

    name: str
    family: str
    module: torch.nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    config: dict[str, Any] = field(default_factory=dict)
    task: str = "classification"
    class_names: tuple[str, ...] | None = None
    dataset: str | None = None
    # Graphs exported together instead of ``module``'s forward (an encoder-decoder's encoder and decoder step).
    graphs: tuple[SubGraph, ...] = ()
    # Family-specific manifest extras (a tokenizer, a cache layout ...).
    extras: dict[str, Any] = field(default_factory=dict)
    # Files that travel in the bundle beside the graphs (a checkpoint's tokenizer): name in the bundle -> source.
    assets: dict[str, str] = field(default_factory=dict)

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


def image_classifier_spec(
    name: str, family: str, module: torch.nn.Module, config: dict[str, Any], **extra: Any
) -> ModelSpec:
    """The spec of a classifier over (1, in_chans, img_size, img_size) images with one ``logits`` output."""
    example = torch.randn(1, config["in_chans"], config["img_size"], config["img_size"])
    classes = tuple(str(i) for i in range(10)) if config["num_classes"] == 10 else None
    return ModelSpec(
        name=name, family=family, module=module, example_inputs=(example,), input_names=("image",),
        output_names=("logits",), config=dict(config), class_names=classes, **extra,
    )  # fmt: skip


def run_module(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Call a module and return its outputs as a flat tuple (a single tensor becomes a 1-tuple)."""
    with torch.no_grad():
        out = module(*inputs)
    if isinstance(out, torch.Tensor):
        return (out,)
    if isinstance(out, dict):
        return tuple(out.values())
    return tuple(out)


def _numpy_dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    factory: Callable[..., ModelSpec]
    description: str
    # has a streaming form (``module.stream_step``): exportable with --streaming
    streams: bool = False

    def defaults(self) -> dict[str, Any]:
        return {
            p.name: p.default
            for p in inspect.signature(self.factory).parameters.values()
            if p.default is not inspect.Parameter.empty
        }

    def build(self, **overrides: Any) -> ModelSpec:
        allowed = self.defaults()
        unknown = sorted(set(overrides) - set(allowed))
        if unknown:
            raise UnsupportedOptionError(f"{self.name} option", unknown[0], sorted(allowed))
        for key, value in overrides.items():
            _check_type(self.name, key, value, allowed[key])
        config = {**allowed, **overrides}
        try:
            # Fixed seed: an untrained built-in model is the same model in every process, so a bundle
            # can be re-checked against a freshly built reference.
            with torch.random.fork_rng():
                torch.manual_seed(0)
                spec = self.factory(**config)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"cannot build {self.name} with {overrides}: {exc}") from exc
        spec.module.eval()
        return spec


def _check_type(model: str, key: str, value: Any, default: Any) -> None:
    if default is None or isinstance(value, type(default)):
        return
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return
    if isinstance(default, (tuple, list)) and isinstance(value, (tuple, list)):
        return
    raise ConfigError(f"{model} option {key} takes a {type(default).__name__} (default {default!r}), got {value!r}")


MODELS: Registry[ModelEntry] = Registry("model")


def create_model(name: str, **config: Any) -> ModelSpec:
    """Build a registered model (unknown names raise with close-match suggestions)."""
    return MODELS.get(name).build(**config)


def list_models(pattern: str = "*") -> list[str]:
    return MODELS.names(pattern)


def register_model(name: str, family: str, description: str = "", streams: bool = False) -> Callable:
    """Register ``factory(**config) -> ModelSpec`` under ``name``; keyword defaults are the config."""

    def wrap(factory: Callable[..., ModelSpec]) -> Callable[..., ModelSpec]:
        doc = description or (inspect.getdoc(factory) or "").split("\n")[0]
        MODELS.add(name, ModelEntry(name, family, factory, doc, streams))
        return factory

    return wrap


def register_config_model(
    name: str, family: str, base: Any, build: Callable[[Any], ModelSpec], description: str
) -> None:
    """Register a model whose options are the fields of the frozen config dataclass ``base`` (their defaults):
    the factory builds ``build(replace(base, **options))``."""
    import dataclasses

    def factory(**options: Any) -> ModelSpec:
        return build(dataclasses.replace(base, **options))

    factory.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=getattr(base, f.name))
            for f in dataclasses.fields(base)
        ]
    )
    register_model(name, family=family, description=description)(factory)
