"""The graphs a device runs for encoder-decoders and the decoder-only twin, and realistic inputs to verify them.

An encoder-decoder (anything with the :class:`EncoderDecoderModel` interface: the seq2seq family, T5, BART)
exports as ``encoder`` + ``decoder_step``; the decoder-only twin as ``prefill`` + ``decoder_step``. K/V
tensors cross the graph boundary as 3-D (kv_heads, slots, head_dim), one input and one output per layer.

Each graph also carries ``sample_inputs``: the inputs it will meet on a device (integer positions spread over
the cache, 1/0 masks over a valid prefix, caches written by real decode steps from a real encoder output),
so that export verification checks the computation a generation runs, not random floats in place of a
position or a mask.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch
from torch import nn

from edgekit.generation.tokenizer import ByteTokenizer, NoTokenizer, Tokenizer
from edgekit.models.encdec_interface import KV, CacheLayout, CausalDecoderModel, EncoderDecoderModel
from edgekit.models.spec import ModelSpec, SubGraph, with_named_inputs

InputSets = list[dict[str, np.ndarray]]


def _to_3d(t: torch.Tensor) -> torch.Tensor:
    """(1, kv_heads, T, D) -> (kv_heads, T, D) at the graph boundary: ExecuTorch's XNNPACK delegate reports a 4-D
    delegate output in its channels-last order (and the runtime then refuses to resize the static output)."""
    return t.reshape(t.shape[1], t.shape[2], t.shape[3])


def _pairs(flat: list[torch.Tensor], cache: CacheLayout) -> list[KV]:
    """Graph-boundary K/V tensors (k_0, v_0, k_1, v_1 ...) as the model's per-layer 4-D (k, v) pairs."""
    full = [t.reshape(1, cache.kv_heads, t.shape[1], cache.head_dim) for t in flat]
    return list(zip(full[0::2], full[1::2], strict=True))


def _flat(pairs: list[KV]) -> tuple[torch.Tensor, ...]:
    return tuple(_to_3d(t) for pair in pairs for t in pair)


def _kv_names(prefix: str, layers: int, suffix: str = "") -> tuple[str, ...]:
    return tuple(f"{prefix}_{kind}_{i}{suffix}" for i in range(layers) for kind in ("k", "v"))


def _kv_examples(cache: CacheLayout, steps: int) -> tuple[torch.Tensor, ...]:
    """Zero K/V of the boundary shape: example inputs known from the layout, without running the model."""
    return tuple(torch.zeros(cache.kv_heads, steps, cache.head_dim) for _ in range(2 * cache.layers))


def _cache_layout(shape: tuple[int, ...], layers: int, initial: str) -> dict:
    return {"shape": list(shape), "inputs": list(_kv_names("self", layers)),
            "outputs": list(_kv_names("self", layers, "_out")), "initial": initial,
            "write": "one-hot at position"}  # fmt: skip


def _named(names: tuple[str, ...], tensors: tuple[torch.Tensor, ...]) -> dict[str, np.ndarray]:
    return {n: t.detach().numpy().copy() for n, t in zip(names, tensors, strict=True)}


def _content_ids(tok: Tokenizer, rng: np.random.Generator, count: int) -> list[int]:
    """Token ids a text could produce: the vocabulary without the special ids."""
    ordinary = np.setdiff1d(np.arange(tok.vocab_size), np.asarray(tok.special_ids))
    return [int(i) for i in rng.choice(ordinary, size=count)]


def spread_positions(count: int, first: int, last: int) -> list[int]:
    """``count`` integer positions from ``first`` to ``last`` (both included when count > 1), evenly spread:
    the early slots, the middle and the last slot of the cache are all checked."""
    if count <= 0:
        return []
    return [int(p) for p in np.linspace(first, last, count).round()] if count > 1 else [last]


class _EncoderGraph(nn.Module):
    """(src, src_mask) -> cross_k_0, cross_v_0, ...: the encoder and every decoder layer's cross K/V, once."""

    def __init__(self, model: EncoderDecoderModel):
        super().__init__()
        self.model = model

    def run(self, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        src, src_mask = args
        return _flat(self.model.cross_kv(self.model.encode(src, src_mask)))


class _DecoderStepGraph(nn.Module):
    """(tokens, position, src_mask, self_k_0, self_v_0, ..., cross_k_0, cross_v_0, ...) -> logits, new self K/V."""

    def __init__(self, model: EncoderDecoderModel):
        super().__init__()
        self.model = model

    def run(self, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        tokens, position, src_mask, *rest = args
        layout = self.model.self_cache
        kv = _pairs(rest, layout)
        logits, new_cache = self.model.decode_step(tokens, position, kv[: layout.layers], kv[layout.layers :], src_mask)
        return (logits, *_flat(new_cache))


class EncoderDecoderSamples:
    """Realistic inputs of the encoder and decoder-step graphs, computed with the model itself.

    A set is one request: a source of random length (ids from the vocabulary, the 1/0 mask over that prefix),
    encoded by the model; the decoder step is then taken at an integer ``position`` with the cache holding the
    keys and values of ``position`` earlier tokens, written by a real decode step over them (one call of
    K tokens, which writes the same slots as K calls of one).
    """

    def __init__(self, model: EncoderDecoderModel, tok: Tokenizer, step_names: tuple[str, ...]):
        self.model, self.tok, self.step_names = model, tok, step_names

    def _sources(self, rng: np.random.Generator, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``count`` padded sources, their lengths spread from one token to the full length (in random order)."""
        sources = []
        for length in rng.permutation(spread_positions(count, 1, self.model.max_source)):
            src, mask = self.tok.pad(_content_ids(self.tok, rng, int(length)), self.model.max_source)
            sources.append((torch.from_numpy(src), torch.from_numpy(mask)))
        return sources

    def encoder(self, count: int, seed: int) -> InputSets:
        return [_named(("src", "src_mask"), s) for s in self._sources(np.random.default_rng(seed), count)]

    @torch.no_grad()
    def decoder_step(self, count: int, seed: int) -> InputSets:
        rng = np.random.default_rng(seed)
        model, layout = self.model, self.model.self_cache
        positions = spread_positions(count, 1, layout.slots - 1)
        sets = []
        for position, (src, mask) in zip(positions, self._sources(rng, count), strict=True):
            cross = model.cross_kv(model.encode(src, mask))
            earlier = torch.tensor([[self.tok.bos_id, *_content_ids(self.tok, rng, position - 1)]], dtype=torch.int32)
            _, cache = model.decode_step(earlier, torch.tensor([0.0]), model.empty_cache(), cross, mask)
            token = torch.tensor([_content_ids(self.tok, rng, 1)], dtype=torch.int32)
            inputs = (token, torch.tensor([float(position)]), mask, *_flat(cache), *_flat(cross))
            sets.append(_named(self.step_names, inputs))
        return sets


def seq2seq_graphs(model: EncoderDecoderModel, tokenizer: Tokenizer | None = None) -> tuple[tuple[SubGraph, ...], dict]:
    """The encoder and decoder-step SubGraphs of ``model`` and the manifest's ``seq2seq`` layout."""
    if not isinstance(model, EncoderDecoderModel):
        raise TypeError(f"{type(model).__name__} lacks the encoder-decoder device interface (EncoderDecoderModel)")
    layout = model.self_cache
    layers = layout.layers
    tok = tokenizer or ByteTokenizer()
    # int32 ids: LiteRT lowers int64 to int32 anyway, and every runtime takes int32 indices
    ids = [i % tok.vocab_size for i in (104, 105, 33)]
    src, src_mask = (torch.from_numpy(a) for a in tok.pad(ids, model.max_source))
    cache = _kv_examples(layout, layout.slots)
    step_inputs = (torch.tensor([[tok.bos_id]], dtype=torch.int32), torch.tensor([0.0]), src_mask, *cache,
                   *_kv_examples(layout, model.max_source))  # fmt: skip
    step_names = ("tokens", "position", "src_mask", *_kv_names("self", layers), *_kv_names("cross", layers))
    samples = EncoderDecoderSamples(model, tok, step_names)
    graphs = (
        SubGraph("encoder", with_named_inputs(_EncoderGraph, 2)(model).eval(), (src, src_mask), ("src", "src_mask"),
                 _kv_names("cross", layers), sample_inputs=samples.encoder),
        SubGraph("decoder_step", with_named_inputs(_DecoderStepGraph, len(step_inputs))(model).eval(), step_inputs,
                 step_names, ("logits", *_kv_names("self", layers, "_out")), sample_inputs=samples.decoder_step),
    )  # fmt: skip
    extras = {
        "tokenizer": tok.to_json(),
        "max_source": model.max_source,
        "max_target": layout.slots,
        "decoder_layers": layers,
        "cache": _cache_layout(cache[0].shape, layers, "zeros"),
        "cross": {"from": "encoder", "names": list(_kv_names("cross", layers))},
    }
    return graphs, extras


def checkpoint_spec(name: str, model: nn.Module) -> ModelSpec:
    """A checkpoint family's model (T5, BART: its config names the special ids) with its encoder and decoder-step
    graphs; no tokenizer until a checkpoint folder brings one (:mod:`edgekit.models.hf_folder`)."""
    cfg = model.eval().cfg
    tok = NoTokenizer(cfg.pad_token_id, cfg.decoder_start_token_id, cfg.eos_token_id, cfg.vocab_size)
    graphs, layout = seq2seq_graphs(model, tok)
    teacher = (*graphs[0].example_inputs, torch.tensor([[cfg.decoder_start_token_id, 5]], dtype=torch.int32))
    return ModelSpec(
        name=name, family="seq2seq", module=model, example_inputs=teacher, input_names=("src", "src_mask", "tgt"),
        output_names=("logits",), config=asdict(cfg), task="seq2seq", graphs=graphs, extras={"seq2seq": layout},
    )  # fmt: skip


# -- the decoder-only twin --------------------------------------------------------------------------------


class _PrefillGraph(nn.Module):
    """(tokens (1, P)) -> logits after the last, and the cache with all P written (the time to the first token)."""

    def __init__(self, model: CausalDecoderModel):
        super().__init__()
        self.model = model

    def run(self, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        (tokens,) = args
        logits, cache = self.model.step(tokens, torch.tensor([0.0]), None)
        return (logits, *_flat(cache))


class _TwinStepGraph(nn.Module):
    """(token, position, self_k_0, self_v_0, ...) -> logits, the new cache."""

    def __init__(self, model: CausalDecoderModel):
        super().__init__()
        self.model = model

    def run(self, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        tokens, position, *rest = args
        logits, new_cache = self.model.step(tokens, position, _pairs(rest, self.model.self_cache))
        return (logits, *_flat(new_cache))


class DecoderOnlySamples:
    """Realistic inputs of the twin's graphs: prompts of content bytes ending in BOS; decoder steps at integer
    positions from the prompt's end to the last slot, over the cache the prefill and the tokens since wrote."""

    def __init__(self, model: CausalDecoderModel, tok: Tokenizer, prompt_len: int, step_names: tuple[str, ...]):
        self.model, self.tok, self.prompt_len, self.step_names = model, tok, prompt_len, step_names

    def _prompt(self, rng: np.random.Generator) -> torch.Tensor:
        return torch.tensor([[*_content_ids(self.tok, rng, self.prompt_len - 1), self.tok.bos_id]], dtype=torch.int32)

    def prefill(self, count: int, seed: int) -> InputSets:
        rng = np.random.default_rng(seed)
        return [{"tokens": self._prompt(rng).numpy()} for _ in range(count)]

    @torch.no_grad()
    def decoder_step(self, count: int, seed: int) -> InputSets:
        rng = np.random.default_rng(seed)
        sets = []
        for position in spread_positions(count, self.prompt_len, self.model.self_cache.slots - 1):
            _, cache = self.model.step(self._prompt(rng), torch.tensor([0.0]), None)
            since = position - self.prompt_len
            if since:
                generated = torch.tensor([_content_ids(self.tok, rng, since)], dtype=torch.int32)
                _, cache = self.model.step(generated, torch.tensor([float(self.prompt_len)]), cache)
            token = torch.tensor([_content_ids(self.tok, rng, 1)], dtype=torch.int32)
            sets.append(_named(self.step_names, (token, torch.tensor([float(position)]), *_flat(cache))))
        return sets


def decoder_only_graphs(model: CausalDecoderModel, prompt_len: int) -> tuple[tuple[SubGraph, ...], dict]:
    """The ``prefill`` (a prompt of exactly ``prompt_len`` tokens) and ``decoder_step`` SubGraphs and their layout."""
    layout = model.self_cache
    tok, layers = ByteTokenizer(), layout.layers
    if not 1 <= prompt_len < layout.slots:
        raise ValueError(f"prompt_len must be in 1..{layout.slots - 1}, got {prompt_len}")
    prompt = torch.full((1, prompt_len), 97, dtype=torch.int32)
    prompt[0, -1] = tok.bos_id
    cache = _kv_examples(layout, layout.slots)
    step_inputs = (torch.tensor([[97]], dtype=torch.int32), torch.tensor([float(prompt_len)]), *cache)
    step_names = ("tokens", "position", *_kv_names("self", layers))
    outputs = ("logits", *_kv_names("self", layers, "_out"))
    samples = DecoderOnlySamples(model, tok, prompt_len, step_names)
    graphs = (
        SubGraph("prefill", with_named_inputs(_PrefillGraph, 1)(model).eval(), (prompt,), ("tokens",), outputs,
                 sample_inputs=samples.prefill),
        SubGraph("decoder_step", with_named_inputs(_TwinStepGraph, len(step_inputs))(model).eval(), step_inputs,
                 step_names, outputs, sample_inputs=samples.decoder_step),
    )  # fmt: skip
    extras = {
        "tokenizer": tok.to_json(),
        "prompt_len": prompt_len,
        "max_target": layout.slots - prompt_len,
        "layers": layers,
        "cache": _cache_layout(cache[0].shape, layers, "written by prefill"),
    }
    return graphs, extras
