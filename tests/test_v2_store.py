"""The inbox API version 2, store side: lists, cursors, counts, get, PATCH and bulk changes."""
from __future__ import annotations

import itertools
from typing import Any

import pytest
from conftest import DATASET, OTHER_DATASET, raw_connect

from notifications.core.cursors import Position
from notifications.core.kinds import KindFilter, parse_kinds
from notifications.core.serialize import v2_record, v2_records
from notifications.core.states import ACTION_UPDATES, Action, State, update_for
from notifications.core.v2_requests import V2BulkFilter, V2ListQuery, parse_v2_query
from notifications.store import inbox, marks
from notifications.store.inbox import Counts, InboxFilter
from notifications.store.scope import Scope

pytestmark = pytest.mark.both_databases

T = 1_776_000_000_000_000
ALICE = Scope("alice")
ACME = Scope.dataset_api("alice", "acme")


def ids(page: inbox.Page) -> list[str]:
    return [r[0] for r in page.rows]


def set_state(app: Any, notification_id: str, **times: int | None) -> None:
    """Write state times directly (as another writer would)."""
    columns = ", ".join(f"{name} = ?" for name in times)
    with raw_connect(app) as conn:
        conn.execute(f"UPDATE notifications SET {columns} WHERE id = ?",
                     (*times.values(), notification_id))


def every_page(app: Any, scope: Scope, flt: InboxFilter, limit: int) -> list[str]:
    seen: list[str] = []
    after = None
    with app.app_context():
        while True:
            page = inbox.list_page(scope, flt, limit=limit, after=after)
            seen += ids(page)
            if page.next is None:
                return seen
            after = page.next


@pytest.fixture
def mixed(app: Any, make: Any) -> dict[str, str]:
    """Alice's notifications in several organizations, kinds, datasets and states."""
    made = {}
    specs = [
        ("acme_review", {"organization_id": "acme", "kind": "review.created"}),
        ("acme_approved", {"organization_id": "acme", "kind": "review.approved"}),
        ("none_alert", {"kind": "monitor.alert", "dataset_id": DATASET}),
        ("none_alert2", {"kind": "monitor.alert", "dataset_id": OTHER_DATASET}),
        ("globex_review", {"organization_id": "globex", "kind": "review.created"}),
        ("acme_Review", {"organization_id": "acme", "kind": "Review.created"}),
        ("acme_reviews", {"organization_id": "acme", "kind": "reviews.created"}),
        ("acme_review_bare", {"organization_id": "acme", "kind": "review"}),
    ]
    for n, (name, fields) in enumerate(specs):
        made[name] = make("alice", created_at=T + n, title=name, **fields)[0]["id"]
    make("bob", organization_id="acme", created_at=T, title="bob")
    return made


# --- lists ----------------------------------------------------------------------------------


def test_a_list_is_newest_first_in_scope(app: Any, mixed: dict[str, str]) -> None:
    with app.app_context():
        page = inbox.list_page(ACME, InboxFilter(), limit=25)
        everything = inbox.list_page(ALICE, InboxFilter(), limit=25)
    names = {v: k for k, v in mixed.items()}
    # The token's organization and no organization; never globex, never bob.
    assert [names[i] for i in ids(page)] == [
        "acme_review_bare", "acme_reviews", "acme_Review", "none_alert2", "none_alert",
        "acme_approved", "acme_review"]
    assert len(ids(everything)) == 8 and page.next is None
    assert page.counts == Counts(total=7, unread=7, unseen=7)
    record = v2_records(page.rows)[0]
    assert record == v2_record(dict(zip(inbox.FIELDS, page.rows[0], strict=False)))
    assert record["title"] == "acme_review_bare" and record["collapsed_count"] == 0
    assert record["seen_at"] is None and record["archived_at"] is None


def test_equal_times_keep_the_order_of_seq(app: Any, make: Any) -> None:
    rows = make("alice", 5, created_at=T) + make("alice", 2, created_at=T - 1)
    expected = [r["id"] for r in reversed(rows[:5])] + [r["id"] for r in reversed(rows[5:])]
    for limit in (1, 2, 3, 7, 100):
        assert every_page(app, ALICE, InboxFilter(), limit) == expected


@pytest.mark.parametrize(("values", "expected"), [
    (["review.*"], {"acme_review", "acme_approved"}),
    (["review"], {"acme_review_bare"}),
    (["review", "review.*"], {"acme_review", "acme_approved", "acme_review_bare"}),
    (["review.created"], {"acme_review"}),
    (["Review.*"], {"acme_Review"}),  # case-sensitive
    (["monitor.alert", "reviews.*"], {"none_alert", "none_alert2", "acme_reviews"}),
    (["nothing.*"], set()),
])
def test_the_kind_filter(app: Any, mixed: dict[str, str], values: list[str],
                         expected: set[str]) -> None:
    flt = InboxFilter(kinds=parse_kinds(values))
    with app.app_context():
        page = inbox.list_page(ACME, flt, limit=25)
        counted = inbox.counts(ACME, flt.kinds)
    names = {v: k for k, v in mixed.items()}
    assert {names[i] for i in ids(page)} == expected
    assert page.counts.total == counted.total == len(expected)
    assert counted.unread == counted.unseen == len(expected)
    assert all(flt.kinds.matches(r[4]) for r in page.rows)


def test_status_archived_and_dataset_filters(app: Any, mixed: dict[str, str]) -> None:
    with app.app_context():
        inbox.patch(ACME, mixed["acme_review"], update_for([Action.READ]), now=T)
        inbox.patch(ACME, mixed["acme_approved"], update_for([Action.ARCHIVE]), now=T)
        inbox.patch(ACME, mixed["none_alert"], update_for([Action.READ, Action.ARCHIVE]), now=T)
        inbox.patch(ACME, mixed["none_alert2"], update_for([Action.SEEN]), now=T)

        def names(**kw: Any) -> set[str]:
            page = inbox.list_page(ACME, InboxFilter(**kw), limit=25)
            reverse = {v: k for k, v in mixed.items()}
            return {reverse[i] for i in ids(page)}

        assert names() == {"acme_review", "none_alert2", "acme_Review", "acme_reviews",
                           "acme_review_bare"}
        assert names(archived="true") == {"acme_approved", "none_alert"}
        assert len(names(archived="all")) == 7
        assert names(status="read") == {"acme_review"}
        assert names(status="read", archived="all") == {"acme_review", "none_alert"}
        assert names(status="unread", archived="true") == {"acme_approved"}
        assert names(dataset_id=DATASET) == set()
        assert names(dataset_id=DATASET, archived="all") == {"none_alert"}
        # Counts: total is what the filter matches; unread and unseen are unarchived rows
        # in scope (with the filter's kind and dataset), whatever its status and archived.
        page = inbox.list_page(ACME, InboxFilter(status="read", archived="all"), limit=25)
        assert page.counts == Counts(total=2, unread=4, unseen=3)
        assert inbox.counts(ACME) == Counts(total=5, unread=4, unseen=3)
        assert inbox.counts(ACME, dataset_id=OTHER_DATASET) == Counts(1, 1, 0)
        assert inbox.list_page(ACME, InboxFilter(dataset_id=OTHER_DATASET), limit=5).counts == \
            Counts(1, 1, 0)


def test_an_empty_page_still_counts(app: Any, mixed: dict[str, str]) -> None:
    with app.app_context():
        nothing = inbox.list_page(ACME, InboxFilter(status="read"), limit=25)
        assert nothing.rows == [] and nothing.next is None
        assert nothing.counts == Counts(total=0, unread=7, unseen=7)
        past = inbox.list_page(ACME, InboxFilter(), limit=5, after=Position(0, 1))
        assert past.rows == [] and past.counts == Counts(7, 7, 7)
        stranger = inbox.list_page(Scope("nobody"), InboxFilter(), limit=5)
        assert stranger.counts == Counts(0, 0, 0)


def test_a_list_refuses_a_before_filter(app: Any) -> None:
    with app.app_context(), pytest.raises(ValueError):
        inbox.list_page(ALICE, InboxFilter(before_us=1), limit=5)


def test_cursors_stay_put_while_rows_arrive_and_change(app: Any, make: Any) -> None:
    rows = make("alice", 10, created_at=T)  # one time for all: the order comes from seq
    newest_first = [r["id"] for r in reversed(rows)]
    with app.app_context():
        first = inbox.list_page(ALICE, InboxFilter(), limit=4)
        assert ids(first) == newest_first[:4] and first.next is not None
        # Meanwhile: new rows (older and newer), a row on the next page archived, a row on
        # the first page read, and one on the next page read.
        make("alice", 2, created_at=T + 5)
        make("alice", 1, created_at=T)  # same time, higher seq: sorts before every row
        inbox.patch(ALICE, newest_first[5], update_for([Action.ARCHIVE]))
        inbox.patch(ALICE, newest_first[0], update_for([Action.READ]))
        inbox.patch(ALICE, newest_first[4], update_for([Action.READ]))
        second = inbox.list_page(ALICE, InboxFilter(), limit=4, after=first.next)
        # Strictly after the first page's last row: nothing repeats, nothing is skipped but
        # the row that left the list (archived).
        assert ids(second) == [newest_first[4], newest_first[6], newest_first[7],
                               newest_first[8]]
        assert second.counts.total == 12  # 13 rows, one archived
        third = inbox.list_page(ALICE, InboxFilter(), limit=4, after=second.next)
        assert ids(third) == [newest_first[9]] and third.next is None
        # An unread list pages the same way while rows are read under it.
        unread = InboxFilter(status="unread")
        page = inbox.list_page(ALICE, unread, limit=3)
        inbox.bulk_ids(ALICE, ids(page), ACTION_UPDATES[Action.READ])
        rest = inbox.list_page(ALICE, unread, limit=100, after=page.next)
        assert not set(ids(rest)) & set(ids(page))
        assert len(ids(page)) + len(ids(rest)) == 10


def test_a_list_query_pages_through_the_store(app: Any, make: Any) -> None:
    """The request model's cursor carries the store's position, filter-bound."""
    from werkzeug.datastructures import MultiDict

    make("alice", 5, created_at=T, kind="review.created")
    make("alice", 3, created_at=T, kind="other")
    args = MultiDict([("kind", "review.*"), ("limit", "2")])
    seen: list[str] = []
    with app.app_context():
        while True:
            query = parse_v2_query(V2ListQuery, args)
            page = inbox.list_page(ACME, InboxFilter.of(query), limit=query.limit,
                                   after=query.after)
            seen += ids(page)
            if page.next is None:
                break
            args = args.copy()
            args["cursor"] = query.next_cursor(*page.next)
    assert len(seen) == len(set(seen)) == 5


# --- counts, get ----------------------------------------------------------------------------


def test_counts_leave_archived_rows_out(app: Any, make: Any) -> None:
    rows = make("alice", 4, organization_id="acme")
    with app.app_context():
        assert inbox.counts(ACME) == Counts(4, 4, 4)
        inbox.patch(ACME, rows[0]["id"], update_for([Action.SEEN]))
        inbox.patch(ACME, rows[1]["id"], update_for([Action.READ]))
        inbox.patch(ACME, rows[2]["id"], update_for([Action.ARCHIVE]))
        assert inbox.counts(ACME) == Counts(total=3, unread=2, unseen=1)
        assert inbox.counts(Scope.dataset_api("alice", "globex")) == Counts(0, 0, 0)


def test_get_one_of_the_callers_notifications(app: Any, mixed: dict[str, str]) -> None:
    with app.app_context():
        found = inbox.get(ACME, mixed["acme_review"])
        assert found is not None and found["title"] == "acme_review"
        assert set(found) == set(inbox.FIELDS)
        assert v2_record(found)["id"] == "ntf_" + mixed["acme_review"].replace("-", "")
        assert inbox.get(ACME, mixed["none_alert"]) is not None
        assert inbox.get(ACME, mixed["globex_review"]) is None  # foreign org: as missing
        assert inbox.get(Scope("bob"), mixed["acme_review"]) is None
        assert inbox.get(ALICE, "no-such-id") is None


# --- PATCH ----------------------------------------------------------------------------------


def test_patch_is_idempotent_and_returns_the_row_after(app: Any, make: Any) -> None:
    nid = make("alice", organization_id="acme")[0]["id"]
    read = update_for([Action.READ])
    with app.app_context():
        done = inbox.patch(ACME, nid, read, now=100)
        assert done.changed and done.row is not None
        assert (done.row["seen_at"], done.row["read_at"], done.row["archived_at"]) == (100, 100,
                                                                                       None)
        again = inbox.patch(ACME, nid, read, now=200)
        assert not again.changed and again.row == done.row  # the first time is kept
        unread = inbox.patch(ACME, nid, update_for([Action.UNREAD]), now=300)
        assert unread.changed and unread.row is not None
        assert (unread.row["seen_at"], unread.row["read_at"]) == (100, None)  # stays seen
        both = inbox.patch(ACME, nid, update_for([Action.READ, Action.ARCHIVE]), now=400)
        assert both.row is not None and both.changed
        assert (both.row["seen_at"], both.row["read_at"], both.row["archived_at"]) == (100, 400,
                                                                                       400)
        back = inbox.patch(ACME, nid, update_for([Action.UNARCHIVE]), now=500)
        assert back.row is not None and back.row["archived_at"] is None
        assert inbox.patch(ACME, nid, update_for([Action.UNARCHIVE]), now=600).changed is False


def test_patch_of_a_foreign_or_missing_notification_changes_nothing(app: Any,
                                                                    mixed: dict[str, str]) -> None:
    with app.app_context():
        for scope, nid in ((ACME, mixed["globex_review"]), (Scope("bob"), mixed["acme_review"]),
                           (ACME, "missing")):
            assert inbox.patch(scope, nid, update_for([Action.READ])) == inbox.Patched(None,
                                                                                      False)
        assert inbox.counts(ALICE) == Counts(8, 8, 8)


def test_patch_matches_the_state_model(app: Any, make: Any) -> None:
    """Every PATCH from every state does what ``RowUpdate.apply`` says, in SQL too."""
    states = [State(None, None, None), State(1, None, None), State(1, 1, None),
              State(1, None, 1), State(1, 1, 1), State(None, None, 1)]
    bodies = [dict(zip(("seen", "read", "archived"), values, strict=True)) for values in
              itertools.product((None, True), (None, True, False), (None, True, False))]
    bodies = [{k: v for k, v in body.items() if v is not None} for body in bodies]
    bodies = [body for body in bodies if body]
    rows = make("alice", len(states) * len(bodies))
    cases = zip(itertools.product(states, bodies), rows, strict=True)
    with app.app_context():
        for (state, body), stored in cases:
            set_state(app, stored["id"], seen_at=state.seen_at, read_at=state.read_at,
                      archived_at=state.archived_at)
            from notifications.core.states import patch_actions

            update = update_for(patch_actions(**body))
            expected = update.apply(state, 50)
            done = inbox.patch(ALICE, stored["id"], update, now=50)
            assert done.row is not None
            assert State.of(done.row) == expected.after, (state, body)
            assert done.changed == expected.changed, (state, body)


# --- bulk -----------------------------------------------------------------------------------


def test_bulk_by_ids_counts_the_rows_that_changed(app: Any, mixed: dict[str, str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    mine = [mixed["acme_review"], mixed["acme_approved"], mixed["none_alert"]]
    foreign = [mixed["globex_review"], "missing"]
    with app.app_context():
        inbox.patch(ACME, mine[0], update_for([Action.READ]))
        read = ACTION_UPDATES[Action.READ]
        assert inbox.bulk_ids(ACME, [*mine, *foreign, mine[1]], read) == 2
        assert inbox.bulk_ids(ACME, mine, read) == 0
        assert inbox.bulk_ids(ACME, [], read) == 0
        assert inbox.bulk_ids(ACME, mine, ACTION_UPDATES[Action.UNREAD]) == 3
        # More ids than one statement takes: several statements, one count.
        monkeypatch.setattr(inbox, "IDS_PER_STATEMENT", 2)
        assert inbox.bulk_ids(ACME, [*mine, *foreign], ACTION_UPDATES[Action.ARCHIVE]) == 3
        assert inbox.get(ALICE, mixed["globex_review"])["archived_at"] is None  # type: ignore[index]


FILTERS = [
    InboxFilter(),
    InboxFilter(status="unread"),
    InboxFilter(status="read"),
    InboxFilter(archived="true"),
    InboxFilter(archived="all"),
    InboxFilter(status="read", archived="all"),
    InboxFilter(kinds=parse_kinds(["review.*"])),
    InboxFilter(kinds=parse_kinds(["monitor.alert", "reviews.*"]), archived="all"),
    InboxFilter(dataset_id=DATASET, archived="all"),
]


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("flt", FILTERS, ids=range(len(FILTERS)))
def test_bulk_by_filter_changes_what_the_list_shows(app: Any, make: Any, action: Action,
                                                    flt: InboxFilter) -> None:
    """A bulk change by filter counts exactly the rows of the list with that filter whose
    state the action changes, changes them as the state model says, and nothing else."""
    states = [State(None, None, None), State(1, None, None), State(1, 1, None),
              State(1, None, 1), State(1, 1, 1), State(None, None, 1)]
    kinds = ["review.created", "monitor.alert", "reviews.x"]
    for n, (state, kind) in enumerate(itertools.product(states, kinds)):
        nid = make("alice", organization_id="acme" if n % 2 else None, kind=kind,
                   dataset_id=DATASET if n % 3 == 0 else None, created_at=T + n)[0]["id"]
        set_state(app, nid, seen_at=state.seen_at, read_at=state.read_at,
                  archived_at=state.archived_at)
    make("alice", organization_id="globex", kind="review.created")
    make("bob", organization_id="acme", kind="review.created")
    update = ACTION_UPDATES[action]
    with app.app_context():
        listed = inbox.list_page(ACME, flt, limit=100)
        before = {r[0]: State(r[12], r[13], r[14]) for r in listed.rows}
        n = len(inbox.FIELDS)  # each row carries the page's counts after its fields
        everyone = {r[0]: r[:n] for r in inbox.list_page(ALICE, InboxFilter(archived="all"),
                                                         limit=100).rows}
        expected = {nid: update.apply(state, 77) for nid, state in before.items()}
        changed = inbox.bulk_filter(ACME, flt, update, now=77, chunk=4)
        assert changed == sum(t.changed for t in expected.values())
        assert listed.counts.total == len(before)
        after = {r[0]: r[:n] for r in inbox.list_page(ALICE, InboxFilter(archived="all"),
                                                      limit=100).rows}
        for nid, stored in after.items():
            state = State(stored[12], stored[13], stored[14])
            if nid in expected:
                assert state == expected[nid].after
            else:
                assert stored == everyone[nid]  # outside the filter: untouched
        assert inbox.bulk_filter(ACME, flt, update, now=88) == 0  # again: nothing changes


def test_bulk_by_filter_before_a_time(app: Any, make: Any) -> None:
    rows = [make("alice", created_at=T + n)[0]["id"] for n in range(5)]
    with app.app_context():
        flt = InboxFilter.of(V2BulkFilter.model_validate({"before": "2026-04-12T13:20:00.000003Z"}))
        assert flt.before_us == T + 3
        assert inbox.bulk_filter(ALICE, flt, ACTION_UPDATES[Action.READ]) == 3
        assert [r[0] for r in inbox.list_page(ALICE, InboxFilter(status="unread"),
                                              limit=10).rows] == [rows[4], rows[3]]


def test_bulk_by_filter_leaves_rows_created_meanwhile(app: Any, make: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    make("alice", 5)
    real_write = inbox.write
    calls: list[int] = []

    def write_then_insert(fn: Any, *args: Any) -> Any:
        result = real_write(fn, *args)
        if not calls:
            make("alice", 3)  # arrives after the first chunk
        calls.append(result)
        return result

    monkeypatch.setattr(inbox, "write", write_then_insert)
    with app.app_context():
        assert inbox.bulk_filter(ALICE, InboxFilter(), ACTION_UPDATES[Action.READ], chunk=2) == 5
        assert calls == [2, 2, 1]
        assert inbox.counts(ALICE) == Counts(total=8, unread=3, unseen=3)


# --- the seed variants' marks -----------------------------------------------------------------


def test_the_seed_variants_marks_set_seen_at(app: Any, make: Any) -> None:
    rows = make("alice", 3, organization_id="acme")
    with app.app_context():
        inbox.patch(ACME, rows[1]["id"], update_for([Action.SEEN]), now=5)
        assert marks.mark_all_read(Scope.organization_api("alice", "acme")) == 3
        found = {r[0]: r for r in inbox.list_page(ACME, InboxFilter(), limit=10).rows}
    for stored in rows:
        seen_at, read_at = found[stored["id"]][12], found[stored["id"]][13]
        assert read_at is not None
        # Seen when read, unless it was seen before.
        assert seen_at == (5 if stored["id"] == rows[1]["id"] else read_at)


def test_the_filter_of_request_models() -> None:
    from werkzeug.datastructures import MultiDict

    query = parse_v2_query(V2ListQuery, MultiDict([("status", "unread"), ("kind", "a.*"),
                                                   ("dataset_id", DATASET.upper())]))
    assert InboxFilter.of(query) == InboxFilter(status="unread", archived="false",
                                                kinds=KindFilter((), ("a.",)), dataset_id=DATASET)
    body = V2BulkFilter.model_validate({"archived": True, "status": "read"})
    assert InboxFilter.of(body) == InboxFilter(status="read", archived="true")
