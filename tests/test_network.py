"""The one table of network faults, on real sockets of the loopback."""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator

import pytest

from pipeline.network import network_fault


@pytest.fixture
def server() -> Iterator[Callable[[Callable[[socket.socket], None]], int]]:
    """Start a one-connection TCP server on 127.0.0.1 running `handle`; its port."""
    listeners: list[socket.socket] = []

    def start(handle: Callable[[socket.socket], None]) -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def serve() -> None:
            with listener.accept()[0] as connection:
                handle(connection)

        threading.Thread(target=serve, daemon=True).start()
        port: int = listener.getsockname()[1]
        return port

    yield start
    for listener in listeners:
        listener.close()


def _fault_of(action: Callable[[], object]) -> BaseException:
    try:
        action()
    except BaseException as exc:  # the fault is what is tested
        return exc
    raise AssertionError("no fault")


def test_closed_port__connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    fault = _fault_of(lambda: socket.create_connection(("127.0.0.1", port), timeout=5))

    assert network_fault(fault) == "connexion refusée (serveur arrêté, ou mauvais port)"


def test_server_silent__timeout(server: Callable[..., int]) -> None:
    done = threading.Event()
    port = server(lambda connection: done.wait(5))
    with socket.create_connection(("127.0.0.1", port), timeout=0.2) as client:
        fault = _fault_of(lambda: client.recv(10))
    done.set()

    assert network_fault(fault) == "le serveur ne répond pas (délai dépassé)"


def test_server_resets_the_connection__cut_by_the_server(server: Callable[..., int]) -> None:
    def reset(connection: socket.socket) -> None:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    port = server(reset)

    def exchange() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.recv(10)

    fault = _fault_of(exchange)

    assert network_fault(fault) == "connexion coupée par le serveur"


def test_tls_to_a_plain_text_server__negotiation_failed(server: Callable[..., int]) -> None:
    port = server(lambda connection: connection.sendall(b"* OK IMAP4rev1 pret\r\n" * 20))
    context = ssl.create_default_context()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        fault = _fault_of(lambda: context.wrap_socket(raw, server_hostname="127.0.0.1"))

    assert network_fault(fault) == (
        "échec de la négociation TLS (« securite » et « port » cohérents ?)"
    )


def test_not_a_network_fault__none() -> None:
    assert network_fault(ValueError("autre chose")) is None
    assert network_fault(FileNotFoundError(2, "absent")) is None
