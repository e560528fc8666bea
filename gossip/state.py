"""The cluster state machine, sans-I/O: Redis 7.0's cluster.c, as data in and actions out.

:class:`ClusterState` holds the node table, the slot map, the epochs and the
failure detector. Every entry point takes the time (ms) and returns a list of
actions (:mod:`gossip.actions`):

* ``on_tick(now)`` every 100 ms (clusterCron),
* ``on_timer(now)`` at the time of the last :class:`~gossip.actions.Wake` it
  returned (a replica's election start),
* ``on_message(link, msg, now)`` for each decoded bus message (clusterProcessPacket),
* ``on_link_up`` / ``on_link_down(node_id, now)`` for outbound links,
* the admin calls behind CLUSTER commands (``meet``, ``forget``, ``add_slots`` ...),
  which raise :class:`ClusterError` with Redis's error text.

Randomness comes from the injected ``random.Random``; time only from arguments.
Invariants are asserted (epochs never decrease, one owner per slot, myself's
role consistent).

Failover (Redis 7.0's clusterHandleSlaveFailover and friends) lives here too:

* automatic: a replica of a FAIL primary serving slots waits, as Valkey 9, one delay
  unit d = min(500 ms, node timeout / 30) + random(0..d) + 2d x rank (rank: siblings
  with a greater replication offset, from their headers, or the same offset and a
  smaller node id) + d x failed-primary rank (failed primaries with replicas whose
  id sorts before my primary's: when several primaries fail at once their shards
  elect one after the other instead of splitting the votes). A sibling's
  FAILOVER_AUTH_REQUEST seen before mine went out postpones mine until that
  election is over, plus my random part and failed-primary rank (a loaded node may start late: two siblings asking at once
  split the votes and, with the per-primary vote window, lose 4 x node timeout).
  Beyond Redis 7.0, whose cron does both at its next tick, the attempt is
  scheduled as soon as the replica learns its primary is FAIL, and the
  request goes out when the delay is over (a :class:`~gossip.actions.Wake`).
  It checks its data age against ``replica_validity_factor``, bumps
  currentEpoch and broadcasts FAILOVER_AUTH_REQUEST. Each primary serving slots
  votes once per epoch (``last_vote_epoch``, saved with fsync before the ACK goes
  out), not twice for replicas of the same primary within 2 x node timeout, and only
  if the requester's primary is FAIL (or the request has MF_FORCEACK) and no claimed
  slot has a newer configEpoch. A majority of the primaries serving slots wins: the
  winner takes configEpoch = the election epoch, its primary's slots, emits
  ``Replicate(None)`` and PONGs everyone. The election expires after
  max(2 x node timeout, 2 s) and is retried after twice that.
* manual: :meth:`ClusterState.manual_failover` (CLUSTER FAILOVER [FORCE|TAKEOVER]);
  the primary answers MFSTART with ``PauseClients`` and a PAUSED header carrying its
  final offset; the replica starts a forced election once its own offset
  (:meth:`set_repl_offset`) reaches it. Everything is abandoned after 5 s.
* replica migration to orphaned primaries (``migration_barrier``,
  ``allow_replica_migration``) and ``replica_no_failover`` (the ``nofailover`` flag).

The server feeds two inputs: :meth:`set_repl_offset` (its replication offset) and,
on a replica, :meth:`set_master_link_down_since` (for the data age check).
"""

from __future__ import annotations

import heapq
import ipaddress
import random
from typing import Iterable

from gossip import actions as A
from gossip.actions import LinkInfo
from gossip.bitmap import (
    BITMAP_BYTES, CLUSTER_SLOTS, bitmap_from_slots, slot_count, slots_added, slots_from_bitmap,
)
from gossip.codec import (
    MF_FORCEACK,
    MF_PAUSED,
    PING_LIKE,
    FailBody,
    GossipEntry,
    Header,
    Message,
    MsgType,
    PublishBody,
    UpdateBody,
)
from gossip.node import (
    FAIL,
    FAILURE_FLAGS,
    HANDSHAKE,
    MASTER,
    MEET,
    MIGRATE_TO,
    MYSELF,
    NOADDR,
    NOFAILOVER,
    PFAIL,
    SLAVE,
    NO_ID_NUMBER,
    Node,
    id_number,
    is_valid_node_id,
    random_node_id,
)

BLACKLIST_TTL_MS = 60_000  # CLUSTER FORGET ban
FAIL_REPORT_VALIDITY_MULT = 2  # failure reports expire after 2 x node timeout
FAIL_UNDO_TIME_MULT = 2  # a failed primary with slots is cleared after 2 x node timeout
WRITABLE_DELAY_MS = 2000  # a primary waits this long after start before state ok
MIN_REJOIN_DELAY_MS = 500
MAX_REJOIN_DELAY_MS = 5000
HANDSHAKE_MIN_TIMEOUT_MS = 1000
GOSSIP_PONG_FUTURE_TOLERANCE_MS = 500
MF_TIMEOUT_MS = 5000  # CLUSTER_MF_TIMEOUT: a manual failover is abandoned after this
MF_PAUSE_MULT = 2  # the primary pauses its clients for MF_TIMEOUT_MS x this at most
REPLICA_MIGRATION_DELAY_MS = 5000  # CLUSTER_SLAVE_MIGRATION_DELAY
CANT_FAILOVER_RELOG_PERIOD_MS = 10_000
# Valkey 9's election delay unit: min(500 ms, node timeout / 30). A replica waits
# one unit (FAIL propagation) + random(0..unit) + 2 units per better-placed
# sibling + 1 unit per failed primary ranked before its own.
ELECTION_DELAY_MAX_MS = 500
ELECTION_DELAY_DIVISOR = 30

# Why a replica is not failing over (clusterLogCantFailover), as Redis words it.
CANT_FAILOVER_NONE = 0
CANT_FAILOVER_DATA_AGE = 1
CANT_FAILOVER_WAITING_DELAY = 2
CANT_FAILOVER_EXPIRED = 3
CANT_FAILOVER_WAITING_VOTES = 4
CANT_FAILOVER_MESSAGES = {
    CANT_FAILOVER_DATA_AGE: "Disconnected from master for longer than allowed. "
                            "Please check the 'cluster-replica-validity-factor' configuration option.",
    CANT_FAILOVER_WAITING_DELAY: "Waiting the delay before I can start a new failover.",
    CANT_FAILOVER_EXPIRED: "Failover attempt expired.",
    CANT_FAILOVER_WAITING_VOTES: "Waiting for votes, but majority still not reached.",
}

# The replica's election (clusterHandleSlaveFailover's failover_auth_* fields):
# idle, an attempt scheduled (failover_auth_time: when it asks), the request
# for votes sent (failover_auth_epoch: the election's epoch). A new attempt
# (after the retry time) reschedules from any state; winning, or following
# another primary, ends it.
ELECTION_IDLE, ELECTION_SCHEDULED, ELECTION_ASKED = "idle", "scheduled", "asked"
ELECTION_STEPS = {
    ELECTION_IDLE: frozenset((ELECTION_SCHEDULED,)),
    ELECTION_SCHEDULED: frozenset((ELECTION_SCHEDULED, ELECTION_ASKED, ELECTION_IDLE)),
    ELECTION_ASKED: frozenset((ELECTION_SCHEDULED, ELECTION_IDLE)),
}
# A manual failover (CLUSTER FAILOVER; Redis's mf_* fields). On the replica:
# waiting for the paused primary's offset, catching up to it, then free to
# start its (forced) election; FORCE starts there at once. On the primary:
# serving one (clients paused, mf_replica pinged every tick). Any state ends
# (resetManualFailover: timeout, done, or a new one) in none.
MF_NONE, MF_WAIT_OFFSET, MF_CATCHING_UP, MF_CAN_START, MF_SERVING = (
    "none", "wait-offset", "catching-up", "can-start", "serving")
MF_STEPS = {
    MF_NONE: frozenset((MF_NONE, MF_WAIT_OFFSET, MF_CAN_START, MF_SERVING)),
    MF_WAIT_OFFSET: frozenset((MF_NONE, MF_CATCHING_UP)),
    MF_CATCHING_UP: frozenset((MF_NONE, MF_CAN_START)),
    MF_CAN_START: frozenset((MF_NONE,)),
    MF_SERVING: frozenset((MF_NONE,)),
}

_ROLE_FLAGS = frozenset((MASTER, SLAVE))
_TICK_SPECIAL = frozenset((PFAIL, HANDSHAKE, NOADDR))

# One frozenset per combination of flags, shared by every header and gossip
# entry that carries it (a few dozen combinations exist; a simulated cluster
# holds a cached entry per node of every table).
_FLAG_SETS: dict[frozenset, frozenset] = {}


#: the combinations in _FLAG_SETS with neither PFAIL nor FAIL (``flags in
#: _HEALTHY`` proves a set healthy in one hashed lookup; a set not in it is
#: asked FAILURE_FLAGS.isdisjoint)
_HEALTHY: set[frozenset] = set()
#: the same for neither PFAIL, HANDSHAKE nor NOADDR (_TICK_SPECIAL): a node
#: a gossip section may carry without a second look
_PLAIN: set[frozenset] = set()


def _frozen_flags(flags) -> frozenset:
    f = frozenset(flags)
    f = _FLAG_SETS.setdefault(f, f)
    if FAILURE_FLAGS.isdisjoint(f):
        _HEALTHY.add(f)
    if _TICK_SPECIAL.isdisjoint(f):
        _PLAIN.add(f)
    return f


# The whole seconds gossip entries carry, one int object per value (bounded:
# forgotten all at once when full): the entries made in one second, and the
# pong times readers take from them, share it, so comparing them reads one
# object that stays in cache instead of one per entry.
_SECONDS: dict[int, int] = {}


def _whole_second(ms: int) -> int:
    s = ms // 1000 * 1000
    got = _SECONDS.get(s)
    if got is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        got = _SECONDS[s] = s
    return got


# With ClusterState(share_slot_sets=True) (the simulator's many tables in one
# process): a primary's slot set as every table that agrees with its header
# holds it, one frozenset per slot map. Bounded: forgotten all at once when full.
_SLOT_SETS: dict[bytes, frozenset[int]] = {}
_SLOT_SETS_MAX = 4096


def _shared_slot_set(bitmap: bytes, slots) -> frozenset[int]:
    got = _SLOT_SETS.get(bitmap)
    if got is None:
        if len(_SLOT_SETS) >= _SLOT_SETS_MAX:
            _SLOT_SETS.clear()
        got = _SLOT_SETS[bitmap] = frozenset(slots)
    return got
_NOT_PRIMARY_OK = frozenset((NOADDR, HANDSHAKE, FAIL))


def _by_seq(node: Node) -> int:
    return node._seq


def _role_flags(flags) -> set[str]:
    """The role a peer announces: master or slave, or none if it says both (or neither)."""
    role = flags & _ROLE_FLAGS
    return set(role) if len(role) == 1 else set()


class ClusterError(Exception):
    """An admin call was refused; ``str(e)`` is Redis's error reply, e.g. ``ERR Unknown node x``."""


class ClusterState:
    """One node's view of the cluster.

    ``ip`` may be "" (unknown): it is then learned from the local address of
    links that bring a MEET (or any PING while still unknown), as Redis does
    without ``cluster-announce-ip``. With ``announce_ip`` set, that address is
    sent in every header and never changed.
    """

    def __init__(
        self,
        myself_id: str,
        ip: str,
        port: int,
        cport: int,
        node_timeout_ms: int,
        rng: random.Random,
        now_ms: int,
        *,
        announce_ip: str | None = None,
        hostname: str = "",
        require_full_coverage: bool = True,
        allow_replica_migration: bool = True,
        replica_validity_factor: int = 10,
        migration_barrier: int = 1,
        replica_no_failover: bool = False,
        repl_ping_replica_period: int = 10,
        check_every: int = 1,
        share_slot_sets: bool = False,
        index_ids: bool = False,
    ):
        assert is_valid_node_id(myself_id), myself_id
        assert node_timeout_ms > 0
        self.node_timeout = node_timeout_ms
        self.rng = rng
        self.now = now_ms
        self.announce_ip = announce_ip
        self.require_full_coverage = require_full_coverage
        self.allow_replica_migration = allow_replica_migration
        # cluster-replica-validity-factor (0: any data age may fail over),
        # cluster-migration-barrier, cluster-replica-no-failover, and
        # repl-ping-replica-period (seconds; part of the data age limit). Plain
        # attributes: CONFIG SET may change them at any time (no-failover through
        # set_replica_no_failover, which also updates the nofailover flag).
        self.replica_validity_factor = replica_validity_factor
        self.migration_barrier = migration_barrier
        self.replica_no_failover = replica_no_failover
        self.repl_ping_replica_period = repl_ping_replica_period
        # the O(nodes) invariants run after every call (1), or every k-th call
        # (a simulation of 1000 nodes, whose simulator checks them in full too)
        self.check_every = check_every
        self._calls = 0
        # the other nodes' slot sets are shared, immutable, between the tables
        # of one process (see _shared_slot_set): a simulation's memory; a slot
        # change then copies the set (O(slots)), so a real node does not
        self.share_slot_sets = share_slot_sets
        # the nodes by id_number too (node._num: gossip entries built in this
        # process carry it), so reading a gossip entry finds its node by a list
        # index instead of a dict probe: a simulation's tables do not fit the
        # caches, and the probe's reads miss. A real node leaves it off.
        self.index_ids = index_ids
        self._by_num: list[Node | None] = []

        self.nodes: dict[str, Node] = {}
        self.slot_owner: list[str | None] = [None] * CLUSTER_SLOTS
        self._assigned = 0
        self.current_epoch = 0
        self.last_vote_epoch = 0
        self.state = "fail"
        self.size = 0  # primaries serving at least one slot
        self.stats_pfail_nodes = 0
        self.stats_sent: dict[MsgType, int] = {t: 0 for t in MsgType}
        self.stats_received: dict[MsgType, int] = {t: 0 for t in MsgType}
        # DEBUG DROP-CLUSTER-PACKET-FILTER: None (the default) lets everything
        # in; a CLUSTERMSG_TYPE_* number drops incoming messages of that type,
        # -2 drops them all. With close_link_on_drop the link goes too.
        self.drop_filter: int | None = None
        self.close_link_on_drop = False
        self.repl_offset = 0
        self.blacklist: dict[str, int] = {}  # node id -> ban expiry (ms)

        # Election (replica side), as Redis's failover_auth_*.
        self.election = ELECTION_IDLE  # see ELECTION_STEPS
        self.failover_auth_time = 0  # when the election starts (or started)
        self.failover_auth_count = 0  # votes received
        self.failover_auth_rank = 0
        self.failover_failed_primary_rank = 0
        self.failover_auth_epoch = 0  # the epoch of the election in progress
        # a sibling's election seen: none of mine starts before this time
        self.sibling_election_until = 0
        self.cant_failover_reason = CANT_FAILOVER_NONE
        self._cant_failover_logged = 0
        self._wake_at = 0  # the time of the last Wake asked for (0: none)
        self._header_key: tuple | None = None  # what _header_last was built from
        self._header_last: Header | None = None
        # Manual failover (mf_*): on a replica, mf_end is the deadline of the one it
        # runs and mf_primary_offset the offset its paused primary announced (-1:
        # not yet); on a primary, mf_end / mf_replica describe the one it serves.
        self.mf_state = MF_NONE  # see MF_STEPS
        self.mf_end = 0
        self.mf_replica: str | None = None
        self.mf_primary_offset = -1
        self._mf_offset_fresh = False  # set_repl_offset called since the pause
        # Data age inputs (replica side); None/None: unknown, treated as fresh.
        self.master_link_down_since: int | None = None
        self.master_last_interaction: int | None = None

        self._iteration = 0
        # What clusterCron's two loops over the node table would find, kept as it
        # changes, so that a tick costs what is due rather than the table's size
        # (a 1000-node cluster ticks 10 000 times a second per node). The cron
        # visits these in table order (Node._seq), so it does what the full
        # scans did, in the same order.
        # _attn: nodes that may be unlinked or carry PFAIL, HANDSHAKE or NOADDR
        # (added wherever that becomes true; dropped by the cron once it is not).
        self._attn: set[Node] = set()
        # _pinged: nodes that may have a ping in flight (ping_sent != 0).
        self._pinged: set[Node] = set()
        # _due: a heap of (time, seq, node), one entry per node not in _due_now,
        # the time never later than when the node's pong gets older than
        # node-timeout/2 (the pong time only grows: an entry found early moves
        # to its later deadline in place).
        self._due: list = []
        self._due_half = node_timeout_ms // 2
        # _due_now: the nodes the last cron run found due, off the heap: the
        # next run looks at each again (due still, or pushed back with its new
        # deadline) without popping it from the heap a second time
        self._due_now: list[Node] = []
        self._node_seq = 0
        # The replica cron's census of primaries and their working replicas,
        # kept as it changes (a node's flags, primary, slots, or the table):
        # primary id -> how many nodes count as its working replicas (slave,
        # not fail); how many counted primaries (master, not fail, noaddr or
        # handshake, not myself) have each such count; how many of those are
        # orphaned (no working replica, slots, migrate_to). Each node holds
        # what it adds (Node._ok_for, Node._census).
        self._ok_replicas: dict[str, int] = {}
        self._census_counts: dict[int, int] = {}
        self._census_orphaned = 0
        # the nodes owning slots -> their flag sets (kept by _assign_slots and
        # _unassign_slots): clusterUpdateState reads the roles and the PFAIL /
        # FAIL flags of those, live and at C speed, instead of scanning the table
        self._owners: dict[Node, frozenset[str]] = {}
        # ... and how many of them have each combination of flags (a handful):
        # clusterUpdateState counts those, not the owners
        self._owner_flags: dict[frozenset[str], int] = {}
        self._first_update_time: int | None = None
        self._among_minority_time = 0
        self._ids_cache: list[str] | None = None  # the table's ids, in order
        self._objs: list[Node] = []  # ... and its nodes (valid with _ids_cache)
        self._my_index = 0  # ... and myself's place among them
        self._replication_pending = False
        self._out: list = []
        self._todo_save = False
        self._todo_fsync = False
        self._todo_update = False
        self._todo_failover = False
        self._todo_manual_failover = False
        self._announce_offset = False

        me = Node(
            myself_id,
            ip=announce_ip if announce_ip is not None else ip,
            port=port,
            cport=cport,
            flags=_frozen_flags((MYSELF, MASTER)),
            ctime=now_ms,
            hostname=hostname,
        )
        self.myself = me
        self._add_node(me)

    # ------------------------------------------------------------------ restore

    @classmethod
    def from_conf(
        cls,
        conf,
        *,
        port: int,
        cport: int,
        node_timeout_ms: int,
        rng: random.Random,
        now_ms: int,
        **kwargs,
    ) -> "ClusterState":
        """Rebuild a state from a parsed nodes.conf (:class:`gossip.nodes_conf.NodesConf`).

        As Redis's clusterLoadConfig: myself keeps its id, ip, slots and epochs and
        takes the configured ports; ping/pong times that were set become "now";
        a replica's config epoch is 0 (it follows its primary's); nodes named only
        as a primary or a migration target get an address-less entry.
        """
        me = conf.myself
        st = cls(me.id, me.ip, port, cport, node_timeout_ms, rng, now_ms, **kwargs)
        st.nodes.clear()
        st._by_num.clear()
        st._ids_cache = None
        for rec in conf.nodes:
            node = Node(
                rec.id,
                ip=rec.ip,
                port=rec.port,
                cport=rec.cport,
                flags=_frozen_flags(rec.flags),
                primary_id=rec.primary_id,
                ping_sent=now_ms if rec.ping_sent else 0,
                pong_received=now_ms if rec.pong_received else 0,
                ctime=now_ms,
                fail_time=now_ms if FAIL in rec.flags else 0,
                hostname=rec.hostname,
            )
            if MYSELF in rec.flags:
                node.port, node.cport = port, cport
                if st.announce_ip is not None:
                    node.ip = st.announce_ip
                # the configured hostname, not the saved one, is myself's
                node.hostname = kwargs.get("hostname", "")
                node.migrating = dict(rec.migrating)
                node.importing = dict(rec.importing)
                st.myself = node
            st._add_node(node)
        referenced = [r.primary_id for r in conf.nodes if r.primary_id]
        referenced += [nid for _, nid in st.myself.migrating.items()]
        referenced += [nid for _, nid in st.myself.importing.items()]
        for nid in referenced:
            if nid not in st.nodes:
                st._add_node(Node(nid, ctime=now_ms))
        for rec in conf.nodes:
            node = st.nodes[rec.id]
            node.config_epoch = 0 if (node.is_replica and node.primary_id) else rec.config_epoch
            for a, b in rec.slots:
                st._assign_slots(node, range(a, b + 1))
        st.current_epoch = max([conf.current_epoch] + [n.config_epoch for n in st.nodes.values()])
        st.last_vote_epoch = conf.last_vote_epoch
        st._replication_pending = st.myself.is_replica
        for n in st.nodes.values():  # clusterNodeAddSlave: a primary that has replicas
            if n.is_replica and n.primary_id in st.nodes:
                st._add_flags(st.nodes[n.primary_id], MIGRATE_TO)
        st._census_rebuild()  # (the table was replaced, myself too)
        st._update_myself_flags()
        st.check_invariants(full=True)
        return st

    # ------------------------------------------------------------------ views

    @property
    def myself_id(self) -> str:
        return self.myself.id

    @property
    def migrating(self) -> dict[int, str]:
        return self.myself.migrating

    @property
    def importing(self) -> dict[int, str]:
        return self.myself.importing

    @property
    def slots_assigned(self) -> int:
        return self._assigned

    def my_epoch(self) -> int:
        """cluster_my_epoch: my config epoch, or my primary's when a replica."""
        m = self.myself
        if m.is_replica and m.primary_id in self.nodes:
            return self.nodes[m.primary_id].config_epoch
        return m.config_epoch

    @property
    def failover_auth_sent(self) -> bool:
        """The request for votes of this attempt went out (Redis's failover_auth_sent)."""
        return self.election == ELECTION_ASKED

    @property
    def mf_can_start(self) -> bool:
        """The manual failover may start its election (Redis's mf_can_start)."""
        return self.mf_state == MF_CAN_START

    def _election_step(self, new: str) -> None:
        assert new in ELECTION_STEPS[self.election], f"election {self.election} -> {new}"
        self.election = new

    def _mf_step(self, new: str) -> None:
        assert new in MF_STEPS[self.mf_state], f"manual failover {self.mf_state} -> {new}"
        self.mf_state = new

    def replicas_of(self, node_id: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.is_replica and n.primary_id == node_id]

    def lookup(self, node_id: str) -> Node | None:
        return self.nodes.get(node_id)

    def stats(self) -> dict[str, int]:
        """Non-zero message counters named as CLUSTER INFO prints them."""
        out = {}
        for t, n in self.stats_sent.items():
            if n:
                out[f"cluster_stats_messages_{t.stat_name}_sent"] = n
        out["cluster_stats_messages_sent"] = sum(self.stats_sent.values())
        for t, n in self.stats_received.items():
            if n:
                out[f"cluster_stats_messages_{t.stat_name}_received"] = n
        out["cluster_stats_messages_received"] = sum(self.stats_received.values())
        return out

    def cluster_info(self) -> list[tuple[str, object]]:
        """The CLUSTER INFO fields, in Redis 7.0's order."""
        ok = pfail = fail = 0
        for n in self.nodes.values():
            if not n.slots:
                continue
            if FAIL in n.flags:
                fail += len(n.slots)
            elif PFAIL in n.flags:
                pfail += len(n.slots)
            else:
                ok += len(n.slots)
        fields: list[tuple[str, object]] = [
            ("cluster_state", self.state),
            ("cluster_slots_assigned", self._assigned),
            ("cluster_slots_ok", ok),
            ("cluster_slots_pfail", pfail),
            ("cluster_slots_fail", fail),
            ("cluster_known_nodes", len(self.nodes)),
            ("cluster_size", self.size),
            ("cluster_current_epoch", self.current_epoch),
            ("cluster_my_epoch", self.my_epoch()),
        ]
        fields += list(self.stats().items())
        fields.append(("total_cluster_links_buffer_limit_exceeded", 0))
        return fields

    def slot_map_signature(self) -> tuple:
        """A cheap, comparable summary of the slot map (for convergence checks)."""
        return tuple(sorted((n.id, n.slot_bitmap()) for n in self.nodes.values() if n.slots))

    # ------------------------------------------------------------------ invariants

    def check_invariants(self, full: bool = False, bitmaps_checked: dict | None = None) -> None:
        """Assert the table's invariants (``full``: the O(nodes + slots) ones
        too). ``bitmaps_checked``, for checking many tables in a row with no
        change between them: the (slot set, bitmap) pairs already compared,
        by identity (holding both, so no id is reused), and filled in; tables
        sharing slot sets share their cached bitmaps too. It also keeps the
        slot ranges of each bitmap (by the bitmap's id, holding it)."""
        me = self.myself
        assert self.nodes.get(me.id) is me, "myself is in the node table"
        assert MYSELF in me.flags and len(me.flags & _ROLE_FLAGS) == 1, f"myself role: {me.flags}"
        assert not me.flags & {PFAIL, FAIL, HANDSHAKE, NOADDR}, f"myself flags: {me.flags}"
        assert me.is_replica == (me.primary_id is not None), "myself is a replica iff it has a primary"
        assert me.primary_id != me.id
        # the election and the manual failover: their state and their fields agree
        assert self.election in ELECTION_STEPS and self.mf_state in MF_STEPS
        if self.election != ELECTION_IDLE:
            assert me.is_replica and self.failover_auth_time > 0, f"election {self.election} on {me.flags}"
        if self.election == ELECTION_ASKED:
            assert 0 < self.failover_auth_epoch <= self.current_epoch, "election epoch"
        assert (self.mf_state == MF_NONE) == (self.mf_end == 0), f"manual failover {self.mf_state}, end {self.mf_end}"
        assert (self.mf_state == MF_SERVING) == (self.mf_replica is not None), "manual failover served"
        assert self.mf_state != MF_SERVING or me.is_primary, "a replica serves a manual failover"
        if self.mf_state == MF_CATCHING_UP:
            assert self.mf_primary_offset >= 0, "catching up to no offset"
        elif self.mf_state != MF_CAN_START:  # (FORCE starts without one)
            assert self.mf_primary_offset == -1, f"paused primary's offset in {self.mf_state}"
        total = 0
        for n in self.nodes.values():
            assert (n is me) == (MYSELF in n.flags), f"only myself has the myself flag ({n.id})"
            assert n.config_epoch <= self.current_epoch, (
                f"config epoch {n.config_epoch} of {n.id} above currentEpoch {self.current_epoch}"
            )
            assert not (n.slots and n.is_replica), f"replica {n.id} owns slots"
            total += len(n.slots)
        assert total == self._assigned, "slot counts agree with the slot map"
        assert len(self._owners) == sum(1 for n in self.nodes.values() if n.slots) and all(
            self.nodes.get(n.id) is n and n.slots and f is n.flags for n, f in self._owners.items()
        ), "the slot owners are listed with their flags"
        counts: dict[frozenset[str], int] = {}
        for f in self._owners.values():
            counts[f] = counts.get(f, 0) + 1
        assert counts == self._owner_flags, "the slot owners' flags are counted"
        if full:
            numbered = [n for n in self._by_num if n is not None]
            assert len(numbered) == (len(self.nodes) if self.index_ids else 0) and all(
                self.nodes.get(n.id) is n and n._num == id_number(n.id) for n in numbered
            ), "the nodes are indexed by their id numbers"
            if self._ids_cache is not None:
                assert self._ids_cache == list(self.nodes) and len(self._objs) == len(self.nodes) and all(
                    a is b for a, b in zip(self._objs, self.nodes.values())
                ) and self._objs[self._my_index] is me, "the table's id and node lists follow its order"
            # Rebuild the slot map from the nodes' own slot sets: it must be the
            # same map, and no slot may be claimed twice (counts would differ).
            rebuilt: list[str | None] = [None] * CLUSTER_SLOTS
            for n in self.nodes.values():
                if not n.slots:
                    continue
                if n._ranges is None and bitmaps_checked is not None:
                    # one bitmap is shared by the views of a primary in many
                    # tables: its ranges are worked out once (kept by the bitmap's id)
                    bm = n.slot_bitmap()
                    seen = bitmaps_checked.get(id(bm))
                    if seen is None:
                        seen = bitmaps_checked[id(bm)] = (bm, n.slot_ranges())
                    n._ranges = seen[1]
                for a, b in n.slot_ranges():
                    rebuilt[a : b + 1] = [n.id] * (b - a + 1)
            assigned = CLUSTER_SLOTS - rebuilt.count(None)
            assert assigned == total, "a slot is claimed by two nodes"
            if rebuilt != self.slot_owner:
                bad = next(s for s in range(CLUSTER_SLOTS) if rebuilt[s] != self.slot_owner[s])
                raise AssertionError(f"slot {bad}: map says {self.slot_owner[bad]}, nodes say {rebuilt[bad]}")
            for table in (me.migrating, me.importing):
                for s, nid in table.items():
                    assert 0 <= s < CLUSTER_SLOTS and nid in self.nodes
            for n in self.nodes.values():
                g = n._gossip
                assert g is None or (g.node_id, g.ip, g.port, g.cport) == (n.id, n.ip, n.port, n.cport), (
                    f"node {n.id}: cached gossip entry of another name or address")
                cached = n._bitmap
                if cached is None:
                    continue
                pair = (id(n.slots), id(cached))
                if bitmaps_checked is not None and pair in bitmaps_checked:
                    continue
                assert cached == bitmap_from_slots(n.slots), f"node {n.id}: cached slot bitmap differs from its slots"
                if bitmaps_checked is not None:
                    bitmaps_checked[pair] = (n.slots, cached)
            # the cron's incremental views hold every node its scans would visit
            due: dict[Node, int] = {}
            for t, _, n in self._due:
                due[n] = min(t, due.get(n, t))
            for n in self._due_now:  # looked at by the next run
                assert n not in due, f"node {n.id}: on the ping heap and due now"
                due[n] = self.now
            assert self._census_now() == self._replica_census(), "replica census out of date"
            for n in self.nodes.values():
                if n is me:
                    continue
                assert n in self._attn or (n.link and _TICK_SPECIAL.isdisjoint(n.flags)), (
                    f"node {n.id} needs the cron's attention but is not listed")
                assert n in self._pinged or not n.ping_sent, f"node {n.id}: ping in flight not listed"
                assert due.get(n, 1 << 62) <= max(n.pong_received + self._due_half, self.now) + 1, (
                    f"node {n.id}: ping deadline later than its pong age")

    # ------------------------------------------------------------------ plumbing

    def _begin(self, now: int) -> None:
        self.now = now
        self._out = []
        self._todo_save = self._todo_fsync = self._todo_update = False
        self._todo_failover = self._todo_manual_failover = False

    def _finish(self) -> list:
        # clusterBeforeSleep: react at once to a vote or a paused primary's offset
        # (twice: Redis's next loop iteration follows within a millisecond).
        for _ in range(2):
            if self._todo_manual_failover:
                self._todo_manual_failover = self._todo_failover = False
                if self.myself.is_replica:
                    self._handle_manual_failover()
                    self._handle_replica_failover()
            elif self._todo_failover:
                self._todo_failover = False
                self._handle_replica_failover()
        if self._todo_update:
            self._update_state()
        out = self._out
        if self._todo_save:
            out.append(A.SaveConfig(fsync=self._todo_fsync))
        self._out = []
        self._todo_save = self._todo_fsync = self._todo_update = False
        if __debug__:
            self._calls += 1
            if self._calls % self.check_every == 0:
                self.check_invariants()
        return out

    def _save(self, fsync: bool = False, update: bool = False) -> None:
        self._todo_save = True
        self._todo_fsync |= fsync
        self._todo_update |= update

    def _log(self, level: str, text: str) -> None:
        self._out.append(A.Log(level, text))

    def _set_current_epoch(self, epoch: int) -> None:
        assert epoch >= self.current_epoch, "currentEpoch never decreases"
        if epoch != self.current_epoch:
            self.current_epoch = epoch
            self._save()  # persist every epoch change: a restart never goes back in time

    def _set_flags(self, node: Node, flags) -> None:
        """Give ``node`` these flags. A node's flags are an immutable frozenset,
        one per combination shared by every table (see _frozen_flags): a gossip
        entry's flags are then compared by identity, and reading a node's
        flags in a large simulated cluster touches a set that stays in cache."""
        f = _frozen_flags(flags)
        node.flags = f
        owners = self._owners
        if node in owners:
            old = owners[node]
            owners[node] = f
            if old is not f:
                self._count_owner_flags(old, -1)
                self._count_owner_flags(f, 1)
        self._census_node(node)

    def _census_node(self, node: Node) -> None:
        """Count ``node`` again in the replica census, as a replica and as a
        primary (after a change of its flags, primary, slots or table entry)."""
        in_table = self.nodes.get(node.id) is node
        f = node.flags
        pid = node.primary_id if in_table and SLAVE in f and FAIL not in f else None
        old = node._ok_for
        if old != pid:
            node._ok_for = pid
            ok = self._ok_replicas
            if old is not None:
                c = ok[old] - 1
                if c:
                    ok[old] = c
                else:
                    del ok[old]
                p = self.nodes.get(old)
                if p is not None:
                    self._census_primary(p)
            if pid is not None:
                ok[pid] = ok.get(pid, 0) + 1
                p = self.nodes.get(pid)
                if p is not None:
                    self._census_primary(p)
        self._census_primary(node, in_table)

    def _census_primary(self, node: Node, in_table: bool = True) -> None:
        """``node``'s entry among the census's primaries, made current."""
        f = node.flags
        if in_table and MASTER in f and _NOT_PRIMARY_OK.isdisjoint(f) and node is not self.myself:
            k = self._ok_replicas.get(node.id, 0)
            new = (k, k == 0 and bool(node.slots) and MIGRATE_TO in f)
        else:
            new = None
        old = node._census
        if old == new:
            return
        node._census = new
        counts = self._census_counts
        if old is not None:
            c = counts[old[0]] - 1
            if c:
                counts[old[0]] = c
            else:
                del counts[old[0]]
            self._census_orphaned -= old[1]
        if new is not None:
            counts[new[0]] = counts.get(new[0], 0) + 1
            self._census_orphaned += new[1]

    def _census_rebuild(self) -> None:
        """The census from scratch (after the table was replaced wholesale)."""
        self._ok_replicas.clear()
        self._census_counts.clear()
        self._census_orphaned = 0
        for n in self.nodes.values():
            n._ok_for = n._census = None
        for n in self.nodes.values():
            self._census_node(n)

    def _count_owner_flags(self, flags: frozenset[str], k: int) -> None:
        counts = self._owner_flags
        c = counts.get(flags, 0) + k
        if c:
            counts[flags] = c
        else:
            del counts[flags]

    def _add_flags(self, node: Node, *names: str) -> None:
        if not node.flags.issuperset(names):
            self._set_flags(node, node.flags.union(names))

    def _del_flags(self, node: Node, *names: str) -> None:
        if not node.flags.isdisjoint(names):
            self._set_flags(node, node.flags.difference(names))

    def _set_config_epoch(self, node: Node, epoch: int) -> None:
        assert epoch >= node.config_epoch or node.is_replica, "configEpoch never decreases"
        node.config_epoch = epoch

    def _node_ids(self) -> list[str]:
        if self._ids_cache is None:
            self._ids_cache = list(self.nodes)
            self._objs = list(self.nodes.values())
            self._my_index = self._objs.index(self.myself)
        return self._ids_cache

    def _add_node(self, node: Node) -> None:
        assert node.id not in self.nodes, f"node {node.id} added twice"
        self.nodes[node.id] = node
        if self.index_ids:
            self._number(node)
        ids = self._ids_cache
        if ids is not None:
            # a new key goes last in the dict's order: the lists follow without
            # a rebuild (a forming cluster adds a node per handshake)
            ids.append(node.id)
            self._objs.append(node)
        self._node_seq += 1
        node._seq = self._node_seq
        self._census_node(node)
        if MYSELF not in node.flags:
            self._attn.add(node)
            if node.ping_sent:
                self._pinged.add(node)
            heapq.heappush(self._due, (node.pong_received + self._due_half + 1, node._seq, node))

    def _number(self, node: Node) -> None:
        """Index ``node`` by the id_number of its (new) id."""
        num = node._num = id_number(node.id)
        by_num = self._by_num
        if num >= len(by_num):
            by_num.extend([None] * (num + 1 - len(by_num)))
        by_num[num] = node

    def _unnumber(self, node: Node) -> None:
        num = node._num
        if num < len(self._by_num) and self._by_num[num] is node:
            self._by_num[num] = None
        node._num = NO_ID_NUMBER

    def _unlink(self, node: Node) -> None:
        """The outbound link is gone (freeLinks): the cron reconnects."""
        node.link = node.link_up = False
        self._attn.add(node)

    def _del_node(self, node: Node) -> None:
        """clusterDelNode: unassign its slots, drop reports by it, close its link."""
        assert node is not self.myself
        me = self.myself
        for table in (me.migrating, me.importing):
            for s in [s for s, nid in table.items() if nid == node.id]:
                del table[s]
        for s in list(node.slots):
            self._del_slot(s)
        for n in self.nodes.values():
            if n.failure_reports:
                n.failure_reports.pop(node.id, None)
            if n.primary_id == node.id and n is not me:
                n.primary_id = None
                self._census_node(n)
        if node.link:
            self._unlink(node)
            self._out.append(A.Disconnect(node.id))
        del self.nodes[node.id]
        self._unnumber(node)
        self._ids_cache = None
        self._census_node(node)

    def _rename_node(self, node: Node, new_id: str) -> None:
        assert new_id not in self.nodes and not node.slots
        old = node.id
        del self.nodes[old]
        self._unnumber(node)
        node.id = new_id
        node._gossip = None
        self.nodes[new_id] = node
        if self.index_ids:
            self._number(node)
        self._ids_cache = None
        self._census_node(node)
        self._node_seq += 1
        node._seq = self._node_seq
        if node.link:
            self._out.append(A.Rename(old, new_id))

    def _add_slot(self, node: Node, slot: int) -> None:
        self._assign_slots(node, (slot,))

    def _del_slot(self, slot: int) -> None:
        self._unassign_slots((slot,))

    def _assign_slots(self, node: Node, slots) -> None:
        """Give unowned ``slots`` to ``node`` (the one way a slot gets an owner)."""
        assert not node.is_replica, "a replica cannot own slots"
        owner = self.slot_owner
        nid = node.id
        for s in slots:
            assert owner[s] is None, f"slot {s} already owned by {owner[s]}"
            owner[s] = nid
        before = len(node.slots)
        mine = node.slots
        if not isinstance(mine, set):  # a frozenset shared (share_slot_sets)
            mine = node.slots = set(mine)
        mine.update(slots)
        if node.slots and node not in self._owners:
            self._owners[node] = node.flags
            self._count_owner_flags(node.flags, 1)
        if not before:
            self._census_primary(node)
        node._slots_changed(added=slots)
        self._assigned += len(node.slots) - before

    def _unassign_slots(self, slots) -> None:
        owner = self.slot_owner
        touched: dict[str, list[int]] = {}
        for s in slots:
            nid = owner[s]
            assert nid is not None, f"slot {s} is not assigned"
            touched.setdefault(nid, []).append(s)
            owner[s] = None
        me = self.myself
        shard_lost: list[int] = []
        for nid, lost in touched.items():
            node = self.nodes[nid]
            mine = node.slots
            if not isinstance(mine, set):  # a frozenset shared (share_slot_sets)
                mine = node.slots = set(mine)
            mine.difference_update(lost)
            node._slots_changed(removed=lost)
            if not node.slots:
                self._count_owner_flags(self._owners.pop(node), -1)
                self._census_primary(node)
            self._assigned -= len(lost)
            if nid == me.id or nid == me.primary_id:
                shard_lost.extend(lost)
        if shard_lost:
            # clusterDelSlot: a slot served by my shard (before this change)
            # takes its shard channels with it
            self._out.append(A.DropSlotChannels(tuple(sorted(shard_lost))))

    def _del_node_slots(self, node: Node) -> None:
        self._unassign_slots(sorted(node.slots))

    def _blacklisted(self, node_id: str) -> bool:
        if not self.blacklist:
            return False
        expired = [k for k, t in self.blacklist.items() if t < self.now]
        for k in expired:
            del self.blacklist[k]
        return node_id in self.blacklist

    # ------------------------------------------------------------------ messages out

    def _header(self, mflags: int = 0) -> Header:
        me = self.myself
        src = me
        if me.is_replica and me.primary_id in self.nodes:
            src = self.nodes[me.primary_id]
        if me.is_primary and self.mf_end and self._mf_offset_fresh:
            mflags |= MF_PAUSED
        # headers are immutable: the last one serves while every field is equal
        key = (me.id, self.current_epoch, src.config_epoch, me.flags, me.primary_id, src.slot_bitmap(),
               self.announce_ip, me.port, me.cport, self.repl_offset, self.state, mflags, me.hostname, me.pport)
        last = self._header_last
        if key == self._header_key and last is not None:
            return last
        h = self._header_last = Header(
            sender=me.id,
            current_epoch=self.current_epoch,
            config_epoch=src.config_epoch,
            flags=_frozen_flags(me.flags),
            primary_id=me.primary_id,
            slots=key[5],
            ip=self.announce_ip or "",
            port=me.port,
            cport=me.cport,
            offset=self.repl_offset,
            state=self.state,
            mflags=mflags,
            hostname=me.hostname,
            pport=me.pport,
        )
        self._header_key = key
        return h

    @staticmethod
    def _gossip_entry(n: Node) -> GossipEntry:
        # Redis carries these times in seconds: keep the same resolution.
        ping, pong = _whole_second(n.ping_sent), _whole_second(n.pong_received)
        n._gossip_ping, n._gossip_pong = n.ping_sent, n.pong_received
        g = n._gossip
        if (
            g is not None and g.node_id == n.id and g.ping_sent == ping and g.pong_received == pong
            and g.ip == n.ip and g.port == n.port and g.cport == n.cport and g.flags == n.flags
        ):
            return g  # entries are immutable: one serves every message it fits
        flags = g.flags if g is not None and g.flags == n.flags else _frozen_flags(n.flags)
        g = n._gossip = GossipEntry(n.id, ping, pong, n.ip, n.port, n.cport, flags, n._num)
        return g

    def _gossip_section(self) -> tuple[GossipEntry, ...]:
        """clusterSendPing's gossip: ~1/10 of the nodes (at least 3), plus PFAIL nodes."""
        count = len(self.nodes)
        freshnodes = count - 2
        wanted = min(max(3, count // 10), freshnodes)
        entries: list[GossipEntry] = []
        nids = len(self._node_ids())
        objs = self._objs
        # the table indices taken, and myself's: a draw of either is skipped
        # the same way (no fresh node used up)
        chosen = {self._my_index}
        # rng.choice(ids) inlined (random.Random._randbelow_with_getrandbits:
        # the same draws, so a seed's run is the same), a call less per draw
        bits = self.rng.getrandbits
        k = nids.bit_length()
        entry = self._gossip_entry
        special, plain = _TICK_SPECIAL, _PLAIN
        append, take = entries.append, chosen.add
        maxiter = wanted * 3
        got = 0
        while freshnodes > 0 and got < wanted and maxiter > 0:
            maxiter -= 1
            r = bits(k)
            while r >= nids:
                r = bits(k)
            if r in chosen:
                continue
            n = objs[r]
            fl = n.flags
            if fl not in plain and not special.isdisjoint(fl):
                if PFAIL in fl:
                    continue
                freshnodes -= 1  # HANDSHAKE or NOADDR
                continue
            if not n.link and not n.slots:
                freshnodes -= 1
                continue
            # _gossip_entry(n), inlined: this runs ~100 times a message (a rename
            # or a new address drops the cached entry: only times and flags change)
            g = n._gossip
            if g is None or n._gossip_ping != n.ping_sent or n._gossip_pong != n.pong_received or g.flags is not fl:
                g = entry(n)
            append(g)
            take(r)
            got += 1
            freshnodes -= 1
        pfail_wanted = self.stats_pfail_nodes
        if pfail_wanted:
            # every PFAIL node is in _attn: visit those in table order
            nodes = self.nodes
            for n in sorted(self._attn, key=_by_seq):
                if pfail_wanted <= 0:
                    break
                if n.flags & {HANDSHAKE, NOADDR} or PFAIL not in n.flags or nodes.get(n.id) is not n:
                    continue
                entries.append(self._gossip_entry(n))
                pfail_wanted -= 1
        return tuple(entries)

    def _ping_message(self, mtype: MsgType) -> Message:
        return Message(mtype, self._header(), self._gossip_section())

    def _count_sent(self, msg: Message, n: int = 1) -> None:
        self.stats_sent[msg.type] += n

    def _send(self, node: Node, msg: Message) -> None:
        assert node.link, f"send to {node.id} without a link"
        self._out.append(A.Send(node.id, msg))
        self._count_sent(msg)

    def _send_ping(self, node: Node, mtype: MsgType) -> None:
        if mtype == MsgType.PING:
            node.ping_sent = self.now
            self._pinged.add(node)
            if not node.link_up:
                # The link is still connecting: the PING its connect handler
                # sends (on_link_up, keeping this ping time) is this one. Redis
                # queues both back to back; one is built, and none if the
                # connection is refused.
                return
        self._send(node, self._ping_message(mtype))

    def _broadcast(self, msg: Message, among=None) -> None:
        """To every linked node (or every linked node of ``among``) but myself."""
        to = tuple(
            n.id for n in (self.nodes.values() if among is None else among)
            if n.link and n is not self.myself and not n.in_handshake
        )
        if to:
            self._out.append(A.Broadcast(msg, to))
            self._count_sent(msg, len(to))

    def _broadcast_pong(self, local_replicas: bool = False) -> None:
        """clusterBroadcastPong: to all, or only to the replicas of my primary (and mine)."""
        me = self.myself
        to = [n for n in self.nodes.values() if n.link and n is not me and not n.in_handshake]
        if local_replicas:
            to = [n for n in to if n.is_replica and n.primary_id is not None
                  and (n.primary_id == me.id or n.primary_id == me.primary_id)]
        for n in to:
            self._send(n, self._ping_message(MsgType.PONG))

    # ------------------------------------------------------------------ tick

    def on_tick(self, now: int) -> list:
        """clusterCron, called every 100 ms."""
        self._begin(now)
        self._iteration += 1
        timeout = self.node_timeout
        handshake_timeout = max(timeout, HANDSHAKE_MIN_TIMEOUT_MS)
        me = self.myself
        self._update_myself_flags()

        if self._replication_pending and me.is_replica:
            primary = self.nodes.get(me.primary_id or "")
            if primary is not None and primary.has_address:
                self._out.append(A.Replicate(primary.id))
                self._replication_pending = False

        # Reconnect, expire handshakes. (A linked node with none of PFAIL,
        # HANDSHAKE, NOADDR has nothing to do here: Redis's loop visits every
        # node; this one only those in _attn, which holds every other one.)
        self.stats_pfail_nodes = 0
        special = _TICK_SPECIAL
        nodes = self.nodes
        attn = self._attn
        for node in sorted(attn, key=_by_seq) if len(attn) > 1 else list(attn):
            if nodes.get(node.id) is not node:
                attn.discard(node)  # deleted
                continue
            if node.link and special.isdisjoint(node.flags):
                attn.discard(node)
                continue
            if node is me or NOADDR in node.flags:
                continue
            if PFAIL in node.flags:
                self.stats_pfail_nodes += 1
            if node.in_handshake and now - node.ctime > handshake_timeout:
                self._log("verbose", f"Handshake with node {node.id} ({node.ip}:{node.port}) timed out")
                self._del_node(node)
                continue
            if not node.link and node.has_address:
                # clusterNodeCronHandleReconnect: the PING (or MEET) goes out
                # when the connection is up (on_link_up); a refused one sends
                # nothing. (The failure detection below may still queue a PING
                # on the connecting link, as Redis's does.)
                node.link = True
                node.link_ctime = now
                self._out.append(A.Connect(node.id, node.ip, node.cport))

        if self._announce_offset:
            # (a header is enough: no gossip section, no draw from the rng)
            self._announce_offset = False
            primary = self.nodes.get(me.primary_id or "")
            if me.is_replica and primary is not None and FAIL not in primary.flags:
                self._broadcast(Message(MsgType.PONG, self._header(), ()))

        # Once a second, ping the node with the oldest pong among 5 random ones.
        if self._iteration % 10 == 0:
            ids = self._node_ids()
            best: Node | None = None
            for _ in range(5):
                n = self.nodes[self.rng.choice(ids)]
                if not n.link or n.ping_sent != 0 or n is me or n.in_handshake:
                    continue
                if best is None or n.pong_received < best.pong_received:
                    best = n
            if best is not None:
                self._send_ping(best, MsgType.PING)

        # Failure detection.
        update = False
        newly_pfail: list[Node] = []
        half = timeout // 2
        mf_id = self.mf_replica if self.mf_end and me.is_primary else None
        for node in self._ping_candidates(now, half, mf_id):
            # the common case first: no ping in flight, and no ping due (heard
            # from within node-timeout/2, or no link), not a manual failover's replica
            if node.ping_sent == 0 and (not node.link or now - node.pong_received <= half) \
                    and node.id != mf_id:
                continue
            if node is me or node.flags & {NOADDR, HANDSHAKE}:
                continue
            ping_delay = now - node.ping_sent
            data_delay = now - node.data_received
            if (
                node.link
                and now - node.link_ctime > timeout
                and node.ping_sent
                and ping_delay > timeout // 2
                and data_delay > timeout // 2
            ):
                # No answer for a while on a live link: drop it, cron reconnects.
                self._unlink(node)
                self._out.append(A.Disconnect(node.id))
            if node.link and node.ping_sent == 0 and now - node.pong_received > timeout // 2:
                self._send_ping(node, MsgType.PING)
                continue
            if self.mf_end and me.is_primary and self.mf_replica == node.id and node.link:
                # A replica of ours runs a manual failover: ping it every tick (offset).
                self._send_ping(node, MsgType.PING)
                continue
            if node.ping_sent == 0:
                continue
            if min(ping_delay, data_delay) > timeout and not node.flags & FAILURE_FLAGS:
                self._log("debug", f"*** NODE {node.id} possibly failing")
                self._add_flags(node, PFAIL)
                self._attn.add(node)
                self.stats_pfail_nodes += 1  # the gossip sections sent from now on carry it
                update = True
                # Valkey 8.1: FAIL at once if mine is the last report needed
                self._mark_node_as_failing_if_needed(node)
                if PFAIL in node.flags:
                    newly_pfail.append(node)
        if newly_pfail and me.is_primary:
            self._ask_for_failure_reports()

        self._manual_failover_check_timeout()
        self._replica_cron()
        if update or self.state == "fail":
            self._todo_update = True
        return self._finish()

    def _ask_for_failure_reports(self) -> None:
        """This primary just flagged a node PFAIL (once per node going PFAIL):
        PING every other primary serving slots at once, beyond Redis 7.0, whose
        cron leaves the report to the next regular PING (node-timeout/2 later
        at most). The gossip section carries every PFAIL node (Redis's
        pfail_wanted), so a primary that flagged it too gets the report that
        completes its quorum within one trip, and one that flags it later
        finds the report already there (the check above). The PING is an
        ordinary one: a redis-server peer just answers it. A ping already in
        flight to that primary keeps its time (its own failure detection)."""
        me = self.myself
        for n in self.nodes.values():
            if (
                n is me or not n.link or not n.is_primary or not n.slots
                or n.in_handshake or not FAILURE_FLAGS.isdisjoint(n.flags)
            ):
                continue
            old_ping_sent = n.ping_sent
            self._send_ping(n, MsgType.PING)
            if old_ping_sent:
                n.ping_sent = old_ping_sent

    def _ping_candidates(self, now: int, half: int, mf_id: str | None) -> list[Node]:
        """The nodes clusterCron's failure detection loop has work for, in table
        order: those with a ping in flight, those not heard from within
        node-timeout/2 (from the _due heap), the manual failover's replica; a
        superset of them (the loop's own first test sorts them out)."""
        nodes = self.nodes
        due = self._due
        if half != self._due_half:  # (the timeout never changes in practice)
            self._due_half = half
            due[:] = [(n.pong_received + half + 1, n._seq, n) for n in nodes.values() if MYSELF not in n.flags]
            heapq.heapify(due)
            self._due_now = []
        out = set()
        pinged = self._pinged
        for node in list(pinged):
            if node.ping_sent == 0 or nodes.get(node.id) is not node:
                pinged.discard(node)
            else:
                out.add(node)
        # due at the last run: due still (a candidate again), or back on the
        # heap at its new deadline (a push of a later time: rarely a sift)
        again = self._due_now
        due_now = self._due_now = []
        for node in again:
            if nodes.get(node.id) is not node:
                continue  # deleted: dropped
            t = node.pong_received + half + 1
            if t <= now:
                out.add(node)
                due_now.append(node)
            else:
                heapq.heappush(due, (t, node._seq, node))
        while due and due[0][0] <= now:
            _, seq, node = due[0]
            if nodes.get(node.id) is not node:
                heapq.heappop(due)  # deleted: its entry goes
                continue
            t = node.pong_received + half + 1
            if t <= now:
                # due now (or unlinked): a candidate, looked at again next tick
                out.add(node)
                due_now.append(node)
                heapq.heappop(due)
            else:
                heapq.heapreplace(due, (t, seq, node))  # a fresher pong moved it
        if mf_id is not None and mf_id in nodes:
            out.add(nodes[mf_id])
        return sorted(out, key=_by_seq)

    def _replica_cron(self) -> None:
        """The replica's share of clusterCron: manual failover, election, migration."""
        me = self.myself
        if not me.is_replica:
            return
        orphaned, max_replicas, this_replicas = self._census_now()
        if self.check_every == 1:
            assert (orphaned, max_replicas, this_replicas) == self._replica_census(), "replica census out of date"
        self._handle_manual_failover()
        self._handle_replica_failover()
        if (
            me.is_replica and orphaned and max_replicas >= 2 and this_replicas == max_replicas
            and self.allow_replica_migration
        ):
            self._handle_replica_migration(max_replicas)

    def _census_now(self) -> tuple[int, int, int]:
        """_replica_census's figures, from the census kept as the table changes."""
        counts = self._census_counts
        primary = self.nodes.get(self.myself.primary_id or "")
        mine = primary._census if primary is not None else None
        return self._census_orphaned, max(counts) if counts else 0, mine[0] if mine is not None else 0

    def _replica_census(self) -> tuple[int, int, int]:
        """(orphaned primaries: serving slots, no working replica, used to have one;
        the most working replicas a primary has; my primary's count), as
        clusterCron counts them on a replica."""
        me = self.myself
        ok_replicas = self._count_ok_replicas()
        orphaned = max_replicas = this_replicas = 0
        skip = _NOT_PRIMARY_OK
        for node in self.nodes.values():
            if MASTER not in node.flags or not skip.isdisjoint(node.flags):
                continue
            if node is not me:
                ok = ok_replicas.get(node.id, 0)
                if ok == 0 and node.slots and MIGRATE_TO in node.flags:
                    orphaned += 1
                max_replicas = max(max_replicas, ok)
                if me.primary_id == node.id:
                    this_replicas = ok
        return orphaned, max_replicas, this_replicas

    def _count_ok_replicas(self) -> dict[str, int]:
        """clusterCountNonFailingSlaves for every primary: primary id -> replicas not FAIL."""
        counts: dict[str, int] = {}
        get = counts.get
        for n in self.nodes.values():
            pid = n.primary_id
            if pid is not None and SLAVE in n.flags and FAIL not in n.flags:
                counts[pid] = get(pid, 0) + 1
        return counts

    # ------------------------------------------------------------------ failover (replica side)

    def set_repl_offset(self, offset: int) -> None:
        """The server's replication offset (master_repl_offset on a primary, the
        processed offset on a replica), reported ~10 times a second and after a
        PauseClients. It goes out in every header; it ranks replicas in elections
        and ends the wait of a manual failover."""
        if not self.repl_offset and offset and self.myself.is_replica:
            # The first offset of a replica makes it available (CLUSTER SLOTS
            # lists a replica once its offset is non-zero): tell every node on
            # the next tick rather than on the next scheduled pings (~1 s).
            self._announce_offset = True
        self.repl_offset = offset
        if self.mf_end and self.myself.is_primary:
            self._mf_offset_fresh = True

    def set_master_link_down_since(self, down_since_ms: int | None, last_interaction_ms: int | None = None) -> None:
        """Replica side, for the data age check of automatic failovers
        (cluster-replica-validity-factor), as Redis's repl_down_since / lastinteraction.

        Call with the time (ms, the state's clock) the link with the primary went down
        (or never came up: the time replication was configured), or with ``None``
        while it is up, giving the time of the last data or ping received from the
        primary as ``last_interaction_ms``. Never called: the data counts as fresh.
        """
        self.master_link_down_since = down_since_ms
        self.master_last_interaction = last_interaction_ms

    def set_hostname(self, hostname: str) -> None:
        """cluster-announce-hostname (CONFIG SET): announced from the next ping on."""
        if self.myself.hostname != hostname:
            self.myself.hostname = hostname
            self._save()

    def set_replica_no_failover(self, value: bool) -> None:
        """cluster-replica-no-failover (CONFIG SET): no automatic failover; nofailover flag."""
        self.replica_no_failover = value
        self._update_myself_flags()

    def _update_myself_flags(self) -> None:
        """clusterUpdateMyselfFlags: the nofailover flag follows the configuration."""
        me = self.myself
        had = NOFAILOVER in me.flags
        if self.replica_no_failover and not had:
            self._add_flags(me, NOFAILOVER)
            self._save()
        elif had and not self.replica_no_failover:
            self._del_flags(me, NOFAILOVER)
            self._save()

    def data_age(self) -> int:
        """Milliseconds since the last interaction with my primary (0 if unknown)."""
        if self.master_link_down_since is not None:
            return max(0, self.now - self.master_link_down_since)
        if self.master_last_interaction is not None:
            return max(0, self.now - self.master_last_interaction)
        return 0

    def replica_rank(self) -> int:
        """clusterGetReplicaRank (Valkey): siblings (able to fail over) with a greater
        offset, or the same offset and a smaller node id, so that no two siblings
        share a rank and start their elections together."""
        me = self.myself
        if me.primary_id is None:
            return 0
        mine = self.repl_offset
        return sum(
            1 for n in self.replicas_of(me.primary_id)
            if n is not me and NOFAILOVER not in n.flags
            and (n.repl_offset > mine or (n.repl_offset == mine and n.id < me.id))
        )

    def failed_primary_rank(self) -> int:
        """clusterGetFailedPrimaryRank (Valkey): failed primaries serving slots and
        having replicas whose id sorts before my primary's (the shard identity
        here: Redis 7.0 has no shard id). Those failed longer ago than node timeout
        x validity factor are left out: their replicas cannot fail over anyway."""
        me = self.myself
        mine = me.primary_id
        if mine is None:
            return 0
        with_replicas = {n.primary_id for n in self.nodes.values() if n.is_replica}
        limit = self.node_timeout * self.replica_validity_factor
        return sum(
            1 for n in self.nodes.values()
            if FAIL in n.flags and n.is_primary and n.slots and n.id in with_replicas
            and not (limit and self.now - n.fail_time > limit) and n.id < mine
        )

    def election_delay_unit(self) -> int:
        """Valkey 9's fixed election delay: min(500 ms, node timeout / 30), >= 1 ms."""
        return max(1, min(ELECTION_DELAY_MAX_MS, self.node_timeout // ELECTION_DELAY_DIVISOR))

    def _log_cant_failover(self, reason: int) -> None:
        """clusterLogCantFailover: log why not, at most every 10 s per reason, and not
        in the first node timeout + 5 s after the primary failed (a normal election)."""
        if reason == self.cant_failover_reason and self.now - self._cant_failover_logged < CANT_FAILOVER_RELOG_PERIOD_MS:
            return
        self.cant_failover_reason = reason
        primary = self.nodes.get(self.myself.primary_id or "")
        if primary is not None and FAIL in primary.flags and self.now - primary.fail_time < self.node_timeout + 5000:
            return
        self._cant_failover_logged = self.now
        self._log("warning", f"Currently unable to failover: {CANT_FAILOVER_MESSAGES[reason]}")

    def _handle_replica_failover(self) -> None:
        """clusterHandleSlaveFailover: schedule, run and win (or lose) an election."""
        me = self.myself
        now = self.now
        auth_age = now - self.failover_auth_time
        needed_quorum = self.size // 2 + 1
        manual = self.mf_end != 0 and self.mf_can_start
        auth_timeout = max(self.node_timeout * 2, 2000)
        auth_retry_time = auth_timeout * 2
        primary = self.nodes.get(me.primary_id or "")
        if (
            me.is_primary or primary is None
            or (FAIL not in primary.flags and not manual)
            or (self.replica_no_failover and not manual)
            or not primary.slots
        ):
            self.cant_failover_reason = CANT_FAILOVER_NONE
            return

        # Data age: the time without news from the primary, minus the node timeout
        # it took to flag it as failing.
        data_age = self.data_age()
        if data_age > self.node_timeout:
            data_age -= self.node_timeout
        if (
            self.replica_validity_factor
            and data_age > self.repl_ping_replica_period * 1000 + self.node_timeout * self.replica_validity_factor
            and not manual
        ):
            self._log_cant_failover(CANT_FAILOVER_DATA_AGE)
            return

        unit = self.election_delay_unit()
        if auth_age > auth_retry_time:
            # A new attempt: one unit for the FAIL to propagate, up to one more so that
            # replicas do not start together, two per better-placed sibling, one per
            # failed primary ranked before mine.
            self.failover_auth_time = now + unit + self.rng.randrange(unit)
            self.failover_auth_count = 0
            self._election_step(ELECTION_SCHEDULED)
            self.failover_auth_rank = self.replica_rank()
            self.failover_auth_time += self.failover_auth_rank * 2 * unit
            self.failover_failed_primary_rank = self.failed_primary_rank()
            self.failover_auth_time += self.failover_failed_primary_rank * unit
            if self.mf_end:  # a manual failover starts now
                self.failover_auth_time = now
                self.failover_auth_rank = 0
                self._todo_failover = True
            elif self.sibling_election_until > self.failover_auth_time:
                self.failover_auth_time = self.sibling_election_until
            self._log(
                "warning",
                f"Start of election delayed for {self.failover_auth_time - now} milliseconds "
                f"(rank #{self.failover_auth_rank}, primary rank #{self.failover_failed_primary_rank}, "
                f"offset {self.repl_offset}).",
            )
            # Tell my siblings my offset, so that they can rank themselves.
            self._broadcast_pong(local_replicas=True)
            if self.failover_auth_time > now:
                self._wake(self.failover_auth_time)
            return

        # Siblings with better offsets may have spoken since, or other failed
        # shards may have recovered: move the start with the ranks.
        if not self.failover_auth_sent and not self.mf_end:
            newrank = self.replica_rank()
            if newrank != self.failover_auth_rank:
                added = (newrank - self.failover_auth_rank) * 2 * unit
                self.failover_auth_time += added
                self.failover_auth_rank = newrank
                self._log("warning", f"Replica rank updated to #{newrank}, added {added} milliseconds of delay.")
            newprank = self.failed_primary_rank()
            if newprank != self.failover_failed_primary_rank:
                added = (newprank - self.failover_failed_primary_rank) * unit
                self.failover_auth_time += added
                self.failover_failed_primary_rank = newprank
                self._log("warning", f"Failed primary rank updated to #{newprank}, added {added} milliseconds of delay.")

        if now < self.failover_auth_time:
            self._log_cant_failover(CANT_FAILOVER_WAITING_DELAY)
            self._wake(self.failover_auth_time)
            return
        if auth_age > auth_timeout:
            self._log_cant_failover(CANT_FAILOVER_EXPIRED)
            return

        if not self.failover_auth_sent:
            self._set_current_epoch(self.current_epoch + 1)
            self.failover_auth_epoch = self.current_epoch
            self._log("warning", f"Starting a failover election for epoch {self.current_epoch}.")
            self._request_failover_auth()
            self._election_step(ELECTION_ASKED)
            self._save(fsync=True, update=True)
            return

        if self.failover_auth_count >= needed_quorum:
            self._log("warning", "Failover election won: I'm the new master.")
            if me.config_epoch < self.failover_auth_epoch:
                self._set_config_epoch(me, self.failover_auth_epoch)
                self._log("warning", f"configEpoch set to {me.config_epoch} after successful failover")
            self._failover_replace_your_primary()
        else:
            self._log_cant_failover(CANT_FAILOVER_WAITING_VOTES)

    def _wake(self, at: int) -> None:
        """Ask the transport for an ``on_timer`` call at ``at`` (beyond Redis 7.0,
        whose cron starts the election at its first tick after the delay: 50 ms
        later on average), once per time asked for."""
        if at != self._wake_at:
            self._wake_at = at
            self._out.append(A.Wake(at))

    def _request_failover_auth(self) -> None:
        """clusterRequestFailoverAuth: ask everybody (only primaries with slots answer)."""
        mflags = MF_FORCEACK if self.mf_end else 0
        self._broadcast(Message(MsgType.FAILOVER_AUTH_REQUEST, self._header(mflags)))

    def _failover_replace_your_primary(self) -> None:
        """clusterFailoverReplaceYourMaster: become a primary with my primary's slots."""
        me = self.myself
        old = self.nodes.get(me.primary_id or "")
        if me.is_primary or old is None:
            return
        self._set_node_as_primary(me)  # emits Replicate(None)
        taken = sorted(old.slots)
        if taken:
            self._unassign_slots(taken)
            self._assign_slots(me, taken)
        self._update_state()
        self._save(fsync=True, update=True)
        self._broadcast_pong()
        self._reset_manual_failover()

    def _handle_replica_migration(self, max_replicas: int) -> None:
        """clusterHandleSlaveMigration: the replica with the smallest id among those of
        the best-served primaries moves to an orphaned primary (after 5 s orphaned),
        if its primary keeps more than ``migration_barrier`` working replicas."""
        me = self.myself
        if self.state != "ok":
            return
        mine = self.nodes.get(me.primary_id or "")
        if mine is None:
            return
        ok_mine = sum(1 for n in self.replicas_of(mine.id) if not n.flags & FAILURE_FLAGS)
        if ok_mine <= self.migration_barrier:
            return
        ok_replicas = self._count_ok_replicas()
        target: Node | None = None
        candidate = me
        for node in self.nodes.values():
            okr = ok_replicas.get(node.id, 0) if node.is_primary else 0
            orphaned = (
                not node.is_replica and FAIL not in node.flags
                and MIGRATE_TO in node.flags and okr == 0
            )
            if orphaned:
                if target is None and node.slots:
                    target = node
                if not node.orphaned_time:
                    node.orphaned_time = self.now
            else:
                node.orphaned_time = 0
            if okr == max_replicas:
                for r in self.replicas_of(node.id):
                    if r.id < candidate.id:
                        candidate = r
        if (
            target is not None and candidate is me
            and self.now - target.orphaned_time > REPLICA_MIGRATION_DELAY_MS
        ):
            self._log("warning", f"Migrating to orphaned master {target.id}")
            self._set_my_primary(target)
            self._save(fsync=True, update=True)

    # ------------------------------------------------------------------ manual failover

    def _reset_manual_failover(self) -> None:
        """resetManualFailover: a primary that paused its clients resumes them."""
        if self.mf_replica is not None:
            self._out.append(A.UnpauseClients())
        self._mf_step(MF_NONE)
        self.mf_end = 0
        self.mf_replica = None
        self.mf_primary_offset = -1
        self._mf_offset_fresh = False

    def _manual_failover_check_timeout(self) -> None:
        if self.mf_end and self.mf_end < self.now:
            self._log("warning", "Manual failover timed out.")
            self._reset_manual_failover()

    def _handle_manual_failover(self) -> None:
        """clusterHandleManualFailover: start once my offset reaches the paused primary's."""
        if self.mf_end == 0 or self.mf_can_start or self.mf_primary_offset == -1:
            return
        if self.mf_primary_offset == self.repl_offset:
            self._mf_step(MF_CAN_START)
            self._log("warning", "All master replication stream processed, manual failover can start.")
            self._todo_failover = True

    def manual_failover(self, mode: str = "", now: int | None = None) -> list:
        """CLUSTER FAILOVER [FORCE|TAKEOVER] on a replica.

        ``mode`` "" (default: coordinated with the primary through MFSTART, no write
        lost), "force" (no coordination: an election at once, even if the primary is
        down) or "takeover" (no election: a new configEpoch without agreement).
        Raises :class:`ClusterError` with Redis's error text.
        """
        self._admin(now)
        mode = mode.lower()
        if mode not in ("", "default", "force", "takeover"):
            raise ClusterError("ERR syntax error")
        takeover = mode == "takeover"
        force = takeover or mode == "force"
        me = self.myself
        primary = self.nodes.get(me.primary_id or "")
        if me.is_primary:
            raise ClusterError("ERR You should send CLUSTER FAILOVER to a replica")
        if primary is None:
            raise ClusterError("ERR I'm a replica but my master is unknown to me")
        if not force and (FAIL in primary.flags or not primary.link):
            raise ClusterError("ERR Master is down or failed, please use CLUSTER FAILOVER FORCE")
        self._reset_manual_failover()
        self.mf_end = self.now + MF_TIMEOUT_MS
        if not force:
            self._mf_step(MF_WAIT_OFFSET)
        if takeover:
            self._log("warning", "Taking over the master (user request).")
            self._bump_config_epoch_without_consensus()
            self._failover_replace_your_primary()
        elif force:
            self._log("warning", "Forced failover user request accepted.")
            self._mf_step(MF_CAN_START)
        else:
            self._log("warning", "Manual failover user request accepted.")
            self._send(primary, Message(MsgType.MFSTART, self._header()))
        return self._finish()

    # ------------------------------------------------------------------ links

    def on_link_up(self, node_id: str, now: int) -> list:
        """clusterLinkConnectHandler: the outbound link to ``node_id`` is
        connected; queue a PING on it at once (a MEET if we are introducing
        ourselves), keeping the time of a ping still unanswered."""
        self._begin(now)
        node = self.nodes.get(node_id)
        if node is not None and node.link and node is not self.myself:
            node.link_up = True
            old_ping_sent = node.ping_sent
            self._send_ping(node, MsgType.MEET if MEET in node.flags else MsgType.PING)
            if old_ping_sent:
                node.ping_sent = old_ping_sent
            # cleared after the first packet: a refused MEET is sent again on
            # the next connection
            self._del_flags(node, MEET)
        return self._finish()

    def on_link_down(self, node_id: str, now: int) -> list:
        """The outbound link to ``node_id`` failed to connect or broke."""
        self._begin(now)
        node = self.nodes.get(node_id)
        if node is not None and node.link:
            self._unlink(node)
            self._log("verbose", f"Connection with Node {node_id} at {node.ip}:{node.cport} lost")
            if node.ping_sent == 0 and not node.in_handshake:
                # Failure detection counts a lost link as a ping unanswered
                # since now (Redis claims one only when connect() fails at
                # once): a node killed with no ping in flight is flagged PFAIL
                # node-timeout after its link broke, not after the next ping
                # its pong's age calls for (up to node-timeout/2 later). A
                # PONG on the next link clears it as it clears any ping.
                node.ping_sent = self.now
                self._pinged.add(node)
        return self._finish()

    # ------------------------------------------------------------------ messages in

    def on_timer(self, now: int) -> list:
        """The time of a :class:`Wake` came: what clusterBeforeSleep does when
        an election is due (a replica whose start time has come asks for votes
        now, not at the next tick)."""
        self._begin(now)
        self._wake_at = 0  # (the transport keeps one wake-up: this was it)
        self._todo_failover = self.myself.is_replica
        return self._finish()

    def on_message(self, link: LinkInfo, msg: Message, now: int) -> list:
        """clusterProcessPacket."""
        self._begin(now)
        self.stats_received[msg.type] += 1
        f = self.drop_filter
        if f is not None and (f == msg.type or f == -2):
            self._log("warning", "Dropping packet that matches debug drop filter")
            if self.close_link_on_drop:
                self._out.append(A.CloseLink(link))
            return self._finish()
        self._process(link, msg)
        return self._finish()

    def _process(self, link: LinkInfo, msg: Message) -> None:
        h = msg.header
        t = msg.type
        me = self.myself
        sender = self.nodes.get(h.sender)
        if sender is not None:
            sender.data_received = self.now
        if sender is not None and sender is not me and not sender.in_handshake:
            # currentEpoch is the max seen. (A sane sender's configEpoch never
            # exceeds its currentEpoch; taking the max keeps that true here too.)
            seen = max(h.current_epoch, h.config_epoch)
            if seen > self.current_epoch:
                self._set_current_epoch(seen)
            if h.config_epoch > sender.config_epoch:
                self._set_config_epoch(sender, h.config_epoch)
                self._save(fsync=True)
            sender.repl_offset = h.offset
            sender.repl_offset_time = self.now
            if (
                self.mf_end and me.is_replica and me.primary_id == sender.id
                and h.mflags & MF_PAUSED and self.mf_primary_offset == -1
            ):
                # My primary paused its clients for my manual failover: its final offset.
                self.mf_primary_offset = h.offset
                self._mf_step(MF_CATCHING_UP)
                self._todo_manual_failover = True
                self._log("warning", f"Received replication offset for paused master manual failover: {h.offset}")

        if t in (MsgType.PING, MsgType.MEET):
            if (t == MsgType.MEET or me.ip == "") and self.announce_ip is None and link.inbound:
                if link.local_ip and link.local_ip != me.ip:
                    me.ip = link.local_ip
                    self._log("warning", f"IP address for this node updated to {me.ip}")
                    self._save()
            if sender is None and t == MsgType.MEET:
                node = Node(
                    random_node_id(self.rng),
                    ip=h.ip or link.peer_ip,
                    port=h.port,
                    cport=h.cport,
                    flags=_frozen_flags((HANDSHAKE,)),
                    ctime=self.now,
                )
                self._add_node(node)
                self._save()
                self._process_gossip(None, msg)
            pong = self._ping_message(MsgType.PONG)
            self._out.append(A.Reply(link, pong))
            self._count_sent(pong)

        if t in PING_LIKE:
            if not self._process_ping_like(link, msg, sender):
                return
        elif t == MsgType.FAIL:
            self._on_fail(sender, msg.body)
        elif t == MsgType.PUBLISH or t == MsgType.PUBLISHSHARD:
            if sender is not None:
                assert isinstance(msg.body, PublishBody)
                self._out.append(A.Deliver(msg.body.channel, msg.body.message,
                                           t == MsgType.PUBLISHSHARD))
        elif t == MsgType.UPDATE:
            self._on_update(sender, msg.body)
        else:
            self._on_failover_message(link, msg, sender)

    def _process_ping_like(self, link: LinkInfo, msg: Message, sender: Node | None) -> bool:
        h = msg.header
        t = msg.type
        me = self.myself

        link_node: Node | None = None
        if not link.inbound:
            link_node = self.nodes.get(link.node_id) if link.node_id else None
            if link_node is None or link_node is me:
                return False  # a link of a node we no longer know
            if link_node.in_handshake:
                if sender is not None:
                    # We already know this node: maybe a new address, then drop the duplicate.
                    self._log("verbose", f"Handshake: we already know node {sender.id}, updating the address if needed.")
                    if sender is not me:
                        self._update_address(sender, h.ip or link.peer_ip or link_node.ip, h)
                    self._del_node(link_node)
                    self._save(update=True)
                    return False
                # The handshake is over: the node gets its real name. (As in Redis,
                # the rest of this first PONG is processed with no known sender.)
                self._rename_node(link_node, h.sender)
                self._set_flags(link_node, (link_node.flags - {HANDSHAKE}) | _role_flags(h.flags))
                self._log("debug", f"Handshake with node {link_node.id} completed.")
                self._save()
            elif link_node.id != h.sender:
                # Someone else answers at this address now.
                self._log("debug", f"PONG contains mismatching sender ID {h.sender}, expected {link_node.id}")
                self._add_flags(link_node, NOADDR)
                self._attn.add(link_node)
                link_node.ip, link_node.port, link_node.cport = "", 0, 0
                link_node._gossip = None
                if link_node.link:
                    self._unlink(link_node)
                    self._out.append(A.Disconnect(link_node.id))
                self._save()
                return False

        if sender is not None and sender is not me:
            if (NOFAILOVER in sender.flags) != (NOFAILOVER in h.flags):
                if NOFAILOVER in h.flags:
                    self._add_flags(sender, NOFAILOVER)
                else:
                    self._del_flags(sender, NOFAILOVER)

        if (
            sender is not None and sender is not me and t == MsgType.PING
            and not sender.in_handshake and link.inbound
        ):
            if self._update_address(sender, h.ip or link.peer_ip, h):
                self._save(update=True)

        if link_node is not None and t == MsgType.PONG:
            link_node.pong_received = self.now
            link_node.ping_sent = 0
            if PFAIL in link_node.flags:
                self._del_flags(link_node, PFAIL)
                self._save(update=True)
            elif FAIL in link_node.flags:
                self._clear_node_failure_if_needed(link_node)

        if sender is None or sender is me:
            return True

        # Role switch: primary <-> replica, or a new primary.
        if h.primary_id is None:
            self._set_node_as_primary(sender)
        else:
            primary = self.nodes.get(h.primary_id)
            if sender.is_primary:
                self._del_node_slots(sender)
                self._set_flags(sender, (sender.flags - {MASTER, MIGRATE_TO}) | {SLAVE})
                self._save(update=True)
            if not sender.flags & _ROLE_FLAGS:
                self._add_flags(sender, SLAVE)
            if primary is not None and sender.primary_id != primary.id and primary is not sender:
                sender.primary_id = primary.id
                self._census_node(sender)
                self._add_flags(primary, MIGRATE_TO)  # clusterNodeAddSlave
                self._save()

        # Slots.
        sender_primary = sender if sender.is_primary else self.nodes.get(sender.primary_id or "")
        dirty = sender_primary is not None and sender_primary.slot_bitmap() != h.slots
        if dirty and sender.is_primary:
            self._update_slots_config_with(sender, h.config_epoch, h.slots)
        if dirty and sender_primary is not None:
            # The sender claims slots we know a newer owner of: tell it.
            for s in slots_added(h.slots, sender_primary.slot_bitmap()):
                owner_id = self.slot_owner[s]
                if owner_id is None or owner_id == sender.id:
                    continue
                owner = self.nodes[owner_id]
                if owner.config_epoch > h.config_epoch:
                    self._log("verbose", f"Node {sender.id} has old slots configuration, sending an UPDATE message about {owner.id}")
                    if sender.link:
                        self._send(sender, Message(
                            MsgType.UPDATE, self._header(),
                            body=UpdateBody(owner.id, owner.config_epoch, owner.slot_bitmap()),
                        ))
                    break
        if sender_primary is not None and sender_primary is not me:
            # Keep the header's bitmap when it is the one we hold: every view of
            # a primary then shares one 2 KB object (a simulated cluster holds a
            # view of each primary per node), and the next message's comparison
            # is an identity check.
            bm = sender_primary._bitmap
            if bm is not h.slots and bm == h.slots:
                sender_primary._bitmap = h.slots
                if self.share_slot_sets:
                    sender_primary.slots = _shared_slot_set(h.slots, sender_primary.slots)

        if me.is_primary and sender.is_primary and h.config_epoch == me.config_epoch:
            self._handle_config_epoch_collision(sender)

        self._process_gossip(sender, msg)
        # clusterProcessPingExt: the hostname rides on every ping; none sent
        # means the sender has none (any more).
        if sender.hostname != h.hostname:
            sender.hostname = h.hostname
            self._save()
        sender.pport = h.pport
        return True

    def _update_address(self, node: Node, ip: str, h: Header) -> bool:
        """nodeUpdateAddressIfNeeded."""
        if node.ip == ip and node.port == h.port and node.cport == h.cport:
            return False
        node.ip, node.port, node.cport = ip, h.port, h.cport
        node._gossip = None
        if node.link:
            self._unlink(node)
            self._out.append(A.Disconnect(node.id))
        self._del_flags(node, NOADDR)
        self._log("warning", f"Address updated for node {node.id}, now {ip}:{h.port}")
        me = self.myself
        if me.is_replica and me.primary_id == node.id:
            self._out.append(A.Replicate(node.id))
        return True

    def _process_gossip(self, sender: Node | None, msg: Message) -> None:
        """clusterProcessGossipSection."""
        me = self.myself
        nodes = self.nodes
        reporter = sender is not None and sender.is_primary
        sender_id = sender.id if sender is not None else ""
        healthy = FAILURE_FLAGS.isdisjoint
        known_healthy = _HEALTHY
        latest = self.now + GOSSIP_PONG_FUTURE_TOLERANCE_MS
        get = nodes.get
        # (index_ids) by_num[num] is nodes.get(the id numbered num) for every
        # num below its length; an entry from the wire has NO_ID_NUMBER
        by_num = self._by_num
        numbered = len(by_num)
        for g in msg.gossip:
            num = g.num
            node = by_num[num] if num < numbered else get(g.node_id)
            if node is None:
                if (
                    sender is not None
                    and NOADDR not in g.flags
                    and not self._blacklisted(g.node_id)
                ):
                    # Trust a node a known node tells us about: add it with its real id.
                    self._add_node(Node(
                        g.node_id, ip=g.ip, port=g.port, cport=g.cport,
                        flags=_frozen_flags(_role_flags(g.flags) | (g.flags & {NOFAILOVER})), ctime=self.now,
                    ))
                    self._save()
                continue
            if reporter and node is not me and sender is not node:
                if g.flags in known_healthy or healthy(g.flags):
                    if node.failure_reports and node.failure_reports.pop(sender_id, None) is not None:
                        self._log("verbose", f"Node {sender_id} reported node {node.id} is back online.")
                else:
                    reports = node.failure_reports
                    if reports is None:
                        reports = node.failure_reports = {}
                    if sender_id not in reports:
                        self._log("verbose", f"Node {sender_id} reported node {node.id} as not reachable.")
                    reports[sender_id] = self.now
                    self._mark_node_as_failing_if_needed(node)
            if node.flags in known_healthy or healthy(node.flags):
                if (
                    node.ping_sent == 0
                    and (not node.failure_reports or self.count_failure_reports_of(node) == 0)
                    and node.pong_received < g.pong_received <= latest
                ):
                    node.pong_received = g.pong_received
            elif (
                node is not me
                and NOADDR not in g.flags
                and not g.flags & FAILURE_FLAGS
                and (node.ip != g.ip or node.port != g.port or node.cport != g.cport)
            ):
                if node.link:
                    self._unlink(node)
                    self._out.append(A.Disconnect(node.id))
                node.ip, node.port, node.cport = g.ip, g.port, g.cport
                node._gossip = None
                self._del_flags(node, NOADDR)

    def _on_fail(self, sender: Node | None, body) -> None:
        assert isinstance(body, FailBody)
        if sender is None:
            return
        failing = self.nodes.get(body.node_id)
        if failing is not None and not failing.flags & {FAIL, MYSELF}:
            self._log("notice", f"FAIL message received from {sender.id} about {failing.id}")
            self._add_flags(failing, FAIL)
            failing.fail_time = self.now
            self._del_flags(failing, PFAIL)
            self._save(update=True)
            self._my_primary_failed(failing)

    def _on_update(self, sender: Node | None, body) -> None:
        assert isinstance(body, UpdateBody)
        if sender is None:
            return
        n = self.nodes.get(body.node_id)
        if n is None or n.config_epoch >= body.config_epoch:
            return
        if n.is_replica:
            self._set_node_as_primary(n)
        if body.config_epoch > self.current_epoch:  # cannot happen from a sane sender
            self._set_current_epoch(body.config_epoch)
        self._set_config_epoch(n, body.config_epoch)
        self._save(fsync=True)
        self._update_slots_config_with(n, body.config_epoch, body.slots)

    def _on_failover_message(self, link: LinkInfo, msg: Message, sender: Node | None) -> None:
        """FAILOVER_AUTH_REQUEST / FAILOVER_AUTH_ACK / MFSTART."""
        if sender is None:
            return
        t = msg.type
        me = self.myself
        if t == MsgType.FAILOVER_AUTH_REQUEST:
            if (me.is_replica and sender.is_replica and sender.primary_id == me.primary_id
                    and not msg.header.mflags & MF_FORCEACK):
                self._sibling_election(sender)
            self._send_failover_auth_if_needed(sender, msg.header)
        elif t == MsgType.FAILOVER_AUTH_ACK:
            # A vote counts if it comes from a primary serving slots, in this election.
            if sender.is_primary and sender.slots and msg.header.current_epoch >= self.failover_auth_epoch:
                self.failover_auth_count += 1
                self._todo_failover = True
        elif t == MsgType.MFSTART:
            # only a primary serves one (Redis's comment says so, its code does not
            # check: a replica whose table says a node replicates it, in a loop
            # only a peer's bad claims make, would pause its clients)
            if sender.primary_id != me.id or sender.is_primary or not me.is_primary:
                return
            self._reset_manual_failover()
            self.mf_end = self.now + MF_TIMEOUT_MS
            self.mf_replica = sender.id
            self._mf_step(MF_SERVING)
            self._out.append(A.PauseClients(self.now + MF_TIMEOUT_MS * MF_PAUSE_MULT))
            self._log("warning", f"Manual failover requested by replica {sender.id}.")
            ping = self._ping_message(MsgType.PING)
            self._out.append(A.Reply(link, ping))
            self._count_sent(ping)

    def _sibling_election(self, sibling: Node) -> None:
        """A sibling asks for votes for our primary: if my own request has not gone
        out, it waits until that election is over (won: the sibling becomes my
        primary; lost: I try after it). Two siblings asking at once split the
        votes; on a loaded machine the rank delays alone do not keep them apart."""
        if self.mf_end or self.failover_auth_sent and self.now - self.failover_auth_time <= max(self.node_timeout * 2, 2000):
            return
        until = self.now + max(self.node_timeout * 2, 2000)
        if until <= self.sibling_election_until:
            return
        self.sibling_election_until = until
        if self.failover_auth_time and not self.failover_auth_sent and self.failover_auth_time < until:
            # after it, my own delay again (random part, failed-primary rank): the
            # replicas of two shards whose elections split cannot retry in step
            unit = self.election_delay_unit()
            self.failover_auth_time = (until + self.rng.randrange(unit)
                                       + self.failover_failed_primary_rank * unit)
            self._log("warning", f"Replica {sibling.id} asked for votes first: my election "
                                 f"waits until its own is over.")

    def _send_failover_auth_if_needed(self, node: Node, request: Header) -> None:
        """clusterSendFailoverAuthIfNeeded: vote for ``node`` if the rules allow."""
        me = self.myself
        primary = self.nodes.get(node.primary_id or "") if node.is_replica else None
        force_ack = bool(request.mflags & MF_FORCEACK)
        if me.is_replica or not me.slots:
            return
        if request.current_epoch < self.current_epoch:
            self._log("warning", f"Failover auth denied to {node.id}: reqEpoch ({request.current_epoch}) < curEpoch({self.current_epoch})")
            return
        if self.last_vote_epoch == self.current_epoch:
            self._log("warning", f"Failover auth denied to {node.id}: already voted for epoch {self.current_epoch}")
            return
        if node.is_primary or primary is None or (FAIL not in primary.flags and not force_ack):
            if node.is_primary:
                why = "it is a master node"
            elif primary is None:
                why = "I don't know its master"
            else:
                why = "its master is up"
            self._log("warning", f"Failover auth denied to {node.id}: {why}")
            return
        # Not twice for (replicas of) the same primary within 2 x node timeout: not
        # needed for safety, but it makes the base case more linear.
        if self.now - primary.voted_time < self.node_timeout * 2:
            wait = self.node_timeout * 2 - (self.now - primary.voted_time)
            self._log("warning", f"Failover auth denied to {node.id}: can't vote about this master before {wait} milliseconds")
            return
        # The claimed slots must not be served with a newer configEpoch than the request's.
        for s in slots_from_bitmap(request.slots):
            owner_id = self.slot_owner[s]
            if owner_id is None:
                continue
            owner = self.nodes[owner_id]
            if owner.config_epoch <= request.config_epoch:
                continue
            self._log("warning", f"Failover auth denied to {node.id}: slot {s} epoch ({owner.config_epoch}) > reqEpoch ({request.config_epoch})")
            return
        self.last_vote_epoch = self.current_epoch
        primary.voted_time = self.now
        self._save(fsync=True)  # the vote is on disk before the ACK leaves
        if node.link:
            self._send(node, Message(MsgType.FAILOVER_AUTH_ACK, self._header()))
        self._log("warning", f"Failover auth granted to {node.id} for epoch {self.current_epoch}")

    # ------------------------------------------------------------------ slots & roles

    def _update_slots_config_with(self, sender: Node, config_epoch: int, bitmap: bytes) -> None:
        """clusterUpdateSlotsConfigWith: a claim wins over an older configEpoch."""
        me = self.myself
        if sender is me:
            self._log("debug", "Discarding UPDATE message about myself.")
            return
        curprimary = me if me.is_primary else self.nodes.get(me.primary_id or "")
        new_primary: Node | None = None
        lost: list[int] = []
        sender_slots = slot_count(bitmap)
        # Only the slots the sender claims beyond what we know it owns can change
        # anything (clusterUpdateSlotsConfigWith skips the ones it already has),
        # and of those the ones it may take: unowned, or owned by a node with an
        # older configEpoch, and not being imported here (closed manually by the
        # operator).  Computed on whole bitmaps, owner by owner: a failover hands
        # thousands of slots over in one message, and a loop over each costs ms.
        added = int.from_bytes(bitmap, "little") & ~int.from_bytes(sender.slot_bitmap(), "little")
        if added and me.importing:
            added &= ~int.from_bytes(bitmap_from_slots(me.importing), "little")
        taken_mask = 0
        taken: list[int] | None = None
        if added and added.bit_count() <= 512:
            # a few slots (a node joining, a slot move): look each owner up
            # rather than building every primary's bitmap as an integer (and
            # the mask once, not a 2 KB integer per slot)
            nodes, owner_of = self.nodes, self.slot_owner
            candidates = slots_from_bitmap(added.to_bytes(BITMAP_BYTES, "little"))
            taken = [s for s in candidates
                     if (o := owner_of[s]) is None or nodes[o].config_epoch < config_epoch]
            if len(taken) == len(candidates):
                taken_mask = added
            elif taken:
                taken_mask = int.from_bytes(bitmap_from_slots(taken), "little")
        elif added:
            owned = 0
            for n in self.nodes.values():
                if n is sender or not n.slots:
                    continue
                mask = int.from_bytes(n.slot_bitmap(), "little")
                owned |= mask
                if n.config_epoch < config_epoch:
                    taken_mask |= added & mask
            taken_mask |= added & ~owned
        migrated_our = 0
        if taken_mask:
            mine = taken_mask & int.from_bytes(me.slot_bitmap(), "little")
            if mine:
                lost = slots_from_bitmap(mine.to_bytes(BITMAP_BYTES, "little"))
            if curprimary is not None:
                ours = taken_mask & int.from_bytes(curprimary.slot_bitmap(), "little")
                migrated_our = ours.bit_count()
                if migrated_our:
                    new_primary = sender
            if taken is None:
                taken = slots_from_bitmap(taken_mask.to_bytes(BITMAP_BYTES, "little"))
            owner_of = self.slot_owner
            self._unassign_slots([s for s in taken if owner_of[s] is not None])
            self._assign_slots(sender, taken)
            # no fsync (Redis asks for one here): a slot map learned from the
            # cluster is learned again after a crash; roles and epochs are fsynced
            self._save(update=True)
        if (
            new_primary is not None
            and curprimary is not None
            and not curprimary.slots
            and (self.allow_replica_migration or sender_slots == migrated_our)
        ):
            self._log("warning", f"Configuration change detected. Reconfiguring myself as a replica of {sender.id}")
            self._set_my_primary(sender)
            self._save(fsync=True, update=True)
        elif me.is_replica and me.primary_id in self.nodes and self.nodes[me.primary_id].primary_id:
            grand = self.nodes.get(self.nodes[me.primary_id].primary_id or "")
            if grand is not None and grand is not me and grand.is_primary:
                self._log("notice", f"I'm a sub-replica! Reconfiguring myself as a replica of {grand.id}")
                self._set_my_primary(grand)
                self._save(fsync=True, update=True)
        elif lost:
            self._out.append(A.DropSlotKeys(tuple(lost)))

    def _set_node_as_primary(self, n: Node) -> None:
        """clusterSetNodeAsMaster."""
        if n.is_primary:
            return
        if n.primary_id is not None and n is not self.myself:
            self._add_flags(n, MIGRATE_TO)
        self._set_flags(n, (n.flags - {SLAVE}) | {MASTER})
        n.primary_id = None
        self._census_node(n)
        if n is self.myself:
            self._out.append(A.Replicate(None))
            if self.election != ELECTION_IDLE:  # won, or made a primary by hand
                self._election_step(ELECTION_IDLE)
        self._save(update=True)

    def _set_my_primary(self, n: Node) -> None:
        """clusterSetMaster: myself becomes a replica of ``n``."""
        me = self.myself
        assert n is not me and not me.slots
        if me.is_primary:
            self._set_flags(me, (me.flags - {MASTER, MIGRATE_TO}) | {SLAVE})
            me.migrating.clear()
            me.importing.clear()
        if me.primary_id != n.id:
            # An election scheduled (not run) for the old primary is void: were the
            # new one to fail soon, its replicas must rank themselves afresh instead
            # of all starting at once on the stale schedule and splitting the votes.
            self.failover_auth_time = 0
            if self.election != ELECTION_IDLE:
                self._election_step(ELECTION_IDLE)
            self.sibling_election_until = 0
        me.primary_id = n.id
        self._census_node(me)
        self._add_flags(n, MIGRATE_TO)  # clusterNodeAddSlave
        self._replication_pending = False
        self._out.append(A.Replicate(n.id))
        self._reset_manual_failover()

    def _handle_config_epoch_collision(self, sender: Node) -> None:
        """clusterHandleConfigEpochCollision: the smaller node id takes a new epoch."""
        me = self.myself
        if sender.config_epoch != me.config_epoch or not sender.is_primary or not me.is_primary:
            return
        if sender.id <= me.id:
            return
        self._set_current_epoch(self.current_epoch + 1)
        self._set_config_epoch(me, self.current_epoch)
        self._save(fsync=True)
        self._log("verbose", f"WARNING: configEpoch collision with node {sender.id}. configEpoch set to {me.config_epoch}")

    # ------------------------------------------------------------------ failure detection

    def count_failure_reports_of(self, node: Node) -> int:
        """Valid failure reports (cleaning expired ones)."""
        if not node.failure_reports:
            return 0
        maxtime = self.node_timeout * FAIL_REPORT_VALIDITY_MULT
        expired = [k for k, t in node.failure_reports.items() if self.now - t > maxtime]
        for k in expired:
            del node.failure_reports[k]
        return len(node.failure_reports)

    def _mark_node_as_failing_if_needed(self, node: Node) -> None:
        needed = self.size // 2 + 1
        if PFAIL not in node.flags or FAIL in node.flags:
            return
        failures = self.count_failure_reports_of(node)
        if self.myself.is_primary:
            failures += 1
        if failures < needed:
            return
        self._log("notice", f"Marking node {node.id} as failing (quorum reached).")
        self._set_flags(node, (node.flags - {PFAIL}) | {FAIL})
        node.fail_time = self.now
        self._broadcast(Message(MsgType.FAIL, self._header(), body=FailBody(node.id)))
        self._save(update=True)
        self._my_primary_failed(node)

    def _my_primary_failed(self, node: Node) -> None:
        """A node just turned FAIL: if it is my primary, schedule the election
        before this call returns (clusterBeforeSleep; Redis 7.0 waits for its
        next cron tick, 50 ms later on average)."""
        if self.myself.is_replica and self.myself.primary_id == node.id:
            self._todo_failover = True

    def _clear_node_failure_if_needed(self, node: Node) -> None:
        assert FAIL in node.flags
        if node.is_replica or not node.slots:
            self._log("notice", f"Clear FAIL state for node {node.id}: {'replica' if node.is_replica else 'master without slots'} is reachable again.")
            self._del_flags(node, FAIL)
            self._save(update=True)
        if (
            node.is_primary and node.slots
            and self.now - node.fail_time > self.node_timeout * FAIL_UNDO_TIME_MULT
        ):
            self._log("notice", f"Clear FAIL state for node {node.id}: is reachable again and nobody is serving its slots after some time.")
            self._del_flags(node, FAIL)
            self._save(update=True)

    def _update_state(self) -> None:
        """clusterUpdateState: ok iff every slot is served and a majority is reachable."""
        now = self.now
        me = self.myself
        if self._first_update_time is None:
            self._first_update_time = now
        if me.is_primary and self.state == "fail" and now - self._first_update_time < WRITABLE_DELAY_MS:
            return
        new = "ok"
        # the slot owners' flags, counted by combination (_owner_flags)
        size = reachable = 0
        failing = False
        for f, k in self._owner_flags.items():
            if FAIL in f:
                failing = True
            if MASTER in f:  # (a slot owner without a role: not counted)
                size += k
                if FAILURE_FLAGS.isdisjoint(f):
                    reachable += k
        if self.require_full_coverage and (self._assigned < CLUSTER_SLOTS or failing):
            new = "fail"
        if self.check_every == 1:
            assert (size, reachable) == self._state_inputs(), "slot owners out of date"
        self.size = size
        if reachable < size // 2 + 1:
            new = "fail"
            self._among_minority_time = now
        if new != self.state:
            rejoin = min(max(self.node_timeout, MIN_REJOIN_DELAY_MS), MAX_REJOIN_DELAY_MS)
            if new == "ok" and me.is_primary and now - self._among_minority_time < rejoin:
                return
            self._log("notice" if new == "ok" else "warning", f"Cluster state changed: {new}")
            self.state = new

    def _state_inputs(self) -> tuple[int, int]:
        """What clusterUpdateState counts, from a scan of the table: primaries
        serving slots, and those of them neither PFAIL nor FAIL."""
        size = reachable = 0
        for n in self.nodes.values():
            if n.is_primary and n.slots:
                size += 1
                if not n.flags & FAILURE_FLAGS:
                    reachable += 1
        return size, reachable

    # ------------------------------------------------------------------ admin (CLUSTER ...)

    def _admin(self, now: int | None) -> None:
        self._begin(self.now if now is None else now)

    def meet(self, ip: str, port: int, cport: int | None = None, now: int | None = None) -> list:
        """CLUSTER MEET: start a handshake (the MEET goes out on the next tick)."""
        self._admin(now)
        if cport is None:
            cport = port + 10000
        try:
            norm = str(ipaddress.ip_address(ip))
        except ValueError:
            raise ClusterError(f"ERR Invalid node address specified: {ip}:{port}") from None
        if not (0 < port <= 65535 and 0 < cport <= 65535):
            raise ClusterError(f"ERR Invalid node address specified: {ip}:{port}")
        for n in self.nodes.values():
            if n.in_handshake and n.ip == norm and n.port == port and n.cport == cport:
                return self._finish()  # already in progress: still OK
        self._add_node(Node(
            random_node_id(self.rng), ip=norm, port=port, cport=cport,
            flags=_frozen_flags((HANDSHAKE, MEET)), ctime=self.now,
        ))
        self._save()
        return self._finish()

    def _known(self, node_id: str) -> Node:
        n = self.nodes.get(node_id)
        if n is None:
            raise ClusterError(f"ERR Unknown node {node_id}")
        return n

    def forget(self, node_id: str, now: int | None = None) -> list:
        """CLUSTER FORGET: drop the node and ban it from gossip for 60 s."""
        self._admin(now)
        n = self._known(node_id)
        me = self.myself
        if n is me:
            raise ClusterError("ERR I tried hard but I can't forget myself...")
        if me.is_replica and me.primary_id == n.id:
            raise ClusterError("ERR Can't forget my master!")
        self.blacklist[n.id] = self.now + BLACKLIST_TTL_MS
        self._del_node(n)
        self._save(update=True)
        return self._finish()

    def reset(self, hard: bool, now: int | None = None) -> list:
        """CLUSTER RESET SOFT|HARD (the caller refuses a primary holding keys)."""
        self._admin(now)
        me = self.myself
        if me.is_replica:
            self._set_node_as_primary(me)
            self._out.append(A.EmptyData())
        me.migrating.clear()
        me.importing.clear()
        self._reset_manual_failover()
        self._unassign_slots([s for s in range(CLUSTER_SLOTS) if self.slot_owner[s] is not None])
        for n in list(self.nodes.values()):
            if n is not me:
                self._del_node(n)
        if hard:
            self.current_epoch = 0  # the one place epochs go back: a new identity
            self.last_vote_epoch = 0
            me.config_epoch = 0
            old = me.id
            del self.nodes[old]
            self._unnumber(me)
            me.id = random_node_id(self.rng)
            self.nodes[me.id] = me
            if self.index_ids:
                self._number(me)
            self._ids_cache = None
            self._node_seq += 1
            me._seq = self._node_seq
            self._census_rebuild()
            self._log("notice", f"Node hard reset, now I'm {me.id}")
        self._save(fsync=True, update=True)
        return self._finish()

    @staticmethod
    def _check_slot(slot: object) -> int:
        if type(slot) is not int or not 0 <= slot < CLUSTER_SLOTS:
            raise ClusterError("ERR Invalid or out of range slot")
        return slot

    def _slots_arg(self, slots: Iterable[int], deleting: bool) -> list[int]:
        slots = [self._check_slot(s) for s in slots]
        seen: set[int] = set()
        for s in slots:
            if deleting and self.slot_owner[s] is None:
                raise ClusterError(f"ERR Slot {s} is already unassigned")
            if not deleting and self.slot_owner[s] is not None:
                raise ClusterError(f"ERR Slot {s} is already busy")
            if s in seen:
                raise ClusterError(f"ERR Slot {s} specified multiple times")
            seen.add(s)
        return slots

    def add_slots(self, slots: Iterable[int], now: int | None = None) -> list:
        """CLUSTER ADDSLOTS / ADDSLOTSRANGE."""
        self._admin(now)
        slots = self._slots_arg(slots, deleting=False)
        if slots and self.myself.is_replica:
            raise ClusterError("ERR Please use ADDSLOTS only with masters.")
        for s in slots:
            self.myself.importing.pop(s, None)
        self._assign_slots(self.myself, slots)
        self._save(update=True)
        return self._finish()

    def del_slots(self, slots: Iterable[int], now: int | None = None) -> list:
        """CLUSTER DELSLOTS / DELSLOTSRANGE."""
        self._admin(now)
        self._unassign_slots(self._slots_arg(slots, deleting=True))
        self._save(update=True)
        return self._finish()

    def flush_slots(self, db_empty: bool = True, now: int | None = None) -> list:
        """CLUSTER FLUSHSLOTS."""
        self._admin(now)
        if not db_empty:
            raise ClusterError("ERR DB must be empty to perform CLUSTER FLUSHSLOTS.")
        self._del_node_slots(self.myself)
        self._save(update=True)
        return self._finish()

    def _setslot_checks(self, slot: int) -> int:
        if self.myself.is_replica:
            raise ClusterError("ERR Please use SETSLOT only with masters.")
        return self._check_slot(slot)

    def _target(self, node_id: str, unknown: str) -> Node:
        n = self.nodes.get(node_id)
        if n is None:
            raise ClusterError(f"ERR {unknown} {node_id}")
        if n.is_replica:
            raise ClusterError("ERR Target node is not a master")
        return n

    def set_slot_migrating(self, slot: int, node_id: str, now: int | None = None) -> list:
        self._admin(now)
        slot = self._setslot_checks(slot)
        if self.slot_owner[slot] != self.myself.id:
            raise ClusterError(f"ERR I'm not the owner of hash slot {slot}")
        n = self._target(node_id, "I don't know about node")
        self.myself.migrating[slot] = n.id
        self._save(update=True)
        return self._finish()

    def set_slot_importing(self, slot: int, node_id: str, now: int | None = None) -> list:
        self._admin(now)
        slot = self._setslot_checks(slot)
        if self.slot_owner[slot] == self.myself.id:
            raise ClusterError(f"ERR I'm already the owner of hash slot {slot}")
        n = self._target(node_id, "I don't know about node")
        self.myself.importing[slot] = n.id
        self._save(update=True)
        return self._finish()

    def set_slot_stable(self, slot: int, now: int | None = None) -> list:
        self._admin(now)
        slot = self._setslot_checks(slot)
        self.myself.migrating.pop(slot, None)
        self.myself.importing.pop(slot, None)
        self._save(update=True)
        return self._finish()

    def set_slot_node(self, slot: int, node_id: str, keys_in_slot: int = 0, now: int | None = None) -> list:
        """CLUSTER SETSLOT <slot> NODE <id>; ``keys_in_slot`` is countKeysInSlot(slot)."""
        self._admin(now)
        slot = self._setslot_checks(slot)
        me = self.myself
        n = self._target(node_id, "Unknown node")
        if self.slot_owner[slot] == me.id and n is not me and keys_in_slot:
            raise ClusterError(
                f"ERR Can't assign hashslot {slot} to a different node while I still hold keys for this hash slot."
            )
        if keys_in_slot == 0:
            me.migrating.pop(slot, None)
        was_mine = self.slot_owner[slot] == me.id
        if self.slot_owner[slot] is not None:
            self._del_slot(slot)
        self._add_slot(n, slot)
        if was_mine and n is not me and not me.slots and self.allow_replica_migration:
            self._log("warning", f"Configuration change detected. Reconfiguring myself as a replica of {n.id}")
            self._set_my_primary(n)
            self._save(fsync=True, update=True)
        if n is me and slot in me.importing:
            if self._bump_config_epoch_without_consensus():
                self._log("warning", f"configEpoch updated after importing slot {slot}")
            del me.importing[slot]
            self._broadcast_pong()
        self._save(update=True)
        return self._finish()

    # ---------------------------------------------------------- atomic slot migration
    def claim_migrated_slots(self, slots: Iterable[int], now: int | None = None) -> list:
        """Atomic slot migration, target side: the source's data for ``slots``
        is here and its writes to them are held, so take them in one step: one
        configEpoch bump (so this claim wins over the source's on every node, as
        a failover's does), then a PONG to everyone. A bump is skipped only when
        my configEpoch is already above every other node's."""
        self._admin(now)
        me = self.myself
        if me.is_replica:
            raise ClusterError("ERR Please use SETSLOT only with masters.")
        slots = sorted(set(slots))
        owner = self.slot_owner
        taken = [s for s in slots if owner[s] != me.id]
        self._unassign_slots([s for s in taken if owner[s] is not None])
        self._assign_slots(me, taken)
        for s in slots:
            me.importing.pop(s, None)
        others = max([n.config_epoch for n in self.nodes.values() if n is not me] + [0])
        if me.config_epoch == 0 or me.config_epoch <= others:
            self._set_current_epoch(max(self.current_epoch, others) + 1)
            self._set_config_epoch(me, self.current_epoch)
            self._log("warning", f"configEpoch set to {me.config_epoch} after importing "
                                 f"{len(taken)} slots")
        self._broadcast_pong()
        self._save(fsync=True, update=True)
        return self._finish()

    def give_migrated_slots(self, slots: Iterable[int], node_id: str,
                            now: int | None = None) -> list:
        """Atomic slot migration, source side: ``node_id`` took ``slots`` (its
        bumped configEpoch wins them everywhere); stop serving them at once
        rather than at the next PONG, and drop their keys."""
        self._admin(now)
        me = self.myself
        n = self._target(node_id, "Unknown node")
        owner = self.slot_owner
        lost = [s for s in sorted(set(slots)) if owner[s] == me.id]
        if lost:
            self._unassign_slots(lost)
            self._assign_slots(n, lost)
            for s in lost:
                me.migrating.pop(s, None)
            self._out.append(A.DropSlotKeys(tuple(lost)))
            if not me.slots and self.allow_replica_migration:
                self._log("warning", f"Configuration change detected. Reconfiguring myself as a replica of {n.id}")
                self._set_my_primary(n)
                self._save(fsync=True, update=True)
        self._save(update=True)
        return self._finish()

    def _max_epoch(self) -> int:
        return max([self.current_epoch] + [n.config_epoch for n in self.nodes.values()])

    def _bump_config_epoch_without_consensus(self) -> bool:
        me = self.myself
        if me.config_epoch == 0 or me.config_epoch != self._max_epoch():
            self._set_current_epoch(self.current_epoch + 1)
            self._set_config_epoch(me, self.current_epoch)
            self._save(fsync=True)
            self._log("warning", f"New configEpoch set to {me.config_epoch}")
            return True
        return False

    def bump_epoch(self, now: int | None = None) -> tuple[tuple[str, int], list]:
        """CLUSTER BUMPEPOCH -> (("BUMPED"|"STILL", my config epoch), actions)."""
        self._admin(now)
        word = "BUMPED" if self._bump_config_epoch_without_consensus() else "STILL"
        return (word, self.myself.config_epoch), self._finish()

    def set_config_epoch(self, epoch: int, now: int | None = None) -> list:
        """CLUSTER SET-CONFIG-EPOCH."""
        self._admin(now)
        if epoch < 0:
            raise ClusterError(f"ERR Invalid config epoch specified: {epoch}")
        if len(self.nodes) > 1:
            raise ClusterError(
                "ERR The user can assign a config epoch only when the node does not know any other node."
            )
        if self.myself.config_epoch != 0:
            raise ClusterError("ERR Node config epoch is already non-zero")
        if self.current_epoch < epoch:
            self._set_current_epoch(epoch)
        self._set_config_epoch(self.myself, epoch)
        self._log("warning", f"configEpoch set to {epoch} via CLUSTER SET-CONFIG-EPOCH")
        self._save(update=True)
        return self._finish()

    def replicate(self, primary_id: str, db_empty: bool = True, now: int | None = None) -> list:
        """CLUSTER REPLICATE: record the new role; replication itself is the server's."""
        self._admin(now)
        n = self._known(primary_id)
        me = self.myself
        if n is me:
            raise ClusterError("ERR Can't replicate myself")
        if n.is_replica:
            raise ClusterError("ERR I can only replicate a master, not a replica.")
        if me.is_primary and (me.slots or not db_empty):
            raise ClusterError("ERR To set a master the node must be empty and without assigned slots.")
        self._set_my_primary(n)
        self._save(update=True)
        return self._finish()

    def count_failure_reports(self, node_id: str, now: int | None = None) -> int:
        """CLUSTER COUNT-FAILURE-REPORTS."""
        if now is not None:
            self.now = now
        return self.count_failure_reports_of(self._known(node_id))

    def publish(self, channel: bytes, message: bytes, now: int | None = None) -> list:
        """PUBLISH in cluster mode: send to every node."""
        self._admin(now)
        self._broadcast(Message(MsgType.PUBLISH, self._header(), body=PublishBody(channel, message)))
        return self._finish()

    def publish_shard(self, channel: bytes, message: bytes, now: int | None = None) -> list:
        """SPUBLISH in cluster mode: a PUBLISHSHARD to the other nodes of my shard
        (my primary, or myself, and its replicas: clusterGetNodesServingMySlots)."""
        self._admin(now)
        me = self.myself
        primary = me if me.is_primary else self.nodes.get(me.primary_id or "")
        if primary is not None:
            msg = Message(MsgType.PUBLISHSHARD, self._header(), body=PublishBody(channel, message))
            self._broadcast(msg, [primary, *self.replicas_of(primary.id)])
        return self._finish()
