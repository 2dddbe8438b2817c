"""A fleet on one machine: a fleet CA, two workers serving mutual TLS on loopback, split inference through them.

1. `edgekit fleet init` makes a CA and the coordinator's identity; `edgekit fleet add-device` one identity
   per worker (pi-a, pi-b);
2. `edgekit split vit_digits --devices devices.yaml` trains the ViT and plans two ONNX shards;
3. two `edgekit worker --tls identities/NAME` processes start on loopback ports: each accepts only callers
   holding a certificate signed by this fleet's CA;
4. `edgekit infer-split --tls fleet/` deploys the shards and classifies the held-out digits as the coordinator
   (the fleet directory stands for its coordinator identity); then the same call without `--tls` is refused.

`edgekit devices` (mDNS discovery) is not run here: multicast announcements are only made by workers bound
beyond loopback, and these two listen on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from edgekit.splitter.local import start_local_worker

HERE = Path(__file__).resolve().parent
DEVICES = ("pi-a", "pi-b")


def edgekit(console: Console, *args: str, expect_failure: bool = False) -> None:
    console.print(f"[bold]$ edgekit {shlex.join(args)}[/bold]")
    proc = subprocess.run([sys.executable, "-m", "edgekit", *args])
    if expect_failure != bool(proc.returncode):
        console.print(f"exit code {proc.returncode}, expected {'non-zero' if expect_failure else '0'}")
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/demo-fleet")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs of the full model")
    parser.add_argument("--finetune-epochs", type=int, default=40, help="distillation epochs per shard")
    args = parser.parse_args()
    console = Console()
    out = Path(args.out)
    fleet, plan = out / "fleet", out / "plan"
    shutil.rmtree(fleet, ignore_errors=True)  # `fleet init` refuses to overwrite a CA
    console.rule("A fleet CA, two mTLS workers on loopback, split inference as the coordinator")
    edgekit(console, "fleet", "init", str(fleet))
    for name in DEVICES:
        edgekit(console, "fleet", "add-device", name, "--fleet", str(fleet))
    edgekit(console, "split", "vit_digits", "--devices", str(HERE / "devices.yaml"), "-o", str(plan),
            "--epochs", str(args.epochs), "--finetune-epochs", str(args.finetune_epochs))  # fmt: skip
    workers = []
    try:
        for name in DEVICES:
            identity = fleet / "identities" / name
            console.print(f"[bold]$ edgekit worker --port 0 --name {name} --tls {identity}[/bold]")
            workers.append(start_local_worker(name, out / "workers" / name, "--tls", str(identity)))
        console.print(", ".join(f"worker {w.name} on {w.address} (mTLS)" for w in workers))
        spec = ",".join(f"{w.name}={w.address}" for w in workers)
        edgekit(console, "infer-split", str(plan), "--workers", spec, "--tls", str(fleet), "--eval", "digits",
                "--timeout", "20")  # fmt: skip
        console.print("without --tls the coordinator has no certificate, so each worker refuses it:")
        edgekit(console, "infer-split", str(plan), "--workers", spec, "--eval", "digits", "--timeout", "10",
                expect_failure=True)  # fmt: skip
    finally:
        for worker in workers:
            worker.stop()
    console.print("fleet example done: mTLS split inference verified, plaintext caller refused")


if __name__ == "__main__":
    main()
