"""MemoryStorage held to the contract tests/integration/test_webdav_storage.py proves for the real WebDAV storage.

Each test here mirrors one there (same names where it can), minus what only HTTP shows; the rest
check what the fake adds for tests: the injected clock, the shared marker namespace across
environments, and scripted failures.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import CancelledError, Deferred, gatherResults
from twisted.internet.task import Clock
from twisted.web.iweb import IAgent
from zope.interface import implementer
from zope.interface.verify import verifyObject

from ensemble_orchestra.interfaces import IFileStorage
from ensemble_orchestra.storage import FileNotFound, StorageAuthError, StorageError, StorageUnavailable, WebDAVStorage
from ensemble_orchestra.storage.testing import OPERATIONS, MemoryStorage, MemoryStorageServer
from ensemble_orchestra.testing import result_of

BASE = "http://storage.test/webdav/"


def server(**options: Any) -> MemoryStorageServer:
    return MemoryStorageServer(Clock(), base_url=BASE, **options)


def storage(prefix: str = "environments/test", **options: Any) -> MemoryStorage:
    return server(**options).storage(prefix)


def clock(of: MemoryStorageServer) -> Clock:
    """The test's Clock behind the server's IReactorTime."""
    assert isinstance(of.clock, Clock)
    return of.clock


@implementer(IAgent)
class RefusingAgent:
    """An agent the real storage must never reach: only arguments it rejects before any request are compared."""

    def request(self, method, uri, headers=None, bodyProducer=None):  # type: ignore[no-untyped-def]
        raise AssertionError(f"the real storage sent {method!r} {uri!r}: the name was accepted")


def real_storage(prefix: str = "environments/test") -> WebDAVStorage:
    return WebDAVStorage(Clock(), RefusingAgent(), BASE, prefix)


# -- the contract of tests/integration/test_webdav_storage.py -------------------------------------


def test_provides_ifilestorage() -> None:
    assert verifyObject(IFileStorage, storage())


def test_put_get_list_delete_round_trip() -> None:
    """Nested and non-ASCII names, prefix listing, overwrite, idempotent delete: as on WebDAV."""
    files = storage()
    assert result_of(files.list()) == []
    result_of(files.put("provider-state", b"zookeeper-instances: [a]\n"))
    result_of(files.put("charms/mysql-1.zip", b"\x00zip"))
    result_of(files.put("charms/wordpress 2 \u00e9.zip", b"wp"))
    assert result_of(files.get("provider-state")) == b"zookeeper-instances: [a]\n"
    assert result_of(files.get("charms/mysql-1.zip")) == b"\x00zip"
    assert files.server.files["environments/test/charms/mysql-1.zip"] == b"\x00zip"
    everything = ["charms/mysql-1.zip", "charms/wordpress 2 \u00e9.zip", "provider-state"]
    assert result_of(files.list()) == everything
    assert result_of(files.list("charms/")) == everything[:2]
    assert result_of(files.list("ch")) == everything[:2]
    assert result_of(files.list("charms/w")) == everything[1:2]
    assert result_of(files.list("nothing/here/")) == []
    result_of(files.put("provider-state", b"v2"))
    assert result_of(files.get("provider-state")) == b"v2"
    result_of(files.delete("provider-state"))
    result_of(files.delete("provider-state"))  # idempotent
    with pytest.raises(FileNotFound):
        result_of(files.get("provider-state"))
    assert result_of(files.list()) == everything[:2]


def test_get_of_a_missing_file() -> None:
    with pytest.raises(FileNotFound) as err:
        result_of(storage().get("provider-state"))
    assert "provider-state" in str(err.value) and not err.value.retryable


def test_delete_refuses_a_directory() -> None:
    """Deleting a directory would take everything below it: a file name must not do that."""
    files = storage()
    result_of(files.put("charms/a", b"a"))
    with pytest.raises(StorageError, match="directory"):
        result_of(files.delete("charms"))
    assert result_of(files.get("charms/a")) == b"a"


def test_put_refuses_a_directory_and_a_file_below_a_file() -> None:
    """A name is either a file or a directory, as on WebDAV; neither put is retryable."""
    files = storage()
    result_of(files.put("charms/a", b"a"))
    with pytest.raises(StorageError, match="directory") as err:
        result_of(files.put("charms", b"x"))
    assert not err.value.retryable
    with pytest.raises(StorageError) as err:
        result_of(files.put("charms/a/b", b"x"))
    assert not err.value.retryable
    assert result_of(files.list()) == ["charms/a"]


def test_get_url_has_no_credentials() -> None:
    files = storage()
    assert result_of(files.get_url("charms/a b.zip")) == BASE + "environments/test/charms/a%20b.zip"
    assert result_of(files.get_url("charms/a b.zip")) == result_of(real_storage().get_url("charms/a b.zip"))


def test_prefixes_keep_environments_apart() -> None:
    shared = server()
    one, two = shared.storage("environments/one"), shared.storage("environments/two")
    result_of(one.put("provider-state", b"one"))
    result_of(two.put("provider-state", b"two"))
    result_of(one.put("charms/x", b"x"))
    assert result_of(one.get("provider-state")) == b"one"
    assert result_of(two.get("provider-state")) == b"two"
    assert result_of(two.list()) == ["provider-state"]
    result_of(one.delete("provider-state"))
    assert result_of(two.get("provider-state")) == b"two"


@pytest.mark.parametrize("latency", [0.0, 0.05])
def test_create_exclusive_has_exactly_one_winner(latency: float) -> None:
    """10 claimers in different environments on one name, all in flight at once: one True, then False."""
    shared = server(latency=latency)
    claimers = [shared.storage(f"environments/env-{i}") for i in range(10)]
    for trial in range(5):
        name = f"claims/system-{trial}"
        results = gatherResults([c.create_exclusive(name) for c in claimers])
        clock(shared).advance(latency)
        assert result_of(results).count(True) == 1
        later = claimers[0].create_exclusive(name)
        clock(shared).advance(latency)
        assert result_of(later) is False  # and it stays taken


def test_remove_exclusive_frees_the_name() -> None:
    shared = server()
    files = shared.storage("environments/test")
    assert result_of(files.create_exclusive("claims/uid-1")) is True
    assert result_of(files.list()) == []  # markers are not files
    result_of(files.remove_exclusive("claims/uid-1"))
    result_of(files.remove_exclusive("claims/uid-1"))  # idempotent
    assert result_of(files.create_exclusive("claims/uid-1")) is True
    assert result_of(shared.storage("environments/other").create_exclusive("claims/uid-1")) is False


def test_exclusive_age_is_the_servers_clock() -> None:
    """A marker's age is whole seconds on the injected clock: an hour passes without a sleep."""
    shared = server()
    files = shared.storage("environments/test")
    clock(shared).advance(100.7)
    assert result_of(files.exclusive_age("claims/uid-1")) is None
    assert result_of(files.create_exclusive("claims/uid-1")) is True
    assert result_of(files.exclusive_age("claims/uid-1")) == 0.0
    clock(shared).advance(0.5)  # 100.7 -> 101.2: the HTTP dates' seconds differ by one
    assert result_of(files.exclusive_age("claims/uid-1")) == 1.0
    clock(shared).advance(3600)
    assert result_of(files.exclusive_age("claims/uid-1")) == 3601.0
    result_of(files.remove_exclusive("claims/uid-1"))
    assert result_of(files.exclusive_age("claims/uid-1")) is None


def test_check_writable_leaves_nothing_behind() -> None:
    files = storage()
    result_of(files.check_writable())
    assert result_of(files.list()) == [] and files.server.files == {}


def test_storage_down_is_unavailable_at_once() -> None:
    """Nothing listening: StorageUnavailable (retryable) for every request, and nothing changes."""
    files = storage()
    files.server.down = True
    for call in (
        lambda: files.get("f"),
        lambda: files.put("f", b"x"),
        files.list,
        lambda: files.delete("f"),
        lambda: files.create_exclusive("c"),
        lambda: files.exclusive_age("c"),
        lambda: files.remove_exclusive("c"),
        files.check_writable,
    ):
        with pytest.raises(StorageUnavailable) as err:
            result_of(call())
        assert err.value.retryable and "refused" in str(err.value).lower()
    assert files.server.files == {} and files.server.markers == {}


# -- names: the real storage's own validator ------------------------------------------------------

BAD_NAMES = ["", "/provider-state", "charms//a", "../escape", "charms/../x", "a/./b", "tab\tname", "x/", 7]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused_exactly_as_the_real_storage_does(name: Any) -> None:
    """Same ValueError, same text, before any request: the fake reuses WebDAVStorage's validator."""
    fake, real = storage(), real_storage()
    for call in ("get", "delete", "get_url", "create_exclusive", "exclusive_age", "remove_exclusive"):
        with pytest.raises(ValueError) as real_error:
            result_of(getattr(real, call)(name))
        with pytest.raises(ValueError) as fake_error:
            result_of(getattr(fake, call)(name))
        assert str(fake_error.value) == str(real_error.value), call
    assert sum(fake.server.calls.values()) == 0


@pytest.mark.parametrize("prefix", ["/charms", "charms//", "../x/", "a/../b/"])
def test_bad_list_prefixes_are_refused_as_by_the_real_storage(prefix: str) -> None:
    with pytest.raises(ValueError) as real_error:
        result_of(real_storage().list(prefix))
    with pytest.raises(ValueError) as fake_error:
        result_of(storage().list(prefix))
    assert str(fake_error.value) == str(real_error.value)


@pytest.mark.parametrize("prefix", ["", "/env", "exclusive/env", "env/../x"])
def test_bad_environment_prefixes_are_refused_as_by_the_real_storage(prefix: str) -> None:
    with pytest.raises(ValueError) as real_error:
        real_storage(prefix)
    with pytest.raises(ValueError) as fake_error:
        storage(prefix)
    assert str(fake_error.value) == str(real_error.value)


def test_put_takes_bytes_only() -> None:
    with pytest.raises(TypeError, match="bytes"):
        result_of(storage().put("f", "text"))  # type: ignore[arg-type]


# -- what the fake adds: scripted failures, latency, cancellation, close --------------------------


def test_fail_next_fails_that_many_requests_of_one_operation() -> None:
    """A scripted error hits only the named operation, the given number of times; the rest go through."""
    files = storage()
    refused = StorageAuthError("the storage refused PUT: check storage-user and storage-pass")
    files.server.fail_next("put", refused, times=2)
    for _ in range(2):
        with pytest.raises(StorageAuthError):
            result_of(files.put("f", b"x"))
    result_of(files.create_exclusive("claims/a"))  # another operation is not affected
    result_of(files.put("f", b"x"))
    assert result_of(files.get("f")) == b"x"
    files.server.fail_next("get")
    with pytest.raises(StorageUnavailable):
        result_of(files.get("f"))
    assert files.server.calls["put"] == 3 and files.server.calls["get"] == 2


def test_fail_next_can_aim_at_one_name() -> None:
    """A failure scripted for one file hits only requests on that name; others pass it by."""
    files = storage()
    files.server.fail_next("put", name="provider-state")
    result_of(files.put("ports/0", b"[]"))
    with pytest.raises(StorageUnavailable):
        result_of(files.put("provider-state", b"x"))
    result_of(files.put("provider-state", b"x"))
    assert result_of(files.list()) == ["ports/0", "provider-state"]


def test_a_read_only_storage_fails_check_writable() -> None:
    """check_writable is a put, a get and a delete, so a refused put (read-only share) fails it."""
    files = storage()
    files.server.fail_next("put", StorageAuthError("the storage refused PUT"))
    with pytest.raises(StorageAuthError):
        result_of(files.check_writable())
    files.server.fail_next("delete")
    with pytest.raises(StorageUnavailable):
        result_of(files.check_writable())


def test_only_requests_can_be_scripted() -> None:
    with pytest.raises(ValueError, match="not a storage request"):
        server().fail_next("get_url")
    assert "check_writable" not in OPERATIONS


def test_a_hung_request_times_out_on_the_clock() -> None:
    """No answer: StorageUnavailable once the storage's timeout passes on the clock, and no effect."""
    files = storage(timeout=5.0)
    files.server.hang_next("put")
    d = files.put("f", b"x")
    clock(files.server).advance(4.9)
    assert not d.called
    clock(files.server).advance(0.1)
    with pytest.raises(StorageUnavailable, match=r"within 5s") as err:
        result_of(d)
    assert err.value.retryable
    assert files.server.files == {}


def test_a_cancelled_request_has_no_effect() -> None:
    """Cancelling (Ctrl-C) a request in flight: CancelledError, the marker is not created."""
    files = storage(latency=1.0)
    d = files.create_exclusive("claims/a")
    d.cancel()
    with pytest.raises(CancelledError):
        result_of(d)
    clock(files.server).advance(2)
    assert not files.server.has_marker("claims/a")
    files.server.hang_next("get")
    hung: Deferred[bytes] = files.get("f")
    hung.cancel()
    with pytest.raises(CancelledError):
        result_of(hung)
    assert clock(files.server).getDelayedCalls() == []  # the hung request's deadline went with it


def test_markers_are_shared_and_their_parents_exist() -> None:
    """Every environment on a server shares markers; a marker's parents exist too, as WebDAV collections."""
    shared = server()
    alpha, beta = shared.storage("environments/alpha"), shared.storage("environments/beta")
    assert result_of(alpha.create_exclusive("claims/uid-1")) is True
    assert shared.has_marker("claims/uid-1") and shared.has_marker("claims")
    assert result_of(beta.create_exclusive("claims")) is False
    assert result_of(beta.create_exclusive("claims/uid-1.reap")) is True
    result_of(beta.remove_exclusive("claims/uid-1"))
    assert not shared.has_marker("claims/uid-1") and shared.has_marker("claims/uid-1.reap")


def test_a_closed_storage_refuses_requests() -> None:
    """The contract says nothing uses a storage after close(): the fake makes a violation fail loudly."""
    files = storage()
    result_of(files.close())
    with pytest.raises(RuntimeError, match="after close"):
        result_of(files.get("f"))
