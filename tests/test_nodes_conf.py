"""nodes.conf / CLUSTER NODES: Redis 7.0's format, round trips, corrupt and truncated files."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossip.bitmap import slot_ranges
from gossip.nodes_conf import (
    NodeRecord,
    NodesConf,
    NodesConfError,
    format_conf,
    parse,
    render,
    render_cluster_nodes,
    render_flags,
    render_nodes_line,
)
from gossip.sim import Simulator
from gossip.state import ClusterState

M1 = "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca"
M2 = "67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1"
M3 = "292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f"
R1 = "07c37dfeb235213a872192d90877d0cd55635b91"
R2 = "6ec23923021cf3ffec47632106199cb7f496ce01"
R3 = "824fe116063bc5fcf9f4ffd895bc17aee7731ac3"

SAMPLE = f"""\
{M1} 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 [5460->-{M2}] [5461-<-{M2}]
{M2} 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
{M3} 127.0.0.1:30003@31003 master,fail? - 1426238317000 1426238318243 3 connected 10923-16383
{R2} 127.0.0.1:30005@31005 slave {M2} 0 1426238316232 2 connected
{R3} 127.0.0.1:30006@31006 slave,fail {M3} 0 1426238317741 3 disconnected
{R1} 127.0.0.1:30004@31004,host-4.example slave,nofailover {M1} 0 1426238317239 1 connected
vars currentEpoch 6 lastVoteEpoch 4
"""

NOW = 1_700_000_000_000


def test_sample_parses_and_renders_back_exactly():
    conf = parse(SAMPLE)
    assert conf.current_epoch == 6 and conf.last_vote_epoch == 4
    me = conf.myself
    assert me.id == M1 and me.slots == ((0, 5460),)
    assert me.migrating == ((5460, M2),) and me.importing == ((5461, M2),)
    r1 = next(r for r in conf.nodes if r.id == R1)
    assert r1.hostname == "host-4.example" and r1.primary_id == M1 and "nofailover" in r1.flags
    assert "pfail" in conf.nodes[2].flags
    assert format_conf(conf) == SAMPLE


def test_state_from_conf_renders_as_redis_reloads():
    st_ = ClusterState.from_conf(
        parse(SAMPLE), port=30001, cport=31001, node_timeout_ms=15000, rng=random.Random(1), now_ms=NOW,
    )
    # Redis reloads: set times become "now", links start disconnected, replicas'
    # config epochs follow their primary's.
    expected = []
    for line in SAMPLE.splitlines()[:-1]:
        f = line.split(" ")
        f[4] = str(NOW) if f[4] != "0" else "0"
        f[5] = str(NOW) if f[5] != "0" else "0"
        if "myself" not in f[2]:
            f[7] = "disconnected"
        expected.append(" ".join(f))
    expected.append("vars currentEpoch 6 lastVoteEpoch 4")
    assert render(st_) == "\n".join(expected) + "\n"
    assert st_.nodes[R2].config_epoch == 0  # a replica follows its primary
    assert st_.slot_owner[0] == M1 and st_.slot_owner[16383] == M3
    assert st_.myself.migrating == {5460: M2} and st_.importing == {5461: M2}


def test_cluster_nodes_lines():
    st_ = ClusterState("a" * 40, "127.0.0.1", 7000, 17000, 15000, random.Random(1), NOW)
    st_.add_slots([0, 1, 2, 5, 16383], now=NOW)
    st_.meet("127.0.0.1", 7001, now=NOW)
    hs = next(n for n in st_.nodes.values() if n.in_handshake)
    lines = render_cluster_nodes(st_).splitlines()
    assert lines[0] == f"{'a' * 40} 127.0.0.1:7000@17000 myself,master - 0 0 0 connected 0-2 5 16383"
    assert lines[1] == f"{hs.id} 127.0.0.1:7001@17001 handshake - 0 0 0 disconnected"
    # nodes.conf leaves handshake nodes out
    assert hs.id not in render(st_)
    assert render_nodes_line(st_.myself, st_) == lines[0]
    assert render_flags(set()) == "noflags"
    assert render_flags({"pfail", "master", "myself", "meet"}) == "myself,master,fail?"


def test_empty_file_means_no_config():
    assert parse("") is None



GOOD = f"{M1} 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-100\n"
VARS = "vars currentEpoch 1 lastVoteEpoch 0\n"


@pytest.mark.parametrize(
    "text, line_number, reason",
    [
        ("garbage\n" + VARS, 1, "at least 8 fields"),
        (GOOD.replace(M1, "xyz", 1) + VARS, 1, "bad node id"),
        (GOOD.replace(M1, M1.upper(), 1) + VARS, 1, "bad node id"),
        (GOOD.replace("127.0.0.1:30001@31001", "127.0.0.1"), 1, "bad address"),
        (GOOD.replace("30001@", "30x01@") + VARS, 1, "bad port"),
        (GOOD.replace("@31001", "@99999") + VARS, 1, "bad port"),
        (GOOD.replace("myself,master", "myself,boss") + VARS, 1, "unknown flag"),
        (GOOD.replace("myself,master", "myself,master,slave") + VARS, 1, "both master and slave"),
        (GOOD.replace("myself,master", "myself,master,fail") + VARS, 1, "'myself' node must be"),
        (GOOD.replace("myself,master -", f"myself,slave {M2}").replace(" 0-100", "") + VARS, 1, "has no line of its own"),
        (GOOD.replace("myself,master -", f"myself,slave {M2}") + VARS, 1, "a slave cannot own slots"),
        (GOOD.replace("myself,master -", "myself,slave -") + VARS, 1, "slave exactly when"),
        (GOOD + GOOD.replace(M1, M2, 1).replace("0-100", "200") + VARS, 2, "second 'myself'"),
        (GOOD + GOOD.replace("myself,", "").replace("0-100", "300") + VARS, 2, "listed twice"),
        (GOOD.replace("0-100", "0-16384") + VARS, 1, "bad slot or slot range"),
        (GOOD.replace("0-100", "100-5") + VARS, 1, "empty slot range"),
        (GOOD.replace("0-100", "0-100 x") + VARS, 1, "bad slot or slot range"),
        (GOOD + GOOD.replace(M1, M2, 1).replace("myself,", "").replace("0-100", "50") + VARS, 2, "slot 50 is also assigned on line 1"),
        (GOOD.replace("0-100", f"0-100 [5->-{M2}"), 1, "bad slot token"),
        (GOOD.replace("0-100", "0-100 [5->-nope]") + VARS, 1, "bad node id in"),
        (GOOD.replace("0-100", f"0-100 [5=>-{M2}]") + VARS, 1, "bad migrating/importing"),
        (GOOD.replace("0-100", f"0-100 [99999->-{M2}]") + VARS, 1, "bad slot in"),
        (GOOD.replace(" connected", " sleeping") + VARS, 1, "bad link state"),
        (GOOD.replace(" 0 0 1 ", " 0 x 1 ") + VARS, 1, "must be numbers"),
        (GOOD + "vars currentEpoch 1 lastVoteEpoch\n", 2, "name/value pairs"),
        (GOOD + "vars currentEpoch one lastVoteEpoch 0\n", 2, "not a number"),
        (GOOD + VARS + GOOD.replace(M1, M2, 1).replace("myself,", "").replace("0-100", "200"), 3, "after the 'vars' line"),
        (GOOD, 1, "no 'vars' line"),
        (GOOD + VARS.rstrip("\n"), 2, "no newline"),
        (VARS, 1, "no 'myself' node"),
        ("\n\n\n", 3, "no 'myself' node"),
        (GOOD.replace("myself,master", "master") + VARS, 2, "no 'myself' node"),
    ],
)
def test_corrupt_files(text, line_number, reason):
    with pytest.raises(NodesConfError) as e:
        parse(text)
    err = e.value
    assert reason in err.reason, err.reason
    assert err.line_number == line_number
    assert str(err).startswith("Unrecoverable error: corrupted cluster config file")
    assert "To recover" in str(err)


def test_every_truncation_is_detected():
    for k in range(1, len(SAMPLE)):
        with pytest.raises(NodesConfError):
            parse(SAMPLE[:k])


def test_blank_lines_and_unknown_vars_are_tolerated():
    text = GOOD + "\n\n" + "vars currentEpoch 3 lastVoteEpoch 1 futureVar 7\n\n\n"
    conf = parse(text)
    assert conf.current_epoch == 3 and conf.last_vote_epoch == 1


def test_old_format_without_bus_port():
    conf = parse(GOOD.replace("@31001", "") + VARS)
    assert conf.myself.cport == 40001


def test_ipv6_address():
    conf = parse(GOOD.replace("127.0.0.1", "::1") + VARS)
    assert conf.myself.ip == "::1" and conf.myself.port == 30001


# ----------------------------------------------------------------------------- property

hex_ids = st.text(alphabet="0123456789abcdef", min_size=40, max_size=40)
extra_flags = st.frozensets(st.sampled_from(["pfail", "fail", "handshake", "noaddr", "nofailover"]))


@st.composite
def confs(draw):
    ids = draw(st.lists(hex_ids, min_size=1, max_size=6, unique=True))
    n = len(ids)
    roles = ["master"] + [draw(st.sampled_from(["master", "slave", None])) for _ in range(n - 1)]
    masters = [i for i in range(n) if roles[i] == "master"]
    # carve the slot space into chunks owned by masters or nobody
    cuts = sorted(set(draw(st.lists(st.integers(1, 16383), max_size=8))))
    owned: dict[int, set[int]] = {i: set() for i in range(n)}
    for a, b in zip([0] + cuts, cuts + [16384]):
        who = draw(st.sampled_from(masters + [None]))
        if who is not None:
            owned[who].update(range(a, b))
    myself_slave = n > 1 and draw(st.booleans())
    records = []
    for i, nid in enumerate(ids):
        flags = set()
        role = roles[i]
        if i == 0:
            flags.add("myself")
            role = "slave" if myself_slave else "master"
            flags |= draw(st.frozensets(st.just("nofailover")))
        else:
            flags |= draw(extra_flags)
        if role:
            flags.add(role)
        primary = None
        if role == "slave":
            if i == 0:
                primary = ids[draw(st.integers(1, n - 1))]
            else:  # another node, or one that has no line of its own
                stranger = draw(hex_ids.filter(lambda x: x != nid))
                primary = draw(st.sampled_from(ids[:i] + ids[i + 1:] + [stranger]))
        slots = owned[i] if role == "master" and not (i == 0 and myself_slave) else set()
        mig: dict[int, str] = {}
        imp: dict[int, str] = {}
        if i == 0:
            for s in draw(st.lists(st.integers(0, 16383), max_size=4, unique=True)):
                (mig if draw(st.booleans()) else imp)[s] = draw(st.sampled_from(ids))
        records.append(NodeRecord(
            id=nid,
            ip=draw(st.sampled_from(["127.0.0.1", "10.1.2.3", "::1", "fe80::1:2", ""])),
            port=draw(st.integers(0, 65535)),
            cport=draw(st.integers(0, 65535)),
            flags=frozenset(flags),
            primary_id=primary,
            ping_sent=draw(st.integers(0, 2**63)),
            pong_received=draw(st.integers(0, 2**63)),
            config_epoch=draw(st.integers(0, 2**64 - 1)),
            link_state=draw(st.sampled_from(["connected", "disconnected"])),
            slots=tuple(slot_ranges(slots)),
            migrating=tuple(sorted(mig.items())),
            importing=tuple(sorted(imp.items())),
            hostname=draw(st.sampled_from(["", "db-1.example.com", "h"])),
        ))
    order = draw(st.permutations(records))
    return NodesConf(tuple(order), draw(st.integers(0, 2**64 - 1)), draw(st.integers(0, 2**64 - 1)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(confs())
def test_round_trip(conf):
    text = format_conf(conf)
    assert parse(text) == conf
    assert format_conf(parse(text)) == text


def test_state_round_trip_through_a_simulated_cluster():
    sim = Simulator(6, seed=3)
    sim.assign_slots_evenly([0, 1, 2])
    sim.meet_all()
    assert sim.run_until(lambda s: s.tables_converged(), 20_000)
    sim.call(3, "replicate", sim.node_id(0))
    sim.call(4, "replicate", sim.node_id(1))
    sim.call(0, "set_slot_migrating", 7, sim.node_id(1))
    sim.call(1, "set_slot_importing", 7, sim.node_id(0))
    assert sim.run_until(lambda s: s.tables_converged() and s.slots_converged() and s.epochs_distinct(), 30_000)
    for i in range(6):
        st_ = sim.state(i)
        text = render(st_)
        back = ClusterState.from_conf(
            parse(text), port=st_.myself.port, cport=st_.myself.cport,
            node_timeout_ms=2000, rng=random.Random(0), now_ms=sim.now,
        )

        def norm(conf: NodesConf) -> NodesConf:
            return dataclasses.replace(conf, nodes=tuple(
                dataclasses.replace(
                    r, ping_sent=bool(r.ping_sent), pong_received=bool(r.pong_received),
                    link_state="connected" if "myself" in r.flags else "-",
                ) for r in conf.nodes
            ))

        assert norm(parse(render(back))) == norm(parse(text))
        assert back.myself_id == st_.myself_id
        assert back.current_epoch == st_.current_epoch
        assert back.slot_owner == st_.slot_owner
        assert back.myself.primary_id == st_.myself.primary_id
    assert "[7->-" in render(sim.state(0)) and "[7-<-" in render(sim.state(1))
    assert " slave " in render_cluster_nodes(sim.state(0))
