"""setup-server's logic and its client calls against the in-memory FakeCobbler; the kit's files; CLI usage errors.

What Cobbler really does with the kit (rendering, nopxe, the lab's state) is proven on the lab in
tests/integration/test_setup_server.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from twisted.internet.task import Clock

from ensemble_orchestra.cli import orchestra
from ensemble_orchestra.cobbler import (
    NO_RETRY,
    CobblerAuthError,
    CobblerClient,
    CobblerInvalidRequest,
    CobblerNotFound,
    DistroRecord,
    ProfileRecord,
    SystemRecord,
)
from ensemble_orchestra.cobbler.testing import FakeCobbler, FakeCobblerAgent
from ensemble_orchestra.server_kit import (
    CREATED,
    DEFAULT_AVAILABLE_CLASS,
    PRESEED_NAME,
    UNCHANGED,
    UPDATED,
    Kit,
    ServerKitError,
    format_report,
    load_kit,
    plan_profiles,
    power_gaps,
    setup_server,
)
from ensemble_orchestra.testing import result_of, start

URL = "http://cobbler.test/RPC2"
WRITES = ("write_autoinstall_template", "write_autoinstall_snippet", "xapi_object_edit")


def client_for(fake: FakeCobbler) -> CobblerClient:
    clock = Clock()
    return CobblerClient(
        URL, fake.user, fake.password, clock, clock=clock, agent=FakeCobblerAgent(fake), retry=NO_RETRY
    )


def run(coroutine: Any) -> Any:
    """The fake answers synchronously, so every coroutine here has finished when start() returns."""
    return result_of(start(coroutine))


def actions(report: Any) -> dict[tuple[str, str], str]:
    return {(c.kind, c.name): c.action for c in report.changes}


# -- the kit ---------------------------------------------------------------------------------


def test_kit_has_the_preseed_and_its_snippets() -> None:
    """The repository's kit loads: the preseed and the two snippets its late command includes."""
    kit = load_kit()
    assert kit.preseed_name == PRESEED_NAME
    assert set(kit.snippets) == {"ensemble_nocloud_seed", "ensemble_nopxe"}
    late = [line for line in kit.preseed.splitlines() if line.startswith("d-i preseed/late_command")]
    assert late == ["d-i preseed/late_command string $SNIPPET('ensemble_nocloud_seed'); $SNIPPET('ensemble_nopxe')"]


@pytest.mark.parametrize("name", ["ensemble_nocloud_seed", "ensemble_nopxe"])
def test_each_snippet_renders_one_fragment_without_a_newline(name: str) -> None:
    """Snippets are inserted inline in the one-line late command: besides ## comments, one line ending in #slurp."""
    text = load_kit().snippets[name]
    rendered = [line for line in text.splitlines() if not line.startswith("##")]
    assert len(rendered) == 1 and rendered[0].endswith("#slurp")
    assert "\n" not in rendered[0]


def test_nopxe_snippet_keeps_the_wget_line_the_lab_installer_runs() -> None:
    fragment = load_kit().snippets["ensemble_nopxe"].splitlines()[-1]
    assert fragment == "wget -q -O /dev/null http://$http_server/cblr/svc/op/nopxe/system/$system_name#slurp"


def test_an_incomplete_kit_is_one_clear_error(tmp_path: Any) -> None:
    (tmp_path / "preseed").mkdir()
    (tmp_path / "preseed" / PRESEED_NAME).write_text("d-i x string y\n")
    with pytest.raises(ServerKitError, match="incomplete"):
        load_kit(tmp_path)


# -- planning --------------------------------------------------------------------------------


def test_profiles_skip_distros_without_series_or_of_another_installer() -> None:
    """Only debian-installer distros with an os_version and an arch get a profile; the rest are noted.

    Both debian-installer breeds count: Debian's, and Ubuntu's (an Orchestra server that still has an
    imported Ubuntu release keeps getting its profile: precise stays here on purpose).
    """
    distros = [
        DistroRecord("bookworm-x86_64", arch="x86_64", breed="debian", os_version="bookworm"),
        DistroRecord("precise-x86_64", arch="x86_64", breed="ubuntu", os_version="precise"),
        DistroRecord("custom", arch="x86_64", breed="debian", os_version=""),
        DistroRecord("centos8-x86_64", arch="x86_64", breed="redhat", os_version="rhel8"),
    ]
    plans, notes = plan_profiles(distros, {})
    assert [(p.profile, p.distro) for p in plans] == [
        ("bookworm-x86_64", "bookworm-x86_64"),
        ("precise-x86_64", "precise-x86_64"),
    ]
    assert any("custom skipped: it has no os_version" in n for n in notes)
    assert any("centos8-x86_64 skipped: breed redhat" in n for n in notes)


@pytest.mark.parametrize("reverse", [False, True])
def test_duplicate_distros_pick_one_deterministically_and_say_so(reverse: bool) -> None:
    """Two distros with one series and arch: the one named like the profile wins, whatever the input order."""
    distros = [
        DistroRecord("a-bookworm-mini", arch="x86_64", breed="debian", os_version="bookworm"),
        DistroRecord("bookworm-x86_64", arch="x86_64", breed="debian", os_version="bookworm"),
    ]
    plans, notes = plan_profiles(list(reversed(distros)) if reverse else distros, {})
    assert [(p.profile, p.distro) for p in plans] == [("bookworm-x86_64", "bookworm-x86_64")]
    assert notes == [
        "profile bookworm-x86_64: distros a-bookworm-mini have the same series and arch; using bookworm-x86_64"
    ]


def test_a_duplicate_already_used_by_the_profile_is_kept() -> None:
    """Re-running never flips a profile between equivalent distros: the existing choice stays."""
    distros = [
        DistroRecord("bookworm-x86_64", arch="x86_64", breed="debian", os_version="bookworm"),
        DistroRecord("bookworm-server", arch="x86_64", breed="debian", os_version="bookworm"),
    ]
    profiles = {"bookworm-x86_64": ProfileRecord("bookworm-x86_64", distro="bookworm-server")}
    plans, _ = plan_profiles(distros, profiles)
    assert plans[0].distro == "bookworm-server"


# Which power fields are missing, per system (names only).
POWER_CASES = [
    ({"power_type": "ipmilan", "power_address": "10.0.0.1", "power_user": "root", "has_power_pass": True}, ()),
    ({"power_type": "ipmilan", "power_address": "10.0.0.1", "power_user": "root"}, ("power_pass",)),
    ({"power_type": "ipmilan", "has_power_pass": True}, ("power_address", "power_user")),
    ({}, ("power_type", "power_address", "power_user", "power_pass")),
]


@pytest.mark.parametrize(("fields", "missing"), POWER_CASES)
def test_power_gaps_name_the_missing_fields(fields: dict[str, Any], missing: tuple[str, ...]) -> None:
    gaps = power_gaps([SystemRecord("node001", **fields)])
    assert [g.missing for g in gaps] == ([missing] if missing else [])


# -- setup_server against the fake ---------------------------------------------------------------


def test_first_run_creates_and_updates_second_run_writes_nothing() -> None:
    """A fresh server gets snippets, template, classes and the preseed on its profile; run two writes nothing."""
    fake = FakeCobbler()
    kit = load_kit()
    first = run(setup_server(client_for(fake), kit))
    assert actions(first) == {
        ("snippet", "ensemble_nocloud_seed"): CREATED,
        ("snippet", "ensemble_nopxe"): CREATED,
        ("template", PRESEED_NAME): CREATED,
        ("mgmtclass", "orchestra-ensemble-available"): CREATED,
        ("mgmtclass", "orchestra-ensemble-acquired"): CREATED,
        ("profile", "bookworm-x86_64"): UPDATED,
    }
    assert fake.templates[PRESEED_NAME] == kit.preseed
    assert fake.snippets["ensemble_nopxe"] == kit.snippets["ensemble_nopxe"]
    assert fake.objects["profile"]["bookworm-x86_64"]["autoinstall"] == PRESEED_NAME
    assert set(fake.objects["mgmtclass"]) == {"orchestra-ensemble-available", "orchestra-ensemble-acquired"}

    writes_before = sum(fake.calls[m] for m in WRITES)
    second = run(setup_server(client_for(fake), kit))
    assert not second.changed and set(actions(second).values()) == {UNCHANGED}
    assert sum(fake.calls[m] for m in WRITES) == writes_before
    assert format_report(second).endswith("setup-server: nothing to change (6 unchanged)")


def test_changed_kit_file_and_new_distro_are_updated_and_created() -> None:
    fake = FakeCobbler()
    kit = load_kit()
    run(setup_server(client_for(fake), kit))
    fake.snippets["ensemble_nopxe"] = "edited by hand#slurp\n"
    fake.objects["distro"]["trixie-i386"] = {"name": "trixie-i386", "arch": "i386", "breed": "debian",
                                             "os_version": "trixie"}  # fmt: skip
    report = run(setup_server(client_for(fake), kit, available_class="pool", acquired_class="taken"))
    got = actions(report)
    assert got[("snippet", "ensemble_nopxe")] == UPDATED
    assert got[("profile", "trixie-i386")] == CREATED
    assert got[("mgmtclass", "pool")] == got[("mgmtclass", "taken")] == CREATED
    assert fake.snippets["ensemble_nopxe"] == kit.snippets["ensemble_nopxe"]
    assert fake.objects["profile"]["trixie-i386"]["distro"] == "trixie-i386"


def test_report_has_the_power_table_and_no_secret() -> None:
    """Systems lacking power settings appear in a SYSTEM/POWER TYPE/ADDRESS/MISSING table; no password shows."""
    fake = FakeCobbler()
    fake.systems["node002"]["power_pass"] = ""
    fake.systems["node003"].update(power_type="", power_address="")
    report = run(setup_server(client_for(fake), load_kit()))
    text = format_report(report)
    table = text[text.index("power:") :].splitlines()
    assert table[0] == "power: 2 of 3 systems lack power settings (the provider cannot power them on):"
    assert re.split(r"\s{2,}", table[1]) == ["SYSTEM", "POWER TYPE", "ADDRESS", "MISSING"]
    assert re.split(r"\s{2,}", table[2]) == ["node002", "ipmilan", "127.0.0.1", "power_pass"]
    assert re.split(r"\s{2,}", table[3]) == ["node003", "-", "-", "power_type, power_address"]
    for secret in (fake.password, fake.systems["node001"]["power_pass"], *fake.tokens):
        assert secret not in text and secret not in repr(report)


def test_cobbler_2_is_refused_with_one_line() -> None:
    with pytest.raises(ServerKitError, match="needs Cobbler 3"):
        run(setup_server(client_for(FakeCobbler(generation=2)), load_kit()))


def test_wrong_password_is_an_auth_error() -> None:
    fake = FakeCobbler()
    clock = Clock()
    client = CobblerClient(URL, fake.user, "wrong", clock, clock=clock, agent=FakeCobblerAgent(fake), retry=NO_RETRY)
    with pytest.raises(CobblerAuthError) as caught:
        run(setup_server(client, load_kit()))
    assert "wrong" not in str(caught.value)


def test_kit_needs_no_profile_when_no_distro_qualifies() -> None:
    fake = FakeCobbler()
    fake.objects["distro"]["bookworm-x86_64"]["os_version"] = ""
    report = run(setup_server(client_for(fake), Kit(load_kit().directory, "preseed\n", {"s": "x#slurp\n"})))
    assert not any(c.kind == "profile" for c in report.changes)
    assert any("no debian-installer distro" in n for n in report.notes)


# -- the client's administration calls ---------------------------------------------------------


def test_admin_calls_map_faults_to_the_taxonomy() -> None:
    """Missing template/snippet/object → CobblerNotFound; adding an existing one or a bad reference → invalid."""
    client = client_for(FakeCobbler())
    with pytest.raises(CobblerNotFound):
        run(client.read_autoinstall_template("nosuch.preseed"))
    with pytest.raises(CobblerNotFound):
        run(client.read_autoinstall_snippet("nosuch"))
    with pytest.raises(CobblerNotFound):
        run(client.edit_object("mgmtclass", "nosuch", {"comment": "x"}))
    with pytest.raises(CobblerInvalidRequest, match="unwise to overwrite"):
        run(client.add_object("profile", "bookworm-x86_64", {"distro": "bookworm-x86_64"}))
    with pytest.raises(CobblerInvalidRequest, match="distribution"):
        run(client.add_object("profile", "p", {"distro": "nosuch"}))
    with pytest.raises(CobblerInvalidRequest, match="edit_system"):
        run(client.edit_object("system", "node001", {"comment": "x"}))
    with pytest.raises(CobblerInvalidRequest):
        run(client.get_item_names("frobnicator"))


def test_admin_calls_cost_one_request_each() -> None:
    fake = FakeCobbler()
    client = client_for(fake)
    run(client.login())
    before = sum(client.calls.values())
    run(client.write_autoinstall_snippet("a/b", "text"))
    assert run(client.read_autoinstall_snippet("a/b")) == "text"
    assert "a/b" in run(client.list_autoinstall_snippets())
    assert run(client.get_item_names("profile")) == ["bookworm-x86_64"]
    run(client.add_object("mgmtclass", "c", {"comment": "x"}))
    assert sum(client.calls.values()) - before == 5


# -- the command's usage errors (no server needed) -----------------------------------------------


def test_missing_cobbler_url_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        orchestra.main(["setup-server", "--user", "cobbler"])
    assert exited.value.code == 2
    assert "--cobbler" in capsys.readouterr().err


def test_no_password_without_a_terminal_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The password comes from the environment or a prompt, never an argument; no terminal, no prompt."""
    monkeypatch.delenv(orchestra.PASSWORD_ENV, raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    code = orchestra.main(["setup-server", "--cobbler", URL, "--user", "cobbler"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and orchestra.PASSWORD_ENV in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cobbler", "cobbler.test", "--user", "u"], "http:// or https://"),
        (["--cobbler", URL, "--user", "u", "--ca-bundle", "/nonexistent/ca.pem"], "no such file"),
        (["--cobbler", URL, "--user", "u", "--ca-bundle", "/etc/hostname"], "holds no PEM certificate"),
        (["--cobbler", "https://u:hunter2@cobbler.test/RPC2", "--user", "u"], "without user or password"),
        (["--cobbler", URL, "--user", "u", "--acquired-class", DEFAULT_AVAILABLE_CLASS], "must differ"),
    ],
)
def test_bad_url_ca_bundle_or_classes_are_usage_errors(
    argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(orchestra.PASSWORD_ENV, "secret-pw")
    assert orchestra.main(["setup-server", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "secret-pw" not in err and "hunter2" not in err
