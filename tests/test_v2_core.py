"""The pure parts of the inbox API version 2: kinds, cursors, states, requests and records."""
from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from notifications.core import cursors, kinds, serialize, states, v2_requests, v2_schemas
from notifications.core.cursors import InvalidCursor, decode_cursor, encode_cursor
from notifications.core.errors import ValidationFailed
from notifications.core.kinds import KindError, KindFilter, parse_kinds
from notifications.core.states import Action, Op, State
from notifications.core.validation import parse, parse_json_body

# --- kinds --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    "review", "review.created", "review.*", "review.x.y", "review.x.*", "a", "A-b_c:d.e",
    "x" * kinds.MAX_KIND_LENGTH, "x" * (kinds.MAX_KIND_LENGTH - 2) + ".*", "9.*",
])
def test_acceptable_kind_values(value: str) -> None:
    assert kinds.check_kind(value) == value


@pytest.mark.parametrize("value", [
    "", "*", ".*", "review.", ".review", "review..created", "review*", "review.*.x",
    "review.**", "review.c*", "re view", "review/created", "révision", "review%", "x" * 101,
    "x" * 99 + ".*", "review.*\n",
])
def test_unacceptable_kind_values(value: str) -> None:
    with pytest.raises(KindError):
        kinds.check_kind(value)


def test_check_kind_refuses_what_is_no_string() -> None:
    with pytest.raises(KindError):
        kinds.check_kind(None)  # type: ignore[arg-type]


def test_a_prefix_matches_below_it_only() -> None:
    flt = parse_kinds(["review.*"])
    assert flt == KindFilter((), ("review.",))
    assert flt.matches("review.created") and flt.matches("review.x.y")
    assert not flt.matches("review")
    assert not flt.matches("reviews.created")
    assert not flt.matches("Review.created")  # case-sensitive
    assert not flt.matches(None) and not flt.matches("")


def test_exact_kinds_match_themselves_only() -> None:
    flt = parse_kinds(["review"])
    assert flt.matches("review")
    assert not flt.matches("review.created") and not flt.matches("reviewed")


def test_no_kinds_match_everything() -> None:
    flt = parse_kinds([])
    assert flt.is_all and flt == KindFilter()
    assert flt.matches("anything") and flt.matches(None) and flt.matches("")
    assert not parse_kinds(["a"]).is_all and not parse_kinds(["a.*"]).is_all


def test_values_are_sorted_deduplicated_and_covered_ones_dropped() -> None:
    flt = parse_kinds(["review.x.*", "comment", "review.*", "review.created", "comment",
                       "review", "reviews.*", "a.b.*", "a.*"])
    assert flt.exact == ("comment", "review")
    assert flt.prefixes == ("a.", "review.", "reviews.")
    assert flt.matches("review") and flt.matches("review.x.1") and flt.matches("reviews.a")
    # a filter that says the same thing is equal
    assert parse_kinds(["review.*", "comment", "review"]) == parse_kinds(flt.exact + ("review.*",))


def test_the_number_of_kind_values_is_bounded() -> None:
    values = [f"k{i}" for i in range(kinds.MAX_KINDS)]
    assert len(parse_kinds(values).exact) == kinds.MAX_KINDS
    with pytest.raises(KindError, match="at most 20"):
        parse_kinds([*values, "one.more"])
    with pytest.raises(KindError):
        parse_kinds(["ok", "not ok"])


@pytest.mark.parametrize("prefix, pattern", [
    ("review.", "review.%"),
    ("snake_case.", "snake\\_case.%"),
    ("100%.", "100\\%.%"),
    ("back\\slash.", "back\\\\slash.%"),
    ("", "%"),
])
def test_like_patterns_escape_wildcards(prefix: str, pattern: str) -> None:
    assert kinds.like_pattern(prefix) == pattern
    assert kinds.LIKE_ESCAPE == "\\"


def _like(pattern: str, text: str) -> bool:
    """SQL LIKE with ESCAPE '\\', case-sensitive (as a reference for the escaping)."""
    import re

    out, i = "", 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            out, i = out + re.escape(pattern[i + 1]), i + 2
            continue
        out += ".*" if ch == "%" else "." if ch == "_" else re.escape(ch)
        i += 1
    return re.fullmatch(out, text, re.S) is not None


@pytest.mark.parametrize("text, expected", [
    ("snake_case.x", True), ("snakeXcase.x", False), ("snake_case.", True),
    ("snake_case", False), ("snake_casey.x", False),
])
def test_like_patterns_match_exactly_the_prefix(text: str, expected: bool) -> None:
    assert _like(kinds.like_pattern("snake_case."), text) is expected


def test_prefix_ranges_bound_exactly_the_texts_with_the_prefix() -> None:
    low, high = kinds.prefix_range("review.")
    assert (low, high) == ("review.", "review/")
    for text, inside in [("review.", True), ("review.created", True), ("review.\U0010ffff", True),
                         ("review", False), ("review/", False), ("reviews.x", False),
                         ("Review.x", False), ("review-x", False)]:
        assert (low <= text < high) is inside, text
    # the byte order of UTF-8 agrees with the order of str
    assert ("review.é".encode() < high.encode()) and "review.é" < high


def test_prefix_ranges_skip_surrogates_and_refuse_what_has_no_end() -> None:
    assert kinds.prefix_range("a\ud7ff") == ("a\ud7ff", "a\ue000")
    for bad in ("", "a\U0010ffff"):
        with pytest.raises(ValueError):
            kinds.prefix_range(bad)


# --- cursors ------------------------------------------------------------------------------

FP = cursors.filter_fingerprint("all", "false", [], None)
DATASET = "a981fc0c-2d1f-11f1-a7ca-d2580fa2deac"


T0 = 1_776_000_000_000_000  # 2026-04-12, microseconds


@pytest.mark.parametrize(("created_at", "seq"), [
    (T0, 1), (T0, 2), (0, 42), (-1, 2**32), (cursors.MIN_TIME, cursors.MAX_SEQ),
    (cursors.MAX_TIME, 1),
])
def test_cursors_round_trip(created_at: int, seq: int) -> None:
    text = encode_cursor(created_at, seq, FP)
    assert len(text) == cursors.CURSOR_LENGTH
    assert text.isascii() and all(c.isalnum() or c in "-_" for c in text)  # url-safe
    position = decode_cursor(text, FP)
    assert position == (created_at, seq) and position.created_at == created_at
    assert position.seq == seq


def test_cursors_are_deterministic_and_differ_by_position_and_filter() -> None:
    assert encode_cursor(T0, 7, FP) == encode_cursor(T0, 7, FP)
    other = cursors.filter_fingerprint("unread", "false", [], None)
    assert len({encode_cursor(T0, 7, FP), encode_cursor(T0, 8, FP), encode_cursor(T0 + 1, 7, FP),
                encode_cursor(T0, 7, other)}) == 4


@pytest.mark.parametrize("seq", [0, -1, cursors.MAX_SEQ + 1, True, 1.0, "1", None])
def test_encode_refuses_positions_out_of_range(seq: Any) -> None:
    with pytest.raises(ValueError):
        encode_cursor(T0, seq, FP)


@pytest.mark.parametrize("created_at", [cursors.MIN_TIME - 1, cursors.MAX_TIME + 1, True, 1.0,
                                        "1", None])
def test_encode_refuses_times_out_of_range(created_at: Any) -> None:
    with pytest.raises(ValueError):
        encode_cursor(created_at, 1, FP)


@pytest.mark.parametrize("fingerprint", [b"", b"12345", b"1234567", "123456", None])
def test_encode_refuses_bad_fingerprints(fingerprint: Any) -> None:
    with pytest.raises(ValueError):
        encode_cursor(T0, 1, fingerprint)


def test_fingerprints_are_short_and_tell_filters_apart() -> None:
    fp = cursors.filter_fingerprint
    assert len(FP) == cursors.FINGERPRINT_SIZE
    # order and repetition of kinds, and the case of the dataset id, do not matter
    assert fp("read", "all", ["b", "a", "b"], DATASET) == fp("read", "all", ["a", "b"],
                                                                DATASET.upper())
    variants = {
        fp("all", "false", [], None), fp("unread", "false", [], None),
        fp("read", "false", [], None), fp("all", "true", [], None), fp("all", "all", [], None),
        fp("all", "false", ["a"], None), fp("all", "false", ["a", "b"], None),
        fp("all", "false", ["a.*"], None), fp("all", "false", [], DATASET),
        # values cannot run into each other
        fp("all", "false", ["a,b"], None), fp("all", "false", ["a", ",b"], None),
    }
    assert len(variants) == 11


def test_a_cursor_of_another_filter_is_refused() -> None:
    text = encode_cursor(T0, 5, FP)
    with pytest.raises(InvalidCursor) as caught:
        decode_cursor(text, cursors.filter_fingerprint("unread", "false", [], None))
    assert caught.value.reason == "other_filter"


def _raw(text: str) -> bytearray:
    return bytearray(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def _text(raw: bytes | bytearray) -> str:
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


def _head(created_at: int, seq: int, fingerprint: bytes = FP) -> bytes:
    return (bytes([cursors.CURSOR_VERSION]) + created_at.to_bytes(8, "big", signed=True)
            + seq.to_bytes(8, "big") + fingerprint)


@pytest.mark.parametrize("index", range(30))
def test_any_changed_byte_is_noticed(index: int) -> None:
    raw = _raw(encode_cursor(T0, 123456, FP))
    assert len(raw) == 30
    raw[index] ^= 0x01
    with pytest.raises(InvalidCursor) as caught:
        decode_cursor(_text(raw), FP)
    # the version byte makes it unknown; any other byte breaks the check
    assert caught.value.reason == ("malformed" if index == 0 else "damaged")


def test_an_edited_character_is_noticed() -> None:
    text = encode_cursor(T0, 99, FP)
    for i in range(len(text)):
        edited = text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1:]
        with pytest.raises(InvalidCursor):
            decode_cursor(edited, FP)


def test_a_position_out_of_range_is_refused_even_with_a_good_check() -> None:
    """Only a forger computes the check; the position is still checked."""
    for seq in (0, 2**64 - 1):
        head = _head(T0, seq)
        with pytest.raises(InvalidCursor) as caught:
            decode_cursor(_text(head + cursors._check(head)), FP)
        assert caught.value.reason == "damaged"


@pytest.mark.parametrize("text", [
    "", "x", "A" * 39, "A" * 41, "A" * 1000, "=" * 40, "A" * 39 + "=", "A" * 39 + "+",
    "A" * 39 + "/", "A" * 39 + " ", "AgAGUyqYYkAAAAAAAAAAACrKbflBqeBMNUxdAfQ\u00e9", None, 12,
    b"A" * 40,
])
def test_garbage_is_malformed(text: Any) -> None:
    with pytest.raises(InvalidCursor) as caught:
        decode_cursor(text, FP)
    assert caught.value.reason == "malformed"


def test_an_unknown_version_is_malformed() -> None:
    for version in (1, 3):
        raw = _raw(encode_cursor(T0, 1, FP))
        raw[0] = version
        head = bytes(raw[:23])
        with pytest.raises(InvalidCursor) as caught:
            decode_cursor(_text(head + cursors._check(head)), FP)
        assert caught.value.reason == "malformed"


def test_a_cursor_of_the_first_format_is_malformed() -> None:
    """Version 1 (28 characters, ``seq`` alone) was never handed out; it is refused."""
    head = bytes([1]) + (99).to_bytes(8, "big") + FP
    old = base64.urlsafe_b64encode(head + hashlib.blake2b(
        head, digest_size=6, person=b"ntf-v2-cursor").digest()).decode().rstrip("=")
    assert len(old) == 28
    with pytest.raises(InvalidCursor) as caught:
        decode_cursor(old, FP)
    assert caught.value.reason == "malformed"


def test_random_40_characters_are_refused() -> None:
    import secrets

    for _ in range(200):
        text = _text(secrets.token_bytes(30))
        with pytest.raises(InvalidCursor):
            decode_cursor(text, FP)


def test_invalid_cursors_are_value_errors_and_422s() -> None:
    error = InvalidCursor("damaged")
    assert isinstance(error, ValueError) and error.reason == "damaged"
    failed = error.as_validation_failed()
    assert isinstance(failed, ValidationFailed) and failed.status == 422
    assert failed.errors == [{
        "type": "cursor_invalid", "loc": ["query", "cursor"], "msg": str(error),
        "input": None, "ctx": {"reason": "damaged"},
    }]
    assert error.as_validation_failed(("body", "cursor")).errors[0]["loc"] == ["body", "cursor"]
    messages = {str(InvalidCursor(r)) for r in ("malformed", "damaged", "other_filter")}
    assert len(messages) == 3


# --- states -------------------------------------------------------------------------------

NOW, EARLIER = 2_000_000_000_000_000, 1_000_000_000_000_000
#: Every combination of set and unset state times (set ones hold EARLIER).
ALL_STATES = [
    State(EARLIER if s else None, EARLIER if r else None, EARLIER if a else None)
    for s in (0, 1) for r in (0, 1) for a in (0, 1)
]


def _expected(state: State, action: Action) -> State:
    """The contract's rules, written out case by case."""
    seen, read, archived = state.seen_at, state.read_at, state.archived_at
    if action is Action.SEEN:
        seen = seen if seen is not None else NOW
    elif action is Action.READ:
        read = read if read is not None else NOW
        seen = seen if seen is not None else NOW
    elif action is Action.UNREAD:
        read = None
    elif action is Action.ARCHIVE:
        archived = archived if archived is not None else NOW
    else:
        archived = None
    return State(seen, read, archived)


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("state", ALL_STATES)
def test_every_action_on_every_state(state: State, action: Action) -> None:
    transition = states.apply_action(state, action, NOW)
    assert transition.before == state
    assert transition.after == _expected(state, action)
    assert transition.changed is (transition.after != state)
    assert transition.changed_columns == tuple(
        c for c in states.STATE_COLUMNS if getattr(state, c) != getattr(transition.after, c))
    # idempotent: doing it again changes nothing
    again = states.apply_action(transition.after, action, NOW + 1)
    assert not again.changed and again.after == transition.after and again.changed_columns == ()


def test_the_rules_in_words() -> None:
    new = State()
    read = states.apply_action(new, Action.READ, NOW)
    assert read.after == State(NOW, NOW, None) and read.changed_columns == ("seen_at", "read_at")
    unread = states.apply_action(read.after, Action.UNREAD, NOW + 5)
    assert unread.after == State(NOW, None, None)  # stays seen
    reread = states.apply_action(unread.after, Action.READ, NOW + 9)
    assert reread.after == State(NOW, NOW + 9, None)  # seen_at keeps its first time
    archived = states.apply_action(State(archived_at=EARLIER), Action.ARCHIVE, NOW)
    assert not archived.changed and archived.after.archived_at == EARLIER
    assert states.apply_action(State(EARLIER), Action.SEEN, NOW).after == State(EARLIER)
    # read but never seen (a row from before version 2): reading it stamps seen_at
    legacy = states.apply_action(State(None, EARLIER), Action.READ, NOW)
    assert legacy.changed and legacy.after == State(NOW, EARLIER) and \
        legacy.changed_columns == ("seen_at",)


def test_states_of_rows() -> None:
    assert State.of({"seen_at": 1, "read_at": 2, "archived_at": 3}) == State(1, 2, 3)
    assert State.of({"read_at": 2, "other": 9}) == State(None, 2, None)


def test_the_plain_data_of_each_action() -> None:
    u = states.ACTION_UPDATES
    assert set(u) == set(Action)
    assert u[Action.SEEN].changes == (states.ColumnChange("seen_at", Op.STAMP),)
    assert u[Action.READ].changes == (states.ColumnChange("seen_at", Op.STAMP),
                                      states.ColumnChange("read_at", Op.STAMP))
    assert u[Action.UNREAD].changes == (states.ColumnChange("read_at", Op.CLEAR),)
    assert u[Action.ARCHIVE].changes == (states.ColumnChange("archived_at", Op.STAMP),)
    assert u[Action.UNARCHIVE].changes == (states.ColumnChange("archived_at", Op.CLEAR),)
    assert u[Action.READ].changed_when == (("seen_at", True), ("read_at", True))
    assert u[Action.UNREAD].changed_when == (("read_at", False),)
    assert u[Action.READ].set_sql() == (
        "seen_at = COALESCE(seen_at, :now), read_at = COALESCE(read_at, :now)")
    assert u[Action.READ].where_sql() == "(seen_at IS NULL OR read_at IS NULL)"
    assert u[Action.UNARCHIVE].set_sql("?") == "archived_at = NULL"
    assert u[Action.UNARCHIVE].where_sql() == "(archived_at IS NOT NULL)"
    assert u[Action.SEEN].set_sql("?") == "seen_at = COALESCE(seen_at, ?)"


def test_column_changes_alone() -> None:
    stamp = states.ColumnChange("read_at", Op.STAMP)
    clear = states.ColumnChange("read_at", Op.CLEAR)
    assert stamp.changes(None) and not stamp.changes(EARLIER)
    assert clear.changes(EARLIER) and not clear.changes(None)
    assert stamp.apply(None, NOW) == NOW and stamp.apply(EARLIER, NOW) == EARLIER
    assert clear.apply(EARLIER, NOW) is None and clear.apply(None, NOW) is None


@pytest.mark.parametrize("actions", [
    [Action.SEEN], [Action.READ], [Action.UNREAD], [Action.ARCHIVE], [Action.UNARCHIVE],
    [Action.SEEN, Action.READ], [Action.SEEN, Action.UNREAD], [Action.READ, Action.ARCHIVE],
    [Action.UNREAD, Action.UNARCHIVE], [Action.SEEN, Action.READ, Action.ARCHIVE],
    [Action.SEEN, Action.UNREAD, Action.UNARCHIVE],
])
def test_one_sql_update_does_what_the_python_does(actions: list[Action]) -> None:
    """Run the update's SQL on a row of each state: same results, row count = changed rows."""
    import sqlite3

    update = states.update_for(actions)
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE n (seq INTEGER PRIMARY KEY, seen_at INT, read_at INT, "
                 "archived_at INT)")
    conn.executemany("INSERT INTO n (seen_at, read_at, archived_at) VALUES (?, ?, ?)",
                     [(s.seen_at, s.read_at, s.archived_at) for s in ALL_STATES])
    count = conn.execute(f"UPDATE n SET {update.set_sql()} WHERE {update.where_sql()}",
                         {"now": NOW}).rowcount
    after = [State(*row) for row in conn.execute(
        "SELECT seen_at, read_at, archived_at FROM n ORDER BY seq")]
    transitions = [update.apply(s, NOW) for s in ALL_STATES]
    assert after == [t.after for t in transitions]
    assert count == sum(t.changed for t in transitions)
    # the same, one action after the other
    for state, transition in zip(ALL_STATES, transitions, strict=True):
        result = state
        for action in actions:
            result = states.apply_action(result, action, NOW).after
        assert result == transition.after


def test_update_for_merges_and_orders_columns() -> None:
    merged = states.update_for([Action.ARCHIVE, Action.READ, Action.SEEN])
    assert [c.column for c in merged.changes] == ["seen_at", "read_at", "archived_at"]
    assert states.update_for(["read"]) == states.ACTION_UPDATES[Action.READ]  # type: ignore[list-item]
    for conflict in ([Action.READ, Action.UNREAD], [Action.ARCHIVE, Action.UNARCHIVE]):
        with pytest.raises(ValueError, match="both stamp and clear"):
            states.update_for(conflict)
    with pytest.raises(ValueError, match="at least one"):
        states.update_for([])
    with pytest.raises(ValueError):
        states.update_for(["delete"])  # type: ignore[list-item]


@pytest.mark.parametrize("patch, actions", [
    ({"seen": True}, (Action.SEEN,)),
    ({"read": True}, (Action.READ,)),
    ({"read": False}, (Action.UNREAD,)),
    ({"archived": True}, (Action.ARCHIVE,)),
    ({"archived": False}, (Action.UNARCHIVE,)),
    ({"seen": True, "read": False, "archived": True},
     (Action.SEEN, Action.UNREAD, Action.ARCHIVE)),
])
def test_patch_actions(patch: dict[str, bool], actions: tuple[Action, ...]) -> None:
    assert states.patch_actions(**patch) == actions


def test_patch_actions_refuse_undoing_seen_and_asking_nothing() -> None:
    with pytest.raises(ValueError, match="cannot be undone"):
        states.patch_actions(seen=False)
    with pytest.raises(ValueError, match="at least one"):
        states.patch_actions()


@pytest.mark.parametrize("state", ALL_STATES)
def test_apply_patch(state: State) -> None:
    both = states.apply_patch(state, NOW, read=True, archived=True)
    assert both.after == _expected(_expected(state, Action.READ), Action.ARCHIVE)
    undo = states.apply_patch(both.after, NOW + 1, read=False, archived=False)
    assert undo.after == State(both.after.seen_at, None, None)
    assert not states.apply_patch(undo.after, NOW + 2, seen=True, read=False).changed


# --- records ------------------------------------------------------------------------------

US = 1_000_000
ROW: dict[str, Any] = {
    "id": "e94ab07e-c0fe-4db1-83d0-34ea0fd8ee57", "seq": 7, "user_id": "alice",
    "organization_id": "acme", "dataset_id": None, "kind": "review.created",
    "entity_type": "", "entity_id": "", "title": "New review", "body": None,
    "link": "/reviews/1", "metadata": "{}", "created_at": 1_777_039_200 * US,
    "seen_at": None, "read_at": None, "archived_at": None, "dedupe_key": None,
}
#: The record of the contract, for ROW.
RECORD: dict[str, Any] = {
    "id": "ntf_e94ab07ec0fe4db183d034ea0fd8ee57", "user_id": "alice", "organization_id": "acme",
    "dataset_id": None, "kind": "review.created", "entity_type": None, "entity_id": None,
    "title": "New review", "body": None, "link": "/reviews/1", "metadata": {},
    "created_at": "2026-04-24T14:00:00.000000Z", "seen_at": None, "read_at": None,
    "archived_at": None, "collapsed_count": 0,
}


@pytest.mark.parametrize("us, text", [
    (0, "1970-01-01T00:00:00.000000Z"),
    (1_777_039_200 * US, "2026-04-24T14:00:00.000000Z"),
    (1_743_440_532_432_489, "2025-03-31T17:02:12.432489Z"),
    (1_743_440_532_000_001, "2025-03-31T17:02:12.000001Z"),
    (951_782_400 * US, "2000-02-29T00:00:00.000000Z"),
    (253_402_300_799 * US + 999_999, "9999-12-31T23:59:59.999999Z"),
    (-1, "1969-12-31T23:59:59.999999Z"),
])
def test_v2_times_always_have_six_fractional_digits(us: int, text: str) -> None:
    assert serialize.iso_utc(us) == text
    assert serialize.parse_time(text) == us
    # unlike the organization variant, a zero fraction is written
    assert serialize.iso_z(us) == (text.replace(".000000Z", "Z"))
    assert serialize.iso_utc(None) is None


def test_the_record_has_the_contract_shape() -> None:
    assert serialize.v2_record(ROW) == RECORD
    assert list(serialize.v2_record(ROW)) == list(RECORD)  # the contract's key order
    v2_schemas.V2Record.model_validate(RECORD)


def test_a_full_record() -> None:
    row = dict(ROW, dataset_id="a981fc0c-2d1f-11f1-a7ca-d2580fa2deac", entity_type="saved_view",
               entity_id="v1", body="text", metadata='{"n": 1.5, "ok": true}',
               seen_at=1_777_039_200 * US + 1, read_at=1_777_039_201 * US,
               archived_at=1_777_039_202 * US + 500_000, collapsed_count=3)
    record = serialize.v2_record(row)
    assert record["entity_type"] == "saved_view" and record["entity_id"] == "v1"
    assert record["metadata"] == {"n": 1.5, "ok": True}
    assert isinstance(record["metadata"]["n"], serialize.ExactFloat)
    assert (record["seen_at"], record["read_at"], record["archived_at"]) == (
        "2026-04-24T14:00:00.000001Z", "2026-04-24T14:00:01.000000Z",
        "2026-04-24T14:00:02.500000Z")
    assert record["collapsed_count"] == 3
    v2_schemas.V2Record.model_validate(record)


@pytest.mark.parametrize("stored, shown", [
    ("{}", {}), ("", {}), (None, {}), (b'{"a": 1}', {"a": 1}), ({"a": [1]}, {"a": [1]}),
    ("[1, 2]", {}), ("3", {}),
])
def test_metadata_is_always_an_object(stored: Any, shown: dict[str, Any]) -> None:
    assert serialize.v2_record(dict(ROW, metadata=stored))["metadata"] == shown


def test_missing_state_columns_and_collapsed_count_default() -> None:
    row = {k: v for k, v in ROW.items() if k not in ("seen_at", "archived_at")}
    row["read_at"] = 5
    record = serialize.v2_record(row)
    assert record["seen_at"] is None and record["archived_at"] is None
    assert record["read_at"] == "1970-01-01T00:00:00.000005Z"
    assert serialize.v2_record(dict(ROW, collapsed_count=None))["collapsed_count"] == 0


def test_the_page_serialiser_agrees_with_the_row_serialiser() -> None:
    rows = [dict(ROW), dict(ROW, entity_type="e", entity_id="1", metadata='{"x": 1}',
                            read_at=9, seen_at=8, archived_at=10, collapsed_count=2)]
    full = [[row.get(f) for f in serialize.V2_FIELDS] for row in rows]
    assert serialize.v2_records(full) == [serialize.v2_record(row) for row in rows]
    # collapsed_count may be left off the end of a row
    assert serialize.v2_records([full[1][:-1]])[0]["collapsed_count"] == 0


def test_the_updated_event_payload() -> None:
    row = dict(ROW, seen_at=1_777_039_200 * US, read_at=None, archived_at=0)
    data = serialize.v2_state(row)
    assert data == {"id": RECORD["id"], "seen_at": "2026-04-24T14:00:00.000000Z",
                    "read_at": None, "archived_at": "1970-01-01T00:00:00.000000Z"}
    v2_schemas.V2UpdatedEvent.model_validate(data)
    assert serialize.v2_state({"id": ROW["id"]})["seen_at"] is None


def test_records_encode_as_the_fast_body() -> None:
    body = serialize.Body(items=[serialize.v2_record(dict(ROW, metadata='{"f": 1e16}'))])
    data = serialize.encode_body(body)
    assert data is not None and json.loads(data)["items"][0]["metadata"] == {"f": 1e16}
    assert b'"f":1e+16' in data


# --- response models ----------------------------------------------------------------------


def test_response_models_accept_real_bodies() -> None:
    counts = {"total": 3, "unread": 1, "unseen": 0}
    v2_schemas.V2Counts.model_validate(counts)
    v2_schemas.V2List.model_validate({"items": [RECORD], "next_cursor": None, "counts": counts})
    v2_schemas.V2List.model_validate({"items": [], "next_cursor": "AQ", "counts": counts})
    v2_schemas.V2BulkResult.model_validate({"updated": 0})
    v2_schemas.V2DeletedEvent.model_validate({"id": RECORD["id"]})
    v2_schemas.V2ResetEvent.model_validate({"detail": "reload"})


@pytest.mark.parametrize("model, body", [
    (v2_schemas.V2Record, dict(RECORD, created_at="2026-04-24T14:00:00Z")),  # no fraction
    (v2_schemas.V2Record, dict(RECORD, created_at="2026-04-24T14:00:00.000000")),  # no Z
    (v2_schemas.V2Record, dict(RECORD, id="e94ab07e-c0fe-4db1-83d0-34ea0fd8ee57")),
    (v2_schemas.V2Record, dict(RECORD, collapsed_count=-1)),
    (v2_schemas.V2Record, {k: v for k, v in RECORD.items() if k != "seen_at"}),
    (v2_schemas.V2Record, dict(RECORD, extra=1)),
    (v2_schemas.V2Counts, {"total": 1, "unread": 0}),
    (v2_schemas.V2Counts, {"total": -1, "unread": 0, "unseen": 0}),
    (v2_schemas.V2BulkResult, {"updated": -1}),
    (v2_schemas.V2UpdatedEvent, {"id": RECORD["id"], "seen_at": None, "read_at": None}),
])
def test_response_models_refuse_other_shapes(model: Any, body: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        model.model_validate(body)


def test_response_models_have_schemas() -> None:
    for model in (v2_schemas.V2Record, v2_schemas.V2List, v2_schemas.V2Counts,
                  v2_schemas.V2BulkResult, v2_schemas.V2UpdatedEvent,
                  v2_schemas.V2DeletedEvent, v2_schemas.V2ResetEvent):
        schema = model.model_json_schema()
        assert schema["additionalProperties"] is False
        assert set(schema["required"]) == set(model.model_fields)


# --- request models -----------------------------------------------------------------------


class Args:
    """A query string as Flask hands it over: every value of each name, in order."""

    def __init__(self, *pairs: tuple[str, str]) -> None:
        self.pairs = pairs

    def getlist(self, name: str) -> list[str]:
        return [value for key, value in self.pairs if key == name]


def query(model: Any, *pairs: tuple[str, str]) -> Any:
    return v2_requests.parse_v2_query(model, Args(*pairs))


def refused(model: Any, *pairs: tuple[str, str]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationFailed) as caught:
        query(model, *pairs)
    assert caught.value.status == 422
    return caught.value.errors


def body_errors(model: Any, body: Any) -> list[dict[str, Any]]:
    with pytest.raises(ValidationFailed) as caught:
        parse(model, body, "body")
    return caught.value.errors


L = v2_requests.V2ListQuery
ID = "ntf_e94ab07ec0fe4db183d034ea0fd8ee57"
UID = "e94ab07e-c0fe-4db1-83d0-34ea0fd8ee57"


def test_list_query_defaults() -> None:
    q = query(L)
    assert (q.status, q.archived, q.kind, q.dataset_id, q.limit, q.cursor) == (
        "all", "false", [], None, 25, None)
    assert q.kinds.is_all and q.dataset is None and q.after is None


@pytest.mark.parametrize("pairs, field, value", [
    ([("status", "unread")], "status", "unread"),
    ([("status", "read")], "status", "read"),
    ([("status", "all")], "status", "all"),
    ([("archived", "true")], "archived", "true"),
    ([("archived", "all")], "archived", "all"),
    ([("archived", "false")], "archived", "false"),
    ([("limit", "1")], "limit", 1),
    ([("limit", "100")], "limit", 100),
    ([("limit", "5"), ("limit", "7")], "limit", 7),  # the last value of a single parameter
    ([("kind", "a"), ("kind", "b.*")], "kind", ["a", "b.*"]),  # every value of kind
    ([("kind", "a")], "kind", ["a"]),
    ([("unknown", "x"), ("offset", "5")], "limit", 25),  # unknown parameters are ignored
])
def test_list_query_accepts(pairs: list[tuple[str, str]], field: str, value: Any) -> None:
    assert getattr(query(L, *pairs), field) == value


@pytest.mark.parametrize("pairs, loc, kind", [
    ([("status", "new")], ["query", "status"], "literal_error"),
    ([("status", "")], ["query", "status"], "literal_error"),
    ([("archived", "yes")], ["query", "archived"], "literal_error"),
    ([("archived", "True")], ["query", "archived"], "literal_error"),
    ([("archived", "1")], ["query", "archived"], "literal_error"),
    ([("limit", "0")], ["query", "limit"], "greater_than_equal"),
    ([("limit", "101")], ["query", "limit"], "less_than_equal"),
    ([("limit", "ten")], ["query", "limit"], "int_parsing"),
    ([("limit", "")], ["query", "limit"], "int_parsing"),
    ([("dataset_id", "nope")], ["query", "dataset_id"], "uuid_parsing"),
    ([("dataset_id", "")], ["query", "dataset_id"], "uuid_parsing"),
    ([("kind", "ok"), ("kind", "review.")], ["query", "kind", 1], "string_pattern_mismatch"),
    ([("kind", "")], ["query", "kind", 0], "string_too_short"),
    ([("kind", "x" * 101)], ["query", "kind", 0], "string_too_long"),
    ([("kind", f"k{i}") for i in range(21)], ["query", "kind"], "too_long"),
    ([("cursor", "")], ["query", "cursor"], "cursor_invalid"),
    ([("cursor", "garbage")], ["query", "cursor"], "cursor_invalid"),
    ([("cursor", "A" * 1000)], ["query", "cursor"], "cursor_invalid"),
])
def test_list_query_refuses(pairs: list[tuple[str, str]], loc: list[Any], kind: str) -> None:
    errors = refused(L, *pairs)
    assert [(e["loc"], e["type"]) for e in errors] == [(loc, kind)]


def test_list_query_takes_up_to_twenty_kinds() -> None:
    q = query(L, *[("kind", f"k{i}") for i in range(20)])
    assert len(q.kinds.exact) == 20


def test_list_query_helpers() -> None:
    q = query(L, ("kind", "review.*"), ("kind", "comment"),
              ("dataset_id", "A981FC0C-2D1F-11F1-A7CA-D2580FA2DEAC"))
    assert q.kinds == KindFilter(("comment",), ("review.",))
    assert q.dataset == "a981fc0c-2d1f-11f1-a7ca-d2580fa2deac"
    assert q.fingerprint() == cursors.filter_fingerprint(
        "all", "false", ["comment", "review.*"], q.dataset)


def test_a_cursor_pages_on_with_its_filter() -> None:
    filt = [("status", "unread"), ("archived", "all"), ("kind", "review.*"),
            ("dataset_id", DATASET)]
    first = query(L, *filt, ("limit", "10"))
    cursor = first.next_cursor(T0, 1234)
    nxt = query(L, *filt, ("cursor", cursor))
    assert nxt.after == (T0, 1234) and nxt.cursor == cursor
    # the page size may change; the kinds may be written otherwise with the same meaning
    assert query(L, *filt, ("limit", "99"), ("cursor", cursor)).after == (T0, 1234)
    same = [("kind", "review.x.*"), *filt[::-1]]
    assert query(L, *same, ("cursor", cursor)).after == (T0, 1234)
    # unknown parameters change nothing either
    assert query(L, *filt, ("cursor", cursor), ("zzz", "1")).after == (T0, 1234)


@pytest.mark.parametrize("changed", [
    [("status", "read"), ("archived", "all"), ("kind", "review.*"), ("dataset_id", DATASET)],
    [("status", "unread"), ("kind", "review.*"), ("dataset_id", DATASET)],
    [("status", "unread"), ("archived", "all"), ("dataset_id", DATASET)],
    [("status", "unread"), ("archived", "all"), ("kind", "review.*"), ("kind", "x"),
     ("dataset_id", DATASET)],
    [("status", "unread"), ("archived", "all"), ("kind", "review.*")],
    [("status", "unread"), ("archived", "all"), ("kind", "review.*"),
     ("dataset_id", "0c5c7fd0-a6a3-4450-a513-270e269e0d37")],
])
def test_a_cursor_with_another_filter_is_a_422(changed: list[tuple[str, str]]) -> None:
    filt = [("status", "unread"), ("archived", "all"), ("kind", "review.*"),
            ("dataset_id", DATASET)]
    cursor = query(L, *filt).next_cursor(T0, 99)
    [error] = refused(L, *changed, ("cursor", cursor))
    assert error["loc"] == ["query", "cursor"] and error["type"] == "cursor_invalid"
    assert error["ctx"] == {"reason": "other_filter"}


def test_a_tampered_cursor_is_a_422() -> None:
    cursor = query(L).next_cursor(T0, 99)
    tampered = cursor[:10] + ("B" if cursor[10] == "A" else "A") + cursor[11:]
    [error] = refused(L, ("cursor", tampered))
    assert error["type"] == "cursor_invalid" and error["ctx"]["reason"] in ("damaged",
                                                                             "malformed")


def test_a_bad_filter_field_is_reported_instead_of_the_cursor() -> None:
    cursor = query(L).next_cursor(T0, 99)
    errors = refused(L, ("status", "nope"), ("cursor", cursor))
    assert [e["loc"] for e in errors] == [["query", "status"]]


def test_next_cursor_refuses_positions_out_of_range() -> None:
    with pytest.raises(ValueError):
        query(L).next_cursor(T0, 0)


@pytest.mark.parametrize("model", [v2_requests.V2CountsQuery, v2_requests.V2StreamQuery])
def test_counts_and_stream_queries(model: Any) -> None:
    q = query(model)
    assert q.kind == [] and q.dataset_id is None and q.kinds.is_all and q.dataset is None
    q = query(model, ("kind", "a.*"), ("kind", "b"), ("dataset_id", DATASET), ("status", "x"),
              ("limit", "0"), ("cursor", "zz"))  # not parameters of these: ignored
    assert q.kinds == KindFilter(("b",), ("a.",)) and q.dataset == DATASET
    assert [e["loc"] for e in refused(model, ("kind", "*"))] == [["query", "kind", 0]]
    assert [e["loc"] for e in refused(model, ("dataset_id", "x"))] == [["query", "dataset_id"]]
    assert [e["type"] for e in refused(model, *[("kind", "a")] * 21)] == ["too_long"]


def test_parse_v2_query_needs_a_v2_model() -> None:
    with pytest.raises(TypeError):
        v2_requests.parse_v2_query(v2_schemas.V2Counts, Args())
    assert v2_requests.query_data(L, Args(("kind", "a"), ("limit", "3"), ("x", "y"))) == {
        "kind": ["a"], "limit": "3"}


P = v2_requests.V2PatchBody


@pytest.mark.parametrize("body, actions", [
    ({"seen": True}, (Action.SEEN,)),
    ({"read": True}, (Action.READ,)),
    ({"read": False}, (Action.UNREAD,)),
    ({"archived": True}, (Action.ARCHIVE,)),
    ({"archived": False}, (Action.UNARCHIVE,)),
    ({"seen": True, "read": True, "archived": False},
     (Action.SEEN, Action.READ, Action.UNARCHIVE)),
])
def test_patch_bodies(body: dict[str, Any], actions: tuple[Action, ...]) -> None:
    patch = parse(P, body, "body")
    assert patch.actions() == actions
    assert patch.update() == states.update_for(actions)


@pytest.mark.parametrize("body, loc, kind", [
    ({}, ["body"], "empty_patch"),
    ({"seen": False}, ["body", "seen"], "seen_irreversible"),
    ({"seen": None}, ["body", "seen"], "literal_error"),
    ({"seen": 1}, ["body", "seen"], "literal_error"),
    ({"seen": "true"}, ["body", "seen"], "literal_error"),
    ({"read": None}, ["body", "read"], "bool_type"),
    ({"read": 1}, ["body", "read"], "bool_type"),
    ({"read": "true"}, ["body", "read"], "bool_type"),
    ({"archived": None}, ["body", "archived"], "bool_type"),
    ({"archived": 0}, ["body", "archived"], "bool_type"),
    ({"read": True, "unread": True}, ["body", "unread"], "extra_forbidden"),
    ({"status": "read"}, ["body", "status"], "extra_forbidden"),
])
def test_patch_bodies_refused(body: dict[str, Any], loc: list[Any], kind: str) -> None:
    errors = body_errors(P, body)
    assert [(e["loc"], e["type"]) for e in errors] == [(loc, kind)]


@pytest.mark.parametrize("raw, kind", [
    (b"", "empty_patch"), (b"  ", "empty_patch"), (b"{}", "empty_patch"),
    (b"null", "model_attributes_type"), (b"[]", "model_attributes_type"),
    (b"{", "json_invalid"),
])
def test_empty_and_broken_patch_bodies_are_422(raw: bytes, kind: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_json_body(raw, P)
    assert [e["type"] for e in caught.value.errors] == [kind]


def test_a_patch_body_from_json() -> None:
    assert parse_json_body(b'{"read": true, "seen": true}', P).actions() == (
        Action.SEEN, Action.READ)


B = v2_requests.V2BulkBody


@pytest.mark.parametrize("action", list(Action))
def test_bulk_bodies_with_ids(action: Action) -> None:
    other = "ntf_" + "AB" * 16
    bulk = parse(B, {"action": action.value, "ids": [ID, other, ID.upper().replace("NTF", "ntf")]},
                 "body")
    assert bulk.action is action and bulk.filter is None
    assert bulk.stored_ids() == [UID, "abababab-abab-abab-abab-abababababab"]
    assert bulk.update() == states.ACTION_UPDATES[action]


def test_bulk_ids_bounds() -> None:
    assert parse(B, {"action": "read", "ids": []}, "body").stored_ids() == []
    assert len(parse(B, {"action": "read", "ids": [ID] * 1000}, "body").ids or ()) == 1000
    errors = body_errors(B, {"action": "read", "ids": [ID] * 1001})
    assert [(e["loc"], e["type"]) for e in errors] == [(["body", "ids"], "too_long")]


@pytest.mark.parametrize("bad", [
    UID, "ntf_", ID[:-1], ID + "0", "ntf_" + "g" * 32, "NTF_" + ID[4:], " " + ID, 5, None,
])
def test_malformed_bulk_ids_are_422(bad: Any) -> None:
    errors = body_errors(B, {"action": "read", "ids": [ID, bad]})
    assert [e["loc"] for e in errors] == [["body", "ids", 1]]


@pytest.mark.parametrize("body, loc, kind", [
    ({"action": "read"}, ["body"], "ids_or_filter"),
    ({"action": "read", "ids": None}, ["body"], "null_refused"),
    ({"action": "read", "ids": None, "filter": None}, ["body"], "null_refused"),
    ({"action": "read", "ids": [], "filter": {}}, ["body"], "ids_or_filter"),
    ({"action": "read", "ids": [ID], "filter": {"status": "all"}}, ["body"], "ids_or_filter"),
    ({"ids": [ID]}, ["body", "action"], "missing"),
    ({"action": "delete", "ids": [ID]}, ["body", "action"], "enum"),
    ({"action": "READ", "ids": [ID]}, ["body", "action"], "enum"),
    ({"action": "read", "ids": ID}, ["body", "ids"], "list_type"),
    ({"action": "read", "ids": [ID], "id": ID}, ["body", "id"], "extra_forbidden"),
    ({"action": "read", "filter": []}, ["body", "filter"], "model_type"),
    ({"action": "read", "filter": {"unread": True}}, ["body", "filter", "unread"],
     "extra_forbidden"),
    ({"action": "read", "filter": {"status": "new"}}, ["body", "filter", "status"],
     "literal_error"),
    ({"action": "read", "filter": {"archived": "yes"}}, ["body", "filter", "archived"],
     "literal_error"),
    ({"action": "read", "filter": {"archived": 1}}, ["body", "filter", "archived"],
     "literal_error"),
    ({"action": "read", "filter": {"kind": "review.*"}}, ["body", "filter", "kind"],
     "list_type"),
    ({"action": "read", "filter": {"kind": ["review."]}}, ["body", "filter", "kind", 0],
     "string_pattern_mismatch"),
    ({"action": "read", "filter": {"kind": ["k"] * 21}}, ["body", "filter", "kind"], "too_long"),
    ({"action": "read", "filter": {"dataset_id": "x"}}, ["body", "filter", "dataset_id"],
     "uuid_parsing"),
])
def test_bulk_bodies_refused(body: dict[str, Any], loc: list[Any], kind: str) -> None:
    errors = body_errors(B, body)
    assert [(e["loc"], e["type"]) for e in errors] == [(loc, kind)]


def test_bulk_filter_defaults_are_the_lists() -> None:
    bulk = parse(B, {"action": "archive", "filter": {}}, "body")
    f = bulk.filter
    assert f is not None and bulk.ids is None and bulk.stored_ids() == []
    assert (f.status, f.archived, f.kind, f.dataset_id, f.before) == ("all", "false", [], None,
                                                                      None)
    assert f.kinds.is_all and f.dataset is None and f.before_us is None


def test_bulk_filter_fields() -> None:
    bulk = parse(B, {"action": "unarchive", "filter": {
        "status": "unread", "archived": True, "kind": ["review.*", "comment"],
        "dataset_id": DATASET.upper(), "before": "2026-04-24T16:00:00+02:00"}}, "body")
    f = bulk.filter
    assert f is not None
    assert (f.status, f.archived, f.dataset) == ("unread", "true", DATASET)
    assert f.kinds == KindFilter(("comment",), ("review.",))
    assert f.before == datetime(2026, 4, 24, 14, tzinfo=UTC)
    assert f.before_us == 1_777_039_200 * US


@pytest.mark.parametrize("given, shown", [
    (True, "true"), (False, "false"), ("true", "true"), ("false", "false"), ("all", "all"),
])
def test_bulk_filter_archived(given: Any, shown: str) -> None:
    bulk = parse(B, {"action": "read", "filter": {"archived": given}}, "body")
    assert bulk.filter is not None and bulk.filter.archived == shown


@pytest.mark.parametrize("text, us", [
    ("2026-04-24T14:00:00Z", 1_777_039_200 * US),
    ("2026-04-24t14:00:00z", 1_777_039_200 * US),
    ("2026-04-24T14:00:00.5Z", 1_777_039_200 * US + 500_000),
    ("2026-04-24T14:00:00.123456789Z", 1_777_039_200 * US + 123_456),
    ("2026-04-24T14:00:00+00:00", 1_777_039_200 * US),
    ("2026-04-24T14:00:00-00:00", 1_777_039_200 * US),
    ("2026-04-24T09:30:00-04:30", 1_777_039_200 * US),
    ("2026-04-24T14:00:00.000000Z", 1_777_039_200 * US),  # what records show
])
def test_before_takes_rfc3339(text: str, us: int) -> None:
    bulk = parse(B, {"action": "read", "filter": {"before": text}}, "body")
    assert bulk.filter is not None and bulk.filter.before_us == us
    assert bulk.filter.before is not None and bulk.filter.before.tzinfo is UTC


@pytest.mark.parametrize("text, kind", [
    ("2026-04-24T14:00:00", "datetime_format"),  # no offset
    ("2026-04-24", "datetime_format"),
    ("2026-04-24 14:00:00Z", "datetime_format"),
    ("2026-04-24T14:00Z", "datetime_format"),
    ("2026-04-24T14:00:00.Z", "datetime_format"),
    ("2026-04-24T14:00:00.1234567890Z", "datetime_format"),
    ("2026-04-24T14:00:00+0200", "datetime_format"),
    ("1777039200", "datetime_format"),
    (1777039200, "datetime_format"),
    ("", "datetime_format"),
    ("yesterday", "datetime_format"),
    ("2026-13-01T00:00:00Z", "datetime_range"),
    ("2026-02-30T00:00:00Z", "datetime_range"),
    ("2026-04-24T24:00:00Z", "datetime_range"),
    ("2026-04-24T23:59:60Z", "datetime_range"),
    ("2026-04-24T14:00:00+25:00", "datetime_range"),
    ("0001-01-01T00:00:00+01:00", "datetime_range"),
    ("9999-12-31T23:59:59-01:00", "datetime_range"),
])
def test_before_refuses_other_times(text: Any, kind: str) -> None:
    errors = body_errors(B, {"action": "read", "filter": {"before": text}})
    assert [(e["loc"], e["type"]) for e in errors] == [(["body", "filter", "before"], kind)]


def test_null_filter_fields_are_refused_as_the_schema_says() -> None:
    errors = body_errors(B, {"action": "read", "filter": {"before": None, "dataset_id": None}})
    assert [(e["loc"], e["type"]) for e in errors] == [(["body", "filter"], "null_refused")]


def test_a_bulk_body_from_json() -> None:
    raw = json.dumps({"action": "seen", "ids": [ID]}).encode()
    assert parse_json_body(raw, B).stored_ids() == [UID]
    with pytest.raises(ValidationFailed):
        parse_json_body(b"", B)


def test_request_models_are_frozen() -> None:
    q = query(L)
    with pytest.raises(ValueError):
        q.limit = 5
    with pytest.raises(ValueError):
        parse(P, {"read": True}, "body").read = False


def test_request_schemas_describe_what_is_accepted() -> None:
    patch = P.model_json_schema()
    assert patch["minProperties"] == 1 and patch["additionalProperties"] is False
    assert patch["properties"]["seen"] == {
        "const": True, "type": "boolean", "title": "Seen",
        "description": "true marks the notification seen; seen cannot be undone."}
    assert all("default" not in p and "anyOf" not in p for p in patch["properties"].values())
    bulk = B.model_json_schema()
    assert bulk["oneOf"] == [{"required": ["ids"]}, {"required": ["filter"]}]
    assert bulk["required"] == ["action"]
    assert bulk["properties"]["ids"]["maxItems"] == 1000
    assert bulk["properties"]["ids"]["items"]["pattern"] == v2_requests.NTF_ID_PATTERN
    flt = bulk["$defs"]["V2BulkFilter"]
    assert flt["additionalProperties"] is False
    assert flt["properties"]["archived"]["anyOf"][0] == {"type": "boolean"}
    assert flt["properties"]["before"]["format"] == "date-time"
    listing = L.model_json_schema()["properties"]
    assert listing["limit"] == {"default": 25, "maximum": 100, "minimum": 1, "title": "Limit",
                                "type": "integer"}
    assert listing["kind"]["maxItems"] == 20 and listing["kind"]["items"]["maxLength"] == 100
    assert listing["cursor"]["maxLength"] == v2_requests.MAX_CURSOR_TEXT
    assert listing["archived"]["enum"] == ["false", "true", "all"]


def test_optional_body_keys_are_described_without_null() -> None:
    schema = {"properties": {
        "a": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        "b": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
        "c": {"type": "integer", "default": 3},
    }}
    v2_requests._described_keys(schema)
    assert schema == {"properties": {
        "a": {"type": "string"},
        "b": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        "c": {"type": "integer", "default": 3},
    }}


def test_a_null_cursor_is_no_cursor() -> None:
    assert L.model_validate({"cursor": None}).after is None


def test_null_bulk_keys_are_refused_as_the_schema_says() -> None:
    errors = body_errors(B, {"action": "read", "ids": None, "filter": {}})
    assert [(e["loc"], e["type"]) for e in errors] == [(["body"], "null_refused")]
    errors = body_errors(B, {"action": None, "ids": [ID]})
    assert [(e["loc"], e["type"]) for e in errors] == [(["body"], "null_refused")]
