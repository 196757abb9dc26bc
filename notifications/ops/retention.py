"""The retention policy (``NOTIFICATIONS_RETENTION``) and the background pass that applies it.

``read=30d,unread=180d`` deletes read notifications created more than 30 days ago and
unread ones created more than 180 days ago; either part may be left out, and the policy is
off unless set. Every worker of a server tries, once per ``NOTIFICATIONS_RETENTION_INTERVAL``,
to take an exclusive ``flock`` on ``<database>.retention.lock``; the one that gets it keeps
it for its life and runs the passes, the others try again later (so another worker takes
over when that one dies). The gunicorn master never touches the database for it.

The same pass keeps the change log to ``NOTIFICATIONS_CHANGELOG_RETENTION`` (``7d`` by
default; :func:`notifications.store.changelog.trim`), so it runs whether or not the policy
for notifications is set.
"""
from __future__ import annotations

import hashlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask

from notifications import paths
from notifications.core import logs
from notifications.core.records import parse_duration
from notifications.extension import state
from notifications.settings import ConfigError

log = logging.getLogger("notifications.retention")

#: Rows deleted per transaction, and the pause between two of them (seconds).
CHUNK = 500
PAUSE = 0.02
#: Change-log entries deleted per transaction (small rows, no trigger, no index but one).
CHANGELOG_CHUNK = 5000
_PARTS = ("read", "unread")


@dataclass(frozen=True)
class Policy:
    """How long read and unread notifications are kept (seconds; None keeps them)."""

    read: int | None = None
    unread: int | None = None

    @property
    def enabled(self) -> bool:
        """Tell whether the policy deletes anything at all."""
        return self.read is not None or self.unread is not None

    def describe(self) -> str:
        """Return the policy as it is written in the setting (``off`` when disabled)."""
        parts = [f"{name}={_short(getattr(self, name))}" for name in _PARTS
                 if getattr(self, name) is not None]
        return ",".join(parts) or "off"

    def cutoffs(self, now_us: int) -> tuple[int | None, int | None]:
        """Return the creation times before which read and unread notifications go."""
        return tuple(None if s is None else now_us - s * 1_000_000  # type: ignore[return-value]
                     for s in (self.read, self.unread))


def _short(seconds: int) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_policy(text: str | None) -> Policy:
    """Parse ``read=30d,unread=180d`` (either part optional; empty or ``off`` disables)."""
    if text is None or text.strip().lower() in ("", "off", "none"):
        return Policy()
    found: dict[str, int] = {}
    for item in text.split(","):
        name, sep, value = item.strip().partition("=")
        name = name.strip().lower()
        if not sep or name not in _PARTS or name in found:
            raise ConfigError(
                f"NOTIFICATIONS_RETENTION must look like read=30d,unread=180d, got {text!r}")
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f"NOTIFICATIONS_RETENTION: {exc}") from None
        if seconds <= 0:
            raise ConfigError(f"NOTIFICATIONS_RETENTION: {name} must be longer than 0")
        found[name] = seconds
    return Policy(**found)


def policy_of(app: Flask) -> Policy:
    """Return the app's retention policy."""
    return state(app).retention


def lock_file(url: str) -> Path:
    """Return the file whose lock makes one process of the node run retention."""
    path = paths.sqlite_path(url)
    if path is not None:
        return Path(str(path) + ".retention.lock")
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"notifications-retention-{digest}.lock"


def parse_changelog_retention(text: str | None) -> int:
    """Parse ``NOTIFICATIONS_CHANGELOG_RETENTION`` (a duration such as ``7d``) into seconds."""
    try:
        seconds = parse_duration(text or "")
    except ValueError as exc:
        raise ConfigError(f"NOTIFICATIONS_CHANGELOG_RETENTION: {exc}") from None
    if seconds <= 0:
        raise ConfigError("NOTIFICATIONS_CHANGELOG_RETENTION must be longer than 0")
    return seconds


def changelog_retention_of(app: Flask) -> int:
    """Return how long the app's change log keeps changes (seconds)."""
    return state(app).changelog_retention


def run_once(app: Flask) -> dict[str, int]:
    """Apply the policy now, in small transactions; return what was deleted."""
    import gevent

    from notifications.ops import metrics
    from notifications.store import maintenance
    from notifications.store.rows import now_us

    policy = policy_of(app)
    read_before, unread_before = policy.cutoffs(now_us())
    with app.app_context():
        result = maintenance.apply_retention(read_before, unread_before, chunk=CHUNK,
                                             pause=lambda: gevent.sleep(PAUSE))
    metrics.count_retention(result["deleted"])
    if result["deleted"]:
        log.info("retention (%s) deleted %d notification(s), %d of them unread",
                 policy.describe(), result["deleted"], result["unread"])
    return result


def run_changelog_once(app: Flask) -> dict[str, int]:
    """Delete the change log's entries older than its retention, and the webhook
    deliveries delivered longer ago (failed ones stay listed); return what went."""
    import gevent

    from notifications.store import changelog, webhooks
    from notifications.store.rows import now_us

    keep_us = changelog_retention_of(app) * 1_000_000
    with app.app_context():
        result = changelog.trim(keep_us, chunk=CHANGELOG_CHUNK,
                                pause=lambda: gevent.sleep(PAUSE))
        result["deliveries_deleted"] = webhooks.trim_delivered(now_us() - keep_us)
    if result["deleted"]:
        log.info("change log retention (%s) deleted %d entries",
                 _short(changelog_retention_of(app)), result["deleted"])
    if result["deliveries_deleted"]:
        log.info("change log retention (%s) deleted %d delivered webhook(s)",
                 _short(changelog_retention_of(app)), result["deliveries_deleted"])
    return result


def start(app: Flask) -> None:
    """Run the passes in the background of this worker whenever it holds the node's lock.

    The change log always has a retention, so every worker of a server runs the loop.
    """
    import gevent

    from notifications.store import maintenance

    interval = app.config["RETENTION_INTERVAL"]
    path = lock_file(app.config["SQLALCHEMY_DATABASE_URI"])

    def loop() -> None:
        held: int | None = None
        while True:
            try:
                if held is None:
                    held = maintenance.take_exclusive(path)
                if held is not None:
                    if policy_of(app).enabled:
                        run_once(app)
                    run_changelog_once(app)
            except Exception:
                log.warning("retention pass failed; trying again later", exc_info=True)
            gevent.sleep(interval)

    gevent.spawn(loop)


def status(app: Flask) -> dict[str, Any]:
    """Return the policy and what its last run did (the ``stats`` command shows it)."""
    from notifications.core.serialize import iso_naive
    from notifications.store import maintenance

    info: dict[str, Any] = {"policy": policy_of(app).describe()}
    found = maintenance.retention_status()
    last = found.pop("last_run_us")
    info["last_run"] = None if last is None else iso_naive(last) + "Z"
    info.update(found)
    return info


def init_app(app: Flask) -> None:
    """Parse ``NOTIFICATIONS_RETENTION`` and ``NOTIFICATIONS_CHANGELOG_RETENTION`` (a bad
    value stops the start with one line)."""
    logs.to_stderr(log)
    state(app).retention = parse_policy(app.config.get("RETENTION"))
    state(app).changelog_retention = parse_changelog_retention(
        app.config.get("CHANGELOG_RETENTION"))
