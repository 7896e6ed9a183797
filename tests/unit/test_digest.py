"""Digest/Basic auth: RFC 7616 example values, challenge parsing, and the agent's retry and caching."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Protocol
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.web.client import FileBodyProducer
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgent
from zope.interface import implementer
from zope.interface.verify import verifyObject

from ensemble_orchestra.http.body import BytesBody
from ensemble_orchestra.http.digest import (
    Challenge,
    Credentials,
    DigestChallenge,
    HTTPAuthAgent,
    InsecureAuthRefused,
    digest_authorization,
    digest_response,
    parse_challenges,
)
from ensemble_orchestra.secret import Secret

# RFC 7616 section 3.9.1.
MUFASA = Credentials("Mufasa", "Circle of Life")
RFC_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC_HEADER = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256,'
    f' nonce="{RFC_NONCE}", opaque="{RFC_OPAQUE}",'
    ' Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5,'
    f' nonce="{RFC_NONCE}", opaque="{RFC_OPAQUE}"'
)


def rfc_challenge(algorithm: str) -> DigestChallenge:
    return DigestChallenge(realm="http-auth@example.org", nonce=RFC_NONCE, algorithm=algorithm, opaque=RFC_OPAQUE)


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_example_responses(algorithm: str, expected: str) -> None:
    """The response values of RFC 7616's worked example (GET /dir/index.html, nc 1)."""
    challenge = rfc_challenge(algorithm)
    assert digest_response(challenge, MUFASA, "GET", "/dir/index.html", "00000001", RFC_CNONCE) == expected
    header = digest_authorization(challenge, MUFASA, "GET", "/dir/index.html", "00000001", RFC_CNONCE)
    assert f'response="{expected}"' in header
    assert header.startswith('Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html"')
    for part in (f"algorithm={algorithm}", "nc=00000001", f'cnonce="{RFC_CNONCE}"', "qop=auth", RFC_OPAQUE):
        assert part in header
    assert "Circle of Life" not in header


def test_parse_the_rfc_example_header() -> None:
    """Two Digest challenges in one header value, quoted commas kept inside their values."""
    challenges = parse_challenges([RFC_HEADER.encode()])
    assert [c.scheme for c in challenges] == ["digest", "digest"]
    assert challenges[0].params == {
        "realm": "http-auth@example.org",
        "qop": "auth, auth-int",
        "algorithm": "SHA-256",
        "nonce": RFC_NONCE,
        "opaque": RFC_OPAQUE,
    }
    assert challenges[1].params["algorithm"] == "MD5"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # Apache mod_auth_digest's own form.
        (
            ['Digest realm="ensemble", nonce="abc=", algorithm=MD5, domain="/webdav/", qop="auth"'],
            [
                Challenge(
                    "digest",
                    {"realm": "ensemble", "nonce": "abc=", "algorithm": "MD5", "domain": "/webdav/", "qop": "auth"},
                )
            ],
        ),
        (
            ['Basic realm="x"', 'Digest realm="y", nonce="n"'],
            [Challenge("basic", {"realm": "x"}), Challenge("digest", {"realm": "y", "nonce": "n"})],
        ),
        (
            ['Basic realm="a, b", charset="UTF-8", Digest nonce=tok'],
            [Challenge("basic", {"realm": "a, b", "charset": "UTF-8"}), Challenge("digest", {"nonce": "tok"})],
        ),
        (
            ['Digest realm="say \\"hi\\"", NONCE="n", stale=TRUE'],
            [Challenge("digest", {"realm": 'say "hi"', "nonce": "n", "stale": "TRUE"})],
        ),
        (
            ["Negotiate YWJjZA==, Basic realm=r"],
            [Challenge("negotiate", {}, "YWJjZA=="), Challenge("basic", {"realm": "r"})],
        ),
        (["Bearer"], [Challenge("bearer", {})]),
        (["", "   "], []),
    ],
)
def test_parse_challenges(values: list[str], expected: list[Challenge]) -> None:
    assert parse_challenges(values) == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"realm": "r", "nonce": "n"}, DigestChallenge("r", "n", "MD5", None)),  # RFC 2069: no qop
        (
            {"realm": "r", "nonce": "n", "qop": "auth-int,auth", "algorithm": "sha-256", "stale": "true"},
            DigestChallenge("r", "n", "SHA-256", "auth", stale=True),
        ),
        ({"realm": "r", "nonce": "n", "qop": "auth-int"}, None),  # we don't hash bodies
        ({"realm": "r", "nonce": "n", "algorithm": "SHA-512-256"}, None),
        ({"realm": "r"}, None),
    ],
)
def test_digest_challenge_from_params(params: dict[str, str], expected: DigestChallenge | None) -> None:
    assert DigestChallenge.from_challenge(Challenge("digest", params)) == expected


def test_credentials_repr_hides_the_password() -> None:
    assert "Circle" not in repr(MUFASA) and "Circle" not in str(MUFASA)
    assert Credentials("Mufasa", Secret("Circle of Life")) == MUFASA  # a str or the config's Secret
    assert "Circle" not in repr(HTTPAuthAgent(FakeAgent([]), MUFASA))


# -- the agent ------------------------------------------------------------------------------


@dataclass
class FakeResponse:
    code: int
    headers: Headers
    body: bytes = b""
    version: tuple = (b"HTTP", 1, 1)
    phrase: bytes = b""
    length: int = UNKNOWN_LENGTH
    request: object = None
    previousResponse: object = None

    def deliverBody(self, protocol: Protocol) -> None:
        from twisted.python.failure import Failure
        from twisted.web.client import ResponseDone

        protocol.makeConnection(None)  # type: ignore[arg-type]
        protocol.dataReceived(self.body)
        protocol.connectionLost(Failure(ResponseDone()))


@implementer(IAgent)
class FakeAgent:
    """Answers from a script of (code, www-authenticate) pairs; records what it was sent."""

    def __init__(self, script: list[tuple[int, list[str]]]) -> None:
        self.script = list(script)
        self.sent: list[tuple[bytes, bytes, Headers, bytes | None]] = []

    def request(self, method, uri, headers=None, bodyProducer=None):
        body = None
        if bodyProducer is not None:
            chunks: list[bytes] = []

            class Consumer:
                write = chunks.append

            bodyProducer.startProducing(Consumer())
            body = b"".join(chunks)
        self.sent.append((method, uri, headers or Headers(), body))
        code, challenges = self.script.pop(0)
        return succeed(FakeResponse(code, Headers({b"www-authenticate": [c.encode() for c in challenges]})))

    def authorization(self, index: int) -> str | None:
        values = self.sent[index][2].getRawHeaders(b"authorization")
        return values[0].decode() if values else None


APACHE = 'Digest realm="ensemble", nonce="{nonce}", algorithm=MD5, qop="auth"{stale}'


def apache(nonce: str, stale: bool = False) -> list[str]:
    return [APACHE.format(nonce=nonce, stale=", stale=true" if stale else "")]


def result(d: Deferred):  # type: ignore[no-untyped-def]
    out: list = []
    d.addBoth(out.append)
    assert out, "the Deferred did not fire"
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


def test_agent_provides_iagent() -> None:
    assert verifyObject(IAgent, HTTPAuthAgent(FakeAgent([]), MUFASA))


def test_challenge_answered_then_cached_with_counting_nc() -> None:
    """One 401 per origin: later requests go out authorised, nc counting up on the same nonce."""
    inner = FakeAgent([(401, apache("n1")), (201, []), (204, []), (200, [])])
    agent = HTTPAuthAgent(inner, MUFASA, cnonce=lambda: "c")
    put = result(agent.request(b"PUT", b"http://h:8080/webdav/f?x=1", None, BytesBody(b"data")))
    assert put.code == 201
    assert inner.authorization(0) is None
    first = inner.authorization(1)
    assert 'uri="/webdav/f?x=1"' in first and "nc=00000001" in first and 'nonce="n1"' in first
    assert inner.sent[0][3] == inner.sent[1][3] == b"data"  # the body went out twice
    assert result(agent.request(b"PUT", b"http://h:8080/webdav/f", None, BytesBody(b"v2"))).code == 204
    assert "nc=00000002" in inner.authorization(2)
    assert result(agent.request(b"GET", b"http://H:8080/other")).code == 200  # same origin, any case
    assert "nc=00000003" in inner.authorization(3)
    assert len(inner.sent) == 4
    expected = digest_response(DigestChallenge("ensemble", "n1"), MUFASA, "PUT", "/webdav/f?x=1", "00000001", "c")
    assert f'response="{expected}"' in first


def test_other_origin_gets_its_own_challenge() -> None:
    inner = FakeAgent([(401, apache("n1")), (200, []), (401, apache("n2")), (200, [])])
    agent = HTTPAuthAgent(inner, MUFASA)
    result(agent.request(b"GET", b"http://a/x"))
    result(agent.request(b"GET", b"http://b/x"))
    assert inner.authorization(2) is None and 'nonce="n2"' in inner.authorization(3)


def test_stale_nonce_is_refreshed_once() -> None:
    inner = FakeAgent([(401, apache("n1")), (200, []), (401, apache("n2", stale=True)), (200, []), (200, [])])
    agent = HTTPAuthAgent(inner, MUFASA)
    result(agent.request(b"GET", b"http://h/a"))
    assert result(agent.request(b"GET", b"http://h/b")).code == 200
    assert 'nonce="n1"' in inner.authorization(2)
    assert 'nonce="n2"' in inner.authorization(3) and "nc=00000001" in inner.authorization(3)
    result(agent.request(b"GET", b"http://h/c"))
    assert 'nonce="n2"' in inner.authorization(4) and "nc=00000002" in inner.authorization(4)


def test_wrong_password_gives_the_401_after_one_retry() -> None:
    inner = FakeAgent([(401, apache("n1")), (401, apache("n2"))])
    response = result(HTTPAuthAgent(inner, MUFASA).request(b"GET", b"http://h/a"))
    assert response.code == 401 and len(inner.sent) == 2


def test_sha256_preferred_over_md5() -> None:
    inner = FakeAgent([(401, [RFC_HEADER]), (200, [])])
    result(HTTPAuthAgent(inner, MUFASA).request(b"GET", b"https://h/dir/index.html"))
    assert "algorithm=SHA-256" in inner.authorization(1) and f'opaque="{RFC_OPAQUE}"' in inner.authorization(1)


def test_basic_over_https_and_refused_over_http() -> None:
    inner = FakeAgent([(401, ['Basic realm="r"']), (200, []), (200, [])])
    agent = HTTPAuthAgent(inner, MUFASA)
    result(agent.request(b"GET", b"https://h/a"))
    assert inner.authorization(1) == "Basic " + base64.b64encode(b"Mufasa:Circle of Life").decode()
    result(agent.request(b"GET", b"https://h/b"))  # pre-authorised
    assert inner.authorization(2) == inner.authorization(1)
    with pytest.raises(InsecureAuthRefused) as err:
        result(HTTPAuthAgent(FakeAgent([(401, ['Basic realm="r"'])]), MUFASA).request(b"GET", b"http://u:p@h/a"))
    assert "Circle" not in str(err.value) and "u:p" not in str(err.value)
    inner = FakeAgent([(401, ['Basic realm="r"']), (200, [])])
    result(HTTPAuthAgent(inner, MUFASA, basic_over_http=True).request(b"GET", b"http://h/a"))
    assert inner.authorization(1).startswith("Basic ")


def test_unanswerable_challenge_returns_the_401() -> None:
    inner = FakeAgent([(401, ["Negotiate"])])
    assert result(HTTPAuthAgent(inner, MUFASA).request(b"GET", b"http://h/a")).code == 401
    assert len(inner.sent) == 1


def test_streamed_body_is_buffered_for_the_retry() -> None:
    """A producer that can only be read once (treq's file bodies) is replayed from memory."""
    import io

    from twisted.internet.task import Cooperator

    inner = FakeAgent([(401, apache("n")), (201, [])])
    coop = Cooperator(scheduler=lambda f: f() or _Call())  # run each step at once, no reactor
    producer = FileBodyProducer(io.BytesIO(b"x" * 100_000), cooperator=coop, readSize=4096)
    result(HTTPAuthAgent(inner, MUFASA).request(b"PUT", b"http://h/a", None, producer))
    assert inner.sent[0][3] == inner.sent[1][3] == b"x" * 100_000


class _Call:
    def cancel(self) -> None:
        pass


def test_password_never_logged() -> None:
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        inner = FakeAgent([(401, apache("n1")), (401, apache("n2")), (401, ["Negotiate"])])
        agent = HTTPAuthAgent(inner, MUFASA)
        result(agent.request(b"GET", b"http://h/a"))
        result(agent.request(b"GET", b"http://h/b"))
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert any(e.get("log_level") is LogLevel.warn for e in events)
    assert not [e for e in events if "Circle of Life" in (formatEvent(e) + repr(e))]
