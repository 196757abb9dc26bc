"""The webhook sender: one per database, in greenlets of whichever worker holds its lease.

Every worker of ``notifications serve`` runs :meth:`Sender.run` in a greenlet; the one that
holds the lease in the database (``webhook_sender_lease``) sends, the others only try to
take it every :data:`LEASE_RENEW` seconds. Held, the lease is renewed as often; a worker
that dies stops renewing, and another takes over once the lease lapses (the server's
master deletes a dead worker's lease at once, so on one node that is immediate).

While it holds the lease the sender

1. turns the change log's entries after each endpoint's position into deliveries, their
   bodies frozen (:func:`notifications.store.webhooks.add_deliveries`: one writer
   transaction stores them and moves the position, only if nobody moved it first);
2. sends each endpoint's deliveries in order, one greenlet per endpoint: the oldest
   pending one, and the next only once it is delivered or failed. A delivery is marked
   delivered after its receiver answered 2xx, so one in flight when the sender died is
   sent again by the next: at least once.

An attempt starts only while the lease has more than :data:`ATTEMPT_TIMEOUT` plus
:data:`LEASE_MARGIN` seconds to run, and it is cut off after :data:`ATTEMPT_TIMEOUT`
(the whole exchange: connecting, sending, the answer), so it ends before anyone else can
hold the lease: two senders never send at once. The lease is counted from before each
renewal, so this process never believes it holds it longer than the database says (the
nodes' clocks must agree to within :data:`LEASE_MARGIN`).

Sockets are gevent's (the worker is monkey-patched): a receiver that hangs holds its own
endpoint's greenlet and nothing else. Database writes go through the process's writer,
reads are single short statements on pooled connections.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import gevent
import requests
from flask import Flask
from gevent.event import Event

from notifications.core import logs
from notifications.core import webhooks as hooks
from notifications.core.serialize import iso_utc
from notifications.realtime.events import change_event
from notifications.realtime.leases import owner_name
from notifications.store import CommitSignal, changelog, current_store
from notifications.store import webhooks as rows
from notifications.store.rows import now_us

log = logging.getLogger("notifications.webhooks")

#: Seconds one attempt may take, all of it: a receiver that trickles its answer is cut off.
ATTEMPT_TIMEOUT = 10.0
#: How long the sender's lease lives without renewal, and how often it is renewed.
LEASE_TTL = 30.0
LEASE_RENEW = 5.0
#: Seconds of lease left over when an attempt ends at the latest (clock skew, scheduling).
LEASE_MARGIN = 5.0
#: Change-log entries turned into deliveries per writer job.
CONVERT_PAGE = 200
#: Bytes of an answer read (and then dropped): its status is what counts.
ANSWER_LIMIT = 64 * 1024
#: Longest wait of an endpoint's greenlet before it looks again without being woken.
IDLE = 5.0


class Outcome:
    """What one attempt came to: 2xx or not, the status, or why there was none."""

    __slots__ = ("ok", "status", "error")

    def __init__(self, ok: bool, status: int | None, error: str | None) -> None:
        self.ok, self.status, self.error = ok, status, error


def attempt(session: requests.Session, url: str, key: bytes, message_id: str,
            body: bytes, timeout: float = ATTEMPT_TIMEOUT) -> Outcome:
    """POST one delivery, signed, without following redirects, in at most ``timeout``.

    The outcome never names the URL: it may carry credentials, and it goes to the log.
    """
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": "notifications-webhooks/1",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": hooks.sign(key, message_id, timestamp, body),
    }
    # gevent's timeout bounds the whole exchange; requests' own bounds each socket wait
    # only, and a receiver that sends a byte now and then would never reach it. It is a
    # BaseException: no library in between can take it for an error of its own.
    cutoff = gevent.Timeout(timeout)
    cutoff.start()
    try:
        response = session.post(url, data=body, headers=headers, allow_redirects=False,
                                timeout=(timeout, timeout), stream=True)
        try:
            response.raw.read(ANSWER_LIMIT)
        finally:
            response.close()
    except gevent.Timeout as exc:
        if exc is not cutoff:
            raise
        return Outcome(False, None, f"no complete answer within {timeout:g}s")
    except requests.exceptions.SSLError:
        return Outcome(False, None, "TLS error")
    except requests.exceptions.ConnectTimeout:
        return Outcome(False, None, "connection timed out")
    except requests.exceptions.ConnectionError:
        return Outcome(False, None, "connection failed")
    except requests.exceptions.Timeout:
        return Outcome(False, None, f"no answer within {timeout:g}s")
    except requests.exceptions.RequestException as exc:
        return Outcome(False, None, f"request failed ({type(exc).__name__})")
    except Exception as exc:  # urllib3's own, read from the raw answer
        return Outcome(False, None, f"the answer could not be read ({type(exc).__name__})")
    finally:
        cutoff.close()
    status = response.status_code
    if 200 <= status < 300:
        return Outcome(True, status, None)
    if 300 <= status < 400:
        return Outcome(False, status, f"HTTP {status} (redirects are not followed)")
    return Outcome(False, status, f"HTTP {status}")


class Sender:
    """This worker's side of the webhook sender: the lease, the deliveries, the greenlets."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.owner = owner_name()
        self.base = float(app.config["WEBHOOK_RETRY_BASE"])
        self.window = float(app.config["WEBHOOK_RETRY_WINDOW"])
        self.poll = float(app.config["POLL_INTERVAL"])
        #: Until when (monotonic) this worker holds the lease, counted from before the
        #: renewal asked for it; 0 when it does not.
        self.lease_until = 0.0
        self.stopping = False
        #: The greenlet sending each endpoint's deliveries, and the event that wakes it.
        self.senders: dict[str, gevent.Greenlet[Any, Any]] = {}
        self.wakes: dict[str, Event] = {}

    # --- the lease ----------------------------------------------------------------------

    def may_send(self) -> bool:
        """Tell whether an attempt started now ends while this worker surely holds the lease."""
        return time.monotonic() + ATTEMPT_TIMEOUT + LEASE_MARGIN < self.lease_until

    def _renew(self) -> None:
        asked = time.monotonic()
        try:
            held = rows.take_lease(self.owner, int(LEASE_TTL * 1_000_000))
        except Exception:
            log.warning("could not renew the webhook sender's lease; retrying", exc_info=True)
            return  # what was held runs out on its own
        was = self.lease_until > asked
        self.lease_until = asked + LEASE_TTL if held else 0.0
        if held and not was:
            log.info("this worker sends the webhooks now (%s)", self.owner)

    # --- the main loop ------------------------------------------------------------------

    def run(self) -> None:
        """Hold (or wait for) the lease, make deliveries and keep a greenlet per endpoint."""
        next_renewal = 0.0
        with self.app.app_context():
            counter = CommitSignal(current_store().engine)
            while not self.stopping:
                try:
                    if time.monotonic() >= next_renewal:
                        self._renew()
                        next_renewal = time.monotonic() + LEASE_RENEW
                    # Any commit (a change, an endpoint added, a retry from the CLI)
                    # moves the counter; without the lease there is nothing to look at.
                    if self.may_send() and counter.moved():
                        self._tick()
                except Exception:
                    log.warning("webhook sender pass failed; retrying", exc_info=True)
                    counter.reset()
                    gevent.sleep(1.0)
                gevent.sleep(self.poll)

    def _tick(self) -> None:
        found = rows.endpoints()
        for endpoint in found:
            self._make_deliveries(endpoint)
            greenlet = self.senders.get(endpoint.id)
            if greenlet is None or greenlet.dead:
                self.wakes[endpoint.id] = Event()
                self.senders[endpoint.id] = gevent.spawn(self._send_loop, endpoint.id)
            self.wakes[endpoint.id].set()
        for endpoint_id in set(self.wakes) - {e.id for e in found}:
            self.wakes[endpoint_id].set()  # its greenlet finds it gone and ends

    def _make_deliveries(self, endpoint: rows.Endpoint) -> None:
        """Turn the log's entries after the endpoint's position into its deliveries."""
        position = endpoint.position
        while self.may_send():
            page = changelog.changes_after(position, limit=CONVERT_PAGE, with_rows=True)
            if not page.changes:
                if page.gap and position > changelog.head_position():
                    # The database was restored from an older copy: carry on from its head.
                    log.warning("webhook endpoint %s was ahead of the change log; it goes on "
                                "from the newest change", endpoint.id)
                    rows.add_deliveries(endpoint.id, position, changelog.head_position(), [])
                return
            if page.gap:  # retention never deletes what an endpoint has not taken
                log.warning("webhook endpoint %s missed changes after position %d",
                            endpoint.id, position)
            timestamp = iso_utc(now_us()) or ""
            items = []
            for change in page.changes:
                event = change_event(change)
                if event is not None and event[0] in endpoint.events:
                    items.append(rows.NewDelivery(change.position, event[0],
                                                  hooks.body(event[0], timestamp, event[1])))
            if not rows.add_deliveries(endpoint.id, position, page.position, items):
                return  # removed meanwhile (or made by another sender): read it again
            position = page.position
            if not page.more:
                return
            gevent.sleep(0)

    # --- an endpoint's deliveries, in order ---------------------------------------------

    def _send_loop(self, endpoint_id: str) -> None:
        """Send one endpoint's deliveries in order while the lease allows (a greenlet)."""
        wake = self.wakes[endpoint_id]
        session = requests.Session()
        session.trust_env = False  # no proxies or .netrc from the server's environment
        try:
            with self.app.app_context():
                while not self.stopping and self.may_send():
                    wake.clear()
                    try:
                        wait = self._send_next(endpoint_id, session)
                    except _Gone:
                        return
                    except Exception:
                        log.warning("webhook delivery to endpoint %s failed unexpectedly; "
                                    "retrying", endpoint_id, exc_info=True)
                        session.close()
                        session = requests.Session()
                        session.trust_env = False
                        wait = 1.0
                    if wait:
                        wake.wait(wait)
        finally:
            session.close()
            if self.senders.get(endpoint_id) is gevent.getcurrent():
                del self.senders[endpoint_id]
                self.wakes.pop(endpoint_id, None)

    def _send_next(self, endpoint_id: str, session: requests.Session) -> float:
        """Attempt the endpoint's next delivery if it is due; return how long to wait."""
        endpoint = rows.endpoint(endpoint_id)
        if endpoint is None:
            raise _Gone()
        delivery = rows.next_delivery(endpoint_id)
        if delivery is None:
            return IDLE
        due = (delivery.next_attempt_at - now_us()) / 1e6
        if due > 0:
            return min(due, IDLE)
        started = now_us()
        outcome = attempt(session, endpoint.url, endpoint.key, delivery.id,
                          delivery.body.encode())
        if not outcome.ok:
            # The connection may be half-used (a cut-off answer): start the next afresh.
            session.close()
        status = rows.record_attempt(delivery.id, started, ok=outcome.ok,
                                     answer=outcome.status, error=outcome.error,
                                     base=self.base, window=self.window)
        if outcome.ok:
            log.debug("webhook %s delivered to endpoint %s", delivery.id, endpoint_id)
        elif status == rows.FAILED:
            log.warning("webhook %s to endpoint %s failed for good after %d attempt(s): %s",
                        delivery.id, endpoint_id, delivery.attempts + 1, outcome.error)
        else:
            log.info("webhook %s to endpoint %s: attempt %d failed (%s); retrying",
                     delivery.id, endpoint_id, delivery.attempts + 1, outcome.error)
        return 0.0

    def stop(self) -> None:
        """Stop sending (the worker is going away); the lease lapses or the master frees it."""
        self.stopping = True
        for wake in self.wakes.values():
            wake.set()


class _Gone(Exception):
    """The endpoint was removed."""


def start(app: Flask) -> Sender:
    """Run this worker's part of the webhook sender in a greenlet of its own."""
    logs.to_stderr(log)
    sender = Sender(app)
    gevent.spawn(sender.run)
    return sender
