"""Poll every node of the cluster, keep the latest snapshot and the event log.

Each round: CLUSTER NODES from every known node (the first one that answers is the
reference whose view is shown; each node's own line carries its migrating/importing
slots), then INFO all, CLUSTER INFO, SLOWLOG LEN / GET 1, LATENCY LATEST, the
keys left in slots the node migrates or imports (CLUSTER COUNTKEYSINSLOT) and -
where the node has them - CLUSTER SLOT-STATS and CLUSTER GETSLOTMIGRATIONS from
every node, all in parallel with bounded timeouts.  A node that
does not answer is shown down and retried on the next round; the seeds given on
the command line are always tried, so the dashboard finds the cluster again after
every node it knew has been replaced.
"""

from __future__ import annotations

import asyncio
import collections
import time

from pynode.dashboard import state
from pynode.dashboard.resp import Conn, ReplyError

SLOT_STATS_RETRY = 30.0     # seconds before asking a node without SLOT-STATS again
SLOT_KEYS_MAX = 32          # migrating/importing slots counted per node and round


class Poller:
    def __init__(self, seeds: list[tuple[str, int]], password: str | None = None,
                 user: str | None = None, interval: float = 1.0, timeout: float = 2.0,
                 max_events: int = 500) -> None:
        self.seeds = ["%s:%d" % s for s in seeds]
        self.password, self.user = password, user
        self.interval, self.timeout = interval, timeout
        self.conns: dict[str, Conn] = {}
        self.snapshot: dict | None = None
        self.events: collections.deque = collections.deque(maxlen=max_events)
        self.event_seq = 0
        self.failovers = 0
        self.polls = 0
        self.errors = 0
        self.listeners: set[asyncio.Queue] = set()
        self._no_slot_stats: dict[str, float] = {}
        self._no_migrations: dict[str, float] = {}
        self._silent: set[str] = set()     # nodes that did not answer CLUSTER NODES this round
        self._task: asyncio.Task | None = None

    # -- connections ---------------------------------------------------------

    def conn(self, addr: str) -> Conn:
        c = self.conns.get(addr)
        if c is None:
            host, _, port = addr.rpartition(":")
            c = self.conns[addr] = Conn(host, int(port), self.password, self.user, self.timeout)
        return c

    async def call(self, addr: str, *args, timeout: float | None = None):
        return await self.conn(addr).call(*args, timeout=timeout)

    # -- one round -------------------------------------------------------------

    async def _nodes_of(self, addr: str):
        try:
            reply = await self.call(addr, "CLUSTER", "NODES")
        except (OSError, ConnectionError, asyncio.TimeoutError) as e:
            self._silent.add(addr)
            return addr, None, str(e) or type(e).__name__
        if isinstance(reply, ReplyError):
            return addr, None, str(reply)
        return addr, state.parse_nodes(reply), None

    async def _health(self, addr: str, now: float, me: dict | None) -> dict:
        """Slow log, latency monitor, slot migrations of one node."""
        out: dict = {}
        slen = await self.call(addr, "SLOWLOG", "LEN")
        last = await self.call(addr, "SLOWLOG", "GET", "1")
        latest = await self.call(addr, "LATENCY", "LATEST")
        out["latency"] = state.parse_latency(slen, last, latest)
        migrations = None
        if now >= self._no_migrations.get(addr, 0):
            reply = await self.call(addr, "CLUSTER", "GETSLOTMIGRATIONS")
            migrations = state.parse_slot_migrations(reply)
            if migrations is None:
                self._no_migrations[addr] = now + SLOT_STATS_RETRY
        out["migrations"] = migrations
        keys = {}
        if me is not None:
            slots = sorted(me["migrating"])[:SLOT_KEYS_MAX] + \
                sorted(me["importing"])[:SLOT_KEYS_MAX]
            for slot in slots:
                n = await self.call(addr, "CLUSTER", "COUNTKEYSINSLOT", slot)
                if isinstance(n, int):
                    keys[slot] = n
        out["slot_keys"] = keys
        return out

    async def _details(self, addr: str, now: float, me: dict | None = None) -> dict:
        own_calls = self.conn(addr).calls
        try:
            info = await self.call(addr, "INFO", "all")
            cinfo = await self.call(addr, "CLUSTER", "INFO")
            stats = None
            if now >= self._no_slot_stats.get(addr, 0):
                reply = await self.call(addr, "CLUSTER", "SLOT-STATS", "ORDERBY",
                                        "key-count", "LIMIT", "10")
                stats = state.parse_slot_stats(reply)
                if stats is None:
                    self._no_slot_stats[addr] = now + SLOT_STATS_RETRY
            health = await self._health(addr, now, me)
        except (OSError, ConnectionError, asyncio.TimeoutError) as e:
            return {"up": False, "error": str(e) or type(e).__name__}
        out = {"up": True, "error": None, "own_calls": own_calls}
        out["info"] = state.parse_info(info) if not isinstance(info, ReplyError) else {}
        if isinstance(info, ReplyError):
            out["error"] = str(info)
        out["cluster_info"] = (state.parse_info(cinfo)
                               if not isinstance(cinfo, ReplyError) else {})
        out["slot_stats"] = stats
        out.update(health)
        return out

    async def poll_once(self) -> dict:
        now = time.time()
        self._silent = set()
        known = list(dict.fromkeys(
            [n["addr"] for n in (self.snapshot or {}).get("nodes", [])] + self.seeds))
        views = await asyncio.gather(*(self._nodes_of(a) for a in known))
        view, reference, own = [], None, {}
        for addr, nodes, err in views:
            if nodes is None:
                continue
            me = next((n for n in nodes if n["myself"]), None)
            if me:
                own[addr] = me
            if reference is None and me is not None:
                view, reference = nodes, me["id"]
        # nodes the reference knows but we had not polled yet
        extra = [n["addr"] for n in view if n["addr"] not in own
                 and n["addr"] not in {a for a, _, _ in views}]
        for addr, nodes, err in await asyncio.gather(*(self._nodes_of(a) for a in extra)):
            me = next((n for n in nodes or [] if n["myself"]), None)
            if me:
                own[addr] = me
        addrs = [n["addr"] for n in view]
        # a node that just did not answer is not asked again this round (a frozen
        # node would hold the round for one more timeout)
        asked = [a for a in addrs if a not in self._silent]
        got = dict(zip(asked, await asyncio.gather(*(self._details(a, now, own.get(a))
                                                      for a in asked))))
        details = [got.get(a, {"up": False, "error": "no reply"}) for a in addrs]
        per_node = {}
        errors = {addr: err for addr, _, err in views if err}
        for addr, d in zip(addrs, details):
            if not d.get("up") and addr in errors:
                d["error"] = errors[addr]
            d["self"] = own.get(addr)
            per_node[addr] = d
        snap = state.build_snapshot(now, view, reference, per_node, self.snapshot)
        snap["seeds"] = self.seeds
        snap["reachable"] = reference is not None
        for addr in list(self.conns):      # forget connections to nodes that left
            if addr not in addrs and addr not in self.seeds:
                self.conns.pop(addr).close()
        if reference is None and self.snapshot is not None and self.snapshot.get("reachable"):
            new_events = [{"time": now, "kind": "unreachable", "node": None,
                           "text": "no node answers CLUSTER NODES"}]
        elif reference is None:
            new_events = []
        else:
            last = self.snapshot if self.snapshot and self.snapshot.get("reachable") else None
            new_events = state.diff(last, snap)
        for e in new_events:
            self.event_seq += 1
            e["id"] = self.event_seq
            self.events.append(e)
            if e["kind"] == "failover":
                self.failovers += 1
        if reference is None and self.snapshot is not None:
            snap = dict(self.snapshot, reachable=False, time=now,
                        nodes=[dict(n, up=False) for n in self.snapshot["nodes"]])
        self.snapshot = snap
        self.polls += 1
        self._publish(snap, new_events)
        return snap

    # -- subscribers (SSE) -------------------------------------------------------

    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(maxsize=8)
        self.listeners.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        self.listeners.discard(q)

    def _publish(self, snap: dict, events: list[dict]) -> None:
        for q in list(self.listeners):
            self._put(q, (snap, events))

    @staticmethod
    def _put(q: asyncio.Queue, item) -> None:
        if q.full():            # a slow page: drop its oldest update
            try:
                q.get_nowait()
            except asyncio.QueueEmpty:
                pass
        q.put_nowait(item)

    def close_listeners(self) -> None:
        """Tell every event stream to end (None), at shutdown."""
        for q in list(self.listeners):
            self._put(q, None)

    # -- life cycle ----------------------------------------------------------------

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.poll_once()
            except Exception as e:     # a bug in one round must not stop the dashboard
                self.errors += 1
                self.event_seq += 1
                self.events.append({"id": self.event_seq, "time": time.time(),
                                    "kind": "error", "node": None,
                                    "text": "poll failed: %r" % e})
            await asyncio.sleep(max(0.05, self.interval - (time.monotonic() - started)))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        for c in self.conns.values():
            c.close()
