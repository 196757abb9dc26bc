"""What a variant supplies to its streams: the frames they send, ready to write.

The realtime package decides when to send what; the variant that opens a stream decides
how each event looks (its JSON, its event names). Protocol frames that carry no body of
the variant's (``retry:``, a bare ``id:``) are the package's own.
"""
from __future__ import annotations

from typing import Any, Protocol


class DatasetFrames(Protocol):
    """The events of a dataset stream (new notifications, replay after Last-Event-ID)."""

    def notification(self, row: dict[str, Any]) -> str:
        """Frame a stored row; its ``id:`` is the row's sequence number."""
        ...

    def reset(self, cursor: int) -> str:
        """Tell the client to reload its list; its Last-Event-ID becomes ``cursor``."""
        ...

    def replay_failed(self) -> str:
        """Tell the client that what it missed could not be read (a reset follows)."""
        ...

    def watcher_failed(self) -> str:
        """Tell the client that reading new notifications failed and is being retried."""
        ...

    def ping(self) -> str:
        """The heartbeat sent every ping interval."""
        ...


class OrganizationFrames(Protocol):
    """The events of an organization stream (the unread count)."""

    def unread(self, count: int) -> str:
        """Frame the inbox's unread count."""
        ...

    def keep_alive(self) -> str:
        """The heartbeat sent every keep-alive interval."""
        ...
