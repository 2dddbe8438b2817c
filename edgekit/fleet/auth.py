"""Who may call a worker, and how a coordinator proves it: mutual TLS with the fleet CA, and/or a bearer token.

The worker side is :class:`ServerAuth` (its gRPC credentials, the bind policy, the constant-time token check);
the coordinator side is :class:`ClientAuth` (a channel that presents this side's certificate and token, and
:meth:`ClientAuth.explain` turning gRPC's connection errors into one reason a person can act on). Tokens and
keys are never logged or put into error messages.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.errors import ConfigError
from edgekit.fleet.ca import CA_KEY, Identity, load_identity, validity_problem

log = logging.getLogger(__name__)

TOKEN_HEADER = "authorization"
MIN_TOKEN_CHARS = 16
# Keepalive on both sides: a coordinator or worker that vanished without closing is noticed within ~40 s.
KEEPALIVE = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
)
SERVER_KEEPALIVE = (*KEEPALIVE, ("grpc.http2.min_ping_interval_without_data_ms", 10_000))


def read_token(path: str | Path) -> str:
    path = Path(path)
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"--token-file {path}: cannot read it ({exc.strerror})") from None
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise ConfigError(
            f"--token-file {path}: a token is one line of at least {MIN_TOKEN_CHARS} characters without spaces "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    return token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything, so it is treated as reachable from outside


@dataclass(frozen=True)
class ServerAuth:
    """How a worker authenticates callers. Neither TLS nor a token: only allowed on loopback or with insecure."""

    identity: Identity | None = None
    token: str | None = field(default=None, repr=False)  # never in a log line or a traceback's locals
    insecure: bool = False

    @classmethod
    def from_options(cls, tls: str | None, token_file: str | None, insecure: bool) -> ServerAuth:
        if tls and (Path(tls) / CA_KEY).exists():
            raise ConfigError(f"--tls {tls} is the fleet directory (it holds the CA key, which stays with the "
                              "coordinator); give the device's directory from `edgekit fleet add-device`")  # fmt: skip
        identity = load_identity(tls) if tls else None
        if identity is not None and identity.cert_pem is None:
            raise ConfigError(f"--tls {tls}: a worker needs its own cert.pem and key.pem (`edgekit fleet add-device`)")
        return cls(identity, read_token(token_file) if token_file else None, insecure)

    @property
    def mutual_tls(self) -> bool:
        """Client certificates are required unless a token authenticates callers instead."""
        return self.identity is not None and self.token is None

    @property
    def label(self) -> str:
        parts = (["mtls"] if self.mutual_tls else ["tls"] if self.identity else []) + (["token"] if self.token else [])
        return "+".join(parts) or "none"

    def check_bind(self, host: str) -> str | None:
        """Refuse an unauthenticated or token-in-the-clear listener beyond loopback; the warning line to print."""
        if is_loopback(host):
            return None
        if self.identity is None and self.token is not None:
            raise ConfigError(f"--token-file on {host} needs --tls as well: a token sent in the clear can be read "
                              "by anyone on the network")  # fmt: skip
        if self.identity is None and not self.insecure:
            raise ConfigError(
                f"refusing to serve {host} without authentication: give --tls DIR (from `edgekit fleet add-device`)"
                ", with --token-file if callers have no certificate, or --insecure on a trusted network"
            )
        if self.identity is None:
            return f"warning: serving {host} without authentication (--insecure): anyone who reaches it can deploy"
        return None

    def bind(self, server: Any, host: str, port: int, what: str = "") -> int:
        """Add ``host:port`` to a gRPC server, with TLS when there is an identity; the port bound, or ConfigError."""
        from edgekit.errors import ConfigError

        try:
            if self.identity is not None:
                bound = server.add_secure_port(f"{host}:{port}", self.server_credentials())
            else:
                bound = server.add_insecure_port(f"{host}:{port}")
        except RuntimeError:
            bound = 0
        if bound == 0:
            raise ConfigError(f"cannot listen on {host}:{port}{what} (in use, or not an address of this machine)")
        return bound

    def server_credentials(self):
        import grpc

        assert self.identity is not None and self.identity.key_pem and self.identity.cert_pem
        return grpc.ssl_server_credentials(
            [(self.identity.key_pem, self.identity.cert_pem)],
            root_certificates=self.identity.ca_pem,
            require_client_auth=self.mutual_tls,
        )

    def token_refusal(self, metadata: Any) -> str | None:
        """Why a call's token is refused, or None (no token configured, or the right one; constant-time)."""
        if self.token is None:
            return None
        presented = next((v for k, v in metadata or () if k == TOKEN_HEADER), None)
        if not isinstance(presented, str) or not presented.startswith("Bearer "):
            return "this worker requires a bearer token (pass --token-file)"
        if not hmac.compare_digest(presented[7:].encode(), self.token.encode()):
            return "wrong bearer token"
        return None


@dataclass(frozen=True)
class ClientAuth:
    """What a coordinator presents: a fleet identity (TLS; with a certificate for mutual TLS) and/or a token."""

    identity: Identity | None = None
    token: str | None = field(default=None, repr=False)

    @classmethod
    def from_options(cls, tls: str | None, token_file: str | None) -> ClientAuth:
        return cls(load_identity(tls) if tls else None, read_token(token_file) if token_file else None)

    def channel(self, address: str, device: str, options: list[tuple[str, Any]]):
        """A channel to ``device`` at ``address``; over TLS the worker's certificate must name ``device``."""
        import grpc

        options = [*options, *KEEPALIVE]
        if self.identity is None:
            channel = grpc.insecure_channel(address, options=options)
        else:
            credentials = grpc.ssl_channel_credentials(
                self.identity.ca_pem, self.identity.key_pem, self.identity.cert_pem
            )
            options.append(("grpc.ssl_target_name_override", device))
            channel = grpc.secure_channel(address, credentials, options=options)
        if self.token is not None:
            channel = grpc.intercept_channel(channel, _token_interceptor_class()(self.token))
        return channel

    def local_problem(self) -> str | None:
        """A reason this side's own credentials cannot work, found before any connection (an expired cert)."""
        if self.identity is not None and self.identity.cert_pem is not None:
            return validity_problem(self.identity.cert_pem)
        return None

    def explain(self, code: str, details: str, address: str, device: str) -> str | None:
        """One reason for an authentication or TLS failure, or None when the error is about something else."""
        if code == "UNAUTHENTICATED":
            return f"refused the call: {details.splitlines()[0][:160] if details else 'not authenticated'}"
        if code != "UNAVAILABLE":
            return None
        for fragment, reason in _TLS_FAILURES:
            if fragment in details:
                return reason.format(device=device)
        if "Socket closed" not in details and "Connection reset" not in details:
            return None
        if self.identity is None:
            if speaks_tls(address):
                return "requires TLS and this side connected in plaintext: pass --tls DIR (a fleet identity)"
            return None
        if self.identity.cert_pem is None:
            return "closed the TLS handshake: it requires a client certificate and this side presents none"
        return "refused this side's certificate during the TLS handshake (not signed by the worker's fleet CA?)"


# gRPC's handshake errors, as this side's TLS library words them -> what they mean for the person.
_TLS_FAILURES = (
    ("Hostname Verification", "presented a certificate that is not issued to {device} (another device's?)"),
    ("certificate has expired", "presented an expired certificate"),
    ("CERTIFICATE_VERIFY_FAILED", "presented a certificate not signed by this fleet's CA (another fleet's?)"),
    ("WRONG_VERSION_NUMBER", "does not speak TLS (started without --tls?) and this side requires it"),
)


def speaks_tls(address: str, timeout: float = 2.0) -> bool:
    """Whether the listener at host:port answers a TLS ClientHello with a handshake (nothing is verified)."""
    host, _, port = address.rpartition(":")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as raw:
            with context.wrap_socket(raw):
                return True
    except (OSError, ValueError):
        return False


@functools.cache
def _token_interceptor_class():
    import grpc

    class CallDetails(grpc.ClientCallDetails):
        def __init__(self, base, metadata):
            self.method, self.timeout, self.metadata = base.method, base.timeout, metadata
            self.credentials, self.wait_for_ready = base.credentials, base.wait_for_ready
            self.compression = getattr(base, "compression", None)

    class TokenInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.StreamUnaryClientInterceptor):
        """Adds ``authorization: Bearer ...`` to every call of a channel."""

        def __init__(self, token: str):
            self._header = (TOKEN_HEADER, f"Bearer {token}")

        def __repr__(self) -> str:  # never show the token
            return "TokenInterceptor(***)"

        def _details(self, details):
            return CallDetails(details, [*(details.metadata or ()), self._header])

        def intercept_unary_unary(self, continuation, details, request):
            return continuation(self._details(details), request)

        def intercept_stream_unary(self, continuation, details, request_iterator):
            return continuation(self._details(details), request_iterator)

    return TokenInterceptor
