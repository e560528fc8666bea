"""CPU time per command through Client.data_received, in process.

    python -m tests.bench_commands              # this checkout, as it imports
    python -m tests.bench_commands --compare    # compiled vs pure, alternating

Each read carries 16 commands (as `redis-benchmark -P 16`), goes through the
parser, the dispatcher and the handlers, and its replies are written to a
transport that keeps them in memory: no sockets, no event loop.  A figure is
the best of 5 runs of 2000 reads, in thread CPU time, so other load on the
machine inflates it less than wall time would.

--compare runs the same measure in child processes over this checkout (with
whatever compiled modules it holds) and over a copy of its source files
(pure Python), alternating, and keeps each side's best.  Not a test:
docs/benchmarks.md has the numbers.
"""

from __future__ import annotations

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


def compiled_modules() -> list[str]:
    """The project's modules this process imported from extension modules
    (built in place, e.g. by mypyc), not from their .py files."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return sorted(name for name, m in list(sys.modules.items())
                  if name.split(".")[0] in ("pynode", "storage", "gossip")
                  and (getattr(m, "__file__", None) or "").endswith(suffixes))


def measure() -> dict:
    """us per command for each workload, in this process's form."""
    from tests.inproc import InProc
    srv = InProc()
    c = srv.client()
    client, buf = c.c, c.t.buf
    result: dict = {"compiled": compiled_modules(), "us": {}}
    for name, reads in workloads().items():
        best = float("inf")
        for _ in range(RUNS):
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


def run_child(root: str) -> dict:
    env = dict(os.environ, PYTHONPATH=root)
    out = subprocess.run([sys.executable, "-m", "tests.bench_commands", "--json"],
                         cwd=root, env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit("the measure in %s failed:\n%s" % (root, out.stderr))
    return json.loads(out.stdout)


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
    if "--compare" in args:
        compare(int(os.environ.get("BENCH_ROUNDS", "3")))
    elif "--json" in args:
        print(json.dumps(measure()))
    else:
        r = measure()
        print("compiled: %s" % (", ".join(r["compiled"]) or "none (pure Python)"))
        for name, us in r["us"].items():
            print("%-16s %6.2f us" % (name, us))


if __name__ == "__main__":
    main()
