"""HTTP Digest (RFC 7616) and Basic (RFC 7617) authentication as an ``IAgent`` wrapper.

treq only does Basic, and Orchestra's WebDAV storage (Apache mod_auth_digest)
wants Digest on every method. The wrapper answers a 401 challenge once, then
caches it per origin so later requests go out authorised (no 401 round trip),
counting ``nc`` per nonce; a 401 to a pre-authorised request (stale or
forgotten nonce) is answered once more with the fresh challenge. Request
bodies are buffered in memory so the retry can send them again.

The password lives in ``Credentials`` as a ``Secret`` (revealed only to hash or encode it); it is never logged
and never put in an exception.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from zope.interface import implementer

from ..errors import EnsembleError
from ..secret import Secret
from .body import BytesBody, buffered, read_body

__all__ = [
    "Challenge",
    "Credentials",
    "DigestChallenge",
    "HTTPAuthAgent",
    "InsecureAuthRefused",
    "digest_authorization",
    "digest_response",
    "parse_challenges",
]

log = Logger()

# Preferred first; RFC 7616 lets a server offer several Digest challenges.
_HASHES = {"SHA-256": "sha256", "MD5": "md5"}
_ALGORITHM_PREFERENCE = ("SHA-256", "SHA-256-SESS", "MD5", "MD5-SESS")

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_SCHEME_RE = re.compile(rf"[\s,]*({_TOKEN})(?=\s|,|$)\s*")
_PARAM_RE = re.compile(rf"({_TOKEN})\s*=\s*({_TOKEN}|{_QUOTED})\s*(?:,\s*|$)")
_TOKEN68_RE = re.compile(r"([A-Za-z0-9\-._~+/]+=*)\s*(?:,\s*|$)")
_UNESCAPE_RE = re.compile(r"\\(.)")


class InsecureAuthRefused(EnsembleError):
    """The server wants Basic auth over plain HTTP, which would send the password in clear."""


class Credentials:
    """A user name and password; the password is held as a ``Secret``, so it never prints."""

    __slots__ = ("password", "username")

    def __init__(self, username: str, password: str | Secret) -> None:
        self.username = username
        self.password = password if isinstance(password, Secret) else Secret(password)

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password={self.password!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Credentials) and (other.username, other.password) == (self.username, self.password)

    def __hash__(self) -> int:
        return hash((self.username, self.password))


@dataclass(frozen=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header: scheme (lower case) and its parameters."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)
    token68: str | None = None


def parse_challenges(values: Sequence[bytes | str]) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` header values, each of which may hold several challenges.

    Lenient: a malformed remainder ends parsing of that value instead of raising,
    since a server's odd extra challenge must not hide the Digest one we can answer.
    """
    challenges: list[Challenge] = []
    for raw in values:
        text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
        pos = 0
        while pos < len(text):
            scheme = _SCHEME_RE.match(text, pos)
            if scheme is None:
                break
            pos = scheme.end()
            params: dict[str, str] = {}
            token68 = None
            while (param := _PARAM_RE.match(text, pos)) is not None:
                params[param.group(1).lower()] = _unquote(param.group(2))
                pos = param.end()
            if not params and (t68 := _TOKEN68_RE.match(text, pos)) is not None:
                token68, pos = t68.group(1), t68.end()
            challenges.append(Challenge(scheme.group(1).lower(), params, token68))
    return challenges


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return _UNESCAPE_RE.sub(r"\1", value[1:-1])
    return value


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class DigestChallenge:
    """The parts of a Digest challenge the response depends on."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: str | None = "auth"
    opaque: str | None = None
    userhash: bool = False
    stale: bool = False

    @classmethod
    def from_challenge(cls, challenge: Challenge) -> DigestChallenge | None:
        """None when the challenge is not one we can answer (unknown algorithm, auth-int only)."""
        p = challenge.params
        algorithm = p.get("algorithm", "MD5").upper()
        if challenge.scheme != "digest" or "nonce" not in p or algorithm not in _ALGORITHM_PREFERENCE:
            return None
        qop = None
        if "qop" in p:
            offered = {q.strip().lower() for q in p["qop"].split(",")}
            if "auth" not in offered:
                return None  # auth-int would need the body hashed; nobody we talk to requires it
            qop = "auth"
        return cls(
            realm=p.get("realm", ""),
            nonce=p["nonce"],
            algorithm=algorithm,
            qop=qop,
            opaque=p.get("opaque"),
            userhash=p.get("userhash", "").lower() == "true",
            stale=p.get("stale", "").lower() == "true",
        )


def _hash(algorithm: str, text: str) -> str:
    return hashlib.new(_HASHES[algorithm.removesuffix("-SESS")], text.encode("utf-8")).hexdigest()


def digest_response(
    challenge: DigestChallenge, credentials: Credentials, method: str, uri: str, nc: str, cnonce: str
) -> str:
    """The ``response`` value of RFC 7616 section 3.4.1 (qop=auth, or RFC 2069 without qop)."""
    algo = challenge.algorithm
    ha1 = _hash(algo, f"{credentials.username}:{challenge.realm}:{credentials.password.reveal()}")
    if algo.endswith("-SESS"):
        ha1 = _hash(algo, f"{ha1}:{challenge.nonce}:{cnonce}")
    ha2 = _hash(algo, f"{method}:{uri}")
    if challenge.qop is None:
        return _hash(algo, f"{ha1}:{challenge.nonce}:{ha2}")
    return _hash(algo, f"{ha1}:{challenge.nonce}:{nc}:{cnonce}:{challenge.qop}:{ha2}")


def digest_authorization(
    challenge: DigestChallenge, credentials: Credentials, method: str, uri: str, nc: str, cnonce: str
) -> str:
    """The ``Authorization`` header value answering *challenge* for one request."""
    username = credentials.username
    if challenge.userhash:
        username = _hash(challenge.algorithm, f"{username}:{challenge.realm}")
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(challenge.realm)}",
        f"uri={_quote(uri)}",
        f"algorithm={challenge.algorithm}",
        f"nonce={_quote(challenge.nonce)}",
    ]
    if challenge.qop is not None:
        parts += [f"nc={nc}", f"cnonce={_quote(cnonce)}", f"qop={challenge.qop}"]
    parts.append(f"response={_quote(digest_response(challenge, credentials, method, uri, nc, cnonce))}")
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    if challenge.userhash:
        parts.append("userhash=true")
    return "Digest " + ", ".join(parts)


def _new_cnonce() -> str:
    return secrets.token_hex(16)


@dataclass
class _Session:
    """What one origin last challenged us with, and how often its nonce was used."""

    digest: DigestChallenge | None  # None: Basic
    nc: int = 0

    def next_nc(self) -> str:
        self.nc += 1
        return f"{self.nc:08x}"


@implementer(IAgent)
class HTTPAuthAgent:
    """Wrap *agent* to answer Digest (preferred: SHA-256, then MD5) or Basic challenges.

    At most two requests go out per call: one (pre-authorised if the origin's
    challenge is cached) and, after a 401 carrying a challenge we can answer, one
    retry. Basic is only sent over https unless *basic_over_http* is set.
    """

    def __init__(
        self,
        agent: IAgent,
        credentials: Credentials,
        *,
        basic_over_http: bool = False,
        cnonce: Callable[[], str] = _new_cnonce,
    ) -> None:
        self._agent = agent
        self._credentials = credentials
        self._basic_over_http = basic_over_http
        self._cnonce = cnonce
        self._sessions: dict[tuple[bytes, bytes, int], _Session] = {}

    def __repr__(self) -> str:
        return f"<HTTPAuthAgent user={self._credentials.username!r}>"

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,  # IAgent's spelling
    ) -> Deferred[IResponse]:
        return Deferred.fromCoroutine(self._request(method, uri, headers, bodyProducer))

    async def _request(
        self, method: bytes, uri: bytes, headers: Headers | None, producer: IBodyProducer | None
    ) -> IResponse:
        body = await buffered(producer)
        parts = urlsplit(uri)
        scheme = parts.scheme.lower()
        origin = (scheme, (parts.hostname or b"").lower(), parts.port or (443 if scheme == b"https" else 80))
        target = (parts.path or b"/") + (b"?" + parts.query if parts.query else b"")
        session = self._sessions.get(origin)
        response = await self._send(method, uri, target, headers, body, session)
        if response.code != 401:
            return response
        session = self._answerable(response, scheme == b"https", uri)
        if session is None:
            return response
        self._sessions[origin] = session
        try:
            await read_body(response)  # frees the connection for the retry
        except Exception:  # a truncated 401 body is irrelevant
            pass
        return await self._send(method, uri, target, headers, body, session)

    def _answerable(self, response: IResponse, secure: bool, uri: bytes) -> _Session | None:
        """The session to retry with, from the best challenge of a 401; None if none fits."""
        challenges = parse_challenges(response.headers.getRawHeaders(b"www-authenticate", []))
        digests = [d for c in challenges if (d := DigestChallenge.from_challenge(c)) is not None]
        if digests:
            best = min(digests, key=lambda d: _ALGORITHM_PREFERENCE.index(d.algorithm))
            log.debug(
                "digest challenge from {url}: realm {realm!r}, {algorithm}, stale={stale}",
                url=_without_userinfo(uri),
                realm=best.realm,
                algorithm=best.algorithm,
                stale=best.stale,
            )
            return _Session(best)
        if any(c.scheme == "basic" for c in challenges):
            if not (secure or self._basic_over_http):
                raise InsecureAuthRefused(
                    f"{_without_userinfo(uri)} asks for Basic authentication over plain http, which would"
                    " send the password in clear: use an https URL for the storage"
                )
            return _Session(None)
        log.warn("no challenge we can answer from {url}", url=_without_userinfo(uri))
        return None

    def _send(
        self,
        method: bytes,
        uri: bytes,
        target: bytes,
        headers: Headers | None,
        body: BytesBody | None,
        session: _Session | None,
    ) -> Deferred[IResponse]:
        headers = headers.copy() if headers is not None else Headers()
        if session is not None:
            headers.setRawHeaders(b"authorization", [self._authorization(session, method, target)])
        return self._agent.request(method, uri, headers, body)

    def _authorization(self, session: _Session, method: bytes, target: bytes) -> bytes:
        creds = self._credentials
        if session.digest is None:
            return b"Basic " + base64.b64encode(f"{creds.username}:{creds.password.reveal()}".encode())
        value = digest_authorization(
            session.digest, creds, method.decode("ascii"), target.decode("latin-1"), session.next_nc(), self._cnonce()
        )
        return value.encode("utf-8")


def _without_userinfo(uri: bytes) -> str:
    """The URL for messages: any ``user:password@`` part dropped."""
    text = uri.decode("latin-1")
    parts = urlsplit(text)
    if "@" not in parts.netloc:
        return text
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()
