"""Sharded pub/sub (SSUBSCRIBE, SUNSUBSCRIBE, SPUBLISH, PUBSUB SHARDCHANNELS /
SHARDNUMSUB) against redis-server 7.0.

- standalone: the same sessions on pynode and redis-server, every byte each
  connection receives compared, in RESP2 and RESP3 (subscribe context,
  counts, errors, MULTI, scripts, RESET, disconnection, CLIENT INFO, INFO);
- routing on an in-process node of a simulated cluster: MOVED, CROSSSLOT,
  replicas serving their primary's channels, CLUSTERDOWN rules;
- the bus state machine: PUBLISHSHARD goes to the nodes of the shard only,
  a slot leaving the shard drops its channels;
- a real 3+3 cluster of pynode and of redis-server: messages reach the
  shard's primary and replica and no other shard (the bus counters prove it),
  MOVED / CROSSSLOT texts, and a slot moved away unsubscribes its channels.
"""

from __future__ import annotations

import re
import socket
import time

import pytest

from gossip import actions as A
from gossip.codec import MsgType, PublishBody
from tests.cluster_helpers import Cluster
from tests.helpers import Proc, enc, wait_until
from tests.test_gossip_state import IN, T0, build, msg, nid, of
from tests.test_routing import make_client, run, sim  # noqa: F401 - sim is a fixture
from tests.test_routing import key_for
from storage.slots import keyslot


# ------------------------------------------------------------------ raw sessions
class Raw:
    """A raw connection that collects whatever the server sends."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)

    def send(self, *args) -> None:
        self.sock.sendall(enc(*args))

    def drain(self, quiet: float = 0.03, limit: float = 5.0) -> bytes:
        """Everything received: waits (bounded) for the first bytes, then
        until nothing more comes for `quiet` seconds (a server writes a
        command's replies and pushes at once, so the gap between them is 0)."""
        self.sock.settimeout(limit)
        try:
            out = self.sock.recv(1 << 16)
        except socket.timeout:
            return b""
        while out:
            self.sock.settimeout(quiet)
            try:
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                break
            if not data:
                break
            out += data
        return out

    def close(self) -> None:
        self.sock.close()


def session(port: int, steps, resp: int) -> list:
    """Run steps [(conn index, args)] on two connections; after each step,
    what every connection received."""
    conns = [Raw(port), Raw(port)]
    try:
        if resp == 3:
            for c in conns:
                c.send("HELLO", "3")
                c.drain()
        out = []
        for who, args in steps:
            conns[who].send(*args)
            got = conns[who].drain()
            other = conns[1 - who]
            other.sock.settimeout(0.02)
            try:
                extra = other.sock.recv(1 << 16)
            except socket.timeout:
                extra = b""
            if extra:
                extra += other.drain(quiet=0.05, limit=0.05)
            out.append((who, args, got, extra))
        return out
    finally:
        for c in conns:
            c.close()


@pytest.fixture(scope="module")
def servers():
    with Proc() as pyn, Proc(redis_server=True) as red:
        yield pyn, red


def _compare(servers, steps, resp):
    pyn, red = servers
    ours = session(pyn.port, steps, resp)
    theirs = session(red.port, steps, resp)
    for o, t in zip(ours, theirs):
        assert o == t, "RESP%d step %r:\npynode %r\nredis  %r" % (resp, o[1], o[2:], t[2:])
    return ours


A_, B_ = 0, 1
SESSION = [
    (A_, ("SSUBSCRIBE", "a", "b", "a")),
    (A_, ("GET", "k")),                        # RESP2: refused in the subscribed context
    (A_, ("PING",)),
    (A_, ("PING", "hi")),
    (B_, ("SPUBLISH", "a", "m1")),             # the subscriber gets an smessage
    (B_, ("PUBLISH", "a", "x")),               # plain channels are another namespace
    (B_, ("PUBSUB", "SHARDCHANNELS", "a*")),
    (B_, ("PUBSUB", "SHARDCHANNELS", "nomatch*")),
    (B_, ("PUBSUB", "SHARDNUMSUB", "a", "b", "c")),
    (B_, ("PUBSUB", "SHARDNUMSUB")),
    (B_, ("PUBSUB", "CHANNELS")),
    (B_, ("PUBSUB", "NUMSUB", "a")),
    (A_, ("SUBSCRIBE", "a")),                  # its count does not include shard channels
    (A_, ("PSUBSCRIBE", "*")),
    (B_, ("SPUBLISH", "a", "m2")),             # patterns never see shard messages
    (B_, ("PUBLISH", "a", "m3")),
    (A_, ("SUNSUBSCRIBE", "a", "zz")),
    (A_, ("SUNSUBSCRIBE",)),
    (A_, ("SUNSUBSCRIBE",)),                   # none left: [sunsubscribe, nil, 0]
    (A_, ("GET", "k")),                        # still subscribed to a channel
    (A_, ("UNSUBSCRIBE",)),
    (A_, ("PUNSUBSCRIBE",)),
    (A_, ("GET", "k")),
    (A_, ("SSUBSCRIBE", "self")),
    (A_, ("SPUBLISH", "self", "own")),         # RESP3: its own message, then the count
    (A_, ("UNSUBSCRIBE", "self")),             # shard channels stay
    (A_, ("GET", "k")),
    (A_, ("RESET",)),                          # leaves everything, silently
    (A_, ("GET", "k")),
    (B_, ("PUBSUB", "SHARDNUMSUB", "self")),
    (B_, ("MULTI",)),
    (B_, ("SSUBSCRIBE", "q")),
    (B_, ("SPUBLISH", "q", "z")),
    (B_, ("EXEC",)),                           # SSUBSCRIBE is refused inside EXEC
    (B_, ("PUBSUB", "SHARDNUMSUB", "q")),
    (B_, ("SSUBSCRIBE",)),
    (B_, ("SPUBLISH", "a")),
    (B_, ("SPUBLISH", "a", "b", "c")),
    (B_, ("PUBSUB", "SHARDCHANNELS", "a", "b")),
    (B_, ("PUBSUB", "SHARDNUMSUB",)),
    (B_, ("EVAL", "return redis.call('spublish', 'a', 'b')", "0")),
    (B_, ("EVAL", "return redis.call('ssubscribe', 'a')", "0")),
    (B_, ("EVAL", "return redis.pcall('sunsubscribe')", "0")),
    (B_, ("SUNSUBSCRIBE", "never")),           # not subscribed: a notice, count 0
    (B_, ("GET", "k")),                        # and no subscribed context
    (B_, ("sSubScribe", "Mixed", "mixed")),    # names are case-sensitive
    (A_, ("SPUBLISH", "Mixed", "v")),
    (A_, ("SPUBLISH", "mixed", "")),
]


@pytest.mark.parametrize("resp", [2, 3])
def test_session_is_byte_identical(servers, resp):
    got = _compare(servers, SESSION, resp)
    # the comparison is not empty-handed: the subscriber did get its messages
    joined = b"".join(g[2] + g[3] for g in got)
    assert b"smessage" in joined and b"sunsubscribe" in joined


def _field(text: str, name: str) -> str:
    return re.search(r"\b%s=(\S*)" % name, text).group(1)


@pytest.mark.parametrize("resp", [2, 3])
def test_client_info_info_and_disconnect(servers, resp):
    for srv in servers:
        sub = Raw(srv.port)
        if resp == 3:
            sub.send("HELLO", "3")
            sub.drain()
        sub.send("SSUBSCRIBE", "s1", "s2")
        sub.send("SUBSCRIBE", "c1")
        sub.drain()
        r = srv.client(decode_responses=True)
        line = [x for x in r.client_list() if x["cmd"] == "subscribe"][0]
        assert (line["flags"], line["sub"], line["psub"], line["ssub"]) == ("P", "1", "0", "2")
        assert int(r.info("stats")["pubsubshard_channels"]) == 2
        assert r.client_list(_type="pubsub")[0]["ssub"] == "2"
        if resp == 3:
            sub.send("CLIENT", "INFO")
            text = sub.drain().decode()
            assert (_field(text, "flags"), _field(text, "ssub")) == ("P", "2")
        sub.close()
        wait_until(lambda: r.execute_command("PUBSUB", "SHARDNUMSUB", "s1")[1] == 0,
                   timeout=5, what="shard channels dropped on disconnect")
        assert r.execute_command("PUBSUB", "SHARDCHANNELS") == []
        assert int(r.info("stats")["pubsubshard_channels"]) == 0
        r.close()


def test_standalone_spublish_reaches_replica_subscribers():
    """Without cluster mode SPUBLISH goes down the replication stream, as PUBLISH
    does in Redis (forceCommandPropagation), to the replicas' subscribers."""
    with Proc() as primary, Proc(["--replicaof", "127.0.0.1", "0"]) as replica:
        rr = replica.client()
        rr.execute_command("REPLICAOF", "127.0.0.1", str(primary.port))
        wait_until(lambda: rr.info("replication")["master_link_status"] == "up",
                   timeout=15, what="replica link up")
        sub = Raw(replica.port)
        sub.send("SSUBSCRIBE", "news")
        assert sub.drain() == b"*3\r\n$10\r\nssubscribe\r\n$4\r\nnews\r\n:1\r\n"
        assert primary.client().execute_command("SPUBLISH", "news", "hello") == 0
        assert sub.drain(limit=10) == b"*3\r\n$8\r\nsmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n"
        sub.close()
        rr.close()


# ------------------------------------------------------------------ routing (in process)
def test_channels_are_routed_like_keys(sim):  # noqa: F811
    srv, c = make_client(sim, 0)
    mine, other = key_for(sim, 0, "ch"), key_for(sim, 1, "ch")
    n1 = sim.nodes[1]
    moved = b"-MOVED %d %s:%d\r\n" % (keyslot(other), n1.ip.encode(), n1.port)
    assert run(c, "SSUBSCRIBE", other) == moved
    assert run(c, "SPUBLISH", other, "m") == moved
    assert run(c, "SUNSUBSCRIBE", other) == moved
    mine2 = key_for(sim, 0, "zz")
    assert keyslot(mine) != keyslot(mine2)
    assert run(c, "SSUBSCRIBE", mine, mine2) == \
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    assert not c.ssubs                                     # nothing was subscribed
    assert run(c, "SSUBSCRIBE", mine, mine) == (
        b"*3\r\n$10\r\nssubscribe\r\n$%d\r\n%s\r\n:1\r\n" % (len(mine), mine)) * 2
    assert srv.pubsub.shard_slots == {keyslot(mine): {mine}}
    assert run(c, "SUNSUBSCRIBE") == b"*3\r\n$12\r\nsunsubscribe\r\n$%d\r\n%s\r\n:0\r\n" % (
        len(mine), mine)
    assert srv.pubsub.shard_slots == {} and srv.pubsub.shard_channels == {}
    assert run(c, "PUBSUB", "SHARDNUMSUB", other) == b"*2\r\n$%d\r\n%s\r\n:0\r\n" % (
        len(other), other)                                 # introspection is local


def test_replica_serves_its_primarys_channels_without_readonly(sim):  # noqa: F811
    srv, c = make_client(sim, 3)                           # node 3 replicates node 0
    sent = []
    srv.cluster.publish_shard = lambda ch, m: sent.append((ch, m))
    key = key_for(sim, 0, "ch")
    assert run(c, "SSUBSCRIBE", key) == b"*3\r\n$10\r\nssubscribe\r\n$%d\r\n%s\r\n:1\r\n" % (
        len(key), key)
    run(c, "RESET")
    assert run(c, "SPUBLISH", key, "m") == b":0\r\n"
    assert sent == [(key, b"m")]                           # to the shard over the bus
    other = key_for(sim, 1, "ch")
    assert run(c, "SSUBSCRIBE", other).startswith(b"-MOVED ")   # another shard's slot
    assert run(c, "GET", key).startswith(b"-MOVED ")             # keys still need READONLY


def test_cluster_down_rules():
    from gossip.sim import Simulator
    from pynode.config import Config
    s = Simulator(3, seed=11, delay=(1, 5))
    s.assign_slots_evenly([0, 1, 2])
    s.meet_all()
    assert s.run_until(lambda x: x.tables_converged() and x.states_ok(), 30_000)
    gone = key_for(s, 0, "g")
    s.call(0, "del_slots", [keyslot(gone)])
    assert s.run_until(lambda x: x.state(0).state == "fail", 10_000)
    srv, c = make_client(s, 0)
    srv.cluster.publish_shard = lambda ch, m: None
    ch = key_for(s, 0, "ch")
    assert run(c, "GET", ch) == b"-CLUSTERDOWN The cluster is down\r\n"
    # cluster-allow-pubsubshard-when-down yes (the default): served
    assert run(c, "SPUBLISH", ch, "m") == b":0\r\n"
    assert run(c, "SSUBSCRIBE", ch).startswith(b"*3\r\n$10\r\nssubscribe")
    assert run(c, "SSUBSCRIBE", gone) == b"-CLUSTERDOWN Hash slot not served\r\n"
    cfg = Config()
    cfg.set("cluster-allow-pubsubshard-when-down", ["no"])
    cfg.set("cluster-allow-reads-when-down", ["yes"])
    srv2, c2 = make_client(s, 0, cfg)
    assert run(c2, "SPUBLISH", ch, "m") == b"-CLUSTERDOWN The cluster is down\r\n"
    assert run(c2, "GET", ch) == b"$-1\r\n"


# ------------------------------------------------------------------ bus state machine
def test_publishshard_goes_to_the_shard_only():
    a = build(["a myself,master - 0", "b master - 0", "c slave a 0", "d slave b 0",
               "e slave a 0"])
    a.on_tick(T0)
    acts = a.publish_shard(b"ch", b"hi", now=T0)
    (bc,) = of(acts, A.Broadcast)
    assert bc.msg.type == MsgType.PUBLISHSHARD and set(bc.to) == {nid("c"), nid("e")}
    assert bc.msg.body == PublishBody(b"ch", b"hi")
    info = dict(a.cluster_info())
    assert info["cluster_stats_messages_publishshard_sent"] == 2
    acts = a.on_message(IN, msg(MsgType.PUBLISHSHARD, "c", body=PublishBody(b"ch", b"x")), T0)
    assert A.Deliver(b"ch", b"x", True) in acts
    assert dict(a.cluster_info())["cluster_stats_messages_publishshard_received"] == 1
    # from a replica: to its primary and the primary's other replicas
    c = build(["c myself,slave a 0", "a master - 0", "b master - 0", "e slave a 0"])
    c.on_tick(T0)
    (bc,) = of(c.publish_shard(b"ch", b"hi", now=T0), A.Broadcast)
    assert set(bc.to) == {nid("a"), nid("e")}


def test_slot_leaving_the_shard_drops_its_channels():
    a = build(["a myself,master - 0 0-9", "b master - 0 10-20"])
    acts = a.del_slots([3, 1], now=T0)
    assert of(acts, A.DropSlotChannels) == [A.DropSlotChannels((1, 3))]
    acts = a.set_slot_node(5, nid("b"), now=T0)
    assert of(acts, A.DropSlotChannels) == [A.DropSlotChannels((5,))]
    acts = a.set_slot_node(15, nid("a"), now=T0)         # another shard's slot: nothing
    assert of(acts, A.DropSlotChannels) == []
    # a replica drops the channels of its primary's slots
    r = build(["r myself,slave a 0", "a master - 0 0-9", "b master - 0 10-20"])
    acts = r.on_message(IN, msg(MsgType.UPDATE, "b", body=_update(r, "b", 0, 20, epoch=9)), T0)
    assert of(acts, A.DropSlotChannels) == [A.DropSlotChannels(tuple(range(10)))]


def test_failover_keeps_the_winners_channels_and_drops_the_losers():
    """clusterFailoverReplaceYourMaster makes the replica a primary before it
    takes the slots: its subscribers stay; the old primary, told by an UPDATE,
    loses the slots and their channels."""
    r = build(["r myself,slave a 1", "a master - 1 0-9", "b master - 2 10-20"], current=2)
    acts = r.manual_failover("takeover", now=T0)
    assert r.myself.is_primary and r.slot_owner[0] == nid("r")
    assert of(acts, A.DropSlotChannels) == []
    a = build(["a myself,master - 1 0-9", "r slave a 1", "b master - 2 10-20"], current=2)
    acts = a.on_message(IN, msg(MsgType.UPDATE, "b", body=_update(a, "r", 0, 9, epoch=3)), T0)
    assert of(acts, A.DropSlotChannels) == [A.DropSlotChannels(tuple(range(10)))]


def _update(st, name, lo, hi, epoch):
    from gossip.bitmap import bitmap_from_slots
    from gossip.codec import UpdateBody
    return UpdateBody(nid(name), epoch, bitmap_from_slots(range(lo, hi + 1)))


def test_drop_slot_channels_unsubscribes_every_subscriber():
    from pynode.client import Client
    from pynode.commands.pubsub import drop_slot_channels
    from pynode.config import Config
    from pynode.server import Server
    from tests.test_routing import FakeTransport
    srv = Server(Config())
    clients = []
    for resp in (2, 3):
        c = Client(srv)
        c.transport = FakeTransport()
        srv.on_connect(c)
        if resp == 3:
            c.set_resp(3)
        clients.append(c)
    c2, c3 = clients
    x, y = b"{t}b", b"{t}a"                   # one slot, two channels
    run(c2, "SSUBSCRIBE", x, y, b"other")
    run(c3, "SSUBSCRIBE", x)
    run(c3, "SUBSCRIBE", b"plain")
    assert c2.special and c3.ssubs == {x}
    assert drop_slot_channels(srv, [keyslot(x)]) == 2
    assert srv.pubsub.shard_channels.keys() == {b"other"}
    assert srv.pubsub.shard_slots == {keyslot(b"other"): {b"other"}}
    out2 = b"".join(c2.transport.data) if c2.transport.data else b"".join(c2.wbuf or [])
    out3 = b"".join(c3.transport.data) if c3.transport.data else b"".join(c3.wbuf or [])
    assert out2.endswith(b"*3\r\n$12\r\nsunsubscribe\r\n$4\r\n{t}a\r\n:2\r\n"
                         b"*3\r\n$12\r\nsunsubscribe\r\n$4\r\n{t}b\r\n:1\r\n")
    assert out3.endswith(b">3\r\n$12\r\nsunsubscribe\r\n$4\r\n{t}b\r\n:0\r\n")
    assert c2.ssubs == {b"other"} and c3.ssubs == set() and c3.subs == {b"plain"}
    run(c2, "SUNSUBSCRIBE")
    assert not c2.special                     # left the subscribed context


# ------------------------------------------------------------------ real clusters
def _stats(node) -> dict:
    info = node.info()
    return {k: int(v) for k, v in info.items() if k.startswith("cluster_stats_messages_")
            and ("publish" in k)}


def _channel_for(cluster, node) -> str:
    """A channel name whose slot `node` serves."""
    slots = set()
    for n in node.nodes():
        if "myself" in n["flags"]:
            slots = set(n["slots"])
    for i in range(100000):
        ch = "ch%d" % i
        if keyslot(ch.encode()) in slots:
            return ch
    raise AssertionError("no channel")


def _shards(cluster):
    """[(primary Node, [replica Nodes])] by the cluster's own view."""
    by_port = {n.port: n for n in cluster.nodes}
    view = cluster.nodes[0].nodes()
    ids = {n["id"]: by_port[int(n["addr"].split("@")[0].rsplit(":", 1)[1])] for n in view}
    out = []
    for n in view:
        if "master" in n["flags"]:
            reps = [ids[m["id"]] for m in view if m["master"] == n["id"]]
            out.append((ids[n["id"]], reps, n["id"]))
    return out


def _read_push(conn: Raw, want: bytes, limit: float = 15.0) -> bytes:
    got = b""
    deadline = time.monotonic() + limit
    while want not in got and time.monotonic() < deadline:
        got += conn.drain(limit=max(0.1, deadline - time.monotonic()))
    return got


@pytest.fixture(scope="module", params=["redis", "pynode"])
def cluster(request):
    c = Cluster(primaries=3, replicas=1, server=request.param)
    c.up()
    yield c
    c.cleanup()


def test_cluster_messages_stay_in_the_shard(cluster):
    shards = _shards(cluster)
    (p1, (r1,), _), (p2, (r2,), _), (p3, (r3,), _) = shards
    ch = _channel_for(cluster, p1)
    subs = {}
    for node in (p1, r1):
        s = Raw(node.port)
        s.send("SSUBSCRIBE", ch)                      # the replica without READONLY
        assert s.drain() == b"*3\r\n$10\r\nssubscribe\r\n$%d\r\n%s\r\n:1\r\n" % (
            len(ch), ch.encode())
        subs[node.port] = s
    before = {n.port: _stats(n) for n in cluster.nodes}
    assert p1.call("SPUBLISH", ch, "hello") == 1
    assert r1.call("SPUBLISH", ch, "again") == 1      # a replica publishes to its shard too
    want = b"*3\r\n$8\r\nsmessage\r\n$%d\r\n%s\r\n" % (len(ch), ch.encode())
    for s in subs.values():
        got = _read_push(s, want + b"$5\r\nagain\r\n")
        assert got == want + b"$5\r\nhello\r\n" + want + b"$5\r\nagain\r\n"

    def delta(node, name):
        return _stats(node).get(name, 0) - before[node.port].get(name, 0)
    sent, received = ("cluster_stats_messages_publishshard_sent",
                      "cluster_stats_messages_publishshard_received")
    wait_until(lambda: delta(p1, received) == 1 and delta(r1, received) == 1,
               timeout=10, what="PUBLISHSHARD received in the shard")
    assert delta(p1, sent) == 1 and delta(r1, sent) == 1      # one message each, no more
    for other in (p2, r2, p3, r3):                            # other shards hear nothing
        assert delta(other, received) == 0 and delta(other, sent) == 0
    # the contrast: PUBLISH goes to every node
    p1.call("PUBLISH", ch, "all")
    assert delta(p1, "cluster_stats_messages_publish_sent") == 5
    wait_until(lambda: all(delta(n, "cluster_stats_messages_publish_received") == 1
                           for n in (r1, p2, r2, p3, r3)), timeout=10, what="PUBLISH everywhere")
    for s in subs.values():
        s.close()


def test_cluster_redirections(cluster):
    shards = _shards(cluster)
    (p1, (r1,), _), (p2, _, _), _ = shards
    ch1, ch2 = _channel_for(cluster, p1), _channel_for(cluster, p2)
    s1 = keyslot(ch1.encode())
    for node in (p2, cluster.nodes[0] if cluster.nodes[0] not in (p1, r1) else p2):
        c = Raw(node.port)
        c.send("SSUBSCRIBE", ch1)
        assert c.drain() == b"-MOVED %d 127.0.0.1:%d\r\n" % (s1, p1.port)
        c.send("SPUBLISH", ch1, "m")
        assert c.drain() == b"-MOVED %d 127.0.0.1:%d\r\n" % (s1, p1.port)
        c.close()
    c = Raw(p1.port)
    c.send("SSUBSCRIBE", ch1, ch2)
    assert c.drain() == b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    c.send("SPUBLISH", ch2, "m")
    assert c.drain() == b"-MOVED %d 127.0.0.1:%d\r\n" % (keyslot(ch2.encode()), p2.port)
    c.send("PUBSUB", "SHARDNUMSUB", ch2)              # introspection is not routed
    assert c.drain() == b"*2\r\n$%d\r\n%s\r\n:0\r\n" % (len(ch2), ch2.encode())
    c.close()


def test_cluster_slot_moved_away_unsubscribes(cluster):
    shards = _shards(cluster)
    (p1, (r1,), id1), (p2, (r2,), id2), _ = shards
    ch = _channel_for(cluster, p1)
    slot = keyslot(ch.encode())
    conns = []
    for node in (p1, r1):
        s = Raw(node.port)
        s.send("HELLO", "3")
        s.drain()
        s.send("SSUBSCRIBE", ch, "{%s}2" % ch)
        s.drain()
        conns.append(s)
    keep = Raw(p2.port)                       # another shard's subscriber is untouched
    ch2 = _channel_for(cluster, p2)
    keep.send("SSUBSCRIBE", ch2)
    keep.drain()
    # move the (empty) slot to p2 as redis-cli --cluster reshard does
    p2.call("CLUSTER", "SETSLOT", slot, "IMPORTING", id1)
    p1.call("CLUSTER", "SETSLOT", slot, "MIGRATING", id2)
    p2.call("CLUSTER", "SETSLOT", slot, "NODE", id2)
    p1.call("CLUSTER", "SETSLOT", slot, "NODE", id2)
    want = b"".join(b">3\r\n$12\r\nsunsubscribe\r\n$%d\r\n%s\r\n:%d\r\n" % (len(c), c, n)
                    for c, n in _order(ch))
    for s in conns:                            # the primary at once, the replica by gossip
        assert _read_push(s, want) == want
    for node in (p1, r1):
        assert node.call("PUBSUB", "SHARDCHANNELS") == []
    assert p2.call("PUBSUB", "SHARDNUMSUB", ch2) == [ch2, 1]
    assert keep.drain(limit=0.3) == b""
    c = Raw(p1.port)
    c.send("SSUBSCRIBE", ch)
    assert c.drain() == b"-MOVED %d 127.0.0.1:%d\r\n" % (slot, p2.port)
    for s in conns + [keep, c]:
        s.close()


def _order(ch: str):
    """The sunsubscribe order of a slot's channels: byte order, counting down."""
    names = sorted([ch.encode(), b"{%s}2" % ch.encode()])
    return [(n, len(names) - 1 - i) for i, n in enumerate(names)]
