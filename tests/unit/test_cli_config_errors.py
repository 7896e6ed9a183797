"""`ensemble` on bad environments.yaml files: one line on stderr naming the file (and environment and key),
no traceback, exit code 2 — checked over a table of malformed files (text, and bytes that are not UTF-8 or
not YAML) and a property-based fuzz; likewise a --log-file that cannot be opened and `init` that cannot write.

These cases fail before the reactor would start, so the command runs in-process. Constraints are checked on
the reactor (the provider may have to wait for its names), so those cases run the command as a process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ensemble_orchestra.cli.ensemble import main
from ensemble_orchestra.cli.environment import select_environment
from ensemble_orchestra.config import ORCHESTRA_KEYS, ConfigError

GOOD = {
    "type": "orchestra",
    "orchestra-server": "orchestra.example.com",
    "orchestra-user": "ensemble",
    "orchestra-pass": "s3cret-pass-91",
    "admin-secret": "adm1n-secret-77",
    "acquired-mgmt-class": "orchestra-ensemble-acquired",
    "available-mgmt-class": "orchestra-ensemble-available",
    "default-series": "bookworm",
    "authorized-keys": "ssh-ed25519 AAAAC3Nza test@example",
}
SECRETS = ("s3cret-pass-91", "adm1n-secret-77")
REQUIRED = [k.name for k in ORCHESTRA_KEYS if k.required]
NUMERIC = [k.name for k in ORCHESTRA_KEYS if k.kind in (int, float)]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ENSEMBLE_HOME", str(tmp_path))
    monkeypatch.delenv("ENSEMBLE_ENV", raising=False)
    return tmp_path


def _env_file(home: Path, content: str | bytes) -> Path:
    path = home / "environments.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    path.chmod(0o600)
    return path


def _with(**changes: object) -> str:
    env = {k: v for k, v in {**GOOD, **changes}.items() if v is not None}
    return yaml.safe_dump({"environments": {"prod": env}})


CASES = [
    # (file text, command, what the line must say)
    ("environments: [a, b\n", ["status"], "malformed YAML at line"),
    ("just a string\n", ["status"], "expected a mapping"),
    ("environments: {}\n", ["status"], "'environments:' must be a mapping of at least one"),
    ("environments:\n  prod: 3\n", ["status"], "environment 'prod' must be a mapping"),
    (_with(type=None), ["status"], "key 'type' is missing"),
    (_with(type="ec3"), ["bootstrap"], "key 'type': unknown provider type 'ec3'"),
    (_with(**{"orchestra-server": None}), ["status"], "key 'orchestra-server' is required"),
    (_with(**{"orchestra-server": "http://x/y"}), ["status"], "key 'orchestra-server' must be a host"),
    (_with(**{"orchestra-pass": ["a"]}), ["status"], "key 'orchestra-pass' must be a string"),
    (_with(**{"power-timeout": "soon"}), ["status"], "key 'power-timeout' must be a positive number"),
    (_with(**{"launch-concurrency": 0}), ["status"], "key 'launch-concurrency' must be a positive number"),
    (_with(**{"storage-url": "ftp://x"}), ["status"], "key 'storage-url' must be an http"),
    (_with(**{"available-mgmt-class": "a b"}), ["status"], "key 'available-mgmt-class' must be one"),
    (_with(**{"acquired-mgmt-class": GOOD["available-mgmt-class"]}), ["status"], "must differ"),
    (_with(**{"authorized-keys-path": "/nonexistent/key.pub"}), ["status"], "key 'authorized-keys'"),
    (_with(**{"ca-bundle": "/nonexistent/ca.pem"}), ["status"], "key 'ca-bundle' names"),
    (_with(**{"placement": "anywhere"}), ["status"], "key 'placement' must be one of"),
    (_with(**{"colour": "blue"}), ["destroy-environment", "-y"], "key 'colour' is not an orchestra setting"),
    (_with(), ["status", "-e", "staging"], "no environment 'staging' (defined: prod)"),
    # Not UTF-8, or characters YAML refuses: the file and the place of the first bad byte.
    (_with().encode().replace(b"ensemble\n", b"ensembl\xe9\n"), ["status"], "not UTF-8 text (byte 0xe9 at line"),
    (b"environments:\n  prod:\n    orchestra-user: caf\xe9\n", ["status"], "byte 0xe9 at line 3, column 24"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ["status"], "not UTF-8 text (byte 0x89 at line 1, column 1)"),
    ("environments: {}".encode("utf-16"), ["bootstrap"], "not UTF-8 text (byte 0xff at line 1, column 1)"),
    (bytes(range(256)), ["destroy-environment", "-y"], "not UTF-8 text (byte 0x80 at line 2, column 118)"),
    (b"environments:\n  prod: {type: orchestra}\x00\n", ["status"], "character #x0000 at line 2, column 26"),
    ("environments:\n  prod: \x1b[31m\n", ["status"], "character #x001b at line 2, column 9 is not allowed"),
    ("environments: " + "[" * 1000, ["status"], "malformed YAML: nested too deeply"),
]


def _assert_one_error_line(out: str, err: str, expected: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ensemble: error: ") and expected in lines[0]
    assert "Traceback" not in err and out == ""
    assert not any(s in err for s in SECRETS)
    return lines[0]


@pytest.mark.parametrize(("text", "command", "expected"), CASES)
def test_bad_configuration_is_one_line_and_exit_2(
    home: Path, capsys: pytest.CaptureFixture[str], text: str | bytes, command: list[str], expected: str
) -> None:
    path = _env_file(home, text)
    assert main(command) == 2
    out, err = capsys.readouterr()
    line = _assert_one_error_line(out, err, expected)
    assert str(path) in line


CONSTRAINT_CASES = [
    ("arch", "constraint 'arch' is not NAME=VALUE"),
    ("colour=red", "unknown constraint 'colour'"),
    ("mem=lots", "constraint mem='lots'"),
]


@pytest.mark.parametrize(("constraints", "expected"), CONSTRAINT_CASES)
def test_bad_constraints_are_one_line_and_exit_2(home: Path, constraints: str, expected: str) -> None:
    """Checked on the reactor, before anything talks to a server (orchestra.example.com is never asked)."""
    _env_file(home, _with())
    run = subprocess.run(
        [sys.executable, "-m", "ensemble_orchestra.cli.ensemble", "bootstrap", "--constraints", constraints],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ENSEMBLE_HOME": str(home)},
    )
    assert run.returncode == 2
    _assert_one_error_line(run.stdout, run.stderr, expected)


def test_an_environments_file_that_is_a_directory(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (home / "environments.yaml").mkdir()
    assert main(["status"]) == 2
    out, err = capsys.readouterr()
    _assert_one_error_line(out, err, f"{home / 'environments.yaml'}: cannot be read (Is a directory)")


def test_an_unreadable_environments_file(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """chmod 000 does not stop root (these tests may run as root): the read itself is refused here."""
    path = _env_file(home, _with())

    real_open = Path.open

    def refuse(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    assert main(["status"]) == 2
    out, err = capsys.readouterr()
    _assert_one_error_line(out, err, f"{path}: cannot be read (Permission denied)")


def test_a_non_utf8_authorized_keys_path_is_a_config_error(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = home / "id_ed25519.pub"
    key.write_bytes(b"ssh-ed25519 AAAA\xff\xfe comment\n")
    _env_file(home, _with(**{"authorized-keys": None, "authorized-keys-path": str(key)}))
    assert main(["status"]) == 2
    out, err = capsys.readouterr()
    _assert_one_error_line(out, err, f"key 'authorized-keys-path' names {key}, which is not UTF-8 text")


@pytest.mark.parametrize("position", ["before", "after"])
@pytest.mark.parametrize("target", ["missing-dir/ensemble.log", "."], ids=["in-a-missing-directory", "a-directory"])
def test_a_log_file_that_cannot_be_opened_is_one_line_and_exit_2(
    home: Path, capsys: pytest.CaptureFixture[str], position: str, target: str
) -> None:
    log = home / target
    _env_file(home, _with())
    argv = ["--log-file", str(log), "status"] if position == "before" else ["status", "-l", str(log)]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    reason = "No such file or directory" if target != "." else "Is a directory"
    assert err == f"ensemble: error: --log-file {log}: cannot be opened ({reason})\n" and out == ""


def test_a_missing_file_says_how_to_create_one(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist: run 'ensemble init'" in err


def test_verbose_shows_the_traceback(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _env_file(home, _with(type="ec3"))
    assert main(["status", "-v"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_init_writes_a_sample_that_parses_and_never_overwrites(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init"]) == 0
    path = home / "environments.yaml"
    assert os.stat(path).st_mode & 0o077 == 0  # it holds the generated admin-secret
    selected = select_environment(None)
    assert selected.name == "orchestra" and selected.provider_type == "orchestra"
    assert len(selected.raw["admin-secret"]) == 32
    before = path.read_text()
    assert main(["init"]) == 1
    assert "exists and was not overwritten" in capsys.readouterr().err
    assert path.read_text() == before


def test_init_where_the_directory_cannot_be_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_directory = tmp_path / "home-is-a-file"
    not_a_directory.write_text("")
    monkeypatch.setenv("ENSEMBLE_HOME", str(not_a_directory))
    assert main(["init"]) == 1
    out, err = capsys.readouterr()
    assert err == (
        f"ensemble: error: {not_a_directory / 'environments.yaml'}: cannot be written: {not_a_directory} is not a"
        " directory (set ENSEMBLE_HOME to a directory)\n"
    )
    monkeypatch.setenv("ENSEMBLE_HOME", str(not_a_directory / "below"))
    assert main(["init"]) == 1
    assert capsys.readouterr().err == (
        f"ensemble: error: {not_a_directory / 'below' / 'environments.yaml'}: cannot be written: cannot create"
        f" {not_a_directory / 'below'} (Not a directory)\n"
    )


def test_a_world_readable_file_with_passwords_gets_a_warning(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _env_file(home, _with(**{"power-timeout": -1})).chmod(0o644)
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert "warning" not in err  # config errors come first: one line
    path = _env_file(home, _with())
    path.chmod(0o644)
    assert select_environment(None).warnings == (
        f"{path} holds passwords and is readable by other users: chmod 600 {path}",
    )


# -- fuzz: every mutation below makes the file invalid; each must give one line and exit code 2 ----------

# Not junk: None on an optional key (unset: its default) and numbers on text keys (YAML's 1234 password is text).
_junk = st.one_of(
    st.booleans(),
    st.lists(st.text(max_size=5), min_size=1, max_size=3),
    st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=5), min_size=1, max_size=2),
)
_known = {k.name for k in ORCHESTRA_KEYS} | {"type"}


def _valid_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and 0 < int(text) < 65536


_mutations = st.one_of(
    st.builds(lambda key: ("drop", key, None), st.sampled_from(REQUIRED)),
    st.builds(lambda key: ("set", key, None), st.sampled_from(REQUIRED)),
    st.builds(lambda key, value: ("set", key, value), st.sampled_from(REQUIRED + NUMERIC), _junk),
    st.builds(
        lambda key, value: ("set", key, value),
        st.sampled_from(NUMERIC),
        st.one_of(st.integers(-5, 0), st.floats(max_value=0), st.text(max_size=6)),
    ),
    st.builds(
        lambda port: ("set", "orchestra-server", f"orchestra:{port}"),
        st.text(max_size=6).filter(lambda t: not _valid_port(t.rpartition(":")[2]) and not t.endswith("]")),
    ),
    st.builds(
        lambda key, value: ("set", key, value),
        st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).filter(lambda k: k not in _known),
        st.text(max_size=8),
    ),
    st.builds(lambda value: ("set", "type", value), st.text(max_size=10).filter(lambda t: t.strip() != "orchestra")),
    st.builds(lambda text: ("raw", None, text), st.text(max_size=40)),
    st.builds(lambda data: ("raw", None, data), st.binary(min_size=1, max_size=40).filter(lambda b: not _utf8(b))),
    # A good file with non-UTF-8 bytes (Latin-1 text, or anything) put in somewhere.
    st.builds(
        lambda where, junk: ("insert", None, (where, junk)),
        st.floats(0, 1),
        st.one_of(
            st.text(st.characters(min_codepoint=0x80, max_codepoint=0xFF), min_size=1, max_size=8).map(
                lambda t: t.encode("latin-1")
            ),
            st.binary(min_size=1, max_size=8),
        ),
    ),
)


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=_mutations)
def test_fuzzed_bad_files_are_one_line_and_exit_2(
    home: Path, capsys: pytest.CaptureFixture[str], mutation: tuple[str, str | None, object]
) -> None:
    kind, key, value = mutation
    env: dict[str, object] = dict(GOOD)
    if kind == "drop":
        del env[str(key)]
    elif kind == "set":
        env[str(key)] = value
    text = yaml.safe_dump({"environments": {"prod": env}})
    content: str | bytes = text
    if kind == "raw":
        content = value if isinstance(value, bytes) else str(value)
    elif kind == "insert":
        assert isinstance(value, tuple)
        where, junk = value
        good = text.encode()
        at = int(where * len(good))
        inserted = good[:at] + junk + good[at:]
        assume(not _utf8(inserted))  # Latin-1 bytes can happen to spell UTF-8 ('Ã©' is 'é')
        content = inserted
    _env_file(home, content)
    # The command must not get past configuration (it would start the reactor): prove the file is invalid.
    with pytest.raises(ConfigError):
        from twisted.internet import reactor

        select_environment(None).create_provider(reactor)
    capsys.readouterr()
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ensemble: error: ") and "Traceback" not in err
    assert not any(s in err for s in SECRETS)
