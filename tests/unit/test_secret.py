"""A Secret never shows its value except through reveal()."""

import logging

import pytest

from ensemble_orchestra.secret import MASK, Secret, reveal


def test_every_way_of_printing_masks(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret("hunter2")
    shown = [
        repr(secret),
        str(secret),
        f"{secret}",
        "%s" % secret,  # noqa: UP031 - the old operator must mask too
        f"{secret}",
        str([secret]),
        str({"pass": secret}),
    ]
    assert all("hunter2" not in text for text in shown)
    assert MASK in str(secret)
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("password %s %r", secret, secret)
    assert "hunter2" not in caplog.text
    assert secret.reveal() == "hunter2" and reveal(secret) == "hunter2" and reveal("plain") == "plain"


def test_equality_and_wrapping() -> None:
    assert Secret("a") == Secret(Secret("a")) and Secret("a") != Secret("b") and Secret("a") != "a"
    assert not Secret("")
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(Secret("x"))
