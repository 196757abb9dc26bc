"""Outbound webhooks, the pure parts: events, endpoint URLs, secrets, signatures, retries.

Signatures follow the Standard Webhooks specification: the secret is ``whsec_`` and the
base64 of random bytes; a message is signed with HMAC-SHA256, keyed with those bytes, over
``"<webhook-id>.<webhook-timestamp>.<body>"``, and the ``webhook-signature`` header is
``v1,`` and the base64 of that digest.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

#: The events an endpoint may ask for: the version 2 stream's change events.
EVENTS = ("notification.created", "notification.updated", "notification.deleted")
#: What the secret shown to the administrator starts with.
SECRET_PREFIX = "whsec_"
#: Random bytes in a new secret (the specification asks for 24 to 64).
SECRET_BYTES = 32
#: Longest endpoint URL accepted.
MAX_URL = 2048
#: A retry never waits longer than this part of the retry window.
MAX_DELAY_SHARE = 0.25


def parse_events(text: str | None) -> tuple[str, ...]:
    """Parse ``notification.created,notification.updated`` (None or empty: every event)."""
    if text is None or not text.strip():
        return EVENTS
    found: list[str] = []
    for item in text.split(","):
        name = item.strip()
        if not name:
            continue
        if name not in EVENTS:
            raise ValueError(f"unknown event {name!r}; choose from {', '.join(EVENTS)}")
        if name not in found:
            found.append(name)
    if not found:
        raise ValueError(f"name at least one event of {', '.join(EVENTS)}")
    return tuple(name for name in EVENTS if name in found)


def check_url(url: str) -> str:
    """Return ``url`` if it is an absolute ``http``/``https`` URL with a host, else raise."""
    if not url or len(url) > MAX_URL or any(c.isspace() or ord(c) < 32 for c in url):
        raise ValueError(f"not a usable URL: {url[:100]!r}")
    try:
        parts = urlsplit(url)
        port = parts.port  # a port that is not a number raises here
    except ValueError:
        raise ValueError(f"not a usable URL: {url[:100]!r}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"the URL must start with http:// or https://, got {url[:100]!r}")
    if not parts.hostname:
        raise ValueError(f"the URL names no host: {url[:100]!r}")
    if port == 0:
        raise ValueError(f"the URL's port must be 1 to 65535: {url[:100]!r}")
    return url


def new_secret() -> str:
    """Return a new endpoint secret: ``whsec_`` and the base64 of random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """Return the key bytes of a secret (with or without its ``whsec_`` prefix)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not a webhook secret (whsec_ and base64)") from None


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """Return the ``webhook-signature`` header of one attempt: ``v1,<base64>``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def body(event: str, timestamp: str, data: dict[str, Any]) -> str:
    """Return the JSON body of a delivery (``type``, ``timestamp``, ``data``), compact."""
    return json.dumps({"type": event, "timestamp": timestamp, "data": data},
                      separators=(",", ":"), ensure_ascii=False)


# --- retries -------------------------------------------------------------------------------


def retry_delay(failed_attempts: int, base: float, window: float) -> float:
    """Seconds to wait after the ``failed_attempts``-th failed attempt of a delivery.

    Doubling from ``base``, and never more than a quarter of the retry ``window``, so a
    receiver that comes back is tried again within hours, not a day.
    """
    exponent = min(max(failed_attempts - 1, 0), 60)
    return float(min(base * 2.0 ** exponent, window * MAX_DELAY_SHARE))


@dataclass(frozen=True)
class Attempt:
    """One attempt of the retry schedule: its number, the wait before it, when it comes."""

    number: int
    delay: float
    at: float


def schedule(base: float, window: float) -> list[Attempt]:
    """Return every attempt of a delivery whose receiver always fails (at once).

    The first is at once; each failure waits :func:`retry_delay`, but the last attempt is
    at the end of the window; a failure then marks the delivery failed.
    """
    attempts = [Attempt(1, 0.0, 0.0)]
    at = 0.0
    while at < window:
        delay = min(retry_delay(len(attempts), base, window), window - at)
        at += delay
        attempts.append(Attempt(len(attempts) + 1, delay, at))
    return attempts


def describe_seconds(seconds: float) -> str:
    """Say a duration as the docs do: ``5 s``, ``2 min 35 s``, ``5 h 41 min 15 s``."""
    whole = round(seconds)
    parts: list[str] = []
    for unit, size in (("h", 3600), ("min", 60), ("s", 1)):
        if whole >= size or (unit == "s" and not parts):
            parts.append(f"{whole // size} {unit}")
            whole %= size
    return " ".join(p for p in parts if not p.startswith("0 ") or len(parts) == 1)


def schedule_table(base: float, window: float) -> str:
    """The retry table of ``docs/webhooks.md``: each attempt, its wait, its time."""
    lines = ["| Attempt | Waits after the previous one | Time since the first |",
             "|---|---|---|"]
    for attempt in schedule(base, window):
        wait = "—" if attempt.number == 1 else describe_seconds(attempt.delay)
        lines.append(f"| {attempt.number} | {wait} | {describe_seconds(attempt.at)} |")
    return "\n".join(lines) + "\n"


def events_text(events: Iterable[str]) -> str:
    """Return events as they are stored and shown: comma-separated."""
    return ",".join(events)
