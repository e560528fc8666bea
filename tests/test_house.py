"""The shape of the server, checked on the sources: Server declares every
attribute it has (no module adds one, none is guessed at with getattr), one
module forks, one RESP request parser, one flush callback; and client pauses
kept per purpose (Redis's pauseClients/unpauseClients)."""

from __future__ import annotations

import ast
import pathlib
import time

from pynode.pause import ALL, CLIENT_COMMAND, FAILOVER, SHUTDOWN, WRITE, Pause
from tests.inproc import InProc

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = sorted(p for d in ("pynode", "storage", "gossip") for p in (ROOT / d).rglob("*.py"))
SERVER = ROOT / "pynode" / "server.py"


def _tree(path: pathlib.Path) -> ast.AST:
    return ast.parse(path.read_text(), str(path))


def _is_srv(node: ast.AST) -> bool:
    """`srv`, or `<x>.srv` (c.srv, self.srv): how modules name the Server."""
    return ((isinstance(node, ast.Name) and node.id == "srv")
            or (isinstance(node, ast.Attribute) and node.attr == "srv"))


def _server_attributes() -> set[str]:
    """Everything a Server has: class members and the attributes its own
    methods set on self."""
    names = set()
    for node in ast.walk(_tree(SERVER)):
        if isinstance(node, ast.ClassDef) and node.name == "Server":
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(item.name)
                    for sub in ast.walk(item):
                        if (isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store)
                                and isinstance(sub.value, ast.Name) and sub.value.id == "self"):
                            names.add(sub.attr)
                elif isinstance(item, (ast.Assign, ast.AnnAssign)):
                    for t in (item.targets if isinstance(item, ast.Assign) else [item.target]):
                        if isinstance(t, ast.Name):
                            names.add(t.id)
    return names


def _where(path: pathlib.Path, node: ast.AST) -> str:
    return "%s:%d" % (path.relative_to(ROOT), node.lineno)


def test_no_module_assigns_server_attributes():
    bad = []
    for path in SOURCES:
        if path == SERVER:
            continue
        for node in ast.walk(_tree(path)):
            targets = (node.targets if isinstance(node, ast.Assign)
                       else [node.target] if isinstance(node, ast.AnnAssign) else [])
            for t in targets:
                for sub in ast.walk(t):
                    if (isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store)
                            and _is_srv(sub.value)):
                        bad.append("%s srv.%s =" % (_where(path, node), sub.attr))
    assert bad == []


def test_every_server_attribute_used_is_declared():
    declared = _server_attributes()
    bad = []
    for path in SOURCES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Attribute) and _is_srv(node.value) \
                    and node.attr not in declared:
                bad.append("%s srv.%s" % (_where(path, node), node.attr))
    assert bad == []


def test_no_getattr_on_the_server():
    bad = []
    for path in SOURCES:
        for node in ast.walk(_tree(path)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in ("getattr", "hasattr", "setattr", "delattr")
                    and node.args and (_is_srv(node.args[0])
                                       or (path == SERVER and isinstance(node.args[0], ast.Name)
                                           and node.args[0].id == "self"))):
                bad.append("%s %s(%s)" % (_where(path, node), node.func.id,
                                          ast.unparse(node.args[0])))
    assert bad == []


def _calls(name: str):
    """(path, node) of every call of `name` (a dotted name, e.g. os.fork)."""
    for path in SOURCES:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == name:
                yield path, node


def test_one_module_forks():
    forking = {str(p.relative_to(ROOT)) for p, _ in _calls("os.fork")}
    assert forking == {"pynode/children.py"}


def test_pause_is_kept_per_purpose():
    p = Pause()
    now = 100.0
    p.pause(CLIENT_COMMAND, now + 10, WRITE, now)
    p.pause(FAILOVER, now + 5, WRITE, now)
    p.unpause(FAILOVER, now)                 # the failover ends ...
    assert (p.type, p.end) == (WRITE, now + 10)   # ... the operator's pause stays
    p.pause(FAILOVER, float("inf"), WRITE, now)
    p.unpause(CLIENT_COMMAND, now)           # CLIENT UNPAUSE ends the operator's only
    assert p.type == WRITE and p.active(FAILOVER, now)
    p.unpause(FAILOVER, now)
    assert (p.type, p.end) == (0, 0.0)
    # the most restrictive type wins, with its own end; expiry falls back
    p.pause(CLIENT_COMMAND, now + 1, ALL, now)
    p.pause(SHUTDOWN, now + 5, WRITE, now)
    assert (p.type, p.end) == (ALL, now + 1)
    p.update(now + 2)
    assert (p.type, p.end) == (WRITE, now + 5)
    # a purpose's second pause merges with its first (type and end: the larger)
    p.pause(SHUTDOWN, now + 3, ALL, now + 2)
    assert (p.type, p.end) == (ALL, now + 5)


class _Parked:
    def __init__(self) -> None:
        self.resumed = 0

    def resume(self) -> None:
        self.resumed += 1


def test_ending_a_failover_keeps_an_operators_client_pause():
    """The manual-failover unpause used to end CLIENT PAUSE too."""
    srv = InProc()
    c = srv.client()
    s = srv.srv
    assert c.call("CLIENT", "PAUSE", 60000, "WRITE") == b"OK"
    s.pause_clients(FAILOVER, time.monotonic() + 5, WRITE)
    parked = _Parked()
    s.pause.clients.add(parked)
    s.unpause_clients(FAILOVER)
    assert parked.resumed == 0
    assert s.must_pause(c.c, [b"SET", b"k", b"v"])
    assert not s.must_pause(c.c, [b"GET", b"k"])
    # and CLIENT UNPAUSE ends the operator's pause, not a failover's
    s.pause_clients(FAILOVER, float("inf"), WRITE)
    assert c.call("CLIENT", "UNPAUSE") == b"OK"
    assert s.must_pause(c.c, [b"SET", b"k", b"v"])
    s.unpause_clients(FAILOVER)
    assert not s.must_pause(c.c, [b"SET", b"k", b"v"])
    assert parked.resumed == 1


def test_one_flush_callback():
    """Output leaves through Server.before_sleep only: nothing in the server
    schedules a flush of its own (the bus transport's frames for gossip
    that no command caused are gossip/'s)."""
    scheduled = []
    for path in SOURCES:
        rel = str(path.relative_to(ROOT))
        if rel.startswith(("pynode/proxy/", "pynode/dashboard/", "gossip/")):
            continue                      # separate programs / the bus
        for node in ast.walk(_tree(path)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "call_soon" and node.args):
                target = ast.unparse(node.args[0])
                if "flush" in target or "before_sleep" in target:
                    scheduled.append((rel, target))
    assert {t for _, t in scheduled} == {"self.before_sleep"}
    assert {p for p, _ in scheduled} == {"pynode/server.py"}


def test_one_request_parser():
    """resp.RequestParser reads clients and the replica's master link; no
    other module parses RESP requests."""
    bad = []
    for path in SOURCES:
        rel = str(path.relative_to(ROOT))
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Parser") \
                    and not node.name.endswith("ReplyParser") \
                    and rel != "pynode/resp.py" and not rel.startswith("pynode/proxy/"):
                bad.append("%s class %s" % (rel, node.name))
            if isinstance(node, ast.FunctionDef) and node.name in ("parse_command",
                                                                   "parse_commands"):
                bad.append("%s def %s" % (rel, node.name))
    assert bad == []
    # the AOF loader reads its files with the parser's file mode, and parses nothing itself
    aof = (ROOT / "storage" / "aof.py").read_text()
    assert "RequestParser.iter_file(" in aof and "hiredis" not in aof and "b\"\\r\\n\"" not in aof


def test_request_parser_file_mode():
    """RequestParser.iter_file (the AOF loader): annotations skipped, the offset of the first damaged byte, a short read at an
    end inside a command; hiredis and the strict parser agree."""
    import pytest

    from pynode.resp import FileFormatError, Incomplete, RequestParser, file_offsets
    set_k = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"
    data = b"#TS:1\r\n" + set_k + b"#TS:2\r\n" + set_k
    for fast in (True, False):
        assert list(RequestParser.iter_file(data, fast=fast)) == [[b"SET", b"k", b"v"]] * 2
        assert list(RequestParser.iter_file(set_k + set_k, fast=fast)) == [[b"SET", b"k", b"v"]] * 2
        with pytest.raises(Incomplete):
            list(RequestParser.iter_file(set_k + set_k[:-3], fast=fast))
        with pytest.raises(FileFormatError) as e:
            list(RequestParser.iter_file(set_k + b"PING\r\n", fast=fast))
        assert e.value.offset == len(set_k) and "expected '*'" in e.value.what
    # the strict parser checks the CRLF after a bulk (hiredis, as Redis's loader, does not)
    with pytest.raises(FileFormatError) as e:
        list(RequestParser.iter_file(set_k[:-2] + b"XX" + set_k, fast=False))
    assert e.value.offset == len(set_k) - 2 and "CRLF" in e.value.what
    ends: list = []
    list(RequestParser.iter_file(data, ends=ends))
    ts = len(b"#TS:1\r\n")
    assert ends == [ts + len(set_k), 2 * (ts + len(set_k))]
    # (end of command k, start of the next past the annotations), for truncation messages
    assert file_offsets(data, 0) == (0, ts)
    assert file_offsets(data, 1) == (ts + len(set_k), 2 * ts + len(set_k))


def test_request_parser_units_count_every_byte():
    """feed_units (the replica's master link): each unit's size, whatever the
    split of the stream, so the replication offset is exact."""
    from pynode.resp import RequestParser
    stream = (b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nvv\r\n"   # multibulk
              b"\n"                                           # keepalive newline
              b"*0\r\n"                                       # empty multibulk
              b"PING\r\n"                                     # inline
              b"*1\r\n$5\r\nMULTI\r\n")
    want = [([b"SET", b"k", b"vv"], 28), ([], 1), ([], 4), ([b"PING"], 6),
            ([b"MULTI"], 15)]
    assert RequestParser().feed_units(stream) == want
    for step in (1, 2, 3, 7):
        p = RequestParser()
        got = []
        for i in range(0, len(stream), step):
            got += p.feed_units(stream[i:i + step])
        assert got == want and p.pending() == 0
    p = RequestParser()
    assert p.feed_units(b"*1\r\n$3\r\nGET\r\n*x\r\n") == [([b"GET"], 13)]
    assert p.error == "Protocol error: invalid multibulk length"


def test_invariants_hold_and_catch_a_broken_state():
    import pytest
    from pynode.replication import (FAILOVER_IN_PROGRESS, LINK_CONNECTED, LINK_HANDSHAKE,
                                    LINK_NONE, link_step_allowed)
    srv = InProc()
    c = srv.client()
    s = srv.srv
    for i in range(200):
        c.call("SET", "k%d" % i, "v")
        c.call("PEXPIRE", "k%d" % i, 100000 + i)
    c.call("HSET", "{tag}h", "f", "v")
    s.check_invariants()
    db = s.ks.db(0)
    db.expires[b"missing"] = 1               # an expiry without its key
    with pytest.raises(AssertionError, match="expiry of a missing key"):
        s.check_invariants()
    del db.expires[b"missing"]
    db.slots[0][b"k1"] = b"v"                # a key in another slot's dict
    with pytest.raises(AssertionError, match="in slot 0"):
        s.check_invariants()
    del db.slots[0][b"k1"]
    s.check_invariants()
    # the replica link and FAILOVER move only along their tables
    repl = s.replication
    assert link_step_allowed(LINK_HANDSHAKE, LINK_CONNECTED)
    assert not link_step_allowed(LINK_NONE, LINK_CONNECTED)
    assert not link_step_allowed(LINK_NONE, LINK_NONE)
    with pytest.raises(AssertionError, match="replica link none -> connected"):
        repl.set_link_state(LINK_CONNECTED)
    with pytest.raises(AssertionError, match="failover no-failover -> failover-in-progress"):
        repl.set_failover_state(FAILOVER_IN_PROGRESS)
    assert repl.state == LINK_NONE


class _Loop:
    """Records what the server schedules instead of running an event loop."""

    def __init__(self) -> None:
        self.soon = []

    def call_soon(self, fn, *args):
        self.soon.append((fn, args))

    def call_later(self, delay, fn, *args):
        return None


def test_before_sleep_flushes_once_in_redis_order():
    """AOF, then the replication stream, then client replies, then bus frames:
    all from one callback, scheduled once however many clients wrote."""
    srv = InProc()
    s = srv.srv
    order = []

    class _Aof:
        buf = bytearray()

        def feed(self, dbid, argv):
            self.buf += b"x"

        def flush(self):
            order.append("aof")
            self.buf.clear()

    class _Bus:
        def flush_frames(self):
            order.append("bus")

    class _Cluster:
        transport = _Bus()

    a, b = srv.client(), srv.client()
    s.loop = _Loop()
    s.aof = _Aof()
    repl = s.replication
    repl.create_backlog()                     # as when a replica attached
    repl.flush = lambda: order.append("repl")
    for cl in (a, b):
        cl.t.write = lambda data, _o=order: _o.append("reply")
    try:
        a.c.run([[b"SET", b"k", b"1"]])
        b.c.run([[b"SET", b"k", b"2"], [b"GET", b"k"]])
        assert [fn.__name__ for fn, _ in s.loop.soon] == ["before_sleep"]
        s.cluster = _Cluster()                # its frames leave last
        s.loop.soon[0][0]()
        assert order == ["aof", "repl", "reply", "reply", "bus"]
        assert not s.sleep_pending and not s.write_queue
    finally:
        s.cluster = None
        s.aof = None


def test_each_invariant_check_trips_on_its_broken_state(tmp_path):
    """PYNODE_CHECK_INVARIANTS's checks, each shown to fail: the AOF's byte
    offsets and manifest, and the keyspace's slot dicts against its expiry
    index, broken in place one at a time (and repaired: the state checks clean
    again after each)."""
    import heapq
    import os

    import pytest

    from storage.slots import keyslot
    srv = InProc(appendonly="yes", dir=str(tmp_path))
    s = srv.srv
    s.load_dataset()                          # creates the base, incr file, manifest
    c = srv.client()
    for i in range(50):
        c.call("SET", "k%d" % i, "v")
        c.call("PEXPIRE", "k%d" % i, 100000 + i)
    s.aof.flush()
    s.check_invariants()
    aof = s.aof
    assert aof.written > 0 and os.fstat(aof.fd).st_size == aof.written

    def trips(match: str) -> None:
        with pytest.raises(AssertionError, match=match):
            s.check_invariants()

    # the AOF: bytes written vs the incr file, fsynced vs written
    aof.written += 1
    trips("incr file size")
    aof.written -= 1
    synced = aof.synced
    aof.synced = aof.written + 1
    trips("fsynced more bytes than written")
    aof.synced = synced
    os.write(aof.fd, b"*1\r\n$4\r\nPING\r\n")    # bytes the counters do not know of
    trips("incr file size")
    aof.written += 14
    s.check_invariants()
    # the manifest: in memory vs on disk, and the file appended to vs its last incr
    with open(aof.manifest_path, "ab") as fh:
        fh.write(b"file appendonly.aof.9.incr.aof seq 9 type i\n")
    trips("manifest differs from its file")
    aof.persist_manifest(aof.manifest)
    s.check_invariants()
    name = aof.incr_name
    aof.incr_name = "appendonly.aof.99.incr.aof"
    trips("another file than the last incr")
    aof.incr_name = name
    s.check_invariants()
    # the keyspace: each key in its slot's dict, each expiry a key's and in the heap
    db = s.ks.db(0)
    db.expires[b"missing"] = 1
    trips("expiry of a missing key")
    del db.expires[b"missing"]
    when = db.expires[b"k3"]
    db.heap.remove((when, b"k3"))
    trips("not in the heap")
    db.heap.append((when, b"k3"))
    heapq.heapify(db.heap)
    s.check_invariants()
    slot = keyslot(b"k5")
    other = (slot + 1) % len(db.slots)
    db.slots[other][b"k5"] = db.slots[slot].pop(b"k5")
    trips("in slot %d" % other)
    db.slots[slot][b"k5"] = db.slots[other].pop(b"k5")
    s.check_invariants()
