"""Run the same command scripts against pynode and a real redis-server and
compare what comes back: raw replies (RESP2 and RESP3), keyspace
notifications, and what reaches the AOF.

A script is a list of lines, each a command in redis-cli quoting (shlex),
optionally preceded by a comparison mode:

    "HSET h a 1"              replies must be byte-identical
    "~ SMEMBERS s"            same reply up to the order of the top-level elements
    "~2 HGETALL h"            same up to the order of top-level (field, value) pairs
    "~s HSCAN h 0"            a scan reply: same cursor, elements as with ~2 (or ~
                              for SSCAN: use "~s1")
    "? SPOP s"                same shape only: reply types and lengths (random picks)

Errors are compared like any reply (the text must match to the letter).
"""

from __future__ import annotations

import os
import shlex
import socket
import time

from tests.helpers import enc


# ---------------------------------------------------------------- RESP reading
class Reader:
    """Reads whole RESP2/RESP3 replies from a socket; parse() gives
    (type byte, value) trees: aggregates hold lists of trees."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self, deadline: float) -> None:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete reply within the deadline")
            self.sock.settimeout(left)
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError("connection closed")
            self.buf += data
            return

    def read(self, timeout: float = 10.0) -> bytes:
        """The raw bytes of the next complete reply."""
        deadline = time.monotonic() + timeout
        while True:
            end = _reply_end(self.buf, 0)
            if end is not None:
                raw, self.buf = self.buf[:end], self.buf[end:]
                return raw
            self._fill(deadline)


def _reply_end(buf: bytes, pos: int):
    """The end offset of the reply starting at pos, or None if incomplete."""
    nl = buf.find(b"\r\n", pos)
    if nl < 0:
        return None
    t = buf[pos:pos + 1]
    line = buf[pos + 1:nl]
    pos = nl + 2
    if t in (b"+", b"-", b":", b",", b"_", b"#", b"("):
        return pos
    if t in (b"$", b"=", b"!"):
        n = int(line)
        if n < 0:
            return pos
        if len(buf) < pos + n + 2:
            return None
        return pos + n + 2
    if t in (b"*", b"~", b">", b"%", b"|"):
        n = int(line)
        if n < 0:
            return pos
        if t in (b"%", b"|"):
            n *= 2
        for _ in range(n):
            pos = _reply_end(buf, pos)
            if pos is None:
                return None
        return pos
    raise ValueError("bad RESP type %r at %d" % (t, pos))


def parse(buf: bytes, pos: int = 0):
    """(tree, next position) for the reply at pos."""
    nl = buf.index(b"\r\n", pos)
    t = buf[pos:pos + 1]
    line = buf[pos + 1:nl]
    pos = nl + 2
    if t in (b"$", b"=", b"!"):
        n = int(line)
        if n < 0:
            return (t, None), pos
        return (t, buf[pos:pos + n]), pos + n + 2
    if t in (b"*", b"~", b">", b"%", b"|"):
        n = int(line)
        if n < 0:
            return (t, None), pos
        if t in (b"%", b"|"):
            n *= 2
        items = []
        for _ in range(n):
            node, pos = parse(buf, pos)
            items.append(node)
        return (t, items), pos
    return (t, line), pos


class Conn:
    """One connection speaking RESP2 or RESP3."""

    def __init__(self, port: int, resp: int = 2) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = Reader(self.sock)
        if resp == 3:
            self.call("HELLO", "3")

    def call(self, *args) -> bytes:
        self.sock.sendall(enc(*args))
        return self.reader.read()

    def close(self) -> None:
        self.sock.close()


# ---------------------------------------------------------------- comparing
def _key(node):
    return repr(node)


def _pairs(items):
    return sorted((_key(items[i]), _key(items[i + 1])) for i in range(0, len(items), 2))


def normalize(raw: bytes, mode: str):
    """The comparable form of a reply under a script mode."""
    if not mode:
        return raw
    node, _ = parse(raw)
    t, v = node
    if t == b"-" or v is None or not isinstance(v, list):
        return node if mode != "?" else (t, None if v is None else "scalar")
    if mode == "?":
        return (t, len(v), [sub[0] for sub in v])
    if mode == "~":
        return (t, sorted(_key(x) for x in v))
    if mode == "~2":
        if t == b"%" or (v and v[0][0] != b"*"):
            return (t, _pairs(v))
        return (t, sorted(_key(x) for x in v))   # RESP3 nested [field, value] pairs
    if mode in ("~s", "~s1"):
        cursor, elems = v
        inner = elems[1]
        norm = _pairs(inner) if mode == "~s" else sorted(_key(x) for x in inner)
        return (t, cursor, elems[0], norm)
    raise ValueError("unknown compare mode %r" % mode)


def split_line(line: str):
    mode = ""
    if line[:1] in ("~", "?"):
        mode, line = line.split(" ", 1)
    return mode, shlex.split(line)


def run_script(ports, script, resp: int = 2):
    """Run script on every port; returns [(line, [normalized reply per port])]."""
    conns = [Conn(p, resp) for p in ports]
    out = []
    try:
        for line in script:
            mode, args = split_line(line)
            try:
                replies = [normalize(c.call(*args), mode) for c in conns]
            except (OSError, ValueError) as e:
                raise AssertionError("%s: %r" % (line, e)) from None
            out.append((line, replies))
    finally:
        for c in conns:
            c.close()
    return out


def mismatches(ports, script, resp: int = 2) -> list:
    """The lines whose replies differ between the servers (empty if none)."""
    bad = []
    for line, replies in run_script(ports, script, resp):
        if any(r != replies[0] for r in replies[1:]):
            bad.append((line, replies))
    return bad


def keyspace_stats(port: int) -> dict:
    """keyspace_hits / keyspace_misses from INFO stats."""
    c = Conn(port)
    try:
        text = c.call("INFO", "stats").decode()
    finally:
        c.close()
    return {k: v for k, v in (line.split(":", 1) for line in text.split("\r\n")
                              if line.startswith("keyspace_"))}


# ---------------------------------------------------------------- notifications
def notifications(port: int, script, quiet: float = 0.3, limit: float = 10.0) -> list:
    """The keyspace notifications (channel, message) a script produces, in order
    (notify-keyspace-events is set to KEA for the run, then restored)."""
    cmd = Conn(port)
    old = parse(cmd.call("CONFIG", "GET", "notify-keyspace-events"))[0][1][1][1]
    cmd.call("CONFIG", "SET", "notify-keyspace-events", "KEA")
    sub = Conn(port)
    sub.call("PSUBSCRIBE", "__key*__:*")
    try:
        for line in script:
            cmd.call(*split_line(line)[1])
        cmd.call("CONFIG", "SET", "notify-keyspace-events", old.decode())
        # the confirmation of a second subscription follows every event
        sub.sock.sendall(enc("PSUBSCRIBE", "__end__"))
        events = []
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            node, _ = parse(sub.reader.read(timeout=max(0.1, deadline - time.monotonic())))
            kind = node[1][0][1]
            if kind == b"psubscribe":
                break
            if kind == b"pmessage":
                events.append((node[1][2][1], node[1][3][1]))
        return events
    finally:
        sub.close()
        cmd.close()


# ---------------------------------------------------------------- AOF
def aof_commands(workdir: str, timeout: float = 5.0) -> list:
    """The commands in the AOF incr file(s) of a server started with
    --appendonly yes in workdir (appendfsync always makes them visible)."""
    d = os.path.join(workdir, "appendonlydir")
    deadline = time.monotonic() + timeout
    while True:
        names = sorted(n for n in os.listdir(d) if n.endswith(".incr.aof")) \
            if os.path.isdir(d) else []
        if names or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    data = b""
    for n in names:
        with open(os.path.join(d, n), "rb") as fh:
            data += fh.read()
    return parse_commands(data)


def parse_commands(data: bytes) -> list:
    """The argv lists of RESP multibulk commands (an AOF's contents)."""
    out = []
    pos = 0
    while pos < len(data):
        if data[pos:pos + 1] == b"#":          # timestamp annotations
            pos = data.index(b"\n", pos) + 1
            continue
        node, pos = parse(data, pos)
        out.append([x[1] for x in node[1]])
    return out
