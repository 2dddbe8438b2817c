"""One call on a deployed shard, shared by a worker's Infer and a pipeline stage's Relay: the request's tensors
decoded and checked, the runtime run under the shard's lock and timed, errors as the call's gRPC status."""

from __future__ import annotations

import time
from typing import Any

from edgekit.errors import EdgekitError, InputError
from edgekit.splitter.wire import decode


def run_shard(shard: Any, tensors: Any, context: Any, rename_single: bool = False) -> tuple[dict, float]:
    """A shard's runtime on the request's tensors: (outputs, compute ms); bad input aborts the call with
    INVALID_ARGUMENT, a runtime failure with INTERNAL. ``rename_single``: one tensor feeds a one-input graph
    whatever its name (a pipeline stage gets the previous stage's output)."""
    import grpc

    try:
        inputs = {t.name: decode(t) for t in tensors}
        if len(inputs) != len(tensors):
            raise InputError("two inputs share a name")
        specs = shard.runtime.input_specs
        if rename_single and len(inputs) == 1 and len(specs) == 1:
            inputs = {specs[0].name: next(iter(inputs.values()))}
        with shard.lock:  # native runtimes are not all safe to call from several threads
            start = time.perf_counter()
            outputs = shard.runtime.run(inputs)
            compute_ms = (time.perf_counter() - start) * 1e3
    except InputError as exc:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    except EdgekitError as exc:
        context.abort(grpc.StatusCode.INTERNAL, str(exc))
    return outputs, compute_ms
