"""`edgekit serve` processes for the serving tests, the tritonclient environment and the split plan's workers.

The servers and workers are session-scoped: every serving test module calls the same ones, and each test
leaves them as it found them (bad requests included: that they go on serving is what those tests check).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edgekit.serving.local import LocalServer, start_local_server
from tests.helpers.triton_env import triton_python  # noqa: F401  (a fixture)
from tests.splitter.conftest import WorkerPool, addresses, fleet, worker_factory  # noqa: F401  (fixtures)

MAX_REQUEST_MB = 1  # small, so the oversize test sends a small body


@pytest.fixture(scope="session")
def bundle_path(bundles):
    return bundles.path("vit_tiny", "onnx")


@pytest.fixture(scope="session")
def bundle_server(bundle_path, tmp_path_factory) -> Iterator[LocalServer]:
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with start_local_server(bundle_path, "--max-request-mb", str(MAX_REQUEST_MB), log_file=log) as server:
        yield server


@pytest.fixture(scope="session")
def plan_workers(split_plan, tmp_path_factory):
    """One worker per device of the plan, shards deployed by the first server that needs them."""
    pool = WorkerPool(tmp_path_factory.mktemp("serve-workers"))
    yield {d.name: pool.start(d.name) for d in split_plan.devices}
    pool.stop_all()


@pytest.fixture(scope="session")
def plan_server(split_plan, plan_workers, tmp_path_factory) -> Iterator[LocalServer]:
    workers = ",".join(f"{name}={address}" for name, address in addresses(plan_workers).items())
    log = tmp_path_factory.mktemp("serve-plan") / "serve.log"
    with start_local_server(split_plan.root, "--workers", workers, "--timeout", "30", log_file=log) as server:
        yield server
