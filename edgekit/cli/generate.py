"""``edgekit generate BUNDLE --prompt "..."``: stream generated text from an encoder-decoder bundle."""

from __future__ import annotations

import sys
import time

import click

from edgekit.cli.app import session


@click.command()
@click.argument("bundle", type=click.Path())
@click.option("-p", "--prompt", required=True, help="The source text (empty is allowed).")
@click.option("-n", "--max-new-tokens", default=16, show_default=True, help="Stop after this many tokens.")
@click.option("--temperature", default=0.0, show_default=True, help="0 is greedy; above 0 samples.")
@click.option("--top-k", default=0, show_default=True, help="Sample among the k most likely tokens (0: all).")
@click.option("--seed", default=0, show_default=True, help="Sampling seed.")
@click.option("--threads", type=int, help="Runtime threads.")
def generate(bundle, prompt, max_new_tokens, temperature, top_k, seed, threads) -> None:
    """Generate text from an encoder-decoder BUNDLE, streaming tokens as they come."""
    from edgekit.generation.bundle_runner import BundleSeq2SeqRunner
    from edgekit.generation.sampling import Sampling
    from edgekit.generation.sampling import generate as run_generation

    sampling = Sampling(temperature=temperature, top_k=top_k, seed=seed)
    times: list[float] = []
    with BundleSeq2SeqRunner(bundle, threads=threads) as runner:
        start = time.perf_counter()

        def show(_token: int, text: str) -> None:
            times.append(time.perf_counter() - start)
            click.echo(text, nl=False)
            sys.stdout.flush()

        result = run_generation(runner, prompt, max_new_tokens, sampling, on_token=show)
        total = time.perf_counter() - start
    click.echo()
    sys.stdout.flush()
    first = f"first token {times[0] * 1e3:.1f} ms, " if times else ""
    rate = f", {(len(times) - 1) / (times[-1] - times[0]):.0f} tokens/s after it" if len(times) > 2 else ""
    session().err.print(f"{len(result.tokens)} tokens ({result.stopped_by}); {first}{total * 1e3:.1f} ms in all{rate}",
                   soft_wrap=True)  # fmt: skip


COMMANDS = (generate,)
