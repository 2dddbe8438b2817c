"""LMUFormer and its spiking twin on digits: accuracy, cost, real-time prediction and latency per format.

1. train    — both variants (dim 64, memory order 32, one block) trained on scikit-learn's digits read as 16 frames
              of 4 pixels; held-out accuracy, parameters, FLOPs per sequence (of the exported whole-sequence graph,
              and of the streaming graph x frames), synaptic operations per sequence (multiply-accumulates where a
              layer's input is real, accumulates where it is spikes), spike rate, estimated synaptic energy
              (45 nm figures: 4.6 pJ a MAC, 0.9 pJ an AC), and the paper's Speech Commands layout for scale.
2. realtime — accuracy when the prediction is read after the first k% of the frames, in PyTorch and, for the
              streaming bundles, from the frames actually pushed through ONNX Runtime.
3. agreement — every held-out digit streamed frame by frame through each format's streaming bundle against the
              whole-sequence PyTorch model: worst per-frame prediction error, and for the spiking model how many
              sequences have identical spike trains and how many flip a neuron within 1e-4 of its threshold.
4. latency  — whole-sequence bundles (ms a sequence) and streaming bundles (ms a frame) per format against
              eager PyTorch on the same inputs; medians of interleaved rounds.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import torch
from parts import run_parts
from rich.console import Console
from rich.table import Table

from edgekit import runtimes
from edgekit.data import load_dataset
from edgekit.evaluation import REALTIME_FRACTIONS, bundle_step_predictions, model_step_predictions, realtime_accuracy
from edgekit.exporters.pipeline import export
from edgekit.exporters.verify_stream import stream_agreement
from edgekit.formats import FORMATS
from edgekit.models import create_model, prepare_model
from edgekit.models.spiking import recording, synaptic_operations
from edgekit.models.state import StreamState
from edgekit.profiling.latency import measure
from edgekit.streaming import StreamSession
from edgekit.training import read_weights, save_weights, train_classifier
from edgekit.transforms.streaming import streaming_spec

MODELS = ("lmuformer", "lmuformer_spiking")
EPOCHS = 30
# The paper's Speech Commands model: 128 mel features x 128 frames, dim 256, one block, 35 classes.
PAPER_CONFIG = {"in_features": 128, "seq_len": 128, "dim": 256, "order": 256, "num_classes": 35, "mlp_ratio": 4}


def train(model: str, out: Path, console: Console) -> tuple[Path, float]:
    path = out / f"{model}.pt"
    if not path.exists():
        spec = create_model(model)
        with console.status(f"training {model}"):
            result = train_classifier(spec, "digits", epochs=EPOCHS)
        save_weights(path, spec, {"dataset": "digits", "test_accuracy": result.test_accuracy})
    _, meta = read_weights(path)
    return path, float(meta["extra"]["test_accuracy"])


def train_part(out: Path, rounds: int, runs: int, console: Console, rows: list) -> Table:
    table = Table(title=f"LMUFormer on digits (16 frames x 4 pixels, {EPOCHS} epochs, 359 held-out)")
    for col in ("model", "params", "accuracy", "MFLOP/seq whole graph", "MFLOP/seq streaming", "MACs/seq",
                "ACs/seq", "spike rate", "synaptic energy uJ/seq"):  # fmt: skip
        table.add_column(col, justify="right")
    split = load_dataset("digits", (1, 16, 4))
    x = torch.from_numpy(split.x_test)
    for model in MODELS:
        weights, accuracy = train(model, out, console)
        spec = prepare_model(model, weights)
        step, _ = streaming_spec(spec)
        ops = synaptic_operations(spec.module, x)
        with torch.no_grad(), recording(spec.module) as record:
            spec.module(x)
        rate = float(torch.cat([s.flatten() for s in record.spikes]).mean()) if record.spikes else None
        row = {
            "model": model, "parameters": spec.parameters, "accuracy": accuracy, "flops_whole": spec.flops(),
            "flops_streaming": step.flops() * 16, "macs": ops.macs, "acs": ops.acs, "spike_rate": rate,
            "energy_uj": ops.energy_uj(),
        }  # fmt: skip
        rows.append(row)
        table.add_row(model, f"{row['parameters']:,}", f"{accuracy:.2%}", f"{row['flops_whole'] / 1e6:.3f}",
                      f"{row['flops_streaming'] / 1e6:.3f}", f"{ops.macs:,.0f}", f"{ops.acs:,.0f}",
                      "-" if rate is None else f"{rate:.3f}", f"{row['energy_uj']:.3f}")  # fmt: skip
    for model in MODELS:
        paper = create_model(model, **PAPER_CONFIG)
        table.add_row(f"{model} (paper layout, untrained)", f"{paper.parameters:,}", "-", "-", "-", "-", "-", "-", "-")
        rows.append({"model": model + " paper layout", "parameters": paper.parameters})
    return table


def realtime_part(out: Path, rounds: int, runs: int, console: Console, rows: list) -> Table:
    split = load_dataset("digits", (1, 16, 4))
    columns = {}
    for model in MODELS:
        weights, _ = train(model, out, console)
        spec = prepare_model(model, weights)
        columns[f"{model} torch"] = realtime_accuracy(model_step_predictions(spec, split), split.y_test)
        with console.status(f"{model}: streaming export (onnx)"):
            bundle = export(model, format="onnx", weights=weights, streaming=True, out_dir=out / f"{model}-onnx-stream")
        steps, labels, _ = bundle_step_predictions(bundle.bundle_dir, "digits")
        columns[f"{model} streamed (ORT)"] = realtime_accuracy(steps, labels)
    table = Table(title="Real-time prediction: accuracy after the first k% of the 16 frames")
    table.add_column("k", justify="right")
    table.add_column("frames", justify="right")
    for name in columns:
        table.add_column(name, justify="right")
    for i, fraction in enumerate(REALTIME_FRACTIONS):
        readings = [column[i] for column in columns.values()]
        table.add_row(f"{fraction:.0%}", str(readings[0].frames), *(f"{r.accuracy:.2%}" for r in readings))
        rows.append({"fraction": fraction, "frames": readings[0].frames,
                     **{name: column[i].accuracy for name, column in columns.items()}})  # fmt: skip
    return table


def agreement_part(out: Path, rounds: int, runs: int, console: Console, rows: list) -> Table:
    split = load_dataset("digits", (1, 16, 4))
    table = Table(
        title=f"Streaming bundles vs the whole-sequence model, {len(split.x_test)} held-out digits x 16 frames"
    )
    for col in ("model", "format", "max abs err (every frame)", "spike trains identical", "near-threshold flips",
                "unexplained flips", "neuron-frames compared"):  # fmt: skip
        table.add_column(col, justify="right")
    for model in MODELS:
        weights, _ = train(model, out, console)
        whole = prepare_model(model, weights)
        for fmt in FORMATS.names():
            with console.status(f"{model}: streaming export ({fmt})"):
                bundle = export(
                    model, format=fmt, weights=weights, streaming=True, out_dir=out / f"{model}-{fmt}-stream"
                )
            worst, identical, near, unexplained, compared = 0.0, 0, 0, 0, 0
            with StreamSession(bundle.bundle_dir) as session:
                for sequence in split.x_test:
                    want, got, agreement = stream_agreement(whole, session, sequence[None], 1e-4)
                    if agreement is not None:
                        identical += agreement.flipped == 0
                        near += agreement.flipped > 0 and agreement.near_threshold
                        unexplained += not agreement.explained
                        compared += agreement.neurons * agreement.compared_steps
                    worst = max(worst, float(np.abs(want - got).max(initial=0.0)))
            spiking = model == "lmuformer_spiking"
            rows.append({
                "model": model, "format": fmt, "max_abs_err": worst, "identical": identical if spiking else None,
                "near_threshold_flips": near, "unexplained_flips": unexplained, "neuron_frames": compared,
            })  # fmt: skip
            table.add_row(model, fmt, f"{worst:.2e}", f"{identical}/{len(split.x_test)}" if spiking else "-",
                          str(near) if spiking else "-", str(unexplained) if spiking else "-",
                          f"{compared:,}" if spiking else "-")  # fmt: skip
    return table


def _median_of_rounds(fns: dict, rounds: int, runs: int) -> dict:
    """Median over interleaved rounds, so that drift on a shared machine hits every contender alike."""
    samples: dict = {key: [] for key in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            samples[key].append(measure(fn, runs=runs, warmup=3).median)
    return {key: statistics.median(v) for key, v in samples.items()}


def latency_part(out: Path, rounds: int, runs: int, console: Console, rows: list) -> Table:
    torch.set_num_threads(1)
    table = Table(title=f"Latency, 1 thread, medians of {rounds} interleaved rounds x {runs} runs")
    for col in ("model", "format", "whole seq ms", "eager ms", "speedup", "per frame ms", "eager ms/frame",
                "speedup ", "frames/s"):  # fmt: skip
        table.add_column(col, justify="right")
    sequence = load_dataset("digits", (1, 16, 4)).x_test[:1]
    frame = sequence[0, :1]
    for model in MODELS:
        weights, _ = train(model, out, console)
        spec = prepare_model(model, weights)
        x = torch.from_numpy(sequence)
        with torch.no_grad():
            state = StreamState()
            spec.module.stream_step(torch.from_numpy(frame[None]), state)
        carried = state.outputs

        def eager_whole(x=x, spec=spec):
            with torch.no_grad():
                spec.module(x)

        first_frame = torch.from_numpy(frame[None])

        def eager_frame(spec=spec, carried=carried, f=first_frame):
            with torch.no_grad():
                spec.module.stream_step(f, StreamState(list(carried)))

        fns, opened = {"eager whole": eager_whole, "eager frame": eager_frame}, []
        for fmt in FORMATS.names():
            with console.status(f"{model}: exporting {fmt}"):
                whole = export(model, format=fmt, weights=weights, out_dir=out / f"{model}-{fmt}")
                stream = export(
                    model, format=fmt, weights=weights, streaming=True, out_dir=out / f"{model}-{fmt}-stream"
                )
            runtime = runtimes.load(whole.bundle_dir, threads=1)
            session = StreamSession(stream.bundle_dir, threads=1)
            opened += [runtime, session]
            fns[f"{fmt} whole"] = lambda rt=runtime: rt.run({"frames": sequence})
            fns[f"{fmt} frame"] = lambda s=session: s.push(frame)
        medians = _median_of_rounds(fns, rounds, runs)
        for handle in opened:
            handle.close()
        for fmt in FORMATS.names():
            w, f = medians[f"{fmt} whole"], medians[f"{fmt} frame"]
            row = {"model": model, "format": fmt, "whole_ms": w, "eager_whole_ms": medians["eager whole"],
                   "frame_ms": f, "eager_frame_ms": medians["eager frame"]}  # fmt: skip
            rows.append(row)
            table.add_row(model, fmt, f"{w:.3f}", f"{medians['eager whole']:.3f}", f"{medians['eager whole'] / w:.1f}x",
                          f"{f:.4f}", f"{medians['eager frame']:.3f}", f"{medians['eager frame'] / f:.1f}x",
                          f"{1e3 / f:,.0f}")  # fmt: skip
    return table


PARTS = {"train": train_part, "realtime": realtime_part, "agreement": agreement_part, "latency": latency_part}


def main() -> None:
    run_parts(__doc__.splitlines()[0], PARTS, "build/bench-lmuformer", default_runs=50)


if __name__ == "__main__":
    main()
