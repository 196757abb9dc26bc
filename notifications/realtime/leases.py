"""The per-user cap on streams across a node's workers: this worker's leases and their upkeep.

Each open stream holds a lease, a row counted against its user's limit by every worker
(the SQL is the store's). The worker renews its leases every :data:`LEASE_RENEW` seconds;
a lease not renewed for :data:`LEASE_TTL` seconds (its worker died) stops counting.
Releases are batched by the upkeep greenlet; once the worker stops, they are done at once.
"""
from __future__ import annotations

import logging
import os
import socket
import time
import uuid

import gevent
from flask import Flask
from gevent.event import Event

from notifications.realtime.slots import Slots
from notifications.store import leases as lease_rows

log = logging.getLogger("notifications.stream")

#: How long a stream lease lives without renewal: a dead worker's slots free up after it.
LEASE_TTL = 30.0
#: How often a worker renews the leases of its open streams.
LEASE_RENEW = 10.0
#: The lease of a stream opened while its worker stops: it holds no slot.
NO_LEASE = ""
#: Lease writes a worker makes at once.
LEASE_SLOTS = 2


def owner_prefix(pid: int) -> str:
    """Return how the lease owner names of process ``pid`` on this host begin."""
    return f"{socket.gethostname()}:{pid}:"


def owner_name() -> str:
    """Name this process as the owner of stream leases, unique across the node's workers."""
    return f"{owner_prefix(os.getpid())}{uuid.uuid4().hex[:8]}"


class Leases:
    """The stream leases of one worker process, under an owner name of its own."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.owner = owner_name()
        self.stopping = False
        #: Leases held, and leases given back whose delete is still to be done.
        self.held: set[str] = set()
        self.released: set[str] = set()
        self._wake = Event()
        # A burst of new streams waits here, a few at a time, rather than queue a lease
        # write each in front of everyone else's writes.
        self._slots = Slots(LEASE_SLOTS)

    def acquire(self, user_id: str, limit: int, kind: str) -> lease_rows.LeaseResult:
        """Take a stream slot of ``kind`` for ``user_id`` (counted across the node's workers)."""
        if self.stopping:
            # The stream ends at once and its client reconnects to another worker: it needs
            # no slot, and one taken now would outlive this worker's release of its leases
            # (a client reconnecting in a loop to a reloading worker ran out of slots).
            return lease_rows.LeaseResult(NO_LEASE, 0, 0)
        with self._slots.hold():
            result = lease_rows.acquire_lease(user_id, self.owner, limit, int(LEASE_TTL * 1e6),
                                           kind)
        if result.lease_id is not None:
            self.held.add(result.lease_id)
        return result

    def release(self, lease_id: str) -> None:
        """Give a slot back; the delete is batched by :meth:`run` (at once when stopping)."""
        if lease_id not in self.held:
            return
        self.held.discard(lease_id)
        if self.stopping:
            # The upkeep greenlet has ended, and the release of every lease of this worker
            # may have run already: a lease left now would hold its slot until it expired.
            try:
                with self.app.app_context():
                    lease_rows.release_leases([lease_id])
            except Exception:  # the master frees a dead worker's slots anyway
                log.warning("could not release a stream lease while stopping", exc_info=True)
            return
        self.released.add(lease_id)
        self._wake.set()

    def run(self) -> None:
        """Delete released leases and renew held ones, until :meth:`stop` (a greenlet)."""
        next_renewal = time.monotonic() + LEASE_RENEW
        with self.app.app_context():
            while not self.stopping:
                if not self.released:
                    self._wake.wait(max(0.0, next_renewal - time.monotonic()))
                    self._wake.clear()
                # Work is dropped only once done: a lease whose delete failed would
                # otherwise be renewed with the others for the life of the process.
                try:
                    if self.released:
                        batch = set(self.released)
                        lease_rows.release_leases(list(batch))
                        self.released -= batch
                    if time.monotonic() >= next_renewal:
                        if self.held:
                            lease_rows.renew_leases(self.owner, int(LEASE_TTL * 1e6))
                        next_renewal = time.monotonic() + LEASE_RENEW
                except Exception:
                    log.warning("stream lease upkeep failed; retrying", exc_info=True)
                    gevent.sleep(1.0)

    def stop(self, *, release_all: bool) -> None:
        """Stop the upkeep; with ``release_all``, delete every lease of this owner now."""
        self.stopping = True
        self._wake.set()
        if not release_all:
            return
        try:
            with self.app.app_context():
                lease_rows.release_owner(self.owner)
        except Exception:  # the lease expires by itself anyway
            log.warning("could not release stream leases at shutdown", exc_info=True)
