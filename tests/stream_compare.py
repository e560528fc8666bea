"""Raw RESP connections for comparing pynode's replies with redis-server's byte
for byte (used by the stream tests)."""

from __future__ import annotations

import socket
import time

from tests.helpers import enc


def reply_end(buf: bytes, pos: int = 0) -> int | None:
    """The offset just past the RESP2/RESP3 reply starting at pos, or None if
    the buffer does not hold all of it yet."""
    if pos >= len(buf):
        return None
    nl = buf.find(b"\r\n", pos)
    if nl < 0:
        return None
    t = buf[pos:pos + 1]
    line = buf[pos + 1:nl]
    p = nl + 2
    if t in (b"+", b"-", b":", b",", b"#", b"_", b"("):
        return p
    if t in (b"$", b"=", b"!"):
        n = int(line)
        if n < 0:
            return p
        return p + n + 2 if len(buf) >= p + n + 2 else None
    if t in (b"*", b"~", b">", b"%", b"|"):
        n = int(line)
        if n < 0:
            return p
        if t in (b"%", b"|"):
            n *= 2
        for _ in range(n):
            p = reply_end(buf, p)
            if p is None:
                return None
        return p
    raise ValueError("bad RESP type %r at %d in %r" % (t, pos, buf[pos:pos + 40]))


class RawConn:
    """One connection; call() sends a command and returns its exact reply bytes."""

    def __init__(self, port: int, resp3: bool = False, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        if resp3:
            self.call("HELLO", "3")

    def send(self, *args) -> None:
        self.sock.sendall(enc(*args))

    def read(self, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            end = reply_end(self.buf)
            if end is not None:
                r, self.buf = self.buf[:end], self.buf[end:]
                return r
            if time.monotonic() > deadline:
                raise TimeoutError("no complete reply; have %r" % self.buf[:200])
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("connection closed; have %r" % self.buf[:200])
            self.buf += data

    def call(self, *args) -> bytes:
        self.send(*args)
        return self.read()

    def pending(self, wait: float = 0.05) -> bytes:
        """Whatever arrives within `wait` seconds (nothing expected: b"")."""
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, BlockingIOError):
            data = b""
        finally:
            self.sock.settimeout(10)
        self.buf += data
        out, self.buf = self.buf, b""
        return out

    def close(self) -> None:
        self.sock.close()

