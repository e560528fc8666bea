"""Streams in process: a hypothesis state machine drives pynode (tests/inproc.py,
with a clock the test moves) and a plain-Python model of streams, groups and
PELs side by side; plus unit tests of the storage layer (listpack size
accounting, the radix-tree node count, id parsing, the RDB codec)."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from pynode.commands import CommandError
from pynode.commands.streams import parse_id
from storage import rdb, streams
from storage.listpack import lp_decode_raw
from tests.inproc import InProc, ReplyError

MAXSEQ = (1 << 64) - 1
KEYS = ["a", "b"]
GROUPS = ["g1", "g2"]
CONSUMERS = ["c1", "c2", "c3"]


def sid(i) -> bytes:
    return b"%d-%d" % i


class MStream:
    def __init__(self):
        self.entries: dict = {}          # (ms, seq) -> [f, v, ...]
        self.last = (0, 0)
        self.added = 0
        self.max_deleted = (0, 0)
        self.groups: dict = {}

    def ids(self):
        return sorted(self.entries)


class MGroup:
    def __init__(self, last):
        self.last = last
        self.pel: dict = {}              # id -> [consumer, time, count]
        self.consumers: dict = {}        # name -> seen time


class StreamMachine(RuleBasedStateMachine):
    @initialize()
    def start(self):
        self.p = InProc()
        self.p.now = 1_000_000
        self.c = self.p.client()
        self.m: dict = {}                # key -> MStream (or "expire" time attached)
        self.ttl: dict = {}

    # -------------------------------------------------------------- helpers
    def call(self, *args):
        return self.c.call(*[a if isinstance(a, bytes) else str(a) for a in args])

    def live(self, key):
        """The model's stream at key, expiring it as the server would."""
        t = self.ttl.get(key)
        if t is not None and t <= self.p.now:
            self.m.pop(key, None)
            self.ttl.pop(key, None)
        return self.m.get(key)

    # -------------------------------------------------------------- clock / expiry
    @rule(ms=st.integers(0, 5000))
    def tick(self, ms):
        self.p.now = self.p.now + ms

    @rule(key=st.sampled_from(KEYS), ms=st.integers(1, 3000))
    def pexpire(self, key, ms):
        s = self.live(key)
        assert self.call("PEXPIRE", key, ms) == (1 if s is not None else 0)
        if s is not None:
            self.ttl[key] = self.p.now + ms

    # -------------------------------------------------------------- XADD
    @rule(key=st.sampled_from(KEYS), kind=st.sampled_from(["*", "ms-*", "id"]),
          dms=st.integers(-1, 3), seq=st.integers(0, 3),
          fv=st.lists(st.sampled_from(["f", "g", "1", "-2", "x" * 70]), min_size=2, max_size=6))
    def xadd(self, key, kind, dms, seq, fv):
        if len(fv) % 2:
            fv = fv[:-1]
        s = self.live(key)
        last = s.last if s is not None else (0, 0)
        ms = max(0, last[0] + dms)
        err = None
        if kind == "*":
            arg = "*"
            now = self.p.now
            new = (now, 0) if now > last[0] else (last[0], last[1] + 1)
        elif kind == "ms-*":
            arg = "%d-*" % ms
            new = (last[0], last[1] + 1) if ms == last[0] else (ms, 0)
            if new <= last:
                err = "equal or smaller"
        else:
            arg = "%d-%d" % (ms, seq)
            new = (ms, seq)
            if new == (0, 0):
                err = "greater than 0-0"
            elif new <= last:
                err = "equal or smaller"
        r = self.call("XADD", key, arg, *fv)
        if err == "greater than 0-0":
            assert isinstance(r, ReplyError) and err in r
            return
        if s is None:
            s = self.m[key] = MStream()
            self.ttl.pop(key, None)
        if err:
            assert isinstance(r, ReplyError) and err in r, r
            return
        assert r == sid(new)
        s.entries[new] = [x.encode() for x in fv]
        s.last = new
        s.added += 1

    # -------------------------------------------------------------- XDEL / XTRIM
    @rule(key=st.sampled_from(KEYS), picks=st.lists(st.integers(0, 30), min_size=1, max_size=4))
    def xdel(self, key, picks):
        s = self.live(key)
        ids = s.ids() if s is not None else []
        targets = [ids[i] if i < len(ids) else (i, 9) for i in picks]
        r = self.call("XDEL", key, *[sid(t) for t in targets])
        n = 0
        if s is not None:
            for t in targets:
                if t in s.entries:
                    del s.entries[t]
                    s.max_deleted = max(s.max_deleted, t)
                    n += 1
        assert r == n

    @rule(key=st.sampled_from(KEYS), how=st.sampled_from(["MAXLEN", "MINID"]), n=st.integers(0, 12))
    def xtrim(self, key, how, n):
        s = self.live(key)
        if how == "MAXLEN":
            r = self.call("XTRIM", key, "MAXLEN", n)
            gone = s.ids()[:max(0, len(s.entries) - n)] if s is not None else []
        else:
            r = self.call("XTRIM", key, "MINID", "=", "%d-0" % n)
            gone = [i for i in s.ids() if i < (n, 0)] if s is not None else []
        for i in gone:
            del s.entries[i]
        assert r == len(gone)

    # -------------------------------------------------------------- reading
    @rule(key=st.sampled_from(KEYS), lo=st.integers(0, 12), hi=st.integers(0, 12),
          count=st.none() | st.integers(1, 5), rev=st.booleans(), excl=st.booleans())
    def xrange(self, key, lo, hi, count, rev, excl):
        s = self.live(key)
        start = ("(" if excl else "") + "%d" % lo
        end = "%d" % hi
        args = ["XREVRANGE", key, end, start] if rev else ["XRANGE", key, start, end]
        if count is not None:
            args += ["COUNT", count]
        r = self.call(*args)
        ids = [i for i in (s.ids() if s is not None else [])
               if (i > (lo, 0) if excl else i[0] >= lo) and i[0] <= hi]
        if rev:
            ids.reverse()
        if count is not None:
            ids = ids[:count]
        assert r == [[sid(i), s.entries[i]] for i in ids]

    @rule(key=st.sampled_from(KEYS), after=st.integers(0, 12), count=st.integers(0, 4))
    def xread(self, key, after, count):
        s = self.live(key)
        r = self.call("XREAD", "COUNT", count, "STREAMS", key, "%d-0" % after)
        ids = [i for i in (s.ids() if s is not None else []) if i > (after, 0)]
        if count:
            ids = ids[:count]
        if not ids:
            assert r is None
        else:
            assert r == [[key.encode(), [[sid(i), s.entries[i]] for i in ids]]]

    # -------------------------------------------------------------- groups
    @rule(key=st.sampled_from(KEYS), g=st.sampled_from(GROUPS), at=st.sampled_from(["0", "$", "5"]),
          mk=st.booleans())
    def xgroup_create(self, key, g, at, mk):
        s = self.live(key)
        r = self.call("XGROUP", "CREATE", key, g, at, *(["MKSTREAM"] if mk else []))
        if s is None and not mk:
            assert isinstance(r, ReplyError) and "requires the key to exist" in r
            return
        if s is None:
            s = self.m[key] = MStream()
        if g in s.groups:
            assert r == ReplyError("BUSYGROUP Consumer Group name already exists")
            return
        assert r == b"OK"
        s.groups[g] = MGroup(s.last if at == "$" else (int(at), 0))

    @rule(key=st.sampled_from(KEYS), g=st.sampled_from(GROUPS), at=st.integers(0, 12))
    def xgroup_setid(self, key, g, at):
        s = self.live(key)
        r = self.call("XGROUP", "SETID", key, g, at)
        if s is None or g not in s.groups:
            assert isinstance(r, ReplyError)
            return
        assert r == b"OK"
        s.groups[g].last = (at, 0)

    @rule(key=st.sampled_from(KEYS), g=st.sampled_from(GROUPS))
    def xgroup_destroy(self, key, g):
        s = self.live(key)
        r = self.call("XGROUP", "DESTROY", key, g)
        if s is None:
            assert isinstance(r, ReplyError)
            return
        assert r == (1 if s.groups.pop(g, None) is not None else 0)

    @rule(key=st.sampled_from(KEYS), g=st.sampled_from(GROUPS), c=st.sampled_from(CONSUMERS),
          create=st.booleans())
    def xgroup_consumer(self, key, g, c, create):
        s = self.live(key)
        r = self.call("XGROUP", "CREATECONSUMER" if create else "DELCONSUMER", key, g, c)
        if s is None or g not in s.groups:
            assert isinstance(r, ReplyError)
            return
        grp = s.groups[g]
        if create:
            assert r == (0 if c in grp.consumers else 1)
            grp.consumers.setdefault(c, self.p.now)
        else:
            pending = [i for i, n in grp.pel.items() if n[0] == c]
            assert r == (len(pending) if c in grp.consumers else 0)
            if c in grp.consumers:
                del grp.consumers[c]
                for i in pending:
                    del grp.pel[i]

    @rule(key=st.sampled_from(KEYS), g=st.sampled_from(GROUPS), c=st.sampled_from(CONSUMERS),
          count=st.integers(0, 3), noack=st.booleans())
    def xreadgroup_new(self, key, g, c, count, noack):
        s = self.live(key)
        args = ["XREADGROUP", "GROUP", g, c, "COUNT", count] + (["NOACK"] if noack else [])
        r = self.call(*args, "STREAMS", key, ">")
        if s is None or g not in s.groups:
            assert isinstance(r, ReplyError) and r.startswith("NOGROUP")
            return
        grp = s.groups[g]
        ids = [i for i in s.ids() if i > grp.last]
        if not ids:
            assert r is None
            return
        if count:
            ids = ids[:count]
        now = self.p.now
        grp.consumers[c] = now
        for i in ids:
            grp.last = i
            if not noack:
                grp.pel[i] = [c, now, 1]
        assert r == [[key.encode(), [[sid(i), s.entries[i]] for i in ids]]]

    @rule(key=st.sampled_from(KEYS), g=st.sampled_from(GROUPS), c=st.sampled_from(CONSUMERS),
          count=st.integers(0, 3))
    def xreadgroup_history(self, key, g, c, count):
        s = self.live(key)
        r = self.call("XREADGROUP", "GROUP", g, c, "COUNT", count, "STREAMS", key, "0")
        if s is None or g not in s.groups:
            assert isinstance(r, ReplyError)
            return
        grp = s.groups[g]
        now = self.p.now
        grp.consumers[c] = now
        mine = sorted(i for i, n in grp.pel.items() if n[0] == c)
        if count:
            mine = mine[:count]
        want = []
        for i in mine:
            if i in s.entries:
                want.append([sid(i), s.entries[i]])
                grp.pel[i][1] = now
                grp.pel[i][2] += 1
            else:
                want.append([sid(i), None])
        assert r == [[key.encode(), want]]

    @rule(key=st.sampled_from(KEYS), g=st.sampled_from(GROUPS),
          picks=st.lists(st.integers(0, 8), max_size=3, min_size=1))
    def xack(self, key, g, picks):
        s = self.live(key)
        pel = sorted(s.groups[g].pel) if s is not None and g in s.groups else []
        targets = [pel[i] if i < len(pel) else (i, 7) for i in picks]
        r = self.call("XACK", key, g, *[sid(t) for t in targets])
        n = 0
        for t in targets:
            if pel and t in s.groups[g].pel:
                del s.groups[g].pel[t]
                n += 1
        assert r == n

    @rule(key=st.sampled_from(KEYS), g=st.sampled_from(GROUPS), c=st.sampled_from(CONSUMERS),
          minidle=st.sampled_from([0, 1000, 4000]), picks=st.lists(st.integers(0, 8), min_size=1,
                                                                  max_size=3),
          justid=st.booleans(), force=st.booleans(), retry=st.none() | st.integers(0, 9),
          idle=st.none() | st.integers(0, 10000))
    def xclaim(self, key, g, c, minidle, picks, justid, force, retry, idle):
        s = self.live(key)
        ids = s.ids() if s is not None else []
        targets = [ids[i] if i < len(ids) else (i, 5) for i in picks]
        opts = (["JUSTID"] if justid else []) + (["FORCE"] if force else [])
        opts += ["RETRYCOUNT", retry] if retry is not None else []
        opts += ["IDLE", idle] if idle is not None else []
        r = self.call("XCLAIM", key, g, c, minidle, *[sid(t) for t in targets], *opts)
        if s is None or g not in s.groups:
            assert isinstance(r, ReplyError) and r.startswith("NOGROUP")
            return
        grp = s.groups[g]
        now = self.p.now
        dtime = now - idle if idle is not None else now
        if dtime < 0 or dtime > now:
            dtime = now
        want = []
        for t in targets:
            nack = grp.pel.get(t)
            if t not in s.entries:
                grp.pel.pop(t, None)
                continue
            if nack is None and force:
                nack = grp.pel[t] = [None, now, 0]
            if nack is None:
                continue
            if nack[0] is not None and minidle and now - nack[1] < minidle:
                continue
            grp.consumers[c] = now
            nack[0] = c
            nack[1] = dtime
            if retry is not None:
                nack[2] = retry
            elif not justid:
                nack[2] += 1
            want.append(sid(t) if justid else [sid(t), s.entries[t]])
        assert r == want

    @rule(key=st.sampled_from(KEYS), g=st.sampled_from(GROUPS), c=st.sampled_from(CONSUMERS),
          minidle=st.sampled_from([0, 2000]), start=st.integers(0, 8), count=st.integers(1, 4))
    def xautoclaim(self, key, g, c, minidle, start, count):
        s = self.live(key)
        r = self.call("XAUTOCLAIM", key, g, c, minidle, "%d-0" % start, "COUNT", count)
        if s is None or g not in s.groups:
            assert isinstance(r, ReplyError) and r.startswith("NOGROUP")
            return
        grp = s.groups[g]
        now = self.p.now
        todo = sorted(i for i in grp.pel if i >= (start, 0))
        attempts = count * 10
        claimed, deleted = [], []
        k = 0
        while attempts and count and k < len(todo):
            attempts -= 1
            i = todo[k]
            k += 1
            nack = grp.pel[i]
            if i not in s.entries:
                del grp.pel[i]
                deleted.append(sid(i))
                count -= 1
                continue
            if minidle and now - nack[1] < minidle:
                continue
            grp.consumers[c] = now
            nack[0], nack[1], nack[2] = c, now, nack[2] + 1
            claimed.append([sid(i), s.entries[i]])
            count -= 1
        cursor = sid(todo[k]) if k < len(todo) else b"0-0"
        assert r == [cursor, claimed, deleted]

    # -------------------------------------------------------------- inspection
    @rule(key=st.sampled_from(KEYS), g=st.sampled_from(GROUPS), minidle=st.sampled_from([0, 3000]),
          c=st.none() | st.sampled_from(CONSUMERS))
    def xpending(self, key, g, minidle, c):
        s = self.live(key)
        r = self.call("XPENDING", key, g)
        if s is None or g not in s.groups:
            assert isinstance(r, ReplyError) and r.startswith("NOGROUP")
            return
        grp = s.groups[g]
        pel = sorted(grp.pel)
        if not pel:
            assert r == [0, None, None, None]
        else:
            per = {}
            for n in grp.pel.values():
                per[n[0]] = per.get(n[0], 0) + 1
            assert r == [len(pel), sid(pel[0]), sid(pel[-1]),
                         [[n.encode(), b"%d" % per[n]] for n in sorted(per)]]
        args = ["XPENDING", key, g, "IDLE", minidle, "-", "+", 100] + ([c] if c else [])
        r = self.call(*args)
        now = self.p.now
        want = [[sid(i), grp.pel[i][0].encode(), now - grp.pel[i][1], grp.pel[i][2]] for i in pel
                if (c is None or grp.pel[i][0] == c)
                and (not minidle or now - grp.pel[i][1] >= minidle)]
        if c is not None and c not in grp.consumers:
            want = []
        assert r == want

    @rule(key=st.sampled_from(KEYS), g=st.sampled_from(GROUPS))
    def xinfo(self, key, g):
        s = self.live(key)
        r = self.call("XINFO", "GROUPS", key)
        if s is None:
            assert r == ReplyError("ERR no such key")
            return
        assert [(x[1], x[3], x[5], x[7]) for x in r] == \
            [(n.encode(), len(s.groups[n].consumers), len(s.groups[n].pel), sid(s.groups[n].last))
             for n in sorted(s.groups)]
        r = self.call("XINFO", "CONSUMERS", key, g)
        if g not in s.groups:
            assert isinstance(r, ReplyError) and r.startswith("NOGROUP")
            return
        grp = s.groups[g]
        now = self.p.now
        assert r == [[b"name", n.encode(),
                      b"pending", sum(1 for x in grp.pel.values() if x[0] == n),
                      b"idle", max(0, now - grp.consumers[n])] for n in sorted(grp.consumers)]

    @invariant()
    def lengths(self):
        if not hasattr(self, "p"):
            return
        for key in KEYS:
            s = self.live(key)
            assert self.call("XLEN", key) == (len(s.entries) if s is not None else 0)
            if s is not None:
                info = self.call("XINFO", "STREAM", key)
                assert info[7] == sid(s.last) and info[11] == s.added
                assert info[9] == sid(s.max_deleted)


TestStreamMachine = StreamMachine.TestCase
TestStreamMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None,
                                      suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------ storage units
def _random_stream(rng: random.Random, n: int, max_entries: int = 7) -> streams.Stream:
    from storage.values import LIMITS
    saved = LIMITS.stream_node_max_entries, LIMITS.stream_node_max_bytes
    LIMITS.stream_node_max_entries, LIMITS.stream_node_max_bytes = max_entries, 300
    try:
        s = streams.Stream()
        ms = 0
        for _ in range(n):
            ms += rng.choice([0, 1, 1, 1 << 40])
            nxt = max(s.last_id + 1, streams.make_id(ms, rng.randint(0, 2)))
            fv = []
            for _ in range(rng.randint(1, 3)):
                fv += [rng.choice([b"a", b"b", b"12", b"x" * 80]),
                       rng.choice([b"", b"v", b"-4097", b"8388608", b"9" * 19, b"y" * 200,
                                   str(rng.randint(-10 ** 12, 10 ** 12)).encode()])]
            s.add(nxt, fv)
            if rng.random() < 0.1:
                s.xdel([rng.choice(s.nodes[-1].ids)])
        return s
    finally:
        LIMITS.stream_node_max_entries, LIMITS.stream_node_max_bytes = saved


def test_listpack_size_accounting_is_exact():
    rng = random.Random(3)
    for _ in range(40):
        s = _random_stream(rng, rng.randint(1, 120))
        for node in s.nodes:
            blob = node.listpack()
            assert node.lp_bytes() == len(blob)
            items = lp_decode_raw(blob)
            assert items[0] == node.count and items[1] == (len(node.dead) if node.dead else 0)


def _naive_nodes(keys) -> int:
    """Node count of a maximally compressed radix tree, built the slow way."""
    def count(group, depth):
        if len(group) == 1:
            return 1 if depth == len(group[0]) else 2
        d = depth
        while len({k[d] for k in group}) == 1:
            d += 1
        n = (1 if d > depth else 0) + 1
        by = {}
        for k in group:
            by.setdefault(k[d], []).append(k)
        return n + sum(count(v, d + 1) for v in by.values())
    return count(sorted(keys), 0) if keys else 1


def test_radix_tree_node_count():
    rng = random.Random(9)
    for _ in range(200):
        keys = {(rng.choice([1, 2, 255, 1 << 40]) * rng.randint(0, 3) << 64
                 | rng.choice([0, 1, 256, 1 << 33]) * rng.randint(0, 2)).to_bytes(16, "big")
                for _ in range(rng.randint(1, 12))}
        s = streams.Stream()
        s.masters = sorted(int.from_bytes(k, "big") for k in keys)
        assert s.rax_nodes() == _naive_nodes(list(keys))
    assert streams.Stream().rax_nodes() == 1
    one = streams.Stream()
    one.masters = [5]
    assert one.rax_nodes() == 2                       # compressed key + leaf, as XINFO says


@pytest.mark.parametrize("arg,want", [
    (b"1-2", (1 << 64) | 2), (b"5", 5 << 64), (b"-", 0), (b"+", streams.MAX_ID),
    (b"01-2", (1 << 64) | 2), (b" 3-1", (3 << 64) | 1), (b"+3-1", (3 << 64) | 1),
    (b"18446744073709551615-18446744073709551615", streams.MAX_ID),
])
def test_parse_id_accepts_what_redis_accepts(arg, want):
    assert parse_id(arg, 0) == want


@pytest.mark.parametrize("arg", [b"", b"x", b"1-x", b"-1", b"18446744073709551616", b"1-2-3",
                                 b"1-", b"-5", b"1" * 200, b"0x10"])
def test_parse_id_rejects_what_redis_rejects(arg):
    with pytest.raises(CommandError, match="Invalid stream ID"):
        parse_id(arg, 0, strict=True)


def test_rdb_round_trip_keeps_everything():
    rng = random.Random(4)
    s = _random_stream(rng, 300)
    s.groups = {}
    g = s.groups[b"grp"] = streams.Group(s.nodes[1].ids[0], 7)
    c1 = g.create_consumer(b"c1", 123)
    g.create_consumer(b"empty", 456)
    for i in s.nodes[0].ids[:5]:
        n = streams.Nack(1000 + i % 97, c1)
        n.delivery_count = 3
        g.pel[i] = n
        c1.pel[i] = n
    s.groups[b"\xff\x00odd"] = streams.Group(0, -1)
    t, payload = streams.encode_rdb(s)
    back = rdb.DECODERS[t](rdb.Reader(payload))
    assert streams.encode_rdb(back) == (t, payload)
    assert back.range(0, streams.MAX_ID) == s.range(0, streams.MAX_ID)
    assert (back.length, back.last_id, back.first_id, back.max_deleted, back.entries_added) == \
        (s.length, s.last_id, s.first_id, s.max_deleted, s.entries_added)
    bg = back.groups[b"grp"]
    assert bg.entries_read == 7 and bg.last_id == g.last_id
    assert [(i, n.consumer.name, n.delivery_time, n.delivery_count) for i, n in bg.pel.items()] == \
        [(i, n.consumer.name, n.delivery_time, n.delivery_count) for i, n in g.pel.items()]
    assert bg.consumers[b"empty"].seen_time == 456
    assert back.groups[b"\xff\x00odd"].entries_read == -1


def test_copy_is_independent():
    p = InProc()
    c = p.client()
    c.call("XADD", "s", "1-1", "a", "1")
    c.call("XGROUP", "CREATE", "s", "g", "0")
    c.call("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">")
    assert c.call("COPY", "s", "t") == 1
    c.call("XADD", "t", "2-1", "b", "2")
    c.call("XACK", "t", "g", "1-1")
    c.call("XDEL", "t", "1-1")
    assert c.call("XLEN", "s") == 1 and c.call("XPENDING", "s", "g")[0] == 1
    assert c.call("XLEN", "t") == 1 and c.call("XPENDING", "t", "g")[0] == 0
    assert c.call("DUMP", "s") != c.call("DUMP", "t")
