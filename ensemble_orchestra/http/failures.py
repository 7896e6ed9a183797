"""One classification of what can go wrong on the way to an HTTP server, for every HTTP boundary.

The Cobbler transport and the WebDAV storage (and anything later that speaks HTTP) meet the same
Twisted exceptions: connection refused, DNS failures, connections lost mid-exchange, our deadline,
and TLS failures. ``classify`` maps them, through ``FAILURE_TABLE``, to a ``NetworkFailure``: a kind,
whether the request certainly never reached the server, and one line for the user. Each boundary
then maps the *kind* to its own error class (``CobblerTLSError``, ``StorageUnavailable`` ...), so a
certificate problem is fatal and named the same way everywhere, and a lost connection is retryable
everywhere.

TLS failures are checked first: Twisted reports a certificate that names another host as a lost
connection whose reason is service_identity's ``VerificationError``, and an untrusted chain as
pyOpenSSL's ``SSL.Error``; neither may be retried around.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.internet import error as net_error
from twisted.web import client as web_client

__all__ = ["FAILURE_TABLE", "FailureKind", "NetworkFailure", "classify", "reasons"]


class FailureKind(enum.Enum):
    """What went wrong, as far as a caller deciding to retry or to give up needs to know."""

    TLS_NAME = "the certificate does not name the host"  # fatal: wrong URL or wrong certificate
    TLS_UNTRUSTED = "the certificate is not trusted"  # fatal: a CA bundle is missing
    TLS_HANDSHAKE = "the TLS handshake failed"  # fatal: often an https URL on a plain-http port
    NOT_SENT = "could not connect"  # retryable; the request never left, so even a non-idempotent call may be resent
    TIMEOUT = "timed out"  # retryable; the server may still be working on it
    LOST = "connection lost"  # retryable; whether the server acted is unknown

    @property
    def retryable(self) -> bool:
        return self not in _TLS_KINDS


_TLS_KINDS = (FailureKind.TLS_NAME, FailureKind.TLS_UNTRUSTED, FailureKind.TLS_HANDSHAKE)


def _tls_types() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(host name mismatch, untrusted chain) exception types; both libraries come with twisted[tls]."""
    from OpenSSL.SSL import Error as SSLError
    from service_identity import VerificationError

    return (VerificationError,), (SSLError,)


_NAME_MISMATCH, _UNTRUSTED = _tls_types()

# (exception types, kind). Checked in order against the exception and every reason Twisted wrapped in it.
FAILURE_TABLE: tuple[tuple[tuple[type[BaseException], ...], FailureKind], ...] = (
    (_NAME_MISMATCH, FailureKind.TLS_NAME),
    (_UNTRUSTED, FailureKind.TLS_UNTRUSTED),
    (
        (net_error.ConnectionRefusedError, net_error.DNSLookupError, net_error.ConnectError, web_client.RequestNotSent),
        FailureKind.NOT_SENT,
    ),
    ((defer.TimeoutError,), FailureKind.TIMEOUT),  # our deadline (http.deadline); a caller's cancel is no failure
    (
        (
            web_client.ResponseNeverReceived,
            web_client.ResponseFailed,
            web_client.RequestTransmissionFailed,
            web_client.PartialDownloadError,  # http.body.read_body: the body was cut short
            net_error.ConnectionLost,
            net_error.ConnectionDone,
            OSError,  # ConnectionResetError and friends
        ),
        FailureKind.LOST,
    ),
)


def reasons(exc: BaseException) -> Iterator[BaseException]:
    """*exc* and, depth first, the causes Twisted wrapped in it (ResponseNeverReceived carries Failures)."""
    yield exc
    for reason in getattr(exc, "reasons", None) or ():
        yield from reasons(getattr(reason, "value", reason))


@dataclass(frozen=True)
class NetworkFailure:
    """A classified transport failure of one request to *url*."""

    kind: FailureKind
    url: str
    detail: str  # the innermost cause, for the message
    timeout: float | None = None

    @property
    def retryable(self) -> bool:
        return self.kind.retryable

    @property
    def request_sent(self) -> bool | None:
        """False when the request certainly never reached the server; None when unknown."""
        return False if self.kind is FailureKind.NOT_SENT else None

    @property
    def hostname(self) -> str:
        return urlsplit(self.url).hostname or self.url

    @property
    def is_tls(self) -> bool:
        return self.kind in _TLS_KINDS

    def tls_message(self, what: str, url_key: str) -> str:
        """One line for a TLS failure: *what* is the server ("Cobbler", "the storage"), *url_key* the setting naming it.

        Transport failures that may pass are worded by each boundary (its tests pin them); a certificate
        problem reads the same everywhere, says it is not retried, and what to change.
        """
        if self.kind is FailureKind.TLS_NAME:
            return (
                f"the TLS certificate of {what} at {self.url} is not issued for the host name {self.hostname!r}:"
                f" set {url_key} to a name the certificate is issued for, or give the server a certificate"
                f" for {self.hostname}; not retried"
            )
        if self.kind is FailureKind.TLS_HANDSHAKE:
            return (
                f"the TLS handshake with {what} at {self.url} failed ({self.detail}): check that {url_key} names"
                " an https port (or use http://); not retried"
            )
        return (
            f"the TLS certificate of {what} at {self.url} is not trusted ({self.detail}): if a private CA signed"
            " it, name that CA bundle (PEM) in the environment's ca-bundle; not retried"
        )

    def message(self, what: str, method: str, url_key: str) -> str:
        """One line for the user, the same for every boundary: *what* the server is ("Cobbler", "the storage"),
        *method* the HTTP method that failed, *url_key* the setting naming the server."""
        if self.is_tls:
            return self.tls_message(what, url_key)
        if self.kind is FailureKind.TIMEOUT and self.timeout is not None:
            return f"{what} is unavailable: no answer to {method} {self.url} within {self.timeout:g}s"
        return f"{what} is unavailable: {method} {self.url} failed: {self.detail}"


def _detail(exc: BaseException) -> str:
    innermost = list(reasons(exc))[-1]
    text = str(innermost).strip()
    name = type(innermost).__name__
    return f"{name}: {text}" if text and len(text) < 200 else name


def classify(exc: BaseException, url: str, timeout: float | None = None) -> NetworkFailure | None:
    """The failure *exc* means for a request to *url*; None if it is not a transport failure at all (or a cancel)."""
    causes = list(reasons(exc))
    if any(isinstance(cause, defer.CancelledError) for cause in causes):
        return None  # a caller's cancel (Ctrl-C): cleanup, not an error to report or retry
    for types, kind in FAILURE_TABLE:
        for cause in causes:
            if isinstance(cause, types):
                if kind is FailureKind.TLS_UNTRUSTED and "certificate verify failed" not in str(cause):
                    kind = FailureKind.TLS_HANDSHAKE  # pyOpenSSL raises one class for every handshake failure
                return NetworkFailure(kind, url, _detail(cause), timeout)
    return None
