"""Firewall.apply's error paths and the boot unit (real nft on the kernel: tests/integration/test_firewall.py).

A stand-in nft (a shell script) plays the failures the kernel cannot easily be made to produce: a refusal in
nft's own words, a hang, two applies at once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from ensemble_orchestra.agents.firewall import (
    Firewall,
    NftFailed,
    NftMissing,
    NftNotPermitted,
    NftTimeout,
    failure_for,
    install_service,
    nftables_drop_in_text,
    service_text,
)
from ensemble_orchestra.agents.firewall_rules import FirewallPolicy, render

POLICY = FirewallPolicy(world=frozenset({"80/tcp"}))

FAILURES = [
    (
        "a syntax error: nft's Error line, not its caret lines",
        "/etc/ensemble/firewall.nft:9:3-6: Error: syntax error, unexpected junk\n\t\tjunk\n\t\t^^^^\n",
        NftFailed,
        "nft -f F failed: /etc/ensemble/firewall.nft:9:3-6: Error: syntax error, unexpected junk: the rules in force"
        " are unchanged; the refused ones are kept in that file for a bug report",
    ),
    (
        "no CAP_NET_ADMIN",
        "netlink: Error: cache initialization failed: Operation not permitted\n",
        NftNotPermitted,
        "nft -f F failed: netlink: Error: cache initialization failed: Operation not permitted: run the machine agent"
        " as root (it needs CAP_NET_ADMIN)",
    ),
    ("no Error line: the last line", "something\nwent wrong\n", NftFailed, "nft -f F failed: went wrong: the rules"),
    ("silent", "", NftFailed, "nft -f F failed: exit code 1: the rules in force"),
]


@pytest.mark.parametrize(("stderr", "kind", "message"), [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES])
def test_failure_table(stderr: str, kind: type, message: str) -> None:
    """nft's stderr → one error class and one line that says what to do."""
    error = failure_for(["nft", "-f", "F"], 1, stderr)
    assert type(error) is kind
    assert str(error).startswith(message)
    assert "\n" not in str(error) and not error.retryable


def fake_nft(tmp_path: Path, on_load: str) -> Path:
    """An nft whose ``list`` says the table is missing and whose ``-f FILE`` runs *on_load* (shell)."""
    script = tmp_path / "nft"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "-t" ]; then echo "Error: No such file or directory" >&2; exit 1; fi\n'
        'file="$2"\n' + on_load + "\n"
    )
    script.chmod(0o755)
    return script


@pytest_twisted.ensureDeferred
async def test_refused_rules_leave_the_file_and_are_kept_beside_it(tmp_path: Path) -> None:
    """The file keeps the rules that loaded last; the refused ones go to firewall.nft.rejected, which the error
    names (also inside nft's own message, instead of the temporary's name)."""
    rules = tmp_path / "etc" / "firewall.nft"
    rules.parent.mkdir()
    rules.write_text("the rules in force\n")
    nft = fake_nft(tmp_path, 'echo "$file:3:1-4: Error: Could not process rule: No such file or directory" >&2; exit 1')
    with pytest.raises(NftFailed) as raised:
        await Firewall(reactor, nft=str(nft), path=rules).apply(POLICY)
    rejected = rules.parent / "firewall.nft.rejected"
    assert str(raised.value) == (
        f"{nft} -f {rejected} failed: {rejected}:3:1-4: Error: Could not process rule: No such file or directory:"
        " the rules in force are unchanged; the refused ones are kept in that file for a bug report"
    )
    assert rules.read_text() == "the rules in force\n"
    assert rejected.read_text() == render(POLICY)
    assert sorted(p.name for p in rules.parent.iterdir()) == ["firewall.nft", "firewall.nft.rejected"]


@pytest_twisted.ensureDeferred
async def test_no_nft(tmp_path: Path) -> None:
    """nftables not installed: says so; nothing written."""
    rules = tmp_path / "firewall.nft"
    with pytest.raises(NftMissing, match=r"^/nonexistent/nft not found: install the package nftables$"):
        await Firewall(reactor, nft="/nonexistent/nft", path=rules).apply(POLICY)
    assert list(tmp_path.iterdir()) == []


@pytest_twisted.ensureDeferred
async def test_a_hanging_nft_is_killed_at_the_bound(tmp_path: Path) -> None:
    """nft that never ends: killed after the timeout, a retryable error, no temporary left."""
    nft = fake_nft(tmp_path, "exec sleep 30")
    rules = tmp_path / "etc" / "firewall.nft"
    started = time.monotonic()
    with pytest.raises(NftTimeout, match=r"did not finish within 0.3 s: it was killed; try again$") as raised:
        await Firewall(reactor, nft=str(nft), path=rules, timeout=0.3).apply(POLICY)
    assert time.monotonic() - started < 2.0
    assert raised.value.retryable
    assert list(rules.parent.iterdir()) == []


@pytest_twisted.ensureDeferred
async def test_applies_run_one_at_a_time(tmp_path: Path) -> None:
    """Two applies at once: the second nft starts after the first ended, and the last policy is the one written."""
    log = tmp_path / "log"
    nft = fake_nft(tmp_path, f"echo start >> {log}; sleep 0.2; echo end >> {log}; exit 0")
    firewall = Firewall(reactor, nft=str(nft), path=tmp_path / "firewall.nft")
    second = FirewallPolicy(world=frozenset({"443/tcp"}))
    both = [Deferred.fromCoroutine(firewall.apply(POLICY)), Deferred.fromCoroutine(firewall.apply(second))]
    assert [await d for d in both] == [True, True]
    assert log.read_text().split() == ["start", "end", "start", "end"]
    assert (tmp_path / "firewall.nft").read_text() == render(second)


def test_boot_unit() -> None:
    """Loads our file early, before the network, after Debian's nftables.service (whose config flushes the
    ruleset); checked on a lab container system: nftables, then ours, then network-pre.target."""
    text = service_text(Path("/etc/ensemble/firewall.nft"))
    lines = set(text.splitlines())
    for line in (
        "DefaultDependencies=no",
        "Before=network-pre.target shutdown.target ensemble-machine-agent.service",
        "After=nftables.service",
        "ConditionPathExists=/etc/ensemble/firewall.nft",
        "Type=oneshot",
        "RemainAfterExit=yes",
        "ExecStart=/usr/sbin/nft -f /etc/ensemble/firewall.nft",
        "WantedBy=sysinit.target",
    ):
        assert line in lines
    assert "ExecStop" not in text


def test_nftables_drop_in() -> None:
    """nftables.service loads ours again after each of its flushes; never failing because of ours."""
    text = nftables_drop_in_text(Path("/etc/ensemble/firewall.nft"))
    load = (
        "-/bin/sh -c 'if [ -e /etc/ensemble/firewall.nft ]; then exec /usr/sbin/nft -f /etc/ensemble/firewall.nft; fi'"
    )
    assert [line for line in text.splitlines() if line.startswith("Exec")] == [
        f"ExecStartPost={load}",
        f"ExecReload={load}",
        f"ExecStopPost={load}",
    ]


@pytest_twisted.ensureDeferred
async def test_install_service(tmp_path: Path) -> None:
    """The unit and the drop-in are written under the unit directory, then systemd reloads and enables the unit
    (systemctl recorded here; run for real on a lab container system)."""
    calls: list[list[str]] = []

    async def command(reactor: object, argv: Sequence[str]) -> str:
        calls.append(list(argv))
        return ""

    rules = Path("/etc/ensemble/firewall.nft")
    await install_service(reactor, tmp_path, rules, command=command)
    assert (tmp_path / "ensemble-firewall.service").read_text() == service_text(rules)
    assert (tmp_path / "nftables.service.d" / "ensemble-firewall.conf").read_text() == nftables_drop_in_text(rules)
    assert calls == [["systemctl", "daemon-reload"], ["systemctl", "enable", "ensemble-firewall.service"]]
