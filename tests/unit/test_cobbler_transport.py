"""The XML-RPC transport: retries, timeouts, concurrency bound and call counts on a task.Clock; TLS on a real port."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.web.iweb import IAgent
from twisted.web.server import Site
from zope.interface.verify import verifyObject

from ensemble_orchestra.cobbler import (
    DEFAULT_RETRY,
    CobblerInvalidRequest,
    CobblerNotFound,
    CobblerTimeout,
    CobblerTLSError,
    CobblerUnavailable,
    XmlRpcTransport,
)
from ensemble_orchestra.cobbler.testing import FakeCobbler, FakeCobblerAgent, FakeCobblerResource
from ensemble_orchestra.http.testing import issue_certificates
from ensemble_orchestra.schedule import Schedule
from ensemble_orchestra.testing import result_of, start

URL = "http://cobbler.test/RPC2"


def make(
    script: list[str | int] | None = None,
    *,
    retry: Schedule = DEFAULT_RETRY,
    timeout: float = 5.0,
    latency: float = 0.0,
    max_concurrency: int = 8,
) -> tuple[Clock, FakeCobblerAgent, XmlRpcTransport]:
    clock = Clock()
    agent = FakeCobblerAgent(FakeCobbler(), clock=clock, latency=latency)
    agent.script = list(script or [])
    transport = XmlRpcTransport(
        URL, clock, clock=clock, agent=agent, retry=retry, timeout=timeout, max_concurrency=max_concurrency
    )
    return clock, agent, transport


def test_fake_agent_provides_iagent() -> None:
    verifyObject(IAgent, FakeCobblerAgent(FakeCobbler()))


def test_backoff_schedule_is_bounded_exponential_data() -> None:
    """The schedule is data: inspectable, and capped."""
    assert DEFAULT_RETRY.delays == (0.5, 1.0, 2.0, 4.0)
    assert Schedule.exponential(initial=0.5, factor=2, maximum=4, retries=6).delays == (0.5, 1, 2, 4, 4, 4)
    assert Schedule.exponential(retries=0).delays == ()


def test_refused_connections_are_retried_on_the_schedule() -> None:
    """Two refusals, then success: retries happen exactly at 0.5 s and 1 s later, never before."""
    clock, agent, transport = make(["refuse", "refuse"])
    d = start(transport.call("version"))
    assert agent.requests == 1 and not d.called
    clock.advance(0.49)
    assert agent.requests == 1
    clock.advance(0.01)
    assert agent.requests == 2
    clock.advance(0.99)
    assert agent.requests == 2 and not d.called
    clock.advance(0.01)
    assert result_of(d) == pytest.approx(3.31)
    assert transport.calls["version"] == 3


def test_retries_are_bounded() -> None:
    """After len(delays) retries the error surfaces: CobblerUnavailable, retryable, nothing sent."""
    clock, agent, transport = make(["refuse"] * 10, retry=Schedule((1.0, 2.0, 4.0), repeat=False))
    d = start(transport.call("version"))
    clock.pump([1.0, 2.0, 4.0])
    with pytest.raises(CobblerUnavailable) as caught:
        result_of(d)
    assert agent.requests == 4
    assert caught.value.request_sent is False
    assert clock.seconds() == 7.0


def test_a_hung_call_times_out_and_is_retried() -> None:
    """No answer within the timeout cancels the attempt; the retry then succeeds."""
    clock, agent, transport = make(["hang"], timeout=5.0)
    d = start(transport.call("version"))
    clock.advance(4.9)
    assert not d.called and agent.requests == 1
    clock.advance(0.1)  # timeout: attempt cancelled, retry in 0.5 s
    clock.advance(0.5)
    assert result_of(d) == pytest.approx(3.31)
    assert agent.requests == 2


def test_timeout_error_says_so() -> None:
    clock, _, transport = make(["hang"], timeout=2.0, retry=Schedule((), repeat=False))
    d = start(transport.call("version"))
    clock.advance(2.0)
    with pytest.raises(CobblerTimeout, match="no answer to POST .* within 2s"):
        result_of(d)


def test_a_callers_cancel_is_a_cancellation_not_a_timeout_nor_retried() -> None:
    """Ctrl-C cancels the call under way: CancelledError reaches the caller (whose cleanup runs), at once."""
    clock, agent, transport = make(["hang"], timeout=5.0)
    d = start(transport.call("power_system", "system::node001", "on", "tok", idempotent=False))
    clock.advance(1.0)
    d.cancel()
    with pytest.raises(CancelledError):
        result_of(d)
    assert agent.requests == 1 and clock.getDelayedCalls() == []


def test_http_5xx_is_retried_4xx_is_not() -> None:
    clock, agent, transport = make([503])
    d = start(transport.call("version"))
    clock.advance(0.5)
    assert result_of(d) == pytest.approx(3.31)
    clock, agent, transport = make([404])
    with pytest.raises(CobblerInvalidRequest, match="HTTP 404"):
        result_of(start(transport.call("version")))
    assert agent.requests == 1


def test_faults_are_never_retried() -> None:
    """A Fault is the server's answer: retrying cannot change it."""
    _, agent, transport = make()
    with pytest.raises(CobblerNotFound):
        result_of(start(transport.call("get_task_status", "nosuch")))
    assert agent.requests == 1


def test_non_idempotent_calls_are_retried_only_when_nothing_was_sent() -> None:
    """A reset after sending may have powered a machine: no retry. A refused connection sent nothing: retry."""
    _, agent, transport = make(["reset"])
    with pytest.raises(CobblerUnavailable):
        result_of(start(transport.call("version", idempotent=False)))
    assert agent.requests == 1
    clock, agent, transport = make(["refuse"])
    d = start(transport.call("version", idempotent=False))
    clock.advance(0.5)
    assert result_of(d) == pytest.approx(3.31)


def test_concurrency_is_bounded() -> None:
    """Ten calls with a bound of 3: never more than 3 requests in flight, all ten complete."""
    clock, agent, transport = make(latency=1.0, max_concurrency=3)
    calls = [start(transport.call("version")) for _ in range(10)]
    assert agent.in_flight == 3
    clock.pump([1.0] * 4)
    assert [result_of(d) for d in calls] == [pytest.approx(3.31)] * 10
    assert agent.max_in_flight == 3


def test_call_counter_is_per_method() -> None:
    _, _, transport = make()
    for method in ("version", "version", "get_item_names"):
        args = ("system",) if method == "get_item_names" else ()
        result_of(start(transport.call(method, *args)))
    assert transport.calls == {"version": 2, "get_item_names": 1}


def test_arguments_that_xmlrpc_cannot_encode_are_invalid() -> None:
    _, agent, transport = make()
    with pytest.raises(CobblerInvalidRequest):
        result_of(start(transport.call("find_system", {"name": None})))
    assert agent.requests == 0


def test_only_http_and_https_urls() -> None:
    with pytest.raises(ValueError):
        XmlRpcTransport("ftp://cobbler/RPC2", Clock(), agent=FakeCobblerAgent(FakeCobbler()))


# -- TLS, on a real port ------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_https_verifies_the_certificate_and_accepts_a_ca_bundle(tmp_path: Path) -> None:
    """Verification is on by default (an unknown CA is a fatal CobblerTLSError, not retried); a CA bundle fixes it."""
    from twisted.internet import reactor, ssl

    pki = issue_certificates(tmp_path)
    server_cert = ssl.PrivateCertificate.loadPEM(pki.server_pem)
    port = reactor.listenSSL(0, Site(FakeCobblerResource(FakeCobbler())), server_cert.options(), interface="127.0.0.1")
    url = f"https://127.0.0.1:{port.getHost().port}/RPC2"
    untrusting = XmlRpcTransport(url, reactor)
    trusting = XmlRpcTransport(url, reactor, ca_bundle=pki.ca_bundle)
    try:
        with pytest.raises(CobblerTLSError):
            await untrusting.call("version")
        assert untrusting.calls["version"] == 1
        assert await trusting.call("version") == pytest.approx(3.31)
    finally:
        await untrusting.close()
        await trusting.close()
        await port.stopListening()
