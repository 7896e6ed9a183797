"""TLS endpoints for tests (public, like ``treq.testing``): a private CA, a server certificate, a proxy.

``issue_certificates`` makes a CA bundle and a server certificate for 127.0.0.1 (an IP SAN only, so
``https://localhost:...`` is a certificate that does not name the host); ``listen_tls_proxy`` puts a
real TLS port with that certificate in front of a plain TCP server (the lab's cobblerd or Apache), so
the project's HTTP clients meet real handshakes against real servers behind them.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .failures import FAILURE_TABLE, FailureKind

__all__ = ["TestPKI", "failure_examples", "issue_certificates", "listen_tls_proxy"]


@dataclass(frozen=True)
class TestPKI:
    """A CA bundle file (PEM) and a server's key + certificate (PEM) signed by that CA."""

    ca_bundle: Path
    server_pem: bytes

    __test__ = False  # not a pytest test class


def issue_certificates(directory: Path, ip: str = "127.0.0.1") -> TestPKI:
    """A fresh CA in *directory*/ca.pem and a certificate naming only *ip*, valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject: str, key: Any, issuer_key: Any, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))])
            builder = builder.add_extension(san, critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_cert = certificate("test CA", ca_key, ca_key, ca=True)
    server_cert = certificate(ip, server_key, ca_key, ca=False)
    bundle = directory / "ca.pem"
    bundle.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    key_pem = server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return TestPKI(bundle, key_pem + server_cert.public_bytes(serialization.Encoding.PEM))


def listen_tls_proxy(reactor: Any, pki: TestPKI, backend_port: int, backend_host: str = "127.0.0.1") -> Any:
    """A TLS port on 127.0.0.1 (ephemeral) forwarding each connection to *backend_host*:*backend_port*.

    Returns the listening port (``getHost().port``; ``stopListening()`` when done).
    """
    from twisted.internet import ssl
    from twisted.protocols.portforward import ProxyFactory

    options = ssl.PrivateCertificate.loadPEM(pki.server_pem).options()
    return reactor.listenSSL(0, ProxyFactory(backend_host, backend_port), options, interface="127.0.0.1")


def failure_examples() -> list[tuple[BaseException, FailureKind]]:
    """One instance of every exception type ``http.failures.FAILURE_TABLE`` maps, with its kind: the rows a
    boundary's own table test loops over."""
    from twisted.web import client

    wrappers = (client.ResponseNeverReceived, client.ResponseFailed, client.RequestTransmissionFailed)
    examples: list[tuple[BaseException, FailureKind]] = []
    for exc_types, kind in FAILURE_TABLE:
        for exc_type in exc_types:
            exc: BaseException
            if exc_type in wrappers:
                exc = exc_type([])
            elif kind is FailureKind.TLS_UNTRUSTED:
                exc = exc_type([("SSL routines", "", "certificate verify failed")])
            elif exc_type is client.PartialDownloadError:
                exc = exc_type(200, b"body truncated", b"")
            else:
                exc = exc_type("x")
            examples.append((exc, kind))
    return examples
