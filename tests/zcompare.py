"""Raw-reply comparison of pynode against a real redis-server (shared by
tests/test_zsets.py and tests/test_geo.py).

`Conn` is a minimal RESP client that returns each reply's exact bytes; a
`Pair` sends the same command to both servers (RESP2 and RESP3 connections)
and records every difference, so a test reports all mismatches at once.
"""

from __future__ import annotations

import socket
import time

from tests.helpers import enc


class Conn:
    """One connection; raw(...) returns the reply bytes exactly as sent."""

    def __init__(self, port: int, resp: int = 2, timeout: float = 10.0) -> None:
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.f = self.s.makefile("rb")
        if resp == 3:
            self.raw("HELLO", "3")

    def send(self, *args) -> None:
        self.s.sendall(enc(*args))

    def raw(self, *args) -> bytes:
        self.s.sendall(enc(*args))
        return self.read()

    def read(self) -> bytes:
        line = self.f.readline()
        if not line:
            raise ConnectionError("connection closed")
        t = line[:1]
        if t in b"+-:_,#(":
            return line
        if t in b"$=!":
            n = int(line[1:-2])
            return line if n < 0 else line + self.f.read(n + 2)
        if t in b"*~%>|":
            n = int(line[1:-2])
            if n < 0:
                return line
            if t in b"%|":
                n *= 2
            return line + b"".join(self.read() for _ in range(n))
        raise ValueError("bad reply line %r" % line)

    def messages(self, idle: float = 0.3, limit: float = 5.0) -> list[bytes]:
        """Replies pushed to this connection until it stays quiet for `idle` s."""
        out = []
        deadline = time.monotonic() + limit
        self.s.settimeout(idle)
        try:
            while time.monotonic() < deadline:
                out.append(self.read())
        except (socket.timeout, TimeoutError):
            pass
        finally:
            self.s.settimeout(10.0)
        return out

    def close(self) -> None:
        self.f.close()
        self.s.close()


class Pair:
    """The same commands on pynode and on redis-server, replies compared."""

    def __init__(self, pynode_port: int, redis_port: int) -> None:
        self.p = {2: Conn(pynode_port), 3: Conn(pynode_port, 3)}
        self.r = {2: Conn(redis_port), 3: Conn(redis_port, 3)}
        self.diffs: list[str] = []

    def both(self, *args, resp: int = 2) -> bytes:
        a = self.p[resp].raw(*args)
        b = self.r[resp].raw(*args)
        if a != b:
            self.diffs.append("RESP%d %r\n  pynode: %r\n  redis:  %r"
                              % (resp, args[:10], a[:400], b[:400]))
        return a

    def script(self, cmds, resps=(2, 3)) -> None:
        for cmd in cmds:
            for resp in resps:
                self.both(*cmd, resp=resp)

    def check(self) -> None:
        assert not self.diffs, "%d replies differ:\n%s" % (len(self.diffs),
                                                            "\n".join(self.diffs[:20]))

    def close(self) -> None:
        for c in list(self.p.values()) + list(self.r.values()):
            c.close()
