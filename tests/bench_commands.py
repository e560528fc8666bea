"""CPU time per command through Client.data_received, in process.

    python -m tests.bench_commands              # this checkout, as it imports
    python -m tests.bench_commands --compare    # compiled vs pure, alternating
    python tests/bench_commands.py --redis-benchmark [--cluster] --against TREE

Each read carries 16 commands (as `redis-benchmark -P 16`), goes through the
parser, the dispatcher and the handlers, and its replies are written to a
transport that keeps them in memory: no sockets, no event loop.  A figure is
the best of 5 runs of 2000 reads, in thread CPU time, so other load on the
machine inflates it less than wall time would.

--compare runs the same measure in child processes over this checkout (with
whatever compiled modules it holds) and over a copy of its source files
(pure Python), alternating, and keeps each side's best.

--redis-benchmark measures instead the -P 16 commands of `make bench` as
redis-benchmark 7.0 sends them (one read repeated; the keys and their state
as its runs leave them: MSET sets one key ten times, SPOP and ZPOPMIN
mostly find no key, RPOP and LRANGE_100 read a list refilled by LPUSH
before each run), --cluster on a cluster node owning every slot with the
keys hash-tagged as redis-benchmark --cluster sends them.  --against TREE
runs the measure alternately under TREE (another checkout, e.g. the code
before a change: its pynode and tests.inproc are imported) and this one.
Not a test: docs/benchmarks.md has the numbers.
"""

from __future__ import annotations

import atexit
import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

PIPELINE = 16
READS = 2000
RUNS = 5


def _resp(*args: bytes) -> bytes:
    """A command as a client sends it (an array of bulk strings)."""
    from pynode.resp import encode
    return encode(list(args))


def workloads() -> dict[str, list[bytes]]:
    """Name -> 64 different reads of PIPELINE commands each."""
    def reads(make) -> list[bytes]:
        return [b"".join(make(r * PIPELINE + i) for i in range(PIPELINE)) for r in range(64)]
    val = b"x" * 16
    return {
        "PING": reads(lambda i: _resp(b"PING")),
        "SET": reads(lambda i: _resp(b"SET", b"key:%d" % (i % 1000), val)),
        "GET": reads(lambda i: _resp(b"GET", b"key:%d" % (i % 1000))),
        "INCR": reads(lambda i: _resp(b"INCR", b"counter:%d" % (i % 100))),
        "MSET (10 keys)": reads(lambda i: _resp(b"MSET", *[
            b for k in range(10) for b in (b"key:%d" % ((i * 10 + k) % 1000), val)])),
        "LPUSH": reads(lambda i: _resp(b"LPUSH", b"list:%d" % (i % 100), val)),
        "SADD": reads(lambda i: _resp(b"SADD", b"set:%d" % (i % 100), b"m%d" % i)),
        "ZADD": reads(lambda i: _resp(b"ZADD", b"zset:%d" % (i % 100), b"%d" % i, b"m%d" % i)),
        "HSET": reads(lambda i: _resp(b"HSET", b"hash:%d" % (i % 100), b"f%d" % (i % 50), val)),
    }


# redis-benchmark 7.0's commands (-d 3: "xxx"; %s: the cluster hash tag),
# XADD as tests/bench.py runs it
REDIS_BENCHMARK = {
    "PING": [b"PING"],
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
    "MSET (10 keys)": [b"MSET"] + [b"key%s:__rand_int__", b"xxx"] * 10,
    "XADD": [b"XADD", b"bench:stream%s", b"*", b"field", b"value"],
}
REFILLED = ("RPOP", "LRANGE_100")      # LPUSH's reads fill the list before each run


def redis_benchmark_workloads(cluster: bool) -> dict[str, list[bytes]]:
    tag = b"{06S}" if cluster else b""
    return {name: [b"".join([_resp(*[a.replace(b"%s", tag) for a in argv])] * PIPELINE)] * 64
            for name, argv in REDIS_BENCHMARK.items()}


def scratch_dir() -> str:
    """A new directory, removed when the process exits."""
    d = tempfile.mkdtemp(prefix="pynode-bench-")
    atexit.register(shutil.rmtree, d, True)
    return d


def cluster_server(workdir: str | None = None):
    """A cluster node owning every slot, serving at once (nodes.conf in
    workdir, made the current directory; default: a new directory)."""
    from pynode.config import Config
    from pynode.server import Server
    os.chdir(workdir or scratch_dir())
    cfg = Config()
    cfg.values["save"] = ""
    cfg.values["cluster-enabled"] = "yes"
    cfg.values["dir"] = os.getcwd()
    srv = Server(cfg)
    srv.load_data()
    srv.cluster.call("add_slots", range(16384))
    srv.cluster.state.state = "ok"           # no writable delay
    return srv


def compiled_modules() -> list[str]:
    """The project's modules this process imported from extension modules
    (built in place, e.g. by mypyc), not from their .py files."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return sorted(name for name, m in list(sys.modules.items())
                  if name.split(".")[0] in ("pynode", "storage", "gossip")
                  and (getattr(m, "__file__", None) or "").endswith(suffixes))


def measure(redis_benchmark: bool = False, cluster: bool = False) -> dict:
    """us per command for each workload, in this process's form."""
    from tests.inproc import InClient, InProc
    c = InClient(cluster_server()) if cluster else InProc().client()
    client, buf = c.c, c.t.buf
    result: dict = {"compiled": compiled_modules(), "us": {}}
    loads = redis_benchmark_workloads(cluster) if redis_benchmark else workloads()
    for name, reads in loads.items():
        best = float("inf")
        for _ in range(RUNS):
            if redis_benchmark and name in REFILLED:
                for r in range(READS):
                    client.data_received(loads["LPUSH"][0])
                    buf.clear()
            t0 = time.thread_time_ns()
            for r in range(READS):
                client.data_received(reads[r & 63])
                buf.clear()
            best = min(best, (time.thread_time_ns() - t0) / (READS * PIPELINE))
        result["us"][name] = best / 1000
    return result


def pure_copy(root: str) -> str:
    """The source files of the checkout at root (tracked or not ignored:
    no compiled module), copied to a new directory."""
    files = subprocess.run(["git", "-C", root, "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], check=True,
                           capture_output=True).stdout.split(b"\0")
    dest = tempfile.mkdtemp(prefix="pynode-pure-")
    for f in files:
        if not f:
            continue
        src = os.path.join(root, f.decode())
        if os.path.isfile(src):
            dst = os.path.join(dest, f.decode())
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(src, dst)
    return dest


def run_child(root: str, *flags: str) -> dict:
    """The measure in a child process importing root's code (this file is
    run by its path: root may be a checkout without it)."""
    env = dict(os.environ, PYTHONPATH=root)
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--json", *flags],
                         cwd=root, env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit("the measure in %s failed:\n%s" % (root, out.stderr))
    return json.loads(out.stdout.splitlines()[-1])      # after any log lines


def against(tree: str, rounds: int, flags: list[str]) -> None:
    """Best us per command under tree ("before") and this checkout ("after"),
    measured alternately."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    best: dict[str, dict[str, float]] = {"before": {}, "after": {}}
    for _ in range(rounds):
        for side, t in (("before", os.path.abspath(tree)), ("after", root)):
            for name, us in run_child(t, *flags)["us"].items():
                best[side][name] = min(best[side].get(name, us), us)
    print("%-16s %9s %9s %7s" % ("us per command", "before", "after", "ratio"))
    for name, us in best["before"].items():
        print("%-16s %9.2f %9.2f %7.2f" % (name, us, best["after"][name],
                                          best["after"][name] / us))


def compare(rounds: int) -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    pure = pure_copy(root)
    try:
        best: dict[str, dict[str, float]] = {"pure": {}, "compiled": {}}
        modules: list[str] = []
        for _ in range(rounds):
            for side, tree in (("pure", pure), ("compiled", root)):
                r = run_child(tree)
                if side == "compiled":
                    modules = r["compiled"]
                elif r["compiled"]:
                    raise SystemExit("the pure copy imported compiled modules: %s" % r["compiled"])
                for name, us in r["us"].items():
                    best[side][name] = min(best[side].get(name, us), us)
    finally:
        shutil.rmtree(pure, True)
    if not modules:
        raise SystemExit("this checkout has no compiled modules (see docs/benchmarks.md, mypyc)")
    print("compiled: %s" % ", ".join(modules))
    print("%-16s %9s %9s %7s" % ("us per command", "pure", "compiled", "gain"))
    for name, us in best["pure"].items():
        cu = best["compiled"][name]
        print("%-16s %9.2f %9.2f %6.0f%%" % (name, us, cu, (1 - cu / us) * 100))


def main() -> None:
    args = sys.argv[1:]
    flags = [a for a in ("--redis-benchmark", "--cluster") if a in args]
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    if "--against" in args:
        i = args.index("--against") + 1
        if i >= len(args):
            raise SystemExit("--against needs a checkout to compare with")
        against(args[i], rounds, flags)
    elif "--compare" in args:
        compare(rounds)
    elif "--json" in args:
        print(json.dumps(measure("--redis-benchmark" in args, "--cluster" in args)))
    else:
        r = measure("--redis-benchmark" in args, "--cluster" in args)
        print("compiled: %s" % (", ".join(r["compiled"]) or "none (pure Python)"))
        for name, us in r["us"].items():
            print("%-16s %6.2f us" % (name, us))


if __name__ == "__main__":
    main()
