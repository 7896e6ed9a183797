"""The hook tools' output formats (smart, json, shell): tables, and round trips through a YAML parser and a real sh."""

from __future__ import annotations

import json
import random
import string
import subprocess
from typing import Any

import pytest
import yaml

from ensemble_orchestra.agents.hooks.formats import FORMATS, format_shell, format_smart, render, shell_name

SMART = [
    (None, ""),
    ("hello world", "hello world\n"),
    ("", "\n"),
    (True, "True\n"),  # Ensemble's Python printed str(True): charms compare against "True"
    (False, "False\n"),
    (3306, "3306\n"),
    (0.5, "0.5\n"),
    ({}, ""),
    ({"title": "My Blog", "port": 3306}, "port: 3306\ntitle: My Blog\n"),
    ({"debug": False, "unset": None}, "debug: false\nunset: null\n"),
    ({"version": "10", "flag": "yes"}, 'flag: "yes"\nversion: "10"\n'),  # would read back as a number, a bool
    ({"motd": "line one\nline two"}, 'motd: "line one\\nline two"\n'),
    ({"outer": {"inner": [1, "two"]}}, "outer:\n  inner:\n  - 1\n  - two\n"),
    (["a", "b"], "a\nb\n"),  # relation-list: one per line, for `for unit in $(relation-list)`
    ([], ""),
    ([["a"], "b"], "- - a\n- b\n"),  # a nested list stays YAML
]


@pytest.mark.parametrize(("value", "text"), SMART)
def test_smart(value: Any, text: str) -> None:
    assert format_smart(value) == text


def test_smart_mappings_read_back_as_yaml() -> None:
    """Whatever the strings, smart's mapping lines parse back (PyYAML) to the same values."""
    rng = random.Random(13)
    alphabet = string.printable + "é→"
    samples = ["", " ", "-", "- a", "a: b", "a:", "#x", "a #b", "null", "~", "1e3", "0x1F", "12:30", "'q", '"q', "|"]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8))) for _ in range(3000)]
    for sample in samples:
        value = {"k": sample, sample: [sample, {"n": sample}], "e": {}, "l": [], "t": True, "i": 7, "z": None}
        assert yaml.safe_load(format_smart(value)) == value, repr(sample)


def test_json() -> None:
    assert FORMATS["json"]({"b": 1, "a": None}, None) == '{"a": null, "b": 1}\n'
    assert json.loads(render("json", "é")) == "é"
    assert render("json", None) == "null\n"


SHELL = [
    ({"title": "My Blog", "db-name": "wp"}, None, "DB_NAME=wp\nTITLE='My Blog'\n"),
    ("10.0.0.2", "private-address", "PRIVATE_ADDRESS=10.0.0.2\n"),
    (None, "missing", "MISSING=''\n"),
    (True, "debug", "DEBUG=True\n"),
    ({"it's": "a 'quoted' $HOME `x`"}, None, "IT_S='a '\"'\"'quoted'\"'\"' $HOME `x`'\n"),
]


@pytest.mark.parametrize(("value", "key", "text"), SHELL)
def test_shell(value: Any, key: str | None, text: str) -> None:
    assert format_shell(value, key) == text


@pytest.mark.parametrize(("key", "name"), [("private-address", "PRIVATE_ADDRESS"), ("a.b/c", "A_B_C"), ("1x", "_1X")])
def test_shell_names(key: str, name: str) -> None:
    assert shell_name(key) == name


def test_shell_output_evaluates_to_the_values() -> None:
    """eval of the shell format in a real sh gives back every value, however it is quoted."""
    values = {"plain": "x", "spaces": "a b  c", "quotes": 'it\'s "q"', "dollar": "$HOME `id` $(id)", "nl": "a\nb"}
    script = format_shell(values) + "".join(f'printf "%s\\0" "${shell_name(k)}"\n' for k in sorted(values))
    out = subprocess.run(["sh", "-c", script], capture_output=True, check=True).stdout.decode()
    assert out.split("\0")[:-1] == [values[k] for k in sorted(values)]
