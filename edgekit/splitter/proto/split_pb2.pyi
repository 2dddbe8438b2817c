from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tensor(_message.Message):
    __slots__ = ("name", "dtype", "shape", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShardInfo(_message.Message):
    __slots__ = ("shard", "digest", "format", "inputs")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    shard: str
    digest: str
    format: str
    inputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    def __init__(self, shard: _Optional[str] = ..., digest: _Optional[str] = ..., format: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ...) -> None: ...

class HealthReply(_message.Message):
    __slots__ = ("status", "worker", "edgekit_version", "pid", "shards", "formats", "machine")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    EDGEKIT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    FORMATS_FIELD_NUMBER: _ClassVar[int]
    MACHINE_FIELD_NUMBER: _ClassVar[int]
    status: str
    worker: str
    edgekit_version: str
    pid: int
    shards: _containers.RepeatedCompositeFieldContainer[ShardInfo]
    formats: _containers.RepeatedScalarFieldContainer[str]
    machine: str
    def __init__(self, status: _Optional[str] = ..., worker: _Optional[str] = ..., edgekit_version: _Optional[str] = ..., pid: _Optional[int] = ..., shards: _Optional[_Iterable[_Union[ShardInfo, _Mapping]]] = ..., formats: _Optional[_Iterable[str]] = ..., machine: _Optional[str] = ...) -> None: ...

class DeployChunk(_message.Message):
    __slots__ = ("shard", "digest", "path", "data")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    shard: str
    digest: str
    path: str
    data: bytes
    def __init__(self, shard: _Optional[str] = ..., digest: _Optional[str] = ..., path: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class DeployReply(_message.Message):
    __slots__ = ("shard", "load_ms")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    LOAD_MS_FIELD_NUMBER: _ClassVar[int]
    shard: ShardInfo
    load_ms: float
    def __init__(self, shard: _Optional[_Union[ShardInfo, _Mapping]] = ..., load_ms: _Optional[float] = ...) -> None: ...

class InferRequest(_message.Message):
    __slots__ = ("shard", "inputs")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    shard: str
    inputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    def __init__(self, shard: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ...) -> None: ...

class InferReply(_message.Message):
    __slots__ = ("outputs", "compute_ms")
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    outputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    compute_ms: float
    def __init__(self, outputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., compute_ms: _Optional[float] = ...) -> None: ...

class ProfileRequest(_message.Message):
    __slots__ = ("shard", "runs", "warmup", "energy", "idle_seconds", "threads", "duration")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    WARMUP_FIELD_NUMBER: _ClassVar[int]
    ENERGY_FIELD_NUMBER: _ClassVar[int]
    IDLE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    shard: str
    runs: int
    warmup: int
    energy: str
    idle_seconds: float
    threads: int
    duration: float
    def __init__(self, shard: _Optional[str] = ..., runs: _Optional[int] = ..., warmup: _Optional[int] = ..., energy: _Optional[str] = ..., idle_seconds: _Optional[float] = ..., threads: _Optional[int] = ..., duration: _Optional[float] = ...) -> None: ...

class ProfileReply(_message.Message):
    __slots__ = ("report_json",)
    REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    report_json: str
    def __init__(self, report_json: _Optional[str] = ...) -> None: ...

class DeviceProfileRequest(_message.Message):
    __slots__ = ("model", "config_json", "energy")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    ENERGY_FIELD_NUMBER: _ClassVar[int]
    model: str
    config_json: str
    energy: str
    def __init__(self, model: _Optional[str] = ..., config_json: _Optional[str] = ..., energy: _Optional[str] = ...) -> None: ...

class Hop(_message.Message):
    __slots__ = ("shard", "device", "address")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    shard: str
    device: str
    address: str
    def __init__(self, shard: _Optional[str] = ..., device: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class RelayRequest(_message.Message):
    __slots__ = ("shard", "inputs", "next")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    shard: str
    inputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    next: _containers.RepeatedCompositeFieldContainer[Hop]
    def __init__(self, shard: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., next: _Optional[_Iterable[_Union[Hop, _Mapping]]] = ...) -> None: ...

class StageTime(_message.Message):
    __slots__ = ("shard", "worker", "compute_ms", "bytes_in")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    BYTES_IN_FIELD_NUMBER: _ClassVar[int]
    shard: str
    worker: str
    compute_ms: float
    bytes_in: int
    def __init__(self, shard: _Optional[str] = ..., worker: _Optional[str] = ..., compute_ms: _Optional[float] = ..., bytes_in: _Optional[int] = ...) -> None: ...

class RelayReply(_message.Message):
    __slots__ = ("outputs", "stages")
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    outputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    stages: _containers.RepeatedCompositeFieldContainer[StageTime]
    def __init__(self, outputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., stages: _Optional[_Iterable[_Union[StageTime, _Mapping]]] = ...) -> None: ...

class EnergyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EnergyReply(_message.Message):
    __slots__ = ("meter", "joules", "seconds", "since_unix_ns", "reason")
    METER_FIELD_NUMBER: _ClassVar[int]
    JOULES_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    meter: str
    joules: float
    seconds: float
    since_unix_ns: int
    reason: str
    def __init__(self, meter: _Optional[str] = ..., joules: _Optional[float] = ..., seconds: _Optional[float] = ..., since_unix_ns: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...
