"""In-process change notification: writers call :func:`changed` after they commit."""
from __future__ import annotations

from collections.abc import Callable

_listeners: list[Callable[[], None]] = []


def on_change(listener: Callable[[], None]) -> None:
    """Call ``listener`` (cheaply, without arguments) after every local commit."""
    if listener not in _listeners:
        _listeners.append(listener)


def changed() -> None:
    """Tell this process's listeners that notifications or read state changed."""
    for listener in list(_listeners):
        listener()
