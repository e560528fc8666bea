"""Failover in the cluster state machine (Redis 7.0 cluster.c rules), unit by unit:
votes, elections, rank delays, data age, no-failover, manual failover, replica migration."""

from __future__ import annotations

import pytest

from gossip import actions as A
from gossip.codec import MF_FORCEACK, MF_PAUSED, FailBody, Message, MsgType
from gossip.nodes_conf import parse, render
from gossip.state import (
    CANT_FAILOVER_DATA_AGE,
    CANT_FAILOVER_NONE,
    ClusterError,
    ClusterState,
)
from tests import test_gossip_state as base

T0 = base.T0
TIMEOUT = base.TIMEOUT  # 2000 ms
UNIT = min(500, TIMEOUT // 30)  # the election delay unit (66 ms)
nid, build, msg, out, IN, of, sent = base.nid, base.build, base.msg, base.out, base.IN, base.of, base.sent

# a, b, c primaries (epochs 1, 2, 3); d and e replicas of c.
CLUSTER = [
    "a master - 1 0-5000",
    "b master - 2 5001-10000",
    "c master - 3 10001-16383",
    "d slave c 0",
    "e slave c 0",
]
C_SLOTS = range(10001, 16384)


def view(me: str, current: int = 3, lines=CLUSTER, **kw) -> ClusterState:
    """The cluster as node ``me`` (one of a..e) sees it, links up."""
    rows = [line if line[0] != me else line.replace(" ", " myself,", 1) for line in lines]
    rows.sort(key=lambda r: "myself" not in r)
    st = build(rows, current=current, **kw)
    st.on_tick(T0)  # connect to everybody
    for node_id in list(st.nodes):
        if node_id != st.myself_id:
            st.on_link_up(node_id, T0)
    return st


def header_msg(st: ClusterState, t: MsgType, ch: str, *, cur: int | None = None, offset: int = 0,
               mflags: int = 0, body=None, slots=None) -> Message:
    """A message from node ``ch`` consistent with what ``st`` knows about it."""
    n = st.nodes[nid(ch)]
    src = st.nodes[n.primary_id] if n.is_replica else n
    m = msg(t, ch, cur=st.current_epoch if cur is None else cur, cfg=src.config_epoch,
            slots=sorted(src.slots) if slots is None else slots, primary=n.primary_id[0] if n.primary_id else None,
            flags=("slave",) if n.is_replica else ("master",), port=n.port, body=body)
    h = m.header
    return Message(t, type(h)(h.sender, h.current_epoch, h.config_epoch, h.flags, h.primary_id, h.slots,
                              h.ip, h.port, h.cport, offset, h.state, mflags, h.hostname), (), body)


def keep_alive(st: ClusterState, t: int, skip: str = "") -> None:
    """Every linked node but ``skip`` answers its pending PING at time t."""
    for n in list(st.nodes.values()):
        ch = n.id[0]
        if n is st.myself or ch in skip or not n.ping_sent or not n.link:
            continue
        st.on_message(out(n.id), header_msg(st, MsgType.PONG, ch), t)


def fail_c(st: ClusterState, t: int = T0) -> list:
    """A FAIL message about c, from b."""
    return st.on_message(IN, header_msg(st, MsgType.FAIL, "b", body=FailBody(nid("c"))), t)


def request_from(st: ClusterState, ch: str, epoch: int, mflags: int = 0, slots=None) -> Message:
    return header_msg(st, MsgType.FAILOVER_AUTH_REQUEST, ch, cur=epoch, mflags=mflags, slots=slots)


def acks(actions) -> list:
    return sent(actions, MsgType.FAILOVER_AUTH_ACK)


def run_until_request(st: ClusterState, t: int, limit: int = 10_000, skip: str = "c",
                      logs: list | None = None) -> tuple[int, list]:
    """Tick every 100 ms (answering pings) until the replica broadcasts its request."""
    end = t + limit
    while t < end:
        t += 100
        keep_alive(st, t, skip)
        acts = st.on_tick(t)
        if logs is not None:
            logs += [x.text for x in of(acts, A.Log)]
        if sent(acts, MsgType.FAILOVER_AUTH_REQUEST):
            return t, acts
    raise AssertionError("no FAILOVER_AUTH_REQUEST")


# ----------------------------------------------------------------------------- voting (primary side)


def test_a_primary_votes_once_per_epoch_and_saves_the_vote():
    a = view("a")
    fail_c(a)
    acts = a.on_message(IN, request_from(a, "d", 4), T0 + 1)
    (ack,) = acks(acts)
    assert ack.node_id == nid("d") and ack.msg.header.current_epoch == 4
    assert a.last_vote_epoch == 4 and a.current_epoch == 4
    assert A.SaveConfig(fsync=True) in acts
    assert "lastVoteEpoch 4" in render(a) and parse(render(a)).last_vote_epoch == 4
    # another replica of the same primary, same epoch: already voted
    acts = a.on_message(IN, request_from(a, "e", 4), T0 + 2)
    assert not acks(acts)
    assert any("already voted for epoch 4" in x.text for x in of(acts, A.Log))


def test_the_vote_survives_a_restart():
    a = view("a")
    fail_c(a)
    assert acks(a.on_message(IN, request_from(a, "d", 4), T0 + 1))
    text = render(a)
    assert "migrate_to" not in text
    a2 = ClusterState.from_conf(parse(text), port=7000, cport=17000, node_timeout_ms=TIMEOUT,
                                rng=base.random.Random(1), now_ms=T0 + 10)
    assert a2.last_vote_epoch == 4 and a2.current_epoch == 4
    a2.on_tick(T0 + 10)
    fail_c(a2, T0 + 11)
    acts = a2.on_message(IN, request_from(a2, "e", 4), T0 + 12)
    assert not acks(acts) and any("already voted for epoch 4" in x.text for x in of(acts, A.Log))


def test_no_second_vote_for_the_same_primary_within_two_node_timeouts():
    a = view("a")
    fail_c(a)
    assert acks(a.on_message(IN, request_from(a, "d", 4), T0 + 1))
    acts = a.on_message(IN, request_from(a, "e", 5), T0 + 2 * TIMEOUT)  # new epoch, too soon
    assert not acks(acts) and a.last_vote_epoch == 4
    assert any("can't vote about this master before 1 milliseconds" in x.text for x in of(acts, A.Log))
    acts = a.on_message(IN, request_from(a, "e", 6), T0 + 2 * TIMEOUT + 1)
    assert acks(acts) and a.last_vote_epoch == 6


def test_vote_refusals():
    a = view("a")
    # c is not failed: no vote without FORCEACK
    acts = a.on_message(IN, request_from(a, "d", 4), T0 + 1)
    assert not acks(acts) and a.last_vote_epoch == 0
    assert any("its master is up" in x.text for x in of(acts, A.Log))
    # a primary asking: refused
    acts = a.on_message(IN, request_from(a, "b", 5), T0 + 2)
    assert not acks(acts) and any("it is a master node" in x.text for x in of(acts, A.Log))
    fail_c(a, T0 + 3)
    # an old epoch: refused
    acts = a.on_message(IN, request_from(a, "d", 3), T0 + 4)
    assert not acks(acts) and any("reqEpoch (3) < curEpoch(5)" in x.text for x in of(acts, A.Log))
    # claimed slots served with a newer configEpoch: refused
    a.on_message(IN, msg(MsgType.UPDATE, "b", cur=5, cfg=2, body=base.UpdateBody(
        nid("b"), 5, base.bitmap_from_slots([16000]))), T0 + 5)
    assert a.slot_owner[16000] == nid("b")
    acts = a.on_message(IN, request_from(a, "d", 6, slots=C_SLOTS), T0 + 6)
    assert not acks(acts) and any("slot 16000 epoch (5) > reqEpoch (3)" in x.text for x in of(acts, A.Log))
    assert a.last_vote_epoch == 0


def test_manual_failover_request_is_voted_although_the_primary_is_up():
    a = view("a")
    acts = a.on_message(IN, request_from(a, "d", 4, mflags=MF_FORCEACK), T0 + 1)
    assert acks(acts) and a.last_vote_epoch == 4


def test_replicas_and_primaries_without_slots_do_not_vote():
    e = view("e")
    fail_c(e)
    assert not acks(e.on_message(IN, request_from(e, "d", 4), T0 + 1))
    lines = CLUSTER + ["f master - 0"]
    f = view("f", lines=lines)
    fail_c(f)
    assert not acks(f.on_message(IN, request_from(f, "d", 4), T0 + 1))
    assert e.last_vote_epoch == f.last_vote_epoch == 0


# ----------------------------------------------------------------------------- elections (replica side)


def test_election_delay_request_votes_and_win():
    d = view("d")
    d.set_repl_offset(1000)
    # the FAIL of my primary schedules the election at once (not at the next tick)
    acts = fail_c(d, T0 + 20)
    logs = [x.text for x in of(acts, A.Log)]
    assert any(x.startswith("Start of election delayed for")
               and "(rank #0, primary rank #0, offset 1000)" in x for x in logs)
    delay = d.failover_auth_time - (T0 + 20)
    assert UNIT <= delay < 2 * UNIT  # Valkey 9: min(500, node timeout / 30) + random
    # the offset goes to the siblings (e), not to the primaries
    pongs = sent(acts, MsgType.PONG)
    assert [p.node_id for p in pongs] == [nid("e")]
    # ... and the transport is asked to wake the state when the delay is over
    assert of(acts, A.Wake) == [A.Wake(d.failover_auth_time)]
    # a tick before that time asks for nothing more (the wake-up stands)
    acts = d.on_tick(T0 + 50)
    assert not sent(acts, MsgType.FAILOVER_AUTH_REQUEST) and not of(acts, A.Wake)

    t = d.failover_auth_time
    acts = d.on_timer(t)  # the wake-up: the request goes out then
    (req,) = sent(acts, MsgType.FAILOVER_AUTH_REQUEST)
    assert isinstance(req, A.Broadcast) and set(req.to) == {nid(x) for x in "abce"}
    assert req.msg.header.current_epoch == 4 and d.failover_auth_epoch == 4
    assert req.msg.header.config_epoch == 3 and req.msg.header.mflags == 0
    assert A.SaveConfig(fsync=True) in acts

    # votes: a replica's and a stale one do not count; quorum is 2 of 3
    d.on_message(out(nid("e")), header_msg(d, MsgType.FAILOVER_AUTH_ACK, "e", cur=4), t + 1)
    d.on_message(out(nid("a")), header_msg(d, MsgType.FAILOVER_AUTH_ACK, "a", cur=3), t + 1)
    assert d.failover_auth_count == 0
    acts = d.on_message(out(nid("a")), header_msg(d, MsgType.FAILOVER_AUTH_ACK, "a", cur=4), t + 2)
    assert d.failover_auth_count == 1 and d.myself.is_replica
    acts = d.on_message(out(nid("b")), header_msg(d, MsgType.FAILOVER_AUTH_ACK, "b", cur=4), t + 3)
    me = d.myself
    assert me.is_primary and A.Replicate(None) in acts
    assert me.config_epoch == 4 and set(C_SLOTS) <= me.slots and not d.nodes[nid("c")].slots
    assert {p.node_id for p in sent(acts, MsgType.PONG)} == {nid(x) for x in "abce"}
    assert A.SaveConfig(fsync=True) in acts
    assert any("Failover election won" in x.text for x in of(acts, A.Log))


def test_rank_follows_sibling_offsets():
    d = view("d")
    d.set_repl_offset(500)
    # e announced a better offset: d is rank 1
    d.on_message(IN, header_msg(d, MsgType.PING, "e", offset=900), T0 + 10)
    assert d.replica_rank() == 1
    fail_c(d, T0 + 20)
    assert d.failover_auth_rank == 1 and 3 * UNIT <= d.failover_auth_time - (T0 + 20) < 4 * UNIT
    # a nofailover sibling does not count
    e = d.nodes[nid("e")]
    d._add_flags(e, "nofailover")
    assert d.replica_rank() == 0
    d._del_flags(e, "nofailover")


def test_rank_worsens_while_waiting():
    d = view("d")
    d.set_repl_offset(500)
    fail_c(d, T0 + 20)
    d.on_tick(T0 + 50)
    first = d.failover_auth_time
    assert d.failover_auth_rank == 0
    d.on_message(IN, header_msg(d, MsgType.PING, "e", offset=900), T0 + 100)
    acts = d.on_tick(T0 + 150)
    assert d.failover_auth_rank == 1 and d.failover_auth_time == first + 2 * UNIT
    assert any(f"Replica rank updated to #1, added {2 * UNIT} milliseconds of delay." == x.text
               for x in of(acts, A.Log))


def test_election_expires_and_is_retried_with_a_new_epoch():
    d = view("d")
    fail_c(d, T0)
    t, _ = run_until_request(d, T0)
    start = d.failover_auth_time
    assert d.current_epoch == 4
    auth_timeout = max(2 * TIMEOUT, 2000)
    logs: list = []
    t2, acts = run_until_request(d, t, limit=3 * auth_timeout, logs=logs)
    assert d.current_epoch == 5 and d.failover_auth_epoch == 5
    # the retry was scheduled after 2 x the election timeout, plus the delay
    assert t2 - start >= 2 * auth_timeout + UNIT
    # in between, the expired attempt was noted (and logged once the primary had failed long enough)
    assert "Currently unable to failover: Failover attempt expired." in logs


def test_equal_offsets_rank_by_node_id():
    """Valkey's tie-break: siblings with the same offset never share a rank."""
    d, e = view("d"), view("e")
    for st, other in ((d, "e"), (e, "d")):
        st.set_repl_offset(700)
        st.on_message(IN, header_msg(st, MsgType.PING, other, offset=700), T0 + 10)
    assert sorted([d.replica_rank(), e.replica_rank()]) == [0, 1]
    assert d.replica_rank() == (1 if nid("e") < nid("d") else 0)


# a, b, c primaries with a replica each (d, e, f); c and b fail together.
THREE_SHARDS = [
    "a master - 1 0-5000",
    "b master - 2 5001-10000",
    "c master - 3 10001-16383",
    "d slave a 0",
    "e slave b 0",
    "f slave c 0",
]


def test_failed_primaries_are_ranked_across_shards():
    f = view("f", lines=THREE_SHARDS)
    e = view("e", lines=THREE_SHARDS)
    for st in (e, f):
        for who in "bc":
            st.on_message(IN, header_msg(st, MsgType.FAIL, "a", body=FailBody(nid(who))), T0)
    # b's id sorts before c's: b's shard goes first, c's one unit later
    assert e.failed_primary_rank() == 0 and f.failed_primary_rank() == 1
    # (each scheduled its election when its primary's FAIL came)
    assert UNIT <= e.failover_auth_time - T0 < 2 * UNIT
    assert 2 * UNIT <= f.failover_auth_time - T0 < 3 * UNIT
    # b's failure is cleared (it is reachable again): f moves forward one unit
    before = f.failover_auth_time
    f._del_flags(f.nodes[nid("b")], "fail")
    acts = f.on_tick(T0 + 60)
    assert f.failover_failed_primary_rank == 0 and f.failover_auth_time == before - UNIT
    assert any(x.text == f"Failed primary rank updated to #0, added {-UNIT} milliseconds of delay."
               for x in of(acts, A.Log))
    # a primary failed longer than node timeout x validity factor does not count
    f._add_flags(f.nodes[nid("b")], "fail")
    f.nodes[nid("b")].fail_time = T0 - 10 * TIMEOUT - 1
    assert f.failed_primary_rank() == 0


def test_a_sibling_request_postpones_my_election():
    d = view("d")
    d.set_repl_offset(1000)
    fail_c(d, T0 + 20)
    d.on_tick(T0 + 50)
    assert d.failover_auth_time < T0 + 50 + 2 * UNIT
    # e asks first (its delay ran out sooner, or my loop ran late): I wait for its election
    auth_timeout = max(2 * TIMEOUT, 2000)
    acts = d.on_message(IN, request_from(d, "e", 4), T0 + 60)
    # ... then my own random part and failed-primary rank again (rank 0 here)
    assert T0 + 60 + auth_timeout <= d.failover_auth_time < T0 + 60 + auth_timeout + UNIT
    assert not d.failover_auth_sent
    assert any("asked for votes first" in x.text for x in of(acts, A.Log))
    for k in range(1, auth_timeout // 100):
        assert not sent(d.on_tick(T0 + 60 + 100 * k), MsgType.FAILOVER_AUTH_REQUEST)
    # e did not win: I try once its election has expired
    t, _ = run_until_request(d, T0 + 60 + auth_timeout - 100, limit=1000)
    assert t >= T0 + 60 + auth_timeout
    # a forced (manual) request of a sibling postpones nothing
    d2 = view("d")
    fail_c(d2, T0 + 20)
    d2.on_tick(T0 + 50)
    scheduled = d2.failover_auth_time
    d2.on_message(IN, request_from(d2, "e", 4, mflags=MF_FORCEACK), T0 + 60)
    assert d2.failover_auth_time == scheduled and d2.sibling_election_until == 0


def test_data_age_and_validity_factor():
    limit = 10_000 + TIMEOUT * 10  # repl-ping-replica-period + node timeout x factor
    d = view("d")
    d.set_master_link_down_since(T0 - (limit + TIMEOUT + 1000))
    fail_c(d, T0)
    for k in range(1, 30):
        acts = d.on_tick(T0 + 100 * k)
        assert not sent(acts, MsgType.FAILOVER_AUTH_REQUEST)
    assert d.cant_failover_reason == CANT_FAILOVER_DATA_AGE and d.failover_auth_time == 0
    # just inside the limit: it goes
    d.set_master_link_down_since(T0 - (limit + TIMEOUT - 4000))
    run_until_request(d, T0 + 3000)
    # factor 0: always valid
    d2 = view("d", replica_validity_factor=0)
    d2.set_master_link_down_since(T0 - 10**9)
    fail_c(d2, T0)
    run_until_request(d2, T0)
    # link up: the age is the time since the last interaction
    d3 = view("d")
    d3.set_master_link_down_since(None, T0 - 10**6)
    fail_c(d3, T0)
    d3.on_tick(T0 + 100)
    assert d3.cant_failover_reason == CANT_FAILOVER_DATA_AGE


def test_no_failover_flag():
    d = view("d", replica_no_failover=True)
    assert "nofailover" in d.myself.flags and "nofailover" in render(d).split("\n")[0]
    assert "nofailover" in d._header().flags
    fail_c(d, T0)
    for k in range(1, 40):
        assert not sent(d.on_tick(T0 + 100 * k), MsgType.FAILOVER_AUTH_REQUEST)
    assert d.cant_failover_reason == CANT_FAILOVER_NONE
    # a manual FORCE failover still runs
    d.manual_failover("force", now=T0 + 4000)
    run_until_request(d, T0 + 4000, limit=300)
    d.set_replica_no_failover(False)
    assert "nofailover" not in d.myself.flags


def test_no_election_while_the_primary_is_only_pfail_or_has_no_slots():
    d = view("d")
    d._add_flags(d.nodes[nid("c")], "pfail")
    for k in range(1, 30):
        assert not sent(d.on_tick(T0 + 100 * k), MsgType.FAILOVER_AUTH_REQUEST)
    assert d.failover_auth_time == 0


# ----------------------------------------------------------------------------- manual failover


def test_manual_failover_errors():
    a = view("a")
    with pytest.raises(ClusterError, match="^ERR You should send CLUSTER FAILOVER to a replica$"):
        a.manual_failover("", now=T0)
    d = view("d")
    with pytest.raises(ClusterError, match="^ERR syntax error$"):
        d.manual_failover("sideways", now=T0)
    fail_c(d, T0)
    with pytest.raises(ClusterError, match="^ERR Master is down or failed, please use CLUSTER FAILOVER FORCE$"):
        d.manual_failover("", now=T0)
    d2 = view("d")
    d2.on_link_down(nid("c"), T0)
    with pytest.raises(ClusterError, match="please use CLUSTER FAILOVER FORCE"):
        d2.manual_failover("", now=T0)
    del d2.nodes[nid("c")]
    d2._ids_cache = None
    with pytest.raises(ClusterError, match="^ERR I'm a replica but my master is unknown to me$"):
        d2.manual_failover("FORCE", now=T0)


def test_manual_failover_default_mode_end_to_end():
    d = view("d")
    c = view("c")
    a = view("a")
    d.set_repl_offset(400)
    acts = d.manual_failover("", now=T0 + 10)
    (mfstart,) = sent(acts, MsgType.MFSTART)
    assert mfstart.node_id == nid("c") and d.mf_end == T0 + 10 + 5000

    # the primary pauses its clients and answers with a PING...
    link = base.LinkInfo(inbound=True, peer_ip="127.0.0.1", local_ip="127.0.0.1", conn_id=3)
    acts = c.on_message(link, mfstart.msg, T0 + 11)
    assert A.PauseClients(T0 + 11 + 10_000) in acts
    (ping,) = sent(acts, MsgType.PING)
    assert isinstance(ping, A.Reply) and ping.link == link
    assert not ping.msg.header.mflags & MF_PAUSED  # the offset is not final yet
    # ... and, once the server reported its paused offset, pings d every tick with PAUSED
    c.set_repl_offset(500)
    acts = c.on_tick(T0 + 100)
    to_d = [s for s in sent(acts, MsgType.PING) if s.node_id == nid("d")]
    assert to_d and to_d[0].msg.header.mflags & MF_PAUSED and to_d[0].msg.header.offset == 500
    acts = c.on_tick(T0 + 200)
    assert [s for s in sent(acts, MsgType.PING) if s.node_id == nid("d")]

    acts = d.on_message(out(nid("c")), to_d[0].msg, T0 + 201)
    assert d.mf_primary_offset == 500
    assert not sent(acts, MsgType.FAILOVER_AUTH_REQUEST)  # 400 < 500: wait
    assert not sent(d.on_tick(T0 + 300), MsgType.FAILOVER_AUTH_REQUEST)
    d.set_repl_offset(500)
    acts = d.on_tick(T0 + 400)
    (req,) = sent(acts, MsgType.FAILOVER_AUTH_REQUEST)
    assert req.msg.header.mflags & MF_FORCEACK and req.msg.header.current_epoch == 4
    assert any("manual failover can start" in x.text for x in of(acts, A.Log))

    # a votes although c is up
    (ack,) = acks(a.on_message(IN, req.msg, T0 + 401))
    d.on_message(out(nid("a")), ack.msg, T0 + 402)
    acts = d.on_message(out(nid("b")), header_msg(d, MsgType.FAILOVER_AUTH_ACK, "b", cur=4), T0 + 403)
    assert d.myself.is_primary and A.Replicate(None) in acts and d.mf_end == 0
    assert d.myself.config_epoch == 4
    pong = next(p for p in sent(acts, MsgType.PONG) if p.node_id == nid("c"))

    # the old primary learns it lost its slots: it becomes a replica of d and unpauses
    acts = c.on_message(IN, pong.msg, T0 + 404)
    assert c.myself.is_replica and c.myself.primary_id == nid("d")
    assert A.Replicate(nid("d")) in acts and A.UnpauseClients() in acts
    assert c.mf_end == 0


def test_election_and_manual_failover_move_along_their_tables():
    """The election and the manual failover are state machines (ELECTION_STEPS,
    MF_STEPS): a CLUSTER FAILOVER walks both; a step off a table trips at once,
    and the invariants catch a state that disagrees with its fields."""
    from gossip.state import (
        ELECTION_ASKED, ELECTION_IDLE, ELECTION_SCHEDULED, ELECTION_STEPS, MF_CAN_START,
        MF_CATCHING_UP, MF_NONE, MF_SERVING, MF_STEPS, MF_WAIT_OFFSET,
    )
    assert ELECTION_ASKED not in ELECTION_STEPS[ELECTION_IDLE]
    assert ELECTION_SCHEDULED in ELECTION_STEPS[ELECTION_ASKED]  # a retry
    assert MF_CAN_START not in MF_STEPS[MF_WAIT_OFFSET] and MF_SERVING not in MF_STEPS[MF_CAN_START]
    d, c = view("d"), view("c")
    assert d.election == ELECTION_IDLE and d.mf_state == c.mf_state == MF_NONE
    d.set_repl_offset(400)
    (mfstart,) = sent(d.manual_failover("", now=T0 + 10), MsgType.MFSTART)
    assert d.mf_state == MF_WAIT_OFFSET
    c.on_message(IN, mfstart.msg, T0 + 11)
    assert c.mf_state == MF_SERVING
    c.set_repl_offset(500)
    to_d = [s for s in sent(c.on_tick(T0 + 100), MsgType.PING) if s.node_id == nid("d")]
    d.on_message(out(nid("c")), to_d[0].msg, T0 + 101)
    assert d.mf_state == MF_CATCHING_UP and d.election == ELECTION_IDLE
    with pytest.raises(AssertionError, match="manual failover catching-up -> serving"):
        d._mf_step(MF_SERVING)
    with pytest.raises(AssertionError, match="election idle -> asked"):
        d._election_step(ELECTION_ASKED)
    d.set_repl_offset(500)
    assert sent(d.on_tick(T0 + 200), MsgType.FAILOVER_AUTH_REQUEST)
    assert d.mf_state == MF_CAN_START and d.mf_can_start
    assert d.election == ELECTION_ASKED and d.failover_auth_sent
    d.check_invariants(full=True)
    end, d.mf_end = d.mf_end, 0
    with pytest.raises(AssertionError, match="manual failover can-start, end 0"):
        d.check_invariants()
    d.mf_end = end
    epoch, d.failover_auth_epoch = d.failover_auth_epoch, d.current_epoch + 1
    with pytest.raises(AssertionError, match="election epoch"):
        d.check_invariants()
    d.failover_auth_epoch = epoch
    c.mf_replica = None
    with pytest.raises(AssertionError, match="manual failover served"):
        c.check_invariants()
    # the primary's end: the timeout ends it (and unpauses)
    c.mf_replica = nid("d")
    assert A.UnpauseClients() in c.on_tick(T0 + 11 + 5001)
    assert c.mf_state == MF_NONE and c.mf_end == 0


def test_manual_failover_times_out():
    d = view("d")
    c = view("c")
    acts = d.manual_failover("", now=T0)
    (mfstart,) = sent(acts, MsgType.MFSTART)
    c.on_message(IN, mfstart.msg, T0 + 1)
    c.set_repl_offset(10)
    assert c.mf_end == T0 + 1 + 5000
    acts = c.on_tick(T0 + 5001)
    assert A.UnpauseClients() not in acts
    acts = c.on_tick(T0 + 5002)
    assert A.UnpauseClients() in acts and c.mf_end == 0 and c.mf_replica is None
    assert any(x.text == "Manual failover timed out." for x in of(acts, A.Log))
    # the replica never got the offset: it gives up too, without an election
    for k in range(1, 52):
        assert not sent(d.on_tick(T0 + 100 * k), MsgType.FAILOVER_AUTH_REQUEST)
    assert d.mf_end == 0 and d.myself.is_replica


def test_manual_failover_force_starts_at_once():
    # the primary up (no offset agreement)
    d = view("d")
    d.manual_failover("force", now=T0)
    acts = d.on_tick(T0 + 100)
    (req,) = sent(acts, MsgType.FAILOVER_AUTH_REQUEST)  # no 500 ms delay, no rank
    assert req.msg.header.mflags & MF_FORCEACK
    # an automatic election already scheduled (my primary FAIL) keeps its time,
    # as in Redis, and asks with FORCEACK
    d1 = view("d")
    fail_c(d1, T0)
    d1.manual_failover("force", now=T0 + 1)
    assert d1.failover_auth_time - T0 < 2 * UNIT
    (req,) = sent(d1.on_timer(d1.failover_auth_time), MsgType.FAILOVER_AUTH_REQUEST)
    assert req.msg.header.mflags & MF_FORCEACK


def test_a_replica_ignores_mfstart():
    # e names d its primary, but d is itself a replica (of c): d serves nothing
    d = view("d", lines=CLUSTER[:4] + ["e slave d 0"])
    acts = d.on_message(IN, header_msg(d, MsgType.MFSTART, "e"), T0 + 1)
    assert not of(acts, A.PauseClients) and d.mf_state == "none" and d.mf_replica is None


def test_manual_failover_takeover_needs_no_votes():
    d = view("d")
    acts = d.manual_failover("TAKEOVER", now=T0)
    me = d.myself
    assert me.is_primary and A.Replicate(None) in acts
    assert me.config_epoch == 4 and d.current_epoch == 4 and set(C_SLOTS) <= me.slots
    assert not sent(acts, MsgType.FAILOVER_AUTH_REQUEST)
    assert {p.node_id for p in sent(acts, MsgType.PONG)} == {nid(x) for x in "abce"}
    assert A.SaveConfig(fsync=True) in acts


# ----------------------------------------------------------------------------- replica migration

# a has replicas d and e; b's only replica f has failed: b is orphaned.
MIGRATION = [
    "a master - 1 0-5000",
    "b master - 2 5001-10000",
    "c master - 3 10001-16383",
    "d slave a 0",
    "e slave a 0",
    "f slave,fail b 0",
    "g slave c 0",
]


def _run(st: ClusterState, t0: int, ms: int) -> list:
    acts = []
    for t in range(t0 + 100, t0 + ms + 1, 100):
        keep_alive(st, t, skip="f")
        acts += st.on_tick(t)
    return acts


def test_replica_migration_to_an_orphaned_primary():
    d = view("d", lines=MIGRATION)
    assert "migrate_to" in d.nodes[nid("b")].flags
    acts = _run(d, T0, 4000)
    assert d.myself.primary_id == nid("a")  # b orphaned for less than 5 s
    acts = _run(d, T0 + 4000, 3000)
    assert d.myself.primary_id == nid("b") and A.Replicate(nid("b")) in acts
    assert any(x.text == f"Migrating to orphaned master {nid('b')}" for x in of(acts, A.Log))


def test_only_the_smallest_id_migrates():
    e = view("e", lines=MIGRATION)
    _run(e, T0, 8000)
    assert e.myself.primary_id == nid("a")


def test_migration_barrier_and_switch():
    d = view("d", lines=MIGRATION, migration_barrier=2)
    _run(d, T0, 8000)
    assert d.myself.primary_id == nid("a")  # a would keep only 1 replica
    d = view("d", lines=MIGRATION, allow_replica_migration=False)
    _run(d, T0, 8000)
    assert d.myself.primary_id == nid("a")
    # a replica of a primary with a single replica never moves
    g = view("g", lines=MIGRATION)
    _run(g, T0, 8000)
    assert g.myself.primary_id == nid("c")


def test_a_primary_that_never_had_replicas_is_not_orphaned():
    lines = [x for x in MIGRATION if not x.startswith("f ")]
    d = view("d", lines=lines)
    assert "migrate_to" not in d.nodes[nid("b")].flags
    _run(d, T0, 8000)
    assert d.myself.primary_id == nid("a")


# ----------------------------------------------------------------------------- hostnames, offsets


def _with_hostname(m: Message, hostname: str) -> Message:
    h = m.header
    return Message(m.type, type(h)(h.sender, h.current_epoch, h.config_epoch, h.flags, h.primary_id,
                                   h.slots, h.ip, h.port, h.cport, h.offset, h.state, h.mflags,
                                   hostname), m.gossip, m.body)


def test_hostname_learned_from_pings_and_cleared_when_absent():
    a = view("a")
    m = _with_hostname(header_msg(a, MsgType.PING, "b"), "host-b.example")
    acts = a.on_message(IN, m, T0 + 10)
    assert a.nodes[nid("b")].hostname == "host-b.example"
    assert of(acts, A.SaveConfig)
    assert ",host-b.example " in render(a)
    a.on_message(IN, header_msg(a, MsgType.PING, "b"), T0 + 20)
    assert a.nodes[nid("b")].hostname == ""
    a.set_hostname("host-a.example")
    assert a._header().hostname == "host-a.example"


def test_first_replica_offset_is_announced_to_every_node():
    d = view("d")
    assert not sent(d.on_tick(T0 + 100), MsgType.PONG)
    d.set_repl_offset(14)
    pongs = sent(d.on_tick(T0 + 200), MsgType.PONG)
    assert len(pongs) == 1 and set(pongs[0].to) == {nid(x) for x in "abce"}
    assert pongs[0].msg.header.offset == 14
    d.set_repl_offset(28)                      # only the first one
    assert not sent(d.on_tick(T0 + 300), MsgType.PONG)
