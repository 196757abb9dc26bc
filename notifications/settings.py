"""Configuration defaults and their validation (no Flask globals, no IO)."""
from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

#: Every setting the service reads, with its default. Environment variables are the
#: same names with a ``NOTIFICATIONS_`` prefix.
DEFAULTS: dict[str, Any] = {
    "DATABASE_URL": None,
    "JWT_SECRET": None,
    "JWT_PUBLIC_KEY": None,
    "JWT_ALGORITHMS": "HS256",
    "JWT_AUDIENCE": None,
    "JWT_ISSUER": None,
    "JWT_LEEWAY": 30,
    # Longest accepted token lifetime (exp - iat) in seconds; unset: any lifetime.
    "JWT_MAX_LIFETIME": None,
    "ORG_CLAIM": "organization_id",
    "SESSION_COOKIE": "session",
    "DATASET_PREFIX": "/api/v1",
    "ORGANIZATION_PREFIX": "/api/v1/org",
    "PING_INTERVAL": 3.0,
    "KEEPALIVE_INTERVAL": 15.0,
    "POLL_INTERVAL": 0.25,
    "STREAM_LIMIT": 5,
    # Concurrent dataset streams per user, counted across the node's workers.
    "DATASET_STREAM_LIMIT": 10,
    "INGEST_TOKEN": None,
    # Largest request body in bytes (Flask's own setting); larger bodies get 413.
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    # Seconds a client has to send a whole request body, from when the service reads it.
    "BODY_TIMEOUT": 10.0,
    "OPEN_USER": None,
    "OPEN_ORGANIZATION": None,
    "CORS_ORIGINS": None,
    "LOG_FORMAT": "text",
    # Seconds a write waits for another process's write lock before answering 503.
    "WRITE_TIMEOUT": 5.0,
    # PRAGMA synchronous of the writer's connection: "full" or "normal".
    "SYNCHRONOUS": "full",
    # Operations: /metrics (on/off) and its optional bearer token; the retention policy
    # (e.g. "read=30d,unread=180d", off by default) and seconds between its passes.
    "METRICS": "on",
    "METRICS_TOKEN": None,
    "RETENTION": None,
    "RETENTION_INTERVAL": 600.0,
    # Not environment settings: set by the CLI and the demo mode.
    "DEMO": False,
    "REQUIRE_KEY": True,
}

#: Settings that only code may set (``create_app(test_config)``), never the environment:
#: an empty NOTIFICATIONS_REQUIRE_KEY would otherwise switch off "refuse to start without a
#: key". Values :func:`normalize` derives are not in DEFAULTS and so not settable either.
INTERNAL = frozenset({"DEMO", "REQUIRE_KEY"})
#: The documented settings, the only ones read from ``NOTIFICATIONS_*`` variables.
ENVIRONMENT_SETTINGS = frozenset(DEFAULTS) - INTERNAL

_INTS = {"JWT_LEEWAY": (0, 86400), "STREAM_LIMIT": (1, 100_000),
         "DATASET_STREAM_LIMIT": (1, 100_000),
         "MAX_CONTENT_LENGTH": (1024, 1024**3)}
#: Whole numbers that may also be unset (None or empty: no limit).
_OPTIONAL_INTS = {"JWT_MAX_LIFETIME": (1, 10 * 366 * 86400)}
_FLOATS = {
    "PING_INTERVAL": (0.05, 3600.0),
    "KEEPALIVE_INTERVAL": (0.05, 3600.0),
    "POLL_INTERVAL": (0.01, 60.0),
    "WRITE_TIMEOUT": (0.05, 600.0),
    "BODY_TIMEOUT": (0.1, 3600.0),
    "RETENTION_INTERVAL": (0.1, 7 * 86400.0),
}
_STRINGS = (
    "DATABASE_URL", "JWT_SECRET", "JWT_PUBLIC_KEY", "JWT_ALGORITHMS", "JWT_AUDIENCE",
    "JWT_ISSUER", "ORG_CLAIM", "SESSION_COOKIE", "DATASET_PREFIX", "ORGANIZATION_PREFIX",
    "INGEST_TOKEN", "OPEN_USER", "OPEN_ORGANIZATION", "CORS_ORIGINS", "LOG_FORMAT", "SYNCHRONOUS",
    "METRICS", "METRICS_TOKEN", "RETENTION",
)
SUPPORTED_ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
                        "ES256", "ES384", "ES512")


class ConfigError(Exception):
    """A setting is missing or has a value the service cannot use."""


def keep_string(value: str) -> str:
    """Return an environment value unchanged; types are checked by :func:`normalize`."""
    return value


def from_environment(loaded: Mapping[str, Any]) -> dict[str, Any]:
    """Keep the documented settings of what ``from_prefixed_env`` loaded, drop the rest.

    Flask's own keys (``SECRET_KEY``, ``TESTING``, ``SQLALCHEMY_*``) and internal flags stay
    out of reach of the environment, whatever a deployment happens to export.
    """
    return {key: value for key, value in loaded.items() if key in ENVIRONMENT_SETTINGS}


def _number(config: MutableMapping[str, Any], key: str, kind: type, bounds: tuple) -> None:
    value = config[key]
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"NOTIFICATIONS_{key} must be a {'whole ' if kind is int else ''}number, got {value!r}"
        ) from None
    low, high = bounds
    if not low <= number <= high:
        raise ConfigError(f"NOTIFICATIONS_{key} must be between {low} and {high}, got {value!r}")
    config[key] = number


def normalize_prefix(value: str | None, key: str) -> str | None:
    """Return a mount prefix without a trailing slash, or None for ``off``."""
    if value is None or value.strip().lower() in ("off", "none", "false", ""):
        return None
    prefix = "/" + value.strip().strip("/")
    if any(c.isspace() for c in prefix) or "<" in prefix:
        raise ConfigError(f"NOTIFICATIONS_{key} is not a valid URL path: {value!r}")
    return "" if prefix == "/" else prefix


def normalize(config: MutableMapping[str, Any]) -> None:
    """Coerce settings to their types and reject values the service cannot run with."""
    for key in _STRINGS:
        value = config.get(key)
        if value is not None and not isinstance(value, str):
            config[key] = str(value)
        if isinstance(config.get(key), str) and config[key] == "" and key not in (
            "DATASET_PREFIX", "ORGANIZATION_PREFIX"
        ):
            config[key] = None
    for key, bounds in _INTS.items():
        _number(config, key, int, bounds)
    for key, bounds in _OPTIONAL_INTS.items():
        if config.get(key) in (None, ""):
            config[key] = None
        else:
            _number(config, key, int, bounds)
    for key, bounds in _FLOATS.items():
        _number(config, key, float, bounds)

    algorithms = [a.strip() for a in (config["JWT_ALGORITHMS"] or "").split(",") if a.strip()]
    if not algorithms:
        raise ConfigError("NOTIFICATIONS_JWT_ALGORITHMS must name at least one algorithm")
    unknown = [a for a in algorithms if a not in SUPPORTED_ALGORITHMS]
    if unknown:
        raise ConfigError(
            f"NOTIFICATIONS_JWT_ALGORITHMS has unsupported algorithm(s) {', '.join(unknown)}; "
            f"choose from {', '.join(SUPPORTED_ALGORITHMS)}"
        )
    config["JWT_ALGORITHM_LIST"] = algorithms

    if config["LOG_FORMAT"] not in ("text", "json"):
        raise ConfigError(f"NOTIFICATIONS_LOG_FORMAT must be 'text' or 'json', got {config['LOG_FORMAT']!r}")

    synchronous = (config["SYNCHRONOUS"] or "").lower()
    if synchronous not in ("full", "normal"):
        raise ConfigError(
            f"NOTIFICATIONS_SYNCHRONOUS must be 'full' or 'normal', got {config['SYNCHRONOUS']!r}"
        )
    config["SYNCHRONOUS"] = synchronous

    config["DATASET_PREFIX"] = normalize_prefix(config["DATASET_PREFIX"], "DATASET_PREFIX")
    config["ORGANIZATION_PREFIX"] = normalize_prefix(
        config["ORGANIZATION_PREFIX"], "ORGANIZATION_PREFIX"
    )
    if (
        config["DATASET_PREFIX"] is not None
        and config["DATASET_PREFIX"] == config["ORGANIZATION_PREFIX"]
    ):
        raise ConfigError(
            "NOTIFICATIONS_DATASET_PREFIX and NOTIFICATIONS_ORGANIZATION_PREFIX are both "
            f"{config['DATASET_PREFIX'] or '/'!r}; give each variant its own prefix or set one to 'off'"
        )
    origins = config.get("CORS_ORIGINS") or ""
    config["CORS_ORIGIN_LIST"] = [o.strip().rstrip("/") for o in origins.split(",") if o.strip()]
