"""CPU time per SET / GET through the dispatcher of a cluster node, in process.

    python -m tests.bench_slot_stats [no|yes|none]

`no` / `yes`: cluster-slot-stats-enabled; `none` leaves the directive out (for
a checkout that does not know it, to compare before and after).  The node owns
every slot; each figure is the best of 5 runs of 100k commands, in CPU time of
this process (process_time), so other load on the machine inflates it less
than wall time would.  Not a test: docs/benchmarks.md has the numbers.
"""

from __future__ import annotations

import os
import sys
import time


def cluster_server(stats: str | None):
    from pynode.config import Config
    from pynode.server import Server
    cfg = Config()
    cfg.values["save"] = ""
    cfg.values["cluster-enabled"] = "yes"
    if stats is not None:
        cfg.values["cluster-slot-stats-enabled"] = stats
    srv = Server(cfg)
    srv.load_data()                          # nodes.conf in the current directory
    srv.cluster.call("add_slots", range(16384))
    srv.cluster.state.state = "ok"           # no writable delay: serve at once
    return srv


def ns_per_command(srv, argvs: list, n: int = 100_000, runs: int = 5) -> float:
    from tests.inproc import InClient
    c = InClient(srv).c
    best = float("inf")
    for _ in range(runs):
        execute = srv.execute
        t0 = time.process_time_ns()
        for i in range(n):
            execute(c, argvs[i & 1023])
        best = min(best, (time.process_time_ns() - t0) / n)
    return best


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "no"
    from tests.bench_commands import scratch_dir
    os.chdir(scratch_dir())
    srv = cluster_server(None if mode == "none" else mode)
    sets = [[b"SET", b"key:%d" % i, b"x" * 16] for i in range(1024)]
    gets = [[b"GET", b"key:%d" % i] for i in range(1024)]
    print("cluster-slot-stats-enabled=%s SET %.0f ns GET %.0f ns"
          % (mode, ns_per_command(srv, sets), ns_per_command(srv, gets)))


if __name__ == "__main__":
    main()
