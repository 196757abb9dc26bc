"""What a variant supplies to its streams: the frames they send, ready to write.

The realtime package decides when to send what; the variant that opens a stream decides
how each event looks (its JSON, its event names). Protocol frames that carry no body of
the variant's (``retry:``, a bare ``id:``) are the package's own.
"""
from __future__ import annotations

from typing import Any, Protocol

from notifications.store.changelog import Change
from notifications.store.inbox import Counts


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


class InboxFrames(Protocol):
    """The events of a version 2 stream: the changes of the caller's notifications, counts.

    Every frame but :meth:`keep_alive` carries ``id:``, a change-log position (the client
    sends the last one back as ``Last-Event-ID``); the stream says which.
    """

    def created(self, change: Change) -> str:
        """Frame ``notification.created``: ``change.row`` is the stored row (never None here);
        its ``id:`` is ``change.position``."""
        ...

    def updated(self, change: Change) -> str:
        """Frame ``notification.updated``: the id and state times after the change; its
        ``id:`` is ``change.position``."""
        ...

    def deleted(self, change: Change) -> str:
        """Frame ``notification.deleted``: the id; its ``id:`` is ``change.position``."""
        ...

    def counts(self, counts: Counts, position: int | None) -> str:
        """Frame ``counts``; ``id: position`` unless it is None."""
        ...

    def reset(self, position: int) -> str:
        """Tell the client to reload: what it missed cannot be replayed; ``id: position``."""
        ...

    def keep_alive(self) -> str:
        """The heartbeat sent every keep-alive interval (no ``id:``)."""
        ...
