"""A tiny asyncio RESP client (hiredis parses the replies) with bounded timeouts.

One connection per node; a timeout or a dropped link closes the connection, and
the next call opens a new one.  Replies that are errors come back as ReplyError
values, never raised, so a poller can tell "the node said no" from "no node".
"""

from __future__ import annotations

import asyncio

import hiredis


class ReplyError(str):
    """An error reply (-ERR ...) from a node."""


def encode(args) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if not isinstance(a, bytes):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    def __init__(self, host: str, port: int, password: str | None = None,
                 user: str | None = None, timeout: float = 2.0) -> None:
        self.host, self.port = host, port
        self.password, self.user = password, user
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._parser = None
        self._lock = asyncio.Lock()
        self.calls = 0          # commands sent so far (the poller's own load on the node)

    async def _open(self) -> None:
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), self.timeout)
        self._parser = hiredis.Reader(replyError=ReplyError, notEnoughData=Ellipsis)
        if self.password:
            auth = ["AUTH", self.user, self.password] if self.user else ["AUTH", self.password]
            reply = await self._roundtrip(auth)
            if isinstance(reply, ReplyError):
                self.close()
                raise ConnectionError("AUTH failed: %s" % reply)

    async def _roundtrip(self, args):
        assert self._writer is not None and self._reader is not None
        self._writer.write(encode(args))
        while True:
            reply = self._parser.gets()
            if reply is not Ellipsis:
                return reply
            data = await self._reader.read(65536)
            if not data:
                raise ConnectionError("connection closed by %s:%d" % (self.host, self.port))
            self._parser.feed(data)

    async def call(self, *args, timeout: float | None = None):
        """Send one command, return its reply (ReplyError for -ERR). Raises
        ConnectionError / asyncio.TimeoutError / OSError when the node is unreachable."""
        async with self._lock:
            self.calls += 1
            try:
                if self._writer is None:
                    await self._open()
                return await asyncio.wait_for(self._roundtrip(args), timeout or self.timeout)
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
        self._parser = None
