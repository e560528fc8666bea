"""Scripts and functions in cluster mode, against a redis-server 7.0 cluster
of the same shape: declared keys route like any command (MOVED, CROSSSLOT,
ASK during a migration), undeclared keys must be local and in one slot,
flags decide where a script may run (no-cluster, no-writes on READONLY
replicas), and a write script sent to a replica is redirected.

Both clusters get the same requests, sent to the node with the same role
(the owner of a slot, another primary, the owner's replica); replies are
compared byte for byte with node addresses replaced by their role."""

from __future__ import annotations

import pytest

from tests.cluster_helpers import Cluster, key_for_slot
from tests.compare import Conn

SLOT_A, SLOT_B = 100, 200          # both in the first primary's range (0-5460)
SLOT_FAR = 15000                   # the third primary's
KA, KB, KFAR = key_for_slot(SLOT_A), key_for_slot(SLOT_B), key_for_slot(SLOT_FAR)
KA2 = KA + "x"                     # same slot as KA


def roles(cluster: Cluster) -> dict:
    """role -> port: owner (of SLOT_A), other (primary of SLOT_FAR), replica
    (of the owner)."""
    owner = cluster.owner_of(SLOT_A)
    nodes = cluster.live_node().nodes()
    owner_id = next(n["id"] for n in nodes if n["port"] == owner)
    replica = next(n["port"] for n in nodes if n["master"] == owner_id)
    return {"owner": owner, "other": cluster.owner_of(SLOT_FAR), "replica": replica}


@pytest.fixture(scope="module")
def clusters():
    made = []
    try:
        for server in ("pynode", "redis"):
            made.append(Cluster(primaries=3, replicas=1, server=server).up())
        for c in made:
            c.wait_replicas_synced()
        yield [(c, roles(c)) for c in made]
    finally:
        for c in made:
            c.cleanup()


def run(cluster_roles, steps) -> list:
    """Run [(role, readonly, argv)] on one cluster; replies with every
    node address replaced by its role."""
    cluster, r = cluster_roles
    names = {("127.0.0.1:%d" % p).encode(): role.encode() for role, p in r.items()}
    conns = {}
    out = []
    try:
        for role, readonly, argv in steps:
            key = (role, readonly)
            if key not in conns:
                conns[key] = Conn(r[role])
                if readonly:
                    conns[key].call("READONLY")
            reply = conns[key].call(*argv)
            for addr, name in names.items():
                reply = reply.replace(addr, name)
            out.append(reply)
    finally:
        for c in conns.values():
            c.close()
    return out


def compare(clusters, steps):
    got = [run(cr, steps) for cr in clusters]
    diffs = [(s, a, b) for s, a, b in zip(steps, got[0], got[1]) if a != b]
    assert not diffs, "\n".join("%r\n  pynode: %r\n  redis:  %r" % d for d in diffs)
    return got[0]


SET_SCRIPT = "return redis.call('set', KEYS[1], ARGV[1])"
GET_SCRIPT = "return redis.call('get', KEYS[1])"


def test_declared_keys_route_like_commands(clusters):
    replies = compare(clusters, [
        ("owner", False, ("EVAL", SET_SCRIPT, 1, KA, "v")),
        ("other", False, ("EVAL", SET_SCRIPT, 1, KA, "v")),
        ("owner", False, ("EVAL", "return 1", 2, KA, KB)),
        ("owner", False, ("EVAL", "return 1", 2, KA, KFAR)),
        ("owner", False, ("EVAL", GET_SCRIPT, 2, KA, KA2)),
        ("owner", False, ("EVAL", "return 1", 0)),
        ("other", False, ("EVAL", "return 1", 0)),
        ("owner", False, ("EVALSHA", "a" * 40, 1, KFAR)),
        ("owner", False, ("EVAL", "return 1", -1, KA)),
    ])
    assert replies[0] == b"+OK\r\n"
    assert replies[1].startswith(b"-MOVED %d owner" % SLOT_A)
    assert replies[2].startswith(b"-CROSSSLOT")


def test_undeclared_keys_must_be_local_and_in_one_slot(clusters):
    compare(clusters, [
        ("owner", False, ("SET", KA, "1")),
        ("owner", False, ("EVAL", "return redis.call('get', '%s')" % KA, 0)),
        ("owner", False, ("EVAL", "return redis.call('get', '%s')" % KFAR, 0)),
        ("owner", False, ("EVAL", "return redis.pcall('get', '%s')" % KFAR, 0)),
        ("owner", False, ("EVAL", "redis.call('get', KEYS[1]) "
                                  "return redis.call('get', '%s')" % KB, 1, KA)),
        ("owner", False, ("EVAL", "redis.call('get', '%s') "
                                  "return redis.call('get', '%s')" % (KA, KB), 0)),
        ("owner", False, ("EVAL", "#!lua flags=allow-cross-slot-keys\n"
                                  "redis.call('set', '%s', 1) "
                                  "return redis.call('get', '%s')" % (KB, KA), 1, KA)),
        ("owner", False, ("EVAL", "return redis.call('mget', '%s', '%s')" % (KA, KB), 0)),
        ("owner", False, ("EVAL", "#!lua flags=no-cluster\nreturn 1", 0)),
        ("owner", False, ("EVAL", "#!lua flags=allow-cross-slot-keys\n"
                                  "return redis.call('get', '%s')" % KFAR, 1, KA)),
    ])


def test_functions_in_cluster(clusters):
    lib = ("#!lua name=cl\n"
           "redis.register_function('cl_set', function(k, a) "
           "return redis.call('set', k[1], a[1]) end)\n"
           "redis.register_function{function_name='cl_get', callback=function(k) "
           "return redis.call('get', k[1]) end, flags={'no-writes'}}\n"
           "redis.register_function{function_name='cl_nc', callback=function() "
           "return 1 end, flags={'no-cluster'}}")
    steps = [(role, False, ("FUNCTION", "LOAD", "REPLACE", lib))
             for role in ("owner", "other", "replica")]
    # a replica takes FUNCTION LOAD only from its primary: load there first
    steps = steps[:2]
    steps += [
        ("owner", False, ("FCALL", "cl_set", 1, KA, "fv")),
        ("other", False, ("FCALL", "cl_set", 1, KA, "fv")),
        ("owner", False, ("FCALL", "cl_set", 2, KA, KFAR, "fv")),
        ("owner", False, ("FCALL", "cl_nc", 0)),
        ("owner", False, ("WAIT", 1, 5000)),
        # on the replica: reads with READONLY are served, writes are redirected
        ("replica", True, ("FCALL_RO", "cl_get", 1, KA)),
        ("replica", True, ("FCALL", "cl_get", 1, KA)),
        ("replica", True, ("FCALL", "cl_set", 1, KA, "x")),
        ("replica", True, ("EVAL_RO", GET_SCRIPT, 1, KA)),
        ("replica", True, ("EVAL", "#!lua flags=no-writes\n" + GET_SCRIPT, 1, KA)),
        ("replica", True, ("EVAL", "#!lua\n" + SET_SCRIPT, 1, KA, "x")),
        ("replica", True, ("EVAL", GET_SCRIPT, 1, KA)),
        ("replica", True, ("EVAL", SET_SCRIPT, 1, KA, "x")),
        ("replica", False, ("EVAL_RO", GET_SCRIPT, 1, KA)),
        ("replica", False, ("FCALL_RO", "cl_get", 1, KA)),
    ]
    replies = compare(clusters, steps)
    assert b"$2\r\nfv\r\n" in replies


def test_migrating_slot_asks_and_tryagain(clusters):
    """With SLOT_B marked migrating to the other primary, a script on keys
    that are gone is sent there with ASK; some here, some gone: TRYAGAIN."""
    for cluster, r in clusters:
        ids = {n["port"]: n["id"] for n in cluster.live_node().nodes()}
        cluster.node_by_port(r["other"]).call("CLUSTER", "SETSLOT", SLOT_B, "IMPORTING",
                                              ids[r["owner"]])
        cluster.node_by_port(r["owner"]).call("CLUSTER", "SETSLOT", SLOT_B, "MIGRATING",
                                              ids[r["other"]])
    try:
        compare(clusters, [
            ("owner", False, ("SET", KB, "here")),
            ("owner", False, ("EVAL", GET_SCRIPT, 1, KB)),
            ("owner", False, ("EVAL", GET_SCRIPT, 1, KB + "gone")),
            ("owner", False, ("EVAL", "return 1", 2, KB, KB + "gone")),
            ("other", False, ("EVAL", GET_SCRIPT, 1, KB + "gone")),
        ])
    finally:
        for cluster, r in clusters:
            for role in ("owner", "other"):
                cluster.node_by_port(r[role]).call("CLUSTER", "SETSLOT", SLOT_B, "STABLE")


def test_add_node_copies_the_functions(clusters):
    """`redis-cli --cluster add-node` gives the new node the cluster's
    libraries (FUNCTION DUMP from an existing node, FUNCTION RESTORE on the
    new one), as it does with redis-server."""
    lib = ("#!lua name=spread\nredis.register_function{function_name='spread_f', "
           "callback=function() return 'here' end, flags={'no-writes'}}")
    outs = []
    for cluster, r in clusters:
        for role in ("owner", "other"):
            cluster.node_by_port(r[role]).call("FUNCTION", "LOAD", "REPLACE", lib)
        others = [p for p in cluster.primary_ports() if p not in (r["owner"], r["other"])]
        cluster.node_by_port(others[0]).call("FUNCTION", "LOAD", "REPLACE", lib)
        new = cluster.add_node()
        res = cluster.cli("--cluster", "add-node", "127.0.0.1:%d" % new.port,
                          "127.0.0.1:%d" % r["owner"])
        assert res.returncode == 0, res.stdout + res.stderr
        outs.append(new.call("FCALL_RO", "spread_f", 0))
        cluster.wait_agree()
        res = cluster.cli("--cluster", "del-node", "127.0.0.1:%d" % r["owner"],
                          new.call("CLUSTER", "MYID"))
        assert res.returncode == 0, res.stdout + res.stderr
        cluster.remove_node(new.port)
    assert outs == ["here", "here"]
