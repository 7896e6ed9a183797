"""environments.yaml: finding the file, choosing the environment, and the orchestra schema.

Every error is a ConfigError whose text is one line naming the file, the
environment and the key, and saying what to do. Secret keys are read into
:class:`~ensemble_orchestra.secret.Secret` at once, so no later message can
print them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from twisted.logger import Logger

from .errors import UsageError
from .home import environments_file
from .http.agent import CABundleError, read_ca_bundle
from .secret import Secret

# none: the machines run no agents (a lab of stand-in systems): bootstrap --wait ends at the install and
# status shows the provider's view only.
STATE_CONNECTIONS = ("ssh", "direct", "none")
ORIGINS = ("upload",)  # ensemble-origin: how machines get ensemble-orchestra (see origin.py)

__all__ = [
    "ConfigError",
    "EnvironmentsFile",
    "Key",
    "ORCHESTRA_KEYS",
    "OrchestraConfig",
    "load_environments",
    "parse_orchestra",
]


class ConfigError(UsageError):
    """Bad or missing configuration (exit code 2); str() is one line saying what to do."""


@dataclass(frozen=True)
class Key:
    """One environments.yaml key of a provider type."""

    name: str
    doc: str
    required: bool = False
    default: Any = None
    secret: bool = False
    kind: type = str


# The orchestra provider's keys, in the order the docs list them.
ORCHESTRA_KEYS: tuple[Key, ...] = (
    Key("orchestra-server", "host[:port] of the Orchestra/Cobbler server", required=True),
    Key("orchestra-user", "Cobbler user (configfile/users.digest or the server's auth module)", required=True),
    Key("orchestra-pass", "password of orchestra-user", required=True, secret=True),
    Key("admin-secret", "secret protecting the environment's admin access (ZooKeeper)", required=True, secret=True),
    Key("acquired-mgmt-class", "Cobbler mgmt class of systems Ensemble has claimed", required=True),
    Key("available-mgmt-class", "Cobbler mgmt class of systems Ensemble may claim", required=True),
    Key(
        "default-series",
        "series installed when constraints name none: a distro's os_version, e.g. bookworm (profile <series>-<arch>)",
        required=True,
    ),
    Key("storage-url", "WebDAV storage URL", default="http://<orchestra-server>/webdav"),
    Key("storage-user", "WebDAV user", default="<orchestra-user>"),
    Key("storage-pass", "WebDAV password", default="<orchestra-pass>", secret=True),
    Key("authorized-keys", "SSH public keys for the machines (text)"),
    Key("authorized-keys-path", "file with SSH public keys (default: ~/.ssh/id_*.pub)"),
    Key("placement", "unit placement policy: unassigned or local", default="unassigned"),
    Key("cobbler-api-url", "Cobbler XML-RPC endpoint", default="http://<orchestra-server>/cobbler_api"),
    Key("ca-bundle", "CA certificates (PEM) to verify https endpoints with; default: the system's"),
    Key("ca-certificates", "the same certificates as PEM text (the provisioning agent's copy carries these)"),
    Key("power-timeout", "seconds to wait for a power state to be confirmed", default=120.0, kind=float),
    Key("launch-concurrency", "launches and releases in flight at once", default=8, kind=int),
    Key("ensemble-origin", "how machines get ensemble-orchestra: upload (the CLI's own)", default="upload"),
    Key("ssh-user", "the machines' login user (cloud-init's default user: debian on Debian)", default="debian"),
    Key(
        "state-connection", "how the CLI reaches ZooKeeper on machine 0: ssh (a tunnel), direct or none", default="ssh"
    ),
    Key("lab-dir", "set by 'ensemble-orchestra lab up': the lab this environment points at"),
)
_KEYS_BY_NAME = {k.name: k for k in ORCHESTRA_KEYS}
_log = Logger()
PLACEMENTS = ("unassigned", "local")


@dataclass(frozen=True)
class OrchestraConfig:
    """A validated `type: orchestra` environment."""

    environment: str
    orchestra_server: str
    orchestra_user: str
    orchestra_pass: Secret
    admin_secret: Secret | None  # None only in the provisioning agent's copy (parse_orchestra on_machine)
    acquired_mgmt_class: str
    available_mgmt_class: str
    default_series: str
    storage_url: str
    storage_user: str
    storage_pass: Secret
    authorized_keys: str
    placement: str
    cobbler_api_url: str
    ca_bundle: Path | bytes | None  # a PEM file's path (ca-bundle) or the PEM text itself (ca-certificates)
    power_timeout: float
    launch_concurrency: int
    ensemble_origin: str = "upload"
    ssh_user: str = "debian"
    state_connection: str = "ssh"
    ssh_identity: Path | None = None  # the private key of authorized-keys-path, when it is there
    lab_dir: Path | None = None
    source: Path | None = field(default=None, compare=False)


@dataclass(frozen=True)
class EnvironmentsFile:
    """The parsed environments.yaml."""

    path: Path
    default: str | None
    environments: Mapping[str, Mapping[str, Any]]
    world_readable: bool

    def select(self, name: str | None = None) -> tuple[str, Mapping[str, Any]]:
        """The environment to use: *name* (-e), else $ENSEMBLE_ENV, else `default:`, else the only one."""
        chosen = name or os.environ.get("ENSEMBLE_ENV") or self.default
        if chosen is None:
            if len(self.environments) == 1:
                chosen = next(iter(self.environments))
            else:
                names = ", ".join(sorted(self.environments))
                raise ConfigError(
                    f"{self.path}: several environments ({names}) and no 'default:'; pick one with -e NAME"
                )
        if chosen not in self.environments:
            names = ", ".join(sorted(self.environments)) or "none"
            raise ConfigError(f"{self.path}: no environment '{chosen}' (defined: {names})")
        return chosen, self.environments[chosen]


def _position_after(before: str) -> str:
    """'line L, column C' of the character that follows the text *before* it."""
    line = before.count("\n") + 1
    column = len(before) - before.rfind("\n")  # rfind is -1 on the first line
    return f"line {line}, column {column}"


def _read_yaml(path: Path) -> Any:
    """The file's YAML document; ConfigError (one line naming *path*) for whatever a user's file can be."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist: run 'ensemble init' to write a sample, then edit it") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = _position_after(raw[: exc.start].decode("utf-8"))  # what precedes the first bad byte decodes
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at {where}): save it as UTF-8"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.reader.ReaderError as exc:  # valid UTF-8, but a character YAML does not allow (NUL, controls)
        where = _position_after(text[: exc.position])
        raise ConfigError(
            f"{path}: character #x{exc.character:04x} at {where} is not allowed in YAML: remove it"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: malformed YAML: nested too deeply") from None


def load_environments(path: Path | None = None) -> EnvironmentsFile:
    """Read and check the file's outer structure (not the environments' keys)."""
    path = path or environments_file()
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with an 'environments:' key")
    environments = data.get("environments")
    if not isinstance(environments, dict) or not environments:
        raise ConfigError(f"{path}: 'environments:' must be a mapping of at least one environment")
    for name, env in environments.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{path}: environment names must be strings (got {name!r})")
        if not isinstance(env, dict):
            raise ConfigError(f"{path}: environment '{name}' must be a mapping of keys")
    default = data.get("default")
    if default is not None and not isinstance(default, str):
        raise ConfigError(f"{path}: 'default:' must name an environment")
    try:
        mode = path.stat().st_mode
    except OSError:
        mode = 0
    return EnvironmentsFile(path, default, environments, bool(mode & stat.S_IROTH))


def _fail(source: Path | None, env: str, key: str, what: str) -> ConfigError:
    where = f"{source}: " if source else ""
    return ConfigError(f"{where}environment '{env}': key '{key}' {what}")


def _scalar(raw: Mapping[str, Any], key: Key, source: Path | None, env: str) -> Any:
    value = raw.get(key.name)
    if value is None:
        if key.required:
            raise _fail(source, env, key.name, "is required")
        # Defaults written "<other-key>..." are derived from other keys below.
        return None if isinstance(key.default, str) and "<" in key.default else key.default
    if key.kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise _fail(source, env, key.name, f"must be a positive number (got {_shown(key, value)})")
        return key.kind(value)
    if isinstance(value, (dict, list, bool)) or (key.secret and not isinstance(value, (str, int))):
        raise _fail(source, env, key.name, f"must be a string (got a {type(value).__name__})")
    text = str(value).strip()
    if not text:
        raise _fail(source, env, key.name, "must not be empty")
    return text


def _shown(key: Key, value: Any) -> str:
    return "a secret value" if key.secret else repr(value)


def _check_url(value: str, key: str, source: Path | None, env: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = value if "@" not in parts.netloc else "a URL with user information"
        raise _fail(source, env, key, f"must be an http:// or https:// URL (got {shown!r})")
    if "@" in parts.netloc:  # the URL is named in every error: credentials in it would be printed
        raise _fail(source, env, key, "must not carry a user or password: use the -user and -pass keys")
    return value


def _default_public_keys(home: Path) -> str:
    """The text of ~/.ssh/id_*.pub; a file that is not text (not a public key at all) is skipped."""
    keys = []
    for path in sorted((home / ".ssh").glob("id_*.pub")):
        try:
            keys.append(path.read_text(encoding="utf-8").strip())
        except (OSError, UnicodeDecodeError):
            continue
    return "\n".join(k for k in keys if k)


def parse_orchestra(
    env: str,
    raw: Mapping[str, Any],
    source: Path | None = None,
    *,
    home: Callable[[], Path] = Path.home,
    on_machine: bool = False,
) -> OrchestraConfig:
    """Validate an orchestra environment; unknown keys, missing keys and bad values raise ConfigError.

    *on_machine*: the provisioning agent's copy (``/environment``), which never holds the admin secret (only
    machine 0's launch uses it, and the CLI does that).
    """
    unknown = [str(name) for name in raw if name != "type" and name not in _KEYS_BY_NAME]
    if unknown and not on_machine:
        raise _fail(source, env, unknown[0], "is not an orchestra setting (see docs/environments.md)")
    if unknown:  # a newer CLI wrote /environment: the keys this agent does not know are left out
        _log.warn("/environment: ignoring settings this version does not know: {keys}", keys=", ".join(unknown))
        raw = {k: v for k, v in raw.items() if k not in unknown}
    if on_machine and "admin-secret" in raw:
        raise _fail(source, env, "admin-secret", "must not reach the machines: remove it from /environment")
    expected = [
        dataclasses.replace(k, required=False) if on_machine and k.name == "admin-secret" else k for k in ORCHESTRA_KEYS
    ]
    v = {k.name: _scalar(raw, k, source, env) for k in expected}
    server = v["orchestra-server"]
    if "/" in server or " " in server:
        raise _fail(source, env, "orchestra-server", f"must be a host or host:port, not a URL (got {server!r})")
    _host, colon, port = server.rpartition(":") if not server.endswith("]") else ("", "", "")
    if colon and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise _fail(source, env, "orchestra-server", f"has a bad port: use host or host:port (got {server!r})")
    storage_url = _check_url(v["storage-url"] or f"http://{server}/webdav", "storage-url", source, env)
    api_url = _check_url(v["cobbler-api-url"] or f"http://{server}/cobbler_api", "cobbler-api-url", source, env)
    for class_key in ("acquired-mgmt-class", "available-mgmt-class"):
        if any(c in v[class_key] for c in " ,*?[]"):
            raise _fail(source, env, class_key, f"must be one Cobbler mgmt class name (got {v[class_key]!r})")
    if v["acquired-mgmt-class"] == v["available-mgmt-class"]:
        raise _fail(source, env, "acquired-mgmt-class", "must differ from available-mgmt-class")
    if v["ensemble-origin"] not in ORIGINS:
        choices = ", ".join(ORIGINS)
        raise _fail(source, env, "ensemble-origin", f"must be one of {choices} (got {v['ensemble-origin']!r})")
    if v["state-connection"] not in STATE_CONNECTIONS:
        choices = ", ".join(STATE_CONNECTIONS)
        raise _fail(source, env, "state-connection", f"must be one of {choices} (got {v['state-connection']!r})")
    if v["placement"] not in PLACEMENTS:
        raise _fail(source, env, "placement", f"must be one of {', '.join(PLACEMENTS)} (got {v['placement']!r})")

    if v["authorized-keys"] and v["authorized-keys-path"]:
        raise _fail(source, env, "authorized-keys", "and 'authorized-keys-path' are exclusive: set only one")
    if v["authorized-keys-path"]:
        key_path = Path(v["authorized-keys-path"]).expanduser()
        try:
            keys = key_path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise _fail(
                source, env, "authorized-keys-path", f"names {key_path}, which cannot be read ({exc.strerror})"
            ) from None
        except UnicodeDecodeError:
            raise _fail(
                source, env, "authorized-keys-path", f"names {key_path}, which is not UTF-8 text (a public key is)"
            ) from None
    else:
        keys = v["authorized-keys"] or _default_public_keys(home())
    identity = None
    if v["authorized-keys-path"] and str(v["authorized-keys-path"]).endswith(".pub"):
        private = Path(v["authorized-keys-path"][: -len(".pub")]).expanduser()
        identity = private if private.is_file() else None
    if not keys:
        raise _fail(
            source,
            env,
            "authorized-keys",
            "is not set and ~/.ssh has no id_*.pub: set it, or authorized-keys-path, or create a key with ssh-keygen",
        )

    ca_bundle: Path | bytes | None = None
    if v["ca-bundle"] and v["ca-certificates"]:
        raise _fail(source, env, "ca-bundle", "and 'ca-certificates' are exclusive: set only one")
    if v["ca-certificates"]:
        ca_bundle = v["ca-certificates"].encode()
        try:
            read_ca_bundle(ca_bundle)
        except CABundleError as error:
            raise _fail(source, env, "ca-certificates", f"is unusable: {error}") from None
    elif v["ca-bundle"]:
        ca_bundle = Path(v["ca-bundle"]).expanduser()
        if not ca_bundle.is_file():
            raise _fail(source, env, "ca-bundle", f"names {ca_bundle}, which is not a file")
        try:
            read_ca_bundle(ca_bundle)
        except CABundleError as error:
            raise _fail(source, env, "ca-bundle", f"names an unusable file: {error}") from None

    return OrchestraConfig(
        environment=env,
        orchestra_server=server,
        orchestra_user=v["orchestra-user"],
        orchestra_pass=Secret(v["orchestra-pass"]),
        admin_secret=Secret(v["admin-secret"]) if v["admin-secret"] else None,
        acquired_mgmt_class=v["acquired-mgmt-class"],
        available_mgmt_class=v["available-mgmt-class"],
        default_series=v["default-series"],
        storage_url=storage_url.rstrip("/"),
        storage_user=v["storage-user"] or v["orchestra-user"],
        storage_pass=Secret(v["storage-pass"] or v["orchestra-pass"]),
        authorized_keys=keys,
        placement=v["placement"],
        cobbler_api_url=api_url,
        ca_bundle=ca_bundle,
        power_timeout=v["power-timeout"],
        launch_concurrency=v["launch-concurrency"],
        ensemble_origin=v["ensemble-origin"],
        ssh_user=v["ssh-user"],
        state_connection=v["state-connection"],
        ssh_identity=identity,
        lab_dir=Path(v["lab-dir"]) if v["lab-dir"] else None,
        source=source,
    )
