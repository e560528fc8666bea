"""Stream commands on a real pynode process: redis-py for every command, and the
same command scripts sent to pynode and to redis-server 7.0 (the `real`
fixture) with the raw replies compared byte for byte, in RESP2 and RESP3.
Ids are explicit where * would differ; time-dependent numbers (idle times,
delivery and seen times) are masked only where they appear."""

from __future__ import annotations

import random
import threading
import time

import hiredis
import pytest
import redis

from tests.stream_compare import RawConn


# ------------------------------------------------------------------ helpers
def _decode(raw: bytes):
    r = hiredis.Reader()
    r.feed(raw)
    return r.gets()


def _mask(cmd, raw: bytes):
    """The reply with the numbers that depend on the clock masked: absolute
    times (> 1e12), XPENDING's idle column, XINFO CONSUMERS' idle."""
    def walk(o):
        if isinstance(o, list):
            return [walk(x) for x in o]
        if isinstance(o, dict):
            return {k: walk(x) for k, x in o.items()}
        if isinstance(o, int) and o > 10 ** 12:
            return "T"
        return o
    v = walk(_decode(raw))
    name = cmd[0].upper()
    if name == "XPENDING" and len(cmd) > 3 and isinstance(v, list):
        v = [[r[0], r[1], "IDLE", r[3]] if isinstance(r, list) and len(r) == 4 else r
             for r in v]
    if name == "XINFO" and cmd[1].upper() == "CONSUMERS" and isinstance(v, list):
        out = []
        for r in v:
            if isinstance(r, dict):
                r = {k: ("IDLE" if k == b"idle" else x) for k, x in r.items()}
            elif isinstance(r, list):
                r = [x if i != 5 else "IDLE" for i, x in enumerate(r)]
            out.append(r)
        v = out
    return v


def run_both(server, real, script, resp3=False, masked=False):
    """Differences between pynode's and redis-server's replies to script."""
    a, b = RawConn(server.port, resp3), RawConn(real.port, resp3)
    diffs = []
    try:
        for cmd in script:
            cmd = [str(x) for x in cmd]
            ra, rb = a.call(*cmd), b.call(*cmd)
            if ra != rb and not (masked and _mask(cmd, ra) == _mask(cmd, rb)):
                diffs.append((cmd, ra[:300], rb[:300]))
    finally:
        a.close()
        b.close()
    return diffs


def _cmds(text: str) -> list:
    """One command per line, arguments separated by spaces ('' for empty)."""
    out = []
    for line in text.strip().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(["" if a == "''" else a for a in line.split(" ")])
    return out


# ------------------------------------------------------------------ scripts
BASIC = _cmds("""
FLUSHALL
XADD s 1-1 a 1 b 2
XADD s 1-1 a 1
XADD s 0-0 a 1
XADD s2 0-* a 1
XADD s 1-* f v
XADD s 1-18446744073709551615 f v
XADD s 1-* f v
XADD s 2 f v
XADD s 3-x f v
XADD s - f v
XADD s + f v
XADD s 5-1 f
XADD s 5-1
XADD s MAXLEN 5
XADD s NOMKSTREAM 6-1 a b
XADD nokey NOMKSTREAM * a b
EXISTS nokey
XADD s MAXLEN ~ abc 7-1 a b
XADD s MAXLEN -1 7-1 a b
XADD s MAXLEN 5 MINID 5 7-1 a b
XADD s LIMIT 5 7-1 a b
XADD s MAXLEN 5 LIMIT 5 7-1 a b
XADD s MAXLEN ~ 5 LIMIT -1 7-1 a b
XADD s MAXLEN = 5 7-1 a b
XADD s MINID ~ 3 8-1 a b
XADD s MINID bad 8-2 a b
XADD s LIMIT 0 9-1 a b
XADD s 01-2 a b
XADD s +13-0 a ''
XADD s 18446744073709551616-0 a b
XADD s 18446744073709551615-18446744073709551614 a b
XADD s 18446744073709551615-* a b
XADD s * a b
XRANGE s - +
XLEN s
SET str v
XADD str * a b
XRANGE str - +
XLEN str
XDEL str 1-1
XINFO STREAM str
XREAD STREAMS str 0
XGROUP CREATE str g 0
XTRIM str MAXLEN 0
XSETID str 1-1
XACK str g 1-1
XPENDING str g
CONFIG SET stream-node-max-entries 4
DEL r
""") + [["XADD", "r", "%d-%d" % (i // 3 + 1, i % 3), "f%d" % (i % 4), "v%d" % i, "g", str(i * 7)]
        for i in range(1, 30)] + [["XADD", "s3", " 12-0", "a", "b"]] + _cmds("""
XRANGE r - +
XRANGE r 2 4
XRANGE r (2-1 (4-0
XRANGE r 2-1 4-0 COUNT 3
XRANGE r ( +
XRANGE r (- +
XRANGE r - (+
XRANGE r (18446744073709551615-18446744073709551615 +
XRANGE r - (0-0
XRANGE r - + COUNT 0
XRANGE r - + COUNT -3
XRANGE r - + COUNT
XRANGE r - + LIMIT 1
XRANGE r 5 3
XRANGE missing - +
XRANGE missing - + COUNT 0
XREVRANGE r + -
XREVRANGE r 4 2 COUNT 2
XREVRANGE r (4 (2
XREVRANGE r - +
XRANGE r 3 3
XRANGE r 3-1 3-1
XRANGE r abc +
XRANGE r 1-1-1 +
XDEL r 2-1 3-0 99-0 2-1
XDEL r bad
XDEL missing bad
XRANGE r - + COUNT 5
XREVRANGE r + - COUNT 5
XINFO STREAM r
XTRIM r MAXLEN 20
XTRIM r MAXLEN ~ 10
XTRIM r MINID 7
XINFO STREAM r
XTRIM r
XTRIM r LIMIT 10
XTRIM r MAXLEN ~ 1 LIMIT 1
XTRIM r FOO
XTRIM missing MAXLEN 0
XTRIM r MINID ~ 9 LIMIT 0
XINFO STREAM r FULL
XTRIM r MAXLEN 0
XINFO STREAM r
XLEN r
CONFIG SET stream-node-max-entries 100
XSETID missing 1-1
XSETID s2 0-0
XSETID s2 5-5 ENTRIESADDED -1
XSETID s2 5-5 MAXDELETEDID 6-0
XSETID s2 5-5 ENTRIESADDED 7 MAXDELETEDID 4-0
XINFO STREAM s2
XSETID s2 3-0
XSETID s2 5-5 FOO 1
XSETID s2 +
XSETID s2 10-0 ENTRIESADDED 0
XSETID s2 10-0 ENTRIESADDED
XGROUP CREATE nokey g $
XGROUP CREATE nokey g $ MKSTREAM
XINFO STREAM nokey
XGROUP CREATE nokey g $ MKSTREAM
XGROUP CREATE nokey g2 bad
XGROUP CREATE nokey g2 0 ENTRIESREAD -2
XGROUP CREATE nokey g2 0 ENTRIESREAD 5
XGROUP CREATE nokey g3 -
XGROUP CREATE nokey g3 0 FOO
XGROUP SETID nokey zz 0
XGROUP SETID nokey g +
XGROUP SETID nokey g - ENTRIESREAD 3
XINFO GROUPS nokey
XGROUP SETID nokey g 0 MKSTREAM
XGROUP DESTROY nokey g
XGROUP DESTROY nokey g
XGROUP DESTROY nokey2 g
XGROUP CREATECONSUMER nokey g2 c1
XGROUP CREATECONSUMER nokey g2 c1
XGROUP CREATECONSUMER nokey gx c1
XGROUP DELCONSUMER nokey g2 c1
XGROUP DELCONSUMER nokey g2 c1
XGROUP HELP
XGROUP HELP x
XGROUP CREATE nokey g
XGROUP FOO a b
XGROUP
xgroup Create nokey g 0 junk
XGROUP CREATE nokey g 0 ENTRIESREAD x
""")

GROUPS = _cmds("""
FLUSHALL
XADD s 1-1 a 1
XADD s 2-1 a 2
XADD s 3-1 b 3 c 4
XADD t 1-5 x y
XREAD STREAMS s
XREAD STREAMS s t 0
XREAD STREAMS s t 0 0
XREAD COUNT 1 STREAMS s t 0 1-5
XREAD STREAMS s $
XREAD STREAMS s +
XREAD STREAMS s >
XREAD GROUP g c STREAMS s 0
XREAD NOACK STREAMS s 0
XREAD COUNT -5 STREAMS s 0
XREAD BLOCK -1 STREAMS s 0
XREAD BLOCK x STREAMS s 0
XREAD FOO STREAMS s 0
XREAD COUNT 1
XREAD STREAMS missing 0
XREAD STREAMS s bad
XREAD STREAMS s s 0 2
XREAD BLOCK 0 STREAMS s 0
XREADGROUP STREAMS s >
XREADGROUP GROUP g c STREAMS s >
XGROUP CREATE s g 0
XREADGROUP GROUP g c STREAMS s $
XREADGROUP GROUP g c COUNT 2 STREAMS s >
XREADGROUP GROUP g c STREAMS s 0
XREADGROUP GROUP g c2 STREAMS s 0
XREADGROUP GROUP g c STREAMS s 1-1
XREADGROUP GROUP g c NOACK STREAMS s >
XREADGROUP GROUP g c STREAMS s >
XREADGROUP GROUP g c3 STREAMS s >
XINFO GROUPS s
XINFO CONSUMERS s g
XPENDING s g
XPENDING s g - + 10
XPENDING s g - + 10 c
XPENDING s g IDLE 0 - + 10
XPENDING s g IDLE 100000 - + 10
XPENDING s g - +
XPENDING s g IDLE 5 - +
XPENDING s nog
XPENDING missing g
XPENDING s g - + x
XPENDING s g (1-1 + 10 zz
XPENDING s g - + 0
XPENDING s g IDLE x - + 5
XPENDING s g a + 5
XPENDING s g - + 5 c extra
XGROUP CREATE s g2 $
XADD s 4-1 z 9
XREADGROUP GROUP g2 c STREAMS s > t
XREADGROUP GROUP g2 c STREAMS s t > >
XGROUP CREATE t g2 0
XREADGROUP GROUP g2 c STREAMS s t > >
XINFO GROUPS t
XACK s g 1-1 9-9
XACK s g bad
XACK s nog 1-1
XACK missing g 1-1
XACK s g 2-1 2-1
XPENDING s g
XCLAIM s g d 0 3-1
XCLAIM s g d 0 3-1 JUSTID
XCLAIM s g d x 3-1
XCLAIM s nog d 0 3-1
XCLAIM s g d 0 3-1 FOO
XCLAIM s g d 0 3-1 IDLE x
XCLAIM s g d 0 3-1 TIME x
XCLAIM s g d 0 3-1 RETRYCOUNT x
XCLAIM s g d 0 3-1 RETRYCOUNT 7 JUSTID
XPENDING s g - + 10
XCLAIM s g e 0 1-1 FORCE
XCLAIM s g e 0 1-1 4-1 FORCE JUSTID
XCLAIM s g e 0 9-9 FORCE
XCLAIM s g e 0 3-1 LASTID 10-0
XINFO GROUPS s
XCLAIM s g e 0 3-1 LASTID bad
XCLAIM s g e 100000 3-1
XCLAIM s g e -5 3-1 JUSTID
XCLAIM s g e 0 3-1 IDLE
XCLAIM s g e 0 3-1 TIME 1 IDLE 5 JUSTID
XCLAIM s g f 0 3-1 TIME 1000 RETRYCOUNT 3
XINFO STREAM s FULL
XDEL s 3-1
XCLAIM s g e 0 3-1
XPENDING s g
XADD a 1-1 f 1
XADD a 2-1 f 2
XADD a 3-1 f 3
XADD a 4-1 f 4
XADD a 5-1 f 5
XGROUP CREATE a g 0
XREADGROUP GROUP g c STREAMS a >
XAUTOCLAIM a g d 0 0 COUNT 2
XAUTOCLAIM a g d 0 3-1 COUNT 2 JUSTID
XAUTOCLAIM a g d 0 (4-1
XDEL a 1-1 2-1 3-1
XAUTOCLAIM a g e 0 0 COUNT 1
XPENDING a g
XAUTOCLAIM a g e 0 0 COUNT 1
XAUTOCLAIM a g e 0 0 COUNT 0
XAUTOCLAIM a g e 0 0 COUNT x
XAUTOCLAIM a g e x 0
XAUTOCLAIM a g e 0 bad
XAUTOCLAIM a nog e 0 0
XAUTOCLAIM a g e 0 0 FOO
XAUTOCLAIM a g e 100000 0
XAUTOCLAIM a g e 0 (18446744073709551615-18446744073709551615
XAUTOCLAIM a g e 0 0 COUNT 1152921504606846975
XAUTOCLAIM a g e 0 0 COUNT 1152921504606846976
XINFO STREAM a FULL
XINFO STREAM a FULL COUNT 1
XINFO STREAM a FULL COUNT 0
XINFO STREAM a FULL COUNT -1
XINFO STREAM a FOO
XINFO STREAM a FULL COUNT
XINFO STREAM a FULL CNT 1
XINFO STREAM a FULL COUNT x
XINFO CONSUMERS a nog
XINFO CONSUMERS missing g
XINFO GROUPS missing
XINFO HELP
XINFO FOO
XINFO STREAM
XGROUP DELCONSUMER a g e
XINFO CONSUMERS a g
XINFO STREAM s FULL
XINFO STREAM s
WATCH s
XREADGROUP GROUP g w STREAMS s >
XGROUP SETID s g 0
MULTI
PING
EXEC
WATCH s
XDEL s 4-1
MULTI
PING
EXEC
MULTI
XREAD BLOCK 0 STREAMS s $
XREADGROUP GROUP g c BLOCK 0 STREAMS s >
EXEC
OBJECT ENCODING s
TYPE s
COPY s s3
XINFO STREAM s3
XINFO GROUPS s3
RENAME s3 s4
XPENDING s4 g - + 9
COMMAND GETKEYS XREAD COUNT 2 STREAMS a b 0 0
COMMAND GETKEYS XREADGROUP GROUP g c STREAMS a b > >
""")


@pytest.mark.parametrize("resp3", [False, True], ids=["resp2", "resp3"])
def test_commands_and_errors_match_redis(server, real, resp3):
    assert run_both(server, real, BASIC, resp3) == []


@pytest.mark.parametrize("resp3", [False, True], ids=["resp2", "resp3"])
def test_groups_match_redis(server, real, resp3):
    assert run_both(server, real, GROUPS, resp3, masked=True) == []


# ------------------------------------------------------------------ random differential
def random_script(rng: random.Random, n: int) -> list:
    """Random stream and group commands on two keys, with explicit ids."""
    S = [["FLUSHALL"]]
    keys = ["s1", "s2"]
    ms = {k: 0 for k in keys}
    groups = ["g1", "g2"]
    cons = ["c1", "c2", "c3"]

    def rid(k):
        return "%d-%d" % (rng.randint(0, ms[k] + 1), rng.randint(0, 3))

    for _ in range(n):
        k = rng.choice(keys)
        op = rng.random()
        if op < 0.35:
            ms[k] += rng.choice([0, 1, 1, 2])
            idarg = rng.choice(["%d-*" % ms[k], "%d-%d" % (ms[k], rng.randint(0, 5))])
            fs = rng.choice([["a", str(rng.randint(0, 300))], ["a", "x", "b", "y"],
                             ["f%d" % rng.randint(0, 2), "v" * rng.randint(0, 90)]])
            pre = []
            if rng.random() < 0.15:
                how = rng.choice(["MAXLEN", "MINID"])
                pre = [how] + rng.choice([["~"], ["="], []])
                pre.append(str(rng.randint(0, 40)) if how == "MAXLEN" else rid(k))
                if "~" in pre and rng.random() < 0.5:
                    pre += ["LIMIT", str(rng.randint(0, 30))]
            S.append(["XADD", k] + pre + [idarg] + fs)
        elif op < 0.42:
            S.append(["XDEL", k] + [rid(k) for _ in range(rng.randint(1, 4))])
        elif op < 0.45:
            how = rng.choice(["MAXLEN", "MINID"])
            arg = str(rng.randint(0, 30)) if how == "MAXLEN" else rid(k)
            S.append(["XTRIM", k, how] + rng.choice([["~"], ["="], []]) + [arg])
        elif op < 0.50:
            S.append(["XGROUP", "CREATE", k, rng.choice(groups), rng.choice(["0", "$", rid(k)]),
                      "MKSTREAM"] + (["ENTRIESREAD", str(rng.randint(-1, 10))]
                                     if rng.random() < 0.3 else []))
        elif op < 0.53:
            S.append(["XGROUP", "SETID", k, rng.choice(groups), rng.choice(["0", "$", rid(k)])]
                     + (["ENTRIESREAD", str(rng.randint(-1, 10))] if rng.random() < 0.3 else []))
        elif op < 0.54:
            S.append(["XGROUP", "DESTROY", k, rng.choice(groups)])
        elif op < 0.56:
            S.append(["XGROUP", rng.choice(["CREATECONSUMER", "DELCONSUMER"]), k,
                      rng.choice(groups), rng.choice(cons)])
        elif op < 0.68:
            S.append(["XREADGROUP", "GROUP", rng.choice(groups), rng.choice(cons)]
                     + (["COUNT", str(rng.randint(0, 4))] if rng.random() < 0.7 else [])
                     + (["NOACK"] if rng.random() < 0.15 else [])
                     + ["STREAMS", k, rng.choice([">", ">", "0", rid(k)])])
        elif op < 0.72:
            S.append(["XACK", k, rng.choice(groups)] + [rid(k) for _ in range(rng.randint(1, 3))])
        elif op < 0.77:
            S.append(["XCLAIM", k, rng.choice(groups), rng.choice(cons),
                      str(rng.choice([0, 0, 10 ** 9])), rid(k), rid(k)]
                     + rng.choice([[], ["FORCE"], ["JUSTID"], ["TIME", "1000"], ["RETRYCOUNT", "5"],
                                   ["FORCE", "JUSTID", "TIME", "5000"], ["LASTID", rid(k)]]))
        elif op < 0.81:
            S.append(["XAUTOCLAIM", k, rng.choice(groups), rng.choice(cons),
                      str(rng.choice([0, 0, 10 ** 9])), rng.choice(["0", rid(k), "(" + rid(k)]),
                      "COUNT", str(rng.randint(1, 4))] + (["JUSTID"] if rng.random() < 0.3 else []))
        elif op < 0.84:
            S.append(["XSETID", k, rid(k)]
                     + (["ENTRIESADDED", str(rng.randint(0, 50))] if rng.random() < 0.3 else [])
                     + (["MAXDELETEDID", rid(k)] if rng.random() < 0.3 else []))
        else:
            S.append(rng.choice([["XINFO", "STREAM", k], ["XINFO", "STREAM", k, "FULL"],
                                 ["XINFO", "GROUPS", k],
                                 ["XINFO", "CONSUMERS", k, rng.choice(groups)],
                                 ["XPENDING", k, rng.choice(groups)],
                                 ["XPENDING", k, rng.choice(groups), "-", "+", "10"],
                                 ["XRANGE", k, "-", "+"], ["XREVRANGE", k, "+", "-", "COUNT", "3"],
                                 ["XLEN", k], ["XREAD", "COUNT", "3", "STREAMS", k, rid(k)]]))
    return S


@pytest.mark.parametrize("node_entries", [100, 3])
def test_random_sequences_match_redis(server, real, node_entries):
    """Random command sequences (XDEL/XTRIM fragmenting nodes, groups reading,
    claiming, moving their ids) give the same replies, including XINFO's
    radix-tree-nodes, entries-read and lag."""
    for port in (server.port, real.port):
        RawConn(port).call("CONFIG", "SET", "stream-node-max-entries", str(node_entries))
    try:
        for seed in range(5):
            script = random_script(random.Random(seed * 7 + node_entries), 250)
            assert run_both(server, real, script, masked=True) == [], "seed %d" % seed
    finally:
        for port in (server.port, real.port):
            RawConn(port).call("CONFIG", "SET", "stream-node-max-entries", "100")


# ------------------------------------------------------------------ blocking
def blocking_scenario(port: int, resp3: bool = False) -> list:
    """XREAD/XREADGROUP BLOCK situations; the replies in order."""
    out = []
    a, b, w = RawConn(port, resp3), RawConn(port, resp3), RawConn(port)

    def r(conn, *cmd):
        out.append((cmd, conn.call(*cmd)))

    def park(conn, *cmd):
        """Send a blocking command; wait until the server has parked it."""
        before = blocked()
        conn.send(*cmd)
        deadline = time.monotonic() + 10
        while blocked() <= before:
            assert time.monotonic() < deadline, "client did not block: %r" % (cmd,)
            time.sleep(0.005)

    def blocked() -> int:
        info = w.call("INFO", "clients")
        return int(info.split(b"blocked_clients:")[1].split(b"\r\n")[0])

    r(w, "FLUSHALL")
    r(w, "XADD", "s", "1-1", "a", "1")
    park(a, "XREAD", "BLOCK", "0", "STREAMS", "s", "$")             # $: after 1-1
    r(w, "XADD", "s", "2-1", "a", "2")
    out.append(("woken by XADD", a.read()))
    park(a, "XREAD", "BLOCK", "0", "STREAMS", "s", "t", "$", "$")   # several streams
    r(w, "XADD", "t", "1-1", "b", "1")
    out.append(("second stream", a.read()))
    r(a, "XREAD", "BLOCK", "50", "STREAMS", "s", "$")                # timeout: null
    r(w, "XGROUP", "CREATE", "s", "g", "$")
    park(a, "XREADGROUP", "GROUP", "g", "c1", "BLOCK", "0", "STREAMS", "s", ">")
    park(b, "XREADGROUP", "GROUP", "g", "c2", "BLOCK", "0", "COUNT", "1", "STREAMS", "s", ">")
    r(w, "XADD", "s", "3-1", "a", "3")
    out.append(("first waiter served", a.read()))
    out.append(("second still waits", b.pending(0.1)))
    r(w, "XADD", "s", "4-1", "a", "4")
    out.append(("second served", b.read()))
    park(a, "XREADGROUP", "GROUP", "g", "c1", "BLOCK", "0", "STREAMS", "s", ">")
    r(w, "DEL", "s")
    out.append(("key deleted", a.read()))
    r(w, "XADD", "s", "1-1", "a", "1")
    r(w, "XGROUP", "CREATE", "s", "g", "$")
    park(a, "XREADGROUP", "GROUP", "g", "c1", "BLOCK", "0", "STREAMS", "s", ">")
    r(w, "XGROUP", "DESTROY", "s", "g")
    out.append(("group destroyed", a.read()))
    r(w, "XGROUP", "CREATE", "s", "g", "$")
    park(a, "XREADGROUP", "GROUP", "g", "c1", "BLOCK", "0", "STREAMS", "s", ">")
    park(b, "XREAD", "BLOCK", "0", "STREAMS", "s", "$")
    r(w, "SET", "s", "x")
    out.append(("type changed", a.read()))
    out.append(("XREAD keeps waiting", b.pending(0.1)))
    r(w, "DEL", "s")
    r(w, "XADD", "s", "9-1", "z", "z")
    out.append(("XREAD served after re-creation", b.read()))
    r(w, "XGROUP", "CREATE", "s", "g", "$")
    park(a, "XREADGROUP", "GROUP", "g", "c1", "BLOCK", "0", "STREAMS", "s", ">")
    r(w, "MULTI")
    r(w, "XADD", "s", "10-1", "k", "v")
    r(w, "XADD", "s", "11-1", "k", "v")
    r(w, "EXEC")
    out.append(("served after EXEC", a.read()))
    park(b, "XREAD", "BLOCK", "0", "STREAMS", "s", "$")
    r(w, "MULTI")
    r(w, "XADD", "s", "12-1", "k", "v")
    r(w, "XDEL", "s", "12-1")
    r(w, "EXEC")
    out.append(("entry gone before serving", b.read()))
    park(b, "XREADGROUP", "GROUP", "g", "nk", "NOACK", "BLOCK", "0", "STREAMS", "s", ">")
    r(w, "XADD", "s", "13-1", "k", "v")
    out.append(("NOACK served", b.read()))
    r(w, "XINFO", "GROUPS", "s")
    r(a, "XREAD", "BLOCK", "0", "COUNT", "2", "STREAMS", "s", "0-0")  # data now: no block
    r(w, "MULTI")                                                    # no blocking in MULTI
    r(w, "XREAD", "BLOCK", "0", "STREAMS", "s", "$")
    r(w, "XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", "s", ">")
    r(w, "EXEC")
    for conn in (a, b, w):
        conn.close()
    return out


@pytest.mark.parametrize("resp3", [False, True], ids=["resp2", "resp3"])
def test_blocking_matches_redis(server, real, resp3):
    mine = blocking_scenario(server.port, resp3)
    theirs = blocking_scenario(real.port, resp3)
    assert any(b"UNBLOCKED the stream key no longer exists" in x[1] for x in mine)
    assert any(b"NOGROUP the consumer group this client was blocked on" in x[1] for x in mine)
    assert mine == theirs


def _wait_blocked(r, n: int = 1) -> None:
    deadline = time.monotonic() + 5
    while r.info("clients")["blocked_clients"] < n:
        assert time.monotonic() < deadline, "client did not block"
        time.sleep(0.01)


def test_xread_block_timeout_and_client_unblock(r, server):
    t0 = time.monotonic()
    assert not r.xread({"s": "$"}, block=150)
    assert 0.14 <= time.monotonic() - t0 < 3
    blocked = server.client()
    cid = blocked.client_id()
    got = []
    th = threading.Thread(target=lambda: got.append(blocked.xread({"s": "$"}, block=0)))
    th.start()
    _wait_blocked(r)
    assert r.client_unblock(cid) == 1           # TIMEOUT: the null reply
    th.join(5)
    assert not th.is_alive() and not got[0]
    errs = []

    def reader():
        try:
            blocked.xreadgroup("g", "c", {"s": ">"}, block=0)
        except redis.ResponseError as e:
            errs.append(str(e))

    r.xgroup_create("s", "g", "$", mkstream=True)
    th = threading.Thread(target=reader)
    th.start()
    _wait_blocked(r)
    assert r.client_unblock(cid, error=True) == 1
    th.join(5)
    assert errs == ["UNBLOCKED client unblocked via CLIENT UNBLOCK"]
    assert r.xinfo_consumers("s", "g") == []    # never served: never created
    blocked.close()


def test_xread_block_dollar_is_fixed_when_blocking(r, server):
    r.xadd("s", {"a": "1"}, id="5-0")
    c2 = server.client()
    got = []
    th = threading.Thread(target=lambda: got.append(c2.xread({"s": "$"}, block=5000)))
    th.start()
    _wait_blocked(r)
    r.xadd("s", {"b": "2"}, id="6-0")
    th.join(5)
    assert got == [[[b"s", [(b"6-0", {b"b": b"2"})]]]]
    c2.close()


def test_xreadgroup_block_serves_waiters_in_order(r, server):
    r.xgroup_create("s", "g", "$", mkstream=True)
    readers = [server.client() for _ in range(3)]
    got = {}

    def read(i):
        got[i] = readers[i].xreadgroup("g", "c%d" % i, {"s": ">"}, count=1, block=5000)

    threads = []
    for i in range(3):
        th = threading.Thread(target=read, args=(i,))
        th.start()
        threads.append(th)
        _wait_blocked(r, i + 1)
    for n in range(3):
        r.xadd("s", {"n": n}, id="%d-1" % (n + 1))
    for th in threads:
        th.join(5)
    assert [got[i][0][1][0][0] for i in range(3)] == [b"1-1", b"2-1", b"3-1"]
    rows = r.xpending_range("s", "g", "-", "+", 10)
    assert [(x["message_id"], x["consumer"]) for x in rows] == \
        [(b"1-1", b"c0"), (b"2-1", b"c1"), (b"3-1", b"c2")]
    for c in readers:
        c.close()


# ------------------------------------------------------------------ redis-py API
def test_redis_py_xadd_xrange_xlen_xdel_xtrim(r):
    i1 = r.xadd("s", {"f": "v"})
    assert r.type("s") == b"stream" and r.object("encoding", "s") == b"stream"
    ms, seq = i1.split(b"-")
    i2 = r.xadd("s", {"f": "w"}, id=b"%s-*" % ms)
    assert i2 == b"%s-%d" % (ms, int(seq) + 1)
    assert r.xadd("s", {"f": "x"}, maxlen=2, approximate=False)
    assert r.xlen("s") == 2
    assert [e[1] for e in r.xrange("s")] == [{b"f": b"w"}, {b"f": b"x"}]
    assert [e[1] for e in r.xrevrange("s", count=1)] == [{b"f": b"x"}]
    assert r.xdel("s", i2) == 1 and r.xdel("s", i2) == 0
    assert r.xadd("nope", {"a": "b"}, nomkstream=True) is None and not r.exists("nope")
    for i in range(10):
        r.xadd("t", {"n": i}, id="%d-0" % (i + 1))
    assert r.xtrim("t", minid="4-0", approximate=False) == 3
    assert r.xtrim("t", maxlen=5, approximate=False) == 2
    assert r.xtrim("t", maxlen=1, approximate=True) == 0       # ~ removes whole nodes only
    assert r.xadd("t", {"n": 1}, id="20-0", minid="10-0", approximate=False) == b"20-0"
    assert [e[0] for e in r.xrange("t")] == [b"10-0", b"20-0"]
    with pytest.raises(redis.ResponseError, match="equal or smaller"):
        r.xadd("t", {"n": 1}, id="20-0")
    assert r.execute_command("XSETID", "t", "30-0", "ENTRIESADDED", 50, "MAXDELETEDID", "25-0")
    info = r.xinfo_stream("t")
    assert info["last-generated-id"] == b"30-0" and info["entries-added"] == 50
    assert info["max-deleted-entry-id"] == b"25-0"


def test_redis_py_groups_claims_info(r):
    for i in range(1, 6):
        r.xadd("s", {"i": i}, id="%d-1" % i)
    assert r.xgroup_create("s", "g", id="0") is True
    assert r.xgroup_createconsumer("s", "g", "idle") == 1
    got = r.xreadgroup("g", "alice", {"s": ">"}, count=2)
    assert [e[0] for e in got[0][1]] == [b"1-1", b"2-1"]
    assert r.xreadgroup("g", "alice", {"s": "0"}, count=1)[0][1][0][0] == b"1-1"  # history
    p = r.xpending("s", "g")
    assert p["pending"] == 2 and p["min"] == b"1-1" and p["max"] == b"2-1"
    assert p["consumers"] == [{"name": b"alice", "pending": 2}]
    rows = r.xpending_range("s", "g", "-", "+", 10)
    assert [(x["message_id"], x["consumer"], x["times_delivered"]) for x in rows] == \
        [(b"1-1", b"alice", 2), (b"2-1", b"alice", 1)]
    assert r.xclaim("s", "g", "bob", 0, ["1-1"]) == [(b"1-1", {b"i": b"1"})]
    assert r.xclaim("s", "g", "bob", 0, ["2-1"], justid=True) == [b"2-1"]
    nxt, entries, deleted = r.xautoclaim("s", "g", "carol", 0, "0-0", count=1)
    assert nxt == b"2-1" and entries == [(b"1-1", {b"i": b"1"})] and deleted == []
    assert r.xack("s", "g", "1-1", "2-1", "9-9") == 2
    groups = r.xinfo_groups("s")
    assert groups[0]["name"] == b"g" and groups[0]["pending"] == 0
    assert groups[0]["last-delivered-id"] == b"2-1" and groups[0]["entries-read"] == 2
    assert groups[0]["lag"] == 3
    names = sorted(x["name"] for x in r.xinfo_consumers("s", "g"))
    assert names == [b"alice", b"bob", b"carol", b"idle"]
    info = r.xinfo_stream("s")
    assert info["length"] == 5 and info["groups"] == 1
    assert info["first-entry"] == (b"1-1", {b"i": b"1"})
    assert info["last-entry"] == (b"5-1", {b"i": b"5"})
    full = r.xinfo_stream("s", full=True)
    assert len(full["entries"]) == 5 and full["groups"][0]["name"] == b"g"
    assert r.xgroup_delconsumer("s", "g", "idle") == 0
    assert r.xgroup_setid("s", "g", "0") is True
    assert r.xgroup_destroy("s", "g") == 1
    assert r.xinfo_groups("s") == []


def test_xclaim_idle_and_delivery_counts(r):
    r.xadd("s", {"a": 1}, id="1-1")
    r.xgroup_create("s", "g", "0")
    r.xreadgroup("g", "c1", {"s": ">"})
    assert r.xclaim("s", "g", "c2", 60000, ["1-1"]) == []          # not idle enough
    assert r.xclaim("s", "g", "c2", 0, ["1-1"], idle=30000, justid=True) == [b"1-1"]
    row = r.xpending_range("s", "g", "-", "+", 1)[0]
    assert row["consumer"] == b"c2" and 30000 <= row["time_since_delivered"] < 35000
    assert row["times_delivered"] == 1                                 # JUSTID: no increment
    assert r.xclaim("s", "g", "c3", 20000, ["1-1"], retrycount=9)
    row = r.xpending_range("s", "g", "-", "+", 1)[0]
    assert row["consumer"] == b"c3" and row["times_delivered"] == 9
    assert row["time_since_delivered"] < 5000
    assert r.xpending_range("s", "g", "-", "+", 10, idle=60000) == []


def test_xadd_star_ids_follow_the_clock_and_never_go_back(r):
    ids = [r.xadd("s", {"a": i}) for i in range(50)]
    parsed = [tuple(map(int, i.split(b"-"))) for i in ids]
    assert parsed == sorted(parsed) and len(set(parsed)) == 50
    now_ms = int(time.time() * 1000)
    assert abs(parsed[-1][0] - now_ms) < 5000
    r.execute_command("XSETID", "s", "%d-0" % (now_ms + 10 ** 7))   # last id in the future
    assert r.xadd("s", {"a": "x"}) == b"%d-1" % (now_ms + 10 ** 7)


def test_keyspace_events_match_redis(server, real):
    def events(port):
        w, sub = RawConn(port), RawConn(port)
        w.call("FLUSHALL")
        w.call("CONFIG", "SET", "notify-keyspace-events", "Kt")
        sub.call("PSUBSCRIBE", "__keyspace@0__:*")
        for cmd in _cmds("""
                XADD s 1-1 a 1
                XADD s MAXLEN 1 2-1 a 2
                XADD s MAXLEN 5 3-1 a 3
                XDEL s 3-1
                XDEL s 9-9
                XTRIM s MAXLEN 0
                XTRIM s MAXLEN 0
                XSETID s 5-0
                XGROUP CREATE s g $
                XGROUP CREATE n g $ MKSTREAM
                XGROUP SETID s g 0
                XGROUP CREATECONSUMER s g c
                XGROUP CREATECONSUMER s g c
                XADD s 6-1 a 1
                XREADGROUP GROUP g c2 STREAMS s >
                XCLAIM s g c3 0 6-1
                XAUTOCLAIM s g c4 0 0
                XACK s g 6-1
                XGROUP DELCONSUMER s g c
                XGROUP DESTROY s g
                XADD s NOMKSTREAM 7-1 a 1
                XADD q NOMKSTREAM 7-1 a 1
                XADD m MINID ~ 0 1-1 a b"""):
            w.call(*cmd)
        w.call("CONFIG", "SET", "notify-keyspace-events", "")
        w.call("PUBLISH", "__keyspace@0__:end", "end")
        got = b""
        deadline = time.monotonic() + 5
        while b"$3\r\nend\r\n" not in got and time.monotonic() < deadline:
            got += sub.pending(0.1)
        w.close()
        sub.close()
        return got
    mine, theirs = events(server.port), events(real.port)
    assert b"xgroup-createconsumer" in mine and b"xtrim" in mine and b"xsetid" in mine
    assert mine == theirs


def test_keyspace_hits_and_misses(r):
    r.config_resetstat()
    r.xadd("s", {"a": 1}, id="1-1")
    r.xrange("s")
    r.xlen("missing")
    r.xread({"s": "0", "missing": "0"})          # each key looked up twice, as Redis
    st = r.info("stats")
    assert (st["keyspace_hits"], st["keyspace_misses"]) == (3, 3)
