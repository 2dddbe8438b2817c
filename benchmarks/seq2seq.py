"""Encoder-decoder vs its decoder-only twin of equal size, per runtime: time to first token, decode speed, memory.

The "Return of the Encoder" comparison at our scale (its section in docs/papers.md; the paper reports 47%
lower first-token latency and 4.7x the throughput on its edge hardware). For each prompt length P both models are
exported for exactly that prompt (the encoder takes P source tokens; the twin prefills P + 1 tokens: the source
and BOS) with a 32-position decoder cache, untrained (timing does not depend on the weights):

- first token: encoder + one decoder step, vs the twin's prefill of the whole prompt;
- decode: one decoder step with the cache after the prompt (tokens/s = 1000 / ms);
- memory: peak resident memory of a fresh process that loads the bundle and generates 16 tokens, minus the
  same process before loading (so the Python interpreter and numpy are not counted).

Medians of interleaved rounds; one runtime thread.

The ``train`` part trains ``seq2seq_tiny`` on string reversal (4,000 pairs, 10 epochs; ``train30m``: the
~30M model, 12,000 pairs, 4 epochs) and reports its held-out exact match in PyTorch and through each format's
bundle, and each bundle's size against the weights (the embedding shared by both graphs is stored once in a
.pte or .tflite, once per file in ONNX).
"""

from __future__ import annotations

import functools
import json
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from parts import run_parts
from rich.console import Console
from rich.table import Table

from edgekit import runtimes
from edgekit.bundle import read_bundle
from edgekit.exporters.pipeline import export
from edgekit.formats import FORMATS
from edgekit.profiling.latency import measure

PROMPTS = (8, 32)
MAX_TARGET = 32
SIZES = {"tiny": "seq2seq_tiny", "30m": "seq2seq_30m"}


def _bundles(out: Path, size: str, prompt: int, fmt: str, console: Console) -> tuple[Path, Path]:
    enc_dec, twin = SIZES[size], SIZES[size] + "_twin"
    dirs = []
    for model, config in ((enc_dec, {"max_source": prompt}), (twin, {"max_source": prompt, "prompt_len": prompt + 1})):
        target = out / f"{model}-p{prompt}-{fmt}"
        if not (target / "edgekit.json").is_file():
            with console.status(f"exporting {model} (prompt {prompt}) to {fmt}"):
                export(model, format=fmt, out_dir=target, samples=2, config={**config, "max_target": MAX_TARGET})
        dirs.append(target)
    return dirs[0], dirs[1]


def _feeds(graph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feed = {}
    for spec in graph.input_specs:
        if spec.dtype == "int32":
            feed[spec.name] = rng.integers(0, 256, spec.shape).astype(np.int32)
        elif spec.name == "position":
            feed[spec.name] = np.array([1.0], dtype=np.float32)
        elif spec.name == "src_mask":
            feed[spec.name] = np.ones(spec.shape, dtype=np.float32)
        else:
            feed[spec.name] = rng.standard_normal(spec.shape).astype(np.float32)
    return feed


def speed_part(size: str, out: Path, rounds: int, runs: int, console: Console, rows: list) -> Table:
    title = f"{SIZES[size]} vs its decoder-only twin: 1 thread, medians of {rounds} rounds x {runs} runs"
    table = Table(title=title)
    for col in ("size", "prompt", "format", "enc-dec params", "twin params", "first token ms (enc-dec / twin)",
                "ratio", "decode ms (enc-dec / twin)", "throughput ratio", "peak MiB (enc-dec / twin)"):  # fmt: skip
        table.add_column(col, justify="right")
    for prompt in PROMPTS:
        for fmt in FORMATS.names():
            enc_dec, twin = _bundles(out, size, prompt, fmt, console)
            med = _time_pair(enc_dec, twin, rounds, runs)
            memory = {name: _peak_mib(path) for name, path in (("ed", enc_dec), ("tw", twin))}
            params = [json.loads((p / "edgekit.json").read_text())["model"]["parameters"] for p in (enc_dec, twin)]
            rows.append({"size": size, "prompt": prompt, "format": fmt, "params": params, **med, "peak_mib": memory})
            table.add_row(
                size, str(prompt), fmt, f"{params[0]:,}", f"{params[1]:,}",
                f"{med['ed-first']:.3f} / {med['tw-first']:.3f}", f"{med['ed-first'] / med['tw-first']:.2f}",
                f"{med['ed-step']:.3f} / {med['tw-step']:.3f}", f"{med['tw-step'] / med['ed-step']:.2f}x",
                f"{memory['ed']:.1f} / {memory['tw']:.1f}",
            )  # fmt: skip
    return table


def _time_pair(enc_dec: Path, twin: Path, rounds: int, runs: int) -> dict[str, float]:
    """Median ms of: first token and one decode step, for the encoder-decoder (ed) and its twin (tw)."""
    ed = {name: runtimes.load(enc_dec, graph=name, threads=1) for name in ("encoder", "decoder_step")}
    tw = {name: runtimes.load(twin, graph=name, threads=1) for name in ("prefill", "decoder_step")}
    feeds = {(k, name): _feeds(rt) for k, group in (("ed", ed), ("tw", tw)) for name, rt in group.items()}
    fns = {
        "ed-first": lambda: (ed["encoder"].run(feeds["ed", "encoder"]),
                             ed["decoder_step"].run(feeds["ed", "decoder_step"])),
        "tw-first": lambda: tw["prefill"].run(feeds["tw", "prefill"]),
        "ed-step": lambda: ed["decoder_step"].run(feeds["ed", "decoder_step"]),
        "tw-step": lambda: tw["decoder_step"].run(feeds["tw", "decoder_step"]),
    }  # fmt: skip
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            samples[key].append(measure(fn, runs=runs, warmup=3).median)
    for rt in (*ed.values(), *tw.values()):
        rt.close()
    return {k: statistics.median(v) for k, v in samples.items()}


def _peak_mib(bundle: Path) -> float:
    """Peak RSS growth of a fresh process that loads ``bundle`` and runs 16 decode steps (after its first token)."""
    proc = subprocess.run([sys.executable, __file__, "--memory-of", str(bundle)], capture_output=True, text=True,
                          timeout=600, check=True)  # fmt: skip
    return float(proc.stdout.strip().splitlines()[-1])


def _memory_child(bundle: str) -> None:
    from edgekit.profiling.memory import PeakSampler, rss_bytes

    base = rss_bytes()
    with PeakSampler() as sampler:
        names = [g.name for g in read_bundle(bundle).graphs]
        loaded = {name: runtimes.load(bundle, graph=name, threads=1) for name in names}
        first, step = loaded[names[0]], loaded["decoder_step"]
        first.run(_feeds(first))
        feed = _feeds(step)
        for _ in range(16):
            step.run(feed)
    print((sampler.peak - base) / 2**20)


@dataclass(frozen=True)
class TrainRecipe:
    model: str
    pairs: int
    epochs: int
    lr: float


# string reversal with a 16-token source and cache; the larger model takes a lower learning rate
RECIPES = {
    "train": TrainRecipe("seq2seq_tiny", pairs=4000, epochs=10, lr=3e-3),
    "train30m": TrainRecipe("seq2seq_30m", pairs=12000, epochs=4, lr=5e-4),
}


def train_part(recipe: TrainRecipe, out: Path, rounds: int, runs: int, console: Console, rows: list) -> Table:
    from edgekit.generation.bundle_runner import BundleSeq2SeqRunner
    from edgekit.generation.sampling import generate
    from edgekit.generation.tasks import TASKS
    from edgekit.generation.train import train_seq2seq
    from edgekit.models import create_model
    from edgekit.training import save_weights

    config = {"max_source": 16, "max_target": 16}
    train, test = TASKS.get("reverse").split(recipe.pairs, 200)
    spec = create_model(recipe.model, **config)
    with console.status(f"training {recipe.model} on string reversal") as status:

        def progress(epoch: int, loss: float) -> None:
            status.update(f"training {recipe.model}: epoch {epoch}/{recipe.epochs}, loss {loss:.4f}")

        result = train_seq2seq(spec.module, train, test, epochs=recipe.epochs, lr=recipe.lr, on_epoch=progress)
    weights = save_weights(out / f"{recipe.model}-reverse.pt", spec, {"task": "reverse"})
    table = Table(
        title=f"{recipe.model} ({spec.parameters / 1e6:.1f}M) on string reversal, {recipe.pairs} pairs x "
        f"{recipe.epochs} epochs ({result.seconds / 60:.1f} min): exact match on {len(test)} held-out strings"
    )
    for col in ("runner", "exact match", "bundle bytes / weight bytes"):
        table.add_column(col, justify="right")
    table.add_row("PyTorch", f"{result.exact_match:.1%}", "-")
    rows.append({"model": recipe.model, "runner": "torch", "exact_match": result.exact_match,
                 "train_seconds": result.seconds, "final_loss": result.train_loss})  # fmt: skip
    for fmt in FORMATS.names():
        with console.status(f"exporting to {fmt}"):
            bundle = export(recipe.model, format=fmt, weights=weights, out_dir=out / f"{recipe.model}-{fmt}", samples=2)
        with BundleSeq2SeqRunner(bundle.bundle_dir) as runner:
            hits = sum(generate(runner, s, config["max_target"] - 1).text == t for s, t in test)
        size = bundle.manifest.total_bytes / (4 * bundle.manifest.model.parameters)
        rows.append({"model": recipe.model, "runner": fmt, "exact_match": hits / len(test), "size_ratio": size})
        table.add_row(fmt, f"{hits / len(test):.1%}", f"{size:.2f}x")
    return table


PARTS = {
    **{name: functools.partial(train_part, recipe) for name, recipe in RECIPES.items()},
    **{size: functools.partial(speed_part, size) for size in SIZES},
}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--memory-of":
        _memory_child(sys.argv[2])
    else:
        run_parts(__doc__.splitlines()[0], PARTS, "build/bench-seq2seq", default_runs=30)
