"""Token checks: decode and verify a JWT into a principal (pure, no Flask globals)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt
from jwt.algorithms import get_default_algorithms

from notifications.core.errors import ConfigError

if TYPE_CHECKING:
    # Only for annotations (this module postpones them): no runtime dependency.
    from typing_extensions import TypeIs


class AuthError(Exception):
    """The request's credentials are missing or not acceptable (HTTP 401)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user, optionally inside an organization."""

    user_id: str
    organization_id: str | None = None


@dataclass(frozen=True)
class KeySettings:
    """What a token must satisfy to be accepted."""

    algorithms: tuple[str, ...]
    secret: str | None = None
    public_key: str | None = None
    audience: str | None = None
    issuer: str | None = None
    leeway: int = 30
    org_claim: str = "organization_id"
    #: Longest accepted ``exp - iat`` in seconds (then ``iat`` is required); None: no bound.
    max_lifetime: int | None = None

    @classmethod
    def from_config(cls, config: Any) -> KeySettings:
        """Build settings from the app config (after :func:`config.normalize`)."""
        return cls(
            algorithms=tuple(config["JWT_ALGORITHMS"]),
            secret=config.get("JWT_SECRET"),
            public_key=load_public_key(config.get("JWT_PUBLIC_KEY")),
            audience=config.get("JWT_AUDIENCE"),
            issuer=config.get("JWT_ISSUER"),
            leeway=config.get("JWT_LEEWAY", 30),
            org_claim=config.get("ORG_CLAIM", "organization_id"),
            max_lifetime=config.get("JWT_MAX_LIFETIME"),
        )

    def key_for(self, algorithm: str) -> str | None:
        """Return the verification key for an algorithm, never mixing key types."""
        if algorithm.startswith("HS"):
            return self.secret
        return self.public_key

    def check_public_key(self) -> None:
        """Raise ConfigError unless the public key verifies one accepted asymmetric algorithm."""
        asymmetric = [a for a in self.algorithms if not a.startswith("HS")]
        if not asymmetric or not self.public_key:
            return
        for algorithm in asymmetric:
            try:
                get_default_algorithms()[algorithm].prepare_key(self.public_key)
                return
            except (jwt.InvalidKeyError, ValueError, TypeError):
                continue
        raise ConfigError(
            "NOTIFICATIONS_JWT_PUBLIC_KEY is not a PEM public key usable with "
            f"{', '.join(asymmetric)} (NOTIFICATIONS_JWT_ALGORITHMS)"
        )

    def missing_keys(self) -> list[str]:
        """Name the settings an accepted algorithm would need but that are unset."""
        missing = []
        if any(a.startswith("HS") for a in self.algorithms) and not self.secret:
            missing.append("NOTIFICATIONS_JWT_SECRET")
        if any(not a.startswith("HS") for a in self.algorithms) and not self.public_key:
            missing.append("NOTIFICATIONS_JWT_PUBLIC_KEY")
        return missing


def load_public_key(value: str | None) -> str | None:
    """Return PEM text given either the PEM itself or a path to a file holding it."""
    if not value:
        return None
    if "-----BEGIN" in value:
        return value
    path = os.path.expanduser(value)
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(
            f"NOTIFICATIONS_JWT_PUBLIC_KEY is neither PEM text nor a readable file: {exc}"
        ) from None


def bearer_token(authorization: str | None) -> str | None:
    """Extract the token of an ``Authorization: Bearer`` header; raise on other schemes."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization header must be 'Bearer <token>'")
    return token.strip()


def decode(token: str, settings: KeySettings) -> Principal:
    """Verify a JWT and return its principal; raise :class:`AuthError` otherwise."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise AuthError("Could not validate credentials: malformed token") from None
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in settings.algorithms:
        raise AuthError("Could not validate credentials: token algorithm is not accepted")
    key = settings.key_for(algorithm)
    if not key:
        raise AuthError("Could not validate credentials: no key configured for this algorithm")
    required = ["exp", "sub"] if settings.max_lifetime is None else ["exp", "iat", "sub"]
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=settings.audience,
            issuer=settings.issuer,
            leeway=settings.leeway,
            # The audience is always checked: with none configured, a token that names one
            # (minted for another service by the same issuer) is refused, as PyJWT intends.
            options={
                "require": required,
                "verify_iss": settings.issuer is not None,
            },
        )
    except jwt.InvalidAudienceError:
        raise AuthError(
            "Could not validate credentials: token audience is not accepted"
            if settings.audience is not None
            else "Could not validate credentials: token names an audience, and this service "
            "accepts none (set NOTIFICATIONS_JWT_AUDIENCE)"
        ) from None
    except jwt.ExpiredSignatureError:
        raise AuthError("Could not validate credentials: token has expired") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(
            f"Could not validate credentials: token has no '{exc.claim}' claim"
        ) from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"Could not validate credentials: {exc}") from None
    except (jwt.InvalidKeyError, ValueError, TypeError):
        # A configured key that does not fit this token's algorithm (say an RSA key and an
        # ES256 token) is the token's problem, not a server error.
        raise AuthError("Could not validate credentials: invalid signature") from None
    check_lifetime(claims, settings.max_lifetime)
    return principal_from_claims(claims, settings.org_claim)


def check_lifetime(claims: dict[str, Any], max_lifetime: int | None) -> None:
    """Refuse a token issued for longer than ``max_lifetime`` seconds (``exp - iat``)."""
    if max_lifetime is None:
        return
    exp, iat = claims["exp"], claims["iat"]
    # PyJWT has checked both are numbers; booleans are numbers to Python, not to JWT.
    if isinstance(exp, bool) or isinstance(iat, bool) or exp - iat > max_lifetime:
        raise AuthError(
            f"Could not validate credentials: token lifetime exceeds {max_lifetime} seconds"
        )


def _is_text(value: Any) -> TypeIs[str]:
    """Tell whether a claim is a string of at most 255 characters that UTF-8 can encode.

    JSON escapes can smuggle in lone surrogates, which no query can carry, and the NUL
    character, which PostgreSQL's text cannot hold.
    """
    if not isinstance(value, str) or len(value) > 255 or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def principal_from_claims(claims: dict[str, Any], org_claim: str) -> Principal:
    """Map verified claims to a principal, checking their types."""
    user = claims.get("sub")
    if not user or not _is_text(user):
        raise AuthError("Could not validate credentials: 'sub' must be a non-empty string")
    org = claims.get(org_claim)
    if isinstance(org, int) and not isinstance(org, bool):
        org = str(org)
    if org is not None and not _is_text(org):
        raise AuthError(f"Could not validate credentials: '{org_claim}' must be a string")
    return Principal(user_id=user, organization_id=org or None)


def issue(
    secret: str,
    user_id: str,
    organization_id: str | None = None,
    *,
    ttl: int = 3600,
    org_claim: str = "organization_id",
    audience: str | None = None,
    issuer: str | None = None,
    algorithm: str = "HS256",
) -> str:
    """Sign a token for local use (CLI, demo mode, tests)."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + ttl}
    if organization_id:
        claims[org_claim] = organization_id
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm=algorithm)
