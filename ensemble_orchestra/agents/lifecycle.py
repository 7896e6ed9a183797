"""A unit's lifecycle as a pure function: from what the unit agent knows, the next hook to run (or none).

    pending --install--> installed --config-changed--> configured --start--> started
    started --config-changed (settings changed)--> started
    started --upgrade-charm (the service's charm changed)--> started, then config-changed
    any (dying) --stop--> stopped

A failing hook leaves the unit in that transition's error state (install-error, start-error, configure-error,
stop-error) until the user runs ``ensemble resolved`` (the unit moves on as if the hook had worked) or
``resolved --retry`` (the hook runs again). The agent persists the state after every hook, so after a crash
or a restart it resumes with the hook that had not completed and never runs a completed one again.
A dying unit runs its stop hook whatever state it is in (Ensemble never ran it), except from stop-error, which
waits for ``resolved``; a unit that never installed stops without a hook.
An upgrade (``upgrade-charm``) swaps the charm's files, then runs the hook: on a started unit, or with
``--force`` on a unit in an error state (which stays in it: ``resolved`` then runs the new charm's hook).
Ensemble silently skipped units that were not started; here they upgrade once they are.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

__all__ = ["INTERNAL_TO_REPORTED", "LocalState", "Step", "next_step", "settle"]

# "configured" (config-changed done, start not yet) is ours only: status shows it as installed.
INTERNAL_TO_REPORTED = {"configured": "installed"}
_AFTER = {  # (hook, the state the unit was in) -> the state once the hook worked
    "install": "installed",
    "start": "started",
    "stop": "stopped",
    "upgrade-charm": "started",
}
_RESOLVED = {  # an error state -> where `resolved` (without --retry) moves it
    "install-error": "installed",
    "start-error": "started",
    "configure-error": "started",
    "stop-error": "stopped",
    "upgrade-error": "started",
}
_ERRORS = set(_RESOLVED)


@dataclass(frozen=True)
class LocalState:
    """What the unit agent persists on disk (``state.yaml`` in the unit's directory)."""

    state: str = "pending"
    failed_hook: str | None = None  # in an error state: the hook that failed
    applied_settings: str | None = None  # digest of the settings the last successful config-changed ran with
    charm: str | None = None  # the charm id whose files are in the unit's directory

    def to_document(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "failed-hook": self.failed_hook,
            "applied-settings": self.applied_settings,
            "charm": self.charm,
        }

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> LocalState:
        return cls(
            str(document.get("state", "pending")),
            document.get("failed-hook"),
            document.get("applied-settings"),
            document.get("charm"),
        )

    @property
    def reported(self) -> str:
        return INTERNAL_TO_REPORTED.get(self.state, self.state)

    @property
    def in_error(self) -> bool:
        return self.state in _ERRORS


@dataclass(frozen=True)
class Step:
    """Run *hook* (None: no hook) then move to *success*, or to *failure* if the hook fails."""

    hook: str | None
    success: LocalState
    failure: LocalState
    clears_resolved: bool = False
    upgrade: str | None = None  # before the hook: put this charm's files in the unit's directory


def _hook_step(local: LocalState, hook: str, target: str, error: str, settings: str | None = None) -> Step:
    applied = settings if hook == "config-changed" else local.applied_settings
    if hook == "upgrade-charm":
        applied = None  # config-changed follows an upgrade
    return Step(
        hook,
        LocalState(target, None, applied, local.charm),
        LocalState(error, hook, local.applied_settings, local.charm),
    )


def _retry_target(local: LocalState) -> str:
    hook = local.failed_hook or ""
    if hook == "config-changed":
        return "configured" if local.state == "start-error" else "started"
    return _AFTER.get(hook, _RESOLVED[local.state])


def next_step(
    local: LocalState,
    dying: bool,
    resolved: bool | None,
    settings: str,
    charm: str | None = None,
    force: bool = False,
) -> Step | None:
    """The next thing to do for a unit in *local* state; *resolved* is the pending request's retry flag (None:
    no request); *settings* the digest of the service's settings now; *charm* the service's charm now (and
    *force*: ``upgrade-charm --force``, which upgrades a unit in an error state too)."""
    if resolved is not None:
        if local.in_error:
            if resolved and local.failed_hook:
                step = _hook_step(local, local.failed_hook, _retry_target(local), local.state, settings)
            else:
                moved = replace(local, state=_RESOLVED[local.state], failed_hook=None)
                if local.failed_hook == "upgrade-charm":
                    moved = replace(moved, applied_settings=None)  # the new charm's config-changed runs
                step = Step(None, moved, local)
            return replace(step, clears_resolved=True)
        return Step(None, local, local, clears_resolved=True)  # nothing to resolve: drop the request
    if local.state == "stop-error" or local.state == "stopped":
        return None
    if dying:
        if local.state == "pending":
            return Step(None, LocalState("stopped"), local)
        return _hook_step(local, "stop", "stopped", "stop-error")
    upgrading = charm is not None and local.charm is not None and charm != local.charm
    if upgrading and (local.state == "started" or (local.in_error and force)):
        new = replace(local, charm=charm)
        step = _hook_step(new, "upgrade-charm", "started", "upgrade-error")
        if local.in_error:  # --force: the files and the hook, and the unit stays in its error state
            step = replace(step, success=new)
        return replace(step, upgrade=charm)
    if local.in_error:
        return None
    if local.state == "pending":
        return _hook_step(local, "install", "installed", "install-error")
    if local.state == "installed":
        return _hook_step(local, "config-changed", "configured", "start-error", settings)
    if local.state == "configured":
        return _hook_step(local, "start", "started", "start-error")
    if local.state == "started" and local.applied_settings != settings:
        return _hook_step(local, "config-changed", "started", "configure-error", settings)
    return None


def settle(local: LocalState, step: Step, hook_ok: bool) -> LocalState:
    """The state after *step* ran (its hook worked or not)."""
    return step.success if hook_ok else step.failure
