"""The unit lifecycle as a table: from (state, dying, resolved request, settings) to the next hook and the
states it leads to. The unit agent only runs what this says, so the table is the lifecycle's contract."""

from __future__ import annotations

import pytest

from ensemble_orchestra.agents.lifecycle import LocalState, next_step, settle

S1, S2 = "digest-1", "digest-2"

# (local state, dying, resolved retry flag, settings digest) -> (hook, state on success, state on failure)
CASES = [
    (LocalState("pending"), False, None, S1, ("install", "installed", "install-error")),
    (LocalState("installed"), False, None, S1, ("config-changed", "configured", "start-error")),
    (LocalState("configured", None, S1), False, None, S1, ("start", "started", "start-error")),
    (LocalState("started", None, S1), False, None, S1, None),
    (LocalState("started", None, S1), False, None, S2, ("config-changed", "started", "configure-error")),
    (LocalState("started", None, S1), True, None, S1, ("stop", "stopped", "stop-error")),
    (LocalState("pending"), True, None, S1, (None, "stopped", "pending")),
    (LocalState("install-error", "install"), True, None, S1, ("stop", "stopped", "stop-error")),
    (LocalState("stop-error", "stop"), True, None, S1, None),
    (LocalState("stopped"), True, None, S1, None),
    (LocalState("install-error", "install"), False, None, S1, None),
    (LocalState("install-error", "install"), False, False, S1, (None, "installed", "install-error")),
    (LocalState("install-error", "install"), False, True, S1, ("install", "installed", "install-error")),
    (LocalState("start-error", "config-changed"), False, True, S1, ("config-changed", "configured", "start-error")),
    (LocalState("start-error", "start", S1), False, True, S1, ("start", "started", "start-error")),
    (LocalState("start-error", "start", S1), False, False, S1, (None, "started", "start-error")),
    (
        LocalState("configure-error", "config-changed", S1),
        False,
        True,
        S2,
        ("config-changed", "started", "configure-error"),
    ),
    (LocalState("configure-error", "config-changed", S1), False, False, S2, (None, "started", "configure-error")),
    (LocalState("stop-error", "stop"), True, True, S1, ("stop", "stopped", "stop-error")),
    (LocalState("stop-error", "stop"), True, False, S1, (None, "stopped", "stop-error")),
    (LocalState("started", None, S1), False, True, S1, (None, "started", "started")),  # nothing to resolve
]


@pytest.mark.parametrize(("local", "dying", "resolved", "settings", "expected"), CASES)
def test_next_step(local: LocalState, dying: bool, resolved: bool | None, settings: str, expected: object) -> None:
    step = next_step(local, dying, resolved, settings)
    if expected is None:
        assert step is None
        return
    assert step is not None
    hook, success, failure = expected  # type: ignore[misc]
    assert (step.hook, step.success.state, step.failure.state) == (hook, success, failure)
    assert step.clears_resolved == (resolved is not None)
    if step.hook is not None:
        assert step.failure.failed_hook == step.hook and step.success.failed_hook is None


def test_a_whole_life_runs_each_hook_once_and_config_changed_again_only_for_new_settings() -> None:
    """Driving the table until it has nothing left: install, config-changed, start; then a settings change
    runs config-changed once; dying runs stop once."""
    local, ran = LocalState(), []

    def drive(dying: bool, settings: str) -> None:
        nonlocal local
        while (step := next_step(local, dying, None, settings)) is not None:
            ran.append(step.hook)
            local = settle(local, step, hook_ok=True)

    drive(False, S1)
    assert ran == ["install", "config-changed", "start"] and local.state == "started" and local.reported == "started"
    drive(False, S1)
    assert len(ran) == 3
    drive(False, S2)
    assert ran[3:] == ["config-changed"] and local.applied_settings == S2
    drive(True, S2)
    assert ran[4:] == ["stop"] and local.state == "stopped"


def test_a_failed_config_changed_keeps_the_settings_it_did_not_apply() -> None:
    """configure-error keeps the old digest, so `resolved --retry` runs config-changed with the new settings."""
    local = LocalState("started", None, S1)
    step = next_step(local, False, None, S2)
    assert step is not None
    failed = settle(local, step, hook_ok=False)
    assert failed == LocalState("configure-error", "config-changed", S1)
    assert failed.reported == "configure-error" and LocalState("configured").reported == "installed"
    assert LocalState.from_document(failed.to_document()) == failed


C1, C2 = "local:bookworm/probe-1", "local:bookworm/probe-2"
UPGRADES = [  # (local, service's charm, force) -> (hook, upgrade to, state on success, on failure) or None
    (LocalState("started", None, S1, C1), C1, False, None),
    (LocalState("started", None, S1, C1), C2, False, ("upgrade-charm", C2, "started", "upgrade-error")),
    (LocalState("installed", None, None, C1), C2, False, ("config-changed", None, "configured", "start-error")),
    (LocalState("install-error", "install", None, C1), C2, False, None),  # waits: not started, no --force
    (
        LocalState("install-error", "install", None, C1),
        C2,
        True,
        ("upgrade-charm", C2, "install-error", "upgrade-error"),
    ),
    (LocalState("upgrade-error", "upgrade-charm", S1, C2), C2, False, None),
    (LocalState("started", None, S1, None), C2, False, None),  # a unit that never knew its charm is not upgraded
]


@pytest.mark.parametrize(("local", "charm", "force", "expected"), UPGRADES)
def test_upgrade_steps(local: LocalState, charm: str, force: bool, expected: object) -> None:
    step = next_step(local, False, None, S1, charm, force)
    if expected is None:
        assert step is None
        return
    assert step is not None
    hook, upgrade, success, failure = expected  # type: ignore[misc]
    assert (step.hook, step.upgrade, step.success.state, step.failure.state) == (hook, upgrade, success, failure)
    if upgrade is not None:
        assert step.success.charm == step.failure.charm == upgrade  # the files are the new charm's either way


def test_an_upgrade_is_followed_by_config_changed_and_resolving_its_failure_too() -> None:
    local = LocalState("started", None, S1, C1)
    step = next_step(local, False, None, S1, C2)
    assert step is not None and step.hook == "upgrade-charm"
    after = settle(local, step, True)
    follow = next_step(after, False, None, S1, C2)
    assert follow is not None and follow.hook == "config-changed" and follow.success.state == "started"
    assert next_step(settle(after, follow, True), False, None, S1, C2) is None
    failed = settle(local, step, False)
    assert (failed.state, failed.failed_hook, failed.charm) == ("upgrade-error", "upgrade-charm", C2)
    retry = next_step(failed, False, True, S1, C2)
    assert retry is not None and retry.hook == "upgrade-charm" and retry.upgrade is None  # files are in place
    resolved = next_step(failed, False, False, S1, C2)
    assert resolved is not None and resolved.hook is None
    then = next_step(settle(failed, resolved, True), False, None, S1, C2)
    assert then is not None and then.hook == "config-changed"
