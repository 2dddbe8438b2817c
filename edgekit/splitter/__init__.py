"""Split a ViT across devices (ED-ViT) and run it over gRPC workers.

Planning (``edgekit.splitter.edvit.plan_split``, also ``edgekit.plan_split``) needs torch; running a plan
(``SplitCoordinator``, ``start_worker``) needs only numpy, a runtime and grpcio, so workers and coordinators
run on the runtime install.
"""

from __future__ import annotations

from edgekit.splitter.coordinator import SplitCoordinator, SplitEvaluation, SplitOutput, parse_workers
from edgekit.splitter.devices import DeviceSpec, load_devices
from edgekit.splitter.hedging import HedgePolicy
from edgekit.splitter.plan import ShardPlan, SplitPlan, load_plan, save_plan
from edgekit.splitter.records import RequestRecord, ShardCall
from edgekit.splitter.replicas import with_replicas
from edgekit.splitter.runreport import RunReport, build_report
from edgekit.splitter.worker import start_worker

__all__ = [
    "DeviceSpec",
    "HedgePolicy",
    "RequestRecord",
    "RunReport",
    "ShardCall",
    "ShardPlan",
    "SplitCoordinator",
    "SplitEvaluation",
    "SplitOutput",
    "SplitPlan",
    "load_devices",
    "load_plan",
    "parse_workers",
    "build_report",
    "save_plan",
    "start_worker",
    "with_replicas",
]
