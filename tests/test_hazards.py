"""Small Redis 7.0 behaviours compared with redis-server 7.0.15: COPY keeps
each encoding, SORT with several GET patterns and STORE, OBJECT IDLETIME and
the commands that leave it alone, maxclients against RLIMIT_NOFILE (start-up
and CONFIG SET), AOF rewrite status fields, LOLWUT VERSION 6."""

from __future__ import annotations

import random
import re
import resource
import subprocess
import sys
import time

import pytest
import redis

from tests import compare
from tests.helpers import Proc, free_port, wait_ping, wait_until

DEBUG = ["--enable-debug-command", "yes"]


@pytest.fixture(scope="module")
def pair():
    """(pynode, redis-server), both with DEBUG enabled."""
    procs = []
    try:
        for rs in (False, True):
            procs.append(Proc(DEBUG, redis_server=rs).start())
        yield tuple(procs)
    finally:
        for p in procs:
            p.cleanup()


def both(pair, script, resp: int = 2):
    assert compare.mismatches([p.port for p in pair], script, resp) == []


# ------------------------------------------------------------------ COPY
LONG = "x" * 100
COPY_SETUP = [
    "FLUSHALL",
    "SADD si 1 2 3", "SADD sh a b c", "SADD s2 1 2 3 x", "SREM s2 x",
    "SADD sbig " + " ".join(str(i) for i in range(600)),
    "RPUSH ll a b c",
    "CONFIG SET list-max-listpack-size 4", "RPUSH lq 1 2 3 4 5 6 7 8 9",
    "CONFIG SET list-max-listpack-size -2",
    "HSET hl a 1", "HSET hh a " + LONG, "HSET hh2 a " + LONG, "HSET hh2 a 1",
    "ZADD zl 1 a", "ZADD zs 1 " + LONG, "ZADD zs2 1 a 2 " + LONG, "ZREM zs2 " + LONG,
    "SET n 12345", "SET big 123456789012", "SET neg -3", "SET f 1.5",
    "INCRBYFLOAT f2 1.5", "SET e44 " + "e" * 44, "SET r45 " + "r" * 45,
    "SET d21 123456789012345678901", "APPEND app x", "SETRANGE rng 0 x",
    "SET sb 1", "SETBIT sb 3 1",
    "XADD st 1-1 a 1", "PFADD hll a b c",
]
COPY_KEYS = ["si", "sh", "s2", "sbig", "ll", "lq", "hl", "hh", "hh2", "zl", "zs", "zs2",
             "n", "big", "neg", "f", "f2", "e44", "r45", "d21", "app", "rng", "sb",
             "st", "hll"]


def test_copy_keeps_every_encoding(pair):
    script = list(COPY_SETUP)
    for k in COPY_KEYS:
        script += ["OBJECT ENCODING " + k,
                   "COPY %s c_%s" % (k, k), "OBJECT ENCODING c_" + k,
                   "COPY %s %s DB 1" % (k, k), "SELECT 1", "OBJECT ENCODING " + k,
                   "DEBUG DIGEST-VALUE " + k, "SELECT 0", "DEBUG DIGEST-VALUE c_" + k,
                   "COPY %s c_%s REPLACE" % (k, k), "OBJECT ENCODING c_" + k]
    both(pair, script)
    mine = pair[0].client()
    assert mine.object("encoding", "c_si") == b"intset"
    assert mine.object("encoding", "c_s2") == b"hashtable"
    assert mine.object("encoding", "c_hh2") == b"hashtable"
    assert mine.object("encoding", "c_zs2") == b"skiplist"
    mine.close()


# ------------------------------------------------------------------ SORT
def _sort_case(rng: random.Random, kind: str):
    elems = [rng.choice(["1", "2", "3", "10", "-1", "a", "b", "x{y}", "*", "3.5", "",
                         "ab*", "k->f"]) for _ in range(rng.randint(0, 6))]
    setup = [["FLUSHALL"]]
    if elems:
        if kind == "list":
            setup.append(["RPUSH", "src", *elems])
        else:
            pairs = []
            for i, e in enumerate(elems):
                pairs += [str(i), e]
            setup.append(["ZADD", "src", *pairs])
    for e in sorted(set(elems)):
        if rng.random() < 0.6:
            setup.append(["SET", "w_" + e, str(rng.randint(0, 5))])
        if rng.random() < 0.6:
            setup.append(["HSET", "h_" + e, "f", rng.choice(["v1", "", "7"]), "g", "gg"])
        if rng.random() < 0.2:
            setup.append(["RPUSH", "w2_" + e, "x"])
    setup += [["SET", "plain", "P"], ["HSET", "hp", "f", "HP"]]
    pats = ["#", "w_*", "h_*->f", "h_*->g", "h_*->", "h_*->nope", "w2_*", "plain",
            "hp->f", "*", "#->f", "w_*->f", "h_*->f*", "*->f", "h_->f", "x*y"]
    cmd = ["SORT", "src"]
    if rng.random() < 0.5:
        cmd += ["BY", rng.choice(["w_*", "h_*->f", "nosort", "plain", "w2_*", "#"])]
    if rng.random() < 0.3:
        cmd += ["LIMIT", str(rng.randint(-1, 3)), str(rng.randint(-1, 4))]
    for _ in range(rng.randint(1, 4)):
        cmd += ["GET", rng.choice(pats)]
    if rng.random() < 0.4:
        cmd.append("ALPHA")
    if rng.random() < 0.3:
        cmd.append(rng.choice(["ASC", "DESC"]))
    store = rng.random() < 0.4
    if store:
        cmd += ["STORE", rng.choice(["dst", "src", "w_1"])]
    after = [["TYPE", "dst"], ["LRANGE", "dst", "0", "-1"], ["TYPE", "w_1"]] if store else []
    return setup, cmd, after


def _run(conn, argv):
    return conn.call(*argv)


def test_sort_get_patterns_and_store_match_redis(pair):
    """Seeded SORT ... GET ... [STORE] on lists (input order is fixed, so
    every reply is deterministic) and sorted sets by score-unique weights."""
    conns = [compare.Conn(p.port) for p in pair]
    try:
        rng = random.Random(7)
        bad = []
        for _ in range(400):
            setup, cmd, after = _sort_case(rng, "list")
            for argv in setup:
                replies = [_run(c, argv) for c in conns]
                assert replies[0] == replies[1], (argv, replies)
            replies = [[_run(c, cmd)] + [_run(c, a) for a in after] for c in conns]
            if replies[0] != replies[1]:
                bad.append((setup, cmd, replies))
        assert bad == []
    finally:
        for c in conns:
            c.close()


SORT_FIXED = [
    "FLUSHALL",
    "ZADD z 1 a 2 b 3 c 4 d",
    "MSET w_a 4 w_b 3 w_c 2 w_d 1",
    "HSET h_a f A g 1", "HSET h_b f B", "HSET h_c g 3 f C", "HSET h_d f D", "SET s_a sa", "SET s_d sd",
    "SORT z BY w_* GET # GET h_*->f GET s_* GET h_*->g",
    "SORT z BY w_* GET # GET h_*->f GET s_* STORE dst",
    "LRANGE dst 0 -1", "TYPE dst",
    "SORT z BY w_* DESC LIMIT 1 2 GET h_*->f GET #",
    "SORT z BY h_*->g GET # GET w_*",
    "SORT z ALPHA BY h_*->f GET # GET h_*->f",
    "SORT z BY nosort GET # GET s_*",
    "SORT z BY nosort GET # STORE dst2", "LRANGE dst2 0 -1",
    "SADD s 1 2 3", "SORT s GET # GET w_* STORE dst3", "LRANGE dst3 0 -1",
    "SORT z GET",
    "SORT z BY w_* GET # STORE",
    "SORT_RO z BY w_* GET # GET h_*->f",
    "SORT nokey GET # STORE dst4", "EXISTS dst4",
]


def test_sort_fixed_get_store_scripts(pair):
    for resp in (2, 3):
        both(pair, SORT_FIXED, resp)


# ------------------------------------------------------------------ LOLWUT 6
LOLWUT6_SAME = [
    "LOLWUT VERSION 6 1 1", "LOLWUT VERSION 6 5 1", "LOLWUT VERSION 6 0 0",
    "LOLWUT VERSION 6 -5 -5", "LOLWUT VERSION 6 abc", "LOLWUT VERSION 6 10 abc",
    "LOLWUT VERSION 6 2000 1", "LOLWUT VERSION 59", "LOLWUT VERSION 7",
]
GRAYS = {"\x1b[0;30;40m \x1b[0m": "#", "\x1b[0;90;100m \x1b[0m": "=",
         "\x1b[0;37;47m \x1b[0m": "-", "\x1b[0;97;107m \x1b[0m": " "}
_CELL = re.compile("\x1b\\[[0-9;]+m \x1b\\[0m")


def _cells(line: str) -> str:
    out = "".join(GRAYS[m] for m in _CELL.findall(line))
    assert _CELL.sub("", line) == ""
    return out


@pytest.mark.parametrize("args,cols,rows", [((), 80, 20), (("30", "12"), 30, 12),
                                            (("1000", "3"), 1000, 3)])
def test_lolwut6_skyline_shape(pair, args, cols, rows):
    for proc in pair:
        c = proc.client()
        text = c.execute_command("LOLWUT", "VERSION", "6", *args).decode()
        c.close()
        lines = text.split("\n")
        assert lines[-3:] == ["Dedicated to the 8 bit game developers of past and present.",
                              "Original 8 bit image from Plaguemon by hikikomori. "
                              "Redis ver. 7.0.15", ""]
        grid = [_cells(x) for x in lines[:-3]]
        assert len(grid) == rows and all(len(g) == cols for g in grid)
        if rows >= 12:
            assert set(grid[0]) == {" "}                 # sky above the buildings
            assert "#" in "".join(grid[-1])              # foreground on the ground
            assert "-" in "".join(grid) and "=" in "".join(grid)


@pytest.mark.parametrize("resp", [2, 3])
def test_lolwut6_fixed_drawings_and_errors(pair, resp):
    both(pair, LOLWUT6_SAME, resp)


# ------------------------------------------------------------------ maxclients
def _start_limited(redis_server: bool, soft: int, hard: int, workdir):
    port = free_port()
    cmd = ["redis-server"] if redis_server else [sys.executable, "-m", "pynode"]
    cmd += ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir)]

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    p = subprocess.Popen(cmd, cwd=str(workdir), preexec_fn=limit,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return p, port


def _stop(p) -> str:
    if p.poll() is None:
        p.terminate()
    try:
        out = p.communicate(timeout=15)[0]
    except subprocess.TimeoutExpired:
        p.kill()
        out = p.communicate(timeout=5)[0]
    return out.decode("utf-8", "replace")


def _fd_lines(log: str) -> list:
    keep = ("maxclients", "open files", "ulimit", "Failed applying")
    return [line.split(" ", 6)[-1] for line in log.splitlines()
            if any(k in line for k in keep)]


def _maxclients_run(redis_server: bool, soft: int, hard: int, workdir) -> tuple:
    p, port = _start_limited(redis_server, soft, hard, workdir)
    replies = []
    try:
        wait_ping(port, timeout=15)
        c = redis.Redis(port=port, socket_timeout=10)
        replies.append(c.config_get("maxclients"))
        replies.append(c.info("clients")["maxclients"])
        for v in ("100", "169", "10000", "1", "168"):
            try:
                replies.append((v, c.config_set("maxclients", v)))
            except redis.ResponseError as e:
                replies.append((v, str(e)))
            replies.append(c.config_get("maxclients"))
        c.set("k", "v")                       # the refusal lost nothing
        replies.append(c.get("k"))
        c.close()
    finally:
        log = _stop(p)
    return replies, _fd_lines(log)


@pytest.mark.parametrize("soft,hard", [(200, 200), (4000, 4000), (200, 20000)])
def test_maxclients_follow_rlimit_nofile(tmp_path, soft, hard):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ref = _maxclients_run(True, soft, hard, tmp_path / "a")
    mine = _maxclients_run(False, soft, hard, tmp_path / "b")
    assert mine == ref
    if hard == soft:
        assert ref[0][0] == {"maxclients": str(soft - 32)}
        assert any("maxclients has been reduced to %d" % (soft - 32) in x for x in ref[1])
    else:
        assert ref[1][0] == ("Increased maximum number of open files to 10032 "
                             "(it was originally set to %d)." % soft)


def test_too_small_nofile_stops_start(tmp_path):
    outs = []
    for rs in (True, False):
        d = tmp_path / ("r" if rs else "p")
        d.mkdir()
        p, _ = _start_limited(rs, 20, 20, d)
        try:
            code = p.wait(timeout=15)
        finally:
            log = _stop(p)
        outs.append((code, _fd_lines(log)))
    assert outs[0] == outs[1]
    assert outs[0] == (1, ["Your current 'ulimit -n' of 20 is not enough for the server to "
                           "start. Please increase your open file limit to at least 10032. "
                           "Exiting."])


# ------------------------------------------------------------------ AOF rewrite status
def _aof_fields(c) -> dict:
    i = c.info("persistence")
    return {k: i[k] for k in ("aof_last_bgrewrite_status", "aof_last_write_status",
                              "aof_rewrites_consecutive_failures")}


def _rewrite(c) -> None:
    c.bgrewriteaof()
    wait_until(lambda: (c.info("persistence")["aof_rewrite_in_progress"] == 0
                        and c.info("persistence")["aof_rewrite_scheduled"] == 0),
               20, "the AOF rewrite")


def _aof_status_run(redis_server: bool) -> list:
    p = Proc(["--appendonly", "yes", "--aof-use-rdb-preamble", "no"] + DEBUG,
             redis_server=redis_server).start()
    out = []
    try:
        c = p.client()
        wait_until(lambda: c.info("persistence")["aof_rewrite_in_progress"] == 0, 15)
        c.execute_command("DEBUG", "POPULATE", "20000", "key", "100")
        _rewrite(c)
        out.append(_aof_fields(c))
        info = c.info("persistence")
        out.append(sorted(k for k in info if k.startswith("aof_")))
        out.append(("aof cow", info["aof_last_cow_size"] > 0, info["rdb_last_cow_size"]))
        c.bgsave()
        wait_until(lambda: c.info("persistence")["rdb_bgsave_in_progress"] == 0, 20, "BGSAVE")
        out.append(("rdb cow", c.info("persistence")["rdb_last_cow_size"] > 0))
        out.append(sorted(set(re.findall(r"Fork CoW for (RDB|AOF rewrite): current \d+ MB, "
                                         r"peak \d+ MB, average \d+ MB", p.log()))))
        # the child may write no more than 200 kB: its temp file fails
        # (redis-server dies of SIGXFSZ, pynode gets EFBIG)
        hard = resource.prlimit(p.proc.pid, resource.RLIMIT_FSIZE)[1]
        resource.prlimit(p.proc.pid, resource.RLIMIT_FSIZE, (200000, hard))
        _rewrite(c)
        out.append(_aof_fields(c))
        c.set("after", "failure")
        out.append(c.get("after"))
        resource.prlimit(p.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
        _rewrite(c)
        out.append(_aof_fields(c))
        out.append(c.dbsize())
        c.close()
    finally:
        p.cleanup()
    return out


def test_aof_rewrite_status_after_failure_and_success():
    ref = _aof_status_run(True)
    mine = _aof_status_run(False)
    assert mine == ref
    assert [ref[i]["aof_last_bgrewrite_status"] for i in (0, 5, 7)] == ["ok", "err", "ok"]
    assert ref[5]["aof_rewrites_consecutive_failures"] == 1
    assert ref[2][1] and ref[3][1] and ref[4] == ["AOF rewrite", "RDB"]


# ------------------------------------------------------------------ OBJECT IDLETIME
# (key, setup, the command run after the keys idled): does it count as an access?
IDLE_CASES = [
    ("get", "SET {k} v", "GET {k}"), ("strlen", "SET {k} v", "STRLEN {k}"),
    ("type", "SET {k} v", "TYPE {k}"), ("exists", "SET {k} v", "EXISTS {k}"),
    ("ttl", "SET {k} v EX 100", "TTL {k}"), ("pttl", "SET {k} v EX 100", "PTTL {k}"),
    ("expiretime", "SET {k} v EX 100", "EXPIRETIME {k}"),
    ("pexpiretime", "SET {k} v EX 100", "PEXPIRETIME {k}"),
    ("encoding", "SET {k} v", "OBJECT ENCODING {k}"),
    ("refcount", "SET {k} v", "OBJECT REFCOUNT {k}"),
    ("idletime", "SET {k} v", "OBJECT IDLETIME {k}"),
    ("freq", "SET {k} v", "OBJECT FREQ {k}"),
    ("debugobj", "SET {k} v", "DEBUG OBJECT {k}"),
    ("touch", "SET {k} v", "TOUCH {k}"), ("dump", "SET {k} v", "DUMP {k}"),
    ("getrange", "SET {k} v", "GETRANGE {k} 0 1"),
    ("append", "SET {k} v", "APPEND {k} w"),
    ("expire", "SET {k} v", "EXPIRE {k} 100"), ("persist", "SET {k} v EX 100", "PERSIST {k}"),
    ("memusage", "SET {k} v", "MEMORY USAGE {k}"),
    ("scan", "SET {k} v", "SCAN 0 MATCH {k}"), ("keys", "SET {k} v", "KEYS {k}"),
    ("sort", "RPUSH {k} 2 1", "SORT {k}"), ("llen", "RPUSH {k} 1", "LLEN {k}"),
    ("lrange", "RPUSH {k} 1", "LRANGE {k} 0 -1"), ("hget", "HSET {k} f v", "HGET {k} f"),
    ("hlen", "HSET {k} f v", "HLEN {k}"), ("smember", "SADD {k} a", "SISMEMBER {k} a"),
    ("zscore", "ZADD {k} 1 a", "ZSCORE {k} a"), ("xlen", "XADD {k} 1-1 a 1", "XLEN {k}"),
    ("pfcount", "PFADD {k} a", "PFCOUNT {k}"), ("getex", "SET {k} v", "GETEX {k}"),
    ("copysrc", "SET {k} v", "COPY {k} {k}:copy"), ("watch", "SET {k} v", "WATCH {k}"),
    ("wrongtype", "SET {k} v", "LLEN {k}"), ("untouched", "SET {k} v", "PING"),
]


def _aligned_second() -> None:
    """Sleep to 0.15-0.35 s after a wall-clock second: both servers' cached
    LRU clocks (refreshed by their cron at hz 10) then agree on the second."""
    while not 0.15 <= time.time() % 1 <= 0.35:
        time.sleep(0.02)


def _idle_conns(pair) -> list:
    """A connection to each server, flushed, default policy, at an aligned second."""
    conns = [compare.Conn(p.port) for p in pair]
    for c in conns:
        c.call("FLUSHALL")
        c.call("CONFIG", "SET", "maxmemory-policy", "noeviction")
    _aligned_second()
    return conns


def test_object_idletime_and_the_commands_that_touch(pair):
    conns = _idle_conns(pair)
    try:
        for name, setup, _ in IDLE_CASES:
            for c in conns:
                c.call(*setup.format(k="idle:" + name).split())
        time.sleep(2.1)                 # 2 whole LRU seconds later
        replies = {}
        for name, _, cmd in IDLE_CASES:
            k = "idle:" + name
            got = []
            for c in conns:
                r = c.call(*cmd.format(k=k).split())
                if name in ("dump", "debugobj", "memusage", "pttl", "expiretime",
                            "pexpiretime", "scan"):
                    r = r[:1]          # payload, address, sizes, times, cursor differ
                got.append((r, c.call("OBJECT", "IDLETIME", k)))
            replies[name] = got
        bad = {n: g for n, g in replies.items() if g[0] != g[1]}
        assert bad == {}
        idle = {n: g[0][1] for n, g in replies.items()}
        # Redis's LOOKUP_NOTOUCH readers, DEBUG OBJECT, MEMORY USAGE and the
        # key scans leave the clock alone; reads and writes reset it
        for n in ("type", "exists", "ttl", "pttl", "expiretime", "pexpiretime", "encoding",
                  "refcount", "idletime", "freq", "debugobj", "memusage", "scan", "keys",
                  "watch", "untouched"):
            assert idle[n] == b":2\r\n", n
        for n in ("get", "strlen", "touch", "dump", "getrange", "append", "expire",
                  "persist", "sort", "llen", "hget", "smember", "getex", "copysrc",
                  "wrongtype"):
            assert idle[n] == b":0\r\n", n
    finally:
        for c in conns:
            c.close()


def test_object_idletime_under_lfu_policy(pair):
    both(pair, ["FLUSHALL", "SET k v", "CONFIG SET maxmemory-policy allkeys-lfu",
                "OBJECT IDLETIME k", "OBJECT IDLETIME nokey", "OBJECT FREQ k",
                "CONFIG SET maxmemory-policy volatile-lru", "OBJECT FREQ k",
                "OBJECT IDLETIME nokey", "CONFIG SET maxmemory-policy noeviction"])


def test_lookups_leave_clocks_alone_while_a_child_saves(pair):
    """Redis updates no access clock while a fork child runs (no
    copy-on-write of every object read): a GET during a slow BGSAVE leaves
    OBJECT IDLETIME as it was, one after it resets it."""
    conns = _idle_conns(pair)
    try:
        for c in conns:
            # not small integers: Redis shares those objects, clocks included
            c.call("MSET", "a", "va", "b", "vb", "c", "vc")
        time.sleep(2.1)
        for c in conns:
            c.call("CONFIG", "SET", "rdb-key-save-delay", "700000")    # 0.7 s a key
            assert c.call("BGSAVE") == b"+Background saving started\r\n"
        during = []
        for c in conns:
            assert c.call("INFO", "persistence").count(b"rdb_bgsave_in_progress:1") == 1
            during.append((c.call("GET", "a"), c.call("OBJECT", "IDLETIME", "a")))
        # not reset: 2 s idle (3 when the fork ran into the next second)
        assert [g for g, _ in during] == [b"$2\r\nva\r\n"] * 2
        assert all(i in (b":2\r\n", b":3\r\n") for _, i in during), during
        for c in conns:
            wait_until(lambda c=c: b"rdb_bgsave_in_progress:0" in c.call("INFO", "persistence"),
                       20, "the BGSAVE")
            c.call("CONFIG", "SET", "rdb-key-save-delay", "0")
        after = [(c.call("GET", "a"), c.call("OBJECT", "IDLETIME", "a")) for c in conns]
        assert after == [(b"$2\r\nva\r\n", b":0\r\n")] * 2
    finally:
        for c in conns:
            c.close()


@pytest.mark.parametrize("reload", [["DEBUG", "RELOAD"], ["DEBUG", "LOADAOF"]])
def test_object_idletime_after_debug_reload_and_loadaof(pair, reload):
    """DEBUG RELOAD goes through dump.rdb: an LRU policy keeps idle times,
    others make the keys anew (idle 0), as DEBUG LOADAOF does."""
    conns = _idle_conns(pair)
    try:
        if reload[1] == "LOADAOF":
            for c in conns:
                c.call("CONFIG", "SET", "appendonly", "yes")
                wait_until(lambda c=c: b"aof_rewrite_in_progress:0\r\naof_rewrite_scheduled:0"
                           in c.call("INFO", "persistence"), 20, "the first AOF rewrite")
            _aligned_second()  # the rewrites took their time: align again
        for c in conns:
            c.call("SET", "plain", "value")
            c.call("SET", "lru", "value")
        time.sleep(2.1)
        out = []
        for c in conns:
            c.call("CONFIG", "SET", "maxmemory-policy",
                   "allkeys-lru" if reload[1] == "RELOAD" else "noeviction")
            out.append([c.call(*reload), c.call("OBJECT", "IDLETIME", "lru"), c.call("GET", "lru")])
            c.call("CONFIG", "SET", "maxmemory-policy", "noeviction")
            out[-1].append(c.call(*reload))
            out[-1].append(c.call("OBJECT", "IDLETIME", "plain"))
            c.call("CONFIG", "SET", "appendonly", "no")
        assert out[0] == out[1]
        kept = b":2\r\n" if reload[1] == "RELOAD" else b":0\r\n"
        assert out[0] == [b"+OK\r\n", kept, b"$5\r\nvalue\r\n", b"+OK\r\n", b":0\r\n"]
    finally:
        for c in conns:
            c.close()
