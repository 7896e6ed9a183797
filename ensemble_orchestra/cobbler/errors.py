"""One error taxonomy for everything the Cobbler client can fail with, and the tables that build it.

Three boundaries produce errors: XML-RPC Faults (cobblerd raised), HTTP statuses (a proxy such as
Orchestra's Apache answered), and transport failures (nothing usable came back). Each has one table
here, tested as a table. Whether an error is worth retrying is a property of its class (`retryable`),
so callers never parse messages.

Fault texts are Cobbler's own, captured from cobblerd 3.3.10 (and 2.x where noted): Cobbler wraps
every server-side exception as ``<class 'MODULE.CLASS'>:'MESSAGE'``, always with faultCode 1, so the
message is all there is to classify. Some of those messages echo secrets (``invalid token: <token>``);
every message is redacted before it becomes an exception's text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from xmlrpc.client import Fault

from ..errors import EnsembleError
from ..http.failures import FailureKind, classify

__all__ = [
    "FAULT_TABLE",
    "HTTP_STATUS_TABLE",
    "TRANSPORT_ERRORS",
    "CobblerAuthError",
    "CobblerError",
    "CobblerInvalidRequest",
    "CobblerMethodMissing",
    "CobblerNotFound",
    "CobblerPowerError",
    "CobblerTLSError",
    "CobblerTaskTimeout",
    "CobblerTimeout",
    "CobblerTokenExpired",
    "CobblerUnavailable",
    "FaultRule",
    "error_from_failure",
    "error_from_fault",
    "error_from_http_status",
    "redact",
]

REDACTED = "<redacted>"


class CobblerError(EnsembleError):
    """Base of every client error; `retryable` says whether trying the same call again can help."""

    def __init__(self, message: str, *, method: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.method = method

    def __str__(self) -> str:
        return f"{self.message} (Cobbler call {self.method})" if self.method else self.message


class CobblerAuthError(CobblerError):
    """Credentials rejected or not authorized: fatal until someone fixes the configuration."""


class CobblerNotFound(CobblerError):
    """The named object (system, task) does not exist on the server."""


class CobblerInvalidRequest(CobblerError):
    """The server refused the request as wrong (bad value, unknown profile, duplicate MAC): fatal."""


class CobblerMethodMissing(CobblerInvalidRequest):
    """The server has no such XML-RPC method (an older Cobbler): the client may fall back."""


class CobblerTokenExpired(CobblerError):
    """The session token is invalid or expired. Internal: the client logs in once and retries."""


class CobblerUnavailable(CobblerError):
    """Cobbler could not be reached or answered 5xx/timed out: retryable.

    `request_sent` is False when the request certainly never reached the server (connection
    refused, DNS failure), so even a non-idempotent call may be retried; None when unknown.
    """

    retryable = True

    def __init__(self, message: str, *, method: str | None = None, request_sent: bool | None = None) -> None:
        super().__init__(message, method=method)
        self.request_sent = request_sent


class CobblerTimeout(CobblerUnavailable):
    """No answer within the call's deadline. The server may still be working on it (a power call
    waits for the BMC), so a non-idempotent call is not retried."""


class CobblerTLSError(CobblerError):
    """TLS failed: the certificate names another host, is not trusted, or the port does not speak TLS.
    Fatal: the message says which setting to change; never retried around."""


class CobblerPowerError(CobblerError):
    """Cobbler ran the power agent and it failed; `systems` names the systems, `log` is redacted."""

    def __init__(
        self,
        message: str,
        *,
        systems: Iterable[str] = (),
        log: str | None = None,
        method: str | None = None,
    ) -> None:
        super().__init__(message, method=method)
        self.systems = tuple(systems)
        self.log = log


class CobblerTaskTimeout(CobblerError):
    """A background task did not finish in time; it may still be running on the server."""

    def __init__(self, message: str, *, task_id: str, method: str | None = None) -> None:
        super().__init__(message, method=method)
        self.task_id = task_id


# -- redaction ---------------------------------------------------------------------------------

# Patterns that carry secrets in Cobbler's own texts: Faults echo the rejected token, and a power
# task's event log copies the fence agent's stdin, password included.
_SECRET_PATTERNS = (
    (re.compile(r"(invalid token:\s*)\S+"), r"\1" + REDACTED),
    (re.compile(r"(?im)^([ \t]*(?:password|passwd|power_pass)[ \t]*[=:][ \t]*).*$"), r"\1" + REDACTED),
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """*text* with every known secret and every secret-shaped fragment replaced by ``<redacted>``."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


# -- XML-RPC Faults ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultRule:
    """A Fault message pattern (searched, not anchored) and the error it means."""

    pattern: re.Pattern[str]
    error: type[CobblerError]
    why: str


def _rule(pattern: str, error: type[CobblerError], why: str) -> FaultRule:
    return FaultRule(re.compile(pattern), error, why)


# First match wins, so specific rules come before general ones.
FAULT_TABLE: tuple[FaultRule, ...] = (
    _rule(r"invalid token", CobblerTokenExpired, "expired, logged out or unknown token (2.x and 3.x)"),
    _rule(r'"token" did not have the correct format', CobblerTokenExpired, "3.x: token is not a token at all"),
    _rule(r"login failed", CobblerAuthError, "3.x 'login failed (USER)', 2.x 'login failed: USER'"),
    _rule(r"authorization failure", CobblerAuthError, "user authenticated but not allowed"),
    _rule(r"unknown system name", CobblerNotFound, "edit/handle/power of a missing system"),
    _rule(
        r"unknown (distro|profile|mgmtclass|image|repo|package|file|menu) name",
        CobblerNotFound,
        "xapi edit of a missing distro, profile, mgmtclass ...",
    ),
    _rule(r"installation snippet file location .*file not found", CobblerNotFound, "read of a missing snippet"),
    _rule(
        r"'NoneType' object has no attribute 'power_",
        CobblerNotFound,
        "3.x power_system on a 'system::NAME' handle whose system does not exist",
    ),
    _rule(r"no event with that id", CobblerNotFound, "unknown or expired task id"),
    _rule(r"unknown remote method|is not supported", CobblerMethodMissing, "older server lacks the method"),
    _rule(r"command failed \(rc=", CobblerPowerError, "fence agent failed after Cobbler's 3 tries"),
    _rule(r"no power type set", CobblerPowerError, "system has no power_type"),
    _rule(r"output .* was not understood", CobblerPowerError, "fence agent status output unparseable"),
    _rule(r"invalid power operation", CobblerInvalidRequest, "power op not on/off/status/reboot"),
    _rule(r"is not existing|invalid profile name", CobblerInvalidRequest, "unknown profile in a system edit"),
    _rule(r"(?i)invalid mac address|invalid format for mac", CobblerInvalidRequest, "malformed MAC"),
    _rule(r"(?i)mac address dupl", CobblerInvalidRequest, "MAC already used by another system"),
    _rule(r"(?i)invalid ipv[46] address|invalid format for ip", CobblerInvalidRequest, "malformed IP"),
    _rule(r"(?i)(ip address|dns[ -]name) dupl", CobblerInvalidRequest, "IP/DNS name already used"),
    _rule(r"(?i)automatic installation template|kickstart not found", CobblerInvalidRequest, "unknown template"),
    _rule(r'distribution ".*" not found', CobblerInvalidRequest, "profile with an unknown distro"),
    _rule(r"power (management )?type must be one of|fence-agents installed", CobblerInvalidRequest, "power_type"),
    _rule(r"unwise to overwrite", CobblerInvalidRequest, "xapi add of an existing object"),
    _rule(r"calling find with no arguments", CobblerInvalidRequest, "find_* with empty criteria"),
)

_FAULT_WRAPPER = re.compile(r"^<class '(?P<cls>[^']+)'>:(?P<msg>.*)$", re.DOTALL)


def _fault_message(fault_string: str) -> str:
    """Cobbler's message without its ``<class ...>:`` wrapper and quotes."""
    match = _FAULT_WRAPPER.match(fault_string)
    message = match.group("msg") if match else fault_string
    if len(message) >= 2 and message[0] == message[-1] and message[0] in "'\"":
        message = message[1:-1]
    return message


def error_from_fault(fault: Fault, method: str, secrets: Iterable[str] = ()) -> CobblerError:
    """The taxonomy's error for a Fault returned by *method*; unknown Faults are plain fatal CobblerErrors."""
    text = str(fault.faultString)
    message = redact(_fault_message(text), secrets)
    for rule in FAULT_TABLE:
        if rule.pattern.search(text):
            return rule.error(f"Cobbler refused: {message}", method=method)
    return CobblerError(f"Cobbler failed: {message}", method=method)


# -- HTTP statuses -----------------------------------------------------------------------------

# (lowest status, highest status, error, why)
HTTP_STATUS_TABLE: tuple[tuple[int, int, type[CobblerError], str], ...] = (
    (401, 401, CobblerAuthError, "a front end (Apache) wants HTTP credentials"),
    (403, 403, CobblerAuthError, "a front end forbids the XML-RPC path"),
    (404, 405, CobblerInvalidRequest, "no XML-RPC endpoint here: check the URL (/cobbler_api or /RPC2)"),
    (500, 599, CobblerUnavailable, "server or proxy error, often a cobblerd restart behind Apache"),
)


def error_from_http_status(code: int, method: str, url: str) -> CobblerError:
    for low, high, error, why in HTTP_STATUS_TABLE:
        if low <= code <= high:
            return error(f"HTTP {code} from {url}: {why}", method=method)
    return CobblerError(f"unexpected HTTP {code} from {url}", method=method)


# -- transport failures ------------------------------------------------------------------------

# What each kind of network failure (classified once for every HTTP boundary, http.failures) is here.
TRANSPORT_ERRORS: dict[FailureKind, type[CobblerError]] = {
    FailureKind.TLS_NAME: CobblerTLSError,
    FailureKind.TLS_UNTRUSTED: CobblerTLSError,
    FailureKind.TLS_HANDSHAKE: CobblerTLSError,
    FailureKind.NOT_SENT: CobblerUnavailable,
    FailureKind.TIMEOUT: CobblerTimeout,
    FailureKind.LOST: CobblerUnavailable,
}


def error_from_failure(exc: BaseException, method: str, url: str, timeout: float | None = None) -> CobblerError:
    """The taxonomy's error for an exception raised while talking to *url*."""
    if isinstance(exc, CobblerError):
        return exc
    failure = classify(exc, url, timeout)
    if failure is None:
        return CobblerError(f"talking to Cobbler at {url} failed: {type(exc).__name__}: {exc}", method=method)
    error = TRANSPORT_ERRORS[failure.kind]
    message = failure.message("Cobbler", "POST", "cobbler-api-url")
    if issubclass(error, CobblerUnavailable):
        return error(message, method=method, request_sent=failure.request_sent)
    return error(message, method=method)
