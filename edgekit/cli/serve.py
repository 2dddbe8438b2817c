"""``edgekit serve``: a bundle or a split plan as an Open Inference Protocol (KServe v2) endpoint.

Rendering only -- the work is in ``edgekit.serving``.
"""

from __future__ import annotations

import sys

import click

from edgekit.cli.app import session
from edgekit.cli.options import tls_option, token_option
from edgekit.cli.stop_signal import StopSignal


@click.command()
@click.argument("path", metavar="BUNDLE|PLANDIR", type=click.Path())
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback unless told).")
@click.option("--port", default=8001, show_default=True, help="gRPC port (0 picks a free one and prints it).")
@click.option("--http-port", default=8000, show_default=True, help="HTTP/REST port (0 picks a free one).")
@click.option("--no-http", is_flag=True, help="Serve gRPC only.")
@click.option("--name", help="Model name clients call (default: the bundle's or plan's model).")
@click.option("--graph", help="Which graph of a multi-graph bundle to serve (default: the first).")
@click.option("--threads", type=int, help="Runtime threads (a bundle served in-process).")
@click.option("--workers", help="A plan's workers: name=host:port,... or auto (default: devices.yaml's addresses).")
@click.option("--timeout", default=5.0, show_default=True, help="Seconds a plan's request may take, all workers.")
@click.option("--hedge-after", help="A plan's shard call unanswered after auto (its p95) or MS also goes to a replica.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False),
              help="A plan's run report (each request's record, retries, hedges) as JSON, on exit.")  # fmt: skip
@click.option("--degraded-ok", is_flag=True, help="A plan answers from the remaining shards when a worker fails.")
@click.option("--worker-tls", type=click.Path(file_okay=False),
              help="Identity presented to a plan's workers (default: --tls's).")  # fmt: skip
@click.option("--worker-token-file", type=click.Path(dir_okay=False), help="Bearer token for a plan's workers.")
@tls_option
@token_option
@click.option("--insecure", is_flag=True, help="Allow a non-loopback address without authentication.")
@click.option("--max-request-mb", default=16, show_default=True, help="Largest request body or gRPC message.")
@click.option("--max-calls", default=16, show_default=True, help="Inferences at once per transport.")
@click.option("--grace", default=10.0, show_default=True, help="Seconds in-flight calls get to finish on SIGTERM.")
def serve(path, host, port, http_port, no_http, name, graph, threads, workers, timeout, hedge_after, report_path,
          degraded_ok, worker_tls, worker_token_file, tls, token_file, insecure, max_request_mb, max_calls,
          grace) -> None:  # fmt: skip
    """Serve a bundle (in-process) or a split plan (through its workers) over the Open Inference Protocol:
    gRPC (inference.GRPCInferenceService) and HTTP/REST (/v2/...), e.g. for tritonclient."""
    from edgekit.errors import ConfigError
    from edgekit.fleet.auth import ClientAuth, ServerAuth
    from edgekit.serving import PlanOptions, open_backend
    from edgekit.serving import serve as start
    from edgekit.splitter import parse_workers

    if max_request_mb <= 0 or max_calls <= 0:
        raise ConfigError("--max-request-mb and --max-calls must be positive")
    auth = ServerAuth.from_options(tls, token_file, insecure)
    warning = auth.check_bind(host)  # before a plan deploys anything
    if warning:
        click.echo(warning, err=True)
    from edgekit.splitter.worker import check_port

    for p in (port, None if no_http else http_port):
        if p is not None:
            check_port(host, p)  # a port in use is found before a plan deploys or a bundle loads
    plan = PlanOptions(parse_workers(workers), timeout, degraded_ok,
                       ClientAuth.from_options(worker_tls or tls, worker_token_file), hedge_after,
                       report_path)  # fmt: skip
    with session().err.status("loading", spinner="dots"):
        backend = open_backend(path, name, graph, threads, plan)
    try:
        running = start(backend, host, port, None if no_http else http_port, auth, max_request_mb << 20, max_calls)
    except BaseException:
        backend.close()
        raise
    stop = StopSignal()
    meta = backend.metadata
    http = f", HTTP on {host}:{running.http_port}" if running.http_port is not None else ""
    click.echo(f"edgekit serve: model {meta.name} (version {meta.version}, {meta.platform}) on gRPC "
               f"{host}:{running.grpc_port}{http} (auth {auth.label})")  # fmt: skip
    sys.stdout.flush()
    stop.wait()
    if not running.drain(grace):
        session().err.print(f"grace period of {grace:g} s over: cutting calls short")
    running.stop()


COMMANDS = (serve,)
