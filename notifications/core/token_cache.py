"""A short, bounded memory of verified tokens (pure: no Flask globals).

A client sends the same token with every request, and verifying it (header, signature,
claims) costs more than the unread count it asks for. A token that verified is trusted
again, without verifying, for a few seconds at most and never past its ``exp``; a token
that failed is never remembered, so every failure is checked again in full. Verification
itself stays :func:`tokens.decode`, with every check it makes.

Remembering is safe because what is checked only gets better with time for a token that
passed: ``nbf`` and ``iat`` lie further in the past, and the checks on the signature,
algorithm, audience, issuer and lifetime do not depend on the time at all. Only ``exp``
does, and an entry lapses at ``exp`` (before the leeway).
"""
from __future__ import annotations

import time
from collections import OrderedDict

import jwt

from notifications.core.tokens import KeySettings, Principal, decode

#: Longest a verified token is trusted again without verifying it, in seconds.
TTL = 5.0
#: Most tokens remembered; the least recently used one is forgotten first.
MAX_TOKENS = 4096


class TokenCache:
    """Verified tokens by their raw text: the settings they passed, a principal and a lapse."""

    def __init__(self, ttl: float = TTL, max_tokens: int = MAX_TOKENS) -> None:
        self.ttl = ttl
        self.max_tokens = max_tokens
        self._entries: OrderedDict[str, tuple[float, KeySettings, Principal]] = OrderedDict()

    def decode(self, token: str, settings: KeySettings) -> Principal:
        """Return the token's principal, verifying it unless it passed a moment ago."""
        now = time.time()
        entry = self._entries.get(token)
        # Identity, not equality: another app's settings (or reloaded ones) verify afresh.
        if entry is not None and entry[1] is settings and now < entry[0]:
            self._entries.move_to_end(token)
            return entry[2]
        principal = decode(token, settings)  # raises AuthError, and nothing is remembered
        until = min(self._expiry(token), now + self.ttl)
        if until > now:
            self._entries[token] = (until, settings, principal)
            self._entries.move_to_end(token)
            while len(self._entries) > self.max_tokens:
                self._entries.popitem(last=False)
        else:
            self._entries.pop(token, None)
        return principal

    @staticmethod
    def _expiry(token: str) -> float:
        """Return the ``exp`` of a token that has just been verified (so it is required)."""
        claims = jwt.decode(token, options={"verify_signature": False})
        return float(claims["exp"])

    def clear(self) -> None:
        """Forget every token."""
        self._entries.clear()


#: The process's cache (each gevent worker is one process, and one thread serves requests).
cache = TokenCache()


def verify(token: str, settings: KeySettings) -> Principal:
    """Verify a JWT through the process's cache; raise :class:`tokens.AuthError` otherwise."""
    return cache.decode(token, settings)
