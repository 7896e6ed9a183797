"""The lab's port plan, per-system identities and saved settings."""

import json

from ensemble_orchestra.lab.cobbler_server import _rewrite
from ensemble_orchestra.lab.layout import LabSpec


def test_port_plan_has_no_overlaps_and_distinct_identities() -> None:
    spec = LabSpec(base_port=40000, systems=300)
    ports = spec.tcp_ports() + spec.udp_ports()
    assert len(set(ports)) == len(ports)
    systems = spec.all_systems()
    for attribute in ("name", "mac", "ip", "hostname", "bmc_password"):
        assert len({getattr(s, attribute) for s in systems}) == 300, attribute
    assert systems[0].mac == "52:54:00:00:00:01" and systems[299].mac == "52:54:00:00:01:2c"


def test_bmc_passwords_survive_a_save_and_load(tmp_path) -> None:
    spec = LabSpec(systems=3)
    spec.save(tmp_path / "lab.json")
    again = LabSpec.load(tmp_path / "lab.json")
    assert [s.bmc_password for s in again.all_systems()] == [s.bmc_password for s in spec.all_systems()]
    assert (tmp_path / "lab.json").stat().st_mode & 0o777 == 0o600


def test_cobbler_paths_are_rewritten_into_the_lab_root(tmp_path) -> None:
    source = (
        'a = "/var/lib/cobbler/collections"\nb = "/srv/tftpboot"\nc = "/usr/sbin/fence_"\nd = "/x/var/lib/cobbler"\n'
    )
    out = _rewrite(source, tmp_path)
    assert f'"{tmp_path}/var/lib/cobbler/collections"' in out
    assert f'"{tmp_path}/srv/tftpboot"' in out
    assert '"/usr/sbin/fence_"' in out  # the real fence agents stay
    assert '"/x/var/lib/cobbler"' in out  # only whole absolute paths


def test_a_lab_saved_with_the_old_machines_key_loads_its_system_kind(tmp_path) -> None:
    """lab.json written before the rename says "machines": it still loads, and is saved back as system_kind."""
    LabSpec(systems=2).save(tmp_path / "lab.json")
    saved = json.loads((tmp_path / "lab.json").read_text())
    saved["machines"] = "qemu"
    del saved["system_kind"]
    (tmp_path / "lab.json").write_text(json.dumps(saved))
    spec = LabSpec.load(tmp_path / "lab.json")
    assert spec.system_kind == "qemu"
    spec.save(tmp_path / "lab.json")
    again = json.loads((tmp_path / "lab.json").read_text())
    assert again["system_kind"] == "qemu" and "machines" not in again
