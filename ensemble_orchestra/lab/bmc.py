"""The lab's IPMI BMCs: one OpenIPMI ``ipmi_sim`` per system, driven by Cobbler through real fence_ipmilan.

Each BMC listens on 127.0.0.1:<bmc_port> (UDP, IPMI 1.5 and 2.0/lanplus). Its chassis control runs
``programs/power_hook.py``, so "power on" starts the booted system (a process or a VM) and "power off" stops
it: power state is whether it runs, observable by Cobbler, by ``lab status`` and by tests alike.
"""

from __future__ import annotations

import os
import shlex
import socket
import sys
import time
import uuid
from pathlib import Path

from .layout import LAB_HOST, SystemSpec
from .programs import power_hook, processes

__all__ = ["bmc_dir", "bmc_ready", "cobbler_power_fields", "power_is_on", "power_off", "write_bmc_config"]

MAX_NAME = 16  # IPMI 1.5 user names and passwords are at most 16 bytes
# RMCP/ASF presence ping (ASF IANA 4542, message 0x80, tag 0x42); an IPMI BMC answers with a pong (0x40).
_ASF_PING = bytes([0x06, 0x00, 0xFF, 0x06, 0x00, 0x00, 0x11, 0xBE, 0x80, 0x42, 0x00, 0x00])

# One BMC with the chassis device (0x9f: chassis, bridge, event generator/receiver, FRU, SEL, SDR, sensors).
_EMU = """\
# ipmi_sim commands for lab system {name} (generated)
mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
"""

# No "none" auth and no anonymous user 1: every request must carry the system's password.
_LAN_CONF = """\
# ipmi_sim LAN config for lab system {name} (generated; holds the BMC password)
name "{name}"
set_working_mc 0x20
startlan 1
  addr {host} {port}
  priv_limit admin
  allowed_auths_callback md2 md5 straight
  allowed_auths_user md2 md5 straight
  allowed_auths_operator md2 md5 straight
  allowed_auths_admin md2 md5 straight
  guid {guid}
endlan
chassis_control "{hook}"
user 2 true "{user}" "{password}" admin 10 md2 md5 straight
"""


def bmc_dir(system_dir: Path) -> Path:
    return system_dir / "bmc"


def write_bmc_config(system_dir: Path, system: SystemSpec, python: str = sys.executable) -> list[str]:
    """Write ``bmc/lan.conf`` and ``bmc/bmc.emu`` (mode 0600) for *system*; returns the argv of its ipmi_sim.

    *python* must be able to import this package: ipmi_sim runs the power hook with it.
    """
    _check_field("BMC user", system.bmc_user)
    _check_field("BMC password", system.bmc_password)
    system_dir = system_dir.resolve()
    directory = bmc_dir(system_dir)
    state = directory / "state"
    state.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    hook = shlex.join([python, "-m", power_hook.__name__, str(system_dir)])
    if '"' in hook or "\n" in hook:  # lan.conf strings cannot escape either
        raise ValueError(f"cannot write a lan.conf for a path with quotes or newlines: {system_dir}")
    lan_conf = _LAN_CONF.format(
        name=system.name,
        host=LAB_HOST,
        port=system.bmc_port,
        guid=uuid.uuid5(uuid.NAMESPACE_URL, f"ensemble-lab:{system.name}:{system.mac}").hex,
        hook=hook,
        user=system.bmc_user,
        password=system.bmc_password,
    )
    _write_private(directory / "lan.conf", lan_conf)
    _write_private(directory / "bmc.emu", _EMU.format(name=system.name))
    lan, emu = directory / "lan.conf", directory / "bmc.emu"
    return ["ipmi_sim", "-n", "-c", str(lan), "-f", str(emu), "-s", str(state)]  # -n: no console on stdio


def cobbler_power_fields(system: SystemSpec) -> dict[str, str]:
    """Cobbler 3 system fields that make ``power_system`` run /usr/sbin/fence_ipmilan against this BMC.

    Cobbler feeds fence_ipmilan ``key=value`` lines on stdin and appends ``power_options`` raw, so extra
    options are newline-separated lines. cipher=3 skips the cipher-suite discovery ipmi_sim 2.0.33 drops
    (else every call waits out retries); power_wait=0 drops fence's 2 s sleep after on/off.
    """
    options = [f"ipport={system.bmc_port}", "lanplus=1", "cipher=3", "power_wait=0"]
    return {
        "power_type": "ipmilan",
        "power_address": LAB_HOST,
        "power_user": system.bmc_user,
        "power_pass": system.bmc_password,
        "power_options": "\n".join(options),
    }


def power_is_on(system_dir: Path) -> bool:
    """Whether the system is powered on, i.e. its booted process runs (no IPMI round trip)."""
    return power_hook.is_on(system_dir)


def power_off(system_dir: Path) -> bool:
    """Stop the system's booted process, if any, without its BMC (lab reset/down); True if one was stopped."""
    if not system_dir.is_dir():
        return False
    stopped = power_hook.power_off(system_dir)
    # A system booted by a lab older than the programs/ package recorded itself in machine.pid.
    return processes.stop_process(system_dir / "machine.pid") or stopped


def bmc_ready(system: SystemSpec, timeout: float = 2.0) -> bool:
    """Whether the system's BMC answers an RMCP presence ping within *timeout* (no credentials used)."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((LAB_HOST, system.bmc_port))  # connected, so "port unreachable" is reported at once
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            sock.settimeout(min(0.2, remaining))
            try:
                sock.send(_ASF_PING)
                reply = sock.recv(512)
            except ConnectionRefusedError:  # not bound yet
                time.sleep(min(0.01, max(deadline - time.monotonic(), 0)))
                continue
            except TimeoutError:
                continue
            if len(reply) >= 10 and reply[8] == 0x40 and reply[9] == _ASF_PING[9]:
                return True


def _check_field(what: str, value: str) -> None:
    # Never echo the value: it may be the password.
    if not value or len(value.encode()) > MAX_NAME or any(c in value for c in '"\n\r'):
        raise ValueError(f"{what} must be 1-{MAX_NAME} bytes without quotes or newlines")


def _write_private(path: Path, text: str) -> None:
    """Write *path* atomically, readable by its owner only (it may hold a password)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when a stale tmp file existed with wider permissions
    with os.fdopen(fd, "w") as out:
        out.write(text)
    tmp.replace(path)
