"""The one classification of transport failures, and the one deadline helper, shared by every HTTP boundary."""

from __future__ import annotations

import pytest
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import defer
from twisted.internet import error as net_error
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web import client as web_client

from ensemble_orchestra.cobbler.errors import TRANSPORT_ERRORS as COBBLER_ERRORS
from ensemble_orchestra.cobbler.errors import CobblerTLSError, error_from_failure
from ensemble_orchestra.http.deadline import within
from ensemble_orchestra.http.failures import FailureKind, classify
from ensemble_orchestra.http.testing import failure_examples
from ensemble_orchestra.storage.errors import TRANSPORT_ERRORS as STORAGE_ERRORS
from ensemble_orchestra.storage.errors import StorageTLSError, error_for_exception

URL = "https://orchestra.example:8443/cobbler_api"


@pytest.mark.parametrize(
    ("exc", "kind"), failure_examples(), ids=repr
)
def test_table(exc: BaseException, kind: FailureKind) -> None:
    """Every row classifies, bare and wrapped the way Twisted's HTTP client wraps it; every boundary maps every kind."""
    for raised in (exc, web_client.ResponseNeverReceived([Failure(exc)])):
        failure = classify(raised, URL)
        assert failure is not None and failure.kind is kind
        assert failure.retryable is (kind not in (FailureKind.TLS_NAME, FailureKind.TLS_UNTRUSTED))
    assert kind in COBBLER_ERRORS and kind in STORAGE_ERRORS


def test_a_certificate_for_another_name_is_a_tls_failure_even_inside_a_lost_connection() -> None:
    """Twisted reports a host-name mismatch as a lost connection carrying service_identity's error."""
    lost = web_client.ResponseNeverReceived([Failure(net_error.ConnectionLost()), Failure(VerificationError([]))])
    assert classify(lost, URL).kind is FailureKind.TLS_NAME  # type: ignore[union-attr]
    cobbler = error_from_failure(lost, "login", URL)
    storage = error_for_exception(lost, "GET", URL)
    assert type(cobbler) is CobblerTLSError and type(storage) is StorageTLSError
    for error, key in ((cobbler, "cobbler-api-url"), (storage, "storage-url")):
        assert not error.retryable and "'orchestra.example'" in str(error) and key in str(error)


def test_an_untrusted_chain_says_to_set_the_ca_bundle() -> None:
    verify_failed = SSL.Error([("SSL routines", "", "certificate verify failed")])
    untrusted = web_client.ResponseNeverReceived([Failure(verify_failed)])
    for error in (error_from_failure(untrusted, "login", URL), error_for_exception(untrusted, "GET", URL)):
        assert not error.retryable and "ca-bundle" in str(error) and URL in str(error)


def test_a_handshake_that_is_not_a_certificate_problem_says_to_check_the_port() -> None:
    """An https URL on a plain-http port fails the handshake ('wrong version number'): not "add a CA bundle"."""
    plain = web_client.ResponseNeverReceived([Failure(SSL.Error([("SSL routines", "", "wrong version number")]))])
    assert classify(plain, URL).kind is FailureKind.TLS_HANDSHAKE  # type: ignore[union-attr]
    for error in (error_from_failure(plain, "login", URL), error_for_exception(plain, "GET", URL)):
        assert not error.retryable and "https port" in str(error) and "ca-bundle" not in str(error)


def test_a_callers_cancel_is_not_a_network_failure() -> None:
    """Ctrl-C must never look like a timeout to retry: the deadline's own cancel becomes TimeoutError in within()."""
    assert classify(defer.CancelledError(), URL) is None
    assert classify(web_client.ResponseNeverReceived([Failure(defer.CancelledError())]), URL) is None


def test_only_connect_failures_prove_the_request_was_not_sent() -> None:
    assert classify(net_error.ConnectionRefusedError(), URL).request_sent is False  # type: ignore[union-attr]
    assert classify(net_error.ConnectionLost(), URL).request_sent is None  # type: ignore[union-attr]
    assert classify(ValueError("not a network failure"), URL) is None


def test_within_turns_its_own_deadline_into_a_timeout() -> None:
    clock, outcome = Clock(), []
    work: defer.Deferred[str] = defer.Deferred()
    defer.Deferred.fromCoroutine(within(clock, 5.0, work)).addBoth(outcome.append)
    clock.advance(4.9)
    assert outcome == []
    clock.advance(0.1)
    assert outcome[0].check(defer.TimeoutError) and work.called  # the work itself was cancelled


def test_within_keeps_a_callers_cancel_a_cancel_and_leaves_no_timer() -> None:
    clock, outcome = Clock(), []
    work: defer.Deferred[str] = defer.Deferred()
    waiting = defer.Deferred.fromCoroutine(within(clock, 5.0, work))
    waiting.addBoth(outcome.append)
    waiting.cancel()
    assert outcome[0].check(defer.CancelledError) and not outcome[0].check(defer.TimeoutError)
    assert clock.getDelayedCalls() == []


def test_within_passes_results_and_other_errors_through() -> None:
    clock, outcome = Clock(), []
    defer.Deferred.fromCoroutine(within(clock, 5.0, defer.succeed("answer"))).addBoth(outcome.append)
    defer.Deferred.fromCoroutine(within(clock, 5.0, defer.fail(KeyError("k")))).addBoth(outcome.append)
    assert outcome[0] == "answer" and outcome[1].check(KeyError)
    assert clock.getDelayedCalls() == []
