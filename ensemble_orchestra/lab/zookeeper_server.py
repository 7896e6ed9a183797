"""A ZooKeeper of our own: Debian's ``zookeeper`` 3.8 as a non-system instance on loopback.

Debian's ``zookeeper`` package ships the jars only (``zookeeperd`` would add the system service, which we do not
install): the server runs as ``java -cp zookeeper.jar:CONFDIR ZooKeeperServerMain zoo.cfg``, its manifest naming
the other jars. Its config is written here, self-contained: the client port on 127.0.0.1 only, the admin HTTP
server off (it would grab port 8080), data in the instance's own directory, and the ``ruok``/``srvr``/``stat``
four-letter words allowed, because readiness is ``srvr`` answered with the server's mode: a bare TCP connect
proves less, and so does ``ruok`` (measured: ``imok`` comes while ``srvr`` still says "not currently serving
requests"). The state-layer tests start one per test session; the lab can reuse it.
"""

from __future__ import annotations

import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from . import processes
from .layout import LAB_HOST
from .processes import ProcessStartError

__all__ = [
    "ZOOKEEPER_JAR",
    "ZooKeeperServer",
    "ZooKeeperServerError",
    "four_letter_word",
    "free_port",
]

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")  # Debian's libzookeeper-java (pulled in by `zookeeper`)
SLF4J_SIMPLE_JAR = Path("/usr/share/java/slf4j-simple.jar")  # without a binding the server logs nothing at all
MAIN_CLASS = "org.apache.zookeeper.server.ZooKeeperServerMain"
START_TIMEOUT = 30.0  # ready in ~0.5 s here; a cold JVM on a busy 2-core machine takes a few seconds
STOP_TIMEOUT = 5.0
TICK_MS = 2000  # sessions may last 2-20 ticks: 4 s to 40 s


class ZooKeeperServerError(ProcessStartError):
    """The ZooKeeper server cannot be configured or did not start; the message says why and where to look."""


def four_letter_word(host: str, port: int, word: str, timeout: float = 1.0) -> str | None:
    """ZooKeeper's answer to *word* (``ruok``, ``srvr``...), or None if nothing answers within *timeout*."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(word.encode("ascii"))
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
    except OSError:
        return None
    return b"".join(chunks).decode(errors="replace")


def free_port(host: str = LAB_HOST) -> int:
    """A TCP port free on *host* right now (the kernel's pick); a server started soon after takes it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ZooKeeperServer:
    """One standalone ZooKeeper: its files under *directory*, its client port on *host*:*port*."""

    directory: Path
    port: int
    host: str = LAB_HOST
    heap_mb: int = 128

    @property
    def config_dir(self) -> Path:
        return self.directory / "conf"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def pid_path(self) -> Path:
        return self.directory / "zookeeper.pid"

    @property
    def output_log(self) -> Path:
        return self.directory / "zookeeper.log"

    @property
    def hosts(self) -> str:
        """The connect string a client is given."""
        return f"{self.host}:{self.port}"

    def write_config(self) -> list[str]:
        """Write ``zoo.cfg`` into the config directory; return the argv that runs the server."""
        java = shutil.which("java")
        if java is None or not ZOOKEEPER_JAR.exists():
            raise ZooKeeperServerError(
                f"ZooKeeper needs java and {ZOOKEEPER_JAR}: run scripts/install (Debian's zookeeper package)"
            )
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            "# Written by ensemble_orchestra.lab.zookeeper_server: a standalone instance, not the system service.",
            f"tickTime={TICK_MS}",
            f"dataDir={self.data_dir.resolve()}",
            f"clientPort={self.port}",
            f"clientPortAddress={self.host}",
            "admin.enableServer=false",
            "4lw.commands.whitelist=ruok,srvr,stat",
            "standaloneEnabled=true",
            "# Test data is thrown away: no snapshot purging, no fsync wait on every write.",
            "forceSync=no",
        ]
        config = self.config_dir / "zoo.cfg"
        config.write_text("\n".join(lines) + "\n")
        classpath = [str(ZOOKEEPER_JAR), str(self.config_dir.resolve())]
        if SLF4J_SIMPLE_JAR.exists():
            classpath.insert(1, str(SLF4J_SIMPLE_JAR))
        return [
            java,
            f"-Xmx{self.heap_mb}m",
            "-XX:+UseSerialGC",  # one small heap; the default G1 starts threads per core for nothing
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-cp",
            ":".join(classpath),
            MAIN_CLASS,
            str(config.resolve()),
        ]

    def ready(self, timeout: float = 1.0) -> bool:
        """True once the server serves requests: ``srvr`` answers with its mode (``ruok`` says imok earlier)."""
        answer = four_letter_word(self.host, self.port, "srvr", timeout)
        return answer is not None and "\nMode: " in answer

    def running_pid(self) -> int | None:
        return processes.running_pid(self.pid_path)

    def start(self, timeout: float = START_TIMEOUT) -> int:
        """Write the config, start the server, wait (bounded) until it answers; return its pid.

        On failure the server is stopped and the one-line error names the log where ZooKeeper says why.
        """
        argv = self.write_config()
        start_offset = self.output_log.stat().st_size if self.output_log.exists() else 0
        pid = processes.start_process(argv, self.pid_path, self.output_log, cwd=self.directory)

        def alive() -> bool:
            return self.running_pid() is not None

        if processes.wait_until(self.ready, timeout=timeout, alive=alive):
            return pid
        state = "exited" if not alive() else f"did not serve requests within {timeout:.0f} s"
        self.stop()
        reason = processes.last_log_line(self.output_log, start_offset)
        raise ZooKeeperServerError(f"ZooKeeper on {self.hosts} {state}{reason}: see {self.output_log}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Stop the server this instance started (by its recorded pid); False if none ran."""
        return processes.stop_process(self.pid_path, timeout)

