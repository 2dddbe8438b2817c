"""`edgekit serve` processes for the serving tests, the tritonclient environment and the split plan's workers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edgekit.serving.local import LocalServer, start_local_server
from tests.helpers.triton_env import triton_python  # noqa: F401  (a fixture)
from tests.splitter.conftest import addresses, fleet, shared_workers, worker_factory  # noqa: F401  (fixtures)

MAX_REQUEST_MB = 1  # small, so the oversize test sends a small body


@pytest.fixture(scope="module")
def bundle_path(bundles):
    return bundles.path("vit_tiny", "onnx")


@pytest.fixture(scope="module")
def bundle_server(bundle_path, tmp_path_factory) -> Iterator[LocalServer]:
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with start_local_server(bundle_path, "--max-request-mb", str(MAX_REQUEST_MB), log_file=log) as server:
        yield server


@pytest.fixture(scope="module")
def plan_server(split_plan, shared_workers, tmp_path_factory) -> Iterator[LocalServer]:  # noqa: F811
    workers = ",".join(f"{name}={address}" for name, address in addresses(shared_workers).items())
    log = tmp_path_factory.mktemp("serve-plan") / "serve.log"
    with start_local_server(split_plan.root, "--workers", workers, "--timeout", "30", log_file=log) as server:
        yield server
