"""A split plan served as one model: every request fans out to the plan's workers and the fused logits answer.

The endpoint is the coordinator (``SplitCoordinator``): it deploys the shards the workers lack when the
server starts, and each inference is one ``infer`` under the coordinator's deadline. Readiness asks every
worker for its health: ready when each shard's worker answers and holds that shard's exact bytes. With a
``report`` path, every request's record is kept (the last ``MAX_RECORDS``) and the run report -- retries, hedges,
per-worker latency, energy per worker over the server's life where a worker has a meter -- is written there
when the server closes.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from edgekit.bundle import sha256_file
from edgekit.errors import WorkerError
from edgekit.fleet.auth import ClientAuth
from edgekit.serving.backend import BackendAnswer, ModelMetadata
from edgekit.types import TensorSpec

log = logging.getLogger(__name__)

LOGITS, PREDICTION = "logits", "prediction"
MAX_RECORDS = 100_000  # a long-running server keeps a bounded window of records for its report


class PlanBackend:
    def __init__(self, root: str | Path, workers: Mapping[str, str] | None = None, timeout: float = 5.0,
                 degraded_ok: bool = False, auth: ClientAuth | None = None, name: str | None = None,
                 hedge_after: str | float | None = None, report: str | Path | None = None):  # fmt: skip
        from edgekit.splitter import SplitCoordinator, load_plan
        from edgekit.splitter.plan import PLAN_NAME

        self.plan = load_plan(root)
        self.report_path = Path(report) if report else None
        self.records: deque = deque(maxlen=MAX_RECORDS)
        on_record = self.records.append if self.report_path else None
        self.coordinator = SplitCoordinator(self.plan, workers, timeout, degraded_ok, auth, hedge_after=hedge_after,
                                            on_record=on_record)  # fmt: skip
        try:
            sent = self.coordinator.deploy()
        except BaseException:
            self.coordinator.close()
            raise
        if sent:
            log.info("deployed %s", ", ".join(sent))
        self.energy_at_start = self.coordinator.energy_totals() if self.report_path else {}
        batch = int(self.plan.input["shape"][0])
        self.metadata = ModelMetadata(
            name=name or self.plan.model["name"], version=sha256_file(self.plan.root / PLAN_NAME)[:12],
            platform="edgekit_split",
            inputs=(TensorSpec(self.plan.input["name"], tuple(self.plan.input["shape"]), "float32"),),
            outputs=(TensorSpec(LOGITS, (batch, len(self.plan.class_names)), "float32"),
                     TensorSpec(PREDICTION, (batch,), "int64")),
        )  # fmt: skip

    def ready(self) -> bool:
        try:
            replies = self.coordinator.health()
        except WorkerError as exc:
            log.info("not ready: %s", exc)
            return False
        answering = 0
        for shard in self.plan.shards:
            reply = replies.get(shard.device)
            held = (
                reply is not None
                and reply.status == "ok"
                and any(s.shard == shard.name and s.digest == shard.digest for s in reply.shards)
            )
            answering += held
            if not held and not self.coordinator.degraded_ok:
                return False
        return answering > 0

    def infer(self, inputs: Mapping[str, np.ndarray]) -> BackendAnswer:
        output = self.coordinator.infer(inputs[self.plan.input["name"]])
        parameters = {"degraded": True, "missing": ",".join(output.missing)} if output.degraded else {}
        return BackendAnswer(
            {LOGITS: np.asarray(output.logits, np.float32), PREDICTION: np.asarray(output.prediction, np.int64)},
            parameters,
        )

    def write_report(self) -> None:
        from edgekit.splitter.node_energy import between
        from edgekit.splitter.runreport import build_report

        records = list(self.records)
        # records arrive as requests finish, not as they start
        wall = (max(r.started_s + r.latency_ms / 1e3 for r in records) - min(r.started_s for r in records)
                if records else 0.0)  # fmt: skip
        c = self.coordinator
        energy = between(self.energy_at_start, c.energy_totals())  # over the server's life, idle time included
        report = build_report(records, wall, workers=c.addresses, hedge=c.hedge, rejoins=len(c.workers.rejoins),
                              energy=energy)  # fmt: skip
        self.report_path.write_text(json.dumps(report.to_json(), indent=1))
        log.info("run report (%d requests) written to %s", len(records), self.report_path)

    def close(self) -> None:
        try:
            if self.report_path:
                self.write_report()
        finally:
            self.coordinator.close()
