"""The commissioning area of the storage, on the kit's Apache mod_dav config: the commissioning user may only
PUT a small file into commissioning/incoming/, and the image's own shell code (busybox sh, nc, md5sum) does
that PUT with digest authentication. Runs the very FUNCTIONS the commissioning image runs, on this host."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from requests.auth import HTTPDigestAuth

from ensemble_orchestra.commissioning import parse_report
from ensemble_orchestra.commissioning.image import FUNCTIONS
from ensemble_orchestra.lab import processes, webdav
from ensemble_orchestra.lab.layout import LabLayout, LabSpec

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(not webdav.APACHE_BIN.exists(), reason="Debian's apache2 is not installed"),
    pytest.mark.skipif(not Path("/bin/busybox").exists(), reason="busybox-static is not installed"),
]

TIMEOUT = 5.0
TOKEN = "Zq3x_0123456789-abcdefgh"


@dataclass
class Storage:
    layout: LabLayout
    spec: LabSpec
    url: str

    def storage_session(self) -> requests.Session:
        s = requests.Session()
        s.auth = HTTPDigestAuth(self.spec.storage_user, self.spec.storage_password)
        return s

    def commissioning_session(self) -> requests.Session:
        s = requests.Session()
        s.auth = HTTPDigestAuth(self.spec.commissioning_user, self.spec.commissioning_password)
        return s

    def shell_put(self, url: str, data: bytes, password: str | None = None, tmp: Path | None = None) -> str:
        """The image's http_put, run by busybox sh: the HTTP status it printed."""
        work = Path(tempfile.mkdtemp(dir=tmp))
        (work / "report.json").write_bytes(data)
        (work / "functions.sh").write_text(FUNCTIONS)
        script = '. "$1/functions.sh"; http_put "$2" "$1/report.json" "$3" "$4"'
        done = subprocess.run(
            [
                "/bin/busybox",
                "sh",
                "-c",
                script,
                "sh",
                str(work),
                url,
                self.spec.commissioning_user,
                password or self.spec.commissioning_password,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


def _free_base_port() -> int:
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port > 3:
            return port - 3
    raise RuntimeError("no free port")


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    root = tmp_path if os.geteuid() != 0 else Path(tempfile.mkdtemp(prefix="ensemble-commissioning-test-"))
    root.chmod(0o711)
    layout = LabLayout(root)
    spec = LabSpec(base_port=_free_base_port())
    pid_file = layout.pid_file("webdav")
    processes.start_process(webdav.write_webdav_config(layout, spec), pid_file, layout.log_file("webdav"))
    try:
        ready = processes.wait_until(
            lambda: webdav.webdav_ready(spec), timeout=10, alive=lambda: processes.running_pid(pid_file) is not None
        )
        assert ready, layout.log_file("webdav").read_text()
        store = Storage(layout, spec, webdav.webdav_url(spec))
        # The area exists from the start (an admin makes it at install; the lab when it writes Apache's config).
        assert (layout.webdav_data / "commissioning" / "incoming").is_dir()
        yield store
    finally:
        processes.stop_process(pid_file)
        if root != tmp_path:
            shutil.rmtree(root, ignore_errors=True)


def report_bytes() -> bytes:
    """This host's report, gathered by the image's hw_report."""
    done = subprocess.run(
        ["/bin/busybox", "sh", "-c", FUNCTIONS + f"\nhw_report {TOKEN}"], capture_output=True, timeout=30, check=True
    )
    return done.stdout


def test_the_images_report_of_this_host_is_valid() -> None:
    """hw_report on this host (busybox, /proc, /sys) gives a report parse_report accepts, with its CPUs."""
    report = parse_report(report_bytes())
    assert report.token == TOKEN and report.arch == os.uname().machine
    assert report.cpus == os.cpu_count()
    total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    assert total_mb <= report.memory_mb <= total_mb * 1.2  # installed memory: MemTotal plus the kernel's share


def test_the_image_puts_its_report_with_the_commissioning_credential(storage: Storage, tmp_path: Path) -> None:
    """busybox sh + nc + md5sum do the digest PUT (201, then 204 over it); the storage user reads it back."""
    data = report_bytes()
    url = storage.url + f"commissioning/incoming/{TOKEN}.json"
    assert storage.shell_put(url, data, tmp=tmp_path) == "201"
    assert storage.shell_put(url, data, tmp=tmp_path) == "204"
    got = storage.storage_session().get(url, timeout=TIMEOUT)
    assert got.status_code == 200 and got.content == data
    assert storage.shell_put(url, data, password="wrong", tmp=tmp_path) == "401"


def test_the_commissioning_credential_can_only_put_into_incoming(storage: Storage, tmp_path: Path) -> None:
    """It cannot read, list or delete reports, cannot write elsewhere (not even commissioning/), and its
    uploads are bounded (413); the storage user keeps every method there."""
    url = storage.url + "commissioning/incoming/"
    storage_user, commissioning = storage.storage_session(), storage.commissioning_session()
    assert commissioning.put(url + "a.json", data=b"{}", timeout=TIMEOUT).status_code == 201
    denied = (401, 403)  # Apache answers 401 to an authenticated user whom a Require refuses
    assert commissioning.get(url + "a.json", timeout=TIMEOUT).status_code in denied
    assert commissioning.delete(url + "a.json", timeout=TIMEOUT).status_code in denied
    assert commissioning.request("PROPFIND", url, headers={"Depth": "1"}, timeout=TIMEOUT).status_code in denied
    assert commissioning.request("MKCOL", url + "sub/", timeout=TIMEOUT).status_code in denied
    assert commissioning.request("MOVE", url + "a.json", headers={"Destination": url + "b.json"}).status_code in denied
    for elsewhere in ("commissioning/x.json", "x.json", "environments/lab/provider-state", "exclusive/claims/u/"):
        assert commissioning.put(storage.url + elsewhere, data=b"{}", timeout=TIMEOUT).status_code in denied
    assert commissioning.put(url + "big.json", data=b" " * 70000, timeout=TIMEOUT).status_code == 413
    assert storage.shell_put(url + "big2.json", b" " * 70000, tmp=tmp_path) == "413"
    assert storage_user.get(url + "a.json", timeout=TIMEOUT).content == b"{}"
    assert storage_user.delete(url + "a.json", timeout=TIMEOUT).status_code == 204
    assert sorted(p.name for p in (storage.layout.webdav_data / "commissioning" / "incoming").iterdir()) == []
    assert sorted(p.name for p in storage.layout.webdav_data.iterdir()) == ["commissioning"]  # nothing elsewhere
    log = (storage.layout.log_dir / "webdav-access.log").read_text()
    assert storage.spec.commissioning_password not in log
