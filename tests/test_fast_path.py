"""The dispatcher's fast path (Server.execute_fast): pipelined commands run
without execute()'s slow paths, with the same replies and bookkeeping: INFO
commandstats, the slowlog, the latency monitor and histograms, and the hand
over to execute() for anything else in the same read (compared with
redis-server 7.0 where a client can see it)."""

from __future__ import annotations

import re
import socket
import time
from types import SimpleNamespace

import pytest

from pynode import latency as L
from storage import dump as dumpfmt
from storage.slots import keyslot
from tests.bench_commands import cluster_server
from tests.helpers import Proc
from tests.inproc import InClient, InProc, _decode


def enc(*args) -> bytes:
    a = [x if isinstance(x, bytes) else str(x).encode() for x in args]
    return b"*%d\r\n" % len(a) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in a)


# one read: fast commands, a slow one (CLIENT SETNAME), an arity error, an
# unknown command, a WRONGTYPE error, MULTI/EXEC (queued commands are not
# fast), then fast commands again
PIPELINE = [
    ("SET", "k", "1"), ("set", "k2", "v"), ("GET", "k"), ("INCR", "k"),
    ("CLIENT", "SETNAME", "fastpath"), ("GET", "k"), ("GET",), ("NOSUCH", "x"),
    ("LPUSH", "l", "a"), ("GET", "l"), ("MULTI",), ("INCR", "k"), ("GET", "k"), ("EXEC",),
    ("Get", "k"), ("PING",), ("ECHO", "e"), ("MSET", "a", "1", "b", "2"),
]


def send_all(port: int, data: bytes, replies: int) -> list:
    """Write `data` at once; read until `replies` replies were decoded."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(data)
        got = b""
        while len(_decode(got)) < replies:
            chunk = s.recv(65536)
            assert chunk, "connection closed"
            got += chunk
        return _decode(got)
    finally:
        s.close()


def commandstats(client) -> dict:
    """name -> (calls, rejected_calls, failed_calls)"""
    out = {}
    for name, v in client.info("commandstats").items():
        out[name[len("cmdstat_"):]] = (v["calls"], v["rejected_calls"], v["failed_calls"])
    return out


@pytest.fixture(scope="module")
def pair():
    p = Proc().start()
    r = Proc(redis_server=True).start()
    yield p, r
    p.cleanup()
    r.cleanup()


def test_pipeline_replies_and_commandstats_match_redis(pair):
    data = b"".join(enc(*a) for a in PIPELINE)
    got = []
    for s in pair:
        c = s.client()
        c.flushall()
        c.config_resetstat()
        replies = send_all(s.port, data, len(PIPELINE))
        got.append(([repr(x) for x in replies], commandstats(c)))
        c.close()
    (rp, sp), (rr, sr) = got
    assert rp == rr
    sr.pop("flushall", None)
    sp.pop("flushall", None)
    sr.pop("config|resetstat", None)
    sp.pop("config|resetstat", None)
    sp.pop("info", None)
    sr.pop("info", None)
    assert sp == sr
    assert sp["get"] == (5, 1, 1)       # 5 calls (1 in EXEC), the arity error, WRONGTYPE


def test_commandstats_and_histogram_count_every_call():
    srv = InProc()
    c = srv.client()
    c.c.data_received(enc("SET", "k", "v") * 100 + enc("GET", "k") * 50 + enc("SET", "k", "w"))
    replies = _decode(bytes(c.t.buf))
    assert replies == [b"OK"] * 100 + [b"v"] * 50 + [b"OK"]
    assert c.c.last_cmd == "set"
    info = c.call("INFO", "commandstats").decode()
    stats = {m[0]: (int(m[1]), int(m[2]))
             for m in re.findall(r"cmdstat_(\w+):calls=(\d+),usec=(\d+)", info)}
    assert stats["set"][0] == 101 and stats["get"][0] == 50
    assert stats["set"][1] > 0
    h = c.call("LATENCY", "HISTOGRAM", "set", "get")
    counts = {h[i]: h[i + 1][1] for i in range(0, len(h), 2)}
    assert counts == {b"set": 101, b"get": 50}


def _slow(handler, seconds):
    def slow(c, argv):
        time.sleep(seconds)
        return handler(c, argv)
    return slow


def test_slowlog_and_latency_monitor_catch_one_slow_call_in_a_pipeline():
    srv = InProc()
    c = srv.client()
    c.call("CONFIG", "SET", "slowlog-log-slower-than", "20000")
    c.call("CONFIG", "SET", "latency-monitor-threshold", "20")
    get = srv.srv.table[b"get"]
    fast = get.handler
    get.handler = _slow(fast, 0.03)
    try:
        c.c.data_received(enc("SET", "k", "v") * 20 + enc("GET", "k") + enc("SET", "k", "w") * 20)
    finally:
        get.handler = fast
    log = c.call("SLOWLOG", "GET")
    assert len(log) == 1
    assert log[0][3] == [b"GET", b"k"]
    assert log[0][2] >= 30000
    latest = c.call("LATENCY", "LATEST")
    assert [e[0] for e in latest] == [b"fast-command"]
    assert latest[0][2] >= 30


def test_slowlog_threshold_zero_logs_every_pipelined_call():
    srv = InProc()
    c = srv.client()
    c.call("CONFIG", "SET", "slowlog-log-slower-than", "0")
    c.call("SLOWLOG", "RESET")
    c.c.data_received(enc("SET", "k", "v") * 3 + enc("GET", "k") * 2)
    log = c.call("SLOWLOG", "GET", "-1")
    assert [e[3][0] for e in log][:5] == [b"GET", b"GET", b"SET", b"SET", b"SET"]


def test_slowlog_off_logs_nothing():
    srv = InProc()
    c = srv.client()
    c.call("CONFIG", "SET", "slowlog-log-slower-than", "-1")
    c.call("SLOWLOG", "RESET")
    c.c.data_received(enc("SET", "k", "v") * 3)
    assert c.call("SLOWLOG", "LEN") == 0


def test_fold_counts_repeated_durations():
    h = {}
    L._fold(h, [1000] * 5 + [2000, 2001] + [5 * 10 ** 9])
    assert sum(h.values()) == 8
    assert h[L.hist_index(1000)] == 5
    assert h[L.hist_index(2000)] == 2        # 2000 and 2001 share a bucket
    assert h[L.hist_index(L.HIST_MAX_NS)] == 1


def test_fast_path_stops_where_state_changes():
    """A command that gives the client slow-path state (MULTI, CLIENT REPLY
    OFF) in the middle of a read: the commands after it are treated by
    execute() (queued, replies dropped), as Redis does."""
    srv = InProc()
    c = srv.client()
    c.c.data_received(enc("SET", "k", "1") + enc("CLIENT", "REPLY", "OFF")
                      + enc("INCR", "k") + enc("CLIENT", "REPLY", "ON") + enc("GET", "k"))
    assert _decode(bytes(c.t.buf)) == [b"OK", b"OK", b"2"]
    c.t.buf.clear()
    c.c.data_received(enc("MULTI") + enc("INCR", "k") + enc("EXEC") + enc("GET", "k"))
    assert _decode(bytes(c.t.buf)) == [b"OK", b"QUEUED", [3], b"3"]


def test_a_replaced_execute_sees_every_pipelined_command():
    """divert_commands (a busy script) or any wrapper installed the same way:
    the fast path steps aside and every command goes through it."""
    srv = InProc()
    c = srv.client()
    seen = []

    def wrapper(client, argv):
        seen.append(argv[0])
        return b"-BUSY busy\r\n"

    srv.srv.divert_commands(wrapper)
    try:
        c.c.data_received(enc("GET", "k") * 3 + enc("SET", "k", "v"))
    finally:
        srv.srv.restore_commands()
    assert seen == [b"GET", b"GET", b"GET", b"SET"]
    assert len(_decode(bytes(c.t.buf))) == 4
    c.t.buf.clear()
    c.c.data_received(enc("SET", "k", "v") + enc("GET", "k"))
    assert _decode(bytes(c.t.buf)) == [b"OK", b"v"]


def test_restore_asking_into_an_importing_slot_runs_on_the_fast_path(tmp_path, monkeypatch):
    """A cluster node importing a slot: the RESTORE-ASKINGs a MIGRATE sends
    in one write are served by the fast path (routing.route is not asked),
    a command of that slot without ASKING still goes to routing (MOVED)."""
    import pynode.server
    monkeypatch.chdir(tmp_path)
    srv = cluster_server(str(tmp_path))
    other = "f" * 40
    slot = keyslot(b"{imp}")
    st = srv.cluster.state
    st.slot_owner[slot] = other
    st.myself.importing[slot] = other
    routed = []
    real_route = pynode.server.route
    monkeypatch.setattr(pynode.server, "route",
                        lambda s, c, cmd, argv: routed.append(argv[0]) or real_route(s, c, cmd, argv))
    c = InClient(srv)
    payload = dumpfmt.dumps(b"v")
    c.c.data_received(b"".join(enc("RESTORE-ASKING", "{imp}%d" % i, 0, payload)
                               for i in range(3)) + enc("SET", "other", "x"))
    assert _decode(bytes(c.t.buf)) == [b"OK"] * 4
    assert routed == []
    assert sorted(srv.ks.db(0).slots[slot]) == [b"{imp}0", b"{imp}1", b"{imp}2"]
    c.t.buf.clear()
    st.nodes[other] = st.myself                  # (a MOVED names the owner's address)
    c.c.data_received(enc("RESTORE-ASKING", "{imp}3", 0, payload) + enc("GET", "{imp}0"))
    replies = _decode(bytes(c.t.buf))
    assert replies[0] == b"OK" and str(replies[1]).startswith("MOVED %d " % slot)
    assert routed == [b"GET"]


def _importing_node(path: str):
    """A cluster node importing the slot of {imp} from another node."""
    srv = cluster_server(path)
    other = "f" * 40
    slot = keyslot(b"{imp}")
    st = srv.cluster.state
    st.slot_owner[slot] = other
    st.myself.importing[slot] = other
    st.nodes[other] = st.myself              # (a MOVED names the owner's address)
    st.slot_owner[keyslot(b"{away}")] = other    # a slot neither ours nor importing
    return srv


def _restore_run_commands() -> list:
    """RESTORE-ASKINGs as a MIGRATE batch sends them, with every way for one
    in the middle to differ: a key restored earlier in the run, a key that
    exists, a bad checksum, a newer RDB version, a key of another slot of
    ours, of a slot neither ours nor importing, a TTL, an option, a list."""
    good = dumpfmt.dumps(b"v")
    bad_crc = good[:-1] + bytes([good[-1] ^ 1])
    body = bytearray(good[:-8])
    body[-2] = 99                                   # RDB version 99
    newer = bytes(body) + dumpfmt._pack_crc(dumpfmt.rdb.crc64_of(bytes(body)))
    c = InProc().client()
    c.call("RPUSH", "l", "a", "b")
    lst = c.call("DUMP", "l")
    cmds = [("RESTORE-ASKING", "{imp}%d" % i, 0, good) for i in range(3)]
    cmds += [("RESTORE-ASKING", "{imp}1", 0, good), ("RESTORE-ASKING", "{imp}3", 0, good),
             ("RESTORE-ASKING", "{imp}old", 0, good), ("RESTORE-ASKING", "{imp}4", 0, good),
             ("RESTORE-ASKING", "{imp}5", 0, bad_crc), ("RESTORE-ASKING", "{imp}6", 0, good),
             ("RESTORE-ASKING", "{imp}7", 0, newer), ("RESTORE-ASKING", "mine", 0, good),
             ("RESTORE-ASKING", "{imp}8", 0, good), ("RESTORE-ASKING", "{away}1", 0, good),
             ("RESTORE-ASKING", "x{imp}9", 0, good), ("RESTORE-ASKING", "{imp}10", 5000, good),
             ("RESTORE-ASKING", "{imp}11", 0, good, "REPLACE"),
             ("RESTORE-ASKING", "{imp}12", 0, lst), ("GET", "mine"),
             ("restore-asking", "{imp}13", 0, good), ("RESTORE-ASKING", "{imp}14", 0, good),
             ("RESTORE-ASKING", "{imp}15", 0, b"\x00\x01")]
    return cmds


def _state(srv) -> dict:
    db = srv.ks.db(0)
    keys = {}
    for d in db.slots:
        for k, v in d.items():
            keys[k] = (dumpfmt.dumps(v), k in db.expires)
    stats = {name: (cmd.calls, cmd.rejected, cmd.failed) for name, cmd in
             ((n, srv.dispatch[n]) for n in (b"restore-asking", b"get"))}
    return {"keys": keys, "stats": stats, "dirty": srv.dirty,
            "errors": dict(srv.stats.errorstats)}


def test_a_run_of_restore_asking_answers_as_one_command_at_a_time(tmp_path, monkeypatch):
    """The RESTORE-ASKINGs of one read run as one call (Command.batch):
    replies, keys, commandstats, error stats, the dirty count and what is
    propagated (the AOF's and the replicas' feed) are those of the same
    commands sent one per read (execute() for each)."""
    import pynode.server
    monkeypatch.chdir(tmp_path)
    cmds = _restore_run_commands()
    out = {}
    for mode in ("one read", "one by one"):
        workdir = tmp_path / mode.replace(" ", "_")
        workdir.mkdir()
        srv = _importing_node(str(workdir))
        batches = []
        fed = []
        # (the absolute expiry a TTL becomes differs between the two runs)
        monkeypatch.setattr(srv, "propagate", lambda dbid, argv, fed=fed: fed.append(
            (dbid, [b"<abs>" if argv[-1] == b"ABSTTL" and i == 2 else bytes(a)
                    for i, a in enumerate(argv)])))
        monkeypatch.setattr(srv, "aof", SimpleNamespace(buf=b""))  # something to feed
        for name in (b"restore-asking", b"restore"):
            cmd = srv.dispatch[name]
            real_batch = cmd.batch
            monkeypatch.setattr(cmd, "batch", lambda c, cs, i, s, real_batch=real_batch:
                                batches.append(real_batch(c, cs, i, s) - i) or i + batches[-1])
        c = InClient(srv)
        c.call("ASKING")
        c.call("SET", "{imp}old", "o")
        if mode == "one read":
            c.c.data_received(b"".join(enc(*cmd) for cmd in cmds))
            replies = c.take()
        else:
            replies = [c.call(*cmd) for cmd in cmds]
        out[mode] = (replies, _state(srv), fed, batches)
    replies, state, fed, batches = out["one read"]
    assert replies == out["one by one"][0]
    assert state == out["one by one"][1]
    assert fed == out["one by one"][2]
    assert sum(batches) >= 10 and max(batches) == 3      # the runs took the batch path
    assert out["one by one"][3] == [] or max(out["one by one"][3]) <= 1
    assert replies[:3] == [b"OK"] * 3 and replies[3].startswith("BUSYKEY")
    assert replies[7] == "ERR DUMP payload version or checksum are wrong"
    assert replies[12].startswith("MOVED ")
    assert state["keys"][b"{imp}10"][1] is True and b"{imp}5" not in state["keys"]
    assert len(fed) == 1 + replies.count(b"OK")           # (the SET before the run)
