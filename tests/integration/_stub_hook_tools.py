#!/usr/bin/python3
"""Stand-ins for the unit agent's hook tools, run inside a lab system by the example charms' hooks.

Standard library only (it runs on the system's python3). One file, installed under every tool's name; the
name it is called by says which tool it is. Ensemble's semantics, with files instead of the agent:

    $STUB_AGENT_DIR/config.json                  the service's settings (config-get)
    $STUB_AGENT_DIR/unit.json                    {"name": ..., "private-address": ..., "public-address": ...}
    $STUB_AGENT_DIR/relations/<id>.json          {"name": "db", "settings": {unit: {key: value}}}
    $STUB_AGENT_DIR/ports.json                   the open ports, ["80/tcp", ...]
    $STUB_AGENT_DIR/pending.json                 this hook's writes (relation settings, ports)
    $STUB_AGENT_DIR/calls.log                    every call's argv, one JSON list a line
    $STUB_AGENT_DIR/hook.log                     juju-log's lines

Writes go to pending.json; the harness (tests/integration/_charm_units.py) commits them only when the hook
exits 0, as the agent does, and carries settings to the other side of the relation.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

STATE = Path(os.environ.get("STUB_AGENT_DIR", "/var/lib/stub-agent"))
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def fail(message: str, code: int = 2) -> None:
    print(f"{TOOL}: {message}", file=sys.stderr)
    sys.exit(code)


def load(name: str, default: Any) -> Any:
    path = STATE / name
    return json.loads(path.read_text()) if path.exists() else default


def save(name: str, value: object) -> None:
    path = STATE / name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True))
    tmp.replace(path)


def env(*names: str) -> str:
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    return ""


def take_option(args: list[str], *flags: str) -> str | None:
    for flag in flags:
        if flag in args:
            at = args.index(flag)
            if at + 1 >= len(args):
                fail(f"{flag} needs a value")
            value = args[at + 1]
            del args[at : at + 2]
            return value
    return None


def emit(value: object, fmt: str) -> None:
    """smart: a string as is, nothing for None, a mapping as 'key: value' lines; json; shell."""
    if fmt == "json":
        print(json.dumps(value))
    elif fmt == "shell":
        if isinstance(value, dict):
            for key, item in sorted(value.items()):
                quoted = str(item).replace("'", "'\\''")
                print(f"{key.upper().replace('-', '_')}='{quoted}'")
        elif value is not None:
            print(value)
    elif isinstance(value, dict):
        for key, item in sorted(value.items()):
            print(f"{key}: {item}")
    elif isinstance(value, bool):
        print("True" if value else "False")
    elif value is not None:
        print(value)


def relation_id(args: list[str]) -> str:
    rid = take_option(args, "-r") or env("ENSEMBLE_RELATION_ID", "JUJU_RELATION_ID")
    if not rid:
        fail("no relation id: give -r ID outside a relation hook")
    if not (STATE / "relations" / f"{rid}.json").exists():
        fail(f"unknown relation id {rid!r}", 1)
    return rid


def local_settings(rid: str) -> dict[str, str]:
    """This unit's settings in *rid* with this hook's writes so far (a hook reads its own writes)."""
    unit = load("unit.json", {})["name"]
    relation = load(f"relations/{rid}.json", {})
    settings = dict(relation["settings"].get(unit, {}))
    for key, value in load("pending.json", {}).get("relations", {}).get(rid, {}).items():
        if value == "":
            settings.pop(key, None)
        else:
            settings[key] = value
    return settings


def main(args: list[str]) -> None:
    fmt = take_option(args, "--format") or "smart"
    if TOOL == "config-get":
        config = load("config.json", {})
        emit(config.get(args[0]) if args else config, fmt)
    elif TOOL == "unit-get":
        if args not in (["private-address"], ["public-address"]):
            fail("usage: unit-get private-address|public-address")
        emit(load("unit.json", {})[args[0]], fmt)
    elif TOOL in ("juju-log", "ensemble-log"):
        level = take_option(args, "-l", "--log-level") or "INFO"
        if level.upper() not in LEVELS:
            fail(f"unknown level {level}")
        line = f"{level.upper()} {' '.join(args)}"
        with (STATE / "hook.log").open("a") as log:
            log.write(line + "\n")
        print(line, file=sys.stderr)
    elif TOOL in ("open-port", "close-port"):
        if len(args) != 1:
            fail(f"usage: {TOOL} PORT[/tcp|udp]")
        port = args[0] if "/" in args[0] else f"{args[0]}/tcp"
        pending = load("pending.json", {})
        pending.setdefault("ports", []).append([TOOL, port])
        save("pending.json", pending)
    elif TOOL == "relation-ids":
        wanted = args[0] if args else env("ENSEMBLE_RELATION", "JUJU_RELATION")
        for path in sorted((STATE / "relations").glob("*.json")):
            if json.loads(path.read_text())["name"] == wanted:
                print(path.stem)
    elif TOOL == "relation-list":
        rid = relation_id(args)
        unit = load("unit.json", {})["name"]
        others = sorted(u for u in load(f"relations/{rid}.json", {})["settings"] if u != unit)
        if fmt == "json":
            emit(others, fmt)
        elif others:
            print("\n".join(others))
    elif TOOL == "relation-get":
        rid = relation_id(args)
        key = args[0] if args else "-"
        unit_name = args[1] if len(args) > 1 else env("ENSEMBLE_REMOTE_UNIT", "JUJU_REMOTE_UNIT")
        if not unit_name:
            fail("no unit: give one outside a hook with a remote unit")
        if unit_name == load("unit.json", {})["name"]:
            settings = local_settings(rid)
        else:
            all_settings = load(f"relations/{rid}.json", {})["settings"]
            if unit_name not in all_settings:
                fail(f"unit {unit_name} is not in relation {rid}", 1)
            settings = all_settings[unit_name]
        emit(settings if key == "-" else settings.get(key), fmt)
    elif TOOL == "relation-set":
        rid = relation_id(args)
        source = take_option(args, "--file")
        values: dict[str, str] = {}
        if source is not None:  # a JSON object of strings, as the agent's relation-set --file takes
            found = json.loads(sys.stdin.read() if source == "-" else Path(source).read_text())
            if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
                fail(f"--file {source} must be a JSON object of strings")
            values.update(found)
        for arg in args:
            key, sep, value = arg.partition("=")
            if not sep or not key:
                fail(f"not key=value: {arg!r}")
            values[key] = value
        pending = load("pending.json", {})
        pending.setdefault("relations", {}).setdefault(rid, {}).update(values)
        save("pending.json", pending)
    else:
        fail(f"unknown tool {TOOL}")


TOOL = Path(sys.argv[0]).name
if __name__ == "__main__":
    with (STATE / "calls.log").open("a") as calls:
        calls.write(json.dumps([TOOL, *sys.argv[1:]]) + "\n")
    main(sys.argv[1:])
