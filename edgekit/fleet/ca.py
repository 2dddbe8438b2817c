"""The fleet's certificate authority: one ECDSA P-256 CA that signs every device's and coordinator's certificate.

A fleet directory holds ``ca.pem`` and ``ca.key`` (the CA; the key never leaves this machine) and one identity
directory per member under ``identities/NAME/`` with ``ca.pem``, ``cert.pem`` and ``key.pem``: that directory is
what is copied to a device and given to ``edgekit worker --tls``, or to a coordinator command's ``--tls``. The
member's name is the certificate's DNS SAN; coordinators check it against the device they meant to reach.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.errors import ConfigError, MissingDependencyError

CA_CERT, CA_KEY = "ca.pem", "ca.key"
CERT, KEY = "cert.pem", "key.pem"
IDENTITIES = "identities"
COORDINATOR = "coordinator"
_MEMBER = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")  # a DNS label: what a SAN dNSName may hold


def _crypto():
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        raise MissingDependencyError("cryptography", "fleet", "a fleet's certificates") from None
    return x509, hashes, serialization, ec, ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Identity:
    """A member's credentials as PEM bytes: what gRPC's TLS credentials take."""

    name: str
    ca_pem: bytes
    cert_pem: bytes | None  # None: a client that only checks the worker (token mode)
    key_pem: bytes | None = field(repr=False)

    @property
    def fingerprint(self) -> str | None:
        return fingerprint(self.cert_pem) if self.cert_pem else None


def check_member_name(name: str) -> str:
    if not _MEMBER.fullmatch(name):
        raise ConfigError(f"{name!r} cannot name a fleet member: lower-case letters, digits and '-' (a DNS label)")
    return name


def init_fleet(root: str | Path, days: int = 3650) -> Path:
    """A new CA in ``root`` and the coordinator's identity beside it; refuses to overwrite an existing CA."""
    x509, hashes, serialization, ec, _, NameOID = _crypto()  # noqa: N806
    root = Path(root)
    if (root / CA_KEY).exists():
        raise ConfigError(f"{root} already holds a fleet CA ({CA_KEY}); use another directory")
    root.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"edgekit fleet CA {os.urandom(4).hex()}")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(root / CA_KEY, _key_pem(key, serialization))
    (root / CA_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    issue(root, COORDINATOR, days=days)
    return root


def issue(
    root: str | Path,
    name: str,
    days: int = 825,
    not_before: dt.datetime | None = None,
    addresses: tuple[str, ...] = (),
) -> Path:
    """Key + certificate for member ``name`` signed by the fleet CA in ``root``; returns its identity directory.

    ``addresses``: IP addresses to add to the SAN as well (for clients that verify by address)."""
    import ipaddress

    x509, hashes, serialization, ec, ExtendedKeyUsageOID, NameOID = _crypto()  # noqa: N806
    root = Path(root)
    check_member_name(name)
    if not (root / CA_KEY).is_file():
        raise ConfigError(f"{root} is not a fleet directory (no {CA_KEY}); create one with `edgekit fleet init`")
    ca_key = serialization.load_pem_private_key((root / CA_KEY).read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate((root / CA_CERT).read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    try:
        ips = [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    except ValueError as exc:
        raise ConfigError(f"--address: {exc}") from None
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name), *ips]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out = root / IDENTITIES / name
    out.mkdir(parents=True, exist_ok=True)
    _write_private(out / KEY, _key_pem(key, serialization))
    (out / CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (out / CA_CERT).write_bytes((root / CA_CERT).read_bytes())
    return out


def load_identity(path: str | Path) -> Identity:
    """An identity directory (``ca.pem`` [+ ``cert.pem`` + ``key.pem``]), or a fleet directory (its coordinator)."""
    path = Path(path)
    if not (path / CERT).exists() and (path / IDENTITIES / COORDINATOR / CERT).exists():
        path = path / IDENTITIES / COORDINATOR
    if not (path / CA_CERT).is_file():
        raise ConfigError(f"--tls {path}: no {CA_CERT} there (an identity directory from `edgekit fleet add-device`)")
    has_cert, has_key = (path / CERT).is_file(), (path / KEY).is_file()
    if has_cert != has_key:
        raise ConfigError(f"--tls {path}: {CERT} and {KEY} go together; one of them is missing")
    cert = (path / CERT).read_bytes() if has_cert else None
    name = certificate_name(cert) if cert else path.name
    return Identity(name, (path / CA_CERT).read_bytes(), cert, (path / KEY).read_bytes() if has_key else None)


def certificate_name(cert_pem: bytes) -> str:
    x509 = _crypto()[0]
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise ConfigError("the certificate has no subject alternative name; issue it with `edgekit fleet`") from None
    dns = names.get_values_for_type(x509.DNSName)
    if not dns:
        raise ConfigError("the certificate names no device (no DNS SAN); issue it with `edgekit fleet`")
    return dns[0]


def validity_problem(cert_pem: bytes, now: dt.datetime | None = None) -> str | None:
    """Why this certificate would be refused for its dates right now, or None."""
    x509 = _crypto()[0]
    cert = x509.load_pem_x509_certificate(cert_pem)
    now = now or dt.datetime.now(dt.timezone.utc)
    if now > cert.not_valid_after_utc:
        return f"this side's certificate ({certificate_name(cert_pem)}) expired on {cert.not_valid_after_utc:%Y-%m-%d}"
    if now < cert.not_valid_before_utc:
        return f"this side's certificate ({certificate_name(cert_pem)}) is not valid before {cert.not_valid_before_utc}"
    return None


def fingerprint(cert_pem: bytes) -> str:
    """sha256 of the certificate's DER encoding, hex: what discovery announces and checks."""
    x509, _, serialization, *_ = _crypto()
    return der_fingerprint(x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER))


def der_fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def _key_pem(key, serialization) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
