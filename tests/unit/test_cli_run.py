"""How every command ends (cli/_run.py): the error's own exit code and one line; a traceback only with -v;
an OSError that still reaches the top is one line too; a bug keeps its traceback."""

from __future__ import annotations

import pytest

from ensemble_orchestra.cli._run import run_command
from ensemble_orchestra.cobbler import CobblerError
from ensemble_orchestra.config import ConfigError
from ensemble_orchestra.constraints import ConstraintError
from ensemble_orchestra.errors import EnsembleError, Interrupted, UsageError
from ensemble_orchestra.provider.errors import ProviderError
from ensemble_orchestra.storage import StorageError


class RefusedConstraint(UsageError):
    """Like the provider's refusal of a constraint it cannot check."""


class CustomExit(EnsembleError):
    exit_code = 3


CASES = [
    (UsageError("bad -x"), 2, "prog: error: bad -x"),
    (ConfigError("f.yaml: key 'k' is required"), 2, "prog: error: f.yaml: key 'k' is required"),
    (ConstraintError("unknown constraint 'c'"), 2, "prog: error: unknown constraint 'c'"),
    (RefusedConstraint("constraint 'mem' cannot be checked"), 2, "prog: error: constraint 'mem' cannot be checked"),
    (ProviderError("no system"), 1, "prog: error: no system"),
    (CobblerError("Cobbler refused"), 1, "prog: error: Cobbler refused"),
    (StorageError("storage refused"), 1, "prog: error: storage refused"),
    (CustomExit("three"), 3, "prog: error: three"),
    (Interrupted("rolled back"), 130, "prog: interrupted: rolled back"),
    (KeyboardInterrupt(), 130, "prog: interrupted"),
    (PermissionError(13, "Permission denied", "/etc/x"), 1, "prog: error: /etc/x: Permission denied"),
    (OSError(28, "No space left on device"), 1, "prog: error: No space left on device"),
]


def _raising(error: BaseException):  # type: ignore[no-untyped-def]
    def body() -> int:
        raise error

    return body


@pytest.mark.parametrize(("error", "code", "line"), CASES, ids=[type(c[0]).__name__ for c in CASES])
def test_each_error_ends_with_its_exit_code_and_one_line(
    error: BaseException, code: int, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_command("prog", _raising(error), verbose=False) == code
    out, err = capsys.readouterr()
    assert err == line + "\n" and out == ""


@pytest.mark.parametrize("error", [ConfigError("bad"), ProviderError("failed"), PermissionError(13, "denied", "/x")])
def test_verbose_adds_the_traceback(error: Exception, capsys: pytest.CaptureFixture[str]) -> None:
    run_command("prog", _raising(error), verbose=True)
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and err.splitlines()[-1].startswith("prog: error: ")


def test_a_bug_is_not_turned_into_a_line() -> None:
    with pytest.raises(ZeroDivisionError):
        run_command("prog", _raising(ZeroDivisionError("bug")), verbose=False)


def test_success_is_0_unless_the_body_says_otherwise() -> None:
    assert run_command("prog", lambda: None, verbose=False) == 0
    assert run_command("prog", lambda: 1, verbose=False) == 1
