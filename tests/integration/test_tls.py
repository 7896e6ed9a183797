"""Defect 3: a certificate problem is classified once for every HTTP boundary, on real TLS endpoints.

A real TLS port (the test CA's certificate, naming only 127.0.0.1) is put in front of the lab's real
cobblerd and real Apache WebDAV. Reached by the name the certificate is for (with the CA bundle) they
answer; reached as ``localhost`` (a name the certificate does not carry) or without the CA bundle,
Cobbler and the storage both fail at once with a fatal TLS error that names the host and says what to
change — never "Cobbler unavailable … connection lost" retried with backoff.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_twisted

from ensemble_orchestra.cobbler import CobblerClient, CobblerTLSError
from ensemble_orchestra.http.testing import TestPKI, issue_certificates, listen_tls_proxy
from ensemble_orchestra.lab.envfile import lab_environment
from ensemble_orchestra.lab.testing import RunningLab
from ensemble_orchestra.provider import create_orchestra_provider
from ensemble_orchestra.storage import StorageTLSError, open_webdav_storage

pytestmark = pytest.mark.lab

# The whole backoff schedule (0.5 + 1 + 2 + 4 s) would take 7.5 s: a fatal error returns long before.
FAST = 2.0


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def _tls_front(lab: RunningLab, pki: TestPKI, url_key: str) -> tuple[Any, str]:
    """A TLS proxy in front of the lab server named by *url_key*; the https URL with the port swapped in."""
    url = urlsplit(lab_environment(lab.spec, lab.layout)[url_key])
    assert url.port is not None
    port = listen_tls_proxy(_reactor(), pki, url.port)
    return port, f"https://127.0.0.1:{port.getHost().port}{url.path}"


@pytest_twisted.ensureDeferred
async def test_cobbler_behind_a_certificate_for_another_name_is_fatal_at_once(lab: RunningLab, tmp_path: Path) -> None:
    reactor = _reactor()
    pki = issue_certificates(tmp_path)
    port, https_url = _tls_front(lab, pki, "cobbler-api-url")
    user, password = lab.spec.cobbler_user, lab.spec.cobbler_password
    clients = []
    try:
        trusted = CobblerClient(https_url, user, password, reactor, ca_bundle=pki.ca_bundle)
        clients.append(trusted)
        assert "node001" in await trusted.find_systems({"name": "node*"})  # the real cobblerd, over TLS

        wrong_name = https_url.replace("127.0.0.1", "localhost")
        mismatched = CobblerClient(wrong_name, user, password, reactor, ca_bundle=pki.ca_bundle)
        clients.append(mismatched)
        started = reactor.seconds()
        with pytest.raises(CobblerTLSError) as caught:
            await mismatched.find_systems({"name": "node*"})
        assert reactor.seconds() - started < FAST and sum(mismatched.calls.values()) == 1  # not retried
        message = str(caught.value)
        assert not caught.value.retryable
        assert f"localhost:{port.getHost().port}" in message and "cobbler-api-url" in message
        assert "unavailable" not in message and password not in message

        untrusting = CobblerClient(https_url, user, password, reactor)  # no CA bundle: the system's CAs
        clients.append(untrusting)
        with pytest.raises(CobblerTLSError, match="ca-bundle") as caught:
            await untrusting.find_systems({"name": "node*"})
        assert not caught.value.retryable and sum(untrusting.calls.values()) == 1
    finally:
        for client in clients:
            await client.close()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_storage_behind_a_certificate_for_another_name_is_fatal_at_once(lab: RunningLab, tmp_path: Path) -> None:
    reactor = _reactor()
    pki = issue_certificates(tmp_path)
    port, https_url = _tls_front(lab, pki, "storage-url")
    user, password = lab.spec.storage_user, lab.spec.storage_password
    storages = []
    try:
        trusted = open_webdav_storage(reactor, https_url, "tls-env", user, password, ca_bundle=pki.ca_bundle)
        storages.append(trusted)
        await trusted.put("over-tls", b"real Apache behind TLS")
        assert await trusted.get("over-tls") == b"real Apache behind TLS"

        wrong_name = https_url.replace("127.0.0.1", "localhost")
        mismatched = open_webdav_storage(reactor, wrong_name, "tls-env", user, password, ca_bundle=pki.ca_bundle)
        storages.append(mismatched)
        started = reactor.seconds()
        with pytest.raises(StorageTLSError) as caught:
            await mismatched.get("over-tls")
        assert reactor.seconds() - started < FAST and not caught.value.retryable
        message = str(caught.value)
        assert f"localhost:{port.getHost().port}" in message and "storage-url" in message
        assert password not in message
    finally:
        for storage in storages:
            await storage.close()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_bootstrap_against_a_mismatched_cobbler_stops_with_one_fatal_line(
    lab: RunningLab, tmp_path: Path
) -> None:
    """What a user meets: the provider's bootstrap fails at once with the TLS error and claims nothing."""
    reactor = _reactor()
    pki = issue_certificates(tmp_path)
    port, https_url = _tls_front(lab, pki, "cobbler-api-url")
    raw = dict(lab_environment(lab.spec, lab.layout))
    raw.update({"cobbler-api-url": https_url.replace("127.0.0.1", "localhost"), "ca-bundle": str(pki.ca_bundle)})
    provider = create_orchestra_provider("tls-env", raw, reactor)
    try:
        started = reactor.seconds()
        with pytest.raises(CobblerTLSError) as caught:
            await provider.bootstrap({})
        assert reactor.seconds() - started < FAST
        assert "\n" not in str(caught.value) and "localhost" in str(caught.value)
        assert await provider.load_state() is False  # nothing recorded
        assert await provider.storage.list("") == []
        owned = lab.cobbler().find_system({"mgmt_classes": raw["acquired-mgmt-class"]})
        assert owned == []  # nothing claimed
    finally:
        await provider.close()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_the_provisioning_agents_copy_trusts_the_private_ca_without_the_workstations_file(
    lab: RunningLab, tmp_path: Path
) -> None:
    """The provisioning agent builds its provider from /environment, where a ca-bundle path of the workstation's
    means nothing: the copy carries the certificates, and with them it reaches https Cobbler and storage."""
    reactor = _reactor()
    pki = issue_certificates(tmp_path)
    cobbler_port, cobbler_url = _tls_front(lab, pki, "cobbler-api-url")
    storage_port, storage_url = _tls_front(lab, pki, "storage-url")
    raw = dict(lab_environment(lab.spec, lab.layout))
    raw.update({"cobbler-api-url": cobbler_url, "storage-url": storage_url, "ca-bundle": str(pki.ca_bundle)})
    workstation = create_orchestra_provider("tls-env", raw, reactor)
    copy = workstation.get_serialization_data()
    await workstation.close()
    pki.ca_bundle.unlink()  # machine 0 has no such file
    providers = []
    try:
        on_machine = create_orchestra_provider("tls-env", copy, reactor, on_machine=True)
        providers.append(on_machine)
        assert await on_machine.get_machines() == []  # the real cobblerd, over TLS
        await on_machine.storage.check_writable()  # the real Apache, over TLS
        # Without the certificates the system's CAs are used, and the private CA is not among them.
        bare = create_orchestra_provider("tls-env", {**copy, "ca-certificates": None}, reactor, on_machine=True)
        providers.append(bare)
        with pytest.raises(CobblerTLSError, match="ca-bundle"):
            await bare.get_machines()
    finally:
        for provider in providers:
            await provider.close()
        await cobbler_port.stopListening()
        await storage_port.stopListening()
