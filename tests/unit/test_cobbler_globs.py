"""The pattern that lets get_systems read N named systems in one find_system call."""

from __future__ import annotations

import fnmatch

from hypothesis import given
from hypothesis import strategies as st

from ensemble_orchestra.cobbler._globs import covering_glob

NAME = st.text(alphabet="abcnode0123456789-._", min_size=1, max_size=12)


def test_equal_length_names_get_character_classes() -> None:
    """node001..node200 must not drag node300..node999 along."""
    pattern = covering_glob([f"node{n:03d}" for n in range(1, 201)])
    assert pattern == "node[012][0123456789][0123456789]"
    assert not fnmatch.fnmatchcase("node300", pattern)


def test_other_sets_fall_back_to_prefix_or_nothing() -> None:
    assert covering_glob(["ab", "abc"]) == "ab*"
    assert covering_glob(["alpha", "node001"]) is None  # only "every system" covers them
    assert covering_glob(["node[1]"]) is None  # a metacharacter in a name: no pattern
    assert covering_glob([]) is None


@given(st.sets(NAME, min_size=1, max_size=30))
def test_the_pattern_covers_every_name(names: set[str]) -> None:
    """Whatever the names, the pattern is a superset (the client filters the rest out)."""
    pattern = covering_glob(names)
    if pattern is not None:
        assert all(fnmatch.fnmatchcase(name, pattern) for name in names), pattern
