"""Cluster state machine units: handshake, FORGET, slot claims & UPDATE, epochs, failure detection."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossip import actions as A
from gossip.actions import LinkInfo
from gossip.bitmap import bitmap_from_slots
from gossip.codec import FailBody, GossipEntry, Header, Message, MsgType, PublishBody, UpdateBody
from gossip.nodes_conf import parse, render
from gossip.state import ClusterError, ClusterState

T0 = 1_700_000_000_000
TIMEOUT = 2000


def nid(ch: str) -> str:
    return ch * 40


def make(ch: str, port: int = 7000, ip: str = "127.0.0.1", **kw) -> ClusterState:
    return ClusterState(nid(ch), ip, port, port + 10000, TIMEOUT, random.Random(ord(ch)), T0, **kw)


def build(lines: list[str], current: int = 0, port: int = 7000, now: int = T0, **kw) -> ClusterState:
    """A state loaded from nodes.conf lines: ``"a myself,master - 1 0-99"`` = id char, flags, primary, cfg, slots."""
    text = []
    for i, line in enumerate(lines):
        ch, flags, primary, cfg, *slots = line.split()
        p = port + i
        primary = nid(primary) if primary != "-" else "-"
        text.append(f"{nid(ch)} 127.0.0.1:{p}@{p + 10000} {flags} {primary} 0 0 {cfg} connected {' '.join(slots)}".rstrip())
    text.append(f"vars currentEpoch {current} lastVoteEpoch 0")
    return ClusterState.from_conf(
        parse("\n".join(text) + "\n"), port=port, cport=port + 10000, node_timeout_ms=TIMEOUT,
        rng=random.Random(7), now_ms=now, **kw,
    )


def hdr(ch: str, *, cur: int = 0, cfg: int = 0, slots=(), primary: str | None = None,
        flags=("master",), port: int = 7001, ip: str = "") -> Header:
    return Header(nid(ch), cur, cfg, frozenset(flags), nid(primary) if primary else None,
                  bitmap_from_slots(slots), ip, port, port + 10000, 0, "ok")


def msg(t: MsgType, ch: str, gossip=(), body=None, **kw) -> Message:
    return Message(t, hdr(ch, **kw), tuple(gossip), body)


def gossip(ch: str, port: int = 7005, flags=("master",), pong: int = 0) -> GossipEntry:
    return GossipEntry(nid(ch), 0, pong, "127.0.0.1", port, port + 10000, frozenset(flags))


IN = LinkInfo(inbound=True, peer_ip="127.0.0.1", local_ip="127.0.0.1", conn_id=1)


def out(node_id: str) -> LinkInfo:
    return LinkInfo(inbound=False, node_id=node_id, peer_ip="127.0.0.1", local_ip="127.0.0.1")


def of(actions, cls) -> list:
    return [a for a in actions if isinstance(a, cls)]


def sent(actions, mtype: MsgType) -> list:
    return [a for a in actions if isinstance(a, (A.Send, A.Reply, A.Broadcast)) and a.msg.type == mtype]


# ----------------------------------------------------------------------------- handshake


def test_meet_handshake_and_rename():
    a = make("a", 7000)
    b = make("b", 7001, ip="")  # b learns its address from the MEET
    assert of(a.meet("127.0.0.1", 7001, now=T0), A.SaveConfig)
    (hs,) = [n for n in a.nodes.values() if n.in_handshake]
    hs_id = hs.id
    assert hs.flags == {"handshake", "meet"} and hs_id != nid("b")

    # the MEET goes out once the connection is up (clusterLinkConnectHandler):
    # a refused connection sends nothing, and the next one MEETs again
    acts = a.on_tick(T0 + 100)
    assert A.Connect(hs.id, "127.0.0.1", 17001) in acts
    assert not [x for x in acts if isinstance(x, (A.Send, A.Broadcast))] and "meet" in hs.flags
    assert not [x for x in a.on_link_down(hs.id, T0 + 101) if isinstance(x, A.Send)]
    assert "meet" in hs.flags and hs.ping_sent == 0
    acts = a.on_tick(T0 + 200)
    assert A.Connect(hs.id, "127.0.0.1", 17001) in acts and not sent(acts, MsgType.MEET)
    (meet,) = sent(a.on_link_up(hs.id, T0 + 201), MsgType.MEET)
    assert meet.node_id == hs.id and "meet" not in hs.flags

    link = LinkInfo(inbound=True, peer_ip="127.0.0.1", local_ip="127.0.0.1", conn_id=9)
    acts = b.on_message(link, meet.msg, T0 + 301)
    (pong,) = sent(acts, MsgType.PONG)
    assert pong.link == link and isinstance(pong, A.Reply)
    assert b.myself.ip == "127.0.0.1"
    (bhs,) = [n for n in b.nodes.values() if n.in_handshake]
    bhs_id = bhs.id
    assert (bhs.ip, bhs.port, bhs.cport) == ("127.0.0.1", 7000, 17000)
    assert b.stats_received[MsgType.MEET] == 1 and b.stats_sent[MsgType.PONG] == 1

    acts = a.on_message(out(hs_id), pong.msg, T0 + 302)
    assert A.Rename(hs_id, nid("b")) in acts
    node = a.nodes[nid("b")]
    assert node is hs and node.flags == {"master"} and node.pong_received == T0 + 302
    assert nid("b") in render(a)

    # b completes its side: it pings its handshake node, a answers with its real id.
    assert A.Connect(bhs_id, "127.0.0.1", 17000) in b.on_tick(T0 + 400)
    acts = b.on_link_up(bhs_id, T0 + 401)
    (ping,) = [s for s in sent(acts, MsgType.PING) if s.node_id == bhs_id]
    acts = a.on_message(IN, ping.msg, T0 + 501)
    (pong,) = sent(acts, MsgType.PONG)
    acts = b.on_message(out(bhs_id), pong.msg, T0 + 502)
    assert A.Rename(bhs_id, nid("a")) in acts
    assert set(b.nodes) == {nid("a"), nid("b")}


def test_only_meet_adds_an_unknown_sender():
    a = make("a")
    a.on_message(IN, msg(MsgType.PING, "b"), T0)
    assert len(a.nodes) == 1
    a.on_message(IN, msg(MsgType.MEET, "b"), T0)
    (hs,) = [n for n in a.nodes.values() if n.in_handshake]
    assert (hs.port, hs.cport) == (7001, 17001)


def test_duplicate_handshake_is_dropped_when_the_node_is_known():
    a = make("a")
    a.meet("127.0.0.1", 7001, now=T0)
    a.meet("127.0.0.1", 7001, now=T0)  # in progress: not added twice
    (hs,) = [n for n in a.nodes.values() if n.in_handshake]
    a.on_tick(T0 + 100)
    a.on_message(out(hs.id), msg(MsgType.PONG, "b"), T0 + 101)
    a.meet("127.0.0.1", 7001, now=T0 + 200)
    (hs2,) = [n for n in a.nodes.values() if n.in_handshake]
    a.on_tick(T0 + 300)
    acts = a.on_message(out(hs2.id), msg(MsgType.PONG, "b"), T0 + 301)
    assert A.Disconnect(hs2.id) in acts
    assert set(a.nodes) == {nid("a"), nid("b")}


def test_handshake_times_out():
    a = make("a")
    a.meet("127.0.0.1", 7001, now=T0)
    (hs,) = [n for n in a.nodes.values() if n.in_handshake]
    a.on_tick(T0 + 100)
    a.on_tick(T0 + TIMEOUT)
    assert hs.id in a.nodes
    acts = a.on_tick(T0 + TIMEOUT + 101)
    assert hs.id not in a.nodes and A.Disconnect(hs.id) in acts


@pytest.mark.parametrize("ip, port", [("not-an-ip", 7001), ("127.0.0.1", 0), ("127.0.0.1", 70000)])
def test_meet_invalid_address(ip, port):
    with pytest.raises(ClusterError, match=f"ERR Invalid node address specified: {ip}:{port}"):
        make("a").meet(ip, port, now=T0)


def test_mismatching_pong_id_marks_noaddr():
    a = build(["a myself,master - 0", "b master - 0"])
    a.on_tick(T0 + 100)
    acts = a.on_message(out(nid("b")), msg(MsgType.PONG, "c"), T0 + 101)
    b = a.nodes[nid("b")]
    assert "noaddr" in b.flags and b.ip == "" and A.Disconnect(nid("b")) in acts
    assert not any(isinstance(x, A.Connect) and x.node_id == nid("b") for x in a.on_tick(T0 + 200))


def test_address_update_from_inbound_ping():
    a = build(["a myself,master - 0", "b master - 0"])
    a.on_tick(T0 + 100)
    acts = a.on_message(IN, msg(MsgType.PING, "b", port=7100), T0 + 101)
    b = a.nodes[nid("b")]
    assert (b.port, b.cport) == (7100, 17100) and A.Disconnect(nid("b")) in acts


# ----------------------------------------------------------------------------- gossip & forget


def test_gossip_from_a_known_sender_adds_nodes_with_their_ids():
    a = build(["a myself,master - 0", "b master - 0"])
    a.on_message(IN, msg(MsgType.PING, "b", gossip=[gossip("c"), gossip("d", flags=("slave",))]), T0)
    assert a.nodes[nid("c")].flags == {"master"} and a.nodes[nid("d")].flags == {"slave"}
    assert a.nodes[nid("c")].port == 7005
    # unknown senders and NOADDR entries are not trusted
    a.on_message(IN, msg(MsgType.PING, "z", gossip=[gossip("e")]), T0)
    a.on_message(IN, msg(MsgType.PING, "b", gossip=[gossip("f", flags=("master", "noaddr"))]), T0)
    assert nid("e") not in a.nodes and nid("f") not in a.nodes


def test_gossip_section_size_and_content():
    lines = ["a myself,master - 1 0"] + [f"{c} master - 1 {i + 1}" for i, c in enumerate("bcdefghijklmnopqrstuvwxyz0123456789")]
    a = build(lines, current=1)  # 36 nodes, all serving a slot
    counts = set()
    for k in range(30):
        m = a._ping_message(MsgType.PING)
        ids = [g.node_id for g in m.gossip]
        assert len(ids) == len(set(ids)) and nid("a") not in ids
        counts.add(len(ids))
    assert counts == {3}  # max(3, 36 // 10)
    a._add_flags(a.nodes[nid("b")], "pfail")
    a.stats_pfail_nodes = 1
    m = a._ping_message(MsgType.PING)
    assert m.gossip[-1].node_id == nid("b") and "pfail" in m.gossip[-1].flags


def test_forget_and_the_60s_ban():
    a = build(["a myself,slave c 0", "b master - 0", "c master - 0"])
    with pytest.raises(ClusterError, match="ERR Unknown node x"):
        a.forget("x", now=T0)
    with pytest.raises(ClusterError, match="can't forget myself"):
        a.forget(nid("a"), now=T0)
    with pytest.raises(ClusterError, match="Can't forget my master!"):
        a.forget(nid("c"), now=T0)
    a.on_tick(T0)
    acts = a.forget(nid("b"), now=T0)
    assert nid("b") not in a.nodes and A.Disconnect(nid("b")) in acts and of(acts, A.SaveConfig)
    a.on_message(IN, msg(MsgType.PING, "c", gossip=[gossip("b")]), T0 + 59_000)
    assert nid("b") not in a.nodes
    a.on_message(IN, msg(MsgType.PING, "c", gossip=[gossip("b")]), T0 + 60_001)
    assert nid("b") in a.nodes


# ----------------------------------------------------------------------------- slots, UPDATE, epochs


def test_slot_claims_follow_config_epochs_and_stale_claims_get_an_update():
    a = build(["a myself,master - 0", "b master - 1 0-99", "c master - 0"], current=1)
    a.on_tick(T0)  # links to b and c
    # c claims b's slots with a greater epoch: it wins, currentEpoch follows
    acts = a.on_message(IN, msg(MsgType.PING, "c", cur=2, cfg=2, slots=range(0, 100)), T0 + 1)
    assert a.slot_owner[0] == a.slot_owner[99] == nid("c") and not a.nodes[nid("b")].slots
    assert a.current_epoch == 2 and a.nodes[nid("c")].config_epoch == 2
    assert A.SaveConfig(fsync=True) in acts
    # b still claims them with its old epoch: it is told with an UPDATE about c
    acts = a.on_message(IN, msg(MsgType.PING, "b", cur=1, cfg=1, slots=range(0, 100)), T0 + 2)
    assert a.slot_owner[0] == nid("c")
    (upd,) = sent(acts, MsgType.UPDATE)
    assert upd.node_id == nid("b")
    assert upd.msg.body == UpdateBody(nid("c"), 2, bitmap_from_slots(range(100)))
    # an unassigned slot goes to whoever claims it
    a.on_message(IN, msg(MsgType.PING, "b", cur=1, cfg=1, slots=[500]), T0 + 3)
    assert a.slot_owner[500] == nid("b")


def test_update_message_rebinds_slots():
    a = build(["a myself,master - 0", "b master - 1 0-99", "c master - 2 200"], current=2)
    a.on_message(IN, msg(MsgType.UPDATE, "c", cur=3, cfg=2, body=UpdateBody(nid("b"), 1, bitmap_from_slots([5]))), T0)
    assert a.slot_owner[5] == nid("b")  # nothing new: epoch 1 is not above b's
    a.on_message(IN, msg(MsgType.UPDATE, "c", cur=3, cfg=2, body=UpdateBody(nid("c"), 3, bitmap_from_slots(range(50)))), T0)
    assert a.slot_owner[0] == a.slot_owner[49] == nid("c") and a.slot_owner[50] == nid("b")
    assert a.nodes[nid("c")].config_epoch == 3 and a.current_epoch == 3
    # unknown sender: ignored
    a.on_message(IN, msg(MsgType.UPDATE, "z", cur=9, body=UpdateBody(nid("c"), 9, bitmap_from_slots([99]))), T0)
    assert a.slot_owner[99] == nid("b")


def test_losing_slots_drops_keys_and_losing_all_makes_a_replica():
    a = build(["a myself,master - 1 0-9", "b master - 1 100"], current=1)
    acts = a.on_message(IN, msg(MsgType.PING, "b", cur=2, cfg=2, slots=[0, 1, 2, 100]), T0)
    assert A.DropSlotKeys((0, 1, 2)) in acts and a.myself.is_primary
    acts = a.on_message(IN, msg(MsgType.PING, "b", cur=3, cfg=3, slots=[*range(10), 100]), T0)
    assert A.Replicate(nid("b")) in acts
    assert a.myself.is_replica and a.myself.primary_id == nid("b")
    assert f"myself,slave {nid('b')}" in render(a)


def test_importing_slot_is_not_rebound_by_gossip():
    a = build(["a myself,master - 0", "b master - 1 0-9"], current=1)
    a.set_slot_importing(3, nid("b"), now=T0)
    a.on_message(IN, msg(MsgType.PING, "c" * 1, cur=5, cfg=5, slots=[3]), T0)  # unknown sender: ignored
    a.on_message(IN, msg(MsgType.PING, "b", cur=5, cfg=5, slots=[*range(10), 20]), T0)
    assert a.slot_owner[20] == nid("b")


def test_config_epoch_collision_smaller_id_bumps():
    lo = build(["1 myself,master - 5 0", "2 master - 5 1"], current=5)
    hi = build(["2 myself,master - 5 1", "1 master - 5 0"], current=5)
    acts = lo.on_message(IN, msg(MsgType.PING, "2", cur=5, cfg=5, slots=[1]), T0)
    assert lo.myself.config_epoch == 6 and lo.current_epoch == 6
    assert A.SaveConfig(fsync=True) in acts
    hi.on_message(IN, msg(MsgType.PING, "1", cur=5, cfg=5, slots=[0]), T0)
    assert hi.myself.config_epoch == 5 and hi.current_epoch == 5


def test_current_epoch_is_the_max_seen():
    a = build(["a myself,master - 2", "b master - 1"], current=2)
    a.on_message(IN, msg(MsgType.PING, "b", cur=7, cfg=1), T0)
    assert a.current_epoch == 7
    a.on_message(IN, msg(MsgType.PING, "b", cur=3, cfg=1), T0)
    assert a.current_epoch == 7
    a.on_message(IN, msg(MsgType.PING, "z", cur=99), T0)  # unknown sender: no effect
    assert a.current_epoch == 7


def test_role_switch_from_headers():
    a = build(["a myself,master - 1 0", "b master - 2 5-9", "c master - 3 10"], current=3)
    a.on_message(IN, msg(MsgType.PING, "b", cur=3, cfg=3, primary="c", flags=("slave",)), T0)
    b = a.nodes[nid("b")]
    assert b.is_replica and b.primary_id == nid("c") and not b.slots and a.slot_owner[5] is None
    a.on_message(IN, msg(MsgType.PING, "b", cur=3, cfg=3), T0)
    assert b.is_primary and b.primary_id is None and "migrate_to" in b.flags


# ----------------------------------------------------------------------------- failure detection


FOUR = ["a myself,master - 1 0-4095", "b master - 2 4096-8191", "c master - 3 8192-12287", "d master - 4 12288-16383"]


def _pfail_d(a: ClusterState, before_last_tick=None) -> int:
    """Links up, everyone answers but d: d becomes PFAIL. Returns the time."""
    return _until_pfail_d(a, before_last_tick)[0]


def _until_pfail_d(a: ClusterState, before_last_tick=None) -> tuple[int, list]:
    """_pfail_d, returning the time and the actions of the tick that flagged d
    (``before_last_tick(t)`` runs just before that tick)."""
    a.on_tick(T0)
    for ch in "bcd":  # the links the first tick opened are connected
        a.on_link_up(nid(ch), T0)
    t = T0
    d = a.nodes[nid("d")]
    while not d.flags & {"pfail", "fail"}:
        t += 100
        for ch in "bc":
            if a.nodes[nid(ch)].ping_sent:
                a.on_message(out(nid(ch)), msg(MsgType.PONG, ch, cur=4, cfg="bc".index(ch) + 2), t)
        if before_last_tick is not None and t - d.ping_sent > TIMEOUT:
            before_last_tick(t)
        acts = a.on_tick(t)
        assert t < T0 + 2 * TIMEOUT
    assert t - T0 > TIMEOUT
    return t, acts


def test_pfail_then_fail_by_majority_of_primaries():
    a = build(FOUR, current=4)
    t = _pfail_d(a)
    assert a.size == 4  # quorum 3
    acts = a.on_message(IN, msg(MsgType.PING, "b", cur=4, cfg=2, slots=range(4096, 8192), gossip=[gossip("d", flags=("master", "pfail"))]), t)
    assert "fail" not in a.nodes[nid("d")].flags and a.count_failure_reports(nid("d")) == 1
    acts = a.on_message(IN, msg(MsgType.PING, "c", cur=4, cfg=3, slots=range(8192, 12288), gossip=[gossip("d", flags=("master", "fail"))]), t + 1)
    d = a.nodes[nid("d")]
    assert "fail" in d.flags and "pfail" not in d.flags
    (bc,) = sent(acts, MsgType.FAIL)
    assert isinstance(bc, A.Broadcast) and bc.msg.body == FailBody(nid("d")) and nid("b") in bc.to
    assert a.state == "fail"  # d's slots are not served


def test_a_primary_flagging_pfail_pings_the_other_primaries_once():
    a = build(FOUR + ["e slave b 0"], current=4)
    b, c = a.nodes[nid("b")], a.nodes[nid("c")]
    in_flight = {}

    def before(t):  # a ping to c in flight (unanswered) when d goes PFAIL
        c.ping_sent = t - 50
        in_flight.update(b=b.ping_sent, c=c.ping_sent)
    t, acts = _until_pfail_d(a, before)
    assert "pfail" in a.nodes[nid("d")].flags
    pings = sent(acts, MsgType.PING)
    # the primaries serving slots: not d, not the replica e
    assert sorted(p.node_id for p in pings) == sorted([nid("b"), nid("c")])
    for p in pings:  # each carries the PFAIL node: the reader counts my report
        (entry,) = [g for g in p.msg.gossip if g.node_id == nid("d")]
        assert "pfail" in entry.flags
    # a ping in flight keeps its time (c's own failure detection); b's was answered
    assert c.ping_sent == in_flight["c"] and b.ping_sent == (in_flight["b"] or t)
    # once: the next ticks send b and c nothing more about it
    for k in (1, 2, 3):
        assert not [p for p in sent(a.on_tick(t + 100 * k), MsgType.PING)
                    if p.node_id in (nid("b"), nid("c"))]


def test_a_replica_flagging_pfail_pings_nobody_at_once():
    e = build(["e myself,slave b 0"] + [line.replace("myself,", "") for line in FOUR[1:]]
              + ["a master - 1 0-4095"], current=4)
    t, acts = _until_pfail_d(e)
    assert "pfail" in e.nodes[nid("d")].flags
    assert not sent(acts, MsgType.PING)  # (a replica's report does not count)


def test_pfail_completing_the_quorum_is_fail_at_once():
    """Valkey 8.1: the reports came before my own PFAIL; mine is the last one needed."""
    a = build(FOUR, current=4)

    def reports(t):
        for ch, cfg, slots in (("b", 2, range(4096, 8192)), ("c", 3, range(8192, 12288))):
            a.on_message(IN, msg(MsgType.PING, ch, cur=4, cfg=cfg, slots=slots,
                                 gossip=[gossip("d", flags=("master", "pfail"))]), t)
        assert a.count_failure_reports(nid("d")) == 2 and "pfail" not in a.nodes[nid("d")].flags
    t, acts = _until_pfail_d(a, reports)
    d = a.nodes[nid("d")]
    assert "fail" in d.flags and "pfail" not in d.flags and d.fail_time == t
    (bc,) = sent(acts, MsgType.FAIL)
    assert bc.msg.body == FailBody(nid("d"))
    # nothing left to ask for (only the PING that opens a new link, if any)
    opened = {x.node_id for x in of(acts, A.Connect)}
    assert all(p.node_id in opened for p in sent(acts, MsgType.PING))


def test_replica_reports_do_not_count():
    a = build(FOUR + ["e slave b 0"], current=4)
    t = _pfail_d(a)
    a.on_message(IN, msg(MsgType.PING, "e", cur=4, cfg=2, primary="b", flags=("slave",), gossip=[gossip("d", flags=("master", "pfail"))]), t)
    assert a.count_failure_reports(nid("d")) == 0


def test_failure_reports_expire():
    a = build(FOUR, current=4)
    t = _pfail_d(a)
    a.on_message(IN, msg(MsgType.PING, "b", cur=4, cfg=2, slots=range(4096, 8192), gossip=[gossip("d", flags=("master", "pfail"))]), t)
    assert a.count_failure_reports(nid("d"), now=t + 2 * TIMEOUT) == 1
    assert a.count_failure_reports(nid("d"), now=t + 2 * TIMEOUT + 1) == 0
    # a report is withdrawn when the reporter sees the node fine again
    a.on_message(IN, msg(MsgType.PING, "c", cur=4, cfg=3, slots=range(8192, 12288), gossip=[gossip("d", flags=("master", "pfail"))]), t + 5000)
    a.on_message(IN, msg(MsgType.PING, "c", cur=4, cfg=3, slots=range(8192, 12288), gossip=[gossip("d")]), t + 5001)
    assert a.count_failure_reports(nid("d")) == 0


def test_a_lost_link_counts_as_a_ping_unanswered_since_then():
    a = build(FOUR, current=4)
    a.on_tick(T0)
    d = a.nodes[nid("d")]
    pong = msg(MsgType.PONG, "d", cur=4, cfg=4, slots=range(12288, 16384))
    a.on_message(out(nid("d")), pong, T0 + 10)
    assert d.ping_sent == 0 and d.link
    a.on_link_down(nid("d"), T0 + 500)  # killed: its connection reset, no ping in flight
    assert d.ping_sent == T0 + 500 and not d.link
    # (a ping already in flight keeps its time)
    a.nodes[nid("b")].ping_sent = T0 + 300
    a.on_link_down(nid("b"), T0 + 500)
    assert a.nodes[nid("b")].ping_sent == T0 + 300
    # answered on the next link: cleared as any ping
    a.on_message(out(nid("b")), msg(MsgType.PONG, "b", cur=4, cfg=2), T0 + 600)
    assert a.nodes[nid("b")].ping_sent == 0
    # d stays silent: PFAIL at the first tick more than node timeout after the loss
    t = T0 + 500
    while "pfail" not in d.flags:
        t += 100
        a.on_tick(t)
        assert t <= T0 + 500 + TIMEOUT + 100
    assert t > T0 + 500 + TIMEOUT


def test_pong_clears_pfail():
    a = build(FOUR, current=4)
    t = _pfail_d(a)
    a.on_message(out(nid("d")), msg(MsgType.PONG, "d", cur=4, cfg=4, slots=range(12288, 16384)), t + 1)
    assert not a.nodes[nid("d")].flags & {"pfail", "fail"}


def test_fail_message_and_clearing_rules():
    a = build(FOUR + ["e slave b 0"], current=4)
    a.on_message(IN, msg(MsgType.FAIL, "z", body=FailBody(nid("d"))), T0)  # unknown sender
    assert "fail" not in a.nodes[nid("d")].flags
    a.on_message(IN, msg(MsgType.FAIL, "b", cur=4, cfg=2, body=FailBody(nid("d"))), T0)
    a.on_message(IN, msg(MsgType.FAIL, "b", cur=4, cfg=2, body=FailBody(nid("e"))), T0)
    a.on_message(IN, msg(MsgType.FAIL, "b", cur=4, cfg=2, body=FailBody(nid("a"))), T0)
    assert "fail" in a.nodes[nid("d")].flags and "fail" in a.nodes[nid("e")].flags
    assert "fail" not in a.myself.flags
    a.on_tick(T0)
    # a replica is cleared as soon as it answers
    a.on_message(out(nid("e")), msg(MsgType.PONG, "e", cur=4, cfg=2, primary="b", flags=("slave",)), T0 + 10)
    assert "fail" not in a.nodes[nid("e")].flags
    # a primary still serving slots only after 2 x node timeout
    d_pong = msg(MsgType.PONG, "d", cur=4, cfg=4, slots=range(12288, 16384))
    a.on_message(out(nid("d")), d_pong, T0 + 2 * TIMEOUT)
    assert "fail" in a.nodes[nid("d")].flags
    a.on_message(out(nid("d")), d_pong, T0 + 2 * TIMEOUT + 1)
    assert "fail" not in a.nodes[nid("d")].flags


def test_cluster_state():
    a = make("a")
    a.add_slots(range(16384), now=T0)
    a.on_tick(T0 + 100)
    assert a.state == "fail"  # a primary waits 2 s after start
    a.on_tick(T0 + 2100)
    assert a.state == "ok"
    a.del_slots([7], now=T0 + 2200)
    assert a.state == "fail"
    b = make("b", require_full_coverage=False)
    b.add_slots([1, 2, 3], now=T0)
    b.on_tick(T0 + 2100)
    assert b.state == "ok"


def test_minority_primary_goes_to_fail():
    a = build(FOUR, current=4)
    a.on_tick(T0)
    t = T0
    while a.state != "fail" or t < T0 + 2500:
        t += 100
        a.on_tick(t)
    for ch in "bcd":
        assert "pfail" in a.nodes[nid(ch)].flags
    assert a.state == "fail" and t - T0 < 2 * TIMEOUT + 1000


# ----------------------------------------------------------------------------- admin


def test_add_and_del_slots_errors():
    a = make("a")
    with pytest.raises(ClusterError, match="ERR Invalid or out of range slot"):
        a.add_slots([16384], now=T0)
    with pytest.raises(ClusterError, match="ERR Slot 5 specified multiple times"):
        a.add_slots([5, 5], now=T0)
    a.add_slots([5], now=T0)
    with pytest.raises(ClusterError, match="ERR Slot 5 is already busy"):
        a.add_slots([4, 5], now=T0)
    assert a.slot_owner[4] is None  # nothing half-done
    with pytest.raises(ClusterError, match="ERR Slot 6 is already unassigned"):
        a.del_slots([5, 6], now=T0)
    a.del_slots([5], now=T0)
    a.add_slots(range(10), now=T0)
    with pytest.raises(ClusterError, match="DB must be empty"):
        a.flush_slots(db_empty=False, now=T0)
    a.flush_slots(now=T0)
    assert a.slots_assigned == 0


def test_epoch_admin():
    a = make("a")
    assert a.bump_epoch(now=T0)[0] == ("BUMPED", 1)
    assert a.bump_epoch(now=T0)[0] == ("STILL", 1)
    with pytest.raises(ClusterError, match="already non-zero"):
        a.set_config_epoch(5, now=T0)
    b = make("b")
    with pytest.raises(ClusterError, match="Invalid config epoch specified: -1"):
        b.set_config_epoch(-1, now=T0)
    b.set_config_epoch(5, now=T0)
    assert b.myself.config_epoch == 5 and b.current_epoch == 5
    c = make("c")
    c.meet("127.0.0.1", 7001, now=T0)
    with pytest.raises(ClusterError, match="does not know any other node"):
        c.set_config_epoch(3, now=T0)


def test_replicate_and_setslot_admin():
    a = build(["a myself,master - 1 0-9", "b master - 2 10", "c slave b 0"], current=2)
    with pytest.raises(ClusterError, match="Unknown node x"):
        a.replicate("x", now=T0)
    with pytest.raises(ClusterError, match="Can't replicate myself"):
        a.replicate(nid("a"), now=T0)
    with pytest.raises(ClusterError, match="only replicate a master"):
        a.replicate(nid("c"), now=T0)
    with pytest.raises(ClusterError, match="must be empty and without assigned slots"):
        a.replicate(nid("b"), now=T0)
    with pytest.raises(ClusterError, match="I'm not the owner of hash slot 10"):
        a.set_slot_migrating(10, nid("b"), now=T0)
    with pytest.raises(ClusterError, match="I'm already the owner of hash slot 3"):
        a.set_slot_importing(3, nid("b"), now=T0)
    with pytest.raises(ClusterError, match="I don't know about node x"):
        a.set_slot_migrating(3, "x", now=T0)
    with pytest.raises(ClusterError, match="Target node is not a master"):
        a.set_slot_migrating(3, nid("c"), now=T0)
    a.set_slot_migrating(3, nid("b"), now=T0)
    a.set_slot_importing(10, nid("b"), now=T0)
    assert f"[3->-{nid('b')}] [10-<-{nid('b')}]" in render(a)
    with pytest.raises(ClusterError, match="while I still hold keys"):
        a.set_slot_node(3, nid("b"), keys_in_slot=2, now=T0)
    a.set_slot_node(3, nid("b"), now=T0)
    assert a.slot_owner[3] == nid("b") and 3 not in a.migrating
    # closing an import bumps my epoch and tells everyone
    a.on_tick(T0)
    acts = a.set_slot_node(10, nid("a"), now=T0)
    assert a.slot_owner[10] == nid("a") and not a.importing
    assert a.myself.config_epoch == 3 and sent(acts, MsgType.PONG)
    a.set_slot_stable(10, now=T0)
    # giving away the last slot turns me into a replica of the new owner
    a.del_slots([10], now=T0)
    for s in [*range(3), *range(4, 10)]:
        acts = a.set_slot_node(s, nid("b"), now=T0)
    assert A.Replicate(nid("b")) in acts and a.myself.primary_id == nid("b")
    with pytest.raises(ClusterError, match="SETSLOT only with masters"):
        a.set_slot_stable(1, now=T0)
    # a replica may switch primaries
    d = build(["d myself,master - 0", "b master - 2 10"], current=2)
    acts = d.replicate(nid("b"), now=T0)
    assert A.Replicate(nid("b")) in acts and d.myself.is_replica
    assert d.my_epoch() == 2


def test_reset():
    a = build(["a myself,slave b 0", "b master - 3 0-9"], current=3)
    acts = a.reset(hard=False, now=T0)
    assert A.Replicate(None) in acts and A.EmptyData() in acts
    assert a.myself_id == nid("a") and list(a.nodes) == [nid("a")] and a.current_epoch == 3
    a.add_slots([1], now=T0)
    a.reset(hard=True, now=T0)
    assert a.myself_id != nid("a") and a.current_epoch == 0 and a.slots_assigned == 0


def test_publish_and_stats():
    a = build(["a myself,master - 0", "b master - 0", "c master - 0"])
    a.on_tick(T0)
    for ch in "bc":  # the links come up: a PING on each
        a.on_link_up(nid(ch), T0)
    acts = a.publish(b"news", b"hello", now=T0)
    (bc,) = of(acts, A.Broadcast)
    assert bc.msg.type == MsgType.PUBLISH and set(bc.to) == {nid("b"), nid("c")}
    acts = a.on_message(IN, msg(MsgType.PUBLISH, "b", body=PublishBody(b"news", b"hi")), T0)
    assert A.Deliver(b"news", b"hi") in acts
    info = dict(a.cluster_info())
    assert info["cluster_stats_messages_publish_sent"] == 2
    assert info["cluster_stats_messages_ping_sent"] == 2
    assert info["cluster_stats_messages_publish_received"] == 1
    assert info["cluster_stats_messages_sent"] == 4 and info["cluster_stats_messages_received"] == 1
    assert list(info)[:9] == [
        "cluster_state", "cluster_slots_assigned", "cluster_slots_ok", "cluster_slots_pfail",
        "cluster_slots_fail", "cluster_known_nodes", "cluster_size", "cluster_current_epoch",
        "cluster_my_epoch",
    ]
    assert list(info)[-1] == "total_cluster_links_buffer_limit_exceeded"


def test_restored_replica_starts_replication_on_first_tick():
    a = build(["a myself,slave b 0", "b master - 3 0-9"], current=3)
    assert A.Replicate(nid("b")) in a.on_tick(T0)
    assert A.Replicate(nid("b")) not in a.on_tick(T0 + 100)


def test_link_down_reconnects_keeping_ping_time():
    a = build(["a myself,master - 0", "b master - 0"])
    a.on_tick(T0)
    sent_at = a.nodes[nid("b")].ping_sent
    assert sent_at == T0
    a.on_link_down(nid("b"), T0 + 50)
    assert a.nodes[nid("b")].link_state == "disconnected"
    acts = a.on_tick(T0 + 100)
    assert A.Connect(nid("b"), "127.0.0.1", 17001) in acts
    assert a.nodes[nid("b")].ping_sent == sent_at


# ----------------------------------------------------------------------------- fuzz

POOL = [nid(c) for c in "abcdez"]
pool_ids = st.sampled_from(POOL)
small_epochs = st.integers(0, 8)
flagsets = st.frozensets(st.sampled_from(["master", "slave", "pfail", "fail", "noaddr", "nofailover", "myself", "handshake"]))
slotsets = st.frozensets(st.sampled_from([0, 1, 5, 100, 5000, 16383]), max_size=4).map(bitmap_from_slots)

fuzz_headers = st.builds(
    Header, sender=pool_ids, current_epoch=small_epochs, config_epoch=small_epochs, flags=flagsets,
    primary_id=st.none() | pool_ids, slots=slotsets, ip=st.sampled_from(["", "127.0.0.1", "10.0.0.9"]),
    port=st.sampled_from([7000, 7001, 7002, 0]), cport=st.sampled_from([17000, 17001, 0]),
    offset=st.integers(0, 10), state=st.sampled_from(["ok", "fail"]),
    mflags=st.sampled_from([0, 1, 2, 3]),  # MF_PAUSED | MF_FORCEACK
)
fuzz_gossip = st.builds(
    GossipEntry, pool_ids, st.integers(0, T0 + 10_000), st.integers(0, T0 + 10_000),
    st.sampled_from(["127.0.0.1", ""]), st.sampled_from([7000, 7003]), st.sampled_from([17000, 17003]), flagsets,
)


@st.composite
def fuzz_messages(draw):
    t = draw(st.sampled_from(list(MsgType)))
    body = None
    if t == MsgType.FAIL:
        body = FailBody(draw(pool_ids))
    elif t in (MsgType.PUBLISH, MsgType.PUBLISHSHARD):
        body = PublishBody(b"c", b"m")
    elif t == MsgType.UPDATE:
        body = UpdateBody(draw(pool_ids), draw(small_epochs), draw(slotsets))
    return Message(t, draw(fuzz_headers), tuple(draw(st.lists(fuzz_gossip, max_size=3))), body)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(fuzz_messages(), st.booleans(), pool_ids, st.integers(0, 3000)), max_size=25),
       st.booleans())
def test_any_message_sequence_keeps_the_invariants(events, replica):
    me = "a myself,slave b 0" if replica else "a myself,master - 2 0-10"
    a = build([me, "b master - 3 100-200", "c master - 1 5000", "d slave b 0"], current=3)
    t = T0
    a.on_tick(t)
    for m, inbound, link_node, dt in events:
        t += dt
        link = IN if inbound else out(link_node)
        a.on_message(link, m, t)
        a.on_tick(t)
        a.check_invariants(full=True)
    # and the result still renders and reloads
    assert parse(render(a)) is not None


# ----------------------------------------------------------------------------- id numbers


def test_nodes_indexed_by_id_number_read_gossip_as_the_dict_does():
    """ClusterState(index_ids=True) finds an entry's node by the id number the
    sender's entry carries; it must end where an unindexed reader ends, for
    entries that carry the number and for the same entries off the wire."""
    from gossip.codec import decode, encode
    from gossip.node import NO_ID_NUMBER, id_number

    lines = ["a myself,master - 1 0-99"] + [f"{ch} master - {i + 2} {100 * (i + 1)}-{100 * (i + 1) + 99}"
                                            for i, ch in enumerate("bcdefghijklm")]
    b_lines = [ln.replace("myself,", "") for ln in lines]
    b_lines[1] = b_lines[1].replace(" master ", " myself,master ", 1)
    b = build(b_lines, current=13, index_ids=True)
    for i, n in enumerate(b.nodes.values()):
        if n is not b.myself:
            n.pong_received = T0 + 1000 * (i % 5)  # some fresher than the reader's
    readers = {kind: build(lines, current=13, index_ids=kind != "dict") for kind in ("dict", "number", "wire")}
    for r in readers.values():
        for i, n in enumerate(r.nodes.values()):
            n.pong_received = T0 + 2500 if i % 2 else 0
    before = sorted((n.id, n.pong_received) for n in readers["number"].nodes.values())
    ping = Message(MsgType.PING, b._header(), tuple(b._gossip_section()) + (gossip("z"),))
    assert all(g.num == id_number(g.node_id) for g in ping.gossip[:-1])
    assert ping.gossip[-1].num == NO_ID_NUMBER  # an entry made elsewhere: looked up by id
    wired = decode(encode(ping))
    assert wired == ping and all(g.num == NO_ID_NUMBER for g in wired.gossip)
    for kind, r in readers.items():
        r.on_message(IN, wired if kind == "wire" else ping, T0 + 4000)
        r.check_invariants(full=True)
    views = {kind: sorted((n.id, n.pong_received, n.flags) for n in r.nodes.values()) for kind, r in readers.items()}
    assert views["number"] == views["dict"] == views["wire"]
    assert nid("z") in readers["number"].nodes  # the unknown node was added (and numbered)
    after = sorted((n.id, n.pong_received) for n in readers["number"].nodes.values() if n.id != nid("z"))
    assert after != before  # fresher pong times were taken

    # forgetting and renaming keep the index: a forgotten node's number finds nothing
    r = readers["number"]
    gone = r.nodes[nid("c")]
    r.forget(gone.id)
    r.check_invariants(full=True)
    assert gone.id not in r.nodes
    r.on_message(IN, ping, T0 + 5000)
    assert gone.id not in r.nodes  # (blacklisted: the entry is not re-added)
    r.check_invariants(full=True)


def test_header_is_reused_only_while_its_fields_hold():
    from gossip.codec import MF_FORCEACK

    a = build(["a myself,master - 1 0-99", "b master - 2 100-199"], current=2)
    h = a._header()
    assert a._header() is h and a._header() == h
    a._set_current_epoch(5)
    h5 = a._header()
    assert h5.current_epoch == 5 and h.current_epoch == 2
    forced = a._header(MF_FORCEACK)
    assert forced.mflags == MF_FORCEACK and a._header().mflags == 0
    a.add_slots([500])
    assert a._header().slots == bitmap_from_slots(list(range(100)) + [500])
    a.set_repl_offset(1234)
    assert a._header().offset == 1234


def test_full_check_of_many_tables_compares_each_shared_bitmap_once():
    """check_invariants(bitmaps_checked=) skips a (slot set, bitmap) pair it
    has compared, and still finds a cached bitmap that differs from its slots."""
    lines = ["a myself,master - 1 0-99", "b master - 2 100-199"]
    a = build(lines)
    b_node = a.nodes[nid("b")]
    good = b_node.slot_bitmap()
    checked: dict = {}
    a.check_invariants(full=True, bitmaps_checked=checked)
    assert (id(b_node.slots), id(good)) in checked
    b_node._bitmap = bitmap_from_slots(range(100, 201))  # one slot too many
    with pytest.raises(AssertionError, match="cached slot bitmap differs"):
        a.check_invariants(full=True, bitmaps_checked=checked)  # a new pair: compared
    with pytest.raises(AssertionError, match="cached slot bitmap differs"):
        a.check_invariants(full=True)
    b_node._bitmap = good
    a.check_invariants(full=True, bitmaps_checked=checked)


def test_full_checks_of_many_tables_work_out_a_shared_bitmaps_ranges_once():
    """Tables holding one bitmap object for a primary (as a simulated cluster's
    do) share the slot ranges the full check works out from it."""
    a = build(["a myself,master - 1 0-99", "b master - 2 100-199 300-309"])
    c = build(["c myself,master - 3 200-299", "b master - 2 100-199 300-309"])
    ab, cb = a.nodes[nid("b")], c.nodes[nid("b")]
    cb._bitmap, cb._ranges = ab.slot_bitmap(), None
    ab._ranges = None
    checked: dict = {}
    a.check_invariants(full=True, bitmaps_checked=checked)
    c.check_invariants(full=True, bitmaps_checked=checked)
    assert ab._ranges == ((100, 199), (300, 309)) and cb._ranges is ab._ranges
    assert c.slot_owner[305] == nid("b") and c.slot_owner[250] == nid("c")


def test_a_due_node_is_looked_at_again_off_the_heap():
    """The cron finds a node due once on its heap; the next run looks at it
    from the short list of nodes found due (no second pop) and puts it back
    on the heap at its new deadline once a pong came."""
    a = build(["a myself,master - 0", "b master - 0"])
    b = a.nodes[nid("b")]
    a.on_tick(T0)
    assert b.ping_sent == T0 and a._due_now == [b] and a._due == []
    a.on_message(out(nid("b")), msg(MsgType.PONG, "b"), T0 + 10)
    a.on_tick(T0 + 100)
    assert a._due_now == [] and a._due == [(T0 + 10 + TIMEOUT // 2 + 1, b._seq, b)]
    a.check_invariants(full=True)
    # silent from then on: due again at that deadline, pinged, and listed
    a.on_tick(T0 + 10 + TIMEOUT // 2 + 1)
    assert a._due_now == [b] and b.ping_sent == T0 + 10 + TIMEOUT // 2 + 1
    a.check_invariants(full=True)


def test_the_replica_census_follows_each_change():
    """The replica cron's census (orphaned primaries, the most working
    replicas, my primary's) is kept as replicas fail, recover and move, and
    always equals a count over the whole table."""
    a = build(["a myself,slave b 0", "b master - 1 0-99", "c master - 2 100-199", "d slave c 0"], current=2)

    def census():
        assert a._census_now() == a._replica_census()
        return a._census_now()

    assert census() == (0, 1, 1)
    a.on_message(IN, msg(MsgType.FAIL, "b", cur=2, cfg=1, body=FailBody(nid("d"))), T0)
    assert census() == (1, 1, 1)  # c serves slots, used to have a replica, has none working
    a.on_message(out(nid("d")), msg(MsgType.PONG, "d", cur=2, primary="c", flags=("slave",)), T0 + 10)
    assert "fail" not in a.nodes[nid("d")].flags and census() == (0, 1, 1)
    a.on_message(IN, msg(MsgType.PING, "d", cur=2, primary="b", flags=("slave",)), T0 + 20)
    assert census() == (1, 2, 2)  # d moved to b: c orphaned again, b has two
    a.on_message(IN, msg(MsgType.PING, "e", cur=2, primary="c", flags=("slave",), port=7009), T0 + 30)
    assert census() == (1, 2, 2)  # (an unknown sender is not added by its ping)


def test_the_table_lists_follow_nodes_added_by_gossip():
    """The ids a section draws from (kept between changes) take a node the
    gossip adds at the end, as the table's order has it."""
    lines = ["a myself,master - 1 0-99", "b master - 2 100-199"]
    a = build(lines, index_ids=True)
    b = build([ln.replace("myself,", "") if ln[0] == "a" else ln.replace(" master", " myself,master")
               for ln in lines], index_ids=True)
    assert a._node_ids() == [nid("a"), nid("b")]
    ping = Message(MsgType.PING, b._header(), (gossip("z"), gossip("y")))
    a.on_message(IN, ping, T0 + 1000)
    assert a._node_ids() == list(a.nodes) == [nid("a"), nid("b"), nid("z"), nid("y")]
    assert [n.id for n in a._objs] == list(a.nodes)
    a.check_invariants(full=True)
