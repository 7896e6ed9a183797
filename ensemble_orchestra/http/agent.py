"""A Twisted Agent set up the way our servers need: verified https, a private CA bundle, a kept-alive pool."""

from __future__ import annotations

import re
from pathlib import Path

from twisted.internet.ssl import Certificate, trustRootFromCertificates
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool

__all__ = ["IDLE_CONNECTION_S", "make_agent"]

# Below Apache's default KeepAliveTimeout (5 s), so we drop an idle connection before the server does
# (a request sent on a connection the server is closing at that moment gets no answer).
IDLE_CONNECTION_S = 4

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def make_agent(
    reactor: object, *, ca_bundle: str | Path | None = None, connect_timeout: float = 30.0
) -> tuple[Agent, HTTPConnectionPool]:
    """An Agent with its own persistent pool; https verified (chain and host name) against
    *ca_bundle* (PEM, one or more certificates) or, without one, the system's CAs.

    The pool is returned so its owner can close it (``closeCachedConnections``).
    """
    trust_root = None
    if ca_bundle is not None:
        blocks = _PEM_CERT.findall(Path(ca_bundle).read_bytes())
        if not blocks:
            raise ValueError(f"no PEM certificate in the CA bundle {ca_bundle}")
        trust_root = trustRootFromCertificates([Certificate.loadPEM(b) for b in blocks])
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.cachedConnectionTimeout = IDLE_CONNECTION_S
    policy = BrowserLikePolicyForHTTPS(trustRoot=trust_root)
    return Agent(reactor, contextFactory=policy, connectTimeout=connect_timeout, pool=pool), pool
