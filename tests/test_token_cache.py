"""The cache of verified tokens: successes briefly and boundedly, failures never."""
from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from notifications.core import token_cache, tokens
from notifications.core.token_cache import TokenCache
from notifications.core.tokens import AuthError, KeySettings

SECRET = "cache-secret-0123456789abcdef0123456789"


def sign(**claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"sub": "alice", "iat": now, "exp": now + 600, **claims}, SECRET,
                      algorithm="HS256")


@pytest.fixture
def settings() -> KeySettings:
    return KeySettings(algorithms=("HS256",), secret=SECRET)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = tokens.decode

    def counting(token: str, keys: KeySettings) -> tokens.Principal:
        seen.append(token)
        return real(token, keys)

    monkeypatch.setattr(token_cache, "decode", counting)
    return seen


def test_a_verified_token_is_not_verified_again_at_once(settings: KeySettings,
                                                        calls: list[str]) -> None:
    cache, token = TokenCache(), sign(organization_id="acme")
    first = cache.decode(token, settings)
    assert cache.decode(token, settings) == first == tokens.Principal("alice", "acme")
    assert len(calls) == 1


def test_failures_are_never_remembered(settings: KeySettings, calls: list[str]) -> None:
    cache = TokenCache()
    for token in (sign(nbf=int(time.time()) + 300), sign(exp=int(time.time()) - 300), "x.y.z"):
        for _ in range(2):
            with pytest.raises(AuthError):
                cache.decode(token, settings)
    assert len(calls) == 6


def test_an_entry_lapses_after_the_ttl(settings: KeySettings, calls: list[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cache, token = TokenCache(ttl=5), sign()
    cache.decode(token, settings)
    later = time.time() + 6
    monkeypatch.setattr(token_cache.time, "time", lambda: later)
    cache.decode(token, settings)
    assert len(calls) == 2


def test_an_entry_never_outlives_the_token(settings: KeySettings, calls: list[str]) -> None:
    cache = TokenCache(ttl=60)
    # Expired 10 s ago, inside the 30 s leeway: accepted, but not remembered.
    token = sign(exp=int(time.time()) - 10)
    cache.decode(token, settings)
    cache.decode(token, settings)
    assert len(calls) == 2


def test_other_settings_verify_again(settings: KeySettings, calls: list[str]) -> None:
    cache, token = TokenCache(), sign()
    cache.decode(token, settings)
    with pytest.raises(AuthError):
        cache.decode(token, KeySettings(algorithms=("HS256",),
                                        secret="another-secret-0123456789abcdef0123456789"))
    assert len(calls) == 2


def test_the_cache_is_bounded(settings: KeySettings) -> None:
    cache = TokenCache(max_tokens=3)
    for i in range(10):
        cache.decode(sign(jti=str(i)), settings)
    assert len(cache._entries) == 3
