"""`make bench-cluster`: redis-benchmark --cluster against a pynode cluster and a
redis-server cluster of the same shape, in the same run on the same machine.

Both clusters (3 primaries by default, no replicas) are started and formed with
`redis-cli --cluster create` by tests.cluster_helpers; then for each test
redis-benchmark runs against each cluster alternately (several rounds, best of
each kept) and the ratio pynode/redis-server is printed.  Then, on each cluster,
one slot holding --move-keys small keys (100k) is moved to another primary with
`redis-cli --cluster reshard --cluster-pipeline 100` and the keys moved per
second are printed with their ratio.  Then a `pynode proxy` is started in front
of the pynode cluster and plain redis-benchmark (no --cluster) through it is
compared with redis-benchmark --cluster straight to the nodes, -P 1 and -P 16,
with one proxy process and with --workers 2, with the proxy's CPU per command.
Last, the resharding race: --reshard-slots (4096) slots of one primary holding
--reshard-keys (1M) small keys move to another primary three ways: pynode's
atomic CLUSTER MIGRATESLOTS, pynode with `redis-cli --cluster reshard`,
redis-server 7.0 with `redis-cli --cluster reshard` (both --cluster-pipeline
100); printed: the time of each, the ratios, the atomic flip's write hold and
the worst PING answer time on the source during each move.  Nothing is
asserted: it prints figures.

    python -m tests.bench_cluster [--requests N] [--clients 50] [--pipelines 16] [--rounds 3]
                                  [--move-keys 100000] [--proxy-pipelines 1,16]
                                  [--proxy-workers 1,2]
                                  [--reshard-slots 4096] [--reshard-keys 1000000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

import redis

from tests.bench import csv_rps, verdict
from tests.cluster_helpers import Cluster, free_ports, key_for_slot, run
from tests.helpers import wait_ping


# The Performance issue's goals (ratio pynode/redis-server, at least)
GOALS = {(16, "set"): 0.5, (16, "get"): 0.5}
MOVE_GOAL = 1.0       # the legacy slot move of 100k keys (redis-cli --cluster reshard), keys per second


def benchmark(port: int, test: str, pipeline: int, requests: int, clients: int,
              timeout: float = 600, cluster: bool = True) -> float:
    cmd = ["redis-benchmark", *(["--cluster"] if cluster else []), "-h", "127.0.0.1",
           "-p", str(port), "-c", str(clients), "-n", str(requests), "-P", str(pipeline),
           "-t", test, "--csv"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                         stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise RuntimeError("redis-benchmark failed (exit %d) on port %d:\n%s%s"
                           % (res.returncode, port, res.stdout[-2000:], res.stderr[-2000:]))
    return csv_rps(test, res.stdout)


def move_slot(c: Cluster, keys: int) -> tuple[float, float, float]:
    """Fill the first slot of one primary with `keys` small keys and time
    `redis-cli --cluster reshard` moving that one slot; keys per second, and
    the CPU (user + system, /proc/PID/stat) the source and the target spent
    during the move, in microseconds a key."""
    nodes = c.live_node().nodes()
    src = c.ports[0]
    slot = min(s for n in nodes if n["port"] == src for s in n["slots"])
    dst = next(n for n in nodes if "master" in n["flags"] and n["port"] != src)
    tag = key_for_slot(slot)
    conn = redis.Redis(host="127.0.0.1", port=src)
    there = conn.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)   # from earlier tests
    pipe = conn.pipeline(transaction=False)
    for i in range(keys):
        pipe.set("%s:%d" % (tag, i), "xxx")
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    src_id = next(n["id"] for n in nodes if n["port"] == src)
    pids = [c.node_by_port(p).proc.proc.pid for p in (src, dst["port"])]
    cpu0 = [cpu_seconds(pid) for pid in pids]
    t0 = time.monotonic()
    res = run(["redis-cli", "--cluster", "reshard", "127.0.0.1:%d" % src, "--cluster-from",
               src_id, "--cluster-to", dst["id"], "--cluster-slots", "1", "--cluster-yes",
               "--cluster-pipeline", "100"], 1800)
    dt = time.monotonic() - t0
    cpu = [(cpu_seconds(pid) - c0) / keys * 1e6 for pid, c0 in zip(pids, cpu0)]
    moved = redis.Redis(host="127.0.0.1", port=dst["port"]).execute_command(
        "CLUSTER", "COUNTKEYSINSLOT", slot)
    if res.returncode != 0 or moved != keys + there:
        raise RuntimeError("reshard failed (exit %d, %d/%d keys moved):\n%s"
                           % (res.returncode, moved, keys + there, res.stdout[-2000:]))
    conn.close()
    return (keys + there) / dt, cpu[0], cpu[1]


class Prober:
    """PING a node every 5 ms; `worst` is the longest answer time."""

    def __init__(self, port: int) -> None:
        self.r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=60)
        self.worst = 0.0
        self.done = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.is_set():
            t0 = time.perf_counter()
            self.r.ping()
            self.worst = max(self.worst, time.perf_counter() - t0)
            time.sleep(0.005)

    def __enter__(self) -> "Prober":
        self.t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.t.join(timeout=60)
        self.r.close()


def fill_slots(c: Cluster, src: int, slots: list[int], keys: int) -> None:
    """`keys` small keys spread over `slots` of primary `src`."""
    tags = [key_for_slot(s) for s in slots]
    conn = redis.Redis(host="127.0.0.1", port=src)
    pipe = conn.pipeline(transaction=False)
    for i in range(keys):
        pipe.set("%s:r%d" % (tags[i % len(tags)], i), "xxx")
        if i % 10000 == 9999:
            pipe.execute()
    pipe.execute()
    conn.close()


def reshard_race(c: Cluster, nslots: int, keys: int, atomic: bool) -> dict:
    """Move the first `nslots` slots of the first primary, holding `keys` keys,
    to the second primary; returns seconds, worst PING on the source, hold."""
    nodes = [n for n in c.live_node().nodes() if "master" in n["flags"]]
    nodes.sort(key=lambda n: min(n["slots"]))
    src, dst = nodes[0], nodes[1]
    slots = sorted(src["slots"])[:nslots]
    fill_slots(c, src["port"], slots, keys)
    out = {"hold_ms": None}
    with Prober(src["port"]) as probe:
        t0 = time.monotonic()
        if atomic:
            r = redis.Redis(host="127.0.0.1", port=src["port"], decode_responses=True)
            r.execute_command("CLUSTER", "MIGRATESLOTS", "SLOTSRANGE", slots[0], slots[-1],
                              "NODE", dst["id"])
            while True:
                e = r.execute_command("CLUSTER", "MIGRATION", "STATUS")[-1]
                e = e if isinstance(e, dict) else dict(zip(e[::2], e[1::2]))
                if e["state"] in ("success", "failed", "cancelled"):
                    break
                time.sleep(0.01)
            if e["state"] != "success":
                raise RuntimeError("atomic migration %s: %s" % (e["state"], e["last_error"]))
            out["hold_ms"] = int(e["write_pause_ms"])
            r.close()
        else:
            res = run(["redis-cli", "--cluster", "reshard", "127.0.0.1:%d" % src["port"],
                       "--cluster-from", src["id"], "--cluster-to", dst["id"],
                       "--cluster-slots", str(nslots), "--cluster-yes",
                       "--cluster-pipeline", "100"], 7200)
            if res.returncode != 0:
                raise RuntimeError("reshard failed:\n" + res.stdout[-2000:])
        out["seconds"] = time.monotonic() - t0
    out["worst_ms"] = probe.worst * 1000
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=1000000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--pipelines", default="16", help="comma-separated -P values (default 16)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tests", default="set,get")
    ap.add_argument("--primaries", type=int, default=3)
    ap.add_argument("--replicas", type=int, default=0)
    ap.add_argument("--move-keys", type=int, default=100000,
                    help="keys in the slot moved by redis-cli --cluster reshard (0: skip)")
    ap.add_argument("--reshard-slots", type=int, default=4096)
    ap.add_argument("--reshard-keys", type=int, default=1000000,
                    help="keys in the slots of the three-way reshard (0: skip)")
    ap.add_argument("--appendonly", action="store_true",
                    help="appendonly yes, appendfsync everysec on every node")
    ap.add_argument("--proxy-pipelines", default="1,16",
                    help="-P values through `pynode proxy` (empty: skip)")
    ap.add_argument("--proxy-workers", default="1,2",
                    help="`pynode proxy --workers` values to run (default 1,2)")
    args = ap.parse_args(argv)
    extra = ["--appendonly", "yes", "--appendfsync", "everysec"] if args.appendonly else []
    clusters = {}
    try:
        for name in ("pynode", "redis"):
            clusters[name] = Cluster(primaries=args.primaries, replicas=args.replicas,
                                     server=name, extra=extra, check_invariants=False).up()
        print("clusters: %d primaries, %d replica(s) each, appendonly %s; "
              "redis-benchmark --cluster -c %d -n %d"
              % (args.primaries, args.replicas, "yes" if args.appendonly else "no",
                 args.clients, args.requests))
        print("%-6s %9s %14s %14s %7s  %s" % ("test", "pipeline", "pynode rps", "redis rps",
                                               "ratio", "goal"), flush=True)
        for pipeline in (int(p) for p in args.pipelines.split(",")):
            n = args.requests if pipeline > 1 else max(1, args.requests // 4)
            for test in args.tests.split(","):
                best = {"pynode": 0.0, "redis": 0.0}
                for _ in range(args.rounds):
                    for name, c in clusters.items():
                        best[name] = max(best[name], benchmark(c.ports[0], test, pipeline, n,
                                                               args.clients))
                ratio = best["pynode"] / best["redis"]
                print("%-6s %9d %14.0f %14.0f %7.2f  %s"
                      % (test.upper(), pipeline, best["pynode"], best["redis"], ratio,
                         verdict(ratio, GOALS.get((pipeline, test)))), flush=True)
        if args.move_keys:
            # each round moves the source's next slot (best of the rounds kept)
            rate = {name: 0.0 for name in clusters}
            for _ in range(args.rounds):
                for name, c in clusters.items():
                    r, src_us, dst_us = move_slot(c, args.move_keys)
                    rate[name] = max(rate[name], r)
                    print("  %-6s %8.0f keys/s, CPU a key: source %.2f us, target %.2f us"
                          % (name, r, src_us, dst_us), flush=True)
            ratio = rate["pynode"] / rate["redis"]
            print("slot move (%d keys, reshard --cluster-pipeline 100, best of %d): "
                  "pynode %.0f keys/s, redis-server %.0f keys/s, ratio %.2f  goal %s"
                  % (args.move_keys, args.rounds, rate["pynode"], rate["redis"], ratio,
                     verdict(ratio, MOVE_GOAL)), flush=True)
        if args.proxy_pipelines:
            proxy_rows(clusters["pynode"], args)
        if args.reshard_keys:
            # fresh clusters: the same slots and keys moved three ways
            for c in clusters.values():
                c.cleanup()
            clusters = {}
            res = {}
            for label, server, atomic in (("pynode atomic", "pynode", True),
                                          ("pynode reshard", "pynode", False),
                                          ("redis reshard", "redis", False)):
                c = clusters[label] = Cluster(primaries=args.primaries,
                                              replicas=args.replicas, server=server,
                                              extra=extra, check_invariants=False).up()
                res[label] = reshard_race(c, args.reshard_slots, args.reshard_keys, atomic)
                c.cleanup()
                del clusters[label]
                print("%-15s %d slots, %d keys: %8.2f s, worst PING on the source %7.1f ms%s"
                      % (label, args.reshard_slots, args.reshard_keys, res[label]["seconds"],
                         res[label]["worst_ms"],
                         "" if res[label]["hold_ms"] is None
                         else ", writes held %d ms at the flip" % res[label]["hold_ms"]),
                      flush=True)
            a = res["pynode atomic"]["seconds"]
            print("pynode atomic is %.1fx faster than pynode reshard, %.1fx faster than "
                  "redis-server reshard" % (res["pynode reshard"]["seconds"] / a,
                                            res["redis reshard"]["seconds"] / a), flush=True)
    finally:
        for c in clusters.values():
            c.cleanup()
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children still running."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as fh:
                f = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(f[1]) == pid:
            total += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return total


def proxy_rows(c: Cluster, args) -> None:
    """redis-benchmark through `pynode proxy` against --cluster straight to the
    nodes, for each --proxy-workers count; also the proxy's CPU (user + system)
    per command, which a loaded machine disturbs less than the rates."""
    for workers in (int(w) for w in args.proxy_workers.split(",")):
        port = free_ports(1, exclude=set(c.ports))[0]
        proc = subprocess.Popen([sys.executable, "-m", "pynode", "proxy", "--port", str(port),
                                 "--cluster", "127.0.0.1:%d" % c.ports[0],
                                 "--workers", str(workers)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            wait_ping(port, timeout=20)
            time.sleep(2 if workers > 1 else 0)      # the other workers start listening
            print("pynode proxy (%d process%s) vs redis-benchmark --cluster direct, same "
                  "cluster" % (workers, "es" if workers > 1 else ""))
            print("%-6s %9s %14s %14s %7s %14s" % ("test", "pipeline", "proxy rps",
                                                   "direct rps", "ratio", "proxy us/cmd"),
                  flush=True)
            for pipeline in (int(p) for p in args.proxy_pipelines.split(",")):
                n = args.requests if pipeline > 1 else max(1, args.requests // 4)
                for test in args.tests.split(","):
                    via = direct = 0.0
                    cpu = float("inf")
                    for _ in range(args.rounds):
                        direct = max(direct, benchmark(c.ports[0], test, pipeline, n,
                                                       args.clients))
                        t0 = cpu_seconds(proc.pid)
                        via = max(via, benchmark(port, test, pipeline, n, args.clients,
                                                 cluster=False))
                        cpu = min(cpu, (cpu_seconds(proc.pid) - t0) / n * 1e6)
                    print("%-6s %9d %14.0f %14.0f %7.2f %14.2f"
                          % (test.upper(), pipeline, via, direct, via / direct, cpu),
                          flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
