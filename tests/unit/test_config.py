"""environments.yaml errors are one line naming file, environment and key; secrets never echo."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ensemble_orchestra.config import ConfigError, load_environments, parse_orchestra
from ensemble_orchestra.secret import Secret

GOOD = {
    "type": "orchestra",
    "orchestra-server": "orchestra.example.com",
    "orchestra-user": "ensemble",
    "orchestra-pass": "s3cret-pass",
    "admin-secret": "adm1n-secret",
    "acquired-mgmt-class": "orchestra-ensemble-acquired",
    "available-mgmt-class": "orchestra-ensemble-available",
    "default-series": "bookworm",
    "authorized-keys": "ssh-ed25519 AAAAC3Nza test@example",
}


def parse(**changes):
    raw = {**GOOD, **changes}
    raw = {k: v for k, v in raw.items() if v is not None}
    return parse_orchestra("prod", raw, Path("/home/u/.ensemble/environments.yaml"), home=lambda: Path("/nonexistent"))


def test_defaults_derive_from_the_server_and_user() -> None:
    config = parse()
    assert config.storage_url == "http://orchestra.example.com/webdav"
    assert config.cobbler_api_url == "http://orchestra.example.com/cobbler_api"
    assert config.storage_user == "ensemble"
    assert isinstance(config.storage_pass, Secret) and config.storage_pass.reveal() == "s3cret-pass"
    assert config.power_timeout == 120.0 and config.launch_concurrency == 8 and config.placement == "unassigned"
    assert "s3cret-pass" not in repr(config) and "adm1n-secret" not in repr(config)


@pytest.mark.parametrize(
    ("changes", "key", "fragment"),
    [
        ({"orchestra-pass": None}, "orchestra-pass", "is required"),
        ({"default-series": None}, "default-series", "is required"),
        ({"orchestra-server": "http://x/"}, "orchestra-server", "not a URL"),
        ({"storage-url": "ftp://x"}, "storage-url", "http:// or https:// URL"),
        ({"acquired-mgmt-class": "orchestra-ensemble-available"}, "acquired-mgmt-class", "must differ"),
        ({"available-mgmt-class": "a b"}, "available-mgmt-class", "one Cobbler mgmt class"),
        ({"placement": "anywhere"}, "placement", "unassigned, local"),
        ({"power-timeout": "soon"}, "power-timeout", "positive number"),
        ({"power-timeout": -1}, "power-timeout", "positive number"),
        ({"launch-concurrency": True}, "launch-concurrency", "positive number"),
        ({"orchestra-user": ["a"]}, "orchestra-user", "must be a string"),
        ({"orchestra-pass": {"x": 1}}, "orchestra-pass", "must be a string"),
        ({"orchestra-pass": "  "}, "orchestra-pass", "must not be empty"),
        ({"authorized-keys-path": "/etc/hostname"}, "authorized-keys", "exclusive"),
        (
            {"authorized-keys": None, "authorized-keys-path": "/nonexistent/keys"},
            "authorized-keys-path",
            "cannot be read",
        ),
        ({"authorized-keys": None}, "authorized-keys", "ssh-keygen"),
        ({"ca-bundle": "/nonexistent.pem"}, "ca-bundle", "not a file"),
        ({"power-timeout": float("nan")}, "power-timeout", "positive number"),  # a NaN bound never ends a wait
        ({"power-timeout": float("inf")}, "power-timeout", "positive number"),
        ({"storage-url": "https://dav:s3cret-pass@orchestra/webdav"}, "storage-url", "must not carry a user"),
        ({"cobbler-api-url": "ftp://u:s3cret-pass@orchestra/x"}, "cobbler-api-url", "user information"),
        ({"ca-bundle": "/etc/hostname"}, "ca-bundle", "holds no PEM certificate"),
        ({"ca-bundle": "/bin/true"}, "ca-bundle", "holds no PEM certificate"),  # binary
        ({"orchestra-passwd": "x"}, "orchestra-passwd", "not an orchestra setting"),
        ({"ca-certificates": "not a certificate"}, "ca-certificates", "holds no PEM certificate"),
        ({"ca-certificates": "x", "ca-bundle": "/etc/hostname"}, "ca-bundle", "exclusive"),
    ],
)
def test_bad_values_name_file_environment_and_key(changes, key, fragment) -> None:
    with pytest.raises(ConfigError) as failure:
        parse(**changes)
    message = str(failure.value)
    assert "\n" not in message
    assert message.startswith("/home/u/.ensemble/environments.yaml: environment 'prod': key ")
    assert f"'{key}'" in message and fragment in message
    assert "s3cret-pass" not in message and "adm1n-secret" not in message


def test_public_keys_that_are_not_text_are_skipped(tmp_path) -> None:
    """A binary ~/.ssh/id_*.pub is no public key: the others are used, and nothing crashes."""
    from ensemble_orchestra.config import _default_public_keys

    ssh = tmp_path / ".ssh"
    ssh.mkdir()
    (ssh / "id_a.pub").write_bytes(b"\xff\xfe\x00binary")
    (ssh / "id_b.pub").write_text("ssh-ed25519 AAAAkey user@host\n")
    assert _default_public_keys(tmp_path) == "ssh-ed25519 AAAAkey user@host"


def test_a_secret_of_the_wrong_type_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as failure:
        parse(**{"power-timeout": "s3cret-pass"})
    assert "s3cret-pass" in str(failure.value)  # not a secret key: echoing it helps
    with pytest.raises(ConfigError) as failure:
        parse(**{"orchestra-pass": ["s3cret-pass"]})
    assert "s3cret-pass" not in str(failure.value)


FILES = [
    ("", "expected a mapping"),
    ("environments: [a\n", "malformed YAML at line"),
    ("- 1\n", "expected a mapping"),
    ("environments: {}\n", "at least one environment"),
    ("environments:\n  x: 3\n", "environment 'x' must be a mapping"),
    ("default: [1]\nenvironments:\n  x: {type: orchestra}\n", "'default:' must name"),
    ("environments:\n  1: {type: orchestra}\n", "must be strings"),
    ("\tenvironments:\n", "malformed YAML"),
]


@pytest.mark.parametrize(("content", "fragment"), FILES)
def test_malformed_files(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "environments.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as failure:
        load_environments(path)
    assert str(path) in str(failure.value) and fragment in str(failure.value)
    assert "\n" not in str(failure.value)


def test_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist: run 'ensemble init'"):
        load_environments(tmp_path / "environments.yaml")


def test_selection_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "environments.yaml"
    path.write_text("default: b\nenvironments:\n  a: {type: orchestra}\n  b: {type: orchestra}\n")
    monkeypatch.delenv("ENSEMBLE_ENV", raising=False)
    envs = load_environments(path)
    assert envs.select()[0] == "b"
    assert envs.select("a")[0] == "a"
    monkeypatch.setenv("ENSEMBLE_ENV", "a")
    assert envs.select()[0] == "a"
    with pytest.raises(ConfigError, match="no environment 'c' \\(defined: a, b\\)"):
        envs.select("c")
    path.write_text("environments:\n  a: {type: orchestra}\n  b: {type: orchestra}\n")
    monkeypatch.delenv("ENSEMBLE_ENV")
    with pytest.raises(ConfigError, match="pick one with -e"):
        load_environments(path).select()
    path.write_text("environments:\n  only: {type: orchestra}\n")
    assert load_environments(path).select()[0] == "only"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_fuzzed_files_fail_with_one_line_or_parse(tmp_path_factory, text: str) -> None:
    """Whatever the bytes, loading gives a parsed file or one ConfigError line — never another exception."""
    path = tmp_path_factory.mktemp("fuzz") / "environments.yaml"
    path.write_text(text)
    try:
        load_environments(path)
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(sorted(GOOD) + ["power-timeout", "storage-url", "placement"]),
        st.one_of(st.none(), st.text(max_size=20), st.integers(), st.booleans(), st.lists(st.integers(), max_size=2)),
    )
)
def test_fuzzed_environments_fail_with_one_line_or_parse(changes) -> None:
    try:
        parse(**changes)
    except ConfigError as exc:
        assert "\n" not in str(exc) and "environment 'prod': key '" in str(exc)


def test_the_provisioning_agents_copy_carries_the_ca_certificates_not_the_workstations_path(
    tmp_path, make_world
) -> None:
    """A ca-bundle path names a file of the workstation's: /environment gets the certificates themselves, and
    the copy parses on the machine (where that path does not exist) to the same trust."""
    from ensemble_orchestra.http.testing import issue_certificates

    pki = issue_certificates(tmp_path)
    world = make_world()
    copy = world.provider("prod", **{"ca-bundle": str(pki.ca_bundle)}).get_serialization_data()
    assert "ca-bundle" not in copy and str(pki.ca_bundle) not in str(copy)
    assert copy["ca-certificates"].startswith("-----BEGIN CERTIFICATE-----")
    pki.ca_bundle.unlink()  # as on machine 0
    on_machine = parse_orchestra("prod", copy, on_machine=True)
    assert isinstance(on_machine.ca_bundle, bytes)
    assert on_machine.ca_bundle.strip() == copy["ca-certificates"].encode().strip()
    assert "ca-certificates" not in world.provider("plain").get_serialization_data()


def test_the_provisioning_agent_ignores_settings_a_newer_cli_added(make_world) -> None:
    """The CLI may be newer than the agents on machine 0 (they run the tools of the bootstrap): /environment
    keys this version does not know are left out there, while a user's environments.yaml is still strict."""
    copy = {**make_world().provider("prod").get_serialization_data(), "tomorrows-setting": "x"}
    assert parse_orchestra("prod", copy, on_machine=True).environment == "prod"
    with pytest.raises(ConfigError, match="'tomorrows-setting' is not an orchestra setting"):
        parse_orchestra("prod", {**copy, "admin-secret": "a"})
