"""CLUSTER subcommands (Redis 7.0 cluster.c clusterCommand), over srv.cluster.

The decisions (slots, epochs, node table) are the state machine's
(gossip.state.ClusterState); this module parses arguments in Redis's order,
checks what needs the keyspace (empty db, keys in a slot), and renders the
replies exactly as Redis 7.0 does: CLUSTER NODES / INFO are verbatim text,
CLUSTER SLOTS and SHARDS are the nested arrays / maps cluster clients parse.
"""

from __future__ import annotations

from gossip.nodes_conf import render_cluster_nodes, render_nodes_line
from gossip.node import FAIL
from gossip.state import ClusterError
from pynode.commands import CommandError, command, parse_int
from pynode.resp import OK, Map, Verbatim, bulk, encode, integer
from storage.slots import SLOTS, keyslot
from storage.slots import remember as remember_slot

DISABLED = "ERR This instance has cluster support disabled"
BAD_SLOT = "ERR Invalid or out of range slot"

_HELP = [
    "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ADDSLOTS <slot> [<slot> ...]",
    "    Assign slots to current node.",
    "ADDSLOTSRANGE <start slot> <end slot> [<start slot> <end slot> ...]",
    "    Assign slots which are between <start-slot> and <end-slot> to current node.",
    "BUMPEPOCH",
    "    Advance the cluster config epoch.",
    "COUNT-FAILURE-REPORTS <node-id>",
    "    Return number of failure reports for <node-id>.",
    "COUNTKEYSINSLOT <slot>",
    "    Return the number of keys in <slot>.",
    "DELSLOTS <slot> [<slot> ...]",
    "    Delete slots information from current node.",
    "DELSLOTSRANGE <start slot> <end slot> [<start slot> <end slot> ...]",
    "    Delete slots information which are between <start-slot> and <end-slot> from current node.",
    "FAILOVER [FORCE|TAKEOVER]",
    "    Promote current replica node to being a master.",
    "FORGET <node-id>",
    "    Remove a node from the cluster.",
    "GETKEYSINSLOT <slot> <count>",
    "    Return key names stored by current node in a slot.",
    "FLUSHSLOTS",
    "    Delete current node own slots information.",
    "INFO",
    "    Return information about the cluster.",
    "KEYSLOT <key>",
    "    Return the hash slot for <key>.",
    "MEET <ip> <port> [<bus-port>]",
    "    Connect nodes into a working cluster.",
    "MYID",
    "    Return the node id.",
    "NODES",
    "    Return cluster configuration seen by node. Output format:",
    "    <id> <ip:port> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
    "REPLICATE <node-id>",
    "    Configure current node as replica to <node-id>.",
    "RESET [HARD|SOFT]",
    "    Reset current node (default: soft).",
    "SET-CONFIG-EPOCH <epoch>",
    "    Set config epoch of current node.",
    "SETSLOT <slot> (IMPORTING <node-id>|MIGRATING <node-id>|STABLE|NODE <node-id>)",
    "    Set slot state.",
    "REPLICAS <node-id>",
    "    Return <node-id> replicas.",
    "SAVECONFIG",
    "    Force saving cluster configuration on disk.",
    "SLOTS",
    "    Return information about slots range mappings. Each range is made of:",
    "    start, end, master and replicas IP addresses, ports and ids",
    "SHARDS",
    "    Return information about slot range mappings and the nodes associated with them.",
    "LINKS",
    "    Return information about all network links between this node and its peers.",
    "    Output format is an array where each array element is a map containing attributes of a link",
    "HELP",
    "    Prints this help.",
]


def _cl(c):
    cl = c.srv.cluster
    if cl is None:
        raise CommandError(DISABLED)
    return cl


def _call(cl, method: str, *args, **kw):
    try:
        return cl.call(method, *args, **kw)
    except ClusterError as e:
        raise CommandError(str(e)) from None


def _slot(arg: bytes) -> int:
    """getSlotOrReply."""
    try:
        s = parse_int(arg)
    except CommandError:
        raise CommandError(BAD_SLOT) from None
    if not 0 <= s < SLOTS:
        raise CommandError(BAD_SLOT)
    return s


def _syntax_help(argv) -> CommandError:
    return CommandError("ERR unknown subcommand or wrong number of arguments for '%s'. "
                        "Try CLUSTER HELP." % argv[1].decode("utf-8", "replace")[:128])


def _db0_size(c) -> int:
    return c.srv.ks.db(0).size()


# ---------------------------------------------------------------- introspection
@command("cluster|help")
def cluster_help(c, argv):
    _cl(c)
    return b"*%d\r\n" % len(_HELP) + b"".join(b"+%s\r\n" % h.encode() for h in _HELP)


@command("cluster|info")
def cluster_info(c, argv):
    cl = _cl(c)
    text = "".join("%s:%s\r\n" % kv for kv in cl.info_fields())
    return encode(Verbatim(text.encode()), c.resp)


@command("cluster|myid")
def cluster_myid(c, argv):
    return bulk(_cl(c).state.myself_id.encode())


@command("cluster|nodes")
def cluster_nodes(c, argv):
    cl = _cl(c)
    return encode(Verbatim(render_cluster_nodes(cl.state, cl.use_pport(c)).encode()), c.resp)


@command("cluster|replicas", "cluster|slaves")
def cluster_replicas(c, argv):
    cl = _cl(c)
    st = cl.state
    nid = argv[2].decode("utf-8", "replace")
    n = st.nodes.get(nid)
    if n is None:
        raise CommandError("ERR Unknown node %s" % nid)
    if not n.is_primary:
        raise CommandError("ERR The specified node is not a master")
    lines = [render_nodes_line(r, st, cl.use_pport(c)).encode() for r in st.replicas_of(n.id)]
    return encode(lines, c.resp)


@command("cluster|count-failure-reports")
def cluster_count_failure_reports(c, argv):
    cl = _cl(c)
    return integer(_call(cl, "count_failure_reports", argv[2].decode("utf-8", "replace")))


@command("cluster|keyslot")
def cluster_keyslot(c, argv):
    _cl(c)
    return integer(keyslot(argv[2]))


@command("cluster|countkeysinslot")
def cluster_countkeysinslot(c, argv):
    _cl(c)
    s = parse_int(argv[2])
    if not 0 <= s < SLOTS:
        raise CommandError("ERR Invalid slot")
    return integer(c.srv.ks.db(0).count_in_slot(s))


@command("cluster|getkeysinslot")
def cluster_getkeysinslot(c, argv):
    _cl(c)
    s = parse_int(argv[2])
    n = parse_int(argv[3])
    if not 0 <= s < SLOTS or n < 0:
        raise CommandError("ERR Invalid slot or number of keys")
    keys = c.srv.ks.db(0).keys_in_slot(s, n)
    remember_slot(keys, s)
    return b"*%d\r\n" % len(keys) + b"".join(map(bulk, keys))


def _replica_available(st, n) -> bool:
    """isReplicaAvailable: not failed and replicating (a non-zero offset)."""
    if FAIL in n.flags:
        return False
    offset = st.repl_offset if n.is_myself else n.repl_offset
    return offset != 0


def _slots_node(n, etype: str, port: int) -> list:
    """addNodeToNodeReply: the preferred endpoint first (null for
    unknown-endpoint), and the other known endpoints in the metadata map."""
    if etype == "ip":
        first = n.ip.encode()
    elif etype == "hostname":
        first = (n.hostname or "?").encode()
    else:
        first = None
    meta = Map()
    if etype != "ip":
        meta[b"ip"] = n.ip.encode()
    if etype != "hostname" and n.hostname:
        meta[b"hostname"] = n.hostname.encode()
    return [first, port, n.id.encode(), meta]


@command("cluster|slots")
def cluster_slots(c, argv):
    cl = _cl(c)
    st = cl.state
    etype = cl.endpoint_type
    out = []
    for n in list(st.nodes.values()):
        if not n.is_primary or not n.slots:
            continue
        reps = [_slots_node(r, etype, cl.client_port(r, c))
                for r in st.replicas_of(n.id) if _replica_available(st, r)]
        me = _slots_node(n, etype, cl.client_port(n, c))
        for a, b in n.slot_ranges():
            out.append([a, b, me] + reps)
    return encode(out, c.resp)


def _shard_node(cl, n) -> Map:
    st = cl.state
    m = Map()
    m[b"id"] = n.id.encode()
    # with tls-cluster the node's port is its TLS port (addNodeDetailsToShardReply)
    plain, tls_port = (n.pport, n.port) if cl.tls else (n.port, 0)
    if plain:
        m[b"port"] = plain
    if tls_port:
        m[b"tls-port"] = tls_port
    m[b"ip"] = n.ip.encode()
    m[b"endpoint"] = cl.endpoint(n).encode()
    if n.hostname:
        m[b"hostname"] = n.hostname.encode()
    offset = st.repl_offset if n.is_myself else n.repl_offset
    m[b"role"] = b"replica" if n.is_replica else b"master"
    m[b"replication-offset"] = offset
    if FAIL in n.flags:
        health = b"fail"
    elif n.is_replica and offset == 0:
        health = b"loading"
    else:
        health = b"online"
    m[b"health"] = health
    return m


@command("cluster|shards")
def cluster_shards(c, argv):
    cl = _cl(c)
    st = cl.state
    out = []
    for n in list(st.nodes.values()):
        if not n.is_primary:
            continue
        flat = []
        for a, b in n.slot_ranges():
            flat += [a, b]
        nodes = [_shard_node(cl, n)]
        nodes += [_shard_node(cl, r) for r in st.replicas_of(n.id)]
        out.append(Map({b"slots": flat, b"nodes": nodes}))
    return encode(out, c.resp)


@command("cluster|links")
def cluster_links(c, argv):
    cl = _cl(c)
    rows = cl.transport.links() if cl.transport is not None else []
    out = []
    for direction, nid, ctime, events, alloc, used in rows:
        out.append(Map({b"direction": direction.encode(), b"node": nid.encode(),
                        b"create-time": ctime, b"events": events.encode(),
                        b"send-buffer-allocated": alloc, b"send-buffer-used": used}))
    return encode(out, c.resp)


@command("cluster|saveconfig")
def cluster_saveconfig(c, argv):
    cl = _cl(c)
    try:
        cl.save_config(fsync=True)
    except OSError as e:
        raise CommandError("ERR error saving the cluster node config: %s"
                           % (e.strerror or e)) from None
    return OK


# ---------------------------------------------------------------- membership
@command("cluster|meet")
def cluster_meet(c, argv):
    cl = _cl(c)
    if len(argv) > 5:
        raise _syntax_help(argv)
    ip = argv[2].decode("utf-8", "replace")
    try:
        port = parse_int(argv[3])
    except CommandError:
        raise CommandError("ERR Invalid TCP base port specified: %s"
                           % argv[3].decode("utf-8", "replace")) from None
    cport = None
    if len(argv) == 5:
        try:
            cport = parse_int(argv[4])
        except CommandError:
            raise CommandError("ERR Invalid TCP bus port specified: %s"
                               % argv[4].decode("utf-8", "replace")) from None
    _call(cl, "meet", ip, port, cport)
    return OK


@command("cluster|forget")
def cluster_forget(c, argv):
    _call(_cl(c), "forget", argv[2].decode("utf-8", "replace"))
    return OK


@command("cluster|replicate")
def cluster_replicate(c, argv):
    cl = _cl(c)
    _call(cl, "replicate", argv[2].decode("utf-8", "replace"), db_empty=_db0_size(c) == 0)
    return OK


@command("cluster|reset")
def cluster_reset(c, argv):
    cl = _cl(c)
    if len(argv) > 3:
        raise _syntax_help(argv)
    hard = False
    if len(argv) == 3:
        word = argv[2].lower()
        if word == b"hard":
            hard = True
        elif word != b"soft":
            raise CommandError("ERR syntax error")
    if cl.state.myself.is_primary and _db0_size(c) != 0:
        raise CommandError("ERR CLUSTER RESET can't be called with master nodes containing keys")
    _call(cl, "reset", hard)
    return OK


# ---------------------------------------------------------------- slots
@command("cluster|addslots")
def cluster_addslots(c, argv):
    cl = _cl(c)
    slots = [_slot(a) for a in argv[2:]]
    _call(cl, "add_slots", slots)
    return OK


@command("cluster|delslots")
def cluster_delslots(c, argv):
    cl = _cl(c)
    slots = [_slot(a) for a in argv[2:]]
    _call(cl, "del_slots", slots)
    return OK


def _ranges(c, argv) -> list[int]:
    if len(argv) % 2 == 1:
        raise CommandError("ERR wrong number of arguments for '%s' command"
                           % ("cluster|" + argv[1].decode("utf-8", "replace").lower()))
    pairs = []
    for i in range(2, len(argv), 2):
        a = _slot(argv[i])
        b = _slot(argv[i + 1])
        if a > b:
            raise CommandError("ERR start slot number %d is greater than end slot number %d"
                               % (a, b))
        pairs.append((a, b))
    slots: list[int] = []
    for a, b in pairs:
        slots.extend(range(a, b + 1))
    return slots


@command("cluster|addslotsrange")
def cluster_addslotsrange(c, argv):
    cl = _cl(c)
    _call(cl, "add_slots", _ranges(c, argv))
    return OK


@command("cluster|delslotsrange")
def cluster_delslotsrange(c, argv):
    cl = _cl(c)
    _call(cl, "del_slots", _ranges(c, argv))
    return OK


@command("cluster|flushslots")
def cluster_flushslots(c, argv):
    cl = _cl(c)
    _call(cl, "flush_slots", _db0_size(c) == 0)
    return OK


@command("cluster|setslot")
def cluster_setslot(c, argv):
    cl = _cl(c)
    if cl.state.myself.is_replica:
        raise CommandError("ERR Please use SETSLOT only with masters.")
    slot = _slot(argv[2])
    if c.srv.migrations.jobs and slot in c.srv.migrations.busy_slots():
        raise CommandError("ERR Slot %d is being moved by an atomic slot migration" % slot)
    action = argv[3].lower()
    n = len(argv)
    if action == b"migrating" and n == 5:
        _call(cl, "set_slot_migrating", slot, argv[4].decode("utf-8", "replace"))
    elif action == b"importing" and n == 5:
        _call(cl, "set_slot_importing", slot, argv[4].decode("utf-8", "replace"))
    elif action == b"stable" and n == 4:
        _call(cl, "set_slot_stable", slot)
    elif action == b"node" and n == 5:
        keys = c.srv.ks.db(0).count_in_slot(slot)
        _call(cl, "set_slot_node", slot, argv[4].decode("utf-8", "replace"), keys)
    else:
        raise CommandError("ERR Invalid CLUSTER SETSLOT action or number of arguments. "
                           "Try CLUSTER HELP")
    return OK


# ---------------------------------------------------------------- epochs
@command("cluster|bumpepoch")
def cluster_bumpepoch(c, argv):
    word, epoch = _call(_cl(c), "bump_epoch")
    return b"+%s %d\r\n" % (word.encode(), epoch)


@command("cluster|set-config-epoch")
def cluster_set_config_epoch(c, argv):
    cl = _cl(c)
    epoch = parse_int(argv[2])
    _call(cl, "set_config_epoch", epoch)
    return OK


# ---------------------------------------------------------------- failover
@command("cluster|failover")
def cluster_failover(c, argv):
    cl = _cl(c)
    if len(argv) > 3:
        raise CommandError("ERR syntax error")
    if len(argv) == 3 and argv[2].lower() not in (b"force", b"takeover"):
        raise CommandError("ERR syntax error")
    mode = argv[2].decode().lower() if len(argv) == 3 else ""
    _call(cl, "manual_failover", mode)
    return OK
