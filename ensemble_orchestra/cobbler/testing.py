"""In-memory Cobbler for tests of code built on the client (public, like ``treq.testing``).

`FakeCobbler` answers the XML-RPC methods the client uses (systems, power, and the administration
calls: distros, profiles, mgmt classes, templates, snippets) with the real server's Fault texts
(captured from cobblerd 3.3.10; 2.x texts where *generation* is 2). Serve it either through
`FakeCobblerAgent` (an IAgent: no sockets; responses after *latency* on an injected clock; scripted
network failures) or through `FakeCobblerResource` on a real port. Faults for error paths: BMCs that
fail every call (``failing_bmcs``) or some operations (``failing_power``), systems that never come on
(``never_on``), and any XML-RPC method failing next (``fail_next``); ``power_requests`` records
every power call (status queries included) in order. Behaviour that matters in production (power, sync,
templates) is proven against the real lab, not here.
"""

from __future__ import annotations

import fnmatch
import secrets
import shlex
import xmlrpc.client
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from ._testing_http import FakeCobblerAgent, FakeCobblerResource

__all__ = ["FakeCobbler", "FakeCobblerAgent", "FakeCobblerResource", "cobbler_fault"]

_CX = "cobbler.cexceptions.CX"


def cobbler_fault(message: str, exc_class: str = _CX) -> xmlrpc.client.Fault:
    """A Fault exactly as cobblerd builds it: faultCode 1, ``<class 'X'>:'message'``."""
    return xmlrpc.client.Fault(1, f"<class '{exc_class}'>:{message!r}")


class FakeCobbler:
    """Systems, tokens, power states and tasks in memory, dispatched by XML-RPC method name."""

    def __init__(
        self,
        *,
        user: str = "cobbler",
        password: str = "cobbler-password",
        generation: int = 3,
        missing_methods: Iterable[str] = (),
        systems: int = 3,
    ) -> None:
        self.user, self.password, self.generation = user, password, generation
        self.missing_methods = set(missing_methods)
        self.calls: Counter[str] = Counter()
        self.tokens: set[str] = set()
        self.power_state: dict[str, bool] = {}
        self.failing_bmcs: set[str] = set()  # every power call on these fails (the fence agent's error)
        self.failing_power: defaultdict[str, set[str]] = defaultdict(set)  # system -> operations that fail
        self.never_on: set[str] = set()  # BMC accepts on/reboot, status stays off (a server that never comes up)
        self.power_requests: list[tuple[str, str]] = []  # (system, operation) of every power call, in order
        self._script: defaultdict[str, list[xmlrpc.client.Fault]] = defaultdict(list)
        self.tasks: dict[str, tuple[str, str]] = {}
        self.systems: dict[str, dict[str, Any]] = {}
        # Other objects by kind (distro, profile, mgmtclass, ...), then templates and snippets by path.
        self.objects: dict[str, dict[str, dict[str, Any]]] = {
            "distro": {
                "bookworm-x86_64": {
                    "name": "bookworm-x86_64",
                    "arch": "x86_64",
                    "breed": "debian",
                    "os_version": "bookworm",
                }
            },
            "profile": {
                "bookworm-x86_64": {
                    "name": "bookworm-x86_64",
                    "distro": "bookworm-x86_64",
                    "parent": "",
                    "autoinstall": "<<inherit>>",
                }
            },
            "mgmtclass": {},
        }
        self.templates: dict[str, str] = {"sample.seed": "# Cobbler's sample preseed\n"}
        self.snippets: dict[str, str] = {"late_apt_repo_config": "# a stock snippet\n"}
        for n in range(1, systems + 1):
            self.add_system(f"node{n:03d}", mac=f"52:54:00:00:00:{n:02x}", ip=f"10.0.0.{n}")

    @property
    def meta_field(self) -> str:
        return "autoinstall_meta" if self.generation >= 3 else "ks_meta"

    def add_system(self, name: str, *, mac: str, ip: str) -> None:
        self.systems[name] = {
            "name": name,
            "uid": secrets.token_hex(16),
            "hostname": f"{name}.example",
            "profile": "bookworm-x86_64",
            "mgmt_classes": ["orchestra-ensemble-available"],
            "netboot_enabled": False,
            self.meta_field: "<<inherit>>",
            "autoinstall" if self.generation >= 3 else "kickstart": "<<inherit>>",
            "owners": "<<inherit>>",
            "comment": "",
            "power_type": "ipmilan",
            "power_address": "127.0.0.1",
            "power_user": "root",
            "power_pass": f"bmc-secret-{name}",
            "interfaces": {"eth0": {"mac_address": mac, "ip_address": ip, "dns_name": f"{name}.example"}},
        }
        self.power_state[name] = False

    def fail_next(self, method: str, fault: xmlrpc.client.Fault | None = None, *, times: int = 1) -> None:
        """The next *times* calls of XML-RPC *method* raise *fault* (default: an unclassified CX)."""
        self._script[method].extend([fault or cobbler_fault(f"fake: scripted failure of {method}")] * times)

    def power_actions(self, name: str, *, status: bool = False) -> list[str]:
        """The power operations asked of *name*'s BMC in order, failed ones included; status queries if *status*."""
        return [op for system, op in self.power_requests if system == name and (status or op != "status")]

    def expire_tokens(self) -> None:
        """What Cobbler does when auth_token_expiration passes (or on logout)."""
        self.tokens.clear()

    # -- XML-RPC ----------------------------------------------------------------------------

    def handle(self, body: bytes) -> bytes:
        """One XML-RPC request body in, one response body (result or Fault) out."""
        params, method = xmlrpc.client.loads(body)
        try:
            result = self.dispatch(str(method), params)
            return xmlrpc.client.dumps((result,), methodresponse=True, allow_none=True).encode()
        except xmlrpc.client.Fault as fault:
            return xmlrpc.client.dumps(fault, methodresponse=True).encode()

    def dispatch(self, method: str, params: tuple[Any, ...]) -> Any:
        self.calls[method] += 1
        handler = getattr(self, f"xmlrpc_{method}", None)
        if handler is None or method in self.missing_methods:
            raise cobbler_fault(
                f"unknown remote method '{method}'" if self.generation >= 3 else "unknown remote method"
            )
        if self._script.get(method):
            raise self._script[method].pop(0)
        return handler(*params)

    def _check_token(self, token: str) -> None:
        if self.generation >= 3 and (not isinstance(token, str) or len(token) != 36):
            raise cobbler_fault('"token" did not have the correct format or type!', "ValueError")
        if token not in self.tokens:
            raise cobbler_fault(f"invalid token: {token}")

    def _system(self, name: str) -> dict[str, Any]:
        if name not in self.systems:
            raise cobbler_fault(f"internal error, unknown system name {name}")
        return self.systems[name]

    def xmlrpc_login(self, user: str, password: str) -> str:
        if (user, password) != (self.user, self.password):
            raise cobbler_fault(f"login failed ({user})" if self.generation >= 3 else f"login failed: {user}")
        token = secrets.token_urlsafe(27)[:34] + "=="  # Cobbler's shape: 36 characters
        self.tokens.add(token)
        return token

    def xmlrpc_logout(self, token: str) -> bool:
        self.tokens.discard(token)
        return True

    def xmlrpc_version(self) -> float:
        return 3.31 if self.generation >= 3 else 2.22

    def xmlrpc_extended_version(self) -> dict[str, Any]:
        return (
            {"version": "3.3.10", "version_tuple": [3, 3, 10]}
            if self.generation >= 3
            else {
                "version": "2.2.2",
                "version_tuple": [2, 2, 2],
            }
        )

    def xmlrpc_get_item_names(self, what: str) -> list[str]:
        return sorted(self.systems if what == "system" else self.objects.get(what, {}))

    def xmlrpc_find_system(self, criteria: dict[str, str], expand: bool = False) -> list[Any]:
        if not criteria:
            raise cobbler_fault("calling find with no arguments", "ValueError")
        found = [s for s in self.systems.values() if all(_matches(s, k, v) for k, v in criteria.items())]
        return [dict(s) if expand else s["name"] for s in sorted(found, key=lambda s: s["name"])]

    def xmlrpc_get_system(self, name: str) -> Any:
        return dict(self.systems[name]) if name in self.systems else "~"

    def xmlrpc_get_systems(self) -> list[dict[str, Any]]:
        return [dict(self.systems[n]) for n in sorted(self.systems)]

    def xmlrpc_get_profiles(self) -> list[dict[str, Any]]:
        return [dict(p) for _, p in sorted(self.objects["profile"].items())]

    def xmlrpc_get_distros(self) -> list[dict[str, Any]]:
        return [dict(d) for _, d in sorted(self.objects["distro"].items())]

    def xmlrpc_get_system_handle(self, name: str, token: str) -> str:
        self._system(name)
        return f"system::{name}"

    def xmlrpc_xapi_object_edit(self, kind: str, name: str, op: str, attrs: dict[str, Any], token: str) -> bool:
        self._check_token(token)
        if kind != "system":
            return self._edit_object(kind, name, op, attrs)
        system = self._system(name)
        interface = attrs.pop("interface", None)
        for key, value in attrs.items():
            if interface and key in ("mac_address", "ip_address", "dns_name", "netmask", "subnet"):
                system["interfaces"].setdefault(interface, {})[key] = value
            elif key in system:  # like 3.x modify_item: unknown attributes are silently ignored
                system[key] = value
        return True

    def _edit_object(self, kind: str, name: str, op: str, attrs: dict[str, Any]) -> bool:
        """xapi add/edit of a distro, profile, mgmtclass ... with 3.3's checks of names and references."""
        objects = self.objects.setdefault(kind, {})
        if op == "add" and name in objects:
            raise cobbler_fault(f"It seems unwise to overwrite the object {name}, try 'edit'")
        if op != "add" and name not in objects:
            raise cobbler_fault(f"internal error, unknown {kind} name {name}")
        if "distro" in attrs and attrs["distro"] not in self.objects["distro"]:
            raise cobbler_fault(f'distribution "{attrs["distro"]}" not found', "ValueError")
        template = attrs.get("autoinstall")
        if template and template != "<<inherit>>" and template not in self.templates:
            raise cobbler_fault(
                "Invalid automatic installation template file location "
                f"/var/lib/cobbler/templates/{template}, file not found",
                "OSError",
            )
        objects.setdefault(name, {"name": name}).update(attrs)
        return True

    def _template_store(self, kind: str) -> dict[str, str]:
        return self.templates if kind == "template" else self.snippets

    def _read_file(self, kind: str, path: str, token: str) -> str:
        self._check_token(token)
        store = self._template_store(kind)
        if path not in store:
            what = "automatic installation template" if kind == "template" else "automated installation snippet"
            where = "templates" if kind == "template" else "snippets"
            raise cobbler_fault(
                f"Invalid {what} file location /var/lib/cobbler/{where}/{path}, file not found", "OSError"
            )
        return store[path]

    def _write_file(self, kind: str, path: str, data: str, token: str) -> bool:
        self._check_token(token)
        self._template_store(kind)[path] = data
        return True

    def xmlrpc_get_autoinstall_templates(self) -> list[str]:
        return sorted(self.templates)

    def xmlrpc_get_autoinstall_snippets(self) -> list[str]:
        return sorted(self.snippets)

    def xmlrpc_read_autoinstall_template(self, path: str, token: str) -> str:
        return self._read_file("template", path, token)

    def xmlrpc_write_autoinstall_template(self, path: str, data: str, token: str) -> bool:
        return self._write_file("template", path, data, token)

    def xmlrpc_read_autoinstall_snippet(self, path: str, token: str) -> str:
        return self._read_file("snippet", path, token)

    def xmlrpc_write_autoinstall_snippet(self, path: str, data: str, token: str) -> bool:
        return self._write_file("snippet", path, data, token)

    def xmlrpc_modify_system(self, handle: str, field: str, value: Any, token: str) -> bool:
        self._check_token(token)
        system = self._system(handle.partition("::")[2])
        if field == "modify_interface":
            for key, val in value.items():
                short, _, interface = key.partition("-")
                names = {"macaddress": "mac_address", "ipaddress": "ip_address", "dnsname": "dns_name"}
                system["interfaces"].setdefault(interface, {})[names.get(short, short)] = val
            return True
        if field not in system:
            return False
        system[field] = value
        return True

    def xmlrpc_save_system(self, handle: str, token: str) -> bool:
        self._check_token(token)
        return True

    def xmlrpc_power_system(self, handle: str, operation: str, token: str) -> bool:
        self._check_token(token)
        name = handle.partition("::")[2]
        self._system(name)
        self.power_requests.append((name, operation))
        if name in self.failing_bmcs or operation in self.failing_power.get(name, ()):
            raise cobbler_fault("command failed (rc=1), please validate the physical setup and cobbler config")
        if operation == "status":
            return self.power_state[name]
        if operation not in ("on", "off", "reboot"):
            raise cobbler_fault(f"invalid power operation '{operation}', expected on/off/status/reboot")
        self.power_state[name] = operation != "off" and name not in self.never_on
        return True

    def xmlrpc_background_power_system(self, options: dict[str, Any], token: str) -> str:
        self._check_token(token)
        task_id = f"2026-01-01_000000_Power management ({options['power']})_{secrets.token_hex(8)}"
        lines = [f"[{task_id}] INFO | start_task(power)"]
        for name in options["systems"]:
            system = self.systems.get(name)
            lines.append(f"[{task_id}] INFO | power command input: action={options['power']}")
            lines.append(f"password={system['power_pass'] if system else ''}")
            if system is None:
                lines.append(
                    f"WARNING | failed to execute power task on {name}, exception: "
                    f"'internal error, unknown system name {name}'"
                )
            elif name in self.failing_bmcs:
                lines.append(
                    f"WARNING | failed to execute power task on {name}, exception: "
                    "'command failed (rc=1), please validate the physical setup and cobbler config'"
                )
            else:
                self.power_requests.append((name, options["power"]))
                self.power_state[name] = options["power"] != "off" and name not in self.never_on
        lines.append(f"[{task_id}] INFO | ### TASK COMPLETE ###")
        self.tasks[task_id] = ("complete", "\n".join(lines) + "\n")
        return task_id

    def xmlrpc_get_task_status(self, task_id: str) -> list[Any]:
        if task_id not in self.tasks:
            raise cobbler_fault("no event with that id")
        return [0.0, "Power management", self.tasks[task_id][0], []]

    def xmlrpc_get_event_log(self, task_id: str) -> str:
        return self.tasks[task_id][1] if task_id in self.tasks else "?"

    def xmlrpc_sync(self, token: str) -> bool:
        self._check_token(token)
        return True


def _matches(system: dict[str, Any], key: str, value: str) -> bool:
    if key in system:
        actual = system[key]
        if isinstance(actual, list):
            return value in actual
        if isinstance(actual, dict):  # like Cobbler 3.3: "k=v k2=v2", each key present with exactly that value
            wanted = {k: (v if sep else None) for k, sep, v in (t.partition("=") for t in shlex.split(value))}
            return all(k in actual and actual[k] == v for k, v in wanted.items())
        return fnmatch.fnmatch(str(actual).lower(), value.lower())
    return any(fnmatch.fnmatch(str(i.get(key, "")), value) for i in system["interfaces"].values())
