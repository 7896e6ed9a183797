"""Progress output: one line redrawn in place on a terminal, plain lines elsewhere; status's document layout."""

from __future__ import annotations

import io

from ensemble_orchestra.cli.progress import Progress
from ensemble_orchestra.cli.status import provider_status as status_document
from ensemble_orchestra.provider.orchestra import OrchestraMachine


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_on_a_terminal_one_line_is_redrawn_with_the_elapsed_time() -> None:
    out, clock = io.StringIO(), Ticks()
    progress = Progress(out, tty=True, clock=clock)
    progress("claiming", "1 system(s)")
    clock.now += 2.5
    progress("powering on", "node003")
    progress.done()
    frames = out.getvalue().split("\r")[1:]
    assert frames[0] == "[   0.0s] claiming: 1 system(s)"
    # The second frame overwrites the first completely (padded to its width), then the line ends.
    assert frames[1].rstrip("\n").rstrip() == "[   2.5s] powering on: node003"
    assert len(frames[1].rstrip("\n")) >= len(frames[0]) and out.getvalue().endswith("\n")


def test_elsewhere_each_phase_is_a_plain_line() -> None:
    out, clock = io.StringIO(), Ticks()
    progress = Progress(out, tty=False, clock=clock)
    progress("checking storage", "http://orchestra/webdav")
    clock.now += 1.25
    progress("power confirmed", "node003")
    progress.done()
    assert out.getvalue() == "checking storage: http://orchestra/webdav (0.0 s)\npower confirmed: node003 (1.2 s)\n"


def _machine(machine_id: str, state: str) -> OrchestraMachine:
    return OrchestraMachine(
        instance_id=f"uid-{machine_id}",
        dns_name=f"node{machine_id}.example",
        private_dns_name=f"node{machine_id}.example",
        state=state,
        system_name=f"node{machine_id}",
        machine_id=machine_id,
    )


def test_status_document_is_ensembles_layout_ordered_by_machine_id() -> None:
    document = status_document([_machine("10", "pending"), _machine("0", "provisioned"), _machine("2", "pending")])
    assert list(document["machines"]) == [0, 2, 10]
    assert document["machines"][0] == {
        "dns-name": "node0.example",
        "instance-id": "uid-0",
        "instance-state": "provisioned",
    }
    assert document["services"] == {}
