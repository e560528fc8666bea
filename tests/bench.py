"""`make bench`: pynode against redis-server, same machine, same run, same settings.

For each test, redis-benchmark runs against both servers alternately (several
rounds, best of each kept) and the ratio pynode/redis-server is printed: the
string/ping tests unpipelined and with -P 16, the data-type tests (lists, sets,
hashes, sorted sets, streams) with -P 16, EVALSHA of a small write script with
both; then 1M small string keys are loaded
into each and INFO memory's used_memory tells the bytes per key; SET and GET
with -P 16 run once more over TLS (tls-port, certificates made for the run).
Each ratio is printed with its goal (GOALS: the Performance issue's) and
"ok" or "MISS"; the unpipelined runs also give each server's p50/p99
latency (redis-benchmark's CSV), with pynode's p99 over redis-server's
against its goal.  Both servers run as deployed (pynode without the test
suite's invariant checks).  Nothing here asserts a time: it prints figures.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import time

from tests.helpers import Proc

TESTS = ["ping_inline", "ping_mbulk", "set", "get", "incr", "mset", "evalsha"]
TYPE_TESTS = ["lpush", "rpop", "sadd", "hset", "spop", "zadd", "zpopmin", "lrange_100", "xadd"]
# tests redis-benchmark 7.0 has no -t name for: run as an explicit command
# EVALSHA of a small write script (loaded with SCRIPT LOAD on both servers)
WRITE_SCRIPT = "return redis.call('set', KEYS[1], ARGV[1])"
WRITE_SHA = hashlib.sha1(WRITE_SCRIPT.encode()).hexdigest()
COMMANDS = {"xadd": ["XADD", "bench:stream", "*", "field", "value"],
            "evalsha": ["EVALSHA", WRITE_SHA, "1", "key:__rand_int__", "value"]}


# The Performance issue's goals: the least ratio pynode/redis-server per
# (pipeline, test); tests without one are printed with "-".
STRING_TESTS = ["ping_inline", "ping_mbulk", "set", "get", "incr", "mset"]
GOALS = {**{(1, t): 1.0 for t in STRING_TESTS},
         **{(16, t): 0.5 for t in STRING_TESTS + TYPE_TESTS}}
P99_GOAL = 1.5        # pynode's p99 latency at -P 1 at most this times redis-server's
MEMORY_GOAL = 1.25    # INFO used_memory per small string key, at most this times redis-server's


def benchmark(port: int, test: str, pipeline: int, requests: int, clients: int,
              tls: list[str] = ()) -> dict:
    """One redis-benchmark run: {"rps", "p50", "p99"} (latencies in ms)."""
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(clients),
           "-n", str(requests), "-P", str(pipeline), "--csv", *tls]
    cmd += COMMANDS.get(test) or ["-t", test]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
    return csv_result(test, out)


def csv_result(test: str, out: str) -> dict:
    """The last result line of redis-benchmark --csv output (lrange_100
    first prints its "LPUSH (needed to benchmark LRANGE)"): requests per
    second and the p50/p99 latencies in ms."""
    found = re.findall(r'^"[^"]+","([0-9.]+)","[0-9.]+","[0-9.]+","([0-9.]+)","[0-9.]+",'
                       r'"([0-9.]+)"', out, re.M)
    if not found:
        raise RuntimeError("no result from redis-benchmark for %s: %r" % (test, out[-2000:]))
    rps, p50, p99 = map(float, found[-1])
    return {"rps": rps, "p50": p50, "p99": p99}


def csv_rps(test: str, out: str) -> float:
    """Requests per second from redis-benchmark --csv output."""
    return csv_result(test, out)["rps"]


def verdict(value: float, goal: float | None, most: bool = False) -> str:
    """The goal column: ">= 0.50 ok", "<= 1.50 MISS", or "-" (no goal)."""
    if goal is None:
        return "-"
    met = value <= goal if most else value >= goal
    return "%s %.2f %s" % ("<=" if most else ">=", goal, "ok" if met else "MISS")


def best_of(rounds: int, runs: dict) -> dict:
    """Alternating rounds of each run ({name: fn() -> result}); per name the
    highest rps and the lowest p50 and p99 over the rounds."""
    best = {name: {"rps": 0.0, "p50": float("inf"), "p99": float("inf")} for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            r = fn()
            b = best[name]
            b["rps"] = max(b["rps"], r["rps"])
            b["p50"] = min(b["p50"], r["p50"])
            b["p99"] = min(b["p99"], r["p99"])
    return best


def used_memory(port: int) -> int:
    out = subprocess.run(["redis-cli", "-p", str(port), "info", "memory"],
                         capture_output=True, text=True, timeout=60).stdout
    return int(re.search(r"used_memory:(\d+)", out).group(1))


def load_keys(port: int, n: int) -> None:
    chunks = []
    for i in range(n):
        k = b"key:%010d" % i
        chunks.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$3\r\nxxx\r\n" % (len(k), k))
    data = b"".join(chunks)
    subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input=data,
                   capture_output=True, timeout=900, check=True)


def memory_per_key(port: int, n: int) -> float:
    before = used_memory(port)
    load_keys(port, n)
    time.sleep(0.5)
    return (used_memory(port) - before) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=200000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keys", type=int, default=1000000)
    ap.add_argument("--tests", default=",".join(TESTS))
    ap.add_argument("--type-tests", default=",".join(TYPE_TESTS),
                    help="tests run with -P 16 only (empty: none)")
    ap.add_argument("--tls-tests", default="set,get",
                    help="tests run with -P 16 over TLS (empty: none)")
    args = ap.parse_args()
    tests = args.tests.split(",")
    type_tests = [t for t in args.type_tests.split(",") if t]
    tls_tests = [t for t in args.tls_tests.split(",") if t]
    from tests import tls_certs
    from tests.bench_commands import scratch_dir
    from tests.helpers import free_port
    certs = tls_certs.make(scratch_dir())
    tls_ports = (free_port(), free_port())
    pyn = Proc(["--tls-port", str(tls_ports[0]), *certs.server_args()],
               check_invariants=False).start()
    red = Proc(["--tls-port", str(tls_ports[1]), *certs.server_args()],
               redis_server=True).start()
    misses = []
    try:
        for p in (pyn, red):
            assert p.client().script_load(WRITE_SCRIPT) == WRITE_SHA
        print("redis-benchmark -c %d, best of %d alternating rounds; ratio = pynode/redis-server"
              % (args.clients, args.rounds))
        print("%-12s %9s %14s %14s %7s  %s" % ("test", "pipeline", "pynode rps", "redis rps",
                                                 "ratio", "goal"))
        runs = [(1, t) for t in tests] + [(16, t) for t in tests + type_tests]
        latency = []
        for pipeline, t in runs:
            n = args.requests * (4 if pipeline > 1 else 1)
            best = best_of(args.rounds, {
                "p": lambda: benchmark(pyn.port, t, pipeline, n, args.clients),
                "r": lambda: benchmark(red.port, t, pipeline, n, args.clients)})
            ratio = best["p"]["rps"] / best["r"]["rps"]
            goal = verdict(ratio, GOALS.get((pipeline, t)))
            if goal.endswith("MISS"):
                misses.append("%s -P %d" % (t, pipeline))
            print("%-12s %9d %14.0f %14.0f %7.2f  %s" % (t, pipeline, best["p"]["rps"],
                                                        best["r"]["rps"], ratio, goal),
                  flush=True)
            if pipeline == 1:
                latency.append((t, best))
        print("latency at -P 1 -c %d, ms (lowest of the rounds):" % args.clients)
        print("%-12s %10s %10s %10s %10s %9s  %s" % ("test", "pynode p50", "pynode p99",
                                                   "redis p50", "redis p99", "p99 ratio",
                                                   "goal"))
        for t, best in latency:
            ratio = best["p"]["p99"] / best["r"]["p99"]
            goal = verdict(ratio, P99_GOAL, most=True)
            if goal.endswith("MISS"):
                misses.append("%s p99" % t)
            print("%-12s %10.3f %10.3f %10.3f %10.3f %9.2f  %s"
                  % (t, best["p"]["p50"], best["p"]["p99"], best["r"]["p50"],
                     best["r"]["p99"], ratio, goal), flush=True)
        for t in tls_tests:
            n = args.requests * 4
            best = best_of(args.rounds, {
                "p": lambda: benchmark(tls_ports[0], t, 16, n, args.clients, certs.cli_args()),
                "r": lambda: benchmark(tls_ports[1], t, 16, n, args.clients, certs.cli_args())})
            print("%-12s %9s %14.0f %14.0f %7.2f  -" % (t + " tls", "16", best["p"]["rps"],
                                                       best["r"]["rps"],
                                                       best["p"]["rps"] / best["r"]["rps"]),
                  flush=True)
        if args.keys:
            for p in (pyn, red):
                p.client().flushall()
            mp = memory_per_key(pyn.port, args.keys)
            mr = memory_per_key(red.port, args.keys)
            print("memory per key (%d keys, INFO used_memory): pynode %.0f B, "
                  "redis-server %.0f B, ratio %.2f  goal %s"
                  % (args.keys, mp, mr, mp / mr, verdict(mp / mr, MEMORY_GOAL, most=True)),
                  flush=True)
            if mp / mr > MEMORY_GOAL:
                misses.append("memory per key")
        print("goals missed: %s" % (", ".join(misses) or "none"), flush=True)
    finally:
        pyn.cleanup()
        red.cleanup()
        import shutil
        shutil.rmtree(certs.dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
