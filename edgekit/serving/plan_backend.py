"""A split plan served as one model: every request fans out to the plan's workers and the fused logits answer.

The endpoint is the coordinator (``SplitCoordinator``): it deploys the shards the workers lack when the
server starts, and each inference is one ``infer`` under the coordinator's deadline. Readiness asks every
worker for its health: ready when each shard's worker answers and holds that shard's exact bytes.
"""

from __future__ import annotations

import logging
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


class PlanBackend:
    def __init__(self, root: str | Path, workers: Mapping[str, str] | None = None, timeout: float = 5.0,
                 degraded_ok: bool = False, auth: ClientAuth | None = None, name: str | None = None,
                 hedge_after: str | float | None = None):  # fmt: skip
        from edgekit.splitter import SplitCoordinator, load_plan
        from edgekit.splitter.plan import PLAN_NAME

        self.plan = load_plan(root)
        self.coordinator = SplitCoordinator(self.plan, workers, timeout, degraded_ok, auth, hedge_after=hedge_after)
        try:
            sent = self.coordinator.deploy()
        except BaseException:
            self.coordinator.close()
            raise
        if sent:
            log.info("deployed %s", ", ".join(sent))
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

    def close(self) -> None:
        self.coordinator.close()
