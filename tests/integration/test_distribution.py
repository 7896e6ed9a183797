"""The built distribution carries the server kit, and setup-server runs from an installed wheel (issue 10, defect 5).

Built the two ways users get the package: a wheel straight from the checkout (``pip wheel .``, what
``pip install /path/to/checkout`` does) and a wheel built from the sdist (what an index serves). Both are
built from a copy of the checkout, so no build writes ``build/`` into the shared tree or races another
run's. The wheel goes into a fresh virtualenv outside the checkout (its dependencies from the index
through pip's cache), and its own ``ensemble-orchestra setup-server`` runs from a directory outside the
checkout against a lab Cobbler on which setup-server never ran.

Cost, measured on the 2-core machine: 12–15 s of wall time and about 13 CPU-seconds, nearly all of it pip
(two isolated wheel builds, the sdist's backend, the virtualenv's install from pip's cache); the sdist's
chain runs beside the checkout wheel's. The one-system lab starts in about 1 s; the command takes under 1 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ensemble_orchestra.lab.seed import ACQUIRED_CLASS, AVAILABLE_CLASS, LAB_PROFILES, LabCobbler
from ensemble_orchestra.lab.testing import RunningLab, start_lab
from ensemble_orchestra.server_kit import PRESEED_NAME

pytestmark = pytest.mark.lab

CHECKOUT = Path(__file__).resolve().parents[2]
KIT = CHECKOUT / "providers" / "orchestra"
KIT_IN_WHEEL = "ensemble_orchestra/_providers/orchestra/"
PIP_TIMEOUT = 300

# Never part of a build: caches, local state, earlier builds (setup.cfg decides the rest).
_SKIP_AT_TOP = {".git", ".venv", ".lab", "build", "dist"}
_SKIP_ANYWHERE = ("__pycache__", "*.pyc", "*.egg-info", ".*_cache", ".hypothesis")


def run(argv: list[str | Path], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False
    )
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done


def copy_checkout(dest: Path) -> Path:
    """The checkout's files as a build sees them, tests/ and docs/ included (a leak would show in the wheel)."""
    anywhere = shutil.ignore_patterns(*_SKIP_ANYWHERE)

    def ignore(directory: str, names: list[str]) -> set[str]:
        top = _SKIP_AT_TOP & set(names) if Path(directory) == CHECKOUT else set()
        return top | anywhere(directory, names)

    return Path(shutil.copytree(CHECKOUT, dest, ignore=ignore))


def fresh_venv(path: Path) -> Path:
    """A virtualenv of the project's base interpreter without pip (the project's pip installs into it)."""
    run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", path], cwd=path.parent)
    return path / "bin" / "python"


def pip_into(python: Path, *args: str | Path, cwd: Path) -> None:
    run([sys.executable, "-m", "pip", "--python", python, "-q", *args], cwd=cwd)


def build_sdist(source: Path, out: Path, work: Path) -> Path:
    """The sdist, by the backend and build requirements pyproject.toml names, installed in a throwaway
    virtualenv (what ``python -m build --sdist`` does, without adding ``build`` to the test tools)."""
    system = tomllib.loads((source / "pyproject.toml").read_text())["build-system"]
    builder = fresh_venv(work / "sdist-builder")
    pip_into(builder, "install", *system["requires"], cwd=work)
    backend = system["build-backend"]
    hook = f"import importlib, sys; print(importlib.import_module({backend!r}).build_sdist(sys.argv[1]))"
    name = run([builder, "-c", hook, out], cwd=source).stdout.strip().splitlines()[-1]
    return out / name


def build_wheel(requirement: Path, out: Path, work: Path) -> Path:
    """``pip wheel`` of a source tree or an sdist, isolated as pip builds by default."""
    out.mkdir(parents=True)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", out, requirement], cwd=work)
    (wheel,) = out.glob("*.whl")
    return wheel


def wheel_from_sdist(source: Path, work: Path) -> Path:
    """What an index user gets: the sdist of *source*, then a wheel built from that sdist alone."""
    return build_wheel(build_sdist(source, work / "sdist", work), work / "from-sdist", work)


def wheel_files(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as archive:
        return {name: archive.read(name) for name in archive.namelist() if not name.endswith("/")}


def kit_files() -> dict[str, bytes]:
    """The repository's kit, named as the wheel must hold it."""
    return {KIT_IN_WHEEL + p.relative_to(KIT).as_posix(): p.read_bytes() for p in KIT.rglob("*") if p.is_file()}


@pytest.fixture
def unset_lab(lab_parent: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningLab]:
    """A one-system lab whose Cobbler is as `cobbler import` leaves it: setup-server never ran on it."""
    with monkeypatch.context() as patch:
        patch.setattr(LabCobbler, "run_setup_server", lambda self, layout: None)
        running = start_lab(lab_parent / f"dist-{os.getpid()}", systems=1)
    try:
        yield running
    finally:
        running.lab.down()


def test_the_wheel_carries_the_kit_and_its_setup_server_prepares_cobbler(tmp_path: Path, unset_lab: RunningLab) -> None:
    """Wheels from the checkout and from the sdist hold the kit byte for byte, every module, nothing else;
    the installed wheel's setup-server, run outside the checkout, puts that kit into a fresh Cobbler."""
    source = copy_checkout(tmp_path / "source")
    with ThreadPoolExecutor(1) as pool:  # the sdist's chain, from its own copy, beside the checkout wheel's build
        sdist_wheel = pool.submit(wheel_from_sdist, copy_checkout(tmp_path / "sdist-source"), tmp_path)
        wheel = build_wheel(source, tmp_path / "from-checkout", tmp_path)
        python = fresh_venv(tmp_path / "venv")
        pip_into(python, "install", wheel, cwd=tmp_path)

    files = wheel_files(wheel)
    in_package = {name: data for name, data in files.items() if name.startswith("ensemble_orchestra/")}
    kit = kit_files()
    assert kit, f"no kit in {KIT}"
    assert {n: d for n, d in in_package.items() if n.startswith(KIT_IN_WHEEL)} == kit
    modules = {p.relative_to(source).as_posix() for p in (source / "ensemble_orchestra").rglob("*.py")}
    assert {n for n in in_package if n.endswith(".py")} == modules
    dist_info = "-".join(wheel.name.split("-")[:2]) + ".dist-info"  # name-version-py3-none-any.whl
    assert {name.split("/")[0] for name in files} == {"ensemble_orchestra", dist_info}
    tests = {p.read_bytes() for p in (source / "tests").rglob("*") if p.is_file()} - {b""}
    assert tests and not [name for name, data in files.items() if data in tests or "/tests/" in f"/{name}"]
    sdist_files = wheel_files(sdist_wheel.result())
    assert {n: d for n, d in sdist_files.items() if n.startswith("ensemble_orchestra/")} == in_package

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ENSEMBLE_KIT_DIR")}
    env["ENSEMBLE_ORCHESTRA_PASSWORD"] = unset_lab.spec.cobbler_password
    command: list[str | Path] = [python.parent / "ensemble-orchestra", "setup-server"]
    command += ["--cobbler", unset_lab.cobbler_url, "--user", unset_lab.spec.cobbler_user]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run(command, cwd=elsewhere, env=env)

    (site_packages,) = (tmp_path / "venv").glob("lib/python3*/site-packages")
    assert done.stdout.splitlines()[0].endswith(f"; kit {(site_packages / KIT_IN_WHEEL).resolve()}"), done.stdout
    assert unset_lab.spec.cobbler_password not in done.stdout + done.stderr
    cobbler_files = unset_lab.layout.cobbler_root / "var/lib/cobbler"
    assert (cobbler_files / "templates" / PRESEED_NAME).read_bytes() == (KIT / "preseed" / PRESEED_NAME).read_bytes()
    for snippet in (KIT / "snippets").iterdir():
        assert (cobbler_files / "snippets" / snippet.name).read_bytes() == snippet.read_bytes(), snippet.name
    server: Any = unset_lab.cobbler()  # XML-RPC answers are untyped
    profiles = {p["name"]: p["autoinstall"] for p in server.get_profiles()}
    assert profiles == {f"{series}-{arch}": PRESEED_NAME for series, arch in LAB_PROFILES}
    assert sorted(server.get_item_names("mgmtclass")) == sorted([AVAILABLE_CLASS, ACQUIRED_CLASS])
