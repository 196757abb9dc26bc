"""The settings table: defaults, kinds, bounds, and the docs table generated from it."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from notifications import settings
from notifications.settings import SETTINGS, ConfigError, normalize

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def normalized(**changes: Any) -> dict[str, Any]:
    config = {**settings.defaults(), **changes}
    normalize(config)
    return config


def test_docs_table_is_the_settings_table() -> None:
    """docs/configuration.md shows exactly the generated table (regenerate it, don't edit)."""
    text = DOCS.read_text()
    start = text.index("| Variable | Meaning | Default |")
    assert text[start:].startswith(settings.markdown_table())
    documented = set(re.findall(r"^\| `NOTIFICATIONS_(\w+)`", text, re.M))
    assert documented == settings.ENVIRONMENT_SETTINGS


def test_every_setting_is_named_once_and_internal_flags_stay_off_the_environment() -> None:
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    assert {"DEMO", "REQUIRE_KEY", "CREATE_SCHEMA"} <= set(names) - settings.ENVIRONMENT_SETTINGS
    loaded = {"DEMO": "1", "REQUIRE_KEY": "", "SECRET_KEY": "x", "JWT_LEEWAY": "5"}
    assert settings.from_environment(loaded) == {"JWT_LEEWAY": "5"}


def test_defaults_normalize_to_their_kinds() -> None:
    config = normalized()
    assert config["JWT_ALGORITHMS"] == ("HS256",)
    assert config["CORS_ORIGINS"] == ()
    assert config["PING_INTERVAL"] == 3.0 and isinstance(config["JWT_LEEWAY"], int)
    assert config["METRICS"] is True and config["SYNCHRONOUS"] == "full"
    assert config["DATASET_PREFIX"] == "/api/v1" and config["ORGANIZATION_PREFIX"] == "/api/v1/org"
    assert config["JWT_MAX_LIFETIME"] is None


def test_environment_strings_become_values() -> None:
    config = normalized(JWT_LEEWAY="7", POLL_INTERVAL="0.5", JWT_ALGORITHMS="RS256, ES256",
                        CORS_ORIGINS="https://a.example/, https://b.example", METRICS="off",
                        SYNCHRONOUS="NORMAL", JWT_MAX_LIFETIME="", INGEST_TOKEN="",
                        DATASET_PREFIX="/", ORGANIZATION_PREFIX="off")
    assert config["JWT_LEEWAY"] == 7 and config["POLL_INTERVAL"] == 0.5
    assert config["JWT_ALGORITHMS"] == ("RS256", "ES256")
    assert config["CORS_ORIGINS"] == ("https://a.example", "https://b.example")
    assert config["METRICS"] is False and config["SYNCHRONOUS"] == "normal"
    assert config["JWT_MAX_LIFETIME"] is None and config["INGEST_TOKEN"] is None
    assert config["DATASET_PREFIX"] == "" and config["ORGANIZATION_PREFIX"] is None


def test_normalize_twice_changes_nothing() -> None:
    config = normalized(JWT_ALGORITHMS="HS256,RS256", CORS_ORIGINS="https://a.example")
    again = dict(config)
    normalize(again)
    assert again == config


@pytest.mark.parametrize("changes, message", [
    ({"JWT_LEEWAY": "soon"}, "NOTIFICATIONS_JWT_LEEWAY must be a whole number, got 'soon'"),
    ({"JWT_LEEWAY": "-1"}, "NOTIFICATIONS_JWT_LEEWAY must be between 0 and 86400, got '-1'"),
    ({"POLL_INTERVAL": "0"}, "NOTIFICATIONS_POLL_INTERVAL must be between 0.01 and 60.0"),
    ({"PING_INTERVAL": "x"}, "NOTIFICATIONS_PING_INTERVAL must be a number, got 'x'"),
    ({"JWT_MAX_LIFETIME": "0"}, "NOTIFICATIONS_JWT_MAX_LIFETIME must be between 1 and"),
    ({"JWT_ALGORITHMS": " , "}, "must name at least one algorithm"),
    ({"JWT_ALGORITHMS": "HS256,none"}, "unsupported algorithm(s) none"),
    ({"LOG_FORMAT": "xml"}, "NOTIFICATIONS_LOG_FORMAT must be 'text' or 'json', got 'xml'"),
    ({"SYNCHRONOUS": "off"}, "NOTIFICATIONS_SYNCHRONOUS must be 'full' or 'normal'"),
    ({"METRICS": "maybe"}, "NOTIFICATIONS_METRICS must be 'on' or 'off', got 'maybe'"),
    ({"DATASET_PREFIX": "/a b"}, "NOTIFICATIONS_DATASET_PREFIX is not a valid URL path"),
    ({"DATASET_PREFIX": "/x", "ORGANIZATION_PREFIX": "/x/"}, "are both '/x'"),
])
def test_bad_values_name_the_variable(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        normalized(**changes)
    assert message in str(error.value)


def test_every_number_has_bounds_and_every_choice_its_values() -> None:
    for setting in SETTINGS:
        if setting.kind in ("int", "float"):
            assert setting.bounds is not None, setting.name
            low, high = setting.bounds
            assert setting.optional and setting.default is None or low <= setting.default <= high
        if setting.kind == "choice":
            assert setting.default in setting.choices, setting.name
