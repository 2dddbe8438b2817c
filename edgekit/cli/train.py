"""``train`` (a model on a built-in dataset) and ``eval`` (held-out accuracy of a model or a bundle)."""

from __future__ import annotations

from pathlib import Path

import click

from edgekit.cli import render
from edgekit.cli.app import requiet, session
from edgekit.cli.options import parse_settings, set_option


@click.command()
@click.argument("model")
@click.option("--data", default="digits", show_default=True, help="Built-in dataset.")
@click.option("--epochs", default=30, show_default=True)
@click.option("--lr", default=3e-3, show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False), help="Weights file to write.")
@set_option
def train(model, data, epochs, lr, batch_size, seed, output, settings) -> None:
    """Train MODEL on a built-in dataset and save its weights (held-out accuracy printed)."""
    from rich.progress import Progress

    from edgekit.models import resolve_model
    from edgekit.training import save_weights, train_classifier

    requiet()
    ui = session()
    spec = resolve_model(model, **parse_settings(settings))
    with Progress(console=ui.err, transient=True) as progress:
        task = progress.add_task(f"training {spec.name} on {data}", total=epochs)
        result = train_classifier(
            spec,
            data,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            on_epoch=lambda e, loss, acc: progress.update(
                task, completed=e, description=f"epoch {e}/{epochs} loss {loss:.3f} acc {acc:.1%}"
            ),
        )
    record = {"dataset": data, "test_accuracy": result.test_accuracy, "epochs": epochs, "seed": seed,
              "train_threads": result.threads}  # fmt: skip
    save_weights(output, spec, record)
    ui.out.print(
        f"{spec.name}: held-out accuracy [bold]{result.test_accuracy:.2%}[/bold] on {data} after {epochs} epochs "
        f"({result.train_seconds:.1f} s, {render.count(spec.parameters)} parameters) -> {render.text(output)}",
        soft_wrap=True,
    )


@click.command(name="eval")
@click.argument("target")
@click.option("--data", default=None, help="Built-in dataset (default: the model's own).")
@click.option("-w", "--weights", type=click.Path(dir_okay=False), help="Weights file (models only).")
@set_option
def evaluate(target, data, weights, settings) -> None:
    """Held-out accuracy of a MODEL (with --weights) or of an exported BUNDLE."""
    from edgekit.evaluation import evaluate_bundle, evaluate_model

    if Path(target).exists():
        result = evaluate_bundle(target, data)
    else:
        result = evaluate_model(target, data, weights=weights, config=parse_settings(settings))
    session().out.print(
        f"{render.text(result.subject)}: accuracy [bold]{result.accuracy:.2%}[/bold] on {result.samples} held-out "
        f"{result.dataset} samples ({result.runner})",
        soft_wrap=True,
    )


COMMANDS = (train, evaluate)
