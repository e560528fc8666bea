"""`make bench`: pynode against redis-server, same machine, same run, same settings.

For each test, redis-benchmark runs against both servers alternately (several
rounds, best of each kept) and the ratio pynode/redis-server is printed: the
string/ping tests unpipelined and with -P 16, the data-type tests (lists, sets,
hashes, sorted sets, streams) with -P 16, EVALSHA of a small write script with
both; then 1M small string keys are loaded
into each and INFO memory's used_memory tells the bytes per key; SET and GET
with -P 16 run once more over TLS (tls-port, certificates made for the run).
Nothing here asserts a time: it prints figures.
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


def benchmark(port: int, test: str, pipeline: int, requests: int, clients: int,
              tls: list[str] = ()) -> float:
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(clients),
           "-n", str(requests), "-P", str(pipeline), "--csv", *tls]
    cmd += COMMANDS.get(test) or ["-t", test]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
    return csv_rps(test, out)


def csv_rps(test: str, out: str) -> float:
    """Requests per second from redis-benchmark --csv output: the last result
    line (lrange_100 first prints its "LPUSH (needed to benchmark LRANGE)")."""
    found = re.findall(r'^"[^"]+","([0-9.]+)"', out, re.M)
    if not found:
        raise RuntimeError("no result from redis-benchmark for %s: %r" % (test, out[-2000:]))
    return float(found[-1])


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
    ap.add_argument("--rounds", type=int, default=2)
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
    import tempfile
    from tests import tls_certs
    from tests.helpers import free_port
    certs = tls_certs.make(tempfile.mkdtemp(prefix="pynode-bench-tls-"))
    tls_ports = (free_port(), free_port())
    pyn = Proc(["--tls-port", str(tls_ports[0]), *certs.server_args()]).start()
    red = Proc(["--tls-port", str(tls_ports[1]), *certs.server_args()],
               redis_server=True).start()
    try:
        for p in (pyn, red):
            assert p.client().script_load(WRITE_SCRIPT) == WRITE_SHA
        print("%-12s %9s %14s %14s %7s" % ("test", "pipeline", "pynode rps", "redis rps",
                                             "ratio"))
        runs = [(1, t) for t in tests] + [(16, t) for t in tests + type_tests]
        for pipeline, t in runs:
            n = args.requests * (4 if pipeline > 1 else 1)
            best = {"p": 0.0, "r": 0.0}
            for _ in range(args.rounds):
                best["p"] = max(best["p"], benchmark(pyn.port, t, pipeline, n, args.clients))
                best["r"] = max(best["r"], benchmark(red.port, t, pipeline, n, args.clients))
            print("%-12s %9d %14.0f %14.0f %7.2f" % (t, pipeline, best["p"], best["r"],
                                                    best["p"] / best["r"]), flush=True)
        for t in tls_tests:
            n = args.requests * 4
            best = {"p": 0.0, "r": 0.0}
            for _ in range(args.rounds):
                best["p"] = max(best["p"], benchmark(tls_ports[0], t, 16, n, args.clients,
                                                     certs.cli_args()))
                best["r"] = max(best["r"], benchmark(tls_ports[1], t, 16, n, args.clients,
                                                     certs.cli_args()))
            print("%-12s %9s %14.0f %14.0f %7.2f" % (t + " tls", "16", best["p"], best["r"],
                                                    best["p"] / best["r"]), flush=True)
        if args.keys:
            for p in (pyn, red):
                p.client().flushall()
            mp = memory_per_key(pyn.port, args.keys)
            mr = memory_per_key(red.port, args.keys)
            print("memory per key (%d keys, INFO used_memory): pynode %.0f B, "
                  "redis-server %.0f B, ratio %.2f" % (args.keys, mp, mr, mp / mr))
    finally:
        pyn.cleanup()
        red.cleanup()
        import shutil
        shutil.rmtree(certs.dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
