"""The protocol's operations over the models a server holds, independent of HTTP or gRPC.

Every request is checked against the model's metadata here -- the model and version exist, each input is
given once under a known name with the model's datatype and shape, requested outputs exist -- so both
transports give the same answer to the same mistake, and a backend only sees inputs it can run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from edgekit.errors import ConfigError, InputError, UnknownNameError
from edgekit.serving.backend import ModelBackend, ModelMetadata
from edgekit.serving.datatypes import for_numpy
from edgekit.serving.tensors import InferRequest, InferResponse, OutputTensor

log = logging.getLogger(__name__)

SERVER_NAME = "edgekit"
# The optional parts of the protocol served: Triton's binary tensor data over HTTP.
EXTENSIONS = ("binary_tensor_data",)


class InferenceService:
    def __init__(self, backends: Sequence[ModelBackend]):
        self.models: dict[str, ModelBackend] = {}
        for backend in backends:
            if backend.metadata.name in self.models:
                raise ConfigError(f"two models are named {backend.metadata.name!r}; give one of them another --name")
            self.models[backend.metadata.name] = backend

    @property
    def version(self) -> str:
        from edgekit.toolchain import edgekit_version

        return edgekit_version()

    def live(self) -> bool:
        return True  # answering at all is being live

    def ready(self) -> bool:
        return all(backend.ready() for backend in self.models.values())

    def model(self, name: str, version: str = "") -> ModelBackend:
        backend = self.models.get(name)
        if backend is None:
            raise UnknownNameError("model", name, self.models)
        if version and version != backend.metadata.version:
            raise UnknownNameError(f"version of model {name!r}", version, [backend.metadata.version])
        return backend

    def model_ready(self, name: str, version: str = "") -> bool:
        return self.model(name, version).ready()

    def metadata(self, name: str, version: str = "") -> ModelMetadata:
        return self.model(name, version).metadata

    def infer(self, request: InferRequest) -> InferResponse:
        backend = self.model(request.model, request.version)
        meta = backend.metadata
        given = {}
        for tensor in request.inputs:
            if tensor.name in given:
                raise InputError(f"input {tensor.name!r} is given twice")
            given[tensor.name] = tensor
        expected = {spec.name: spec for spec in meta.inputs}
        unknown = sorted(set(given) - set(expected))
        missing = [name for name in expected if name not in given]
        if unknown or missing:
            problem = f"unknown input(s) {unknown}" if unknown else f"missing input(s) {missing}"
            raise InputError(f"{problem}; model {meta.name!r} takes {describe(meta.inputs)}")
        for name, spec in expected.items():
            tensor, wanted = given[name], for_numpy(spec.dtype).name
            if tensor.datatype != wanted:
                raise InputError(f"input {name!r}: datatype {tensor.datatype}, the model takes {wanted}")
            if tuple(tensor.array.shape) != spec.shape:
                raise InputError(f"input {name!r}: shape {list(tensor.array.shape)}, the model takes "
                                 f"{list(spec.shape)}")  # fmt: skip
        outputs = {spec.name: spec for spec in meta.outputs}
        for name in request.outputs:
            if name not in outputs:
                raise InputError(f"model {meta.name!r} has no output {name!r} (it has {', '.join(outputs)})")
        answer = backend.infer({name: tensor.array for name, tensor in given.items()})
        chosen = request.outputs or tuple(outputs)
        tensors = tuple(OutputTensor(n, for_numpy(outputs[n].dtype).name, answer.outputs[n]) for n in chosen)
        return InferResponse(meta.name, meta.version, request.id, tensors, dict(answer.parameters))

    def close(self) -> None:
        for backend in self.models.values():
            backend.close()


def describe(specs) -> str:
    return ", ".join(f"{s.name}: {for_numpy(s.dtype).name}{list(s.shape)}" for s in specs)
