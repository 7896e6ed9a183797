"""Where `kit_dir` finds a server kit: ENSEMBLE_KIT_DIR, the installed package's copy, the checkout's providers/.

That a built wheel holds the kit and that its setup-server uses it is proven in
tests/integration/test_distribution.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ensemble_orchestra.errors import EXIT_FAILURE, EXIT_USAGE
from ensemble_orchestra.kit import CHECKOUT_KITS, INSTALLED_KITS, BadKitOverride, KitNotFound, kit_dir

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """An installed package's kit root and a checkout's, both holding an orchestra kit; no override."""
    monkeypatch.delenv("ENSEMBLE_KIT_DIR", raising=False)
    installed, checkout = tmp_path / "site-packages/ensemble_orchestra/_providers", tmp_path / "checkout/providers"
    for root in (installed, checkout):
        (root / "orchestra").mkdir(parents=True)
    return installed, checkout


def test_this_checkout_uses_its_providers_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The editable install the lab runs from reads providers/ itself: no copy inside the package shadows it."""
    monkeypatch.delenv("ENSEMBLE_KIT_DIR", raising=False)
    assert kit_dir() == REPOSITORY / "providers" / "orchestra"
    assert CHECKOUT_KITS == REPOSITORY / "providers"
    assert not INSTALLED_KITS.exists(), f"{INSTALLED_KITS} would shadow providers/: remove it"


def test_the_installed_copy_wins_over_a_providers_directory_beside_the_package(roots: tuple[Path, Path]) -> None:
    installed, checkout = roots
    assert kit_dir("orchestra", roots) == installed / "orchestra"
    assert kit_dir("orchestra", (installed.parent / "absent", checkout)) == checkout / "orchestra"


def test_an_override_with_the_kit_wins(
    roots: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mine/orchestra").mkdir(parents=True)
    monkeypatch.setenv("ENSEMBLE_KIT_DIR", str(tmp_path / "mine"))
    assert kit_dir("orchestra", roots) == tmp_path / "mine/orchestra"


def test_an_override_without_the_kit_is_a_usage_error_not_the_installed_kit(
    roots: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mistyped ENSEMBLE_KIT_DIR used to fall back silently, and setup-server would then upload the stock
    kit over a customised one on the server."""
    monkeypatch.setenv("ENSEMBLE_KIT_DIR", str(tmp_path / "typo"))
    with pytest.raises(BadKitOverride) as raised:
        kit_dir("orchestra", roots)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"ENSEMBLE_KIT_DIR={tmp_path / 'typo'}: no orchestra/ kit directory in it;")
    assert "unset it" in message
    assert isinstance(raised.value, KitNotFound) and raised.value.exit_code == EXIT_USAGE


def test_no_kit_anywhere_names_the_places_and_says_reinstall(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENSEMBLE_KIT_DIR", raising=False)
    places = (tmp_path / "a", tmp_path / "b")
    with pytest.raises(KitNotFound) as raised:
        kit_dir("orchestra", places)
    message = str(raised.value)
    assert "\n" not in message and raised.value.exit_code == EXIT_FAILURE
    assert f"(looked in {tmp_path / 'a/orchestra'}, {tmp_path / 'b/orchestra'})" in message
    assert "reinstall ensemble-orchestra" in message and "ENSEMBLE_KIT_DIR" in message
