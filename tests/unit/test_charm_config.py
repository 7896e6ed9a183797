"""config.yaml: typed defaults, `set key=value` text coerced, YAML values validated, and errors that never echo."""

from __future__ import annotations

import pytest

from ensemble_orchestra.charm import UNSET, CharmError, ConfigOption, ConfigSchema
from ensemble_orchestra.charm.testing import SAMPLE_CONFIG


@pytest.fixture
def schema() -> ConfigSchema:
    return ConfigSchema.parse(SAMPLE_CONFIG, "sample/config.yaml")


def test_options_and_defaults(schema: ConfigSchema) -> None:
    """Options without a default are absent from defaults() (config-get gives nothing for them)."""
    assert schema.options["port"] == ConfigOption("port", "int", 8080, "where to listen")
    assert schema.options["secret"] == ConfigOption("secret", "string", None, "no default")
    assert schema.defaults() == {"title": "Hello", "port": 8080, "ratio": 0.5, "debug": False}


@pytest.mark.parametrize("text", [None, "", "  \n", "# only a comment\n", "options:\n", "options: {}\n"])
def test_empty_or_missing_means_no_options(text) -> None:
    assert ConfigSchema.parse(text, "c/config.yaml").options == {}


def test_int_default_of_a_float_option_is_a_float() -> None:
    schema = ConfigSchema.parse("options:\n  ratio: {type: float, default: 2}\n", "c/config.yaml")
    assert schema.defaults() == {"ratio": 2.0} and isinstance(schema.defaults()["ratio"], float)


def test_obsolete_str_type_reads_as_string() -> None:
    schema = ConfigSchema.parse("options:\n  name: {type: str, default: x}\n", "c/config.yaml")
    assert schema.options["name"].type == "string"


@pytest.mark.parametrize(
    ("key", "text", "value"),
    [
        ("title", "Hello world", "Hello world"),
        ("title", " 42 ", " 42 "),  # a string stays exactly as typed
        ("port", "3306", 3306),
        ("port", " -1 ", -1),
        ("ratio", "0.25", 0.25),
        ("ratio", "1e3", 1000.0),
        ("ratio", "3", 3.0),
        ("debug", "true", True),
        ("debug", "Yes", True),
        ("debug", "false", False),
        ("debug", "NO", False),
    ],
)
def test_coerce(schema: ConfigSchema, key, text, value) -> None:
    result = schema.coerce(key, text)
    assert result == value and type(result) is type(value)


@pytest.mark.parametrize("key", ["title", "port", "debug"])
def test_empty_text_resets_to_the_default(schema: ConfigSchema, key) -> None:
    """``set key=`` gives UNSET whatever the type: the setting is removed and the default applies again."""
    assert schema.coerce(key, "") is UNSET


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [
        ("port", "33o6", "an int"),
        ("port", "3306.0", "an int"),
        ("ratio", "half", "a float"),
        ("ratio", "nan", "a float"),
        ("ratio", "inf", "a float"),
        ("debug", "maybe", "a boolean (true, false, yes or no)"),
        ("debug", "1", "a boolean"),
    ],
)
def test_coerce_refuses_naming_key_and_type(schema: ConfigSchema, key, text, expected) -> None:
    with pytest.raises(CharmError) as failure:
        schema.coerce(key, text, "ensemble set web")
    message = str(failure.value)
    assert message.startswith(f"ensemble set web: option {key!r} expects {expected}")
    assert text not in message.split("expects", 1)[1].replace(f"{key}=VALUE", "")  # the value is not echoed


def test_unknown_key_lists_the_known_ones(schema: ConfigSchema) -> None:
    with pytest.raises(CharmError) as failure:
        schema.coerce("prot", "1")
    assert str(failure.value) == (
        "ensemble set: unknown option 'prot'; the charm's options are: debug, port, ratio, secret, title"
    )
    with pytest.raises(CharmError, match="options are: none"):
        ConfigSchema().coerce("x", "1")


def test_validate_takes_typed_yaml_values(schema: ConfigSchema) -> None:
    values = {"title": "T", "port": 80, "ratio": 1, "debug": True, "secret": "s3"}
    assert schema.validate(values, "deploy.yaml") == {**values, "ratio": 1.0}


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"title": 1234}, "option 'title' expects a string, not an int: quote it in the YAML"),
        ({"port": "80"}, "option 'port' expects an int (a whole number like 3306), not a string"),
        ({"port": True}, "option 'port' expects an int (a whole number like 3306), not a boolean"),
        ({"port": 8.5}, "option 'port' expects an int (a whole number like 3306), not a float"),
        ({"ratio": "x"}, "option 'ratio' expects a float (a number like 0.5), not a string"),
        ({"debug": "yes"}, "option 'debug' expects a boolean (true, false, yes or no), not a string"),
        ({"title": None}, "option 'title' expects a string, not nothing (null)"),
        ({"nope": 1}, "unknown option 'nope'; the charm's options are: debug, port, ratio, secret, title"),
    ],
)
def test_validate_refuses(schema: ConfigSchema, values, fragment) -> None:
    with pytest.raises(CharmError) as failure:
        schema.validate(values, "deploy.yaml")
    assert str(failure.value).startswith(f"deploy.yaml: {fragment}")


def test_validate_never_echoes_a_value(schema: ConfigSchema) -> None:
    with pytest.raises(CharmError) as failure:
        schema.validate({"port": "hunter2-password"}, "deploy.yaml")
    assert "hunter2" not in str(failure.value)


def test_round_trip_through_the_state(schema: ConfigSchema) -> None:
    stored = schema.to_dict()
    assert stored["options"]["secret"] == {"type": "string", "description": "no default"}
    assert ConfigSchema.from_dict(stored) == schema
    with pytest.raises(CharmError, match=r"^/charms/x: 'options.port.type' must be one of"):
        ConfigSchema.from_dict({"options": {"port": {"type": "integer"}}}, "/charms/x")
