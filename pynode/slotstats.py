"""Per-slot statistics: the counters behind CLUSTER SLOT-STATS (Valkey 8).

key-count is always there: it is the length of the slot's dict in the
keyspace (db 0, the only database of a cluster node).  cpu-usec,
network-bytes-in and network-bytes-out are counted only with
`cluster-slot-stats-enabled yes`, as Valkey's cluster_slot_stats.c counts them:

- a client command counts for its slot when all its keys (all the queued
  commands' keys, for EXEC; a script's declared keys) hash to one slot served
  here; keyless and cross-slot commands count for no slot, nor does a script
  with the allow-cross-slot-keys flag, nor a command refused before its slot
  was looked at (NOAUTH, NOPERM, CLUSTERDOWN, MOVED);
- cpu-usec: the time the dispatcher spent on the command (EXEC and scripts
  include the commands they ran; those are not counted again; a command queued
  by MULTI costs nothing until EXEC);
- network-bytes-in: the request's bytes (its multibulk encoding); EXEC adds
  the 15 bytes of its MULTI, whose slot was not known when it arrived;
- network-bytes-out: the reply's bytes, the replication stream the command
  produced times the number of replicas, and each SPUBLISH message delivered
  to a subscriber of this node (whether published here or received over the
  bus, whose copy to the other nodes of the shard is not counted);
- a blocked command that is served later adds the time and the reply of
  that service.

Counting costs nothing while it is off: the server then runs its own
dispatcher (`Server.execute`); `counting` turns on a dispatcher around it
(`SlotStats.execute`) that finds the command's slot before running it.
The counters of a slot start again when the slot gets a new owner (Valkey's
clusterSlotStatReset in clusterAddSlot), and all of them on CONFIG RESETSTAT.
"""

from __future__ import annotations

import heapq
from binascii import crc_hqx

from pynode.client import REPLY_ON
from pynode.commands.scripting import script_flags
from pynode.resp import encoded_len
from pynode.routing import command_key_args
from pynode.scripting.runner import ALLOW_CROSS_SLOT
from storage.slots import keyslot

SLOTS = 16384
_BLOCK = 256            # slots compared at once by sync_owners
MULTI_BYTES = 15                # *1\r\n$5\r\nmulti\r\n, counted with its EXEC
SELECT0_BYTES = 23              # *2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n (no slot's)
# refused before the slot was looked at, or for a slot served elsewhere: no slot's
REFUSED = (b"-CLUSTERDOWN ", b"-MOVED ", b"-NOAUTH ", b"-NOPERM ")
METRICS = ("key-count", "cpu-usec", "network-bytes-in", "network-bytes-out")


class SlotStats:
    """srv.slot_stats: one counter of each kind per slot."""

    def __init__(self, srv) -> None:
        self.srv = srv
        self.counting = False          # cluster-slot-stats-enabled yes, in cluster mode
        self.base = type(srv).execute  # the dispatcher this one goes around
        self.cpu = [0.0] * SLOTS       # seconds (reported as whole microseconds)
        self.net_in = [0] * SLOTS
        self.net_out = [0] * SLOTS
        self.owners: list | None = None   # slot owners when last looked at

    def configure(self, on: bool) -> None:
        self.counting = bool(on) and self.srv.cluster is not None

    def reset(self) -> None:
        """CONFIG RESETSTAT (clusterSlotStatResetAll)."""
        self.cpu = [0.0] * SLOTS
        self.net_in = [0] * SLOTS
        self.net_out = [0] * SLOTS

    def sync_owners(self) -> None:
        """Start the counters again for every slot whose owner changed since
        the last look (called when the node saves its nodes.conf, which every
        change of a slot's owner does, and before the counters are read)."""
        cl = self.srv.cluster
        if cl is None:
            return
        now = cl.state.slot_owner
        before = self.owners
        if before == now:
            return
        if before is not None:
            # compared a block at a time in C: a reshard changes one slot per
            # save, and a loop over every slot cost ~1 ms of each SETSLOT
            for base in range(0, SLOTS, _BLOCK):
                was, got = before[base:base + _BLOCK], now[base:base + _BLOCK]
                if was != got:
                    for i in range(len(was)):
                        if was[i] != got[i]:
                            s = base + i
                            self.cpu[s] = 0.0
                            self.net_in[s] = 0
                            self.net_out[s] = 0
        self.owners = list(now)

    # ------------------------------------------------------------ reading
    def my_slots(self) -> list[int]:
        """The slots of my shard (mine, or my primary's on a replica)."""
        st = self.srv.cluster.state
        me = st.myself
        owner = me.primary_id if me.is_replica and me.primary_id else st.myself_id
        return [s for s, o in enumerate(st.slot_owner) if o == owner]

    def value(self, slot: int, metric: str) -> int:
        if metric == "key-count":
            return self.srv.ks.db(0).count_in_slot(slot)
        if metric == "cpu-usec":
            return int(self.cpu[slot] * 1e6)
        if metric == "network-bytes-in":
            return self.net_in[slot]
        return self.net_out[slot]

    def entry(self, slot: int, enabled: bool) -> dict:
        """One slot's statistics, in Valkey's order (key-count only when off)."""
        return {m: self.value(slot, m) for m in (METRICS if enabled else METRICS[:1])}

    def column(self, metric: str) -> list:
        """`metric` of every slot, indexed by slot."""
        if metric == "key-count":
            return list(map(len, self.srv.ks.db(0).slots))
        if metric == "cpu-usec":
            return [int(x * 1e6) for x in self.cpu]      # the reported values (their ties)
        return self.net_in if metric == "network-bytes-in" else self.net_out

    def ordered(self, metric: str, limit: int, desc: bool = True) -> list[int]:
        """My shard's slots by `metric` (ties: lower slot first), at most `limit`."""
        slots = self.my_slots()
        col = self.column(metric)
        if desc:
            return heapq.nsmallest(limit, slots, key=lambda s: (-col[s], s))
        return heapq.nsmallest(limit, slots, key=lambda s: (col[s], s))

    # ------------------------------------------------------------ counting
    def slot_of(self, c, argv: list[bytes]):
        """(the command, the one slot of its keys), or None: no keys, keys of
        several slots, an unknown command or a wrong number of arguments."""
        srv = self.srv
        cmd = srv.dispatch.get(argv[0])
        if cmd is None:
            cmd = srv.dispatch.get(argv[0].lower())
            if cmd is None:
                return None
        if cmd.subs is not None:
            cmd = cmd.subs.get(argv[1].lower()) if len(argv) > 1 else None
            if cmd is None:
                return None
        arity = cmd.arity
        if arity != len(argv) and (arity > 0 or len(argv) < -arity):
            return None
        if cmd.key_pos:
            key = argv[cmd.key_pos]
            return cmd, keyslot(key) if 123 in key else crc_hqx(key, 0) & 16383
        if cmd.name == "exec":
            if not c.in_multi:
                return None
            batch = c.queued
        elif cmd.first_key <= 0 and not cmd.movablekeys:
            return None
        elif cmd.flags_of is not None and (script_flags(srv, cmd, argv) or 0) & ALLOW_CROSS_SLOT:
            return None       # a script allowed to cross slots counts for none
        else:
            batch = ((cmd, argv),)
        slot = -1
        for qcmd, qargv in batch:
            for key in command_key_args(qcmd, qargv):
                s = keyslot(key)
                if slot < 0:
                    slot = s
                elif s != slot:
                    return None
        return (cmd, slot) if slot >= 0 else None

    def mine(self, slot: int) -> bool:
        st = self.srv.cluster.state
        owner = st.slot_owner[slot]
        return owner is not None and (owner == st.myself_id or owner == st.myself.primary_id)

    def execute(self, c, argv: list[bytes]):
        """Server.execute, counting the command for its slot.  Its time is
        what the dispatcher adds to the command's own time (INFO
        commandstats): nothing for a command MULTI queues, everything an EXEC
        or a script ran for EXEC or EVAL."""
        srv = self.srv
        found = self.slot_of(c, argv)
        if found is None:
            return self.base(srv, c, argv)
        cmd, slot = found
        ns = cmd.ns
        repl = srv.replication
        offset, seldb = repl.offset, repl.seldb
        r = self.base(srv, c, argv)
        if r is not None and r[:1] == b"-" and r.startswith(REFUSED):
            return r              # routing refused it: no slot's (as getNodeByQuery)
        links = srv.migrations.links
        if links and c in links:
            return r              # an atomic import writing into a slot not mine yet
        self.cpu[slot] += max(0, cmd.ns - ns) / 1000      # (RESETSTAT zeroes ns)
        self.net_in[slot] += encoded_len(argv) + (MULTI_BYTES if cmd.name == "exec" else 0)
        if r is not None and c.reply_mode == REPLY_ON:
            self.net_out[slot] += len(r)
        if repl.offset != offset and repl.replicas:
            sent = repl.offset - offset
            if repl.seldb != seldb:
                sent -= SELECT0_BYTES
            self.net_out[slot] += sent * len(repl.replicas)
        return r

    def served(self, key: bytes, reply: bytes | None, dt: float) -> None:
        """A blocked client was served (its command ran again for `key`)."""
        slot = keyslot(key)
        if self.mine(slot):
            self.cpu[slot] += dt
            if reply is not None:
                self.net_out[slot] += len(reply)

    def shard_message(self, channel: bytes, nbytes: int) -> None:
        """SPUBLISH's message delivered to this node's subscribers."""
        slot = keyslot(channel)
        if self.mine(slot):
            self.net_out[slot] += nbytes
