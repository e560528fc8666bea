"""Links to the cluster's nodes: one asyncio.Protocol connection per node,
shared and pipelined by many clients (or owned by one for WATCH, blocking
commands and pub/sub)."""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import TYPE_CHECKING

from pynode.proxy.core import FrameError, cmd_bytes, reply_end

if TYPE_CHECKING:
    from pynode.proxy.router import Proxy

LOST_UNSENT = "unsent"     # the link failed before the command was written
LOST_SENT = "sent"         # the link failed with the command in flight


class Link(asyncio.Protocol):
    """One connection to a node, shared and pipelined by many clients.

    `send(data, cb)` queues a command; cb(frame) runs when its reply arrives,
    cb(LOST_UNSENT / LOST_SENT) if the link fails first. In raw mode (pub/sub
    pass-through) every frame goes to `raw_sink` instead."""

    def __init__(self, proxy: "Proxy", addr: tuple, proto: int, creds: tuple | None,
                 readonly: bool, shared: bool = True) -> None:
        self.proxy = proxy
        self.addr = addr
        self.key = (addr, proto, creds, readonly)
        self.shared = shared
        self.transport = None
        self.pending: deque = deque()
        self.out: list[bytes] = []
        self.sent = False          # anything written yet (else failures are safe to retry)
        self.unsent = 0            # commands at the end of `pending` not written yet
        self.buf = b""
        self.closed = False
        self.raw_sink = None
        hs = []
        if creds:
            hs.append(cmd_bytes([b"AUTH", *creds]))
        if proto == 3:
            hs.append(cmd_bytes([b"HELLO", b"3"]))
        if readonly:
            hs.append(cmd_bytes([b"READONLY"]))
        for data in hs:
            self.send(data, self._handshake_reply)
        proxy.stats["backend_connections"] += 1
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.create_connection(lambda: self, *self.addr),
                                   self.proxy.connect_timeout)
        except (OSError, asyncio.TimeoutError):
            self.fail(LOST_UNSENT)

    def _handshake_reply(self, frame) -> None:
        if isinstance(frame, bytes) and frame[:1] == b"-":
            # wrong credentials and the like: every queued command gets the error
            self.closed = True
            self.proxy.drop_link(self)
            pending, self.pending = self.pending, deque()
            for cb in pending:
                cb(frame)
            if self.transport is not None:
                self.transport.close()

    def connection_made(self, transport) -> None:
        if self.closed:
            transport.close()
            return
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.proxy.dirty_links.add(self)
        self.proxy.schedule_flush()

    def send(self, data: bytes, cb) -> None:
        if self.closed:
            cb(LOST_UNSENT)
            return
        self.pending.append(cb)
        self.out.append(data)
        self.unsent += 1
        if self.unsent == 1:
            proxy = self.proxy
            proxy.dirty_links.add(self)
            if not proxy.flush_scheduled:
                proxy.schedule_flush()

    def send_raw(self, data: bytes) -> None:
        """Write without expecting a reply of its own (pub/sub pass-through)."""
        if not self.closed:
            self.out.append(data)
            self.proxy.dirty_links.add(self)
            self.proxy.schedule_flush()

    def flush(self) -> None:
        if self.transport is not None and self.out and not self.closed:
            self.transport.write(b"".join(self.out))
            self.out = []
            self.unsent = 0
            self.sent = True

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        pos = 0
        n = len(buf)
        find = buf.find
        try:
            while pos < n:
                t = buf[pos]
                if t == 43 or t == 58:          # +simple, :integer
                    end = find(b"\r\n", pos)
                    if end < 0:
                        break
                    end += 2
                elif t == 36:                   # $bulk
                    nl = find(b"\r\n", pos)
                    if nl < 0:
                        break
                    ln = int(buf[pos + 1:nl])
                    end = nl + 4 + ln if ln >= 0 else nl + 2
                    if end > n:
                        break
                else:
                    end = reply_end(buf, pos)
                    if end < 0:
                        break
                frame = buf[pos:end]
                pos = end
                if self.pending:
                    self.pending.popleft()(frame)
                elif self.raw_sink is not None:
                    self.raw_sink(frame)
                else:
                    raise FrameError("reply with no command")
        except (FrameError, ValueError) as e:
            self.proxy.log("link %s:%d: %s; closing it" % (self.addr[0], self.addr[1], e))
            self.transport.close()
            return
        self.buf = buf[pos:] if pos < len(buf) else b""

    def connection_lost(self, exc) -> None:
        self.fail(LOST_SENT if self.sent else LOST_UNSENT)

    def fail(self, how: str) -> None:
        if self.closed and not self.pending:
            return
        self.closed = True
        self.proxy.drop_link(self)
        pending, self.pending = self.pending, deque()
        # what was never written can be retried whatever it was
        written = len(pending) - self.unsent
        self.out = []
        self.unsent = 0
        for i, cb in enumerate(pending):
            cb(how if i < written else LOST_UNSENT)
        if self.raw_sink is not None:
            self.raw_sink(None)
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        self.closed = True
        self.proxy.drop_link(self)
        if self.transport is not None:
            self.transport.close()
