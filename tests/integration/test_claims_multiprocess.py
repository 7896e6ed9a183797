"""8 claimer processes in 8 environments on one 40-system pool: no system is ever claimed twice."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from ensemble_orchestra.lab.envfile import lab_environment
from ensemble_orchestra.lab.seed import ACQUIRED_CLASS
from ensemble_orchestra.lab.testing import start_lab

pytestmark = pytest.mark.lab

CLAIMERS, EACH, POOL = 8, 5, 40


@pytest.fixture(scope="module")
def pool_lab(lab_parent: Path, ensemble_home: Path):
    running = start_lab(lab_parent / "pool40", systems=POOL)
    try:
        yield running
    finally:
        running.lab.down()


@pytest.mark.parametrize("round_", [1, 2, 3])
def test_concurrent_claimer_processes_never_share_a_system(pool_lab, tmp_path: Path, round_: int) -> None:
    pool_lab.lab.reset()
    config = tmp_path / "env.json"
    config.write_text(json.dumps(lab_environment(pool_lab.spec, pool_lab.layout)))
    worker = Path(__file__).with_name("_claimer.py")
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), f"race{i}", str(EACH), str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(CLAIMERS)
    ]
    outputs = [proc.communicate(timeout=240) for proc in procs]
    # Every failed claimer's own words: the first to fail in index order may only show another's failure.
    failed = [
        f"race{i} (exit {proc.returncode}): {err[-1500:]}"
        for i, (proc, (_, err)) in enumerate(zip(procs, outputs, strict=True))
        if proc.returncode
    ]
    assert failed == [], "\n\n".join(failed)
    claimed = {
        f"race{i}": [name for name, _ in json.loads(out.strip().splitlines()[-1])] for i, (out, _) in enumerate(outputs)
    }

    every = [name for names in claimed.values() for name in names]
    duplicates = [name for name, n in Counter(every).items() if n > 1]
    assert duplicates == []
    assert len(every) == CLAIMERS * EACH == POOL
    # Cobbler agrees: each system is acquired and owned by exactly the environment that claimed it.
    server = pool_lab.cobbler()
    owners = {r["name"]: r for r in server.find_system({"mgmt_classes": ACQUIRED_CLASS}, True)}
    assert len(owners) == POOL
    for env, names in claimed.items():
        for name in names:
            assert owners[name]["autoinstall_meta"]["ensemble_environment"] == env
