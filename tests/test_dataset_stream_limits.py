"""One user's dataset streams cannot starve the others: a per-user cap and paged replay."""
from __future__ import annotations

import os
import socket
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from notifications import create_app, queries, stream
from notifications.queries import Scope

STREAM = "/api/v1/notifications/stream"


# --- the per-user cap -------------------------------------------------------------------


def test_dataset_streams_per_user_are_capped_with_a_429_in_detail_format(client: Any, auth: Any,
                                                                          app: Any) -> None:
    limit = app.config["DATASET_STREAM_LIMIT"]
    assert limit == 10
    with app.app_context():
        # Organization streams have slots of their own: they do not count here.
        for _ in range(5):
            assert queries.acquire_lease("alice", "elsewhere", 5, 30_000_000).lease_id
        for _ in range(limit):
            assert queries.acquire_lease("alice", "elsewhere", limit, 30_000_000, "dataset").lease_id
    response = client.get(STREAM, headers=auth.headers("alice"))
    assert response.status_code == 429
    assert response.json == {"detail": "Too many open notification streams for this user."}
    assert int(response.headers["Retry-After"]) >= 1
    # Another user is not affected.
    other = client.get(STREAM, headers=auth.headers("bob"), buffered=False)
    assert other.status_code == 200
    other.close()


def test_the_dataset_cap_is_a_setting(app_config: dict[str, Any], auth: Any,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFICATIONS_DATASET_STREAM_LIMIT", "2")
    app = create_app(app_config)
    assert app.config["DATASET_STREAM_LIMIT"] == 2
    with pytest.raises(Exception, match="NOTIFICATIONS_DATASET_STREAM_LIMIT"):
        create_app({**app_config, "DATASET_STREAM_LIMIT": "0"})


def test_the_cap_holds_across_workers(live_server: Any) -> None:
    server = live_server(workers=2, env={"NOTIFICATIONS_DATASET_STREAM_LIMIT": "3"})
    opened = []
    try:
        for _ in range(3):
            response = requests.get(server.url(STREAM), headers=server.headers("alice"),
                                    stream=True, timeout=5)
            assert response.status_code == 200
            opened.append(response)
        # Over new connections, whichever worker takes them.
        for _ in range(4):
            refused = requests.get(server.url(STREAM), headers=server.headers("alice"), timeout=5)
            assert refused.status_code == 429 and set(refused.json()) == {"detail"}
            assert int(refused.headers["Retry-After"]) >= 1
        organization = requests.get(server.url("/api/v1/org/notifications/stream"),
                                    headers=server.headers("alice", "acme"), stream=True, timeout=5)
        assert organization.status_code == 200
        organization.close()
        opened.pop().close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            again = requests.get(server.url(STREAM), headers=server.headers("alice"),
                                 stream=True, timeout=5)
            if again.status_code == 200:
                opened.append(again)
                break
            again.close()
            time.sleep(0.2)
        else:
            raise AssertionError("a closed stream's slot was not given back")
    finally:
        for response in opened:
            response.close()


# --- paged replay -----------------------------------------------------------------------


def drain(events: Any, until: str) -> list[str]:
    frames = []
    for frame in events:
        frames.append(frame)
        if until in frame:
            break
    return frames


def test_replay_is_read_and_sent_in_pages(app: Any, make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = stream.hub_of(app)
    hub.start()
    rows = make("alice", 250)
    make("bob", 5)
    calls: list[tuple[int, int]] = []
    replay = queries.replay

    def counted(scope: Scope, dataset_id: Any, after: int, upto: int, limit: int) -> Any:
        calls.append((after, limit))
        return replay(scope, dataset_id, after, upto, limit)

    monkeypatch.setattr(queries, "replay", counted)
    with app.app_context():
        hub.tick()
    events = stream.dataset_events(hub, Scope("alice"), None, 0, ping_interval=60,
                                   retry_ms=3000, replay_limit=1000)
    assert next(events) == "retry: 3000\n\n"
    first = next(events)
    # One page per frame, read only when the previous one has been taken.
    assert first.count("event: notification") == stream.REPLAY_PAGE == 100
    assert calls == [(0, 100)]
    second = next(events)
    assert second.count("event: notification") == 100 and len(calls) == 2
    third = next(events)
    assert third.count("event: notification") == 50
    ids = [line[4:] for frame in (first, second, third) for line in frame.splitlines()
           if line.startswith("id: ")]
    assert ids == [str(r["seq"]) for r in rows]
    events.close()
    hub.shutdown()


@pytest.mark.parametrize("missed, reset", [(1000, False), (1001, True)])
def test_a_gap_over_the_limit_is_a_reset_without_reading_it(app: Any, make: Any, missed: int,
                                                             reset: bool) -> None:
    hub = stream.hub_of(app)
    hub.start()
    make("alice", missed)
    with app.app_context():
        hub.tick()
    events = stream.dataset_events(hub, Scope("alice"), None, 0, ping_interval=60,
                                   retry_ms=3000, replay_limit=1000)
    next(events)
    frames = [next(events)]
    if reset:
        assert "event: reset" in frames[0] and "event: notification" not in frames[0]
    else:
        while sum(f.count("event: notification") for f in frames) < missed:
            frames.append(next(events))
        assert len(frames) == 10 and not any("event: reset" in f for f in frames)
    events.close()
    hub.shutdown()
