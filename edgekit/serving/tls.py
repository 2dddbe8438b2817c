"""The HTTP listener's TLS context from the same fleet identity the gRPC listener uses.

Python's ssl module reads a certificate chain from files only: the PEMs are written to a private temporary
directory for the moment of loading and removed at once. Client certificates are required exactly when gRPC
requires them (mutual TLS: an identity and no token).
"""

from __future__ import annotations

import os
import ssl
import tempfile
from pathlib import Path

from edgekit.fleet.auth import ServerAuth


def server_context(auth: ServerAuth) -> ssl.SSLContext | None:
    identity = auth.identity
    if identity is None:
        return None
    assert identity.cert_pem is not None and identity.key_pem is not None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="edgekit-tls-") as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_bytes(identity.cert_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(identity.key_pem)
        context.load_cert_chain(cert, key)
    if auth.mutual_tls:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=identity.ca_pem.decode())
    return context
