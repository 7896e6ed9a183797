"""One relation's hooks on one unit as a table: (what the agent persisted, what ZooKeeper shows, a pending
``resolved``) -> the next step and what the relation becomes if it works or fails. The unit agent only does
what ``next_step`` says, so the table, the whole lives below and the random lives are the relation's contract."""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import pytest

from ensemble_orchestra.agents.relation_lifecycle import (
    CHANGED_PENDING,
    GONE,
    FailedHook,
    RelationLocal,
    RelationStep,
    RelationView,
    next_step,
)

ID, NAME, REMOTE = 3, "db", "mysql"
M0, M1, M2 = "mysql/0", "mysql/1", "mysql/2"


def L(
    joined: Mapping[str, int] | None = None, left: bool = False, failed: FailedHook | None = None
) -> RelationLocal:
    return RelationLocal(ID, NAME, REMOTE, joined or {}, left, failed)


def V(members: Mapping[str, int] | None = None, alive: bool = True) -> RelationView:
    return RelationView(ID, NAME, REMOTE, alive, members or {})


def F(kind: str, remote: str | None, version: int = 0) -> FailedHook:
    return FailedHook(kind, remote, version)


# (local, view, resolved retry flag) -> (action, kind, remote, version, state on success, state on failure)
Case = tuple[str, RelationLocal | None, RelationView | None, bool | None, tuple[object, ...] | None]
CASES: list[Case] = [
    # entering: nothing before the unit is in the scope; members wait until it is
    ("never entered, no relation", None, None, None, None),
    ("never entered, dying", None, V({M0: 5}, alive=False), None, None),
    ("enter first", None, V(), None, ("enter", None, None, 0, L(), L())),
    ("enter before any joined", None, V({M0: 5}), None, ("enter", None, None, 0, L(), L())),
    ("entered, alone", L(), V(), None, None),
    # joined, then changed for the same unit
    ("a unit joins", L(), V({M0: 5}), None,
     ("hook", "joined", M0, 0, L({M0: 0}), L(failed=F("joined", M0)))),
    ("joins in name order", L(), V({M1: 9, M0: 5}), None,
     ("hook", "joined", M0, 0, L({M0: 0}), L(failed=F("joined", M0)))),
    ("changed follows joined", L({M0: CHANGED_PENDING}), V({M0: 5}), None,
     ("hook", "changed", M0, 5, L({M0: 5}), L({M0: 0}, failed=F("changed", M0, 5)))),
    ("pending changed before anything else", L({M0: 5, M1: CHANGED_PENDING}), V({M1: 4, M2: 8}), None,
     ("hook", "changed", M1, 4, L({M0: 5, M1: 4}), L({M0: 5, M1: 0}, failed=F("changed", M1, 4)))),
    ("pending changed for a unit whose node went (GONE)", L({M0: CHANGED_PENDING}), V(), None,
     ("hook", "changed", M0, GONE, L({M0: GONE}), L({M0: 0}, failed=F("changed", M0, GONE)))),
    ("GONE unit departs", L({M0: GONE}), V(), None,
     ("hook", "departed", M0, 0, L(), L({M0: GONE}, failed=F("departed", M0)))),
    ("GONE unit back with new settings", L({M0: GONE}), V({M0: 20}), None,
     ("hook", "changed", M0, 20, L({M0: 20}), L({M0: GONE}, failed=F("changed", M0, 20)))),
    # settled, new versions, departures
    ("settled", L({M0: 5, M1: 9}), V({M0: 5, M1: 9}), None, None),
    ("new settings version", L({M0: 5}), V({M0: 7}), None,
     ("hook", "changed", M0, 7, L({M0: 7}), L({M0: 5}, failed=F("changed", M0, 7)))),
    ("a unit left the scope", L({M0: 5}), V(), None,
     ("hook", "departed", M0, 0, L(), L({M0: 5}, failed=F("departed", M0)))),
    ("departed before joined", L({M0: 5}), V({M1: 2}), None,
     ("hook", "departed", M0, 0, L(), L({M0: 5}, failed=F("departed", M0)))),
    ("joined before changed of another", L({M0: 5}), V({M0: 7, M1: 2}), None,
     ("hook", "joined", M1, 0, L({M0: 5, M1: 0}), L({M0: 5}, failed=F("joined", M1)))),
    # removal (view None) or dying (not alive): leave, departed for each joined, broken
    ("removed: leave first", L({M0: 5}), None, None,
     ("leave", None, None, 0, L({M0: 5}, left=True), L({M0: 5}))),
    ("dying: leave first", L({M0: 5}), V({M0: 5}, alive=False), None,
     ("leave", None, None, 0, L({M0: 5}, left=True), L({M0: 5}))),
    ("entered, never joined, removed", L(), None, None,
     ("leave", None, None, 0, L(left=True), L())),
    ("removed: changed pending runs before leaving", L({M0: 0}), None, None,
     ("hook", "changed", M0, GONE, L({M0: GONE}), L({M0: 0}, failed=F("changed", M0, GONE)))),
    ("dying: changed pending sees its version", L({M0: 0}), V({M0: 5}, alive=False), None,
     ("hook", "changed", M0, 5, L({M0: 5}), L({M0: 0}, failed=F("changed", M0, 5)))),
    ("left: departed for a joined unit", L({M0: 5, M1: 9}, left=True), None, None,
     ("hook", "departed", M0, 0, L({M1: 9}, left=True), L({M0: 5, M1: 9}, left=True, failed=F("departed", M0)))),
    ("left: departed even for a unit still there", L({M0: 5}, left=True), V({M0: 7}, alive=False), None,
     ("hook", "departed", M0, 0, L(left=True), L({M0: 5}, left=True, failed=F("departed", M0)))),
    ("left: no new unit joins", L(left=True), V({M1: 3}, alive=False), None,
     ("hook", "broken", None, 0, None, L(left=True, failed=F("broken", None)))),
    ("left and none joined: broken", L(left=True), None, None,
     ("hook", "broken", None, 0, None, L(left=True, failed=F("broken", None)))),
    # a failed hook blocks the relation until resolved
    ("failed: blocked", L(failed=F("joined", M0)), V({M0: 5, M1: 6}), None, None),
    ("failed: blocked even when removed", L({M0: 5}, failed=F("changed", M0, 5)), None, None, None),
    ("failed joined, resolved", L(failed=F("joined", M0)), V({M0: 5}), False,
     ("resolve", None, None, 0, L({M0: 0}), L(failed=F("joined", M0)))),
    ("failed joined, retried", L(failed=F("joined", M0)), V({M0: 5}), True,
     ("hook", "joined", M0, 0, L({M0: 0}), L(failed=F("joined", M0)))),
    ("failed changed, resolved keeps its version", L({M0: 0}, failed=F("changed", M0, 5)), V({M0: 7}), False,
     ("resolve", None, None, 0, L({M0: 5}), L({M0: 0}, failed=F("changed", M0, 5)))),
    ("failed changed, retried with its version", L({M0: 0}, failed=F("changed", M0, 5)), V({M0: 7}), True,
     ("hook", "changed", M0, 5, L({M0: 5}), L({M0: 0}, failed=F("changed", M0, 5)))),
    ("failed departed, resolved", L({M0: 5}, failed=F("departed", M0)), V(), False,
     ("resolve", None, None, 0, L(), L({M0: 5}, failed=F("departed", M0)))),
    ("failed broken, resolved: done", L(left=True, failed=F("broken", None)), None, False,
     ("resolve", None, None, 0, None, L(left=True, failed=F("broken", None)))),
    ("failed broken, retried", L(left=True, failed=F("broken", None)), None, True,
     ("hook", "broken", None, 0, None, L(left=True, failed=F("broken", None)))),
    ("resolved with nothing failed: ignored", L({M0: 5}), V({M0: 5}), True, None),
]


@pytest.mark.parametrize(("local", "view", "resolved", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_next_step(
    local: RelationLocal | None, view: RelationView | None, resolved: bool | None, expected: tuple[object, ...] | None
) -> None:
    step = next_step(local, view, resolved)
    if expected is None:
        assert step is None
        return
    assert step is not None
    assert (step.action, step.kind, step.remote, step.version, step.success, step.failure) == expected
    assert step.clears_resolved == (resolved is not None)
    assert step.hook_name() == (None if step.kind is None else f"db-relation-{step.kind}")


def test_a_failed_hooks_output_is_replaced_when_it_runs_again() -> None:
    """A retried hook's failure records that run (its own output comes from the agent), not the last one's."""
    before = L(failed=FailedHook("joined", M0, 0, ("old line", "exit 1")))
    step = next_step(before, V({M0: 5}), True)
    assert step is not None and step.failure.failed == F("joined", M0)


# -- persisted documents ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "local",
    [
        L(),
        L({M1: 9, M0: CHANGED_PENDING}),
        L({M0: GONE}, left=True),
        L({M0: 5}, failed=FailedHook("changed", M0, 5, ("Traceback...", "exit status 1"))),
        L(left=True, failed=F("broken", None)),
    ],
)
def test_documents_round_trip(local: RelationLocal) -> None:
    """What the agent persists (as JSON here) reads back as the same relation."""
    document = json.loads(json.dumps(local.to_document()))
    assert RelationLocal.from_document(ID, document) == local


def test_document_shape() -> None:
    """The document names the relation, its joined units sorted, and the failed hook with its output."""
    local = L({M1: 9, M0: GONE}, left=True, failed=FailedHook("departed", M1, 0, ("bye", "exit 2")))
    assert local.key == "db:3"
    assert local.to_document() == {
        "name": "db",
        "remote-service": "mysql",
        "joined": {M0: -1, M1: 9},
        "left": True,
        "failed": {"kind": "departed", "remote": M1, "version": 0, "output": ["bye", "exit 2"]},
    }
    assert RelationLocal.from_document(ID, {"name": "db", "remote-service": "mysql"}) == L()


# -- whole lives ---------------------------------------------------------------------------------------------


@dataclass
class Life:
    """A unit agent reduced to the table: takes steps, settles them as worked or failed, persists each state
    through its document, and keeps a trace (``joined mysql/0``, ``changed mysql/0@5``, ``... FAILED``,
    ``resolved changed mysql/0@5``, ``enter``, ``leave``)."""

    local: RelationLocal | None = None
    trace: list[str] = field(default_factory=list)
    resolved: bool | None = None  # a pending `resolved` request (retry?)

    def step(self, view: RelationView | None, fail: bool = False) -> RelationStep | None:
        step = next_step(self.local, view, self.resolved)
        if step is None:
            return None
        if step.clears_resolved:
            self.resolved = None
        failed = fail and step.action == "hook"
        self.trace.append(_spell(step, self.local) + (" FAILED" if failed else ""))
        after = step.failure if failed else step.success
        if failed:
            assert after is not None and after.failed is not None
            after = replace(after, failed=replace(after.failed, output=("some output", "exit status 1")))
        if after is not None:  # carried on from what was persisted, as an agent restarted here would
            after_saved = RelationLocal.from_document(after.id, json.loads(json.dumps(after.to_document())))
            assert after_saved == after
            after = after_saved
        self.local = after
        return step

    def drive(self, view: RelationView | None, fail: Callable[[RelationStep], bool] = lambda step: False) -> None:
        """Steps until there is none (settled, done, or blocked by a failure)."""
        for _ in range(100):
            planned = next_step(self.local, view, self.resolved)
            if planned is None:
                return
            self.step(view, fail(planned))
        raise AssertionError(f"no end in sight: {self.trace[-10:]}")


def _spell(step: RelationStep, before: RelationLocal | None) -> str:
    if step.action == "resolve":
        assert before is not None and before.failed is not None
        return "resolved " + _hook_text(before.failed.kind, before.failed.remote, before.failed.version)
    if step.action == "hook":
        assert step.kind is not None
        return _hook_text(step.kind, step.remote, step.version)
    return step.action


def _hook_text(kind: str, remote: str | None, version: int) -> str:
    if kind == "broken":
        return "broken"
    return f"{kind} {remote}" + (f"@{version}" if kind == "changed" else "")


def _failing(*texts: str) -> Callable[[RelationStep], bool]:
    """Fail each named hook once (its first run)."""
    left = list(texts)

    def fail(step: RelationStep) -> bool:
        text = _hook_text(step.kind, step.remote, step.version) if step.kind else step.action
        if text in left:
            left.remove(text)
            return True
        return False

    return fail


def test_a_whole_life_two_units_join_one_changes_twice_one_departs_then_removed() -> None:
    """Joined and changed for each unit, changed once per new settings version, departed for the unit that
    left; removal: leave, departed for the unit still joined, broken once, and the relation is forgotten."""
    life = Life()
    life.drive(V())
    assert life.trace == ["enter"]
    life.drive(V({M0: 10, M1: 11}))
    life.drive(V({M0: 10, M1: 11}))  # nothing new: nothing runs
    life.drive(V({M0: 12, M1: 11}))
    life.drive(V({M0: 13, M1: 11}))
    life.drive(V({M0: 13}))
    life.drive(None)
    assert life.trace == [
        "enter",
        f"joined {M0}",
        f"changed {M0}@10",
        f"joined {M1}",
        f"changed {M1}@11",
        f"changed {M0}@12",
        f"changed {M0}@13",
        f"departed {M1}",
        "leave",
        f"departed {M0}",
        "broken",
    ]
    assert life.local is None
    life.drive(None)
    assert len(life.trace) == 11


def test_a_failure_blocks_the_relation_until_resolved_without_retry() -> None:
    """changed fails: nothing of the relation runs (not even a new unit's joined) until `resolved`, which
    moves on as if it had worked: the version it was run for is kept and only newer settings run changed."""
    life = Life()
    life.drive(V({M0: 10}), _failing(f"changed {M0}@10"))
    assert life.trace == ["enter", f"joined {M0}", f"changed {M0}@10 FAILED"]
    assert life.local == L({M0: 0}, failed=FailedHook("changed", M0, 10, ("some output", "exit status 1")))
    life.drive(V({M0: 10, M1: 11}))
    assert len(life.trace) == 3
    life.resolved = False
    life.drive(V({M0: 10, M1: 11}))
    assert life.trace[3:] == [f"resolved changed {M0}@10", f"joined {M1}", f"changed {M1}@11"]
    assert life.local == L({M0: 10, M1: 11}) and life.resolved is None


def test_a_failure_resolved_with_retry_runs_the_hook_again() -> None:
    """joined fails, `resolved --retry` runs joined again (then changed); a retried changed runs for the
    version it failed on, then once more for the settings written meanwhile."""
    life = Life()
    life.drive(V({M0: 10}), _failing(f"joined {M0}"))
    assert life.trace == ["enter", f"joined {M0} FAILED"]
    life.resolved = True
    life.drive(V({M0: 10}), _failing(f"changed {M0}@10"))
    assert life.trace[2:] == [f"joined {M0}", f"changed {M0}@10 FAILED"]
    life.resolved = True
    life.drive(V({M0: 14}))
    assert life.trace[4:] == [f"changed {M0}@10", f"changed {M0}@14"]
    assert life.local == L({M0: 14})


def test_a_failed_broken_is_resolved_or_retried_and_the_relation_ends() -> None:
    """broken fails: the relation stays (in error) until resolved; both ways end it."""
    for retry, last in ((False, "resolved broken"), (True, "broken")):
        life = Life(L({M0: 5}))
        life.drive(None, _failing("broken"))
        assert life.trace == ["leave", f"departed {M0}", "broken FAILED"]
        assert life.local is not None and life.local.failed is not None
        life.resolved = retry
        life.drive(None)
        assert life.trace[3:] == [last] and life.local is None


def test_removal_while_a_changed_is_pending() -> None:
    """The relation goes between joined and changed: changed still runs first (its node is gone: GONE), then
    leave, departed, broken. A dying unit (relation still there) runs that changed with the real version."""
    life = Life()
    life.drive(V({M0: 10}), _failing(f"changed {M0}@10"))
    life.resolved = True
    life.step(None, fail=True)  # the retried changed fails again, now that the relation is gone
    life.resolved = False
    life.drive(None)
    assert life.trace == [
        "enter",
        f"joined {M0}",
        f"changed {M0}@10 FAILED",
        f"changed {M0}@10 FAILED",
        f"resolved changed {M0}@10",
        "leave",
        f"departed {M0}",
        "broken",
    ]
    life = Life(L())
    life.step(V({M0: 10}))
    life.drive(None)
    assert life.trace == [f"joined {M0}", f"changed {M0}@{GONE}", "leave", f"departed {M0}", "broken"]
    life = Life(L())
    life.step(V({M0: 10}))
    life.drive(V({M0: 10}, alive=False))
    assert life.trace == [f"joined {M0}", f"changed {M0}@10", "leave", f"departed {M0}", "broken"]


def test_a_unit_whose_node_went_before_its_changed_ran() -> None:
    """GONE: joined, its node goes, changed runs anyway (recorded as GONE), then departed; the relation carries
    on with the other units."""
    life = Life(L({M1: 4}))
    life.step(V({M0: 10, M1: 4}))
    assert life.local == L({M0: CHANGED_PENDING, M1: 4})
    life.drive(V({M1: 4}))
    assert life.trace == [f"joined {M0}", f"changed {M0}@{GONE}", f"departed {M0}"]
    assert life.local == L({M1: 4})


# -- random lives --------------------------------------------------------------------------------------------


def _random_life(seed: int) -> tuple[Life, str]:
    """Units join, change settings, leave, at random times (also between steps, so a removal can catch a
    pending changed); hooks fail one time in five and are resolved with or without retry; then the relation
    is removed or the unit dies (how: "removed" or "dying"), and the life runs to its end."""
    rng = random.Random(seed)
    life, zxid, number, how = Life(), 1, 0, ""
    members: dict[str, int] = {}
    view: RelationView | None = V()
    for tick in range(400):
        if not how and tick > 60 + rng.randrange(60):
            how = rng.choice(["removed", "dying"])
            view = None if how == "removed" else V(dict(members), alive=False)
        if rng.random() < 0.3:
            event = rng.choice(["join", "change", "change", "leave"])
            if event == "join" and len(members) < 4:
                zxid, number = zxid + 1, number + 1
                members[f"mysql/{number}"] = zxid
            elif event == "change" and members:
                zxid += 1
                members[rng.choice(sorted(members))] = zxid
            elif event == "leave" and members:
                del members[rng.choice(sorted(members))]
            if view is not None:
                view = dataclasses.replace(view, members=dict(members))
        elif life.local is not None and life.local.failed is not None and life.resolved is None:
            life.resolved = rng.random() < 0.5
        elif life.step(view, fail=rng.random() < 0.2) is None and how:
            break
    for _ in range(200):  # the end: resolve whatever failed until the relation is done
        if life.local is None:
            break
        if life.local.failed is not None and life.resolved is None:
            life.resolved = rng.random() < 0.5
        life.step(view, fail=rng.random() < 0.2)
    return life, how


@pytest.mark.parametrize("seed", range(60))
def test_random_lives_keep_the_guarantees(seed: int) -> None:
    """Whatever happens: enter first; joined(u) immediately followed by changed(u) among the hooks that count
    (worked, or resolved without retry); changed again only for a new version; departed only for joined
    units; after a failure only its retry or its resolution; after leave only departed and broken; every
    joined unit departs; broken once and last, and the relation is forgotten."""
    life, _ = _random_life(seed)
    trace = life.trace
    assert trace and trace[0] == "enter" and trace.count("enter") == 1
    assert life.local is None

    counted: list[str] = []  # the hooks that count, in order
    for i, entry in enumerate(trace):
        if entry.endswith(" FAILED"):
            hook = entry.removesuffix(" FAILED")
            assert trace[i + 1] in (hook, hook + " FAILED", "resolved " + hook), (seed, trace[i : i + 2])
        elif entry.startswith("resolved "):
            counted.append(entry.removeprefix("resolved "))
        elif entry not in ("enter", "leave"):
            counted.append(entry)

    joined: set[str] = set()
    last_version: dict[str, str] = {}
    for i, hook in enumerate(counted):
        kind, _, rest = hook.partition(" ")
        unit, _, version = rest.partition("@")
        if kind == "joined":
            assert unit not in joined
            assert i + 1 < len(counted) and counted[i + 1].startswith(f"changed {unit}@"), (seed, counted[i : i + 2])
            joined.add(unit)
        elif kind == "changed":
            assert unit in joined and last_version.get(unit) != version, (seed, hook)
            last_version[unit] = version
        elif kind == "departed":
            assert unit in joined, (seed, hook)
            joined.discard(unit)
            last_version.pop(unit, None)
    assert counted[-1] == "broken" and counted.count("broken") == 1, seed
    assert trace[-1] in ("broken", "resolved broken"), seed
    assert not joined, seed  # every unit that joined departed

    leave = trace.index("leave")
    assert trace.count("leave") == 1
    after_leave = {entry.removeprefix("resolved ").partition(" ")[0] for entry in trace[leave + 1 :]}
    assert after_leave <= {"departed", "broken"}, (seed, after_leave)


def test_random_lives_cover_the_interesting_cases() -> None:
    """The random lives above are not all alike: between them they fail and resolve both ways, run changed
    for a unit already gone, and end by removal and by dying."""
    lives = [_random_life(seed) for seed in range(60)]
    text = "\n".join(line for life, _ in lives for line in life.trace)
    assert " FAILED" in text and "resolved " in text
    assert f"@{GONE}" in text and text.count("joined ") > 100
    assert {how for _, how in lives} == {"removed", "dying"}
