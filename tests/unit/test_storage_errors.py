"""The storage error taxonomy: the status and exception tables, and the deadline on the clock."""

from __future__ import annotations

import pytest
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import defer, error
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web import client
from twisted.web.iweb import IAgent
from zope.interface import implementer

from ensemble_orchestra.http.testing import failure_examples
from ensemble_orchestra.storage import errors
from ensemble_orchestra.storage.errors import (
    STATUS_ERRORS,
    TRANSPORT_ERRORS,
    FileNotFound,
    StorageAuthError,
    StorageError,
    StorageTLSError,
    StorageUnavailable,
    error_for_exception,
    error_for_status,
)
from ensemble_orchestra.storage.webdav import WebDAVStorage

URL = "http://orchestra.example/webdav/env/provider-state"


@pytest.mark.parametrize(("status", "cls"), sorted(STATUS_ERRORS.items()))
def test_status_table(status: int, cls: type[StorageError]) -> None:
    """Every row of the table gives its class, a message naming the URL, and the class's retryability."""
    err = error_for_status(status, "PUT", URL)
    assert type(err) is cls
    assert err.status == status and err.url == URL
    assert URL in str(err) and str(status) in str(err)
    assert err.retryable is (cls is StorageUnavailable)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, StorageError),
        (409, StorageError),
        (412, StorageError),
        (520, StorageUnavailable),
        (599, StorageUnavailable),
    ],
)
def test_statuses_outside_the_table_fall_back_by_range(status: int, cls: type[StorageError]) -> None:
    assert type(error_for_status(status, "GET", URL)) is cls


def test_auth_error_says_what_to_check() -> None:
    message = str(error_for_status(401, "GET", URL))
    assert "storage-user" in message and "storage-pass" in message


def test_taxonomy() -> None:
    for cls in (FileNotFound, StorageAuthError, StorageUnavailable, StorageTLSError):
        assert issubclass(cls, StorageError)
    assert StorageUnavailable("x").retryable and not StorageAuthError("x").retryable
    assert StorageError("x", retryable=True).retryable and not StorageError("x").retryable


def _wrapped(exc: Exception) -> client.ResponseNeverReceived:
    return client.ResponseNeverReceived([Failure(exc)])


@pytest.mark.parametrize(
    ("exc", "cls"),
    [(exc, TRANSPORT_ERRORS[kind]) for exc, kind in failure_examples()]
    + [
        (error.ConnectionRefusedError(), StorageUnavailable),
        (error.DNSLookupError("no.such.host"), StorageUnavailable),
        (_wrapped(error.ConnectionLost()), StorageUnavailable),
        (_wrapped(SSL.Error([("SSL routines", "", "certificate verify failed")])), StorageTLSError),
        (SSL.Error([]), StorageTLSError),
        (_wrapped(VerificationError([])), StorageTLSError),
        (ValueError("odd"), StorageError),
    ],
)
def test_exception_table(exc: BaseException, cls: type[StorageError]) -> None:
    err = error_for_exception(exc, "GET", URL, timeout=5)
    assert type(err) is cls and URL in str(err)
    assert err.retryable is (cls is StorageUnavailable)


def test_timeout_message_names_the_deadline() -> None:
    assert "within 2.5s" in str(error_for_exception(defer.TimeoutError(), "PUT", URL, timeout=2.5))


def test_storage_errors_pass_through() -> None:
    err = FileNotFound("gone")
    assert error_for_exception(err, "GET", URL) is err


@implementer(IAgent)
class SilentAgent:
    """Never answers; records whether the request was cancelled (connection aborted)."""

    def __init__(self) -> None:
        self.cancelled = 0

    def request(self, method, uri, headers=None, bodyProducer=None):
        def cancel(d: defer.Deferred) -> None:
            self.cancelled += 1

        return defer.Deferred(cancel)


def test_deadline_on_the_injected_clock() -> None:
    """A server that never answers gives StorageUnavailable once the clock passes the timeout."""
    clock, agent = Clock(), SilentAgent()
    storage = WebDAVStorage(clock, agent, "http://orchestra.example/webdav", "env", timeout=7)
    outcome: list = []
    storage.get("provider-state").addBoth(outcome.append)
    clock.advance(6.9)
    assert outcome == []
    clock.advance(0.2)
    assert len(outcome) == 1 and isinstance(outcome[0].value, StorageUnavailable)
    assert "within 7s" in str(outcome[0].value) and outcome[0].value.retryable
    assert agent.cancelled == 1


def test_cancel_by_the_caller_is_a_cancel_not_an_outage() -> None:
    clock, agent = Clock(), SilentAgent()
    d = WebDAVStorage(clock, agent, "http://orchestra.example/webdav", "env").get("f")
    d.cancel()
    outcome: list = []
    d.addErrback(outcome.append)
    assert outcome[0].check(defer.CancelledError) and agent.cancelled == 1


@implementer(IAgent)
class FlakyAgent:
    """Fails each request's first attempt as if a kept-alive connection had just been closed."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.methods: list[bytes] = []

    def request(self, method, uri, headers=None, bodyProducer=None):
        self.methods.append(method)
        if len(self.methods) % 2:
            return defer.fail(client.ResponseNeverReceived([Failure(error.ConnectionDone())]))
        return defer.succeed(_Response(self.code))


class _Response:
    def __init__(self, code: int) -> None:
        from twisted.web.http_headers import Headers

        self.code, self.headers, self.phrase, self.version = code, Headers(), b"", (b"HTTP", 1, 1)
        self.length = 0

    def deliverBody(self, protocol) -> None:
        from twisted.web.client import ResponseDone

        protocol.makeConnection(None)
        protocol.connectionLost(Failure(ResponseDone()))


def test_put_is_resent_once_but_mkcol_never() -> None:
    """A PUT that got no answer goes out again; a MKCOL does not (a repeated win would read as a loss)."""
    agent = FlakyAgent(201)
    storage = WebDAVStorage(Clock(), agent, "http://orchestra.example/webdav", "env")
    outcome: list = []
    storage.put("f", b"x").addBoth(outcome.append)
    assert outcome == [None] and agent.methods == [b"PUT", b"PUT"]
    agent = FlakyAgent(201)
    storage = WebDAVStorage(Clock(), agent, "http://orchestra.example/webdav", "env")
    storage.create_exclusive("c").addBoth(outcome.append)
    assert isinstance(outcome[1].value, StorageUnavailable) and agent.methods == [b"MKCOL"]


@implementer(IAgent)
class ScriptedAgent:
    """Answers each request with the next status of a script; records the methods asked."""

    def __init__(self, *codes: int) -> None:
        self.codes = list(codes)
        self.methods: list[bytes] = []

    def request(self, method, uri, headers=None, bodyProducer=None):
        self.methods.append(method)
        return defer.succeed(_Response(self.codes.pop(0)))


@pytest.mark.parametrize(
    ("codes", "outcome", "methods"),
    [
        # mod_dav: a MKCOL that lost inside mkdir gets 403 (EEXIST); the marker is there: lost.
        ((403, 207), False, [b"MKCOL", b"PROPFIND"]),
        # ...the winner dropped it before we looked: MKCOL again, and win it.
        ((403, 404, 201), True, [b"MKCOL", b"PROPFIND", b"MKCOL"]),
        ((403, 404, 405), False, [b"MKCOL", b"PROPFIND", b"MKCOL"]),
        # A denied MKCOL (403, nothing there, each time) is an authorisation error after four looks...
        ((403, 404) * 4, StorageAuthError, [b"MKCOL", b"PROPFIND"] * 4),
        # ...but a race lost on the last try is still a lost race.
        ((403, 404) * 3 + (403, 207), False, [b"MKCOL", b"PROPFIND"] * 4),
    ],
)
def test_mkcol_403_is_a_lost_race_only_if_the_marker_exists(codes, outcome, methods) -> None:
    agent = ScriptedAgent(*codes)
    storage = WebDAVStorage(Clock(), agent, "http://orchestra.example/webdav", "env")
    result: list = []
    storage.create_exclusive("claims/uid-1").addBoth(result.append)
    assert agent.methods == methods and agent.codes == []
    if isinstance(outcome, bool):
        assert result == [outcome]
    else:
        assert isinstance(result[0].value, outcome) and "MKCOL" in str(result[0].value)


@pytest.mark.parametrize(
    ("url", "prefix", "message"),
    [
        ("http://user:hunter2@host/webdav", "env", "storage-user/storage-pass"),
        ("ftp://host/webdav", "env", r"http\(s\)"),
        ("http://host/webdav?x=1", "env", "query"),
        ("http://host/webdav", "../other", "bad storage prefix"),
        ("http://host/webdav", "", "non-empty"),
        ("http://host/webdav", "exclusive/env", "may not lie"),
    ],
)
def test_bad_settings_are_refused_without_echoing_secrets(url: str, prefix: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        WebDAVStorage(Clock(), SilentAgent(), url, prefix)
    assert "hunter2" not in str(err.value)


def test_errors_module_exports() -> None:
    assert set(errors.__all__) <= set(dir(errors))
