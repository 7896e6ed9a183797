"""How the lab's modules may import: programs other processes run stay standard-library only.

The power hook runs on every IPMI chassis command and the Cobbler svc server under Cobbler's own Python: a
program there that imported Twisted, ruamel or this project's errors would break (or slow) what runs it.
"""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import ensemble_orchestra
import ensemble_orchestra.lab
from ensemble_orchestra.lab import programs

PROGRAMS = programs.__name__
SOURCE_ROOT = Path(ensemble_orchestra.__file__).resolve().parent.parent
# What importing a program may load besides the standard library: its own package chain and siblings.
ALLOWED_PACKAGES = {ensemble_orchestra.__name__, ensemble_orchestra.lab.__name__, PROGRAMS}

# Run with -S: no site-packages on the path at all, so a third-party import fails outright; the modules that
# importing the program added to sys.modules are then checked by name (this project's other modules).
_PROBE = """
import importlib, json, sys
before = set(sys.modules)
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def _program_modules() -> list[str]:
    return sorted(f"{PROGRAMS}.{m.name}" for m in pkgutil.iter_modules(programs.__path__))


def _imported_by(module: str) -> list[str]:
    """Every module importing *module* loads, in a fresh interpreter without site-packages."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(SOURCE_ROOT)}
    done = subprocess.run(
        [sys.executable, "-S", "-c", _PROBE, module], capture_output=True, text=True, env=env, timeout=30, check=False
    )
    assert done.returncode == 0, f"{module} does not import with the standard library alone:\n{done.stderr}"
    return list(json.loads(done.stdout))


def _foreign(loaded: list[str]) -> list[str]:
    """The modules in *loaded* that are neither the standard library nor the programs package."""
    return [
        name
        for name in loaded
        if name.split(".")[0] not in sys.stdlib_module_names
        and name not in ALLOWED_PACKAGES
        and not name.startswith(PROGRAMS + ".")
    ]


def test_the_programs_package_lists_what_other_processes_run() -> None:
    names = {name.rsplit(".", 1)[1] for name in _program_modules()}
    assert {"power_hook", "process_system", "qemu_system", "phone_home", "cobbler_svc_server", "vm_init"} <= names


@pytest.mark.parametrize("module", _program_modules())
def test_a_program_imports_only_the_standard_library_and_its_siblings(module: str) -> None:
    loaded = _imported_by(module)
    assert module in loaded  # the probe saw the import happen
    assert _foreign(loaded) == []


def test_the_probe_catches_a_project_module() -> None:
    """The check above can fail: the lab side (which imports this project's errors) does not pass it."""
    assert "ensemble_orchestra.errors" in _foreign(_imported_by("ensemble_orchestra.lab.processes"))


def test_the_probe_catches_a_third_party_module() -> None:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(SOURCE_ROOT)}
    done = subprocess.run([sys.executable, "-S", "-c", "import twisted"], capture_output=True, env=env, check=False)
    assert done.returncode != 0
