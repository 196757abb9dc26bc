"""Every setting the service reads, in one table, and the checks that turn values into types.

Each row of :data:`SETTINGS` gives a setting's name (the environment variable is the same
name with a ``NOTIFICATIONS_`` prefix), its default, its kind and bounds, and what it means.
:func:`normalize` coerces ``app.config`` in place to those kinds -- every key keeps its own
name, nothing derived is written beside it -- and rejects what the service cannot run with,
in one line that names the variable. The table in ``docs/configuration.md`` is generated
from this one (``python -m notifications.settings``) and a test keeps the two equal.

No Flask globals and no IO here: the app factory calls these functions.
"""
from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal

from notifications.core.errors import ConfigError

__all__ = ["ConfigError", "SETTINGS", "Setting", "defaults", "from_environment", "normalize"]

Kind = Literal["text", "int", "float", "list", "choice", "switch", "prefix", "flag"]

SUPPORTED_ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512",
                        "ES256", "ES384", "ES512")


@dataclass(frozen=True)
class Setting:
    """One setting: what it is called, holds by default, accepts, and means."""

    name: str
    default: Any
    kind: Kind
    meaning: str
    #: How the docs show the default, where the value itself says too little.
    shown_default: str | None = None
    #: Inclusive bounds of a number.
    bounds: tuple[int, int] | tuple[float, float] | None = None
    #: Accepted values of a ``choice`` (the first is the default's spelling).
    choices: tuple[str, ...] = ()
    #: A number that may be unset (empty or missing: no limit).
    optional: bool = False
    #: Only code sets it (``create_app(test_config)``), never the environment: an empty
    #: ``NOTIFICATIONS_REQUIRE_KEY`` must not switch off "refuse to start without a key".
    internal: bool = False

    @property
    def variable(self) -> str:
        """The environment variable that sets it."""
        return "NOTIFICATIONS_" + self.name

    def docs_default(self) -> str:
        """The default as the configuration table shows it."""
        if self.shown_default is not None:
            return self.shown_default
        if self.default is None:
            return "none"
        if isinstance(self.default, float) and self.default.is_integer():
            return str(int(self.default))
        if self.kind in ("choice", "switch", "prefix", "list"):
            return f"`{self.default}`"
        return str(self.default)


SETTINGS: tuple[Setting, ...] = (
    Setting("DATABASE_URL", None, "text",
            "SQLAlchemy URL (`sqlite:///...` or `postgresql://...`)",
            shown_default="`$XDG_DATA_HOME/notifications/notifications.db`, else "
                          "`~/.local/share/notifications/notifications.db`"),
    Setting("DATABASE_POOL_SIZE", 10, "int",
            "PostgreSQL: connections each worker process keeps for reads (besides its writer's "
            "and its listener's); a read that finds them all busy waits for one",
            bounds=(1, 200)),
    Setting("JWT_SECRET", None, "text", "HS256 secret",
            shown_default="none (required outside demo mode)"),
    Setting("JWT_PUBLIC_KEY", None, "text", "PEM text or a path to it, for RS256/ES256"),
    Setting("JWT_ALGORITHMS", "HS256", "list", "accepted algorithms, comma-separated",
            choices=SUPPORTED_ALGORITHMS),
    Setting("JWT_AUDIENCE", None, "text", "`aud` the tokens must carry, checked when set"),
    Setting("JWT_ISSUER", None, "text", "`iss` the tokens must carry, checked when set"),
    Setting("JWT_LEEWAY", 30, "int", "seconds of clock skew", bounds=(0, 86400)),
    Setting("JWT_MAX_LIFETIME", None, "int",
            "longest accepted token lifetime (`exp − iat`), seconds; when set, tokens without "
            "`iat` are refused",
            shown_default="none (any lifetime)", bounds=(1, 10 * 366 * 86400), optional=True),
    Setting("ORG_CLAIM", "organization_id", "text", "claim holding the organization",
            shown_default="`organization_id`"),
    Setting("SESSION_COOKIE", "session", "text", "cookie holding the JWT",
            shown_default="`session`"),
    Setting("DATASET_PREFIX", "/api/v1", "prefix", "dataset variant mount, `off` to disable"),
    Setting("ORGANIZATION_PREFIX", "/api/v1/org", "prefix",
            "organization variant mount, `off` to disable"),
    Setting("V2_PREFIX", "/api/v2", "prefix", "inbox API version 2 mount, `off` to disable"),
    Setting("PING_INTERVAL", 3.0, "float", "dataset stream ping, seconds", bounds=(0.05, 3600.0)),
    Setting("KEEPALIVE_INTERVAL", 15.0, "float", "organization stream keep-alive, seconds",
            bounds=(0.05, 3600.0)),
    Setting("POLL_INTERVAL", 0.25, "float", "cross-process change detection, seconds",
            bounds=(0.01, 60.0)),
    Setting("STREAM_LIMIT", 5, "int", "concurrent streams per user (organization variant)",
            bounds=(1, 100_000)),
    Setting("DATASET_STREAM_LIMIT", 10, "int",
            "concurrent streams per user (dataset variant), counted across the node's workers "
            "apart from the organization ones", bounds=(1, 100_000)),
    Setting("INGEST_TOKEN", None, "text", "enables the ingest API"),
    Setting("OPEN_USER", None, "text", "open mode: requests without credentials act as this user"),
    Setting("OPEN_ORGANIZATION", None, "text",
            "open mode: the organization of that user (needed for the organization variant)"),
    Setting("CORS_ORIGINS", None, "list",
            "browser origins allowed to call with credentials, comma-separated"),
    Setting("LOG_FORMAT", "text", "choice", "`text` or `json` request logs",
            choices=("text", "json")),
    Setting("MAX_CONTENT_LENGTH", 1024 * 1024, "int",
            "largest request body, in bytes (larger bodies get 413)", bounds=(1024, 1024**3)),
    Setting("BODY_TIMEOUT", 10.0, "float",
            "seconds a client has to send a whole request body (then 408)", bounds=(0.1, 3600.0)),
    Setting("WRITE_TIMEOUT", 5.0, "float",
            "seconds a write waits for another process's write lock before it is refused (503, "
            "nothing changed)", bounds=(0.05, 600.0)),
    Setting("SYNCHRONOUS", "full", "choice",
            "`full` or `normal`: what a power loss can take back (see "
            "[design.md](design.md#durability))", choices=("full", "normal")),
    Setting("METRICS", "on", "switch",
            "`on` serves Prometheus metrics at `/metrics` and counts requests; `off` removes both"),
    Setting("METRICS_TOKEN", None, "text",
            "when set, `/metrics` asks for `Authorization: Bearer <token>` (401 otherwise)"),
    Setting("RETENTION", None, "text",
            "retention policy, e.g. `read=30d,unread=180d` (either part optional; durations as "
            "`purge --older-than`); see [operations](operations.md#retention-and-purge)",
            shown_default="off"),
    Setting("RETENTION_INTERVAL", 600.0, "float", "seconds between two retention passes",
            bounds=(0.1, 7 * 86400.0)),
    Setting("CHANGELOG_RETENTION", "7d", "text",
            "how long the change log keeps changes for the streams' replay (a duration as "
            "`purge --older-than`); applied by the retention pass",
            shown_default="`7d`"),
    Setting("WEBHOOK_RETRY_BASE", 5.0, "float",
            "outbound webhooks: seconds before the first retry of a failed delivery; each "
            "further retry waits twice as long (see [webhooks](webhooks.md#retries))",
            bounds=(0.01, 3600.0)),
    Setting("WEBHOOK_RETRY_WINDOW", 86400.0, "float",
            "outbound webhooks: seconds a delivery is retried before it is marked failed",
            shown_default="86400 (24 hours)", bounds=(0.1, 30 * 86400.0)),
    # Set by the CLI and the demo mode, never by the environment.
    Setting("DEMO", False, "flag", "demo mode: sample data and the inbox's user picker",
            internal=True),
    Setting("REQUIRE_KEY", True, "flag", "refuse to start without a key to verify tokens",
            internal=True),
    Setting("CREATE_SCHEMA", True, "flag",
            "create or check the schema when the app is built (the CLI prepares it per command)",
            internal=True),
)

BY_NAME: dict[str, Setting] = {setting.name: setting for setting in SETTINGS}
#: The documented settings, the only ones read from ``NOTIFICATIONS_*`` variables.
ENVIRONMENT_SETTINGS = frozenset(s.name for s in SETTINGS if not s.internal)


def defaults() -> dict[str, Any]:
    """Every setting with its default, as ``app.config`` starts."""
    return {setting.name: setting.default for setting in SETTINGS}


def keep_string(value: str) -> str:
    """Return an environment value unchanged; types are checked by :func:`normalize`."""
    return value


def from_environment(loaded: Mapping[str, Any]) -> dict[str, Any]:
    """Keep the documented settings of what ``from_prefixed_env`` loaded, drop the rest.

    Flask's own keys (``SECRET_KEY``, ``TESTING``, ``SQLALCHEMY_*``) and internal flags stay
    out of reach of the environment, whatever a deployment happens to export.
    """
    return {key: value for key, value in loaded.items() if key in ENVIRONMENT_SETTINGS}


def _number(setting: Setting, value: Any) -> int | float | None:
    if setting.optional and value in (None, ""):
        return None
    kind = int if setting.kind == "int" else float
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{setting.variable} must be a {'whole ' if kind is int else ''}number, got {value!r}"
        ) from None
    assert setting.bounds is not None
    low, high = setting.bounds
    if not low <= number <= high:
        raise ConfigError(f"{setting.variable} must be between {low} and {high}, got {value!r}")
    return number


def normalize_prefix(value: str | None, key: str) -> str | None:
    """Return a mount prefix without a trailing slash, or None for ``off``."""
    if value is None or value.strip().lower() in ("off", "none", "false", ""):
        return None
    prefix = "/" + value.strip().strip("/")
    if any(c.isspace() for c in prefix) or "<" in prefix:
        raise ConfigError(f"NOTIFICATIONS_{key} is not a valid URL path: {value!r}")
    return "" if prefix == "/" else prefix


def _items(value: Any) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    return [str(item).strip() for item in value or () if str(item).strip()]


def _algorithms(setting: Setting, value: Any) -> tuple[str, ...]:
    algorithms = _items(value)
    if not algorithms:
        raise ConfigError(f"{setting.variable} must name at least one algorithm")
    unknown = [a for a in algorithms if a not in setting.choices]
    if unknown:
        raise ConfigError(
            f"{setting.variable} has unsupported algorithm(s) {', '.join(unknown)}; "
            f"choose from {', '.join(setting.choices)}"
        )
    return tuple(algorithms)


def _coerce(setting: Setting, value: Any) -> Any:
    kind = setting.kind
    if kind == "text":
        if value is None:
            return None
        text = value if isinstance(value, str) else str(value)
        return text or None
    if kind in ("int", "float"):
        return _number(setting, value)
    if kind == "list":
        if setting.choices:
            return _algorithms(setting, value)
        return tuple(item.rstrip("/") for item in _items(value))
    if kind == "choice":
        text = str(value or "").strip()
        if setting.name == "SYNCHRONOUS":
            text = text.lower()
        if text not in setting.choices:
            shown = " or ".join(f"'{choice}'" for choice in setting.choices)
            raise ConfigError(f"{setting.variable} must be {shown}, got {value!r}")
        return text
    if kind == "switch":
        if isinstance(value, bool):
            return value
        text = str(value if value is not None else setting.default).strip().lower() or "on"
        if text not in ("on", "off", "true", "false", "1", "0"):
            raise ConfigError(f"{setting.variable} must be 'on' or 'off', got {value!r}")
        return text in ("on", "true", "1")
    if kind == "prefix":
        prefix: str | None = value if value is None or isinstance(value, str) else str(value)
        return normalize_prefix(prefix, setting.name)
    return value  # flag: code sets it, with a real bool


def normalize(config: MutableMapping[str, Any]) -> None:
    """Coerce every setting in ``config`` to its kind; reject what the service cannot use."""
    for setting in SETTINGS:
        config[setting.name] = _coerce(setting, config.get(setting.name, setting.default))
    mounts = ("DATASET_PREFIX", "ORGANIZATION_PREFIX", "V2_PREFIX")
    for n, first in enumerate(mounts):
        for second in mounts[n + 1:]:
            prefix = config[first]
            if prefix is not None and prefix == config[second]:
                raise ConfigError(
                    f"NOTIFICATIONS_{first} and NOTIFICATIONS_{second} are both "
                    f"{prefix or '/'!r}; give each variant its own prefix or set one to 'off'"
                )


def markdown_table(settings: Iterable[Setting] = SETTINGS) -> str:
    """The configuration table of ``docs/configuration.md``: every environment setting."""
    lines = ["| Variable | Meaning | Default |", "|---|---|---|"]
    for setting in settings:
        if not setting.internal:
            lines.append(f"| `{setting.variable}` | {setting.meaning} | {setting.docs_default()} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown_table())
