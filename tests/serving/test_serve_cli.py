"""`edgekit serve` refuses what it cannot serve with one line and exit 2, authenticates beyond what loopback
allows, and a plan's readiness follows its workers."""

from __future__ import annotations

import http.client
import json
import signal
import socket

import grpc
import numpy as np
import pytest

from edgekit.serving.grpc_codec import proto
from edgekit.serving.local import start_local_server
from tests.helpers.cli import assert_user_error, invoke
from tests.helpers.triton_env import run_client

TOKEN = "serving-token-for-tests-0123456789"


def test_bad_ports_and_paths_are_one_line_errors(bundle_path, tmp_path):
    assert_user_error(invoke("serve", str(bundle_path), "--port", "70000"), "--port 70000 is not a TCP port")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert_user_error(invoke("serve", str(bundle_path), "--http-port", port), f"port {port}", "in use")
    assert_user_error(invoke("serve", str(tmp_path)), "neither a bundle", "nor a split plan")
    assert_user_error(invoke("serve", str(tmp_path / "missing")), "is not a directory")


def test_beyond_loopback_it_authenticates_or_refuses(bundle_path, tmp_path):
    assert_user_error(invoke("serve", str(bundle_path), "--host", "0.0.0.0"), "without authentication")
    token = tmp_path / "token"
    token.write_text(TOKEN)
    assert_user_error(invoke("serve", str(bundle_path), "--host", "0.0.0.0", "--token-file", str(token)),
                      "needs --tls as well")  # fmt: skip


def _get(server, path, headers=None):
    conn = http.client.HTTPConnection(server.host, server.http_port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


@pytest.mark.workers
def test_a_token_is_required_except_for_health(bundle_path, tmp_path, triton_python):
    token = tmp_path / "token"
    token.write_text(TOKEN)
    with start_local_server(bundle_path, "--token-file", str(token)) as server:
        path = f"/v2/models/{server.model}"
        assert _get(server, "/v2/health/live")[0] == 200
        assert _get(server, path) == (401, {"error": "this server requires Authorization: Bearer"})
        assert _get(server, path, {"Authorization": "Bearer wrong-token-of-enough-length"})[0] == 401
        assert _get(server, path, {"Authorization": f"Bearer {TOKEN}"})[0] == 200

        pb, pb_grpc = proto()
        with grpc.insecure_channel(server.grpc_address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelMetadata(pb.ModelMetadataRequest(name=server.model), timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED

        np.save(tmp_path / "x.npy", np.zeros((1, 3, 32, 32), np.float32))
        for protocol, address in (("http", server.http_address), ("grpc", server.grpc_address)):
            done = run_client(triton_python, protocol, address, server.model, tmp_path / "x.npy",
                              tmp_path / f"{protocol}.npz", "--token", TOKEN)  # fmt: skip
            assert done.returncode == 0, done.stderr


@pytest.mark.workers
def test_a_plans_readiness_follows_its_workers(split_plan, plan_workers, worker_factory, tmp_path):
    from tests.splitter.conftest import addresses

    # the victim is a fresh worker, so its shard is deployed when the server starts: ONNX loads fastest
    victim_device = next(s.device for s in split_plan.shards if s.format == "onnx")
    victim = worker_factory(victim_device)
    workers = {**addresses(plan_workers), victim_device: victim.address}
    spec = ",".join(f"{k}={v}" for k, v in workers.items())
    with start_local_server(split_plan.root, "--workers", spec, "--timeout", "10") as server:
        ready = f"/v2/models/{server.model}/ready"
        assert _get(server, "/v2/health/ready")[0] == 200
        assert _get(server, ready)[0] == 200
        victim.stop(signal.SIGKILL)
        assert _get(server, "/v2/health/ready") == (503, {"ready": False})
        assert _get(server, ready)[0] == 503
        pb, pb_grpc = proto()
        with grpc.insecure_channel(server.grpc_address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            assert not stub.ModelReady(pb.ModelReadyRequest(name=server.model), timeout=30).ready
            request = pb.ModelInferRequest(model_name=server.model)
            request.inputs.add(name=split_plan.input["name"], datatype="FP32", shape=split_plan.input["shape"])
            request.raw_input_contents.append(np.zeros(split_plan.input["shape"], np.float32).tobytes())
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelInfer(request, timeout=30)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert victim_device in caught.value.details()


@pytest.mark.workers
def test_with_tls_both_listeners_require_a_fleet_certificate(bundle_path, fleet):
    import ssl

    from edgekit.fleet.ca import load_identity

    device = next(k for k in fleet if k.startswith("dev"))  # the server's identity: a fleet member's cert
    with start_local_server(bundle_path, "--tls", str(fleet[device])) as server:
        client = load_identity(fleet["coordinator"])
        context = ssl.create_default_context(cadata=client.ca_pem.decode())
        context.load_cert_chain(fleet["coordinator"] / "cert.pem", fleet["coordinator"] / "key.pem")
        # the certificate names the device, not the address: the name is checked as a coordinator checks it
        assert _tls_get(server, context, device, f"/v2/models/{server.model}").startswith(b"HTTP/1.1 200")
        bare = ssl.create_default_context(cadata=client.ca_pem.decode())  # no client certificate
        with pytest.raises((ssl.SSLError, ConnectionError)):
            if not _tls_get(server, bare, device, "/v2/health/live"):  # TLS 1.3: refused on the first read
                raise ConnectionError("closed without an answer")

        pb, pb_grpc = proto()
        credentials = grpc.ssl_channel_credentials(client.ca_pem, client.key_pem, client.cert_pem)
        with grpc.secure_channel(server.grpc_address, credentials,
                                 options=[("grpc.ssl_target_name_override", device)]) as channel:  # fmt: skip
            meta = pb_grpc.GRPCInferenceServiceStub(channel).ModelMetadata(
                pb.ModelMetadataRequest(name=server.model), timeout=30)  # fmt: skip
            assert meta.inputs[0].datatype == "FP32"
        with grpc.insecure_channel(server.grpc_address) as channel:
            with pytest.raises(grpc.RpcError) as caught:
                pb_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(), timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def _tls_get(server, context, name: str, path: str) -> bytes:
    with context.wrap_socket(socket.create_connection((server.host, server.http_port), timeout=30),
                             server_hostname=name) as sock:  # fmt: skip
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        return sock.recv(64)
