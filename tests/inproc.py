"""A pynode Server in the test process: the real dispatcher and handlers, no
sockets, a clock the test sets.  For model-based (hypothesis) tests that run
thousands of commands, and for checking reply bytes exactly.

    srv = InProc()
    c = srv.client()
    c.call("HSET", "h", "f", "v")        # -> 1 (hiredis-decoded reply)
    c.raw("HGET", "h", "f")              # -> b"$1\\r\\nv\\r\\n"
    srv.now = 1_000_000                   # ms, what the keyspace sees as now

Errors come back as ReplyError values from call() (they are not raised), so
a test can compare them with a model's.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile

import hiredis

from pynode.client import Client
from pynode.config import Config
from pynode.server import Server


class ReplyError(str):
    """An error reply, e.g. ReplyError("WRONGTYPE Operation against ...")."""


class _Transport:
    def __init__(self) -> None:
        self.buf = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.buf += data

    def close(self) -> None:
        self.closed = True

    abort = close

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name, default=None):
        return default

    def get_write_buffer_size(self) -> int:
        return len(self.buf)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _decode(data: bytes):
    r = hiredis.Reader(replyError=ReplyError)
    r.feed(data)
    out = []
    while True:
        v = r.gets()
        if v is False:
            break
        out.append(v)
    return out


class InClient:
    def __init__(self, srv: Server) -> None:
        self.srv = srv
        self.c = Client(srv)
        self.t = _Transport()
        self.c.transport = self.t
        self.c.addr = "127.0.0.1:%d" % (40000 + len(srv.clients))
        srv.on_connect(self.c)

    def raw(self, *args) -> bytes:
        """Run one command; the exact reply bytes (and anything sent before)."""
        argv = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        self.c.run([argv])
        out = bytes(self.t.buf)
        self.t.buf.clear()
        return out

    def call(self, *args):
        """Run one command; its decoded reply (None when the client blocked)."""
        replies = _decode(self.raw(*args))
        return replies[-1] if replies else None

    def take(self) -> list:
        """Replies sent to this client since the last call (e.g. when unblocked)."""
        out = _decode(bytes(self.t.buf))
        self.t.buf.clear()
        return out

    def close(self) -> None:
        self.c.connection_lost(None)


class InProc:
    def __init__(self, **config: str) -> None:
        cfg = Config()
        # no save points (FLUSHALL would save), and a directory of its own for
        # what SAVE or DEBUG RELOAD write
        cfg.values["save"] = ""
        workdir = tempfile.mkdtemp(prefix="pynode-inproc-")
        atexit.register(shutil.rmtree, workdir, True)
        cfg.values["dir"] = workdir
        for k, v in config.items():
            cfg.values[k.replace("_", "-")] = v
        self.srv = Server(cfg)
        self.now = 1_700_000_000_000      # the LRU/LFU clocks follow

    @property
    def now(self) -> int:
        return self.srv.ks.now

    @now.setter
    def now(self, ms: int) -> None:
        self.srv.ks.now = ms
        self.srv.ks.now_s = ms / 1000.0
        self.srv.ks.update_clock()        # LRU/LFU clocks follow

    def client(self) -> InClient:
        return InClient(self.srv)
