"""The lab's WebDAV storage: Debian's Apache mod_dav serving the server kit's ensemble-webdav.conf."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from requests.auth import HTTPDigestAuth

from ensemble_orchestra.lab import processes, webdav
from ensemble_orchestra.lab.layout import LabLayout, LabSpec

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(not webdav.APACHE_BIN.exists(), reason="Debian's apache2 is not installed"),
]

TIMEOUT = 5.0


@dataclass
class Storage:
    layout: LabLayout
    spec: LabSpec
    url: str

    def session(self, password: str | None = None) -> requests.Session:
        s = requests.Session()
        s.auth = HTTPDigestAuth(self.spec.storage_user, password or self.spec.storage_password)
        return s


def _free_base_port() -> int:
    """A base port whose WebDAV port (base + 3) is free right now."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port > 3:
            return port - 3
    raise RuntimeError("no free port")


@pytest.fixture
def lab_root(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, except as root: pytest's 0700 temp dirs keep out the www-data workers."""
    if os.geteuid() != 0:
        yield tmp_path
        return
    root = Path(tempfile.mkdtemp(prefix="ensemble-webdav-test-"))
    root.chmod(0o711)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def storage(lab_root: Path) -> Iterator[Storage]:
    layout = LabLayout(lab_root)
    spec = LabSpec(base_port=_free_base_port())
    argv = webdav.write_webdav_config(layout, spec)
    pid_file = layout.pid_file("webdav")
    processes.start_process(argv, pid_file, layout.log_file("webdav"))
    try:
        ready = processes.wait_until(
            lambda: webdav.webdav_ready(spec),
            timeout=10,
            alive=lambda: processes.running_pid(pid_file) is not None,
            interval=0.01,
        )
        if not ready:
            log = layout.log_file("webdav")
            pytest.fail(f"Apache did not become ready: {log.read_text() if log.exists() else 'no log'}")
        yield Storage(layout, spec, webdav.webdav_url(spec))
    finally:
        processes.stop_process(pid_file)


def test_put_get_delete_round_trip(storage: Storage) -> None:
    s = storage.session()
    url = storage.url + "state.yaml"
    assert s.put(url, data=b"zookeeper: secret\n", timeout=TIMEOUT).status_code == 201
    got = s.get(url, timeout=TIMEOUT)
    assert got.status_code == 200 and got.content == b"zookeeper: secret\n"
    assert s.put(url, data=b"v2", timeout=TIMEOUT).status_code == 204
    assert s.get(url, timeout=TIMEOUT).content == b"v2"
    assert s.delete(url, timeout=TIMEOUT).status_code == 204
    assert s.get(url, timeout=TIMEOUT).status_code == 404


def test_mkcol_is_create_once(storage: Storage) -> None:
    s = storage.session()
    url = storage.url + "claims/"
    assert s.request("MKCOL", url, timeout=TIMEOUT).status_code == 201
    assert s.request("MKCOL", url, timeout=TIMEOUT).status_code == 405
    assert (storage.layout.webdav_data / "claims").is_dir()


def test_propfind_depth_1_lists_children(storage: Storage) -> None:
    s = storage.session()
    assert s.request("MKCOL", storage.url + "dir/", timeout=TIMEOUT).status_code == 201
    for name in ("a", "b"):
        assert s.put(f"{storage.url}dir/{name}", data=name.encode(), timeout=TIMEOUT).status_code == 201
    r = s.request("PROPFIND", storage.url + "dir/", headers={"Depth": "1"}, timeout=TIMEOUT)
    assert r.status_code == 207
    hrefs = {urlsplit(e.text or "").path for e in ET.fromstring(r.content).iter("{DAV:}href")}
    assert hrefs == {"/webdav/dir/", "/webdav/dir/a", "/webdav/dir/b"}


def test_every_method_needs_credentials(storage: Storage) -> None:
    s = storage.session()
    assert s.put(storage.url + "secret", data=b"x", timeout=TIMEOUT).status_code == 201
    for method in ("GET", "PUT", "PROPFIND", "OPTIONS", "MKCOL", "DELETE"):
        r = requests.request(method, storage.url + "secret", data=b"y", timeout=TIMEOUT)
        assert r.status_code == 401, method
        assert r.headers["WWW-Authenticate"].startswith("Digest "), method
    assert requests.put(storage.url + "anon", data=b"x", timeout=TIMEOUT).status_code == 401
    assert not (storage.layout.webdav_data / "anon").exists()
    wrong = storage.session(password="not-" + storage.spec.storage_password)
    assert wrong.get(storage.url + "secret", timeout=TIMEOUT).status_code == 401
    assert wrong.put(storage.url + "secret", data=b"y", timeout=TIMEOUT).status_code == 401
    assert s.get(storage.url + "secret", timeout=TIMEOUT).content == b"x"


def test_password_is_in_no_config_or_log(storage: Storage) -> None:
    s = storage.session()
    s.put(storage.url + "f", data=b"x", timeout=TIMEOUT)
    storage.session(password="wrong").get(storage.url + "f", timeout=TIMEOUT)
    secret = storage.spec.storage_password.encode()
    checked = 0
    for directory in (storage.layout.webdav_dir, storage.layout.log_dir):
        for path in directory.rglob("*"):
            if path.is_file():
                assert secret not in path.read_bytes(), path
                checked += 1
    assert checked >= 4  # httpd.conf, digest file, error and access logs at least


def test_concurrent_mkcol_has_one_winner(storage: Storage) -> None:
    clients = 20
    sessions = [storage.session() for _ in range(clients)]
    for trial in range(3):
        url = f"{storage.url}claim-{trial}/"
        barrier = threading.Barrier(clients)

        def mkcol(s: requests.Session, url: str = url, barrier: threading.Barrier = barrier) -> int:
            # Take the digest challenge first, in this thread (requests keeps digest state per
            # thread), so the MKCOLs go out together already authorised.
            s.request("PROPFIND", storage.url, headers={"Depth": "0"}, timeout=TIMEOUT)
            barrier.wait(TIMEOUT)
            return s.request("MKCOL", url, timeout=TIMEOUT).status_code

        with ThreadPoolExecutor(max_workers=clients) as pool:
            codes = list(pool.map(mkcol, sessions))
        assert codes.count(201) == 1, codes
        # A loser that raced past mod_dav's existence check gets mkdir's EEXIST as a 403, not a 405.
        assert set(codes) <= {201, 403, 405}, codes


def test_clear_webdav_data_while_serving(storage: Storage) -> None:
    s = storage.session()
    assert s.request("MKCOL", storage.url + "d/", timeout=TIMEOUT).status_code == 201
    assert s.put(storage.url + "d/f", data=b"x", timeout=TIMEOUT).status_code == 201
    data = storage.layout.webdav_data
    owner = data.stat().st_uid, data.stat().st_gid
    webdav.clear_webdav_data(storage.layout)
    assert [p.name for p in data.iterdir()] == ["commissioning"]  # the report area is made again, empty
    assert [p.name for p in (data / "commissioning").iterdir()] == ["incoming"]
    assert list((data / "commissioning" / "incoming").iterdir()) == []
    assert (data.stat().st_uid, data.stat().st_gid) == owner
    assert s.request("MKCOL", storage.url + "d/", timeout=TIMEOUT).status_code == 201
    assert s.put(storage.url + "d/f", data=b"y", timeout=TIMEOUT).status_code == 201


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the files to www-data")
def test_root_refuses_a_lab_www_data_cannot_reach(tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    with pytest.raises(webdav.WebDAVConfigError, match="cannot enter"):
        webdav.write_webdav_config(LabLayout(hidden / "lab"), LabSpec(base_port=_free_base_port()))
