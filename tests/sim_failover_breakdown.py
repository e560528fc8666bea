"""Where a failover's time goes, in the simulator: ``python -m tests.sim_failover_breakdown``.

A 3+3 cluster in gossip/sim.py (network delay 1-5 ms, node-timeout 2000 ms,
some write load so that replicas' offsets differ) runs a while, then one
primary is killed; the cluster's state is sampled every 5 virtual ms until the
dead primary's replica serves its slots and every live node agrees. One line
per seed, then the table of docs/benchmarks.md ("Where a failover's time
goes"): the median (min-max) time from the kill to

1. the first primary that flags the dead one PFAIL,
2. the first node that flags it FAIL (a majority of primaries agree),
3. its replica is the primary of its slots (own view),
4. every slot served once by a primary accepting writes, all views agree.

    python -m tests.sim_failover_breakdown [--seeds 20] [--first-seed 0]
                                           [--node-timeout 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys

from gossip.node import FAIL, PFAIL
from gossip.sim import Simulator

STEPS = (
    ("pfail", "first primary flags it PFAIL"),
    ("fail", "first node flags it FAIL (2 primaries agree)"),
    ("promoted", "its replica is primary of its slots"),
    ("served", "every slot served once, all views agree"),
)
SAMPLE_MS = 5


def one_failover(seed: int, node_timeout: int) -> dict[str, int]:
    """Times (ms from the kill) of each step of STEPS for one seed."""
    sim = Simulator(6, seed=seed, delay=(1, 5), node_timeout_ms=node_timeout, write_load=10)
    failed = sim.form(3)
    assert failed is None, f"seed {seed}: {failed}"
    sim.run_for(1000 + seed * 37 % 1000)  # kill at a varying phase of the ticks
    victim = seed % 3
    vid = sim.node_id(victim)
    (heir,) = [n.index for n in sim.live() if n.state.myself.primary_id == vid]
    slots = set(sim.state(victim).myself.slots)
    t0 = sim.now
    sim.crash(victim)
    seen: dict[str, int] = {}

    def look(s: Simulator) -> bool:
        live = s.live()
        flags = [n.state.nodes[vid].flags for n in live if vid in n.state.nodes]
        if "pfail" not in seen and any(
                PFAIL in f or FAIL in f for n, f in zip(live, flags) if n.state.myself.is_primary):
            seen["pfail"] = s.now - t0
        if "fail" not in seen and any(FAIL in f for f in flags):
            seen["fail"] = s.now - t0
        me = s.state(heir).myself
        if "promoted" not in seen and me.is_primary and slots <= me.slots:
            seen["promoted"] = s.now - t0
        if "served" not in seen and s.every_slot_served_once(writable=True) and s.slots_converged():
            seen["served"] = s.now - t0
        return len(seen) == len(STEPS)

    assert sim.run_until(look, 30 * node_timeout, every_ms=SAMPLE_MS), f"seed {seed}: {seen}"
    return seen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.sim_failover_breakdown", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--node-timeout", type=int, default=2000)
    args = ap.parse_args(argv)
    nt = args.node_timeout
    runs = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        r = one_failover(seed, nt)
        runs.append(r)
        print("seed %3d: " % seed + "  ".join("%s %5d" % (k, r[k]) for k, _ in STEPS), flush=True)
    print()
    print("| step | time | x node-timeout |")
    print("|---|---|---:|")
    for key, label in STEPS:
        ts = [r[key] for r in runs]
        med = statistics.median(ts)
        print("| %s | %.0f ms (%d-%d) | %.2f |" % (label, med, min(ts), max(ts), med / nt))
    return 0


if __name__ == "__main__":
    sys.exit(main())
