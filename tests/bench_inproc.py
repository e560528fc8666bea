"""CPU time per command through `Client.data_received`, in process: the
commands `make bench` runs with -P 16, as redis-benchmark 7.0 sends them,
16 to a read.

    python -m tests.bench_inproc [--cluster] [--rounds N] [--reads N] [CMD ...]
    python tests/bench_inproc.py --against OTHER_TREE [--pairs N] [...]

Each figure is the best of --rounds runs of --reads reads, in this thread's
CPU time (thread_time), so other load on the machine inflates it less than
wall time would: parse (hiredis), dispatch, handler, reply join; no system
calls (the transport drops the replies).  The keys and their state follow
what redis-benchmark does (`-t lpush` then `-t rpop`... on one server, keys
without -r), e.g. MSET sets one key ten times, SPOP and ZPOPMIN mostly find
no key, LRANGE_100 reads the first 100 of a long list.  --cluster runs a
cluster node owning every slot, keys with a hash tag as redis-benchmark
--cluster sends them.

--against runs this script alternately under this tree and OTHER_TREE (a
checkout of the code to compare with: its pynode and tests.inproc are
imported), --pairs times each, and prints the best of each side and their
ratio.  Not a test: docs/benchmarks.md has the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from tests.inproc import InClient, InProc, _Transport

# redis-benchmark 7.0's commands (-d 3: "xxx"), XADD as tests/bench.py runs it
COMMANDS = {
    "PING": [b"PING"],              # the dispatch without a handler
    "SET": [b"SET", b"key%s:__rand_int__", b"xxx"],
    "GET": [b"GET", b"key%s:__rand_int__"],
    "INCR": [b"INCR", b"counter%s:__rand_int__"],
    "LPUSH": [b"LPUSH", b"mylist%s", b"xxx"],
    "RPOP": [b"RPOP", b"mylist%s"],
    "SADD": [b"SADD", b"myset%s", b"element:__rand_int__"],
    "HSET": [b"HSET", b"myhash%s", b"element:__rand_int__", b"xxx"],
    "SPOP": [b"SPOP", b"myset%s"],
    "ZADD": [b"ZADD", b"myzset%s", b"0", b"element:__rand_int__"],
    "ZPOPMIN": [b"ZPOPMIN", b"myzset%s"],
    "LRANGE_100": [b"LRANGE", b"mylist%s", b"0", b"99"],
    "MSET": [b"MSET"] + [b"key%s:__rand_int__", b"xxx"] * 10,
    "XADD": [b"XADD", b"bench:stream%s", b"*", b"field", b"value"],
}
ORDER = list(COMMANDS)


class _NullTransport(_Transport):
    """Drops what is written: the figures leave the system calls out."""

    def write(self, data: bytes) -> None:
        pass


def encode(argv: list) -> bytes:
    return b"*%d\r\n" % len(argv) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in argv)


def make_server(cluster: bool):
    if not cluster:
        return InProc().srv
    from pynode.config import Config
    from pynode.server import Server
    cfg = Config()
    cfg.values["save"] = ""
    cfg.values["cluster-enabled"] = "yes"
    cfg.values["dir"] = os.getcwd()
    srv = Server(cfg)
    srv.load_data()                          # nodes.conf in the directory
    srv.cluster.call("add_slots", range(16384))
    srv.cluster.state.state = "ok"           # no writable delay: serve at once
    return srv


def measure(names: list, cluster: bool, rounds: int, reads: int) -> dict:
    """{name: best us per command}."""
    os.chdir(tempfile.mkdtemp(prefix="pynode-bench-"))
    srv = make_server(cluster)
    ic = InClient(srv)
    c = ic.c
    c.transport = _NullTransport()
    tag = b"{06S}" if cluster else b""
    data = {name: encode([a.replace(b"%s", tag) for a in COMMANDS[name]]) * 16
            for name in COMMANDS}
    # RPOP pops what LPUSH pushed, LRANGE_100 reads a list of redis-benchmark's
    # LPUSH run: one long list, refilled before each RPOP round
    best = {}
    thread_time = time.thread_time_ns
    for name in names:
        feed = c.data_received
        buf = data[name]
        lo = float("inf")
        for _ in range(rounds):
            if name in ("RPOP", "LRANGE_100"):
                push = data["LPUSH"]
                for _ in range(reads):
                    feed(push)
            t0 = thread_time()
            for _ in range(reads):
                feed(buf)
            lo = min(lo, (thread_time() - t0) / (reads * 16))
        best[name] = lo / 1000.0
    return best


def compare(args) -> None:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = {"before": os.path.abspath(args.against), "after": here}
    best: dict = {"before": {}, "after": {}}
    cmd = [sys.executable, os.path.abspath(__file__), "--json", "--rounds", str(args.rounds),
           "--reads", str(args.reads)] + (["--cluster"] if args.cluster else []) + args.names
    for _ in range(args.pairs):
        for side, tree in trees.items():
            env = dict(os.environ, PYTHONPATH=tree)
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True,
                                 timeout=1800, cwd=tree).stdout
            for name, us in json.loads(out.splitlines()[-1]).items():   # after any log lines
                best[side][name] = min(best[side].get(name, us), us)
    print("%-11s %8s %8s %6s" % ("us/command", "before", "after", "ratio"))
    for name in args.names or ORDER:
        b, a = best["before"][name], best["after"][name]
        print("%-11s %8.2f %8.2f %6.2f" % (name, b, a, a / b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="commands (default: all): " + " ".join(ORDER))
    ap.add_argument("--cluster", action="store_true")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reads", type=int, default=2000)
    ap.add_argument("--against", help="a tree to compare with, run alternately")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    args.names = [n.upper() for n in args.names]
    for n in args.names:
        if n not in COMMANDS:
            ap.error("unknown command %s (one of %s)" % (n, " ".join(ORDER)))
    if args.against:
        compare(args)
        return
    res = measure(args.names or ORDER, args.cluster, args.rounds, args.reads)
    if args.json:
        print(json.dumps(res))
    else:
        for name, us in res.items():
            print("%-11s %6.2f us" % (name, us))


if __name__ == "__main__":
    main()
