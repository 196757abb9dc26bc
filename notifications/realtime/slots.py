"""A bound on how many greenlets of a worker do one costly thing at once."""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import gevent.lock

from notifications.store.writer import on_hub


class Slots:
    """``size`` slots; holding one is a context (a no-op off the hub: test-client threads)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._semaphore: Any = None

    def hold(self) -> AbstractContextManager[Any]:
        """Return the context that holds one of the slots while it runs."""
        if not on_hub():
            return nullcontext()  # threads of a test client: nothing to share
        if self._semaphore is None:
            # Made on first use, by the hub that will wait on it.
            self._semaphore = gevent.lock.BoundedSemaphore(self.size)
        semaphore: AbstractContextManager[Any] = self._semaphore
        return semaphore
