"""CPU per key of each side of the legacy slot move, in process.

`redis-cli --cluster reshard --cluster-pipeline 100` moves a slot by
alternating CLUSTER GETKEYSINSLOT <slot> 100 and MIGRATE ... KEYS <100 keys>
on the source; the source sends the batch's 100 RESTORE-ASKING in one write
and waits for the replies.  Here each side is a cluster node Server in this
process (tests.bench_commands.cluster_server), timed with getrusage (user and system CPU):

- the source answers GETKEYSINSLOT and MIGRATE as redis-cli sends them, to a
  redis-server started for the purpose (its CPU is not counted);
- the target is fed the batches of RESTORE-ASKING the source writes (one
  read of 100 commands each) into a slot it imports, and its replies are
  taken as the event loop's flush would write them.

Nothing is asserted; it prints microseconds of CPU per key (best of the
rounds) for each side.

    python -m tests.bench_slotmove [--keys 100000] [--rounds 4] [--side both|source|target]
                                   [--profile source|target]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import sys

from storage import dump as dumpfmt
from storage.slots import keyslot
from tests.bench_commands import cluster_server
from tests.helpers import Proc, enc
from tests.inproc import InClient, _decode

BATCH = 100
OTHER = "f" * 40


def cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def fill(srv, tag: bytes, keys: int) -> None:
    db = srv.ks.db(0)
    for i in range(keys):
        db.set(b"%s:%d" % (tag, i), b"xxx")


def source_round(srv, c: InClient, slot: int, tag: bytes, keys: int, port: int,
                 profile: cProfile.Profile | None) -> float:
    fill(srv, tag, keys)
    client, buf = c.c, c.t.buf
    getkeys = [b"CLUSTER", b"GETKEYSINSLOT", b"%d" % slot, b"%d" % BATCH]
    head = [b"MIGRATE", b"127.0.0.1", b"%d" % port, b"", b"0", b"60000", b"KEYS"]
    moved = 0
    if profile:
        profile.enable()
    t0 = cpu()
    while True:
        client.run([getkeys])
        found = _decode(bytes(buf))[0]
        buf.clear()
        if not found:
            break
        client.run([head + found])
        if buf != b"+OK\r\n":
            raise RuntimeError("MIGRATE: %r" % bytes(buf[:200]))
        buf.clear()
        moved += len(found)
    t1 = cpu()
    if profile:
        profile.disable()
    if moved != keys:
        raise RuntimeError("moved %d of %d keys" % (moved, keys))
    return tuple((b - a) / keys * 1e6 for a, b in zip(t0, t1))


def target_batches(tag: bytes, keys: int) -> list[bytes]:
    """The source's writes: RESTORE-ASKING of 100 keys each."""
    payload = dumpfmt.dumps(b"xxx")
    out = []
    for start in range(0, keys, BATCH):
        out.append(b"".join(enc("RESTORE-ASKING", b"%s:%d" % (tag, i), "0", payload)
                            for i in range(start, min(keys, start + BATCH))))
    return out


def target_round(srv, c: InClient, slot: int, batches: list[bytes], keys: int,
                 profile: cProfile.Profile | None) -> float:
    client, buf = c.c, c.t.buf
    if profile:
        profile.enable()
    t0 = cpu()
    for data in batches:
        client.data_received(data)
        if buf.count(b"+OK\r\n") * 5 != len(buf):
            raise RuntimeError("RESTORE-ASKING: %r" % bytes(buf[:200]))
        buf.clear()
    t1 = cpu()
    if profile:
        profile.disable()
    db = srv.ks.db(0)
    if len(db.slots[slot]) != keys:
        raise RuntimeError("%d of %d keys restored" % (len(db.slots[slot]), keys))
    db.flush_slot(slot)
    return tuple((b - a) / keys * 1e6 for a, b in zip(t0, t1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=100000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--side", default="both", choices=("both", "source", "target"))
    ap.add_argument("--profile", choices=("source", "target"))
    args = ap.parse_args(argv)
    srv = cluster_server()
    slot = 1234
    tag = b"{%s}" % next(b"t%d" % i for i in range(100000) if keyslot(b"t%d" % i) == slot)
    st = srv.cluster.state
    c = InClient(srv)
    prof = {side: cProfile.Profile() if args.profile == side else None
            for side in ("source", "target")}
    best = {}
    if args.side in ("both", "source"):
        st.myself.migrating[slot] = OTHER
        with Proc(redis_server=True) as target:
            r = target.client()
            rounds = []
            for _ in range(args.rounds):
                rounds.append(source_round(srv, c, slot, tag, args.keys, target.port,
                                           prof["source"]))
                r.flushall()
            best["source"] = min(rounds, key=sum)
        del st.myself.migrating[slot]
    if args.side in ("both", "target"):
        st.slot_owner[slot] = OTHER
        st.myself.importing[slot] = OTHER
        batches = target_batches(tag, args.keys)
        best["target"] = min((target_round(srv, c, slot, batches, args.keys, prof["target"])
                              for _ in range(args.rounds)), key=sum)
    print("slot move in process, %d keys, best of %d rounds: %s"
          % (args.keys, args.rounds, ", ".join(
              "%s %.2f us CPU a key (user %.2f + system %.2f)" % (side, sum(t), t[0], t[1])
              for side, t in best.items())))
    for side, p in prof.items():
        if p is not None:
            pstats.Stats(p).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
