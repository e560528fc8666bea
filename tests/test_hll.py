"""HyperLogLog: PFADD PFCOUNT PFMERGE PFDEBUG PFSELFTEST.

Against a real redis-server 7.0.15: the same PFADD/PFMERGE sequences give
byte-identical strings (GET) in both the sparse and the dense encodings and
the same counts; HLLs made by one server and SET into the other count the
same; error texts, PFDEBUG replies and propagation match. A hypothesis state
machine checks the sparse-encoding updates against a plain register array,
and the estimate's error is checked on large sets.
"""

from __future__ import annotations

import glob
import os
import random
import shutil
import tempfile
import time

import pytest
import redis
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from storage import hll
from tests.helpers import Proc
from tests.inproc import InProc, ReplyError


@pytest.fixture(scope="module")
def pair():
    p = Proc().start()
    r = Proc(redis_server=True).start()
    yield p.client(), r.client()
    p.cleanup()
    r.cleanup()


def both(pair, *cmd):
    """Run cmd on both; the two replies (errors as ("error", text))."""
    out = []
    for c in pair:
        try:
            out.append(c.execute_command(*cmd))
        except redis.ResponseError as e:
            out.append(("error", str(e)))
    return out


def same(pair, *cmd):
    a, b = both(pair, *cmd)
    assert a == b, cmd
    return a


@pytest.fixture
def clean(pair):
    for c in pair:
        c.flushall()
        c.config_set("hll-sparse-max-bytes", 3000)
    return pair


# ------------------------------------------------------------------ byte-exact

@pytest.mark.parametrize("seed,total,batch", [(1, 0, 1), (2, 1, 1), (3, 40, 3), (4, 700, 25),
                                              (5, 2500, 40), (6, 6000, 200),
                                              (7, 30000, 500)])
def test_pfadd_bytes_and_counts_identical(clean, seed, total, batch):
    rnd = random.Random(seed)
    els = [b"el:%d" % rnd.randrange(10 ** 9) for _ in range(total)]
    same(clean, "PFADD", "h")
    for i in range(0, total, batch):
        same(clean, "PFADD", "h", *els[i:i + batch])
        if rnd.random() < 0.2:
            same(clean, "PFCOUNT", "h")
            same(clean, "GET", "h")          # the cached count too
    got = same(clean, "GET", "h")
    assert got[:4] == b"HYLL"
    n = same(clean, "PFCOUNT", "h")
    if total:
        assert abs(n - len(set(els))) <= max(2, 0.05 * len(set(els)))
    same(clean, "GET", "h")
    same(clean, "PFDEBUG", "ENCODING", "h")
    same(clean, "OBJECT", "ENCODING", "h")


def test_sparse_decode_and_promotion_threshold(clean):
    for limit in (0, 60, 200, 3000, 9000):
        for c in clean:
            c.config_set("hll-sparse-max-bytes", limit)
            c.delete("s")
        rnd = random.Random(limit)
        for i in range(120):
            same(clean, "PFADD", "s", b"x%d" % rnd.randrange(10 ** 6))
            if i % 10 == 0:
                enc = same(clean, "PFDEBUG", "ENCODING", "s")
                if enc == b"sparse":
                    same(clean, "PFDEBUG", "DECODE", "s")
        same(clean, "GET", "s")


def test_pfmerge_bytes_identical(clean):
    rnd = random.Random(9)
    sizes = {"a": 5, "b": 80, "c": 400, "d": 5000}
    for k, n in sizes.items():
        for i in range(0, n, 50):
            same(clean, "PFADD", k, *[b"%s%d" % (k.encode(), rnd.randrange(10 ** 7))
                                      for _ in range(min(50, n - i))])
    same(clean, "PFMERGE", "m1", "a", "b")            # all sparse: sparse result
    assert same(clean, "PFDEBUG", "ENCODING", "m1") == b"sparse"
    same(clean, "PFMERGE", "m2", "a", "d")            # one dense: dense result
    same(clean, "PFMERGE", "b", "c")                  # into an existing key
    same(clean, "PFMERGE", "m3", "nokey1", "nokey2")  # only missing sources
    same(clean, "PFMERGE", "m3")                      # destination only
    for k in ("m1", "m2", "b", "m3"):
        same(clean, "GET", k)
        same(clean, "PFCOUNT", k)
    same(clean, "PFCOUNT", "a", "b", "c", "d", "nokey")
    same(clean, "PFCOUNT", "a", "a")


def test_hll_made_by_one_server_counts_in_the_other(clean):
    mine, real = clean
    rnd = random.Random(11)
    for n in (3, 300, 4000):
        key = "x%d" % n
        els = [b"%d" % rnd.randrange(10 ** 9) for _ in range(n)]
        real.pfadd(key, *els)
        raw = real.get(key)
        mine.set(key, raw)
        assert mine.pfcount(key) == real.pfcount(key)
        mine.pfadd(key, b"extra")
        real.pfadd(key, b"extra")
        assert mine.get(key) == real.get(key)
        # and the reverse direction
        mine.pfadd(key + "r", *els)
        real.set(key + "r2", mine.get(key + "r"))
        assert real.pfcount(key + "r2") == mine.pfcount(key + "r")


def test_errors_match(clean):
    mine, real = clean
    for c in clean:
        c.set("str", "not an hll")
        c.set("short", "HYLL")
        c.set("badenc", b"HYLL\x02" + bytes(11) + b"\x7f\xff")
        c.set("dense-short", b"HYLL\x00" + bytes(11) + bytes(100))
        c.pfadd("good", "a", "b")
        c.pfadd("corrupt", "a")
        c.setrange("corrupt", 16, b"\x00\x00\x00")      # runs no longer add up
    for cmd in (("PFADD", "str", "a"), ("PFCOUNT", "str"), ("PFCOUNT", "good", "str"),
                ("PFMERGE", "dst", "good", "str"), ("PFADD", "short", "x"),
                ("PFADD", "badenc", "x"), ("PFCOUNT", "dense-short"),
                ("PFCOUNT", "corrupt"), ("PFCOUNT", "corrupt", "good"),
                ("PFMERGE", "dst2", "corrupt"),
                ("PFDEBUG", "GETREG", "nokey"), ("PFDEBUG", "NOSUCH", "good"),
                ("PFDEBUG", "DECODE", "str"), ("PFADD",), ("PFDEBUG", "GETREG"),
                ("PFCOUNT",)):
        same(clean, *cmd)
    assert both(clean, "PFCOUNT", "str")[0] == \
        ("error", "WRONGTYPE Key is not a valid HyperLogLog string value.")
    assert both(clean, "PFCOUNT", "corrupt")[0] == \
        ("error", "INVALIDOBJ Corrupted HLL object detected")


def test_pfdebug_replies_match(clean):
    rnd = random.Random(5)
    same(clean, "PFADD", "h", *[b"%d" % rnd.randrange(10 ** 6) for _ in range(50)])
    same(clean, "PFDEBUG", "ENCODING", "h")
    same(clean, "PFDEBUG", "DECODE", "h")
    same(clean, "PFDEBUG", "GETREG", "h")             # converts to dense
    same(clean, "PFDEBUG", "ENCODING", "h")
    same(clean, "PFDEBUG", "DECODE", "h")             # error: not sparse
    same(clean, "PFDEBUG", "TODENSE", "h")            # already dense: 0
    same(clean, "PFADD", "h2", "a")
    same(clean, "PFDEBUG", "TODENSE", "h2")
    same(clean, "GET", "h")
    same(clean, "GET", "h2")


def test_pfselftest(pair):
    mine, _ = pair
    assert mine.execute_command("PFSELFTEST") in (b"OK", "OK", True)


def test_ttl_kept_and_encoding_raw(clean):
    mine, real = clean
    for c in clean:
        c.pfadd("t", "a")
        c.expire("t", 1000)
        c.pfadd("t", "b", "c")
        c.pfcount("t")
    same(clean, "TTL", "t")
    same(clean, "OBJECT", "ENCODING", "t")


def _aof_commands(d: str) -> list[list[bytes]]:
    data = b"".join(open(f, "rb").read()
                    for f in sorted(glob.glob(os.path.join(d, "appendonlydir", "*.incr.aof"))))
    import hiredis
    r = hiredis.Reader()
    r.feed(data)
    out = []
    while True:
        v = r.gets()
        if v is False:
            return out
        out.append(v)


def test_propagation_matches_redis():
    """PFADD/PFMERGE propagate as themselves when they change something; a
    PFCOUNT that refreshed the cached count is propagated (read-only, but it
    wrote the string); PFDEBUG TODENSE too."""
    logs = []
    for redis_server in (False, True):
        d = tempfile.mkdtemp(prefix="hll-aof-")
        p = Proc(["--appendonly", "yes", "--appendfsync", "always"],
                 redis_server=redis_server, workdir=d).start()
        try:
            c = p.client()
            c.pfadd("h", "a", "b")
            c.pfadd("h", "a")            # no change: not propagated
            c.pfcount("h")               # stale cache: propagated
            c.pfcount("h")               # cached: not propagated
            c.pfcount("h", "nokey")      # several keys: never
            c.pfmerge("m", "h")
            c.execute_command("PFDEBUG", "TODENSE", "m")
            c.execute_command("PFDEBUG", "TODENSE", "m")
            c.get("h")
            time.sleep(0.2)
            logs.append([[a.lower() if i == 0 else a for i, a in enumerate(cmd)]
                         for cmd in _aof_commands(d)])
        finally:
            p.cleanup()
            shutil.rmtree(d, ignore_errors=True)
    assert logs[0] == logs[1]
    assert [b"pfcount", b"h"] in logs[0]


# ------------------------------------------------------------------ accuracy

def test_standard_error_within_bound():
    """16384 registers: standard error 1.04/sqrt(16384) = 0.81%. The relative
    errors over several sets have an RMS within that (deterministic data)."""
    errs = []
    for k, n in enumerate((1000, 5000, 20000, 60000, 150000)):
        v = hll.empty()
        for i in range(0, n, 5000):
            v, _ = hll.add(v, [b"acc:%d:%d" % (k, j) for j in range(i, min(n, i + 5000))], 3000)
        errs.append((hll.count(v) - n) / n)
    rms = (sum(e * e for e in errs) / len(errs)) ** 0.5
    assert rms < 0.0081 * 1.5, errs
    assert max(abs(e) for e in errs) < 0.0081 * 3, errs


def test_murmur_and_counts_of_small_sets():
    # one element: exactly one register set; the estimate rounds to 1
    v, updated = hll.add(hll.empty(), [b"hello"], 3000)
    assert updated == 1
    regs = hll.registers(v)
    assert sum(1 for r in regs if r) == 1
    assert hll.count(v) == 1
    assert hll.count(hll.empty()) == 0
    assert hll.murmur64a(b"") == hll.murmur64a(b"", hll.SEED)
    assert hll.murmur64a(b"abcdefgh") != hll.murmur64a(b"abcdefgi")


def test_dense_codec_roundtrip():
    rnd = random.Random(1)
    vals = bytes(rnd.getrandbits(6) for _ in range(hll.REGISTERS))
    packed = hll.dense_pack(vals)
    assert len(packed) == hll.DENSE_BYTES
    assert hll.dense_registers(packed) == vals
    buf = bytearray(hll.HDR_SIZE) + bytearray(packed)
    for i in rnd.sample(range(hll.REGISTERS), 200):
        assert hll.dense_get(buf, i) == vals[i]
    a = bytes(rnd.getrandbits(6) for _ in range(hll.REGISTERS))
    assert hll.reg_max(a, vals) == bytes(max(x, y) for x, y in zip(a, vals))


# ------------------------------------------------------------------ model

class HLLMachine(RuleBasedStateMachine):
    """PFADD/PFMERGE/PFCOUNT/PFDEBUG on an in-process server against a plain
    array of 16384 registers per key."""

    def __init__(self) -> None:
        super().__init__()
        self.s = InProc()
        self.c = self.s.client()
        self.model: dict[str, bytearray] = {}
        self.max_bytes = 3000

    elements = st.lists(st.binary(max_size=6), max_size=12)
    keys = st.sampled_from(["h1", "h2", "h3"])

    @rule(key=keys, els=elements)
    def pfadd(self, key, els):
        regs = self.model.get(key)
        created = regs is None
        if created:
            regs = self.model[key] = bytearray(hll.REGISTERS)
        changed = False
        for e in els:
            i, n = hll.pat_len(e)
            if n > regs[i]:
                regs[i] = n
                changed = True
        assert self.c.call("PFADD", key, *els) == (1 if changed or created else 0)

    @rule(dest=keys, srcs=st.lists(keys, max_size=3))
    def pfmerge(self, dest, srcs):
        merged = bytes(self.model.get(dest, bytes(hll.REGISTERS)))
        for k in srcs:
            if k in self.model:
                merged = bytes(map(max, merged, self.model[k]))
        self.model[dest] = bytearray(merged)
        assert self.c.call("PFMERGE", dest, *srcs) == b"OK"

    @rule(keys=st.lists(keys, min_size=1, max_size=3))
    def pfcount(self, keys):
        regs = bytes(hll.REGISTERS)
        for k in keys:
            if k in self.model:
                regs = bytes(map(max, regs, self.model[k]))
        expect = hll.count_histogram(hll.histogram(regs))
        assert self.c.call("PFCOUNT", *keys) == expect

    @rule(limit=st.sampled_from([0, 30, 100, 400, 3000]))
    def sparse_limit(self, limit):
        self.max_bytes = limit
        assert self.c.call("CONFIG", "SET", "hll-sparse-max-bytes", str(limit)) == b"OK"

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def todense(self, data):
        key = data.draw(st.sampled_from(sorted(self.model)))
        r = self.c.call("PFDEBUG", "TODENSE", key)
        assert r in (0, 1)
        assert self.c.call("PFDEBUG", "ENCODING", key) == b"dense"

    @invariant()
    def registers_match(self):
        for key, regs in self.model.items():
            v = self.s.srv.ks.db(0).get(key.encode())
            assert hll.is_hll(v)
            assert hll.registers(v) == bytes(regs), key
            if v[4] == hll.SPARSE:
                assert max(regs) <= hll.SPARSE_VAL_MAX_VALUE
                decoded = self.c.call("PFDEBUG", "DECODE", key)
                assert not isinstance(decoded, ReplyError)
                total = 0
                for op in decoded.split():
                    kind, rest = op.split(b":")
                    total += int(rest.split(b",")[-1])
                assert total == hll.REGISTERS


TestHLLMachine = HLLMachine.TestCase
TestHLLMachine.settings = settings(max_examples=40, stateful_step_count=20, deadline=None,
                                   suppress_health_check=[HealthCheck.too_slow])
