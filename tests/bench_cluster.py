"""`make bench-cluster`: redis-benchmark --cluster against a pynode cluster and a
redis-server cluster of the same shape, in the same run on the same machine.

Both clusters (3 primaries by default, no replicas) are started and formed with
`redis-cli --cluster create` by tests.cluster_helpers; then for each test
redis-benchmark runs against each cluster alternately (several rounds, best of
each kept) and the ratio pynode/redis-server is printed.  Nothing is asserted:
it prints figures.

    python -m tests.bench_cluster [--requests N] [--clients 50] [--pipelines 16] [--rounds 2]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

from tests.cluster_helpers import Cluster


def benchmark(port: int, test: str, pipeline: int, requests: int, clients: int,
              timeout: float = 600) -> float:
    cmd = ["redis-benchmark", "--cluster", "-h", "127.0.0.1", "-p", str(port),
           "-c", str(clients), "-n", str(requests), "-P", str(pipeline), "-t", test, "--csv"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                         stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise RuntimeError("redis-benchmark failed (exit %d) on port %d:\n%s%s"
                           % (res.returncode, port, res.stdout[-2000:], res.stderr[-2000:]))
    for line in res.stdout.splitlines():
        m = re.match(r'"([^"]+)","([0-9.]+)"', line)
        if m:
            return float(m.group(2))
    raise RuntimeError("no result from redis-benchmark for %s: %r" % (test, res.stdout[-2000:]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=1000000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--pipelines", default="16", help="comma-separated -P values (default 16)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--tests", default="set,get")
    ap.add_argument("--primaries", type=int, default=3)
    ap.add_argument("--replicas", type=int, default=0)
    ap.add_argument("--appendonly", action="store_true",
                    help="appendonly yes, appendfsync everysec on every node")
    args = ap.parse_args(argv)
    extra = ["--appendonly", "yes", "--appendfsync", "everysec"] if args.appendonly else []
    clusters = {}
    try:
        for name in ("pynode", "redis"):
            clusters[name] = Cluster(primaries=args.primaries, replicas=args.replicas,
                                     server=name, extra=extra).up()
        print("clusters: %d primaries, %d replica(s) each, appendonly %s; "
              "redis-benchmark --cluster -c %d -n %d"
              % (args.primaries, args.replicas, "yes" if args.appendonly else "no",
                 args.clients, args.requests))
        print("%-6s %9s %14s %14s %7s" % ("test", "pipeline", "pynode rps", "redis rps",
                                           "ratio"), flush=True)
        for pipeline in (int(p) for p in args.pipelines.split(",")):
            n = args.requests if pipeline > 1 else max(1, args.requests // 4)
            for test in args.tests.split(","):
                best = {"pynode": 0.0, "redis": 0.0}
                for _ in range(args.rounds):
                    for name, c in clusters.items():
                        best[name] = max(best[name], benchmark(c.ports[0], test, pipeline, n,
                                                               args.clients))
                print("%-6s %9d %14.0f %14.0f %7.2f"
                      % (test.upper(), pipeline, best["pynode"], best["redis"],
                         best["pynode"] / best["redis"]), flush=True)
    finally:
        for c in clusters.values():
            c.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
