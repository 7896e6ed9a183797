"""Charm URLs: what users type becomes one canonical id; anything else is a one-line CharmURLError."""

from __future__ import annotations

import pytest

from ensemble_orchestra.charm import CharmError, CharmURL, CharmURLError
from ensemble_orchestra.errors import EXIT_USAGE


@pytest.mark.parametrize(
    ("text", "series", "name", "revision", "canonical"),
    [
        ("mysql", "bookworm", "mysql", None, "local:bookworm/mysql"),
        ("mysql-3", "bookworm", "mysql", 3, "local:bookworm/mysql-3"),
        ("local:mysql", "bookworm", "mysql", None, "local:bookworm/mysql"),
        ("local:mysql-12", "bookworm", "mysql", 12, "local:bookworm/mysql-12"),
        ("local:trixie/mysql", "trixie", "mysql", None, "local:trixie/mysql"),
        ("local:trixie/mysql-0", "trixie", "mysql", 0, "local:trixie/mysql-0"),
        ("local:bookworm/mysql-ha-2", "bookworm", "mysql-ha", 2, "local:bookworm/mysql-ha-2"),
        ("local:bookworm/mysql-5a", "bookworm", "mysql-5a", None, "local:bookworm/mysql-5a"),  # 5a: not a revision
        ("local:bookworm/php5-fpm", "bookworm", "php5-fpm", None, "local:bookworm/php5-fpm"),
        ("local:bookworm/mysql-007", "bookworm", "mysql", 7, "local:bookworm/mysql-7"),
        ("wordpress", "bookworm", "wordpress", None, "local:bookworm/wordpress"),
    ],
)
def test_parse_forms(text, series, name, revision, canonical) -> None:
    """Full URLs, local:<name> and bare names; '-<digits>' at the end is the revision."""
    url = CharmURL.parse(text, "bookworm")
    assert (url.schema, url.series, url.name, url.revision) == ("local", series, name, revision)
    assert str(url) == canonical
    assert CharmURL.parse(canonical, "other") == url  # the canonical form reads back, whatever the default


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("cs:mysql", "charm store (cs:) is not supported"),
        ("cs:bookworm/mysql-3", "charm store (cs:) is not supported"),
        ("http:bookworm/mysql", "unknown schema 'http:'"),
        ("local:~bob/bookworm/mysql", "user namespaces"),
        ("~bob/mysql", "user namespaces"),
        ("local:a/b/c", "too many '/'"),
        ("local:Bookworm/mysql", "series 'Bookworm'"),
        ("local:bookworm2/mysql", "series 'bookworm2'"),
        ("MySQL", "'MySQL' is not a charm name"),
        ("my_sql", "'my_sql' is not a charm name"),
        ("3mysql", "'3mysql' is not a charm name"),
        ("mysql-", "'mysql-' is not a charm name"),
        ("local:bookworm/", "'' is not a charm name"),
        ("local:bookworm/-3", "'' is not a charm name"),
        ("mysql-३", "'mysql-३' is not a charm name"),  # other scripts' digits are not a revision
        ("", "empty"),
        ("mysql 3", "'mysql 3' is not a charm name"),
    ],
)
def test_parse_refuses(text, fragment) -> None:
    with pytest.raises(CharmURLError) as failure:
        CharmURL.parse(text, "bookworm")
    message = str(failure.value)
    assert fragment in message
    assert message.startswith(f"charm URL {text!r}: ")
    assert "\n" not in message
    assert isinstance(failure.value, CharmError) and failure.value.exit_code == EXIT_USAGE


def test_bad_default_series_is_named() -> None:
    """A bare name takes the default series, so a bad default series is the error to show."""
    with pytest.raises(CharmURLError, match="default series 'Bad'"):
        CharmURL.parse("mysql", "Bad")
    assert str(CharmURL.parse("local:bookworm/mysql", "Bad")) == "local:bookworm/mysql"  # not needed, not checked


def test_with_revision() -> None:
    url = CharmURL.parse("mysql", "bookworm")
    assert str(url.with_revision(4)) == "local:bookworm/mysql-4"
    assert url.with_revision(4).with_revision(None) == url
    assert url.revision is None  # frozen: with_revision made a new one


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        (("cs", "bookworm", "mysql", None), "only 'local'"),
        (("local", "Bookworm", "mysql", None), "series 'Bookworm'"),
        (("local", "bookworm", "mysql-3", None), "charm name 'mysql-3'"),  # the revision goes in its own field
        (("local", "bookworm", "mysql", -1), "revision -1"),
        (("local", "bookworm", "mysql", True), "revision True"),
    ],
)
def test_constructor_checks_fields(fields, fragment) -> None:
    """A URL built from stored fields is checked like a parsed one."""
    with pytest.raises(CharmURLError, match=fragment.replace("(", r"\(")):
        CharmURL(*fields)
