"""Authentication (SPEC §3): every bad credential is a 401 in the variant's own format."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import jwt
import pytest
from conftest import SECRET
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from notifications import create_app
from notifications.settings import ConfigError

DATASET_URL = "/api/v1/notifications"
ORG_URL = "/api/v1/org/notifications"
OTHER_SECRET = "another-secret-that-is-long-enough-0123456789"
LONG_SECRET = SECRET + SECRET
ENVELOPE = {"code", "message", "detail", "hint", "details", "request_id"}


def now() -> int:
    return int(time.time())


def sign(claims: dict[str, Any], key: Any = SECRET, algorithm: str = "HS256",
         headers: dict[str, Any] | None = None) -> str:
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def good_claims(**extra: Any) -> dict[str, Any]:
    claims = {"sub": "alice", "organization_id": "acme", "iat": now(), "exp": now() + 600}
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with_raw_key(claims: dict[str, Any], key: bytes) -> str:
    """Sign HS256 by hand (PyJWT refuses PEM keys as HMAC secrets, an attacker does not)."""
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    mac = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def unsigned(claims: dict[str, Any]) -> str:
    head = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{head}.{b64(json.dumps(claims).encode())}."


@pytest.fixture(scope="module")
def rsa_key() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> Any:
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(key: Any) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def assert_rejected(client: Any, headers: dict[str, str] | None = None) -> None:
    """Both variants answer 401 in their own format."""
    response = client.get(DATASET_URL, headers=headers or {})
    assert response.status_code == 401, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str) and body["detail"]
    org = client.get(ORG_URL, headers=headers or {})
    assert org.status_code == 401
    envelope = org.get_json()
    assert set(envelope) == ENVELOPE
    assert envelope["code"] == "unauthorized"
    assert envelope["request_id"] == org.headers["X-Request-Id"]
    assert isinstance(envelope["details"], dict)


def assert_accepted(client: Any, headers: dict[str, str]) -> None:
    assert client.get(DATASET_URL, headers=headers).status_code == 200
    assert client.get(ORG_URL, headers=headers).status_code == 200


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- HS256 (default) -----------------------------------------------------------------

REJECTED: list[tuple[str, Any]] = [
    ("missing", lambda: {}),
    ("empty header", lambda: {"Authorization": ""}),
    ("scheme only", lambda: {"Authorization": "Bearer"}),
    ("scheme and space", lambda: {"Authorization": "Bearer   "}),
    ("basic scheme", lambda: {"Authorization": "Basic YWxpY2U6cGFzc3dvcmQ="}),
    ("token scheme", lambda: {"Authorization": f"Token {sign(good_claims())}"}),
    ("no scheme", lambda: {"Authorization": sign(good_claims())}),
    ("garbage", lambda: bearer("not-a-jwt")),
    ("garbage segments", lambda: bearer("a.b.c")),
    ("non-ascii", lambda: bearer("ünï.cödé.tökén")),
    ("expired", lambda: bearer(sign(good_claims(exp=now() - 3600)))),
    ("expired beyond leeway", lambda: bearer(sign(good_claims(exp=now() - 45)))),
    ("wrong secret", lambda: bearer(sign(good_claims(), key=OTHER_SECRET))),
    ("alg none", lambda: bearer(unsigned(good_claims()))),
    ("alg none with signature", lambda: bearer(unsigned(good_claims()) + "c2ln")),
    ("HS512 not configured", lambda: bearer(sign(good_claims(), LONG_SECRET, "HS512"))),
    ("HS384 not configured", lambda: bearer(sign(good_claims(), LONG_SECRET, "HS384"))),
    ("missing exp", lambda: bearer(sign(good_claims(exp=None)))),
    ("exp not a number", lambda: bearer(sign(good_claims(exp="tomorrow")))),
    ("missing sub", lambda: bearer(sign(good_claims(sub=None)))),
    ("sub empty", lambda: bearer(sign(good_claims(sub="")))),
    ("sub a number", lambda: bearer(sign(good_claims(sub=42)))),
    ("sub a list", lambda: bearer(sign(good_claims(sub=["alice"])))),
    ("sub too long", lambda: bearer(sign(good_claims(sub="x" * 256)))),
    ("organization a list", lambda: bearer(sign(good_claims(organization_id=["acme"])))),
    ("nbf in the future", lambda: bearer(sign(good_claims(nbf=now() + 300)))),
    ("iat in the future", lambda: bearer(sign(good_claims(iat=now() + 3600)))),
    ("tampered payload", lambda: bearer(
        (lambda t: t.split(".")[0] + "." + b64(json.dumps(good_claims(sub="mallory")).encode())
         + "." + t.split(".")[2])(sign(good_claims())))),
]


@pytest.mark.parametrize("make_headers", [r[1] for r in REJECTED], ids=[r[0] for r in REJECTED])
def test_bad_credentials_are_401(client: Any, make_headers: Any) -> None:
    assert_rejected(client, make_headers())


def test_good_token_accepted(client: Any) -> None:
    assert_accepted(client, bearer(sign(good_claims())))


def test_lowercase_bearer_scheme_accepted(client: Any) -> None:
    assert client.get(DATASET_URL, headers={"Authorization": f"bearer {sign(good_claims())}"},
                      ).status_code == 200


def test_numeric_organization_claim_is_a_string(client: Any) -> None:
    response = client.get(ORG_URL, headers=bearer(sign(good_claims(organization_id=7))))
    assert response.status_code == 200


@pytest.mark.parametrize(("exp_offset", "status"), [(-10, 200), (-25, 200), (-60, 401)])
def test_default_leeway_is_30_seconds(client: Any, exp_offset: int, status: int) -> None:
    token = sign(good_claims(exp=now() + exp_offset))
    assert client.get(DATASET_URL, headers=bearer(token)).status_code == status


@pytest.mark.parametrize(("leeway", "exp_offset", "status"),
                         [("0", -5, 401), ("120", -90, 200), ("120", -200, 401)])
def test_configured_leeway(app_config: dict[str, Any], leeway: str, exp_offset: int,
                           status: int) -> None:
    client = create_app({**app_config, "JWT_LEEWAY": leeway}).test_client()
    token = sign(good_claims(exp=now() + exp_offset))
    assert client.get(DATASET_URL, headers=bearer(token)).status_code == status


def test_nbf_within_leeway_accepted(client: Any) -> None:
    assert_accepted(client, bearer(sign(good_claims(nbf=now() + 10))))


@pytest.mark.parametrize("claims", [{"sub": "\ud800"}, {"organization_id": "a\udcffb"}])
def test_claims_with_unpaired_surrogates_are_401(client: Any, claims: dict[str, Any]) -> None:
    """A signed claim may carry a lone surrogate (a JSON escape); querying with it was a 500."""
    assert_rejected(client, bearer(sign(good_claims(**claims))))


@pytest.mark.both_databases
@pytest.mark.parametrize("path", [DATASET_URL, "/api/v1/org/notifications",
                                  "/api/v2/notifications", "/api/v2/preferences"])
@pytest.mark.parametrize("claims", [{"sub": "a\u0000b"},
                                    {"organization_id": "ac\u0000me"}])
def test_claims_with_the_nul_character_are_401(client: Any, claims: dict[str, Any],
                                               path: str) -> None:
    """PostgreSQL's text cannot hold U+0000: querying with such a claim was a 500 there."""
    response = client.get(path, headers=bearer(sign(good_claims(**claims))))
    assert response.status_code == 401


def test_messages_say_what_is_wrong(client: Any) -> None:
    def detail(headers: dict[str, str]) -> str:
        return client.get(DATASET_URL, headers=headers).get_json()["detail"]

    assert detail({}) == "Not authenticated"
    assert "expired" in detail(bearer(sign(good_claims(exp=now() - 3600))))
    assert "exp" in detail(bearer(sign(good_claims(exp=None))))
    assert "sub" in detail(bearer(sign(good_claims(sub=None))))
    assert "algorithm" in detail(bearer(unsigned(good_claims())))


# --- cookie --------------------------------------------------------------------------


def test_session_cookie_instead_of_header(client: Any) -> None:
    client.set_cookie("session", sign(good_claims()))
    assert_accepted(client, {})


def test_bad_session_cookie_is_401(client: Any) -> None:
    client.set_cookie("session", sign(good_claims(exp=now() - 3600)))
    assert_rejected(client, {})


def test_other_cookie_name_is_ignored(client: Any) -> None:
    client.set_cookie("auth", sign(good_claims()))
    assert_rejected(client, {})


def test_configured_cookie_name(app_config: dict[str, Any]) -> None:
    client = create_app({**app_config, "SESSION_COOKIE": "nf_jwt"}).test_client()
    client.set_cookie("session", sign(good_claims()))
    assert_rejected(client, {})
    client.set_cookie("nf_jwt", sign(good_claims()))
    assert_accepted(client, {})


def test_header_wins_over_cookie(client: Any) -> None:
    client.set_cookie("session", sign(good_claims(sub="cookie-user")))
    response = client.get(DATASET_URL, headers=bearer(sign(good_claims(exp=now() - 3600))))
    assert response.status_code == 401


# --- audience and issuer -------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        ({"aud": "notifications", "iss": "https://id.example"}, 200),
        ({"aud": ["other", "notifications"], "iss": "https://id.example"}, 200),
        ({"iss": "https://id.example"}, 401),
        ({"aud": "other", "iss": "https://id.example"}, 401),
        ({"aud": "notifications"}, 401),
        ({"aud": "notifications", "iss": "https://evil.example"}, 401),
    ],
)
def test_audience_and_issuer(app_config: dict[str, Any], claims: dict[str, Any],
                             status: int) -> None:
    client = create_app({**app_config, "JWT_AUDIENCE": "notifications",
                         "JWT_ISSUER": "https://id.example"}).test_client()
    response = client.get(DATASET_URL, headers=bearer(sign(good_claims(**claims))))
    assert response.status_code == status


def test_issuer_ignored_when_not_configured(client: Any) -> None:
    assert_accepted(client, bearer(sign(good_claims(iss="anyone"))))


@pytest.mark.parametrize("aud", ["other-service", ["other-service"], "notifications"])
def test_token_with_an_audience_is_refused_when_none_is_configured(client: Any, aud: Any) -> None:
    # A token the same issuer minted for another service must not work here.
    response = client.get(DATASET_URL, headers=bearer(sign(good_claims(aud=aud))))
    assert response.status_code == 401
    assert "audience" in response.get_json()["detail"]


# --- maximum token lifetime ----------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        ({"iat": now(), "exp": now() + 3600}, 200),
        ({"iat": now() - 100, "exp": now() + 3500}, 200),
        ({"iat": now(), "exp": now() + 3601}, 401),
        ({"iat": now(), "exp": 10**30}, 401),
        ({"iat": None, "exp": now() + 60}, 401),  # without iat the lifetime is unknown
    ],
)
def test_max_lifetime(app_config: dict[str, Any], claims: dict[str, Any], status: int) -> None:
    client = create_app({**app_config, "JWT_MAX_LIFETIME": "3600"}).test_client()
    response = client.get(DATASET_URL, headers=bearer(sign(good_claims(**claims))))
    assert response.status_code == status, response.get_json()


def test_any_lifetime_without_the_setting(client: Any) -> None:
    assert_accepted(client, bearer(sign(good_claims(exp=10**30))))
    assert_accepted(client, bearer(sign(good_claims(iat=None))))


@pytest.mark.parametrize("value", ["0", "-5", "an hour", "1e3"])
def test_bad_max_lifetime_stops_startup(app_config: dict[str, Any], value: str) -> None:
    with pytest.raises(ConfigError, match="NOTIFICATIONS_JWT_MAX_LIFETIME"):
        create_app({**app_config, "JWT_MAX_LIFETIME": value})


# --- asymmetric keys -----------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_public_key_algorithms(app_config: dict[str, Any], rsa_key: Any, ec_key: Any,
                               algorithm: str) -> None:
    private = rsa_key if algorithm == "RS256" else ec_key
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048) \
        if algorithm == "RS256" else ec.generate_private_key(ec.SECP256R1())
    config = {**app_config, "JWT_SECRET": None, "JWT_ALGORITHMS": algorithm,
              "JWT_PUBLIC_KEY": public_pem(private)}
    client = create_app(config).test_client()
    assert_accepted(client, bearer(sign(good_claims(), private, algorithm)))
    assert_rejected(client, bearer(sign(good_claims(), other, algorithm)))
    # HS256 is not configured, whatever the key.
    assert_rejected(client, bearer(sign(good_claims(), SECRET)))
    assert_rejected(client, bearer(unsigned(good_claims())))


def test_public_key_from_a_file(app_config: dict[str, Any], rsa_key: Any, tmp_path: Any) -> None:
    path = tmp_path / "key.pem"
    path.write_text(public_pem(rsa_key))
    client = create_app({**app_config, "JWT_ALGORITHMS": "RS256",
                         "JWT_PUBLIC_KEY": str(path)}).test_client()
    assert_accepted(client, bearer(sign(good_claims(), rsa_key, "RS256")))


@pytest.mark.parametrize("algorithms", ["RS256", "HS256,RS256"])
def test_hs256_signed_with_public_key_is_rejected(app_config: dict[str, Any], rsa_key: Any,
                                                  algorithms: str) -> None:
    pem = public_pem(rsa_key)
    client = create_app({**app_config, "JWT_ALGORITHMS": algorithms,
                         "JWT_PUBLIC_KEY": pem}).test_client()
    forged = hs256_with_raw_key(good_claims(), pem.encode())
    assert_rejected(client, bearer(forged))
    assert_accepted(client, bearer(sign(good_claims(), rsa_key, "RS256")))
    if "HS256" in algorithms:
        assert_accepted(client, bearer(sign(good_claims())))


def test_token_of_an_algorithm_the_key_does_not_fit_is_401(app_config: dict[str, Any],
                                                          rsa_key: Any, ec_key: Any) -> None:
    """An RSA key with ES256 also accepted: an ES256 token is refused, not a 500."""
    client = create_app({**app_config, "JWT_ALGORITHMS": "RS256,ES256",
                         "JWT_PUBLIC_KEY": public_pem(rsa_key)}).test_client()
    assert_rejected(client, bearer(sign(good_claims(), ec_key, "ES256")))
    assert_accepted(client, bearer(sign(good_claims(), rsa_key, "RS256")))


# --- startup -------------------------------------------------------------------------


def test_refuses_to_start_without_a_secret(db_url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        create_app({"DATABASE_URL": db_url})
    message = str(caught.value)
    assert "NOTIFICATIONS_JWT_SECRET" in message and "not set" in message
    assert "--demo" in message


def test_refuses_to_start_with_public_key_algorithm_and_no_key(db_url: str) -> None:
    with pytest.raises(ConfigError, match="NOTIFICATIONS_JWT_PUBLIC_KEY"):
        create_app({"DATABASE_URL": db_url, "JWT_ALGORITHMS": "RS256", "JWT_SECRET": SECRET})


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"JWT_ALGORITHMS": "none"}, "unsupported algorithm"),
        ({"JWT_ALGORITHMS": "HS256,foo"}, "unsupported algorithm"),
        ({"JWT_ALGORITHMS": " , "}, "at least one algorithm"),
        ({"JWT_LEEWAY": "soon"}, "NOTIFICATIONS_JWT_LEEWAY must be a whole number"),
        ({"JWT_LEEWAY": "-1"}, "NOTIFICATIONS_JWT_LEEWAY must be between"),
        ({"JWT_ALGORITHMS": "RS256", "JWT_PUBLIC_KEY": "/nonexistent/key.pem"},
         "NOTIFICATIONS_JWT_PUBLIC_KEY is neither PEM text nor a readable file"),
        ({"JWT_ALGORITHMS": "RS256",
          "JWT_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----"},
         "NOTIFICATIONS_JWT_PUBLIC_KEY is not a PEM public key"),
    ],
)
def test_bad_auth_settings_stop_startup(db_url: str, settings: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        create_app({"DATABASE_URL": db_url, "JWT_SECRET": SECRET, **settings})


def test_environment_configures_auth(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFICATIONS_DATABASE_URL", db_url)
    monkeypatch.setenv("NOTIFICATIONS_JWT_SECRET", "from-the-environment-0123456789abcdef")
    monkeypatch.setenv("NOTIFICATIONS_JWT_LEEWAY", "0")
    client = create_app().test_client()
    token = sign(good_claims(), key="from-the-environment-0123456789abcdef")
    assert client.get(DATASET_URL, headers=bearer(token)).status_code == 200
    assert client.get(DATASET_URL, headers=bearer(sign(good_claims()))).status_code == 401


@pytest.mark.parametrize("name, value", [
    ("NOTIFICATIONS_REQUIRE_KEY", ""),
    ("NOTIFICATIONS_REQUIRE_KEY", "0"),
    ("NOTIFICATIONS_DEMO", "1"),
    ("NOTIFICATIONS_TESTING", "1"),
])
def test_environment_cannot_switch_off_the_key_check(db_url: str, monkeypatch: pytest.MonkeyPatch,
                                                     name: str, value: str) -> None:
    monkeypatch.setenv("NOTIFICATIONS_DATABASE_URL", db_url)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="NOTIFICATIONS_JWT_SECRET"):
        create_app()


@pytest.mark.parametrize("name, value", [
    ("NOTIFICATIONS_JWT_ALGORITHM_LIST", "none"),
    ("NOTIFICATIONS_CORS_ORIGIN_LIST", "https://evil.example"),
    ("NOTIFICATIONS_SECRET_KEY", "x"),
    ("NOTIFICATIONS_SQLALCHEMY_DATABASE_URI", "sqlite://"),
])
def test_environment_sets_only_documented_settings(db_url: str, monkeypatch: pytest.MonkeyPatch,
                                                   name: str, value: str) -> None:
    monkeypatch.setenv("NOTIFICATIONS_DATABASE_URL", db_url)
    monkeypatch.setenv("NOTIFICATIONS_JWT_SECRET", SECRET)
    monkeypatch.setenv(name, value)
    app = create_app()
    key = name.removeprefix("NOTIFICATIONS_")
    assert app.config.get(key) != value
    assert app.config["JWT_ALGORITHMS"] == ("HS256",) and app.config["CORS_ORIGINS"] == ()
    assert app.config["SQLALCHEMY_DATABASE_URI"] == db_url


def test_code_may_still_set_internal_flags(db_url: str) -> None:
    app = create_app({"DATABASE_URL": db_url, "REQUIRE_KEY": False})
    assert app.config["REQUIRE_KEY"] is False


# --- open mode -----------------------------------------------------------------------


def test_open_mode_still_needs_a_secret(db_url: str) -> None:
    with pytest.raises(ConfigError, match="NOTIFICATIONS_JWT_SECRET"):
        create_app({"DATABASE_URL": db_url, "OPEN_USER": "operator"})


def test_open_mode(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        app = create_app({"DATABASE_URL": db_url, "JWT_SECRET": SECRET, "OPEN_USER": "operator"})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("open mode" in w and "operator" in w for w in warnings)
    with app.app_context():
        from notifications.store import inserts

        inserts.create_notifications([{"user_id": "operator"}, {"user_id": "someone-else"}])
    client = app.test_client()
    body = client.get(DATASET_URL).get_json()
    assert body["total"] == 1 and body["notifications"][0]["user_id"] == "operator"
    # The organization variant needs an organization: without one it is a 403.
    forbidden = client.get(ORG_URL)
    assert forbidden.status_code == 403 and forbidden.get_json()["code"] == "forbidden"
    # Credentials that are presented are still checked, and then they decide who calls.
    expired = bearer(sign(good_claims(exp=now() - 3600)))
    assert client.get(DATASET_URL, headers=expired).status_code == 401
    assert client.get(DATASET_URL, headers=bearer(sign(good_claims()))).get_json()["total"] == 0


def test_open_mode_with_organization(db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        app = create_app({"DATABASE_URL": db_url, "JWT_SECRET": SECRET,
                          "OPEN_USER": "operator", "OPEN_ORGANIZATION": "acme"})
    assert any("acme" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    with app.app_context():
        from notifications.store import inserts

        inserts.create_notifications([
            {"user_id": "operator", "organization_id": "acme"},
            {"user_id": "operator", "organization_id": "globex"},
        ])
    client = app.test_client()
    org = client.get(ORG_URL).get_json()
    assert org["total"] == 1 and org["items"][0]["organization_id"] == "acme"
    # A real token still wins over the default user.
    other = client.get(ORG_URL, headers=bearer(sign(good_claims(sub="bob")))).get_json()
    assert other["total"] == 0


def test_open_mode_is_off_by_default(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    assert client.get(DATASET_URL).status_code == 401
    assert not any("open mode" in r.getMessage() for r in caplog.records)
