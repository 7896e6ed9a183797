"""``ensemble set SERVICE key=value...`` and ``ensemble get SERVICE``: a service's settings, typed by its charm.

``set`` checks every pair against the charm's config.yaml before it writes any (a bad one changes nothing);
``key=`` resets the key to the charm's default. The units run config-changed after the write. Values are never
echoed in errors (a setting may be a password).
"""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from ..charm import UNSET, ConfigSchema
from ..errors import UsageError
from ..state.charms import read_charm
from ..state.errors import TopologyError
from ..state.services import ServicesState
from ._state import run_on_state
from .connection import StateConnection
from .names import service_name
from .progress import Progress

__all__ = ["add_parser"]


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    set_ = commands.add_parser("set", parents=parents, help="change a service's settings (config-changed runs)")
    set_.add_argument("service", metavar="SERVICE", type=service_name)
    set_.add_argument("pairs", nargs="+", metavar="KEY=VALUE", help="KEY= resets KEY to the charm's default")
    set_.set_defaults(run=run_set)
    get = commands.add_parser("get", parents=parents, help="a service's settings, with their types and defaults")
    get.add_argument("service", metavar="SERVICE", type=service_name)
    get.add_argument("--format", choices=("yaml", "json"), default="yaml")
    get.set_defaults(run=run_get)


async def _schema(services: ServicesState, name: str) -> tuple[str, ConfigSchema]:
    try:
        record = await services.read(name)
    except TopologyError as error:
        raise UsageError(str(error)) from None
    charm = await read_charm(services.client, record.charm)
    return record.charm, ConfigSchema.from_dict(charm.config, f"charm {record.charm}")


def run_set(args: argparse.Namespace) -> int | None:
    async def work(connection: StateConnection, provider: Any, progress: Progress, reactor: Any) -> None:
        services = ServicesState(connection.client, connection.settings.identities)
        _, schema = await _schema(services, args.service)
        changes: dict[str, Any] = {}
        for position, pair in enumerate(args.pairs, 1):
            key, sep, text = pair.partition("=")
            if not sep:  # echoed only when it is an option's name: it may be a value typed without its key
                what = repr(key) if key in schema.options else f"argument {position} after the service"
                raise UsageError(f"set {args.service}: {what} is not KEY=VALUE (KEY= resets it)")
            value = schema.coerce(key, text, f"set {args.service}")
            changes[key] = None if value is UNSET else value
        await services.set_settings(args.service, changes)
        progress.done()
        print(f"{args.service}: {', '.join(sorted(changes))} set; its units run config-changed")

    return run_on_state(args, work)


def run_get(args: argparse.Namespace) -> int | None:
    async def work(connection: StateConnection, provider: Any, progress: Progress, reactor: Any) -> None:
        services = ServicesState(connection.client, connection.settings.identities)
        charm, schema = await _schema(services, args.service)
        settings, _ = await services.read_settings(args.service)
        document = {"service": args.service, "charm": charm, "settings": _described(schema, settings)}
        progress.done()
        if args.format == "json":
            import json

            print(json.dumps(document, indent=2, sort_keys=True))
        else:
            print(yaml.safe_dump(document, default_flow_style=False, sort_keys=False), end="")

    return run_on_state(args, work)


def _described(schema: ConfigSchema, settings: dict[str, Any]) -> dict[str, Any]:
    described: dict[str, Any] = {}
    for name, option in sorted(schema.options.items()):
        entry: dict[str, Any] = {"description": option.description, "type": option.type}
        if name in settings:
            entry["value"] = settings[name]
        else:
            entry["value"] = option.default
            entry["default"] = True
        described[name] = entry
    return described
