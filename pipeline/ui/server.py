"""Start the interface: a free port on 127.0.0.1, uvicorn, a clean stop on Ctrl+C."""

from __future__ import annotations

import errno
import signal
import socket
import threading
from collections.abc import Callable

import uvicorn
from starlette.types import ASGIApp

HOST = "127.0.0.1"  # never another interface: the campaign holds personal data
DEFAULT_PORT = 8765
PORTS_TRIED = 50


class NoFreePort(Exception):
    """No port could be bound among the ones tried."""


def bind_port(
    first: int, tries: int = PORTS_TRIED, on_busy: Callable[[int], None] | None = None
) -> socket.socket:
    """A listening socket on 127.0.0.1, at `first` or the next free port after it.

    `on_busy(port)` is called for each port found in use. Binding here (rather than in
    uvicorn) means the port cannot be taken between the check and the start.
    """
    port = first
    for port in range(first, min(first + tries, 65536)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                if on_busy is not None:
                    on_busy(port)
                continue
            raise
        sock.listen(128)
        sock.set_inheritable(True)
        return sock
    raise NoFreePort(f"{first}–{port}")


def serve(app: ASGIApp, sock: socket.socket) -> None:
    """Serve `app` on `sock` until Ctrl+C (or SIGTERM); returns once stopped.

    No access log: addresses may hold a token, pages personal data.
    """
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn stops gracefully, then raises the signal again
        pass
    finally:
        sock.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM, once uvicorn has stopped, ends like Ctrl+C."""
    raise KeyboardInterrupt
