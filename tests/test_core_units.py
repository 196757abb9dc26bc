"""The pure core without an app: serialisers, times and ids, and token checks."""
from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta, timezone

import jwt
import pytest

from notifications.core import serialize, tokens, validation
from notifications.core.tokens import AuthError, KeySettings, Principal

SECRET = "unit-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
US = 1_000_000


# --- times and ids ------------------------------------------------------------------------

@pytest.mark.parametrize("us, naive, z", [
    (0, "1970-01-01T00:00:00.000000", "1970-01-01T00:00:00Z"),
    (1_743_440_532_432_489, "2025-03-31T17:02:12.432489", "2025-03-31T17:02:12.432489Z"),
    (951_782_400 * US, "2000-02-29T00:00:00.000000", "2000-02-29T00:00:00Z"),
    (253_402_300_799 * US + 999_999, "9999-12-31T23:59:59.999999",
     "9999-12-31T23:59:59.999999Z"),
])
def test_times_render_in_each_variant_format(us: int, naive: str, z: str) -> None:
    assert serialize.iso_naive(us) == naive
    assert serialize.iso_z(us) == z
    # Both agree with the standard library, and parse back to the same instant.
    expected = datetime(1970, 1, 1) + timedelta(microseconds=us)
    assert naive == expected.isoformat(timespec="microseconds")
    assert serialize.parse_time(naive) == us == serialize.parse_time(z)


def test_absent_times_stay_absent() -> None:
    assert serialize.iso_naive(None) is None and serialize.iso_z(None) is None


def test_parse_time_honours_offsets_and_naive_means_utc() -> None:
    assert serialize.parse_time("2026-01-01T02:00:00+02:00") == serialize.parse_time(
        "2026-01-01T00:00:00")
    aware = datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-5)))
    assert serialize.from_datetime(aware) == serialize.from_datetime(
        datetime(2026, 1, 1, 5, tzinfo=UTC))
    with pytest.raises(ValueError):
        serialize.parse_time("yesterday")


def test_ntf_ids_round_trip_and_refuse_anything_else() -> None:
    uid = "e94ab07e-c0fe-4db1-83d0-34ea0fd8ee57"
    assert serialize.ntf_id(uid) == "ntf_e94ab07ec0fe4db183d034ea0fd8ee57"
    assert serialize.parse_ntf_id(serialize.ntf_id(uid)) == uid
    assert serialize.parse_ntf_id("ntf_E94AB07EC0FE4DB183D034EA0FD8EE57") == uid
    for bad in ("", uid, "ntf_", "ntf_e94ab07ec0fe4db183d034ea0fd8ee5", "ntf_" + "g" * 32,
                "xntf_e94ab07ec0fe4db183d034ea0fd8ee57"):
        assert serialize.parse_ntf_id(bad) is None, bad


# --- records ------------------------------------------------------------------------------

ROW = {
    "id": "e94ab07e-c0fe-4db1-83d0-34ea0fd8ee57", "seq": 7, "user_id": "alice",
    "organization_id": "acme", "dataset_id": "a981fc0c-2d1f-11f1-a7ca-d2580fa2deac",
    "kind": "comment", "entity_type": "saved_view", "entity_id": "v1", "title": "Hi",
    "body": "text", "link": "/x", "metadata": {"is_alert": True},
    "created_at": 1_743_440_532_432_489, "read_at": None, "dedupe_key": "k1",
}


def test_the_row_serialisers_agree_with_the_page_serialisers() -> None:
    """The per-row functions (streams, CLI) and the per-page ones (lists) give one shape."""
    dataset_row = [ROW[f] for f in serialize.DATASET_FIELDS]
    dataset_row[serialize.DATASET_FIELDS.index("metadata")] = json.dumps(ROW["metadata"])
    assert serialize.dataset_notifications([dataset_row]) == [serialize.dataset_notification(ROW)]
    org_row = [ROW[f] for f in serialize.ORGANIZATION_FIELDS]
    assert serialize.organization_records([org_row]) == [serialize.organization_record(ROW)]


def test_each_variant_shows_its_own_fields() -> None:
    dataset = serialize.dataset_notification(ROW)
    assert list(dataset) == ["id", "user_id", "entity_type", "entity_id", "title", "message",
                             "metadata", "dataset_id", "created_at", "read_at"]
    assert dataset["message"] == "text" and dataset["created_at"] == "2025-03-31T17:02:12.432489"
    record = serialize.organization_record({**ROW, "read_at": ROW["created_at"]})
    assert record["id"].startswith("ntf_") and record["read_at"] == "2025-03-31T17:02:12.432489Z"
    assert "dataset_id" not in record and "metadata" not in record


def test_full_record_round_trips_every_stored_field() -> None:
    full = serialize.full_record(ROW)
    assert set(full) == set(ROW)
    assert full["created_at"] == "2025-03-31T17:02:12.432489Z" and full["read_at"] is None
    assert serialize.parse_time(full["created_at"]) == ROW["created_at"]
    # The version 2 state, where the read selected it (an export), is there too.
    stated = serialize.full_record({**ROW, "seen_at": ROW["created_at"], "archived_at": None,
                                    "collapsed_count": 4})
    assert (stated["seen_at"], stated["archived_at"], stated["collapsed_count"]) == (
        "2025-03-31T17:02:12.432489Z", None, 4)


def test_empty_metadata_decodes_to_an_object() -> None:
    row = [ROW[f] for f in serialize.DATASET_FIELDS]
    row[serialize.DATASET_FIELDS.index("metadata")] = ""
    assert serialize.dataset_notifications([row])[0]["metadata"] == {}


@pytest.mark.parametrize("metadata", [
    '{"score": 1e16}', '{"x": 0.1, "y": -2.5e-07}', '{"n": 12345678901234567890}',
    '{"text": "caf\\u00e9"}', '{"inf": Infinity, "nan": NaN}', '{"a": [1, {"b": null}]}',
])
def test_encode_body_writes_what_flask_json_writes_or_declines(metadata: str) -> None:
    row = [ROW[f] for f in serialize.DATASET_FIELDS]
    row[serialize.DATASET_FIELDS.index("metadata")] = metadata
    body = serialize.Body(notifications=serialize.dataset_notifications([row]), total=1)
    fast = serialize.encode_body(body)
    standard = json.dumps(body, separators=(",", ":")).encode()
    assert fast is None or fast == standard


# --- tokens -------------------------------------------------------------------------------

KEYS = KeySettings(algorithms=("HS256",), secret=SECRET)


def sign(claims: dict, secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def valid_claims(**extra: object) -> dict:
    """Claims valid for a day: the parametrised tokens are signed when the tests are
    collected, minutes before a long run reaches them."""
    now = int(time.time())
    return {"sub": "alice", "iat": now, "exp": now + 86_400, **extra}


def test_a_valid_token_gives_its_principal() -> None:
    assert tokens.decode(sign(valid_claims()), KEYS) == Principal("alice")
    token = sign(valid_claims(organization_id="acme"))
    assert tokens.decode(token, KEYS) == Principal("alice", "acme")
    # A numeric organization is accepted as its text; an empty one means none.
    assert tokens.decode(sign(valid_claims(organization_id=42)), KEYS).organization_id == "42"
    assert tokens.decode(sign(valid_claims(organization_id="")), KEYS).organization_id is None


def test_issue_makes_tokens_decode_accepts() -> None:
    token = tokens.issue(SECRET, "bob", "globex", ttl=60)
    assert tokens.decode(token, KEYS) == Principal("bob", "globex")


@pytest.mark.parametrize("token, reason", [
    ("not-a-token", "malformed token"),
    (sign(valid_claims(), secret="another-secret-0123456789-abcdefghijklmnop"), "Signature"),
    (sign({"sub": "alice", "exp": int(time.time()) - 3600}), "expired"),
    (sign({"sub": "alice"}), "no 'exp' claim"),
    (sign({"exp": int(time.time()) + 86_400}), "no 'sub' claim"),
    (sign(valid_claims(sub="")), "'sub' must be a non-empty string"),
    (sign(valid_claims(sub="x" * 256)), "'sub' must be a non-empty string"),
    (sign(valid_claims(organization_id=["acme"])), "'organization_id' must be a string"),
    (sign(valid_claims(aud="other-service")), "accepts none"),
    (sign(valid_claims(), secret=SECRET * 2, algorithm="HS512"), "algorithm is not accepted"),
    (jwt.encode(valid_claims(), None, algorithm="none"), "algorithm is not accepted"),  # type: ignore[arg-type]
])
def test_bad_tokens_are_refused_with_a_reason(token: str, reason: str) -> None:
    with pytest.raises(AuthError) as error:
        tokens.decode(token, KEYS)
    assert reason in str(error.value)


def test_audience_issuer_and_leeway_are_checked_when_set() -> None:
    keys = KeySettings(algorithms=("HS256",), secret=SECRET, audience="notifications",
                       issuer="https://id.example", leeway=0)
    good = sign(valid_claims(aud="notifications", iss="https://id.example"))
    assert tokens.decode(good, keys).user_id == "alice"
    for claims in (valid_claims(aud="other", iss="https://id.example"),
                   valid_claims(aud="notifications", iss="https://evil.example"),
                   valid_claims(aud="notifications")):
        with pytest.raises(AuthError):
            tokens.decode(sign(claims), keys)
    late = {"sub": "alice", "exp": int(time.time()) - 5}
    assert tokens.decode(sign(late), KeySettings(algorithms=("HS256",), secret=SECRET,
                                                 leeway=30)).user_id == "alice"


def test_a_key_never_serves_another_family_of_algorithms() -> None:
    keys = KeySettings(algorithms=("HS256", "RS256"), secret=SECRET, public_key=None)
    assert keys.key_for("HS256") == SECRET and keys.key_for("RS256") is None
    rs_header_token = sign(valid_claims())  # HS256 token: fine
    assert tokens.decode(rs_header_token, keys).user_id == "alice"


def test_max_lifetime_needs_iat_and_bounds_exp_minus_iat() -> None:
    keys = KeySettings(algorithms=("HS256",), secret=SECRET, max_lifetime=3600)
    now = int(time.time())
    assert tokens.decode(sign({"sub": "a", "iat": now, "exp": now + 3600}), keys).user_id == "a"
    for claims, reason in (({"sub": "a", "iat": now, "exp": now + 3601}, "lifetime exceeds"),
                           ({"sub": "a", "exp": now + 60}, "no 'iat' claim")):
        with pytest.raises(AuthError, match=reason):
            tokens.decode(sign(claims), keys)


@pytest.mark.parametrize("header, expected", [
    (None, None), ("Bearer abc", "abc"), ("bearer   abc  ", "abc"), ("BEARER abc", "abc"),
])
def test_bearer_token_reads_the_scheme_case_insensitively(header: str | None,
                                                          expected: str | None) -> None:
    assert tokens.bearer_token(header) == expected


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Bearer   ", "abc", ""])
def test_bearer_token_refuses_other_schemes(header: str) -> None:
    with pytest.raises(AuthError):
        tokens.bearer_token(header)


# --- stream inputs ------------------------------------------------------------------------

@pytest.mark.parametrize("header, expected", [
    (None, None), ("", None), ("  ", None), ("0", 0), (" 42 ", 42), ("9" * 19, int("9" * 19)),
])
def test_last_event_id_names_a_position_or_none(header: str | None, expected: int | None) -> None:
    assert validation.parse_last_event_id(header) == expected


@pytest.mark.parametrize("header", ["-1", "1.5", "abc", "9" * 20, "\u0661\u0662", "1 2"])
def test_last_event_id_refuses_what_this_service_never_hands_out(header: str) -> None:
    with pytest.raises(ValueError):
        validation.parse_last_event_id(header)
