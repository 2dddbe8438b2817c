"""Mutual TLS and bearer tokens between a coordinator and real worker processes on loopback.

Every refusal must reach the person as one line naming the worker and the reason. The same cases across
network namespaces (separate hosts) are in test_fleet_netns.py.
"""

from __future__ import annotations

import datetime as dt
import subprocess

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edgekit.data import load_dataset
from edgekit.errors import ConfigError, WorkerError
from edgekit.fleet.auth import ClientAuth
from edgekit.fleet.ca import fingerprint, issue, load_identity
from edgekit.splitter import SplitCoordinator
from edgekit.splitter.wire import encode, proto
from tests.helpers.workers import local_predictions as _local_predictions
from tests.splitter.conftest import EDGEKIT, WorkerPool, addresses

pytestmark = pytest.mark.workers


@pytest.fixture(scope="module")
def tls_workers(split_plan, fleet, tmp_path_factory):
    """One mutual-TLS worker per plan device, its shard deployed by the fleet's coordinator."""
    pool = WorkerPool(tmp_path_factory.mktemp("tls-workers"))
    workers = {d.name: pool.start(d.name, "--tls", str(fleet[d.name])) for d in split_plan.devices}
    auth = ClientAuth.from_options(str(fleet["coordinator"]), None)
    with SplitCoordinator(split_plan, addresses(workers), timeout=60, auth=auth) as coordinator:
        coordinator.deploy()
    yield workers
    pool.stop_all()


def _refusal(plan, workers: dict[str, str], auth: ClientAuth) -> str:
    with pytest.raises(WorkerError) as info:
        with SplitCoordinator(plan, workers, timeout=5, auth=auth) as coordinator:
            coordinator.health()
    return str(info.value)


def test_the_fleet_ca_issues_p256_certificates_naming_the_device(fleet, tmp_path):
    ca = x509.load_pem_x509_certificate((fleet["fleet"] / "ca.pem").read_bytes())
    cert = x509.load_pem_x509_certificate((fleet["dev0"] / "cert.pem").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey) and cert.public_key().curve.name == "secp256r1"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["dev0"]
    assert (fleet["dev0"] / "key.pem").stat().st_mode & 0o077 == 0  # the key is readable by its owner only
    key = serialization.load_pem_private_key((fleet["dev0"] / "key.pem").read_bytes(), None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    assert load_identity(fleet["fleet"]).name == "coordinator"  # a fleet directory means its coordinator
    assert fingerprint(load_identity(fleet["dev0"]).cert_pem) != fingerprint(load_identity(fleet["dev1"]).cert_pem)
    with pytest.raises(ConfigError, match="DNS label"):
        issue(fleet["fleet"], "../evil")
    with pytest.raises(ConfigError, match="not a fleet directory"):
        issue(tmp_path, "dev9")


def test_split_inference_over_mutual_tls_matches_local_fusion(split_plan, tls_workers, fleet):
    x = load_dataset("digits", tuple(split_plan.input["shape"])).x_test[:5]
    auth = ClientAuth.from_options(str(fleet["coordinator"]), None)
    with SplitCoordinator(split_plan, addresses(tls_workers), timeout=5, auth=auth) as coordinator:
        assert coordinator.deploy() == []  # the fixture deployed over the same mTLS channels
        logits = np.concatenate([coordinator.infer(x[i : i + 1]).logits for i in range(len(x))])
    np.testing.assert_allclose(logits, _local_predictions(split_plan, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "identity, reason",
    [
        ("ca-only", "requires a client certificate and this side presents none"),
        ("other", "not signed by this fleet's CA"),
        ("expired", "certificate (old-coordinator) expired on"),
        (None, "requires TLS and this side connected in plaintext"),
    ],
)
def test_mtls_refusals_name_the_worker_and_the_reason(split_plan, tls_workers, fleet, identity, reason):
    auth = ClientAuth.from_options(str(fleet[identity]) if identity else None, None)
    message = _refusal(split_plan, addresses(tls_workers), auth)
    assert message.startswith(f"worker dev0 ({tls_workers['dev0'].address}): ") and reason in message, message
    assert "\n" not in message and "BEGIN" not in message


def test_the_worker_itself_refuses_an_expired_or_foreign_client_certificate(tls_workers, fleet):
    """Not only this side's own check: the worker's TLS handshake refuses them."""
    ours = load_identity(fleet["coordinator"])
    for name in ("expired", "other"):
        them = load_identity(fleet[name])
        credentials = grpc.ssl_channel_credentials(ours.ca_pem, them.key_pem, them.cert_pem)
        options = [("grpc.ssl_target_name_override", "dev0")]
        with grpc.secure_channel(tls_workers["dev0"].address, credentials, options=options) as channel:
            with pytest.raises(grpc.RpcError) as info:
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE, name


def test_a_worker_presenting_another_devices_certificate_is_refused(split_plan, tls_workers, fleet):
    swapped = {**addresses(tls_workers), "dev0": tls_workers["dev1"].address}
    message = _refusal(split_plan, swapped, ClientAuth.from_options(str(fleet["coordinator"]), None))
    assert "worker dev0" in message and "not issued to dev0" in message, message


def test_a_tls_client_against_a_plaintext_worker(split_plan, worker_factory, tls_workers, fleet):
    plain = worker_factory("dev0")
    workers = {**addresses(tls_workers), "dev0": plain.address}
    message = _refusal(split_plan, workers, ClientAuth.from_options(str(fleet["coordinator"]), None))
    assert f"worker dev0 ({plain.address})" in message and "does not speak TLS" in message, message


def test_cli_prints_one_line_and_exits_2_for_a_foreign_certificate(split_plan, tls_workers, fleet):
    spec = ",".join(f"{n}={w.address}" for n, w in tls_workers.items())
    proc = subprocess.run([EDGEKIT, "infer-split", str(split_plan.root), "--workers", spec, "--eval", "digits",
                           "--tls", str(fleet["other"])], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: worker dev0 (") and "fleet's CA" in lines[0], proc.stderr


def test_bearer_token_guards_deploy_and_infer_but_not_health(split_plan, worker_factory, fleet):
    pb, pb_grpc = proto()
    worker = worker_factory("dev0", "--token-file", str(fleet["token"]))
    with grpc.insecure_channel(worker.address) as channel:  # the standard health client needs no token
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status in (health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING)
        request = pb.InferRequest(shard="x", inputs=[encode("image", np.zeros((1, 1, 8, 8), np.float32))])
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.ShardWorkerStub(channel).Infer(request, timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    shard = next(s for s in split_plan.shards if s.device == "dev0")
    for token, reason in ((None, "requires a bearer token"), ("wrong-token", "wrong bearer token")):
        auth = ClientAuth.from_options(None, str(fleet[token]) if token else None)
        with SplitCoordinator(split_plan, {"dev0": worker.address, "dev1": "127.0.0.1:1", "dev2": "127.0.0.1:1"},
                              timeout=5, auth=auth) as coordinator:  # fmt: skip
            with pytest.raises(WorkerError, match=rf"worker dev0 \({worker.address}\): refused the call: .*{reason}"):
                coordinator.infer(np.zeros((1, 1, 8, 8), np.float32))
    right = ClientAuth.from_options(None, str(fleet["token"]))
    with right.channel(worker.address, "dev0", []) as channel:
        stub = pb_grpc.ShardWorkerStub(channel)
        files = sorted(p for p in split_plan.shard_dir(shard).iterdir())
        chunks = [
            pb.DeployChunk(shard=shard.name, digest=shard.digest, path=p.name, data=p.read_bytes()) for p in files
        ]
        assert stub.Deploy(iter(chunks), timeout=60).shard.digest == shard.digest
        request = pb.InferRequest(shard=shard.name, inputs=[encode("image", np.zeros((1, 1, 8, 8), np.float32))])
        assert tuple(stub.Infer(request, timeout=5).outputs[0].shape) == (1, shard.feature_dim)
    assert "s3cret" not in repr(right) and "PRIVATE" not in repr(ClientAuth.from_options(str(fleet["dev0"]), None))


def test_expired_certificate_is_caught_before_connecting(split_plan, fleet, tmp_path):
    old = issue(fleet["fleet"], "stale", days=1, not_before=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3))
    with pytest.raises(WorkerError, match=r"worker dev0 \(127\.0\.0\.1:9\): cannot authenticate: .*expired"):
        SplitCoordinator(split_plan, {d.name: "127.0.0.1:9" for d in split_plan.devices},
                         auth=ClientAuth.from_options(str(old), None))  # fmt: skip
