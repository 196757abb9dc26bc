"""Closed-socket detection: a stream learns at once that its client went away.

A client that goes away makes its socket readable (EOF). Waiting for that with a libev
I/O watcher frees the stream at once, instead of at the next ping or keep-alive write.
"""
from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import gevent

_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


class ClientSocket:
    """A stream's client socket, watched for the end of the client's side."""

    __slots__ = ("readable", "_io", "_sock")

    def __init__(self, sock: Any, fileno: int, on_readable: Callable[[], None]) -> None:
        self.readable = False
        # gevent's socket wraps the real one, which recv(MSG_PEEK) must reach directly.
        self._sock = getattr(sock, "_sock", sock)

        def readable() -> None:
            self.readable = True
            on_readable()

        self._io: Any = gevent.get_hub().loop.io(fileno, 1)
        self._io.start(readable)

    @classmethod
    def watch(cls, sock: Any, on_readable: Callable[[], None]) -> ClientSocket | None:
        """Watch ``sock``, calling ``on_readable`` when it becomes readable; None: no socket."""
        if sock is None:
            return None
        try:
            fileno = sock.fileno()
        except (OSError, ValueError):
            return None
        return cls(sock, fileno, on_readable)

    def gone(self) -> bool:
        """Tell whether the client closed its end (looked at only when it was readable)."""
        if self._io is None or not self.readable:
            return False
        self.readable = False
        try:
            data = self._sock.recv(1, _PEEK)
        except BlockingIOError:
            return False
        except OSError:
            return True
        if data == b"":
            return True
        # The client sent bytes (it should not): stop watching rather than spin.
        self.stop()
        return False

    def stop(self) -> None:
        """Release the watcher (the socket itself stays the server's)."""
        if self._io is not None:
            self._io.stop()
            self._io.close()
            self._io = None

    def hang_up(self) -> None:
        """Stop reading from the client, so the server closes the connection after the stream.

        Without it a keep-alive connection would wait for a next request, and a
        graceful shutdown would wait for that.
        """
        try:
            self._sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass
