"""The freer's turns on the event loop, and which deletes are lazy.

storage/lazyfree.py takes big detached values apart in pieces; this gives it
a slice of every loop turn while it has work (scheduled with call_soon, so
the clients' reads, the bus and the timers run between two slices), as
Redis's lazyfree thread runs beside the main one. It also maps the
lazyfree-lazy-* settings onto the keyspace (server deletes, expiry) and
answers for the commands (user deletes, flushes) and the replica's flush.
"""

from __future__ import annotations

import time

TURN_BUDGET = 0.001     # seconds of freeing per loop turn


class LazyFree:
    def __init__(self, srv) -> None:
        self.srv = srv
        self.freer = srv.ks.freer
        self.freer.on_work = self.schedule
        self.scheduled = False
        self.user_del = False       # lazyfree-lazy-user-del: DEL acts as UNLINK
        self.user_flush = False     # lazyfree-lazy-user-flush: FLUSHALL/FLUSHDB default ASYNC
        self.eviction = False       # lazyfree-lazy-eviction
        self.replica_flush = False  # replica-lazy-flush: a full sync's flush

    def configure(self) -> None:
        cfg = self.srv.cfg
        ks = self.srv.ks
        ks.lazy_server_del = cfg.bool("lazyfree-lazy-server-del")
        ks.lazy_expire = cfg.bool("lazyfree-lazy-expire")
        self.user_del = cfg.bool("lazyfree-lazy-user-del")
        self.user_flush = cfg.bool("lazyfree-lazy-user-flush")
        self.eviction = cfg.bool("lazyfree-lazy-eviction")
        self.replica_flush = cfg.bool("replica-lazy-flush")

    def schedule(self) -> None:
        loop = self.srv.loop
        if loop is None:                 # no event loop (in-process use): now
            self.freer.drain()
            return
        if not self.scheduled:
            self.scheduled = True
            loop.call_soon(self.turn)

    def turn(self) -> None:
        self.scheduled = False
        if self.freer.step(time.perf_counter() + TURN_BUDGET):
            self.schedule()

    def info(self) -> dict:
        return {"lazyfree_pending_objects": self.freer.pending,
                "lazyfreed_objects": self.freer.freed}
