"""Starting a local worker process: the wait for its ready line is bounded even when the process says nothing."""

from __future__ import annotations

import time

import pytest

from edgekit.errors import WorkerError
from edgekit.splitter.local import start_local_worker


def test_a_silent_live_process_fails_at_the_deadline(tmp_path):
    # `sh -c 'sleep 30'` stands in for a worker that is alive but never prints its ready line.
    start = time.monotonic()
    with pytest.raises(WorkerError, match=r"no ready line within 1\.5 s"):
        start_local_worker("silent", tmp_path, prefix=("sh", "-c", "sleep 30"), ready_seconds=1.5)
    assert time.monotonic() - start < 10


def test_a_process_that_exits_names_its_last_line(tmp_path):
    with pytest.raises(WorkerError, match="did not start \\(bad flag\\)"):
        start_local_worker("dies", tmp_path, prefix=("sh", "-c", "echo 'bad flag'; exit 3"), ready_seconds=20)
