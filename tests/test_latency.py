"""LATENCY (monitor events, GRAPH, DOCTOR, HISTOGRAM) and INFO latencystats,
compared with redis-server 7.0.15; the hdr histogram and sparkline units."""

from __future__ import annotations

import collections
import random
import re
import time

import pytest

from pynode import latency as L
from tests.compare import Conn, mismatches, parse
from tests.helpers import Proc

ARGS = ["--enable-debug-command", "yes"]


@pytest.fixture(scope="module")
def pair():
    p = Proc(ARGS).start()
    r = Proc(ARGS, redis_server=True).start()
    yield p, r
    p.cleanup()
    r.cleanup()


def both(pair, *args, resp=2):
    out = []
    for s in pair:
        c = Conn(s.port, resp)
        try:
            out.append(c.call(*args))
        finally:
            c.close()
    return out


def reset(pair):
    for s in pair:
        c = s.client()
        c.config_set("latency-monitor-threshold", 0)
        c.config_set("latency-tracking", "yes")
        c.config_set("latency-tracking-info-percentiles", "50 99 99.9")
        c.execute_command("LATENCY", "RESET")
        c.config_resetstat()
        c.close()


STATIC = [
    "LATENCY HELP",
    "LATENCY DOCTOR",
    "LATENCY LATEST",
    "LATENCY HISTORY command",
    "LATENCY GRAPH command",
    "LATENCY GRAPH",
    "LATENCY HISTORY",
    "LATENCY LATEST extra",
    "LATENCY RESET",
    "LATENCY RESET command fork",
    "LATENCY foo",
    "LATENCY",
    "LATENCY HISTOGRAM nosuchcommand",
    "LATENCY HISTOGRAM client|nosuch",
]


@pytest.mark.parametrize("resp", [2, 3])
def test_replies_without_events_match_redis(pair, resp):
    reset(pair)
    assert mismatches([s.port for s in pair], STATIC, resp) == []


def _spike(pair, seconds=0.2, threshold=100):
    for s in pair:
        c = s.client()
        c.config_set("latency-monitor-threshold", threshold)
        c.execute_command("DEBUG", "SLEEP", seconds)
        c.close()


def _numbers_out(b: bytes) -> bytes:
    return re.sub(rb"\d+", b"N", b)


@pytest.mark.parametrize("resp", [2, 3])
def test_command_event_after_debug_sleep(pair, resp):
    reset(pair)
    _spike(pair)
    now = time.time()
    for s in pair:
        c = s.client()
        latest = c.execute_command("LATENCY", "LATEST")
        assert len(latest) == 1
        name, t, ms, worst = latest[0]
        assert name == b"command" and abs(t - now) < 5 and 200 <= ms < 1000 and worst == ms
        assert c.execute_command("LATENCY", "HISTORY", "command") == [[t, ms]]
        c.close()
    # GRAPH and DOCTOR: Redis's text, up to the measured milliseconds
    for args in (("LATENCY", "GRAPH", "command"), ("LATENCY", "DOCTOR"),
                 ("LATENCY", "LATEST"), ("LATENCY", "HISTORY", "command")):
        mine, ref = both(pair, *args, resp=resp)
        assert _numbers_out(mine) == _numbers_out(ref), args


def test_graph_and_doctor_text(pair):
    reset(pair)
    _spike(pair)
    p = pair[0].client()
    graph = p.execute_command("LATENCY", "GRAPH", "command").decode()
    lines = graph.split("\n")
    assert re.fullmatch(r"command - high (\d+) ms, low \1 ms \(all time high \1 ms\)", lines[0])
    assert lines[1] == "-" * 80
    assert lines[7] in ("0", "1")          # seconds ago, as a label under the column
    assert lines[2:7] + lines[8:] == [" ", " ", " ", "_", " ", "s", ""]
    doctor = p.execute_command("LATENCY", "DOCTOR").decode()
    assert doctor.startswith(L.SPIKES + "1. command: 1 latency spikes (average ")
    assert "period 1.00 sec" in doctor
    assert "- Check your Slow Log" in doctor and "- Deleting, expiring or evicting" in doctor
    # slowlog off: the advice names the threshold in microseconds
    p.config_set("slowlog-log-slower-than", -1)
    try:
        assert "'CONFIG SET slowlog-log-slower-than 100000'" in \
            p.execute_command("LATENCY", "DOCTOR").decode()
    finally:
        p.config_set("slowlog-log-slower-than", 10000)
    # RESET by name, any case; monitor off but events kept: no "disabled" text
    p.config_set("latency-monitor-threshold", 0)
    assert "spikes" in p.execute_command("LATENCY", "DOCTOR").decode()
    assert p.execute_command("LATENCY", "RESET", "COMMAND", "nosuch") == 1
    assert p.execute_command("LATENCY", "LATEST") == []
    assert p.execute_command("LATENCY", "DOCTOR").decode() == L.NO_MONITOR
    p.config_set("latency-monitor-threshold", 100)
    assert p.execute_command("LATENCY", "DOCTOR").decode() == L.NO_SPIKES
    p.close()


def test_below_threshold_adds_nothing(pair):
    reset(pair)
    p = pair[0].client()
    p.config_set("latency-monitor-threshold", 500)
    p.execute_command("DEBUG", "SLEEP", 0.05)
    assert p.execute_command("LATENCY", "LATEST") == []
    p.close()


def _histo(conn_reply: bytes):
    node, _ = parse(conn_reply)
    return node


@pytest.mark.parametrize("resp", [2, 3])
def test_histogram_shapes_match_redis(pair, resp):
    for script in (["CONFIG RESETSTAT", "SET a b", "SET c d", "CLIENT ID", "CLIENT GETNAME"],):
        reset(pair)
        for s in pair:
            c = Conn(s.port, resp)
            for line in script:
                c.call(*line.split())
            c.close()
        for args in (("LATENCY", "HISTOGRAM", "set"), ("LATENCY", "HISTOGRAM", "client"),
                     ("LATENCY", "HISTOGRAM", "CLIENT|ID"), ("LATENCY", "HISTOGRAM", "set", "set"),
                     ("LATENCY", "HISTOGRAM", "get")):
            mine, ref = both(pair, *args, resp=resp)
            m, r = _histo(mine), _histo(ref)
            # same commands, calls and types; bucket bounds depend on speed
            assert _shape(m) == _shape(r), args


def _shape(node):
    t, v = node
    out = [t]
    for i in range(0, len(v), 2):
        name, body = v[i], v[i + 1]
        bt, bv = body
        out.append((name, bt, bv[0], bv[1], bv[2], bv[3][0]))
    return [out[0]] + sorted(out[1:])    # Redis lists subcommands in hash order


def _raw_info(port: int) -> str:
    c = Conn(port)
    try:
        node, _ = parse(c.call("INFO", "latencystats"))
    finally:
        c.close()
    return node[1].decode()


def test_histogram_buckets_and_info(pair):
    reset(pair)
    p = pair[0].client()
    p.execute_command("DEBUG", "SLEEP", 0.2)
    h = p.execute_command("LATENCY", "HISTOGRAM", "debug")
    # one call of ~200 ms: the 2^18 * 1024 ns level, reported as its bucket top
    assert h == {b"debug": {b"calls": 1, b"histogram_usec": {270532: 1}}}
    info = p.info("latencystats")
    vals = info["latency_percentiles_usec_debug"]
    assert set(vals) == {"p50", "p99", "p99.9"} and 200000 <= vals["p50"] < 270532
    p.config_set("latency-tracking-info-percentiles", "0 50.5 100")
    text = _raw_info(pair[0].port)
    line = [x for x in text.split("\r\n") if x.startswith("latency_percentiles_usec_debug:")][0]
    assert re.fullmatch(r"latency_percentiles_usec_debug:p0=\d+\.\d{3},p50\.5=\d+\.\d{3},"
                        r"p100=\d+\.\d{3}", line), line
    p.config_set("latency-tracking", "no")
    p.config_resetstat()
    p.set("k", "v")
    assert not p.execute_command("LATENCY", "HISTOGRAM")
    assert _raw_info(pair[0].port).strip() == "# Latencystats"
    p.config_set("latency-tracking", "yes")
    p.close()


def test_multi_and_script_calls_are_tracked(pair):
    reset(pair)
    p = pair[0].client()
    pipe = p.pipeline(transaction=True)
    pipe.set("a", 1)
    pipe.incr("a")
    pipe.execute()
    p.eval("redis.call('set', 'b', 1) return 1", 0)
    h = p.execute_command("LATENCY", "HISTOGRAM", "set", "incrby", "exec")
    assert {k: v[b"calls"] for k, v in h.items()} == {b"set": 2, b"incrby": 1, b"exec": 1}
    p.close()


# ---------------------------------------------------------------- units
def test_hdr_buckets_as_redis():
    # the values Redis 7.0 reports for one ~201 ms call
    h = {}
    L._fold(h, [201326592])   # durations in ns
    assert L.value_at_percentile(h, 1, 0.0) == 201326592
    assert L.cdf(h) == [(270532, 1)]
    # sub-microsecond calls land in the first reported bucket (1 us)
    h = {}
    L._fold(h, [200, 900, 1100, 3000])
    assert L.cdf(h) == [(1, 2), (2, 3), (4, 4)]
    assert L.value_at_percentile(h, 4, 50.0) == 903     # 900's bucket top
    # clamped to 1 s
    h = {}
    L._fold(h, [5 * 10 ** 9])
    assert L.value_at_percentile(h, 1, 100.0) == L.index_range(L.hist_index(10 ** 9))[1]
    for v in (1, 255, 256, 1023, 1024, 123456789):
        lo, hi = L.index_range(L.hist_index(v))
        assert lo <= v <= hi


def test_fold_counts_as_one_by_one():
    # mostly distinct durations, repeated ones, and ones clamped to 1 ns .. 1 s
    # land in the buckets hist_index gives each duration
    rnd = random.Random(7)
    batches = [[rnd.randint(900, 4000) for _ in range(700)],
               [int(rnd.lognormvariate(9, 3)) for _ in range(500)],
               [rnd.choice([0, 300, 301, 5000, 7 * 10 ** 9]) for _ in range(500)],
               [-3, 0, 1, 255, 256, 511, 512, 10 ** 9, 10 ** 9 + 1] * 10
               + list(range(1000, 1100))]
    for batch in batches:
        want = collections.Counter(L.hist_index(min(max(ns, 1), 10 ** 9)) for ns in batch)
        h = {}
        L._fold(h, list(batch))
        L._fold(h, list(batch))
        assert h == want + want


def test_sparkline_rows_and_labels():
    # two samples: the larger one reaches the top row and is filled below,
    # a blank row, then the labels under each column
    out = L.sparkline([10, 20], ["2s", "0s"])
    assert out.split("\n") == [" #", " |", " |", "_|", "  ", "20", "ss", ""]
    # no labels: no spacing row
    assert L.sparkline([5], [""]).split("\n") == [" ", " ", " ", "_", ""]
    # more samples than columns wrap into a second block after a blank line
    out = L.sparkline(list(range(81)), [""] * 81)
    assert "\n\n" in out


def test_time_series_keeps_max_per_second():
    ts = L.TimeSeries()
    ts.add(100, 5)
    ts.add(100, 9)
    ts.add(100, 3)
    ts.add(101, 1)
    assert ts.ordered() == [[100, 9], [101, 1]] and ts.max == 9
    for t in range(200, 200 + L.TS_LEN + 5):
        ts.add(t, 1)
    assert len(ts.ordered()) == L.TS_LEN and ts.ordered()[0][0] == 205
