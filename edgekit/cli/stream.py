"""``edgekit stream BUNDLE --input seq.npy``: push a sequence through a streaming bundle frame by frame and
print the running prediction. Rendering only -- the work is in ``edgekit.streaming``."""

from __future__ import annotations

import json
import time

import click
import numpy as np

from edgekit.cli import render
from edgekit.cli.app import session


@click.command()
@click.argument("bundle", type=click.Path())
@click.option("-i", "--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help="A .npy sequence, (frames, features) or (1, frames, features).")  # fmt: skip
@click.option("--every", default=1, show_default=True, help="Print every N-th call (and the last).")
@click.option("--threads", type=int, help="Runtime threads.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per call instead of a table.")
def stream(bundle, input_path, every, threads, as_json) -> None:
    """Stream a sequence through BUNDLE (exported with --streaming) and print the prediction after each call."""
    from edgekit.errors import InputError
    from edgekit.inputs import read_array_file
    from edgekit.streaming import StreamSession
    from edgekit.validate import softmax

    sequence = read_array_file(input_path)
    if isinstance(sequence, dict):
        raise InputError(f"{input_path}: give one .npy array (frames, features), not an .npz archive")
    with StreamSession(bundle, threads=threads) as stream_session:
        names = stream_session.bundle.manifest.model.class_names
        layout = stream_session.layout
        sequence = stream_session.as_sequence(sequence)
        columns = ("frames", "prediction", "probability", "ms", *(("spike rate",) if layout.spikes_output else ()))
        title = (
            f"{render.text(bundle)}: {len(sequence)} frames, {layout.chunk} per call ({stream_session.runtime.name})"
        )
        table = render.table(title, dict.fromkeys(columns, "right"))
        calls = range(0, len(sequence), layout.chunk)
        for i, start in enumerate(calls):
            began = time.perf_counter()
            logits = stream_session.push(sequence[start : start + layout.chunk])[-1].astype(np.float64)
            ms = (time.perf_counter() - began) * 1e3
            probs = softmax(logits)
            best = int(probs.argmax())
            label = names[best] if names and best < len(names) else str(best)
            rate = float(stream_session.last_spikes.mean()) if stream_session.last_spikes is not None else None
            if as_json:
                record = {"frames": stream_session.frames_seen, "prediction": label, "probability": float(probs[best]),
                          "ms": ms, "spike_rate": rate}  # fmt: skip
                click.echo(json.dumps(record))
            elif i % every == 0 or i == len(calls) - 1:
                row = [str(stream_session.frames_seen), label, f"{probs[best]:.3f}", f"{ms:.3f}"]
                table.add_row(*row, *((f"{rate:.3f}",) if rate is not None else ()))
    if not as_json:
        session().out.print(table)


COMMANDS = (stream,)
