"""Cluster routing in the dispatcher, on a cluster formed by the simulator.

An in-process Server is given the live ClusterState of one simulated node, so
MOVED / CROSSSLOT / CLUSTERDOWN / ASK / READONLY are checked without sockets.
"""

from __future__ import annotations

import random
import types
from binascii import crc_hqx

import pytest

from gossip.sim import Simulator
from pynode.client import Client
from pynode.command_meta import COMMANDS as META
from pynode.commands import Command
from pynode.config import Config
from pynode.resp import encode
from pynode.routing import command_key_args
from pynode.server import Server
from storage import slots
from storage.slots import keyslot


class FakeTransport:
    def __init__(self):
        self.data = []

    def write(self, d):
        self.data.append(d)

    def get_extra_info(self, k):
        return None

    def close(self):
        pass

    def is_closing(self):
        return False


@pytest.fixture(scope="module")
def sim():
    s = Simulator(4, seed=7, delay=(1, 5))
    s.assign_slots_evenly([0, 1, 2])
    s.meet_all()
    assert s.run_until(lambda x: x.tables_converged() and x.slots_converged()
                       and x.states_ok(), 30_000)
    s.call(3, "replicate", s.node_id(0))
    assert s.run_until(lambda x: x.tables_converged() and x.states_ok(), 30_000)
    return s


def make_client(sim, i, cfg=None):
    srv = Server(cfg or Config())
    # the ClusterNode views routing uses: the ip endpoint, the node's own port
    srv.cluster = types.SimpleNamespace(state=sim.state(i), endpoint=lambda n: n.ip,
                                        client_port=lambda n, c: n.port)
    c = Client(srv)
    c.transport = FakeTransport()
    srv.on_connect(c)
    return srv, c


def run(c, *args):
    argv = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    return c.srv.execute(c, argv)


def key_for(sim, node_index, prefix="k"):
    """A key whose slot node_index serves."""
    owner = sim.node_id(node_index)
    state = sim.state(0)
    for i in range(100000):
        k = b"%s%d" % (prefix.encode(), i)
        if state.slot_owner[keyslot(k)] == owner:
            return k
    raise AssertionError("no key found")


def test_local_keys_are_served_and_others_moved(sim):
    srv, c = make_client(sim, 0)
    mine = key_for(sim, 0)
    assert run(c, "SET", mine, "v") == b"+OK\r\n"
    assert run(c, "GET", mine) == b"$1\r\nv\r\n"
    other = key_for(sim, 1)
    n1 = sim.nodes[1]
    want = b"-MOVED %d %s:%d\r\n" % (keyslot(other), n1.ip.encode(), n1.port)
    assert run(c, "GET", other) == want
    assert run(c, "SET", other, "v") == want
    assert run(c, "PING") == b"+PONG\r\n"          # no keys: never redirected
    assert srv.table[b"get"].rejected >= 1


def test_crossslot_and_hash_tags(sim):
    srv, c = make_client(sim, 0)
    a, b = key_for(sim, 0, "a"), key_for(sim, 0, "b")
    if keyslot(a) != keyslot(b):
        assert run(c, "MSET", a, 1, b, 2) == \
            b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
        assert run(c, "DEL", a, b) == \
            b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    tag = a.decode()
    assert run(c, "MSET", "{%s}x" % tag, 1, "{%s}y" % tag, 2) == b"+OK\r\n"
    assert run(c, "MGET", a, a) == b"*2\r\n$-1\r\n$-1\r\n"   # the same key twice is fine


def test_pipelined_multi_key_commands_route_as_one_by_one(sim):
    """A read of several commands goes through the dispatcher's fast path,
    which serves a multi-key command whose keys share a slot of ours itself
    and hands anything else to routing: the same replies and commandstats
    as the commands sent one at a time."""
    a, b = key_for(sim, 0, "a"), key_for(sim, 0, "b")
    other = key_for(sim, 1)
    tag = a.decode()
    cmds = [["MSET", "{%s}x" % tag, 1, "{%s}y" % tag, 2], ["MSET", a, 1, b, 2],
            ["MSET", other, 1], ["MSET", a, 3, a, 4], ["MGET", "{%s}x" % tag, "{%s}y" % tag],
            ["DEL", a, "{%s}z" % tag], ["MSET", a, 5, other, 6], ["GET", a], ["MGET", a, a]]
    argvs = [[x if isinstance(x, bytes) else str(x).encode() for x in cmd] for cmd in cmds]
    srv1, c1 = make_client(sim, 0)
    one_by_one = [srv1.execute(c1, argv) for argv in argvs]
    srv2, c2 = make_client(sim, 0)
    c2.data_received(b"".join(encode(argv) for argv in argvs))
    assert b"".join(c2.transport.data) == b"".join(one_by_one)
    assert one_by_one[0] == b"+OK\r\n" and one_by_one[2].startswith(b"-MOVED ")
    assert one_by_one[3] == b"+OK\r\n" and one_by_one[5] == b":1\r\n"
    if keyslot(a) != keyslot(b):
        assert one_by_one[1].startswith(b"-CROSSSLOT ")
    for name in (b"mset", b"mget", b"del", b"get"):
        s1, s2 = srv1.table[name], srv2.table[name]
        assert (s2.calls, s2.rejected, s2.failed) == (s1.calls, s1.rejected, s1.failed)


def test_unassigned_slot_and_cluster_down(sim):
    s = Simulator(3, seed=11, delay=(1, 5))
    s.assign_slots_evenly([0, 1, 2])
    s.meet_all()
    assert s.run_until(lambda x: x.tables_converged() and x.states_ok(), 30_000)
    key = key_for(s, 0)
    s.call(0, "del_slots", [keyslot(key)])
    srv, c = make_client(s, 0)
    assert run(c, "GET", key) == b"-CLUSTERDOWN Hash slot not served\r\n"
    # the state goes to fail once a slot is uncovered
    assert s.run_until(lambda x: x.state(0).state == "fail", 10_000)
    other = key_for(s, 0, "z")
    assert run(c, "GET", other) == b"-CLUSTERDOWN The cluster is down\r\n"
    cfg = Config()
    cfg.set("cluster-allow-reads-when-down", ["yes"])
    srv2, c2 = make_client(s, 0, cfg)
    assert run(c2, "GET", other) == b"$-1\r\n"
    assert run(c2, "SET", other, "v") == \
        b"-CLUSTERDOWN The cluster is down and only accepts read commands\r\n"


def test_transactions_are_checked_when_queued_and_at_exec(sim):
    srv, c = make_client(sim, 0)
    other = key_for(sim, 1)
    assert run(c, "MULTI") == b"+OK\r\n"
    assert run(c, "SET", other, "v").startswith(b"-MOVED ")
    assert run(c, "EXEC") == \
        b"-EXECABORT Transaction discarded because of previous errors.\r\n"
    a, b = key_for(sim, 0, "a"), key_for(sim, 0, "b")
    assert keyslot(a) != keyslot(b)
    assert run(c, "MULTI") == b"+OK\r\n"
    assert run(c, "SET", a, "1") == b"+QUEUED\r\n"
    assert run(c, "SET", b, "2") == b"+QUEUED\r\n"
    assert run(c, "EXEC") == b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    assert not c.in_multi
    assert run(c, "GET", a) == b"$-1\r\n"                     # nothing ran


def test_readonly_replica_serves_reads_of_its_primary(sim):
    srv, c = make_client(sim, 3)
    key = key_for(sim, 0)
    n0 = sim.nodes[0]
    moved = b"-MOVED %d %s:%d\r\n" % (keyslot(key), n0.ip.encode(), n0.port)
    assert run(c, "GET", key) == moved
    assert run(c, "READONLY") == b"+OK\r\n"
    assert run(c, "GET", key) == b"$-1\r\n"
    assert run(c, "SET", key, "v") == moved                   # writes still go to the primary
    other = key_for(sim, 1)
    assert run(c, "GET", other).startswith(b"-MOVED ")        # another shard's slot
    assert run(c, "READWRITE") == b"+OK\r\n"
    assert run(c, "GET", key) == moved


def test_ask_while_migrating_and_asking_while_importing(sim):
    s = Simulator(3, seed=5, delay=(1, 5))
    s.assign_slots_evenly([0, 1, 2])
    s.meet_all()
    assert s.run_until(lambda x: x.tables_converged() and x.states_ok(), 30_000)
    key = key_for(s, 0)
    slot = keyslot(key)
    srv0, c0 = make_client(s, 0)
    assert run(c0, "SET", key, "v") == b"+OK\r\n"
    s.call(0, "set_slot_migrating", slot, s.node_id(1))
    s.call(1, "set_slot_importing", slot, s.node_id(0))
    assert run(c0, "GET", key) == b"$1\r\nv\r\n"           # the key is still here
    missing = b"{%s}other" % key
    n1 = s.nodes[1]
    ask = b"-ASK %d %s:%d\r\n" % (slot, n1.ip.encode(), n1.port)
    assert run(c0, "GET", missing) == ask
    assert run(c0, "SET", missing, "v") == ask                # new keys go to the target
    srv1, c1 = make_client(s, 1)
    assert run(c1, "GET", missing).startswith(b"-MOVED %d " % slot)
    assert run(c1, "ASKING") == b"+OK\r\n"
    assert run(c1, "GET", missing) == b"$-1\r\n"
    assert run(c1, "GET", missing).startswith(b"-MOVED ")    # ASKING is for one command
    assert run(c1, "ASKING") == b"+OK\r\n"
    assert run(c1, "MGET", missing, b"{%s}third" % key) == \
        b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n"


def test_cluster_commands_refused_without_cluster_mode():
    srv = Server(Config())
    c = Client(srv)
    c.transport = FakeTransport()
    srv.on_connect(c)
    for cmd in ("READONLY", "READWRITE", "ASKING"):
        assert run(c, cmd) == b"-ERR This instance has cluster support disabled\r\n"


def test_key_arguments_of_movable_commands():
    zu = Command("zunionstore", None, META["zunionstore"])
    argv = [b"ZUNIONSTORE", b"dst", b"2", b"a", b"b", b"WEIGHTS", b"1", b"2"]
    assert command_key_args(zu, argv) == [b"dst", b"a", b"b"]
    ev = Command("eval", None, META["eval"])
    assert command_key_args(ev, [b"EVAL", b"return 1", b"1", b"k1", b"arg"]) == [b"k1"]
    mset = Command("mset", None, META["mset"])
    assert command_key_args(mset, [b"MSET", b"a", b"1", b"b", b"2"]) == [b"a", b"b"]


def test_keyslot_and_its_recent_keys():
    """keyslot as Redis's keyHashSlot (the first '{', the next '}', a tag of
    at least one byte), asked twice per key (found, then from the dict of
    recent keys) over more keys than the dict holds; the dict stays
    bounded and keeps no long key."""
    def reference(k: bytes) -> int:
        s = k.find(b"{")
        if s >= 0:
            e = k.find(b"}", s + 1)
            if e > s + 1:
                k = k[s + 1:e]
        return crc_hqx(k, 0) & 16383

    assert keyslot(b"foo") == 12182
    assert keyslot(b"{user1000}.following") == keyslot(b"{user1000}.followers")
    assert keyslot(b"foo{}{bar}") == crc_hqx(b"foo{}{bar}", 0) & 16383
    assert keyslot(b"foo{{bar}}zap") == crc_hqx(b"{bar", 0) & 16383
    rng = random.Random(7)
    for _ in range(3 * slots.RECENT_MAX):
        k = bytes(rng.choice(b"{}ab") for _ in range(rng.randint(0, 9)))
        if rng.random() < 0.05:
            k += b"x" * slots.RECENT_KEY_MAX
        want = reference(k)
        assert keyslot(k) == want and keyslot(bytes(bytearray(k))) == want, k
        assert len(slots._recent) <= slots.RECENT_MAX
    assert all(len(k) <= slots.RECENT_KEY_MAX for k in slots._recent)


def test_getkeysinslot_keys_are_remembered_with_their_slot():
    """The keys CLUSTER GETKEYSINSLOT lists are kept with their slot for the
    MIGRATE that sends them back; a batch larger than half the dict of
    recent keys, and long keys, are not kept."""
    g, h = keyslot(b"g"), keyslot(b"h")
    slots._recent.clear()
    keys = [b"{g}%d" % i for i in range(100)] + [b"{g}" + b"x" * slots.RECENT_KEY_MAX]
    slots.remember(keys, g)
    assert slots._recent == dict.fromkeys(keys[:100], g)
    slots.remember([b"k%d" % i for i in range(slots.RECENT_MAX - 50)], 0)
    assert len(slots._recent) == 100                   # too many to keep
    half = slots.RECENT_MAX // 2
    slots.remember([b"{h}%d" % i for i in range(half)], h)
    assert len(slots._recent) == 100 + half
    slots.remember([b"{h}x%d" % i for i in range(half)], h)
    assert slots._recent == {b"{h}x%d" % i: h for i in range(half)}     # emptied first


def test_migrate_of_known_keys_routes_as_key_by_key(sim):
    """MIGRATE ... KEYS of keys whose slot the cache knows (GETKEYSINSLOT
    listed them) is routed without hashing each, with the same answers:
    all in one slot of ours (served: NOKEY here), one unknown key of another
    slot among them or two known slots (CROSSSLOT), the same key twice, a
    slot of another node (MOVED)."""
    srv, c = make_client(sim, 0)
    a, b = key_for(sim, 0, "a"), key_for(sim, 0, "b")
    other = key_for(sim, 1)
    mine = [b"{%s}%d" % (a, i) for i in range(20)]
    theirs = [b"{%s}%d" % (other, i) for i in range(20)]
    slots._recent.clear()
    slots.remember(mine, keyslot(a))
    slots.remember(theirs, keyslot(other))
    head = ["MIGRATE", "127.0.0.1", "1", "", 0, 100, "KEYS"]
    crossslot = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    n1 = sim.nodes[1]
    assert run(c, *head, *mine) == b"+NOKEY\r\n"
    assert run(c, *head, *mine, mine[0]) == b"+NOKEY\r\n"
    assert run(c, *head, *mine[:5], b, *mine[5:]) == (
        crossslot if keyslot(b) != keyslot(a) else b"+NOKEY\r\n")
    assert run(c, *head, *mine, *theirs) == crossslot
    assert run(c, *head, *theirs) == b"-MOVED %d %s:%d\r\n" % (keyslot(other), n1.ip.encode(),
                                                               n1.port)
    assert run(c, *head, mine[0], *theirs) == crossslot
