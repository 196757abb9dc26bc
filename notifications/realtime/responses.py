"""A stream as an HTTP response: the SSE headers, and the worker's room for streams."""
from __future__ import annotations

from collections.abc import Callable, Iterator

from flask import Response

from notifications.core.errors import Unavailable
from notifications.realtime.hub import StreamHub

#: Seconds a client refused for want of room is asked to wait.
NO_ROOM_RETRY_AFTER = 5

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    # Tell nginx-style proxies not to buffer, or events would arrive in bursts.
    "X-Accel-Buffering": "no",
}


def event_stream(events: Iterator[str]) -> Response:
    """Wrap an event generator in a streaming response with the SSE headers."""
    return Response(events, status=200, headers=SSE_HEADERS,
                    content_type="text/event-stream; charset=utf-8")


def open_stream(hub: StreamHub, open_response: Callable[[], Response]) -> Response:
    """Open a stream if this worker has room for another; the room frees when it closes.

    Counted when admitted, not when the stream's generator first runs, so that a burst of
    stream requests cannot all pass the check together.
    """
    if hub.stream_capacity is not None and hub.admitted >= hub.stream_capacity:
        raise Unavailable(
            "This server has no room for another stream right now",
            hint="Retry after the number of seconds in Retry-After.",
            headers={"Retry-After": str(NO_ROOM_RETRY_AFTER)},
        )
    hub.admitted += 1
    try:
        response = open_response()
    except BaseException:
        hub.admitted -= 1
        raise

    def leave() -> None:
        hub.admitted -= 1

    response.call_on_close(leave)
    return response
