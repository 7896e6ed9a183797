"""The one Agent factory for every HTTP boundary (Cobbler's XML-RPC, the WebDAV storage, later others).

Set up the way our servers need: https verified (chain and host name) against the system's CAs or a
private CA bundle, a private connection pool (never Twisted's global one) whose idle connections are
dropped before the server drops them, and a connect timeout.
"""

from __future__ import annotations

import re
from pathlib import Path

from twisted.internet.ssl import Certificate, trustRootFromCertificates
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool

from ..errors import UsageError

__all__ = ["IDLE_CONNECTION_S", "CABundle", "CABundleError", "make_agent", "read_ca_bundle"]

# Below Apache's default KeepAliveTimeout (5 s), so we drop an idle connection before the server does
# (a request sent on a connection the server is closing at that moment gets no answer, and Twisted
# does not resend a POST).
IDLE_CONNECTION_S = 4

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


class CABundleError(UsageError):
    """A CA bundle that cannot be used; the message names the file."""


# A CA bundle: the path of a PEM file, or the PEM text itself.
CABundle = str | Path | bytes


def read_ca_bundle(source: CABundle) -> list[bytes]:
    """The PEM certificate blocks of a CA bundle (text between them is ignored, as OpenSSL does): a file's
    path, or the PEM text itself as bytes (how the provisioning agent gets the workstation's bundle).

    The one check of a CA bundle, for every place that takes one (environments.yaml, setup-server, agents).
    """
    if isinstance(source, bytes):
        data, where = source, "the CA certificates' text"
    else:
        where = str(source)
        try:
            data = Path(source).read_bytes()
        except FileNotFoundError:
            raise CABundleError(f"{source}: no such file") from None
        except OSError as error:
            raise CABundleError(f"{source} cannot be read ({error.strerror})") from None
    blocks: list[bytes] = _PEM_CERT.findall(data)
    if not blocks:
        raise CABundleError(f"{where} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    return blocks


def make_agent(
    reactor: object,
    *,
    ca_bundle: CABundle | None = None,
    connect_timeout: float = 30.0,
    persistent: bool = True,
    max_per_host: int = 8,
) -> tuple[Agent, HTTPConnectionPool]:
    """An Agent with its own pool; https verified against *ca_bundle* (PEM, one or more certificates,
    replacing the system's CAs) or, without one, the system's CAs.

    *persistent* False opens one connection per request (for servers that close after each answer);
    *max_per_host* bounds the idle connections kept per server. The pool is returned so its owner can
    close it (``closeCachedConnections``) before the reactor stops.
    """
    trust_root = None
    if ca_bundle is not None:
        blocks = read_ca_bundle(ca_bundle)
        trust_root = trustRootFromCertificates([Certificate.loadPEM(b) for b in blocks])
    pool = HTTPConnectionPool(reactor, persistent=persistent)
    pool.maxPersistentPerHost = max_per_host
    pool.cachedConnectionTimeout = IDLE_CONNECTION_S
    policy = BrowserLikePolicyForHTTPS(trustRoot=trust_root)
    return Agent(reactor, contextFactory=policy, connectTimeout=connect_timeout, pool=pool), pool
