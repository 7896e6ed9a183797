"""The QEMU lab's phone-home server: where installed systems report what they booted with.

A system's installed system (``vm_init.INIT`` with ``ensemble.boot=disk``) reads its NoCloud seed and calls
``GET /phone-home/<system>?from=disk&instance-id=...&hostname=...&user-data-sha256=...`` on 10.0.2.2:<port>,
which is this server on 127.0.0.1. Each call appends ``phoned-home <iso time> k=v ...`` to
``<systems dir>/<system>/phonehome.log``; :func:`phone_homes` reads them back. Stdlib only; run as
``python -m ensemble_orchestra.lab.programs.phone_home --host 127.0.0.1 --port N --systems DIR``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

__all__ = ["main", "phone_home_log", "phone_homes", "record_phone_home"]

_SYSTEM = re.compile(r"^/phone-home/(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)$")
_VALUE = re.compile(r"^[A-Za-z0-9_.:@-]{1,200}$")  # what may be written to the log as a field value


def phone_home_log(system_dir: Path) -> Path:
    """One line per phone home of the installed system: ``phoned-home <iso time> k=v ...``."""
    return system_dir / "phonehome.log"


def phone_homes(system_dir: Path) -> list[dict[str, str]]:
    """The phone homes recorded for a system, oldest first, each as its fields (plus ``time``)."""
    try:
        lines = phone_home_log(system_dir).read_text().splitlines()
    except FileNotFoundError:
        return []
    calls = []
    for line in lines:
        words = line.split()
        if len(words) < 2 or words[0] != "phoned-home":
            continue
        fields = dict(word.split("=", 1) for word in words[2:] if "=" in word)
        calls.append({"time": words[1], **fields})
    return calls


def record_phone_home(systems_dir: Path, path_and_query: str) -> int:
    """Record one call; returns the HTTP status to answer (200, 404 unknown system, 400 bad fields)."""
    parts = urlsplit(path_and_query)
    found = _SYSTEM.match(parts.path)
    if not found or not (systems_dir / found.group("name")).is_dir():
        return 404
    fields = parse_qsl(parts.query, keep_blank_values=True)
    if not fields or any(not _VALUE.match(k) or (v and not _VALUE.match(v)) for k, v in fields):
        return 400
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    line = " ".join(["phoned-home", stamp] + [f"{k}={v}" for k, v in fields])
    with open(phone_home_log(systems_dir / found.group("name")), "a") as out:
        out.write(line + "\n")
    return 200


def _handler(systems_dir: Path) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's name
            status = record_phone_home(systems_dir, self.path)
            body = b"ok\n" if status == 200 else b"no\n"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    return Handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="phone_home")
    parser.add_argument("--host", required=True, help="the address to listen on (the lab's: loopback)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--systems", type=Path, required=True)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer((args.host, args.port), _handler(args.systems))
    print(f"phone-home server on http://{args.host}:{args.port}/phone-home/", file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
