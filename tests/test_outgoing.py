"""gossip/outgoing.py: outgoing connections from the node's own address,
binding as best effort (an address that cannot be bound leaves the choice to
the kernel), a failed connection not retried from another address."""

from __future__ import annotations

import asyncio
import socket

import pytest

from gossip.outgoing import connect, connect_async


@pytest.fixture
def listener():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(5)
    yield srv
    srv.close()


def _peer_of_accepted(srv: socket.socket) -> str:
    conn, (ip, _) = srv.accept()
    conn.close()
    return ip


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("src, seen", [("127.0.0.2", "127.0.0.2"), (None, "127.0.0.1"),
                                       # not an address of this machine: not bound
                                       ("192.0.2.1", "127.0.0.1")])
def test_blocking_connect_from_the_source_address(listener, src, seen):
    sock = connect(listener.getsockname(), src, 2)
    try:
        assert _peer_of_accepted(listener) == seen
    finally:
        sock.close()


@pytest.mark.parametrize("src, seen", [("127.0.0.2", "127.0.0.2"), ("192.0.2.1", "127.0.0.1")])
def test_async_connect_from_the_source_address(listener, src, seen):
    async def go():
        sock = await connect_async("127.0.0.1", listener.getsockname()[1], src)
        sock.close()
    asyncio.run(go())
    assert _peer_of_accepted(listener) == seen


def test_a_refused_connection_is_an_error_not_a_retry():
    port = _closed_port()
    with pytest.raises(ConnectionRefusedError):
        connect(("127.0.0.1", port), "127.0.0.2", 2)

    async def go():
        await connect_async("127.0.0.1", port, "127.0.0.2")
    with pytest.raises(ConnectionRefusedError):
        asyncio.run(go())
