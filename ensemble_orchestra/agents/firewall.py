"""Applying the machine's firewall: the rules (``firewall_rules``) loaded with ``nft -f`` and kept for the next boot.

``Firewall.apply`` writes the rendered rules beside ``/etc/ensemble/firewall.nft``, loads them (nft, run from
the reactor, bounded), and only once the kernel took them renames them over that file: the file always holds
rules that loaded. The same rules again cost one ``nft list`` (an agent restart); if our table is gone (a
reboot before the boot unit ran, an ``nft flush ruleset``) they are loaded again.

At boot ``ensemble-firewall.service`` loads the file before the network comes up. Debian's ``nftables.service``
(disabled by default; an administrator may enable it) loads ``/etc/nftables.conf``, which begins with ``flush
ruleset``: ours is ordered after it at boot, and a drop-in makes nftables.service load our file again after each
of its flushes (start, restart, reload, stop) — ours is back ~10 ms later, nothing of theirs is disabled.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger

from ..deferreds import run_holding
from ..errors import EnsembleError
from .firewall_rules import TABLE, FirewallPolicy, render
from .services import UNIT_DIR
from .system import run

__all__ = [
    "NFT",
    "NFT_TIMEOUT",
    "RULES_PATH",
    "SERVICE",
    "NFTABLES_DROP_IN",
    "Firewall",
    "FirewallError",
    "NftFailed",
    "NftMissing",
    "NftNotPermitted",
    "NftTimeout",
    "failure_for",
    "install_service",
    "nftables_drop_in_text",
    "service_text",
]

NFT = "/usr/sbin/nft"
RULES_PATH = Path("/etc/ensemble/firewall.nft")
SERVICE = "ensemble-firewall.service"
NFTABLES_DROP_IN = Path("nftables.service.d") / "ensemble-firewall.conf"  # below the unit directory
NFT_TIMEOUT = 10.0  # one nft run; measured ~10-30 ms
_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

log = Logger()


class FirewallError(EnsembleError):
    """The machine's firewall could not be applied."""


class NftMissing(FirewallError):
    """No nft binary: the package nftables is not installed."""


class NftNotPermitted(FirewallError):
    """nft may not change the ruleset: the agent must run as root (CAP_NET_ADMIN)."""


class NftFailed(FirewallError):
    """nft refused the rules or the kernel did; the message carries nft's own words."""


class NftTimeout(FirewallError):
    """nft did not finish within its bound (it was killed); the next attempt may succeed."""

    retryable = True


# nft's stderr → the error to raise and what to do; the first match wins, else NftFailed.
_FAILURES: tuple[tuple[str, type[FirewallError], str], ...] = (
    ("Operation not permitted", NftNotPermitted, "run the machine agent as root (it needs CAP_NET_ADMIN)"),
)
_REFUSED = "the rules in force are unchanged; the refused ones are kept in that file for a bug report"


def failure_for(argv: Sequence[str], code: int | None, stderr: str) -> FirewallError:
    """The one-line error for an nft run that exited *code* saying *stderr* (its first ``Error:`` line)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    said = next((line for line in lines if "Error:" in line), lines[-1] if lines else f"exit code {code}")
    for pattern, kind, advice in _FAILURES:
        if pattern in stderr:
            return kind(f"{' '.join(argv)} failed: {said}: {advice}")
    return NftFailed(f"{' '.join(argv)} failed: {said}: {_REFUSED}")


class _Collect(ProcessProtocol):
    def __init__(self) -> None:
        self.stderr = bytearray()
        self.ended: Deferred[int | None] = Deferred()

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(getattr(reason.value, "exitCode", None))


class Firewall:
    """This machine's table ``inet ensemble``. *nft* is the command that runs nft (a path, or an argv such as
    ``["ip", "netns", "exec", "b", "nft"]``); *path* the rules file the boot unit loads."""

    def __init__(
        self,
        reactor: Any,
        nft: str | Sequence[str] = NFT,
        path: Path = RULES_PATH,
        timeout: float = NFT_TIMEOUT,
    ) -> None:
        self.reactor = reactor
        self.nft = [nft] if isinstance(nft, str) else list(nft)
        self.path = path
        self.timeout = timeout
        self._lock = DeferredLock()

    async def apply(self, policy: FirewallPolicy) -> bool:
        """Make *policy* the machine's firewall; True when nft ran, False when it was in force already.

        One at a time (a second call waits for the first). The kernel swaps our table in one transaction; on
        failure the rules in force and the file stay as they were, and a FirewallError says why.
        """
        return await run_holding(self._lock, self._apply, policy)

    async def present(self) -> bool:
        """Whether our table is in the kernel (gone after a reboot until the boot unit ran, or after a flush)."""
        code, _ = await self._run("-t", "list", "table", "inet", TABLE)
        return code == 0

    async def _apply(self, policy: FirewallPolicy) -> bool:
        text = render(policy)
        try:
            unchanged = self.path.read_text() == text
        except FileNotFoundError:
            unchanged = False
        if unchanged:
            if await self.present():
                return False
            await self._load(self.path)
            log.info("firewall: table inet {table} was missing: loaded {path} again", table=TABLE, path=self.path)
            return True
        temporary = _write_private_temporary(self.path, text)
        try:
            await self._load(temporary, shown=self.path.with_name(self.path.name + ".rejected"))
            os.replace(temporary, self.path)
        finally:
            temporary.unlink(missing_ok=True)
        _sync_directory(self.path.parent)  # the caller logs what it applied
        return True

    async def _load(self, path: Path, shown: Path | None = None) -> None:
        """``nft -f path``; on failure *path* is kept as *shown*, which the error names instead."""
        started = self.reactor.seconds()
        code, stderr = await self._run("-f", str(path))
        if code != 0:
            if shown is not None:
                os.replace(path, shown)
                stderr = stderr.replace(str(path), str(shown))
            raise failure_for([*self.nft, "-f", str(shown or path)], code, stderr)
        log.debug("nft -f {path} took {seconds:.3f} s", path=path, seconds=self.reactor.seconds() - started)

    async def _run(self, *args: str) -> tuple[int | None, str]:
        """Run nft with *args*: its exit code and stderr; NftTimeout (after killing it) if it overruns."""
        argv = [*self.nft, *args]
        executable = shutil.which(argv[0], path=_PATH) if "/" not in argv[0] else argv[0]
        if executable is None or not os.access(executable, os.X_OK):
            raise NftMissing(f"{argv[0]} not found: install the package nftables")
        process = _Collect()
        transport = self.reactor.spawnProcess(process, executable, argv, env={"PATH": _PATH})
        timed_out = []

        def kill() -> None:
            try:
                transport.signalProcess("KILL")
            except ProcessExitedAlready:
                return  # it ended as the bound came: its result counts
            timed_out.append(True)

        timer = self.reactor.callLater(self.timeout, kill)
        try:
            code = await process.ended
        finally:
            if timer.active():
                timer.cancel()
        if timed_out:
            raise NftTimeout(f"{' '.join(argv)} did not finish within {self.timeout:g} s: it was killed; try again")
        return code, process.stderr.decode(errors="replace")


def _write_private_temporary(path: Path, text: str) -> Path:
    """*text* in a new root-only file beside *path* (same file system, so a rename replaces *path* atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    with os.fdopen(fd, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    return Path(name)


def _sync_directory(directory: Path) -> None:
    """The rename reaches the disk: the boot unit must find the rules after a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def service_text(path: Path = RULES_PATH, nft: str = NFT) -> str:
    """``ensemble-firewall.service``: loads the rules file at boot, before the network and the agents.

    Early boot, like Debian's nftables.service (no default dependencies, wanted by sysinit.target, before
    network-pre.target), and after it, since its config flushes the whole ruleset. No ExecStop: stopping the
    unit leaves the rules in force.
    """
    return f"""[Unit]
Description=Ensemble firewall: this machine's table inet {TABLE}, as its machine agent last applied it
Documentation=man:nft(8)
DefaultDependencies=no
Wants=network-pre.target
Before=network-pre.target shutdown.target ensemble-machine-agent.service
After=nftables.service
Conflicts=shutdown.target
ConditionPathExists={path}

[Service]
Type=oneshot
RemainAfterExit=yes
StandardInput=null
ExecStart={nft} -f {path}
ExecReload={nft} -f {path}

[Install]
WantedBy=sysinit.target
"""


def nftables_drop_in_text(path: Path = RULES_PATH, nft: str = NFT) -> str:
    """Drop-in for Debian's nftables.service: after each ``flush ruleset`` of its (start, restart, reload, and
    stop: stopping the administrator's firewall must not open the environment's), load ours again.

    Added to its own commands (``Exec*=`` lines add up); ``-``: a failure of ours never fails theirs.
    """
    load = f"-/bin/sh -c 'if [ -e {path} ]; then exec {nft} -f {path}; fi'"
    return f"""# Written by ensemble-orchestra: /etc/nftables.conf flushes the whole ruleset; load the machine's
# table inet {TABLE} again afterwards ({SERVICE} does it at boot).
[Service]
ExecStartPost={load}
ExecReload={load}
ExecStopPost={load}
"""


async def install_service(
    reactor: Any,
    unit_dir: Path = UNIT_DIR,
    path: Path = RULES_PATH,
    command: Callable[[Any, Sequence[str]], Awaitable[str]] = run,
) -> None:
    """Write and enable the boot unit, and the drop-in for nftables.service (nothing started: the machine agent
    loads the rules itself when it applies them). Run where the agents' units are installed."""
    (unit_dir / SERVICE).write_text(service_text(path))
    drop_in = unit_dir / NFTABLES_DROP_IN
    drop_in.parent.mkdir(parents=True, exist_ok=True)
    drop_in.write_text(nftables_drop_in_text(path))
    await command(reactor, ["systemctl", "daemon-reload"])
    await command(reactor, ["systemctl", "enable", SERVICE])
