"""The storage's error taxonomy and the tables mapping HTTP statuses and transport failures to it.

Callers decide by class (or the ``retryable`` flag), never by parsing messages:
``StorageUnavailable`` may succeed later; ``StorageAuthError`` and
``StorageTLSError`` need the operator to fix the settings; ``FileNotFound`` is
an answer, not a fault. Messages name the URL (never credentials) and what to
check.
"""

from __future__ import annotations

from ..errors import EnsembleError
from ..http.failures import FailureKind, classify

__all__ = [
    "STATUS_ERRORS",
    "FileNotFound",
    "StorageAuthError",
    "StorageError",
    "StorageTLSError",
    "StorageUnavailable",
    "TRANSPORT_ERRORS",
    "error_for_exception",
    "error_for_status",
]


class StorageError(EnsembleError):
    """Something went wrong talking to the storage; ``retryable`` says if trying again may help."""

    retryable: bool = False

    def __init__(
        self, message: str, *, url: str | None = None, status: int | None = None, retryable: bool | None = None
    ) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        if retryable is not None:
            self.retryable = retryable


class FileNotFound(StorageError):
    """The file (or collection) does not exist (HTTP 404/410)."""


class StorageAuthError(StorageError):
    """The storage refused our credentials or our access (HTTP 401/403 after authenticating)."""


class StorageUnavailable(StorageError):
    """The storage could not be reached or is failing (refused, timed out, 5xx): retry later."""

    retryable = True


class StorageTLSError(StorageError):
    """TLS with the storage failed: the certificate names another host or is not trusted, or the port does not
    speak TLS. Fatal: the message says which setting to change."""


# HTTP status -> class; statuses not listed fall back by range (see error_for_status).
STATUS_ERRORS: dict[int, type[StorageError]] = {
    401: StorageAuthError,
    403: StorageAuthError,
    404: FileNotFound,
    410: FileNotFound,
    408: StorageUnavailable,
    429: StorageUnavailable,
    500: StorageUnavailable,
    502: StorageUnavailable,
    503: StorageUnavailable,
    504: StorageUnavailable,
    # A server that is not WebDAV, or is full, stays so until an operator acts.
    501: StorageError,
    505: StorageError,
    507: StorageError,
}


def error_for_status(status: int, method: str, url: str) -> StorageError:
    """The error for an unexpected HTTP *status* answering *method* on *url* (credential-free)."""
    cls = STATUS_ERRORS.get(status) or (StorageUnavailable if 500 <= status < 600 else StorageError)
    if cls is FileNotFound:
        message = f"{url} does not exist (HTTP {status} on {method})"
    elif cls is StorageAuthError:
        message = (
            f"the storage refused {method} {url} (HTTP {status}): check storage-user and storage-pass"
            " and that the user may write there"
        )
    elif cls is StorageUnavailable:
        message = f"the storage is unavailable: {method} {url} got HTTP {status}; retrying later may work"
    elif status == 507:
        message = f"the storage is full: {method} {url} got HTTP 507 (Insufficient Storage)"
    elif status == 501:
        message = f"{url} does not support {method} (HTTP 501): is storage-url a WebDAV collection?"
    else:
        message = f"the storage answered {method} {url} with HTTP {status}"
    return cls(message, url=url, status=status)


# What each kind of network failure (classified once for every HTTP boundary, http.failures) is here.
TRANSPORT_ERRORS: dict[FailureKind, type[StorageError]] = {
    FailureKind.TLS_NAME: StorageTLSError,
    FailureKind.TLS_UNTRUSTED: StorageTLSError,
    FailureKind.TLS_HANDSHAKE: StorageTLSError,
    FailureKind.NOT_SENT: StorageUnavailable,
    FailureKind.TIMEOUT: StorageUnavailable,
    FailureKind.LOST: StorageUnavailable,
}


def error_for_exception(exc: BaseException, method: str, url: str, timeout: float | None = None) -> StorageError:
    """The error for a transport failure of *method* on *url*; StorageError if unknown (not retried)."""
    if isinstance(exc, StorageError):
        return exc
    failure = classify(exc, url, timeout)
    if failure is None:
        return StorageError(f"{method} {url} failed: {type(exc).__name__}: {exc}", url=url)
    return TRANSPORT_ERRORS[failure.kind](failure.message("the storage", method, "storage-url"), url=url)
