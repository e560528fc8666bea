"""Deterministic simulation of a cluster of :class:`ClusterState` nodes.

Everything runs in one process on a virtual clock (ms). The network moves the
actions' messages between nodes over simulated links: each outbound link is a
connection from its owner to whatever node listens at (ip, cport), with loss,
random delay (FIFO per direction, as TCP), duplication, partitions between
groups, crashes and restarts. A crashed node loses its memory and keeps only
the last nodes.conf text it saved (``SaveConfig``); a restart rebuilds it from
that text. Each node ticks every 100 ms (with its own phase), and is woken
(``on_timer``) at the time of its last :class:`~gossip.actions.Wake`.

Replication is modelled by offsets: a primary's offset grows with each accepted
:meth:`Simulator.write` (or with the random ``write_load`` each tick); a replica
copies the offset its primary had ``lag`` ms ago (a per-node lag drawn from
``repl_lag``) while it can reach it, so replicas differ and election ranks matter.
Each tick the node's offset goes to ``set_repl_offset`` and its link status to
``set_master_link_down_since``, as the server does. ``PauseClients`` makes the
node refuse writes until ``UnpauseClients`` or the deadline.

Late event loops (a loaded machine): :meth:`Simulator.stall` freezes one node for a
while, and ``loop_lateness=(probability, max_ms)`` makes every tick of every node
stall it with that probability for up to ``max_ms``. A stalled node processes
nothing; its ticks and the messages that reach it wait until the stall ends and
then run in arrival order (the messages first, as the transport reads its
sockets before a late cron).

All randomness comes from ``random.Random(seed)``: a failing seed replays
exactly. Invariants are checked after every step (see :meth:`Simulator.check`):
the state's own, currentEpoch and lastVoteEpoch never decrease per node (across
restarts too), and no two live primaries serve a slot (cluster state ok) with the
same configEpoch (except a slot its source still migrates to the other: see
_check_slot_epochs).
An :class:`AssertionError` names the seed, time and node.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from gossip import actions as A
from gossip.actions import LinkInfo
from gossip.codec import Message, decode, encode
from gossip.executor import BusPort, SavePolicy, ServerPort, execute
from gossip.node import random_node_id
from gossip.nodes_conf import parse, render
from gossip.state import ClusterState

TICK_MS = 100
DEFERRED_FIRST = 1 << 62  # sorts deferred messages (in their order) before anything else due then
START_MS = 1_700_000_000_000  # a plausible wall clock: times are printed in nodes.conf


# A simulated link's states, and the moves between them (asserted on each change).
CONNECTING, UP, CLOSED = "connecting", "up", "closed"
LINK_MOVES = {CONNECTING: frozenset((UP, CLOSED)), UP: frozenset((CLOSED,)), CLOSED: frozenset((CLOSED,))}


@dataclass(eq=False)
class SimLink:
    id: int
    owner: int  # node index that connected
    owner_inc: int
    key: str  # the node id it belongs to, in the owner's table
    target: int | None  # node index listening at the address, if any
    target_inc: int
    state: str = CONNECTING  # see LINK_MOVES
    pending: list = field(default_factory=list)
    last_fwd: int = 0  # FIFO: latest scheduled delivery time, owner -> target
    last_back: int = 0
    # what the receiving end is told about the link, per direction (made once)
    info_fwd: LinkInfo | None = None
    info_back: LinkInfo | None = None


@dataclass(eq=False)
class SimNode(ServerPort):
    """One simulated process: its state, what it saved, and the server port of
    the executor (the simulator's model of the server)."""

    index: int
    ip: str
    port: int
    cport: int
    sim: "Simulator"
    state: ClusterState | None = None
    conf_text: str | None = None
    incarnation: int = 0
    out_links: dict[str, SimLink] = field(default_factory=dict)
    logs: deque = field(default_factory=lambda: deque(maxlen=200))
    events: list = field(default_factory=list)  # Replicate / DropSlotKeys / Deliver ...
    # replication model
    offset: int = 0
    history: deque = field(default_factory=lambda: deque(maxlen=256))  # (time, offset) at changes
    lag: int = 0  # ms behind its primary
    link_down_since: int | None = None
    paused_until: int = 0
    busy_until: int = 0  # a stalled event loop: nothing runs before this time
    bus: SimBus = field(init=False)
    saver: SavePolicy = field(init=False)
    lost_saves: int = 0  # crashes that lost a pending (delayed) nodes.conf save
    wake_at: int = 0  # the Wake asked for last (0: none pending)
    conf_dirty: bool = False  # lazy_conf: saved since the last render

    def __post_init__(self) -> None:
        self.bus = SimBus(self.sim, self)
        self.saver = SavePolicy(self._write_config, self._schedule_save)  # (a new one at each boot)

    @property
    def alive(self) -> bool:
        return self.state is not None

    # ServerPort
    def request_save(self, fsync: bool) -> None:
        self.saver.request(fsync)

    def _write_config(self, fsync: bool) -> None:
        # an in-place write survives a process crash (the page cache keeps it):
        # only a save still waiting for its delay is lost
        if self.sim.lazy_conf:
            self.conf_dirty = True
        else:
            self.conf_text = render(_up(self))

    def _schedule_save(self, delay_ms: int, fn) -> None:
        self.sim._push(self.sim.now + delay_ms, "save", (self.index, self.incarnation))

    def log(self, level: str, text: str) -> None:
        self.logs.append((self.sim.now, level, text))

    def replicate(self, primary_id) -> None:
        self.events.append((self.sim.now, A.Replicate(primary_id)))

    def empty_data(self) -> None:
        self.events.append((self.sim.now, A.EmptyData()))

    def drop_slot_keys(self, slots) -> None:
        self.events.append((self.sim.now, A.DropSlotKeys(slots)))

    def drop_slot_channels(self, slots) -> None:
        self.events.append((self.sim.now, A.DropSlotChannels(slots)))

    def deliver(self, channel, message, shard) -> None:
        self.events.append((self.sim.now, A.Deliver(channel, message, shard)))

    def pause_clients(self, until_ms: int) -> None:
        self.paused_until = until_ms
        self.events.append((self.sim.now, A.PauseClients(until_ms)))

    def unpause_clients(self) -> None:
        self.paused_until = 0
        self.events.append((self.sim.now, A.UnpauseClients()))


def _up(node: SimNode) -> ClusterState:
    """The state of a live node."""
    st = node.state
    assert st is not None, f"node {node.index} is down"
    return st


class SimBus(BusPort):
    """The executor's bus port for one simulated node: links of the simulated network."""

    __slots__ = ("sim", "node")

    def __init__(self, sim: "Simulator", node: SimNode) -> None:
        self.sim = sim
        self.node = node

    def send(self, node_id: str, msg) -> None:
        self.sim._send(self.node, node_id, msg)

    def broadcast(self, msg, to) -> None:
        send, node = self.sim._send, self.node
        for nid in to:
            send(node, nid, msg)

    def reply(self, info: LinkInfo, msg) -> None:
        sim = self.sim
        link = sim._links.get(info.conn_id)
        if link is not None and link.state == UP:
            sim._transmit(link, "back" if info.inbound else "fwd", msg)
        else:
            sim.dropped += 1

    def connect(self, node_id: str, ip: str, cport: int) -> None:
        self.sim._connect(self.node, node_id, ip, cport)

    def disconnect(self, node_id: str) -> None:
        link = self.node.out_links.pop(node_id, None)
        if link is not None:
            self.sim._close(link)

    def rename(self, old_id: str, new_id: str) -> None:
        out = self.node.out_links
        link = out.pop(old_id, None)
        if link is not None:
            link.key = new_id
            out[new_id] = link

    def wake_at(self, at_ms: int) -> None:
        sim, node = self.sim, self.node
        node.wake_at = at_ms
        sim._push(max(at_ms, sim.now), "wake", (node.index, node.incarnation, at_ms))

    def close_link(self, info: LinkInfo) -> None:
        # the transport frees that connection: the other end sees it reset
        sim = self.sim
        link = sim._links.get(info.conn_id)
        if link is None or link.state == CLOSED:
            return
        sim._close(link)
        owner = sim.nodes[link.owner]
        if owner.out_links.get(link.key) is link:
            sim._push(sim.now + (0 if not info.inbound else sim._delay()), "link_down",
                      (link.owner, owner.incarnation, link.id))


class Simulator:
    def __init__(
        self,
        n_nodes: int,
        seed: int,
        loss: float = 0.0,
        delay: tuple[int, int] = (1, 5),
        duplication: float = 0.0,
        *,
        node_timeout_ms: int = 2000,
        wire: bool = True,
        connect_timeout_ms: int = 1000,
        full_check_every: int = 1000,
        write_load: int = 0,
        repl_lag: tuple[int, int] = (0, 300),
        state_kwargs: dict | None = None,
        loop_lateness: tuple[float, int] | None = None,
        slot_check_every: int = 1,
        lazy_conf: bool = False,
        bytes_sample: int = 16,
    ):
        self.seed = seed
        # Scale knobs (a 1000-node run): the cross-node slot/epoch check every
        # k-th step; ``lazy_conf`` renders nodes.conf only when a node crashes
        # (from its state then, unsaved changes included) instead of at every
        # save; without ``wire``, one message in ``bytes_sample`` is encoded to
        # measure the bus bytes.
        self.slot_check_every = slot_check_every
        self.lazy_conf = lazy_conf
        self.bytes_sample = bytes_sample
        # bus figures: messages and bytes put on the simulated wire
        self.msgs_sent = 0
        self.bytes_sent = 0
        self._bytes_measured = [0, 0]  # (messages, bytes) actually encoded
        self.rng = random.Random(seed)
        self.loss = loss
        self.delay = delay
        self.duplication = duplication
        self.node_timeout = node_timeout_ms
        self.wire = wire
        self.connect_timeout = connect_timeout_ms
        self.full_check_every = full_check_every
        self.write_load = write_load
        self.repl_lag = repl_lag
        self.loop_lateness = loop_lateness
        # stalls have their own generator too: a seed's network schedule is the
        # same with and without them
        self.stall_rng = random.Random(f"{seed}/stalls")
        # the tables index their nodes by id number (every entry is built in
        # this process: see ClusterState(index_ids=))
        self.state_kwargs = {"index_ids": True, **(state_kwargs or {})}
        # The replication model has its own generator: enabling it does not change
        # the network schedule of a seed.
        self.repl_rng = random.Random(f"{seed}/replication")
        self._vote_seen: dict[str, int] = {}
        self.now = START_MS
        self.steps = 0
        self.dropped = 0
        self.lost_saves = 0  # crashes that lost a delayed nodes.conf save
        self._queue: list = []
        self._seq = 0
        self._links: dict[int, SimLink] = {}
        self._next_link = 1
        self._groups: dict[int, int] | None = None  # node index -> partition group
        self._epoch_seen: dict[str, int] = {}
        self._trace = hashlib.blake2b(digest_size=16)
        self.nodes: list[SimNode] = []
        self._addr: dict[tuple[str, int], int] = {}
        self._index_cache: dict[str | None, int] = {}  # node id -> index (checked on use: ids change)
        for i in range(n_nodes):
            self.add_node()

    # ------------------------------------------------------------------ nodes

    def add_node(self) -> int:
        i = len(self.nodes)
        node = SimNode(i, "127.0.0.1", 7000 + i, 17000 + i, self)
        node.lag = self.repl_rng.randint(*self.repl_lag)
        self.nodes.append(node)
        self._addr[(node.ip, node.cport)] = i
        self._boot(node, None)
        return i

    def _boot(self, node: SimNode, conf_text: str | None) -> None:
        rng = random.Random(self.rng.getrandbits(64))
        node.saver = SavePolicy(node._write_config, node._schedule_save)
        if conf_text:
            node.state = ClusterState.from_conf(
                parse(conf_text), port=node.port, cport=node.cport,
                node_timeout_ms=self.node_timeout, rng=rng, now_ms=self.now,
                **self.state_kwargs,
            )
        else:
            node.state = ClusterState(
                random_node_id(rng), "", node.port, node.cport, self.node_timeout, rng, self.now,
                **self.state_kwargs,
            )
            node.conf_text = render(node.state)
        node.incarnation += 1
        self._push(self.now + self.rng.randrange(1, TICK_MS + 1), "tick", (node.index, node.incarnation))
        self._note_epoch(node)

    def state(self, i: int) -> ClusterState:
        st = self.nodes[i].state
        assert st is not None, f"node {i} is down"
        return st

    def node_id(self, i: int) -> str:
        return self.state(i).myself_id

    def live(self) -> list[SimNode]:
        return [n for n in self.nodes if n.alive]

    # ------------------------------------------------------------------ faults

    def crash(self, i: int) -> None:
        """The process dies: memory lost, nodes.conf kept, links reset."""
        node = self.nodes[i]
        assert node.alive
        if node.saver.pending:
            node.lost_saves += 1
            self.lost_saves += 1
        node.saver.forget()
        if node.conf_dirty:
            node.conf_text = render(_up(node))
            node.conf_dirty = False
        node.state = None
        node.incarnation += 1
        node.out_links.clear()
        node.paused_until = 0
        node.busy_until = 0
        node.link_down_since = None
        for link in list(self._links.values()):
            if link.owner == i:
                self._close(link)
            elif link.target == i and link.state != CLOSED:
                owner = self.nodes[link.owner]
                self._close(link)
                # the peer sees its connection reset
                self._push(self.now + self._delay(), "link_down", (link.owner, owner.incarnation, link.id))

    def restart(self, i: int) -> None:
        node = self.nodes[i]
        assert not node.alive
        self._boot(node, node.conf_text)

    def partition(self, *groups) -> None:
        """Split the network: nodes in different groups cannot talk (unlisted nodes form one group)."""
        self._groups = {}
        for g, members in enumerate(groups):
            for i in members:
                self._groups[i] = g

    def heal(self) -> None:
        self._groups = None

    def _partitioned(self, a: int, b: int | None) -> bool:
        groups = self._groups
        if groups is None:
            return False
        return groups.get(a, -1) != (-1 if b is None else groups.get(b, -1))

    # ------------------------------------------------------------------ admin

    def call(self, i: int, method: str, *args, **kwargs):
        """Run an admin call (``meet``, ``add_slots`` ...) on node i now; returns its value."""
        st = self.state(i)
        result = getattr(st, method)(*args, now=self.now, **kwargs)
        actions: list = []
        value = None
        if isinstance(result, list):
            actions = result
        elif isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], list):
            value, actions = result
        else:
            value = result
        node = self.nodes[i]
        self._execute(node, actions)
        node.saver.flush()  # an admin command's change is on disk before it answers
        self.check(node)
        return value

    def meet(self, i: int, j: int) -> None:
        n = self.nodes[j]
        self.call(i, "meet", n.ip, n.port, n.cport)

    def assign_slots_evenly(self, primaries: list[int]) -> None:
        """ADDSLOTS on each primary for its share of the 16384 slots."""
        per = 16384 // len(primaries)
        for k, i in enumerate(primaries):
            hi = 16384 if k == len(primaries) - 1 else (k + 1) * per
            self.call(i, "add_slots", range(k * per, hi))

    def meet_all(self, to: int = 0) -> None:
        """Every other live node MEETs node ``to`` (one MEET each)."""
        for n in self.live():
            if n.index != to:
                self.meet(n.index, to)

    def form(self, n_primaries: int, replicas: dict[int, int] | None = None,
             timeout_ms: int = 60_000, every_ms: int = 200,
             agree_on_roles: bool = True, hub: int = 0, remeet: bool = False,
             epochs_for_all: bool = False) -> str | None:
        """What redis-cli --cluster create does: primaries 0..n-1 get the slots
        (and distinct config epochs), every node MEETs node ``hub`` (again if a
        MEET got lost), then every other node replicates a primary (round robin,
        or as ``replicas`` says: replica index -> primary index), until converged
        (:meth:`converged`; without ``agree_on_roles``, :meth:`consistent`).
        Returns None, or what did not happen.

        ``remeet`` (large clusters): once every node knows every other, each
        primary MEETs the hub once more. A handshake's first PONG is read
        without a known sender (Redis 7.0's clusterProcessPacket), so the hub
        learns no primary's slots from its handshakes, and afterwards hears
        from a given primary only when that one happens to ping it (the gossip
        keeps their pong times fresh): minutes at 1000 nodes. A MEET from a
        node it knows is read as a PING from that node, slots included. (The
        hub should then own no slots: a primary does not learn the hub's from
        the PONG to its second MEET either.)

        ``epochs_for_all``: every node gets a distinct config epoch, as
        redis-cli 7.0 gives them (else only the primaries: the nodes left at
        epoch 0 collide with each other and bump, and each bump may collide
        with a primary's epoch, which then bumps too, until all differ)."""
        prim = list(range(n_primaries))
        self.assign_slots_evenly(prim)
        for k, i in enumerate(range(len(self.nodes)) if epochs_for_all else prim):
            self.call(i, "set_config_epoch", k + 1)
        self.meet_all(hub)

        def known(s: Simulator) -> bool:
            s.rejoin_stragglers(hub)
            return s.tables_converged() if agree_on_roles else s.everyone_known()
        if not self.run_until(known, timeout_ms, every_ms):
            return "no node table agreement"
        if remeet:
            for i in prim:
                if i != hub:
                    self.meet(i, hub)
        n = len(self.nodes)
        plan = replicas or {r: prim[(r - n_primaries) % n_primaries] for r in range(n_primaries, n)}
        for r, p in plan.items():
            self.call(r, "replicate", self.node_id(p))

        def settled(s: Simulator) -> bool:
            s.rejoin_stragglers(hub)
            if not agree_on_roles:
                return s.consistent() and all(
                    s.state(r).myself.primary_id == s.node_id(p) for r, p in plan.items())
            return s.converged() and s.epochs_distinct()
        if not self.run_until(settled, timeout_ms, every_ms):
            return "no convergence after forming"
        return None

    def rejoin_stragglers(self, to: int = 0) -> None:
        """What an operator (or redis-cli) does when a MEET got lost: MEET again
        each node that does not know ``to`` or is not known by it, unless a
        handshake is still in progress."""
        hub = self.state(to)
        for n in self.live():
            if n.index == to:
                continue
            st = _up(n)
            if st.myself_id in hub.nodes and hub.myself_id in st.nodes:
                continue
            if any(m.in_handshake for m in st.nodes.values()):
                continue
            self.meet(n.index, to)

    # ------------------------------------------------------------------ event loop

    def _push(self, t: int, kind: str, data) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (t, self._seq, kind, data))

    def _delay(self) -> int:
        # rng.randint(lo, hi) inlined (random.Random._randbelow_with_getrandbits:
        # the same draws), one per message
        lo, hi = self.delay
        n = hi - lo + 1
        bits = self.rng.getrandbits
        k = n.bit_length()
        r = bits(k)
        while r >= n:
            r = bits(k)
        return lo + r

    def run_for(self, ms: int) -> None:
        self.run_until_time(self.now + ms)

    def run_until_time(self, t: int) -> None:
        q = self._queue
        while q and q[0][0] <= t:
            when, _, kind, data = heapq.heappop(q)
            self.now = when
            self._dispatch(kind, data)
        self.now = t

    def run_until(self, predicate: Callable[["Simulator"], bool], timeout_ms: int, every_ms: int = 200) -> bool:
        """Run until ``predicate(sim)`` holds (checked every ``every_ms``) or time runs out."""
        end = self.now + timeout_ms
        while self.now < end:
            if predicate(self):
                return True
            self.run_until_time(min(end, self.now + every_ms))
        return predicate(self)

    def _dispatch(self, kind: str, data) -> None:
        self.steps += 1
        try:
            self._dispatch1(kind, data)
        except AssertionError as e:
            if str(e).startswith("seed "):
                raise
            raise AssertionError(f"seed {self.seed} t={self.now} step {self.steps} ({kind} {data!r:.60}): {e}") from e

    def stall(self, i: int, ms: int) -> None:
        """Node i's event loop is busy (or starved of CPU) for ``ms`` from now."""
        node = self.nodes[i]
        node.busy_until = max(node.busy_until, self.now + ms)

    def _stalled(self, node: SimNode, kind: str, data) -> bool:
        """Put an event for a stalled node back until its loop runs again."""
        if node.busy_until <= self.now:
            return False
        # messages that arrived during the stall are read before the late tick
        self._seq += 1
        order = self._seq if kind == "tick" else self._seq - DEFERRED_FIRST
        heapq.heappush(self._queue, (node.busy_until, order, kind, data))
        return True

    def _dispatch1(self, kind: str, data) -> None:
        if kind == "tick":
            i, inc = data
            node = self.nodes[i]
            if node.incarnation != inc or not node.alive:
                return
            if self._stalled(node, kind, data):
                return
            if self.loop_lateness is not None:
                p, most = self.loop_lateness
                if self.stall_rng.random() < p:
                    self.stall(i, self.stall_rng.randint(1, most))
            self._trace_step("tick", i)
            self._replication_step(node)
            self._execute(node, _up(node).on_tick(self.now))
            self._push(self.now + TICK_MS, "tick", data)
            self.check(node)
        elif kind == "deliver":
            self._deliver(*data)
        elif kind == "wake":
            i, inc, at = data
            node = self.nodes[i]
            if node.incarnation != inc or not node.alive or node.wake_at != at:
                return  # a later Wake replaced it
            if self._stalled(node, kind, data):
                return
            node.wake_at = 0
            self._trace_step("wake", i)
            self._execute(node, _up(node).on_timer(self.now))
            self.check(node)
        elif kind == "save":
            i, inc = data
            node = self.nodes[i]
            if node.incarnation == inc and node.alive and not self._stalled(node, kind, data):
                node.saver.flush()
        elif kind == "connect":
            self._on_connect(self._links[data])
        elif kind == "link_down":
            i, inc, link_id = data
            node = self.nodes[i]
            link = self._links[link_id]
            if node.incarnation != inc or not node.alive:
                return
            if node.out_links.get(link.key) is link:
                del node.out_links[link.key]
                self._trace_step("down", i)
                self._execute(node, _up(node).on_link_down(link.key, self.now))
                self.check(node)
        else:  # pragma: no cover
            raise AssertionError(kind)

    def _trace_step(self, kind: str, i: int, extra: str = "") -> None:
        self._trace.update(f"{self.now}:{kind}:{i}:{extra};".encode())

    def trace_digest(self) -> str:
        return self._trace.hexdigest()

    # ------------------------------------------------------------------ network

    def _close(self, link: SimLink) -> None:
        assert CLOSED in LINK_MOVES[link.state]
        link.state = CLOSED
        link.pending.clear()

    def _execute(self, node: SimNode, actions: list) -> None:
        execute(actions, node.bus, node)

    def _connect(self, node: SimNode, node_id: str, ip: str, cport: int) -> None:
        old = node.out_links.pop(node_id, None)
        if old is not None:
            self._close(old)
        target = self._addr.get((ip, cport))
        tnode = self.nodes[target] if target is not None else None
        link = SimLink(
            self._next_link, node.index, node.incarnation, node_id, target,
            tnode.incarnation if tnode is not None else 0,
        )
        self._next_link += 1
        self._links[link.id] = link
        node.out_links[node_id] = link
        if tnode is not None and tnode.alive and self._partitioned(node.index, target):
            when = self.now + self.connect_timeout  # SYNs lost: time out
        else:
            when = self.now + self._delay()
        self._push(when, "connect", link.id)

    def _on_connect(self, link: SimLink) -> None:
        if link.state != CONNECTING:
            return
        owner = self.nodes[link.owner]
        if owner.incarnation != link.owner_inc or not owner.alive:
            self._close(link)
            return
        tnode = self.nodes[link.target] if link.target is not None else None
        if (
            tnode is not None and tnode.alive and tnode.incarnation == link.target_inc
            and not self._partitioned(link.owner, link.target)
        ):
            assert UP in LINK_MOVES[link.state]
            link.state = UP
            self._trace_step("up", owner.index)
            self._execute(owner, _up(owner).on_link_up(link.key, self.now))
            pending, link.pending = link.pending, []
            for msg in pending:
                self._transmit(link, "fwd", msg)
            self.check(owner)
            return
        self._close(link)
        if owner.out_links.get(link.key) is link:
            del owner.out_links[link.key]
            self._trace_step("refused", owner.index)
            self._execute(owner, _up(owner).on_link_down(link.key, self.now))
            self.check(owner)

    def _send(self, node: SimNode, node_id: str, msg: Message) -> None:
        link = node.out_links.get(node_id)
        if link is None or link.state == CLOSED:
            self.dropped += 1
        elif link.state == CONNECTING:
            link.pending.append(msg)
        else:
            self._transmit(link, "fwd", msg)

    def _transmit(self, link: SimLink, direction: str, msg: Message) -> None:
        if self.loss and self.rng.random() < self.loss:
            self.dropped += 1
            return
        self.msgs_sent += 1
        payload: bytes | Message
        if self.wire:
            payload = encode(msg)
            self.bytes_sent += len(payload)
        else:
            payload = msg
            if self.msgs_sent % self.bytes_sample == 0:
                m = self._bytes_measured
                m[0] += 1
                m[1] += len(encode(msg))
        copies = 2 if self.duplication and self.rng.random() < self.duplication else 1
        for _ in range(copies):
            t = self.now + self._delay()
            if direction == "fwd":
                t = link.last_fwd = max(t, link.last_fwd)
            else:
                t = link.last_back = max(t, link.last_back)
            self._push(t, "deliver", (link.id, direction, payload))

    def _deliver(self, link_id: int, direction: str, payload) -> None:
        link = self._links[link_id]
        if link.state != UP:
            return
        if self._partitioned(link.owner, link.target):
            self.dropped += 1
            return
        assert link.target is not None  # (it accepted the connection)
        owner = self.nodes[link.owner]
        target = self.nodes[link.target]
        if direction == "fwd":
            dest, inc = target, link.target_inc
            info = link.info_fwd
            if info is None:
                info = link.info_fwd = LinkInfo(inbound=True, peer_ip=owner.ip, local_ip=target.ip, conn_id=link.id)
        else:
            dest, inc = owner, link.owner_inc
            info = link.info_back
            if info is None or info.node_id != link.key:  # (renamed)
                info = link.info_back = LinkInfo(
                    inbound=False, node_id=link.key, peer_ip=target.ip, local_ip=owner.ip, conn_id=link.id)
        if not dest.alive or dest.incarnation != inc:
            return
        if self._stalled(dest, "deliver", (link_id, direction, payload)):
            return
        msg = decode(payload) if self.wire else payload
        self._trace_step("msg", dest.index, f"{msg.type.name}:{msg.header.sender[:8]}")
        self._execute(dest, _up(dest).on_message(info, msg, self.now))
        self.check(dest)

    # ------------------------------------------------------------------ replication model

    def index_of(self, node_id: str | None) -> int | None:
        """The index of the live node with this id (None if none)."""
        j = self._index_cache.get(node_id)
        if j is not None:
            n = self.nodes[j]
            if n.alive and _up(n).myself_id == node_id:
                return j
        for n in self.nodes:
            if n.alive and _up(n).myself_id == node_id:
                self._index_cache[node_id] = n.index
                return n.index
        return None

    def write(self, i: int, nbytes: int = 1) -> bool:
        """A client write to node i: accepted (the offset grows) only by a live
        primary whose cluster state is ok and whose clients are not paused."""
        node = self.nodes[i]
        if not self.accepts_writes(i):
            return False
        node.offset += nbytes
        node.history.append((self.now, node.offset))
        return True

    def accepts_writes(self, i: int) -> bool:
        node = self.nodes[i]
        if not node.alive:
            return False
        st = _up(node)
        return st.myself.is_primary and st.state == "ok" and self.now >= node.paused_until

    def offset_at(self, src: SimNode, t: int) -> int:
        """The offset ``src`` had at time ``t`` (its oldest remembered one if older)."""
        for when, off in reversed(src.history):
            if when <= t:
                return off
        return src.history[0][1] if src.history else src.offset

    def _replication_step(self, node: SimNode) -> None:
        """What the server does before the cron: writes (load), offsets, link status."""
        st = _up(node)
        me = st.myself
        if me.is_replica:
            j = self.index_of(me.primary_id)
            if j is not None and not self._partitioned(node.index, j):
                off = self.offset_at(self.nodes[j], self.now - node.lag)
                if off != node.offset:
                    node.offset = off
                    node.history.append((self.now, off))
                node.link_down_since = None
                st.set_master_link_down_since(None, self.now)
            else:
                if node.link_down_since is None:
                    node.link_down_since = self.now
                st.set_master_link_down_since(node.link_down_since)
        else:
            node.link_down_since = None
            if self.write_load and self.repl_rng.random() < 0.5:
                self.write(node.index, self.repl_rng.randint(1, self.write_load))
        st.set_repl_offset(node.offset)

    # ------------------------------------------------------------------ invariants

    def _note_epoch(self, node: SimNode) -> None:
        st = _up(node)
        seen = self._epoch_seen.get(st.myself_id, 0)
        assert st.current_epoch >= seen, (
            f"seed {self.seed} t={self.now}: node {node.index} currentEpoch went back "
            f"from {seen} to {st.current_epoch}"
        )
        self._epoch_seen[st.myself_id] = st.current_epoch
        voted = self._vote_seen.get(st.myself_id, 0)
        assert st.last_vote_epoch >= voted, (
            f"seed {self.seed} t={self.now}: node {node.index} lastVoteEpoch went back "
            f"from {voted} to {st.last_vote_epoch}"
        )
        self._vote_seen[st.myself_id] = st.last_vote_epoch

    def _check_slot_epochs(self, node: SimNode) -> None:
        """No two live primaries serve one slot with the same configEpoch.

        Serving means cluster state ok: a primary whose state is fail answers
        CLUSTERDOWN for every key. (A primary cut off in a minority may be told
        SETSLOT NODE by an operator and bump its epoch without consensus to the
        very epoch an election gives its replica on the other side: Redis 7.0's
        clusterBumpConfigEpochWithoutConsensus allows that, and the collision
        handling separates them after the heal; meanwhile the cut-off one serves
        nothing.)"""
        st = _up(node)
        me = st.myself
        if not me.is_primary or not me.slots or st.state != "ok":
            return
        for other in self.nodes:
            if other is node or not other.alive or _up(other).state != "ok":
                continue
            o = _up(other).myself
            if o.is_primary and o.config_epoch == me.config_epoch and o.slots:
                both = me.slots & o.slots
                if both and (me.migrating or o.migrating):
                    # a move in progress: the source serves the slot until its own
                    # SETSLOT NODE while the target has claimed it with an epoch
                    # bumped without consensus, which may collide (Redis's
                    # clusterBumpConfigEpochWithoutConsensus; the collision
                    # handling separates the epochs)
                    both = {s for s in both if me.migrating.get(s) != o.id and o.migrating.get(s) != me.id}
                assert not both, (
                    f"seed {self.seed} t={self.now}: nodes {node.index} and {other.index} both serve "
                    f"slot {min(both)} with configEpoch {me.config_epoch}"
                )

    def check(self, node: SimNode) -> None:
        """Invariants after a step of ``node``."""
        if not node.alive:
            return
        st = _up(node)
        # The state asserts its cheap invariants itself after every call; the
        # full O(slots) check runs periodically here and in check_all().
        if self.steps % self.full_check_every == 0:
            try:
                st.check_invariants(full=True)
            except AssertionError as e:
                raise AssertionError(f"seed {self.seed} t={self.now} node {node.index}: {e}") from e
        self._note_epoch(node)
        if self.steps % self.slot_check_every == 0:
            self._check_slot_epochs(node)

    def bus_bytes(self) -> int:
        """Bytes put on the wire so far (measured, or estimated from the sample)."""
        if self.wire:
            return self.bytes_sent
        n, b = self._bytes_measured
        return round(self.msgs_sent * b / n) if n else 0

    def check_all(self) -> None:
        bitmaps: dict = {}  # (no event between the tables' checks)
        for node in self.live():
            _up(node).check_invariants(full=True, bitmaps_checked=bitmaps)
            self._note_epoch(node)
            self._check_slot_epochs(node)

    # ------------------------------------------------------------------ convergence views

    def node_table(self, i: int) -> frozenset:
        """Node i's view: (id, ip, port, cport, role, primary) of every non-handshake node."""
        return frozenset(
            (n.id, n.ip, n.port, n.cport, "master" if n.is_primary else "slave", n.primary_id)
            for n in self.state(i).nodes.values()
            if not n.in_handshake
        )

    def tables_converged(self) -> bool:
        live = self.live()
        ids = {_up(n).myself_id for n in live}
        tables = {self.node_table(n.index) for n in live}
        if len(tables) != 1:
            return False
        (table,) = tables
        if {row[0] for row in table} != ids:
            return False
        return all(not any(m.in_handshake for m in _up(n).nodes.values()) for n in live)

    def everyone_known(self) -> bool:
        """Every live node knows every other (none in handshake)."""
        live = self.live()
        ids = {_up(n).myself_id for n in live}
        for n in live:
            nodes = _up(n).nodes
            if len(nodes) < len(ids) or any(m.in_handshake for m in nodes.values()):
                return False
            if not ids.issubset(nodes):
                return False
        return True

    def consistent(self) -> bool:
        """What ``redis-cli --cluster check`` asks: every node known to every node,
        one slot map, every slot served once, distinct config epochs, all states
        ok (not that every node has heard every replica name its primary)."""
        return (
            self.everyone_known() and self.slots_converged() and self.every_slot_served_once()
            and self.epochs_distinct() and self.states_ok()
        )

    def slots_converged(self, full_coverage: bool = True) -> bool:
        live = self.live()
        sigs = {_up(n).slot_map_signature() for n in live}
        if len(sigs) != 1:
            return False
        return not full_coverage or all(_up(n).slots_assigned == 16384 for n in live)

    def primaries_epochs(self, i: int) -> dict[str, int]:
        """Config epochs of the primaries serving slots, in node i's view."""
        return {n.id: n.config_epoch for n in self.state(i).nodes.values() if n.is_primary and n.slots}

    def epochs_distinct(self) -> bool:
        """Every node sees the same, pairwise distinct, config epochs for the primaries."""
        views = [self.primaries_epochs(n.index) for n in self.live()]
        first = views[0]
        if any(v != first for v in views):
            return False
        return len(set(first.values())) == len(first)

    def states_ok(self) -> bool:
        return all(_up(n).state == "ok" for n in self.live())

    def serving_claims(self) -> list[tuple[int, int, int]]:
        """(first slot, last slot, node index) of every range a live primary claims
        in its own view, sorted."""
        claims = []
        for n in self.live():
            me = _up(n).myself
            if me.is_primary:
                claims += [(a, b, n.index) for a, b in me.slot_ranges()]
        return sorted(claims)

    def every_slot_served_once(self, writable: bool = False) -> bool:
        """Every slot claimed by exactly one live primary (in its own view); with
        ``writable``, each such primary also accepts writes (cluster state ok)."""
        nxt = 0
        for a, b, i in self.serving_claims():
            if a != nxt:
                return False  # a hole or an overlap
            if writable and not self.accepts_writes(i):
                return False
            nxt = b + 1
        return nxt == 16384

    def primaries(self) -> list[int]:
        """Indices of the live nodes that are primaries serving slots (own view)."""
        return [n.index for n in self.live() if _up(n).myself.is_primary and _up(n).myself.slots]

    def converged(self) -> bool:
        """Every slot served once, all nodes agree on tables and slots, all states ok."""
        return (
            self.every_slot_served_once() and self.tables_converged()
            and self.slots_converged() and self.states_ok()
        )
