"""Exec apt-cacher-ng on a package cache that no other running instance uses, held for the daemon's lifetime.

apt-cacher-ng coordinates concurrent downloads of one file only inside its own process, and its docs know of
no second instance on one CacheDir: two could write one file at once, or expire each other's files. Labs
share their caches (they survive ``lab down`` and ``lab reset``, and two test workers run two labs), so the
cache root holds *slots* ``0/``, ``1/``, ... each guarded by ``N.lock``. This program takes the first free
slot's lock with flock, records which slot it took, and execs the daemon with the lock's descriptor
inherited: the daemon keeps this process's pid (the one the lab recorded), and the lock lasts exactly as
long as the daemon does (a crash or a SIGKILL releases it too). As root it drops to the ``apt-cacher-ng``
user first: the daemon answers the lab's systems on the bridge and has no business being root.

    python -m ensemble_orchestra.lab.programs.package_proxy_exec --cache-root DIR --record FILE
        [--user NAME] [--slots N] -- /usr/sbin/apt-cacher-ng -c CONFDIR

The chosen slot reaches the daemon as a ``CacheDir=...`` argument. Standard library only (see __init__).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pwd
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["EXIT_ALL_SLOTS_BUSY", "SLOTS", "main", "slot_lock", "take_slot"]

SLOTS = 8  # labs running at once on one machine that still get a cache each
EXIT_ALL_SLOTS_BUSY = 75  # EX_TEMPFAIL: every slot is held by a running daemon


def slot_lock(cache_root: Path, slot: int) -> Path:
    return cache_root / f"{slot}.lock"


def take_slot(cache_root: Path, slots: int = SLOTS) -> tuple[int, int] | None:
    """(slot number, descriptor holding its lock) of the first free slot, or None if all are held."""
    cache_root.mkdir(parents=True, exist_ok=True)
    for slot in range(slots):
        fd = os.open(slot_lock(cache_root, slot), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return slot, fd
    return None


def _give_to(path: Path, uid: int, gid: int) -> None:
    """Make *path* (and, if it was not the user's yet, everything below it) owned by uid:gid."""
    if path.stat().st_uid == uid:
        return
    for top, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.lchown(os.path.join(top, name), uid, gid)
    os.chown(path, uid, gid)


def _record(record: Path, cache: Path) -> None:
    tmp = record.with_name(record.name + ".tmp")
    tmp.write_text(f"{cache}\n")
    tmp.replace(record)


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="package_proxy_exec", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cache-root", type=Path, required=True)
    parser.add_argument("--record", type=Path, required=True, help="file to write the chosen cache dir into")
    parser.add_argument("--user", help="drop to this user (and its group) before the exec; root only")
    parser.add_argument("--slots", type=int, default=SLOTS)
    parser.add_argument("command", nargs="+", help="the daemon's argv, after --")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    cache_root: Path = args.cache_root.resolve()
    taken = take_slot(cache_root, args.slots)
    if taken is None:
        print(
            f"package proxy: all {args.slots} package caches under {cache_root} are in use by running labs'"
            " proxies: stop one ('lab down'), or give this lab another ENSEMBLE_LAB_CACHE",
            file=sys.stderr,
        )
        return EXIT_ALL_SLOTS_BUSY
    slot, lock_fd = taken
    cache = cache_root / str(slot)
    cache.mkdir(exist_ok=True)
    _record(args.record, cache)
    if args.user:
        user = pwd.getpwnam(args.user)
        _give_to(cache, user.pw_uid, user.pw_gid)
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)
    os.set_inheritable(lock_fd, True)
    command = [*args.command, f"CacheDir={cache}"]
    try:
        os.execv(command[0], command)
    except OSError as exc:
        print(f"package proxy: cannot run {command[0]}: {exc.strerror}; run scripts/install", file=sys.stderr)
    return 127


if __name__ == "__main__":
    sys.exit(main())
