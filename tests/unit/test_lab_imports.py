"""How the lab's modules may import: programs other processes run stay standard-library only, and no circles.

The power hook runs on every IPMI chassis command and the Cobbler svc server under Cobbler's own Python: a
program there that imported Twisted, ruamel or this project's errors would break (or slow) what runs it.
"""

from __future__ import annotations

import ast
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


# -- no import circles inside the lab ------------------------------------------------------------------------


def _lab_modules() -> dict[str, Path]:
    package = Path(ensemble_orchestra.lab.__file__).parent
    modules = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join((ensemble_orchestra.lab.__name__, *parts))] = path
    return modules


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The lab modules *name* imports anywhere in its source, function-level (lazy) imports included."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found & known


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle in *graph* as a path that ends where it starts, or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node) :] + [node]
        if node in done:
            return None
        for target in sorted(graph[node]):
            circle = visit(target, [*path, node])
            if circle:
                return circle
        done.add(node)
        return None

    for start in sorted(graph):
        circle = visit(start, [])
        if circle:
            return circle
    return None


def test_the_lab_modules_import_one_way() -> None:
    """No circle, lazy imports included (they were how lab.py <-> seed.py dodged one)."""
    modules = _lab_modules()
    graph = {name: _imports(name, path, set(modules)) - {name} for name, path in modules.items()}
    assert _circle(graph) is None
    upward = [
        f"{source} -> {target}"
        for source, targets in graph.items()
        if source.startswith(PROGRAMS)
        for target in targets
        if target not in ALLOWED_PACKAGES and not target.startswith(PROGRAMS + ".")
    ]
    assert upward == []  # the lab imports its programs, never the other way round


def test_the_circle_finder_finds_a_lazy_circle() -> None:
    assert _circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _circle({"a": {"b"}, "b": set()}) is None
