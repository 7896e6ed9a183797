"""mem and cpu against commissioned hardware: what fits, which system is preferred (the smallest, as MAAS
does), and the error when nothing fits, which counts the systems not commissioned yet. Pure functions on
SystemRecords first, then through a provider's claim on FakeCobbler (the claim path is proven on the lab)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ensemble_orchestra.cobbler import SystemRecord
from ensemble_orchestra.commissioning import HARDWARE_KEY
from ensemble_orchestra.provider.errors import NoMatchingSystems
from ensemble_orchestra.provider.matching import Constraints, UnsupportedConstraint, parse_memory_mb


def hardware(memory_mb: int, cpus: int, arch: str = "x86_64") -> str:
    return json.dumps(
        {
            "format": 1,
            "commissioned": "2025-03-01T10:00:00Z",
            "arch": arch,
            "cpus": cpus,
            "cpu_model": "QEMU Virtual CPU",
            "memory_mb": memory_mb,
            "disks": [],
            "interfaces": [{"name": "eth0", "mac": "52:54:00:00:00:01"}],
        }
    )


def system(name: str, memory_mb: int | None = None, cpus: int = 1, **fields: Any) -> SystemRecord:
    meta = {HARDWARE_KEY: hardware(memory_mb, cpus, fields.pop("arch", "x86_64"))} if memory_mb else {}
    settings: dict[str, Any] = {"power_type": "ipmilan", "power_address": "127.0.0.1", "profile": "bookworm-x86_64"}
    return SystemRecord(name=name, autoinstall_meta=meta, **{**settings, **fields})


@pytest.mark.parametrize(
    ("text", "mib"),
    [("512M", 512), ("4G", 4096), ("1.5G", 1536), ("4096", 4096), ("1T", 1048576), ("0.1M", 1), ("4g", 4096)],
)
def test_memory_sizes_are_mib(text: str, mib: int) -> None:
    """mem=4G means at least 4096 MiB; a bare number is MiB, as in Ensemble; fractions round up."""
    assert parse_memory_mb(text) == mib


@pytest.mark.parametrize("raw", [{"mem": "lots"}, {"mem": "-1G"}, {"cpu": "many"}, {"cpu": "nan"}, {"cpu": "-2"}])
def test_a_hardware_constraint_that_is_no_size_is_refused(raw: dict[str, str]) -> None:
    """Values the syntax check lets through but that mean nothing are refused, not ignored."""
    with pytest.raises(UnsupportedConstraint):
        Constraints.parse(raw)


def test_mem_and_cpu_are_at_least() -> None:
    """A commissioned system fits when it has at least the memory and at least the CPUs."""
    wanted = Constraints.parse({"mem": "1G", "cpu": "2"})
    assert wanted.needs_hardware and wanted.text == "mem=1G cpu=2"
    assert wanted.matches(system("exact", 1024, 2))
    assert wanted.matches(system("bigger", 4096, 8))
    assert not wanted.matches(system("less-memory", 1023, 8))
    assert not wanted.matches(system("fewer-cpus", 4096, 1))
    assert not wanted.matches(system("never-commissioned"))
    assert not wanted.matches(system("no-power", 4096, 8, power_type=""))


def test_without_mem_or_cpu_a_system_need_not_be_commissioned() -> None:
    """Constraints that ask nothing of the hardware keep matching every system, as before commissioning."""
    assert Constraints.parse({}).matches(system("never-commissioned"))
    assert Constraints.parse({"arch": "amd64"}).matches(system("never-commissioned"))


def test_arch_follows_the_commissioned_cpu_over_the_profile() -> None:
    """Once commissioned, the CPU decides: x86_64 hardware installs x86_64 or i386, i386 hardware only i386;
    before, the profile's arch decides (as it always did)."""
    amd64, i386 = Constraints.parse({"arch": "amd64"}), Constraints.parse({"arch": "i386"})
    x86 = system("x86", 512, 1, profile="bookworm-i386")  # an i386 profile on x86_64 hardware
    old = system("old", 512, 1, arch="i686")
    assert amd64.matches(x86) and i386.matches(x86)
    assert i386.matches(old) and not amd64.matches(old)
    assert not amd64.matches(system("i386-profile", profile="bookworm-i386"))


def test_the_smallest_fitting_system_is_preferred() -> None:
    """Least memory first, then fewest CPUs; systems not commissioned come after every commissioned one."""
    records = [system("big", 8192, 8), system("unknown"), system("small-4", 1024, 4), system("small-2", 1024, 2)]
    order = [r.name for r in sorted(records, key=Constraints.preference)]
    assert order == ["small-2", "small-4", "big", "unknown"]


def test_why_nothing_fits_counts_each_reason() -> None:
    """One line: how many are too small (and the largest), how many are not commissioned yet, and what to run."""
    pool = [system("a", 1024, 2), system("b", 2048, 1), system("c"), system("d"), system("e", 8192, 8, power_type="")]
    message = Constraints.parse({"mem": "4G", "cpu": "2"}).why_none(pool, "Cobbler class 'avail'")
    assert message == (
        "no available system in Cobbler class 'avail' fits mem=4G cpu=2: of 5 available, 2 are too small (the"
        " largest has 2048 MiB and 1 CPUs); 2 are not commissioned yet (memory and CPUs unknown); 1 has no power"
        " management; run 'ensemble-orchestra commission --all'"
    )
    commissioned = Constraints.parse({"mem": "64G"}).why_none([system("a", 1024, 2)], "the pool")
    assert commissioned.endswith(
        "1 is too small (the largest has 1024 MiB and 2 CPUs); add systems or relax the constraints"
    )


def commission(world: Any, name: str, memory_mb: int, cpus: int) -> None:
    world.cobbler.systems[name]["autoinstall_meta"] = {HARDWARE_KEY: hardware(memory_mb, cpus)}


def test_a_launch_claims_the_smallest_system_that_fits(make_world) -> None:
    """Through the provider: mem=1G takes the 1 GiB system over the 8 GiB one, whatever the shuffle; the next
    launch takes the next smallest; none fits a third, and the error says how many are not commissioned."""
    world = make_world(systems=4)
    commission(world, "node001", 8192, 8)
    commission(world, "node002", 1024, 2)
    commission(world, "node003", 2048, 2)
    for seed in range(3):
        alpha = world.provider(f"env{seed}", seed=seed)
        [first] = world.run(alpha.start_machine(world.machine("1", {"mem": "1G"})))
        [second] = world.run(alpha.start_machine(world.machine("2", {"mem": "1G", "cpu": "2"})))
        assert (first.system_name, second.system_name) == ("node002", "node003")
        with pytest.raises(NoMatchingSystems, match="2 are not commissioned|1 is not commissioned"):
            world.run(alpha.start_machine(world.machine("3", {"mem": "16G"})))
        world.run(alpha.destroy_environment())
    # The hardware record survives the claim and the release: both keep keys they do not own.
    assert json.loads(world.cobbler.systems["node002"]["autoinstall_meta"][HARDWARE_KEY])["memory_mb"] == 1024


def test_nothing_fits_claims_and_writes_nothing(make_world) -> None:
    """mem that no commissioned system has: NoMatchingSystems with the counts, no marker, no edit, no power."""
    world = make_world(systems=3)
    commission(world, "node001", 1024, 2)
    alpha = world.provider()
    with pytest.raises(NoMatchingSystems) as caught:
        world.run(alpha.start_machine(world.machine("1", {"mem": "4G"})))
    assert str(caught.value) == (
        "no available system in Cobbler class 'orchestra-ensemble-available' fits mem=4G: of 3 available, 1 is too"
        " small (the largest has 1024 MiB and 2 CPUs); 2 are not commissioned yet (memory and CPUs unknown); run"
        " 'ensemble-orchestra commission --all'"
    )
    assert world.claims() == [] and world.cobbler.calls["xapi_object_edit"] == 0 and world.cobbler.power_requests == []
