"""The node table entry: what one node knows about one node of the cluster.

Flags are a frozenset of names (one shared object per combination: gossip.state
changes them by replacing the set). The names Redis prints in CLUSTER NODES / nodes.conf are
rendered by :mod:`gossip.nodes_conf` (``pfail`` is printed as ``fail?``); ``meet``
and ``migrate_to`` are internal and never printed.
"""

from __future__ import annotations

import functools
import random
import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gossip.bitmap import bitmap_from_slots, ranges_from_bitmap

if TYPE_CHECKING:
    from gossip.codec import GossipEntry

NODE_ID_LEN = 40

MYSELF = "myself"
MASTER = "master"
SLAVE = "slave"
PFAIL = "pfail"
FAIL = "fail"
HANDSHAKE = "handshake"
NOADDR = "noaddr"
MEET = "meet"
MIGRATE_TO = "migrate_to"
NOFAILOVER = "nofailover"

#: Every flag name, in Redis's bit order (bit i = 1 << i on the wire).
FLAG_NAMES = (MYSELF, MASTER, SLAVE, PFAIL, FAIL, HANDSHAKE, NOADDR, MEET, MIGRATE_TO, NOFAILOVER)
FLAG_BITS = {name: 1 << i for i, name in enumerate(FLAG_NAMES)}
# Redis's CLUSTER_NODE_* values, for reference: MASTER 1, SLAVE 2, PFAIL 4, FAIL 8,
# MYSELF 16 ... Our order differs; the bits only matter inside our own protocol.

FAILURE_FLAGS = frozenset((PFAIL, FAIL))

_ID_RE = re.compile("[0-9a-z]{%d}" % NODE_ID_LEN)


def is_valid_node_id(name: object) -> bool:
    """Redis's verifyClusterNodeId: 40 characters of ``[0-9a-z]``.  (One C-speed
    regex match: every bus message carries several ids to check.)"""
    return isinstance(name, str) and _ID_RE.fullmatch(name) is not None


def random_node_id(rng: random.Random) -> str:
    """A fresh 40-hex-character node id (getRandomHexChars)."""
    return f"{rng.getrandbits(160):040x}"


#: a node id without a number (see id_number)
NO_ID_NUMBER = sys.maxsize

_ID_NUMBERS: dict[str, int] = {}


def id_number(node_id: str) -> int:
    """A small number for ``node_id``, the same in every table of the process
    (``ClusterState(index_ids=True)``: a simulation's tables index their nodes
    by it, and the gossip entries built from them carry it)."""
    n = _ID_NUMBERS.get(node_id)
    if n is None:
        n = _ID_NUMBERS[node_id] = len(_ID_NUMBERS)
    return n


def flags_to_bits(flags) -> int:
    bits = 0
    for f in flags:
        bits |= FLAG_BITS.get(f, 0)
    return bits


@functools.lru_cache(maxsize=512)
def bits_to_flags(bits: int) -> frozenset[str]:
    """The flag names set in ``bits`` (cached: a cluster uses a handful of values)."""
    return frozenset(name for name, bit in FLAG_BITS.items() if bits & bit)


@dataclass(eq=False, slots=True)
class Node:
    """One entry of the node table.

    ``slots`` and the cached bitmap are owned by :class:`gossip.state.ClusterState`:
    change slot ownership only through it (it keeps ``slot_owner`` consistent).
    ``link`` is true while an outbound bus link to the node exists (connecting or
    connected), as Redis's ``node->link != NULL``.
    ``migrating`` / ``importing`` (slot -> node id) are only used on myself.
    """

    id: str
    # The fields read for every gossip entry (building a section, reading one)
    # come first: in a large simulated cluster those reads wait on memory, and
    # adjacent fields share cache lines.
    #: immutable, one object per combination (ClusterState._set_flags changes them)
    flags: frozenset[str] = frozenset()
    ping_sent: int = 0
    pong_received: int = 0
    #: reporter node id -> time (ms) of its latest PFAIL/FAIL report about this
    #: node; None while there is none (no dict per node of every table)
    failure_reports: dict[str, int] | None = None
    link: bool = False
    #: a set, or a frozenset shared between tables (ClusterState(share_slot_sets=True))
    slots: set[int] | frozenset[int] = field(default_factory=set)
    #: the last gossip entry made for this node (gossip.state reuses it while
    #: the fields it carries are unchanged)
    _gossip: GossipEntry | None = field(default=None, repr=False)
    #: the ping_sent and pong_received values that entry was last checked
    #: with (equal: the entry still fits, without comparing it field by
    #: field); -1 before the first check
    _gossip_ping: int = field(default=-1, repr=False)
    _gossip_pong: int = field(default=-1, repr=False)
    ip: str = ""
    port: int = 0
    cport: int = 0
    pport: int = 0          # plaintext client port when port is the TLS one (tls-cluster)
    primary_id: str | None = None
    data_received: int = 0
    config_epoch: int = 0
    ctime: int = 0
    fail_time: int = 0
    #: the outbound link is connected (on_link_up), not only connecting
    link_up: bool = False
    link_ctime: int = 0
    repl_offset: int = 0
    repl_offset_time: int = 0
    #: when myself last voted for a replica of this (failed) primary (Redis's voted_time)
    voted_time: int = 0
    #: since when this primary is orphaned (no working replica), 0 if not (replica migration)
    orphaned_time: int = 0
    hostname: str = ""
    migrating: dict[int, str] = field(default_factory=dict)
    importing: dict[int, str] = field(default_factory=dict)
    _bitmap: bytes | None = field(default=None, repr=False)
    _ranges: tuple | None = field(default=None, repr=False)
    #: id_number(id) while the table indexes its nodes by it, else NO_ID_NUMBER
    _num: int = field(default=NO_ID_NUMBER, repr=False)
    #: position in the node table's order (gossip.state: the order its cron
    #: visits nodes in; a rename moves a node to the end, as in the dict)
    _seq: int = field(default=0, repr=False)
    #: gossip.state's replica census: the primary id this node counts as a
    #: working replica of (None: it counts for none), and its own entry as a
    #: primary there: (working replicas, orphaned) or None (not counted)
    _ok_for: str | None = field(default=None, repr=False)
    _census: tuple[int, bool] | None = field(default=None, repr=False)

    @property
    def is_primary(self) -> bool:
        return MASTER in self.flags

    @property
    def is_replica(self) -> bool:
        return SLAVE in self.flags

    @property
    def is_myself(self) -> bool:
        return MYSELF in self.flags

    @property
    def in_handshake(self) -> bool:
        return HANDSHAKE in self.flags

    @property
    def has_address(self) -> bool:
        """Whether we may connect to it (no NOADDR flag, and an address at all)."""
        return NOADDR not in self.flags and self.ip != "" and self.cport > 0

    @property
    def link_state(self) -> str:
        return "connected" if (self.link or MYSELF in self.flags) else "disconnected"

    def slot_bitmap(self) -> bytes:
        if self._bitmap is None:
            self._bitmap = bitmap_from_slots(self.slots)
        return self._bitmap

    def slot_ranges(self) -> tuple[tuple[int, int], ...]:
        """Owned slots as ascending inclusive (start, end) ranges."""
        if self._ranges is None:
            self._ranges = tuple(ranges_from_bitmap(self.slot_bitmap()))
        return self._ranges

    def _slots_changed(self, added=(), removed=()) -> None:
        """Forget the cached ranges; patch the cached bitmap for the slots
        added / removed (a reshard changes one slot at a time: rebuilding the
        bitmap from thousands of slots for each would dominate)."""
        self._ranges = None
        if self._bitmap is None:
            return
        if not added and not removed:
            self._bitmap = None
            return
        b = bytearray(self._bitmap)
        for s in added:
            b[s >> 3] |= 1 << (s & 7)
        for s in removed:
            b[s >> 3] &= ~(1 << (s & 7)) & 0xFF
        self._bitmap = bytes(b)
