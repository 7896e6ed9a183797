"""WebDAVStorage against the lab's real Apache mod_dav (digest auth), and TLS against a local server."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import pytest_twisted
import requests
from requests.auth import HTTPDigestAuth
from twisted.internet import defer
from twisted.logger import formatEvent, globalLogPublisher
from twisted.web.iweb import IAgent
from zope.interface import implementer
from zope.interface.verify import verifyObject

from ensemble_orchestra.http.digest import Credentials, HTTPAuthAgent
from ensemble_orchestra.http.testing import issue_certificates
from ensemble_orchestra.interfaces import IFileStorage
from ensemble_orchestra.lab import webdav
from ensemble_orchestra.lab.testing import RunningLab
from ensemble_orchestra.secret import Secret
from ensemble_orchestra.storage import (
    FileNotFound,
    StorageAuthError,
    StorageError,
    StorageTLSError,
    StorageUnavailable,
    WebDAVStorage,
    make_agent,
    open_webdav_storage,
)

needs_apache = pytest.mark.skipif(not webdav.APACHE_BIN.exists(), reason="Debian's apache2 is not installed")
TIMEOUT = 5.0


def _reactor():  # type: ignore[no-untyped-def]
    from twisted.internet import reactor

    return reactor


@implementer(IAgent)
class CountingAgent:
    """Wraps the transport agent (below the auth agent) and records (method, status) per response."""

    def __init__(self, agent: IAgent) -> None:
        self._agent = agent
        self.seen: list[tuple[str, int]] = []

    def request(self, method, uri, headers=None, bodyProducer=None):
        def record(response):  # type: ignore[no-untyped-def]
            self.seen.append((method.decode(), response.code))
            return response

        return self._agent.request(method, uri, headers, bodyProducer).addCallback(record)


Factory = Callable[..., WebDAVStorage]


@pytest.fixture
def make_storage(lab: RunningLab) -> Iterator[Factory]:
    """Builds storages on the lab (fresh, empty storage) and closes their connections afterwards."""
    made: list[WebDAVStorage] = []

    def make(
        prefix: str = "environments/test",
        *,
        password: str | None = None,
        url: str | None = None,
        counter: CountingAgent | None = None,
        timeout: float = TIMEOUT,
    ) -> WebDAVStorage:
        reactor = _reactor()
        agent, pool = make_agent(reactor, connect_timeout=timeout)
        if counter is not None:
            counter._agent = agent
            agent = counter
        creds = Credentials(lab.spec.storage_user, Secret(password or lab.spec.storage_password))
        storage = WebDAVStorage(
            reactor,
            HTTPAuthAgent(agent, creds),
            url or webdav.webdav_url(lab.spec),
            prefix,
            timeout=timeout,
            pool=pool,
        )
        made.append(storage)
        return storage

    yield make
    for storage in made:
        pytest_twisted.blockon(storage.close())


@pytest.mark.lab
@needs_apache
@pytest_twisted.ensureDeferred
async def test_provides_ifilestorage(make_storage: Factory) -> None:
    assert verifyObject(IFileStorage, make_storage())


@pytest.mark.lab
@needs_apache
@pytest_twisted.ensureDeferred
async def test_put_get_list_delete_round_trip(make_storage: Factory, lab: RunningLab) -> None:
    """Files land under <base>/<prefix>/, nested names create their directories, delete is idempotent."""
    storage = make_storage()
    assert await storage.list() == []  # the prefix does not even exist yet
    await storage.put("provider-state", b"zookeeper-instances: [a]\n")
    await storage.put("charms/mysql-1.zip", b"\x00zip")
    await storage.put("charms/wordpress 2 \u00e9.zip", b"wp")
    assert await storage.get("provider-state") == b"zookeeper-instances: [a]\n"
    assert await storage.get("charms/mysql-1.zip") == b"\x00zip"
    assert (lab.layout.webdav_data / "environments" / "test" / "charms" / "mysql-1.zip").read_bytes() == b"\x00zip"
    everything = ["charms/mysql-1.zip", "charms/wordpress 2 \u00e9.zip", "provider-state"]
    assert await storage.list() == everything
    assert await storage.list("charms/") == everything[:2]
    assert await storage.list("ch") == everything[:2]
    assert await storage.list("charms/w") == everything[1:2]
    assert await storage.list("nothing/here/") == []
    await storage.put("provider-state", b"v2")
    assert await storage.get("provider-state") == b"v2"
    await storage.delete("provider-state")
    await storage.delete("provider-state")  # idempotent
    with pytest.raises(FileNotFound):
        await storage.get("provider-state")
    assert await storage.list() == everything[:2]


@pytest.mark.lab
@needs_apache
@pytest_twisted.ensureDeferred
async def test_get_of_a_missing_file(make_storage: Factory) -> None:
    storage = make_storage()
    with pytest.raises(FileNotFound) as err:
        await storage.get("provider-state")
    assert "provider-state" in str(err.value) and not err.value.retryable


@pytest.mark.lab
@needs_apache
@pytest_twisted.ensureDeferred
async def test_delete_refuses_a_directory(make_storage: Factory) -> None:
    """DELETE of a collection would take everything below it: a file name must not do that."""
    storage = make_storage()
    await storage.put("charms/a", b"a")
    with pytest.raises(StorageError, match="directory"):
        await storage.delete("charms")
    assert await storage.get("charms/a") == b"a"


@pytest.mark.lab
@needs_apache
@pytest_twisted.ensureDeferred
async def test_get_url_has_no_credentials_and_serves_the_file(make_storage: Factory, lab: RunningLab) -> None:
    storage = make_storage()
    await storage.put("charms/a b.zip", b"zip")
    url = await storage.get_url("charms/a b.zip")
    assert url == webdav.webdav_url(lab.spec) + "environments/test/charms/a%20b.zip"
    auth = HTTPDigestAuth(lab.spec.storage_user, lab.spec.storage_password)
    assert requests.get(url, auth=auth, timeout=TIMEOUT).content == b"zip"


@pytest.mark.lab
@needs_apache
@pytest_twisted.ensureDeferred
async def test_wrong_password_is_an_auth_error_without_the_password(make_storage: Factory, lab: RunningLab) -> None:
    """A wrong storage-pass: a fatal error naming the URL and the settings, never the password."""
    wrong = "not-" + lab.spec.storage_password + "-xyzzy"
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        storage = make_storage(password=wrong)
        for call in (lambda: storage.put("f", b"x"), lambda: storage.get("f"), storage.list):
            with pytest.raises(StorageAuthError) as err:
                await call()
            text = str(err.value) + repr(err.value) + repr(storage)
            assert wrong not in text and lab.spec.storage_password not in text
            assert "storage-pass" in str(err.value) and "/webdav/" in str(err.value)
            assert not err.value.retryable
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert events, "the storage logs its requests"
    assert not [e for e in events if wrong in formatEvent(e) + repr(e)]
    assert not (lab.layout.webdav_data / "environments").exists()


@pytest.mark.lab
@needs_apache
@pytest_twisted.ensureDeferred
async def test_prefixes_keep_environments_apart(make_storage: Factory) -> None:
    one, two = make_storage("environments/one"), make_storage("environments/two")
    await one.put("provider-state", b"one")
    await two.put("provider-state", b"two")
    await one.put("charms/x", b"x")
    assert await one.get("provider-state") == b"one"
    assert await two.get("provider-state") == b"two"
    assert await two.list() == ["provider-state"]
    await one.delete("provider-state")
    assert await two.get("provider-state") == b"two"


@pytest.mark.lab
@needs_apache
@pytest_twisted.ensureDeferred
async def test_create_exclusive_has_exactly_one_winner(make_storage: Factory) -> None:
    """10 concurrent claimers (own connections, different environments) on one name: one True."""
    claimers = [make_storage(f"environments/env-{i}") for i in range(10)]
    await defer.gatherResults([defer.ensureDeferred(c.list()) for c in claimers])  # take the challenges
    for trial in range(5):
        name = f"claims/system-{trial}"
        results = await defer.gatherResults([c.create_exclusive(name) for c in claimers])
        assert results.count(True) == 1, results
        assert await claimers[0].create_exclusive(name) is False  # and it stays taken


@pytest.mark.lab
@needs_apache
@pytest_twisted.ensureDeferred
async def test_remove_exclusive_frees_the_name(make_storage: Factory) -> None:
    storage = make_storage()
    assert await storage.create_exclusive("claims/uid-1") is True
    assert await storage.list() == []  # markers are not files
    await storage.remove_exclusive("claims/uid-1")
    await storage.remove_exclusive("claims/uid-1")  # idempotent
    assert await storage.create_exclusive("claims/uid-1") is True
    assert await make_storage("environments/other").create_exclusive("claims/uid-1") is False


@pytest.mark.lab
@needs_apache
@pytest_twisted.ensureDeferred
async def test_exclusive_age_is_the_servers(make_storage: Factory, lab: RunningLab) -> None:
    """A marker's age comes from the server's clock; an absent marker has none."""
    storage = make_storage()
    assert await storage.exclusive_age("claims/uid-1") is None
    assert await storage.create_exclusive("claims/uid-1") is True
    age = await storage.exclusive_age("claims/uid-1")
    assert age is not None and 0 <= age <= 2
    # Backdate the marker on the server's disk, as an hour-old abandoned claim would be.
    marker = lab.layout.webdav_data / "exclusive" / "claims" / "uid-1"
    an_hour_ago = time.time() - 3600
    os.utime(marker, (an_hour_ago, an_hour_ago))
    age = await storage.exclusive_age("claims/uid-1")
    assert age is not None and 3598 <= age <= 3602
    await storage.remove_exclusive("claims/uid-1")
    assert await storage.exclusive_age("claims/uid-1") is None


@pytest.mark.lab
@needs_apache
@pytest_twisted.ensureDeferred
async def test_check_writable_leaves_nothing_behind(make_storage: Factory) -> None:
    storage = make_storage()
    await storage.check_writable()
    assert await storage.list() == []


@pytest.mark.lab
@needs_apache
@pytest_twisted.ensureDeferred
async def test_digest_challenge_is_cached(make_storage: Factory) -> None:
    """Only the first request pays the 401 round trip; later ones go out authorised."""
    counter = CountingAgent(None)  # type: ignore[arg-type]
    storage = make_storage(counter=counter)
    await storage.put("a", b"1")
    first = list(counter.seen)
    assert first[0] == ("PUT", 401) and ("PUT", 201) in first
    counter.seen.clear()
    await storage.put("b", b"2")
    await storage.get("a")
    await storage.list()
    await storage.delete("b")
    assert counter.seen == [("PUT", 201), ("GET", 200), ("PROPFIND", 207), ("DELETE", 204)]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest_twisted.ensureDeferred
async def test_storage_down_is_unavailable_quickly() -> None:
    """Nothing listening: StorageUnavailable (retryable) at once, for every operation."""
    reactor = _reactor()
    storage = open_webdav_storage(reactor, f"http://127.0.0.1:{_closed_port()}/webdav/", "env", "u", "p", timeout=2)
    for call in (
        lambda: storage.get("f"),
        lambda: storage.put("f", b"x"),
        storage.list,
        lambda: storage.create_exclusive("c"),
    ):
        started = time.monotonic()
        with pytest.raises(StorageUnavailable) as err:
            await call()
        assert time.monotonic() - started < 2 and err.value.retryable
        assert "refused" in str(err.value).lower()
    await storage.close()


@pytest_twisted.ensureDeferred
async def test_silent_storage_times_out() -> None:
    """A server that accepts but never answers: StorageUnavailable once the timeout passes."""
    reactor = _reactor()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        storage = open_webdav_storage(reactor, f"http://127.0.0.1:{port}/webdav/", "env", "u", "p", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match=r"within 0.5s"):
            await storage.put("f", b"x")
        assert 0.4 < time.monotonic() - started < 1.5
        await storage.close()


# -- TLS: a local https server with a private CA ------------------------------------------


@pytest_twisted.ensureDeferred
async def test_tls_is_verified(tmp_path: Path) -> None:
    """An untrusted certificate is a fatal StorageTLSError; with the CA bundle the same server works."""
    from twisted.internet import ssl
    from twisted.web import resource, server

    class File(resource.Resource):
        isLeaf = True

        def render_GET(self, request):  # type: ignore[no-untyped-def]
            return b"over tls" if request.path == b"/env/f" else b"?"

    reactor = _reactor()
    pki = issue_certificates(tmp_path)
    bundle, server_pem = pki.ca_bundle, pki.server_pem
    root = File()
    options = ssl.PrivateCertificate.loadPEM(server_pem).options()
    port = reactor.listenSSL(0, server.Site(root), options, interface="127.0.0.1")
    url = f"https://127.0.0.1:{port.getHost().port}/"
    try:
        untrusting = open_webdav_storage(reactor, url, "env", "u", "p", timeout=TIMEOUT)
        with pytest.raises(StorageTLSError, match="CA bundle") as err:
            await untrusting.get("f")
        assert not err.value.retryable
        trusting = open_webdav_storage(reactor, url, "env", "u", "p", timeout=TIMEOUT, ca_bundle=bundle)
        assert await trusting.get("f") == b"over tls"
        wrong_name = url.replace("127.0.0.1", "localhost")  # the certificate names only the IP
        mismatched = open_webdav_storage(reactor, wrong_name, "env", "u", "p", timeout=TIMEOUT, ca_bundle=bundle)
        with pytest.raises(StorageTLSError):
            await mismatched.get("f")
        for storage in (untrusting, trusting, mismatched):
            await storage.close()
    finally:
        await port.stopListening()
