"""Runs in the tritonclient environment (not edgekit's): calls an `edgekit serve` endpoint with tritonclient.

    python triton_client.py http|grpc HOST:PORT MODEL INPUT.npy OUT.npz [--token TOKEN]

Checks health, readiness and metadata, sends the input as the model's first input and writes every output
named in the metadata to OUT.npz, plus one JSON line on stdout: the metadata as the client read it.
Exit 3 with the server's error on stderr when a call fails.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def main(argv: list[str]) -> int:
    protocol, url, model, input_file, out_file = argv[:5]
    headers = {"authorization": f"Bearer {argv[6]}"} if len(argv) > 6 and argv[5] == "--token" else None
    if protocol == "http":
        import tritonclient.http as client_module
    else:
        import tritonclient.grpc as client_module
    from tritonclient.utils import InferenceServerException

    client = client_module.InferenceServerClient(url)
    try:
        assert client.is_server_live(headers=headers), "server not live"
        assert client.is_server_ready(headers=headers), "server not ready"
        meta = client.get_model_metadata(model, headers=headers)  # an unknown model: the server's error, exit 3
        assert client.is_model_ready(model, headers=headers), "model not ready"
        if protocol == "grpc":
            meta = {"name": meta.name, "platform": meta.platform, "versions": list(meta.versions),
                    "inputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in meta.inputs],
                    "outputs": [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
                                for t in meta.outputs]}  # fmt: skip
        x = np.load(input_file)
        spec = meta["inputs"][0]
        tensor = client_module.InferInput(spec["name"], list(x.shape), spec["datatype"])
        tensor.set_data_from_numpy(x)
        outputs = [client_module.InferRequestedOutput(o["name"]) for o in meta["outputs"]]
        result = client.infer(model, [tensor], outputs=outputs, headers=headers, request_id="req-1")
        arrays = {o["name"]: result.as_numpy(o["name"]) for o in meta["outputs"]}
        response = result.get_response()
        response_id = response["id"] if protocol == "http" else response.id
    except InferenceServerException as exc:
        print(exc.message(), file=sys.stderr)
        return 3
    np.savez(out_file, **arrays)
    print(json.dumps({"metadata": meta, "id": response_id}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
