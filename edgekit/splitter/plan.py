"""``plan.json``: everything a coordinator needs to run a split, and the report of how it was built.

A plan directory holds ``plan.json``, ``fusion.npz`` and one exported bundle per shard under
``shards/``. Each shard is pinned by its *digest*, the sha256 of its bundle's ``edgekit.json`` (which
itself lists the sha256 of every model file), so a worker and the coordinator agree on exactly which
bytes run; the fusion weights are pinned by their own sha256.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.bundle import MANIFEST_NAME, read_bundle, sha256_file
from edgekit.errors import BundleError
from edgekit.jsonio import read_json, write_json
from edgekit.splitter.devices import DeviceSpec
from edgekit.splitter.fuse import FusionHead

PLAN_SCHEMA = "edgekit.split/1"
PLAN_NAME = "plan.json"


def bundle_digest(bundle_dir: str | Path) -> str:
    return sha256_file(Path(bundle_dir) / MANIFEST_NAME)


@dataclass(frozen=True)
class ShardPlan:
    name: str
    classes: tuple[int, ...]
    device: str
    format: str
    bundle: str  # relative to the plan directory
    digest: str
    keep_ratio: float
    heads: tuple[int, ...]
    mlp: tuple[int, ...]
    parameters: int
    size_bytes: int
    flops: int
    memory_bytes: int
    feature_dim: int
    estimated_ms: float  # measured on the planning host with the shard's runtime, scaled to the device
    bound_ms: float  # FLOPs at the device's matmul throughput (+ link): what the assignment balanced
    replicas: tuple[str, ...] = ()  # devices that hold the same bundle, in the order failover tries them

    @property
    def holders(self) -> tuple[str, ...]:
        """Every device that runs this shard: the primary first, then its replicas."""
        return (self.device, *self.replicas)

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShardPlan:
        values = {k: data[k] for k in cls.__dataclass_fields__ if k != "replicas"}
        for k in ("classes", "heads", "mlp"):
            values[k] = tuple(int(v) for v in values[k])
        # plans written before replicas existed have none
        return cls(**values, replicas=tuple(str(d) for d in data.get("replicas", ())))


@dataclass(frozen=True)
class SplitPlan:
    model: dict[str, Any]  # name, config, parameters, flops, size_bytes
    strategy: str
    partition: str
    class_names: tuple[str, ...]
    input: dict[str, Any]  # name, shape, dtype of one sample batch (batch 1)
    devices: tuple[DeviceSpec, ...]
    shards: tuple[ShardPlan, ...]
    fusion: dict[str, Any]  # file, sha256, hidden, shard_dropout
    report: dict[str, Any] = field(default_factory=dict)
    root: Path | None = None  # the directory it was read from or written to

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": PLAN_SCHEMA,
            "model": self.model,
            "strategy": self.strategy,
            "partition": self.partition,
            "class_names": list(self.class_names),
            "input": self.input,
            "devices": [d.to_json() for d in self.devices],
            "shards": [s.to_json() for s in self.shards],
            "fusion": self.fusion,
            "report": self.report,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], root: Path | None = None) -> SplitPlan:
        return cls(
            model=data["model"],
            strategy=data["strategy"],
            partition=data["partition"],
            class_names=tuple(data["class_names"]),
            input=data["input"],
            devices=tuple(DeviceSpec.from_json(d) for d in data["devices"]),
            shards=tuple(ShardPlan.from_json(s) for s in data["shards"]),
            fusion=data["fusion"],
            report=data.get("report", {}),
            root=root,
        )

    def device(self, name: str) -> DeviceSpec:
        for d in self.devices:
            if d.name == name:
                return d
        raise BundleError(f"plan has no device {name!r} (devices: {', '.join(d.name for d in self.devices)})")

    def shard_dir(self, shard: ShardPlan) -> Path:
        return _inside(self._root(), shard.bundle)

    def verify_shard(self, shard: ShardPlan) -> Path:
        """The shard's bundle directory after checking its digest and every file hash."""
        path = self.shard_dir(shard)
        read_bundle(path)
        if bundle_digest(path) != shard.digest:
            raise BundleError(
                f"{path}: its manifest does not match the digest in {PLAN_NAME} (the bundle was replaced "
                "after planning); re-run `edgekit split`"
            )
        return path

    def load_fusion(self) -> FusionHead:
        path = _inside(self._root(), self.fusion["file"])
        if not path.is_file() or sha256_file(path) != self.fusion["sha256"]:
            raise BundleError(f"{path} is missing or does not match its sha256 in {PLAN_NAME}; re-run `edgekit split`")
        head = FusionHead.load(path)
        dims = tuple(s.feature_dim for s in self.shards)
        if head.shard_dims != dims:
            raise BundleError(f"{path} fuses features of sizes {head.shard_dims}, the plan's shards give {dims}")
        return head

    def _root(self) -> Path:
        if self.root is None:
            raise BundleError("this plan has not been written to or read from a directory")
        return self.root


def save_plan(plan: SplitPlan, root: str | Path) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    return write_json(root / PLAN_NAME, plan.to_json())


def load_plan(root: str | Path) -> SplitPlan:
    root = Path(root)
    path = root / PLAN_NAME if root.is_dir() else root
    if not path.is_file():
        raise BundleError(f"no split plan at {root} ({PLAN_NAME} missing); create one with `edgekit split`")
    data = read_json(path, "split plan", "re-run `edgekit split`")
    if not isinstance(data, dict) or data.get("schema") != PLAN_SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise BundleError(f"{path} is not an edgekit split plan of schema {PLAN_SCHEMA} (found {found!r})")
    try:
        plan = SplitPlan.from_json(data, root=path.parent)
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{path} is malformed ({type(exc).__name__}: {exc}); re-run `edgekit split`") from None
    names = [s.name for s in plan.shards]
    if len(set(names)) != len(names) or not names:
        raise BundleError(f"{path}: shard names must be unique and non-empty")
    for shard in plan.shards:
        for device in shard.holders:
            plan.device(device)
        if len(set(shard.holders)) != len(shard.holders):
            raise BundleError(f"{path}: shard {shard.name} names a device twice among its primary and replicas")
    return plan


def _inside(root: Path, relative: str) -> Path:
    path = (root / relative).resolve()
    if root.resolve() not in path.parents:
        raise BundleError(f"{root / PLAN_NAME} names {relative!r}, outside the plan directory; refusing to read it")
    return path
