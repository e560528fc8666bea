"""Cluster request routing: Redis 7.0's getNodeByQuery + clusterRedirectClient.

For every command in cluster mode the dispatcher asks `route()` whether this
node may serve it.  Shard channels (SSUBSCRIBE, SUNSUBSCRIBE, SPUBLISH) are
routed as keys; a replica serves them for its primary's slots without
READONLY, and cluster-allow-pubsubshard-when-down decides them while the
cluster is down.  The answer is None (serve it here) or the error to send:
MOVED / ASK to the node that serves the slot, CROSSSLOT, TRYAGAIN, or
CLUSTERDOWN.  Keys are found by the legacy first/last/step triple when the
command has fixed key positions and by the key specs otherwise.
"""

from __future__ import annotations

from binascii import crc_hqx

from pynode.keyspecs import command_keys
from storage.slots import keyslot, known_slot

CROSSSLOT = "CROSSSLOT Keys in request don't hash to the same slot"
TRYAGAIN = "TRYAGAIN Multiple keys request during rehashing of slot"
DOWN = "CLUSTERDOWN The cluster is down"
DOWN_RO = "CLUSTERDOWN The cluster is down and only accepts read commands"
UNBOUND = "CLUSTERDOWN Hash slot not served"


def command_key_args(cmd, argv: list[bytes]) -> list[bytes]:
    """The key arguments of one command."""
    if cmd.movablekeys:
        return [argv[i] for i, _ in command_keys(cmd, argv)]
    first = cmd.first_key
    if first <= 0 or first >= len(argv):
        return []
    last = cmd.last_key
    if last < 0:
        last += len(argv)
    return argv[first:last + 1:cmd.step]


def route(srv, c, cmd, argv: list[bytes]) -> str | None:
    """None when this node serves the command, else the error reply text."""
    pos = cmd.key_pos
    if pos and not c.asking:
        # the common case: one key, a slot that is mine and stable, cluster ok
        state = srv.cluster.state
        me = state.myself
        key = argv[pos]
        slot = keyslot(key) if 123 in key else crc_hqx(key, 0) & 16383
        if state.state == "ok":
            if state.slot_owner[slot] == me.id and not me.migrating:
                return None
            if cmd.asking and slot in me.importing:
                return None           # RESTORE-ASKING of a slot being imported
    elif cmd.first_key <= 0 and not cmd.movablekeys and cmd.name != "exec" and not c.asking:
        return None                      # no keys: served anywhere
    return _route(srv, c, cmd, argv)


def _route(srv, c, cmd, argv: list[bytes]) -> str | None:
    if srv.migrations.links and c in srv.migrations.links:
        return None          # an atomic migration's link writes into slots it imports
    asking = c.asking
    if asking and not c.in_multi and cmd.name != "asking":
        c.asking = False        # ASKING lasts for one command (or one MULTI)
    if cmd.name == "exec":
        if not c.in_multi:
            return None
        batch = c.queued
        is_write = any(q.write for q, _ in batch)
        pubsub = any(q.pubsub for q, _ in batch)
    else:
        if not cmd.movablekeys and cmd.first_key <= 0:
            return None
        batch = ((cmd, argv),)
        is_write = cmd.write
        pubsub = cmd.pubsub     # only the sharded ones have keys (channels)
    state = srv.cluster.state
    myself = state.myself_id
    first = None
    slot = -1
    owner = None
    multiple = False
    migrating = importing = False
    keys: list[bytes] = []
    for mcmd, margv in batch:
        cmd_keys = command_key_args(mcmd, margv)
        # many keys of one slot the cache knows (MIGRATE of GETKEYSINSLOT's
        # keys): the first goes through the loop, the others need no hashing
        known = known_slot(cmd_keys) if len(cmd_keys) > 1 else None
        for key in (cmd_keys if known is None else cmd_keys[:1]):
            keys.append(key)
            s = keyslot(key)
            if first is None:
                first = key
                slot = s
                owner = state.slot_owner[s]
                if owner is None:
                    return UNBOUND
                if owner == myself and slot in state.migrating:
                    migrating = True
                elif slot in state.importing:
                    importing = True
            elif key != first:
                if s != slot:
                    return CROSSSLOT
                multiple = True
        if known is not None:
            rest = cmd_keys[1:]
            keys += rest
            if known != slot:
                return CROSSSLOT
            if rest.count(first) < len(rest):
                multiple = True
    if first is None:
        return None
    if state.state != "ok":
        if pubsub:
            if not srv.cfg.bool("cluster-allow-pubsubshard-when-down"):
                return DOWN
        elif not srv.cluster_reads_when_down:
            return DOWN
        elif is_write:
            return DOWN_RO
    if (migrating or importing) and cmd.name == "migrate":
        return None
    missing = 0
    if (migrating or (importing and multiple)) and not pubsub:   # channels are no keys
        exists = srv.ks.db(0).exists
        missing = sum(1 for k in keys if not exists(k))
    if migrating and missing:
        if missing < len(keys):
            return TRYAGAIN               # some keys are here, some already moved
        target = state.nodes.get(state.migrating[slot])
        if target is not None:
            return "ASK %d %s:%d" % (slot, srv.cluster.endpoint(target),
                                     srv.cluster.client_port(target, c))
    if importing and (asking or "asking" in cmd.flags):
        if multiple and missing:
            return TRYAGAIN
        return None
    if owner == myself:
        return None
    me = state.nodes[myself]
    if (c.readonly or pubsub) and not is_write and me.primary_id == owner:
        return None
    node = state.nodes[owner]
    return "MOVED %d %s:%d" % (slot, srv.cluster.endpoint(node), srv.cluster.client_port(node, c))
