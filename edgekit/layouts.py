"""The state a graph carries between calls, as the manifest records it: a stream's state slots, an
encoder-decoder's KV cache, and the alternative graphs of a token-merging bundle. Plain values with their JSON
form; numpy-free, so a manifest parses anywhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StateSlot:
    """One piece of streaming state: graph input ``name`` and its successor, graph output ``output``."""

    name: str
    shape: tuple[int, ...]
    kind: str  # lmu_memory, conv_buffer, lif_membrane, running_sum, frame_count

    @property
    def output(self) -> str:
        return self.name + "_out"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "output": self.output, "shape": list(self.shape), "kind": self.kind}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StateSlot:
        slot = cls(str(data["name"]), tuple(int(d) for d in data["shape"]), str(data["kind"]))
        if data.get("output", slot.output) != slot.output:
            raise ValueError(f"state {slot.name!r} names its output {data['output']!r}, expected {slot.output!r}")
        return slot


@dataclass(frozen=True)
class StreamLayout:
    """What a streaming graph reads and writes besides its weights (``extras.stream`` in the manifest)."""

    frames_input: str
    chunk: int  # frames per call
    features: int  # values per frame
    logits_output: str
    spikes_output: str | None  # spiking models: every LIF neuron's spikes of the chunk, (1, neurons, chunk)
    state: tuple[StateSlot, ...]
    sequence_length: int  # the length the model was built (and trained) for; a stream may run longer

    def to_json(self) -> dict[str, Any]:
        return {
            "frames_input": self.frames_input,
            "chunk": self.chunk,
            "features": self.features,
            "logits_output": self.logits_output,
            "spikes_output": self.spikes_output,
            "sequence_length": self.sequence_length,
            "initial_state": "zeros",
            "state": [s.to_json() for s in self.state],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StreamLayout:
        return cls(
            frames_input=str(data["frames_input"]),
            chunk=int(data["chunk"]),
            features=int(data["features"]),
            logits_output=str(data["logits_output"]),
            spikes_output=data.get("spikes_output"),
            state=tuple(StateSlot.from_json(s) for s in data["state"]),
            sequence_length=int(data["sequence_length"]),
        )


@dataclass(frozen=True)
class CacheLayout:
    """A decoder's self-attention KV cache: one tensor of ``shape`` per name, carried from call to call."""

    shape: tuple[int, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    initial: str  # "zeros", or "written by prefill"
    write: str = "one-hot at position"

    def to_json(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "inputs": list(self.inputs), "outputs": list(self.outputs),
                "initial": self.initial, "write": self.write}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CacheLayout:
        shape = tuple(int(d) for d in data["shape"])
        names = tuple(map(str, data["inputs"])), tuple(map(str, data["outputs"]))
        return cls(shape, *names, str(data["initial"]), str(data.get("write", cls.write)))


@dataclass(frozen=True)
class Seq2SeqLayout:
    """An encoder-decoder bundle (``extras.seq2seq``): the tokenizer, the source and cache lengths, and the
    names that tie the encoder's cross K/V outputs to the decoder step's inputs."""

    tokenizer: dict[str, Any]  # read by edgekit.generation.tokenizer.tokenizer_from_json
    max_source: int
    max_target: int
    decoder_layers: int
    cache: CacheLayout
    cross_names: tuple[str, ...]
    cross_from: str = "encoder"

    def to_json(self) -> dict[str, Any]:
        return {"tokenizer": dict(self.tokenizer), "max_source": self.max_source, "max_target": self.max_target,
                "decoder_layers": self.decoder_layers, "cache": self.cache.to_json(),
                "cross": {"from": self.cross_from, "names": list(self.cross_names)}}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Seq2SeqLayout:
        unknown = set(data) - {"tokenizer", "max_source", "max_target", "decoder_layers", "cache", "cross"}
        if unknown:  # a key this type would drop on writing: the family and the layout must agree
            raise ValueError(f"unknown seq2seq layout key(s) {sorted(unknown)}")
        cross = data["cross"]
        return cls(dict(data["tokenizer"]), int(data["max_source"]), int(data["max_target"]),
                   int(data["decoder_layers"]), CacheLayout.from_json(data["cache"]),
                   tuple(map(str, cross["names"])), str(cross.get("from", "encoder")))  # fmt: skip


@dataclass(frozen=True)
class MergeRate:
    """One graph of a token-merging bundle: ``r`` tokens merged per block, the tokens each block's MLP then sees,
    and the held-out accuracy of that rate when the export had trained weights and a dataset."""

    r: int
    graph: str
    mlp_tokens: tuple[int, ...]
    accuracy: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"r": self.r, "graph": self.graph, "mlp_tokens": list(self.mlp_tokens), "accuracy": self.accuracy}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MergeRate:
        accuracy = data.get("accuracy")
        return cls(int(data["r"]), str(data["graph"]), tuple(int(n) for n in data["mlp_tokens"]),
                   None if accuracy is None else float(accuracy))  # fmt: skip


@dataclass(frozen=True)
class TokenMergeLayout:
    """A bundle with one graph per token-merge rate (``extras.token_merge``): alternatives of one model, chosen
    at load time against a latency budget (``edgekit.load(bundle, budget_ms=...)``)."""

    rates: tuple[MergeRate, ...]
    dataset: str | None = None  # where the accuracies were measured (held-out split)
    method: str = "bipartite soft matching, one-hot form (ToMe)"

    def rate(self, graph: str) -> MergeRate:
        return next(r for r in self.rates if r.graph == graph)

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "dataset": self.dataset, "rates": [r.to_json() for r in self.rates]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenMergeLayout:
        rates = tuple(MergeRate.from_json(r) for r in data["rates"])
        return cls(rates, data.get("dataset"), str(data.get("method") or cls.method))


@dataclass(frozen=True)
class Extras:
    """Family-specific parts of a manifest: the layouts edgekit reads back, typed, and the rest kept as given
    (a decoder-only twin's prefill layout, a checkpoint's origin, a shard's classes ...)."""

    stream: StreamLayout | None = None
    seq2seq: Seq2SeqLayout | None = None
    other: dict[str, Any] = field(default_factory=dict)
    token_merge: TokenMergeLayout | None = None

    def to_json(self) -> dict[str, Any]:
        out = dict(self.other)
        if self.stream is not None:
            out["stream"] = self.stream.to_json()
        if self.seq2seq is not None:
            out["seq2seq"] = self.seq2seq.to_json()
        if self.token_merge is not None:
            out["token_merge"] = self.token_merge.to_json()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Extras:
        other = {k: v for k, v in data.items() if k not in ("stream", "seq2seq", "token_merge")}
        stream = StreamLayout.from_json(data["stream"]) if data.get("stream") else None
        seq2seq = Seq2SeqLayout.from_json(data["seq2seq"]) if data.get("seq2seq") else None
        merge = TokenMergeLayout.from_json(data["token_merge"]) if data.get("token_merge") else None
        return cls(stream, seq2seq, other, merge)
