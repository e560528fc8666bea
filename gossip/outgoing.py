"""Outgoing TCP connections (cluster bus, replication, MIGRATE) from the node's
own address: bind-source-addr, else the first `bind` address
(Config.source_addr, Redis's NET_FIRST_BIND_ADDR).

Binding is best effort, as Redis's ANET_CONNECT_BE_BINDING: an address that
cannot be bound leaves the choice to the kernel.  A connection that fails
after the bind is that connection failing: it is not tried again from
another address, because on a host with several addresses that would make
the node appear from an address that is not its own (and walk through a
partition drawn around its address, which is how `pynode chaos` and the
tests cut one node off a host that has others).
"""

from __future__ import annotations

import asyncio
import socket


def _bound(family: int, src: str | None) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    if src:
        try:
            sock.bind((src, 0))
        except OSError:
            pass              # best effort: the kernel picks the address
    return sock


def connect(addr: tuple[str, int], src: str | None, timeout: float) -> socket.socket:
    """A blocking connection to addr from src (MIGRATE)."""
    err: OSError | None = None
    for family, _, _, _, sa in socket.getaddrinfo(addr[0], addr[1], type=socket.SOCK_STREAM):
        sock = _bound(family, src)
        try:
            sock.settimeout(timeout)
            sock.connect(sa)
            return sock
        except OSError as e:
            sock.close()
            err = e
    raise err if err is not None else OSError("no address for %s" % addr[0])


async def connect_async(host: str, port: int, src: str | None) -> socket.socket:
    """A non-blocking connected socket to host:port from src, for
    loop.create_connection(sock=...) or asyncio.open_connection(sock=...)."""
    loop = asyncio.get_running_loop()
    err: OSError | None = None
    for family, _, _, _, sa in await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        sock = _bound(family, src)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, sa)
            return sock
        except BaseException as e:
            sock.close()
            if not isinstance(e, OSError) or isinstance(e, TimeoutError):
                raise
            err = e
    raise err if err is not None else OSError("no address for %s" % host)
