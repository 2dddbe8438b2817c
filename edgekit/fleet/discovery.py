"""Finding workers on the local network: mDNS / DNS-SD announcements (``_edgekit._tcp.local.``) with zeroconf.

A worker bound beyond loopback announces its device name, CPU architecture, runtimes, memory, matmul GFLOP/s
and the sha256 fingerprint of its TLS certificate. A coordinator browsing for them (``edgekit devices``,
``--workers auto``, ``address: auto``) trusts an announcement only as far as the TLS handshake backs it: a
worker whose presented certificate does not have the announced fingerprint is refused. Multicast does not
cross routers, VLANs, Docker bridges or SSH tunnels; static addresses keep working for those.
"""

from __future__ import annotations

import logging
import platform
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

from edgekit.errors import ConfigError, MissingDependencyError, WorkerError
from edgekit.fleet.ca import Identity, der_fingerprint

log = logging.getLogger(__name__)

SERVICE_TYPE = "_edgekit._tcp.local."
TXT_VERSION = "1"
# How long a starting worker listens for another one already answering to its name (queries are repeated).
NAME_CHECK_MS = 2000


def _zeroconf():
    try:
        import zeroconf
    except ImportError:
        raise MissingDependencyError("zeroconf", "fleet", "discovering workers over mDNS") from None
    return zeroconf


@dataclass(frozen=True)
class Announcement:
    """What one worker says about itself (its TXT record), and where it answered."""

    name: str
    host: str
    port: int
    arch: str
    runtimes: tuple[str, ...]
    memory_bytes: int
    gflops: float
    fingerprint: str  # "" when the worker serves without TLS
    auth: str  # mtls, tls+token, token or none

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def properties(self) -> dict[str, str]:
        return {
            "v": TXT_VERSION, "name": self.name, "arch": self.arch, "runtimes": ",".join(self.runtimes),
            "memory": str(self.memory_bytes), "gflops": f"{self.gflops:.2f}", "sha256": self.fingerprint,
            "auth": self.auth,
        }  # fmt: skip

    @classmethod
    def from_info(cls, info: Any) -> Announcement | None:
        props = {k.decode(): (v or b"").decode() for k, v in (info.properties or {}).items()}
        hosts = info.parsed_addresses()
        if props.get("v") != TXT_VERSION or not hosts or not props.get("name"):
            return None
        try:
            return cls(
                props["name"], hosts[0], int(info.port), props.get("arch", "?"),
                tuple(filter(None, props.get("runtimes", "").split(","))), int(props.get("memory") or 0),
                float(props.get("gflops") or 0), props.get("sha256", ""), props.get("auth", "?"),
            )  # fmt: skip
        except ValueError:
            return None


def memory_available() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def this_device(name: str, host: str, port: int, runtimes: list[str], gflops: float, fingerprint: str | None,
                auth: str) -> Announcement:  # fmt: skip
    return Announcement(name, host, port, platform.machine(), tuple(runtimes), memory_available(), gflops,
                        fingerprint or "", auth)  # fmt: skip


def local_addresses() -> list[str]:
    """This machine's IPv4 addresses beyond loopback: what a worker bound to 0.0.0.0 announces."""
    import ipaddress

    try:
        import ifaddr
    except ImportError:
        raise MissingDependencyError("ifaddr", "fleet", "announcing a worker bound to every address") from None
    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ipaddress.ip_address(ip.ip).is_loopback:
                found.append(ip.ip)
    return found


def _name_taken(name: str, where: str) -> ConfigError:
    return ConfigError(f"another worker already announces {name!r}{where} on this network: give this one another "
                       "--name, or --no-announce")  # fmt: skip


class Announcer:
    """Keeps one worker's announcement registered until closed."""

    def __init__(self, announcement: Announcement, interface: str | None = None):
        """``interface``: the address to send announcements from (default: the one the worker listens on)."""
        zc = _zeroconf()
        self.announcement = announcement
        interface = interface or announcement.host
        interfaces = [interface] if interface not in ("0.0.0.0", "::") else zc.InterfaceChoice.All
        hosts = local_addresses() if announcement.host in ("0.0.0.0", "::") else [announcement.host]
        addresses = [socket.inet_aton(h) for h in hosts]
        self._zc = zc.Zeroconf(interfaces=interfaces)
        self._refuse_a_taken_name(zc)
        self._info = zc.ServiceInfo(
            SERVICE_TYPE, f"{announcement.name}.{SERVICE_TYPE}", port=announcement.port,
            properties=announcement.properties(), addresses=addresses, server=f"{announcement.name}.local.",
        )  # fmt: skip
        try:
            self._zc.register_service(self._info, allow_name_change=False)
        except zc.NonUniqueNameException:
            self._zc.close()
            raise _name_taken(announcement.name, "") from None

    def _refuse_a_taken_name(self, zc: Any) -> None:
        # zeroconf's own probe returns as soon as its third query is sent, so an answer that takes longer than
        # ~0.35 s (a loaded device) is missed; ask for the name itself and wait for a live responder.
        name = self.announcement.name
        try:
            taken = self._zc.get_service_info(SERVICE_TYPE, f"{name}.{SERVICE_TYPE}", timeout=NAME_CHECK_MS)
        except Exception:
            self._zc.close()
            raise
        if taken is not None:
            self._zc.close()
            raise _name_taken(name, f" at {taken.parsed_addresses()[0] if taken.parsed_addresses() else '?'}"
                                    f":{taken.port}")  # fmt: skip

    def close(self) -> None:
        try:
            self._zc.unregister_service(self._info)
        finally:
            self._zc.close()


def browse(timeout: float = 3.0) -> list[Announcement]:
    """Every edgekit worker that answers within ``timeout`` seconds, by name."""
    zc = _zeroconf()
    found: dict[str, Announcement] = {}
    conf = zc.Zeroconf()
    names: set[str] = set()

    class Listener(zc.ServiceListener):
        def add_service(self, _zc, _type, name):
            names.add(name)

        def update_service(self, _zc, _type, name):
            names.add(name)

        def remove_service(self, _zc, _type, name):
            names.discard(name)

    try:
        zc.ServiceBrowser(conf, SERVICE_TYPE, listener=Listener())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.1)
            for name in sorted(names - {f"{a.name}.{SERVICE_TYPE}" for a in found.values()}):
                left_ms = int(max(0.1, deadline - time.monotonic()) * 1e3)
                info = conf.get_service_info(SERVICE_TYPE, name, timeout=left_ms)
                announcement = Announcement.from_info(info) if info else None
                if announcement:
                    found[announcement.name] = announcement
    finally:
        conf.close()
    return sorted(found.values(), key=lambda a: a.name)


def presented_fingerprint(address: str, device: str, identity: Identity, timeout: float = 3.0) -> str:
    """sha256 of the certificate the listener at ``address`` presents, checked against the fleet CA and ``device``."""
    host, _, port = address.rpartition(":")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=identity.ca_pem.decode())
    context.set_alpn_protocols(["h2"])
    with socket.create_connection((host, int(port)), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=device) as tls:
            return der_fingerprint(tls.getpeercert(binary_form=True))


def check_fingerprint(announcement: Announcement, identity: Identity | None) -> None:
    """Refuse a discovered worker whose TLS certificate is not the one it announced (WorkerError)."""
    label = f"{announcement.name} ({announcement.address}, discovered)"
    if identity is None or not announcement.fingerprint:
        return
    try:
        presented = presented_fingerprint(announcement.address, announcement.name, identity)
    except ssl.SSLCertVerificationError as exc:
        why = exc.verify_message or "verification failed"
        raise WorkerError(label, f"presents a certificate this fleet's CA does not accept ({why})") from None
    except (OSError, ssl.SSLError) as exc:
        raise WorkerError(label, f"TLS check of the announced certificate failed: {exc}") from None
    if presented != announcement.fingerprint:
        raise WorkerError(label, f"presents certificate sha256 {presented[:16]}... but announced "
                                 f"{announcement.fingerprint[:16]}... (a spoofed announcement?); refused")  # fmt: skip


def resolve(names: list[str], identity: Identity | None, timeout: float = 3.0) -> dict[str, str]:
    """Addresses of the named devices from their announcements, each fingerprint-checked."""
    found = {a.name: a for a in browse(timeout)}
    missing = [n for n in names if n not in found]
    if missing:
        seen = ", ".join(sorted(found)) or "none"
        raise WorkerError(missing[0], f"no announcement within {timeout:g} s (workers seen: {seen}); "
                                      "give its address, or check that multicast reaches it")  # fmt: skip
    for name in names:
        check_fingerprint(found[name], identity)
    return {n: found[n].address for n in names}


def reachability(announcement: Announcement, auth: Any) -> tuple[bool, str]:
    """(answers a standard health check, why not): the fingerprint first when both sides use TLS."""
    try:
        check_fingerprint(announcement, auth.identity)
    except WorkerError as exc:
        return False, str(exc).split("): ", 1)[-1]
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with auth.channel(announcement.address, announcement.name, []) as channel:
        try:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
        except grpc.RpcError as exc:
            code, details = exc.code().name, exc.details() or ""
            return False, auth.explain(code, details, announcement.address, announcement.name) or code.lower()
    serving = status.status == health_pb2.HealthCheckResponse.SERVING
    return serving, "" if serving else "not serving (loading or draining)"
