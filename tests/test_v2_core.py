"""The pure parts of the inbox API version 2: kinds, cursors, states, requests and records."""
from __future__ import annotations

import pytest

from notifications.core import kinds
from notifications.core.kinds import KindError, KindFilter, parse_kinds

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
