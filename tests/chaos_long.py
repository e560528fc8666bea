"""Chaos, long form: ``python -m tests.chaos_long`` (``make chaos`` runs it).

A 3+3 cluster (cluster-node-timeout 2000 ms) under a writer with a ledger of writes
acknowledged by WAIT 1 (tests/chaos.py).  N rounds of: kill -9 a random primary,
wait until every slot is served, restart it, wait until it is a replica, check the
ledger.  Then one SIGSTOP/SIGCONT of a primary, one kill -9 of a replica and one
CLUSTER FAILOVER under load.  Prints each round's failover time (kill -> first
successful write on the killed primary's slots) and the median as a multiple of
node-timeout.  Exit status 0 only if every round and scenario passed.

    python -m tests.chaos_long [--rounds 20] [--server pynode|redis] [--seed N]
                               [--node-timeout 2000] [--max-ratio 1.5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import traceback

from tests.chaos import (ChaosCluster, ChaosError, Writer, kill_primary_round,
                         kill_replica, manual_failover, sigstop_primary)
from tests.cluster_helpers import backend


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.chaos_long", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--server", choices=("pynode", "redis"), default=None,
                    help="default: $PYNODE_CLUSTER_SERVER or pynode")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--node-timeout", type=int, default=2000)
    ap.add_argument("--max-ratio", type=float, default=None,
                    help="also fail if the median failover time exceeds this many "
                         "node-timeouts (the goal for pynode is 1.25)")
    ap.add_argument("--no-extras", action="store_true",
                    help="only the kill -9 rounds")
    args = ap.parse_args(argv)
    server = args.server or backend()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    nt = args.node_timeout
    print("chaos long form: %s, 3+3 nodes, cluster-node-timeout %d ms, %d rounds, seed %d"
          % (server, nt, args.rounds, seed), flush=True)
    t_start = time.monotonic()
    times: list[float] = []
    failures: list[str] = []
    cl = ChaosCluster(server=server, node_timeout=nt)
    w = None
    try:
        cl.up()
        w = Writer(cl, keys=3000, seed=seed, max_seconds=120 + 90 * (args.rounds + 3))
        w.start()
        w.wait_progress(acked=50, timeout=30)
        for i in range(1, args.rounds + 1):
            try:
                r = kill_primary_round(cl, w, rng, name="round %d" % i)
            except ChaosError as e:
                failures.append("round %d: %s" % (i, str(e).splitlines()[0]))
                print("round %2d: FAILED\n%s" % (i, e), flush=True)
                break
            times.append(r["failover_s"])
            print("round %2d: kill -9 %d -> %d promoted: served after %5.2fs, first write "
                  "after %5.2fs = %.2fx node-timeout; %d keys checked, 0 lost  [%s]"
                  % (i, r["victim"], r["heir"], r["served_s"], r["failover_s"],
                     r["failover_s"] * 1000 / nt, r["checked"], w.summary()), flush=True)
        if not failures and not args.no_extras:
            for name, fn in (("sigstop primary", sigstop_primary),
                             ("kill -9 replica", kill_replica),
                             ("manual failover", manual_failover)):
                try:
                    r = fn(cl, w, rng)
                    print("%s: ok %s" % (name, r), flush=True)
                except ChaosError as e:
                    failures.append("%s: %s" % (name, str(e).splitlines()[0]))
                    print("%s: FAILED\n%s" % (name, e), flush=True)
                    break
    except BaseException as e:  # noqa: BLE001 - report, clean up, exit non-zero
        failures.append("%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e)
                                    else ""))
        traceback.print_exc()
    finally:
        if w is not None:
            try:
                w.stop()
            except ChaosError as e:
                failures.append(str(e).splitlines()[0])
            print("writer: %s" % w.summary())
            if w.stats.failed:
                failures.append("%d writes given up: %s" % (w.stats.failed, w.failures[:5]))
        cl.cleanup()
    if times:
        med = statistics.median(times)
        ratio = med * 1000 / nt
        print("failover times (s): %s" % " ".join("%.2f" % t for t in times))
        print("failover median: %.2fs = %.2fx node-timeout (min %.2fs, max %.2fs, "
              "%d rounds)" % (med, ratio, min(times), max(times), len(times)))
        if args.max_ratio is not None and ratio > args.max_ratio:
            failures.append("median failover %.2fx node-timeout > %.2fx"
                            % (ratio, args.max_ratio))
    print("total %.0fs" % (time.monotonic() - t_start))
    if failures:
        print("CHAOS FAILED (%s, seed %d):\n  %s" % (server, seed, "\n  ".join(failures)))
        return 1
    print("CHAOS OK (%s, seed %d)" % (server, seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
