"""The pure parts of the inbox API version 2: kinds, cursors, states, requests and records."""
from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from notifications.core import cursors, kinds, serialize, states, v2_schemas
from notifications.core.cursors import InvalidCursor, decode_cursor, encode_cursor
from notifications.core.errors import ValidationFailed
from notifications.core.kinds import KindError, KindFilter, parse_kinds
from notifications.core.states import Action, Op, State

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


@pytest.mark.parametrize("seq", [1, 2, 42, 2**32, cursors.MAX_SEQ])
def test_cursors_round_trip(seq: int) -> None:
    text = encode_cursor(seq, FP)
    assert len(text) == cursors.CURSOR_LENGTH
    assert text.isascii() and all(c.isalnum() or c in "-_" for c in text)  # url-safe
    assert decode_cursor(text, FP) == seq


def test_cursors_are_deterministic_and_differ_by_position_and_filter() -> None:
    assert encode_cursor(7, FP) == encode_cursor(7, FP)
    other = cursors.filter_fingerprint("unread", "false", [], None)
    assert len({encode_cursor(7, FP), encode_cursor(8, FP), encode_cursor(7, other)}) == 3


@pytest.mark.parametrize("seq", [0, -1, cursors.MAX_SEQ + 1, True, 1.0, "1", None])
def test_encode_refuses_positions_out_of_range(seq: Any) -> None:
    with pytest.raises(ValueError):
        encode_cursor(seq, FP)


@pytest.mark.parametrize("fingerprint", [b"", b"12345", b"1234567", "123456", None])
def test_encode_refuses_bad_fingerprints(fingerprint: Any) -> None:
    with pytest.raises(ValueError):
        encode_cursor(1, fingerprint)


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
    text = encode_cursor(5, FP)
    with pytest.raises(InvalidCursor) as caught:
        decode_cursor(text, cursors.filter_fingerprint("unread", "false", [], None))
    assert caught.value.reason == "other_filter"


def _raw(text: str) -> bytearray:
    return bytearray(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def _text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


@pytest.mark.parametrize("index", range(21))
def test_any_changed_byte_is_noticed(index: int) -> None:
    raw = _raw(encode_cursor(123456, FP))
    raw[index] ^= 0x01
    with pytest.raises(InvalidCursor) as caught:
        decode_cursor(_text(raw), FP)
    # the version byte makes it unknown; any other byte breaks the check
    assert caught.value.reason == ("malformed" if index == 0 else "damaged")


def test_an_edited_character_is_noticed() -> None:
    text = encode_cursor(99, FP)
    for i in range(len(text)):
        edited = text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1:]
        with pytest.raises(InvalidCursor):
            decode_cursor(edited, FP)


def test_a_position_out_of_range_is_refused_even_with_a_good_check() -> None:
    """Only a forger computes the check; the position is still checked."""
    for seq in (0, 2**64 - 1):
        head = bytes([cursors.CURSOR_VERSION]) + seq.to_bytes(8, "big") + FP
        with pytest.raises(InvalidCursor) as caught:
            decode_cursor(_text(head + cursors._check(head)), FP)
        assert caught.value.reason == "damaged"


@pytest.mark.parametrize("text", [
    "", "x", "A" * 27, "A" * 29, "A" * 1000, "=" * 28, "A" * 27 + "=", "A" * 27 + "+",
    "A" * 27 + "/", "A" * 27 + " ", "AQAAAAAAAAAqym35QangTDVMXQG\u00e9", None, 12, b"A" * 28,
])
def test_garbage_is_malformed(text: Any) -> None:
    with pytest.raises(InvalidCursor) as caught:
        decode_cursor(text, FP)
    assert caught.value.reason == "malformed"


def test_an_unknown_version_is_malformed() -> None:
    raw = _raw(encode_cursor(1, FP))
    raw[0] = 2
    head = bytes(raw[:15])
    with pytest.raises(InvalidCursor) as caught:
        decode_cursor(_text(head + cursors._check(head)), FP)
    assert caught.value.reason == "malformed"


def test_random_28_characters_are_refused() -> None:
    import secrets

    for _ in range(200):
        text = _text(secrets.token_bytes(21))
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
RECORD = {
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
