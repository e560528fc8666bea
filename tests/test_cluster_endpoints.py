"""Hostnames and endpoints (cluster-announce-hostname, cluster-preferred-endpoint-type),
replicas in CLUSTER SLOTS once they replicate, and CLUSTER LINKS.

Two clusters of the same shape (3 primaries A B C + replica D of A) run side by
side, one of pynode and one of redis-server 7.0, formed the same way; every
reply a client sees is compared between them byte for byte once node ids and
ports are replaced by their position in the cluster.
"""

from __future__ import annotations

import collections
import os
import re
import time

import hiredis
import pytest

from tests.cluster_helpers import Cluster
from tests.helpers import Proc, enc, raw_command
from tests.test_cluster_node import call, cluster_args, form, raw_call, start_all, wait_until

HOSTS = ["host-a.example", "host-b.example", "", ""]   # C and D start without one
ENDPOINT_TYPES = ("ip", "hostname", "unknown-endpoint")


def _start(redis_server: bool) -> list[Proc]:
    procs = []
    for h in HOSTS:
        extra = ["--repl-ping-replica-period", "1"]
        if h:
            extra += ["--cluster-announce-hostname", h]
        procs.append(Proc(cluster_args(extra), redis_server=redis_server))
    start_all(procs)
    form(procs, {3: 0})
    return procs


@pytest.fixture(scope="module")
def pair():
    """(pynode nodes, redis-server nodes)"""
    ours: list[Proc] = []
    theirs: list[Proc] = []
    try:
        ours = _start(False)
        theirs = _start(True)
        for procs in (ours, theirs):
            wait_until(lambda: all(_replica_listed(p) for p in procs), 20,
                       "the replica in every node's CLUSTER SLOTS")
            wait_until(lambda: all(_hostnames_seen(p, procs) for p in procs), 10,
                       "hostnames known everywhere")
        yield ours, theirs
    finally:
        for p in ours + theirs:
            p.cleanup()


def _replica_listed(p: Proc) -> bool:
    return any(len(r) == 4 for r in call(p, "CLUSTER", "SLOTS"))


def _hostnames_seen(p: Proc, procs: list[Proc]) -> bool:
    text = call(p, "CLUSTER", "NODES")
    return all((",%s " % h) in text for h in HOSTS if h)


def _normaliser(procs: list[Proc]):
    """bytes -> bytes: node ids and ports replaced by the node's index."""
    subs = []
    for i, p in enumerate(procs):
        subs.append((call(p, "CLUSTER", "MYID").encode(), b"<id%d>" % i))
        subs.append((str(p.port + 10000).encode(), b"<cport%d>" % i))
        subs.append((str(p.port).encode(), b"<port%d>" % i))

    def norm(data: bytes) -> bytes:
        for a, b in subs:
            data = data.replace(a, b)
        return data
    return norm


def _cmd(p: Proc, *args, resp3: bool = False) -> bytes:
    """The raw reply bytes of one command (after HELLO 3 for RESP3)."""
    if not resp3:
        return raw_command(p.port, enc(*args), replies=1)
    out = raw_command(p.port, enc("HELLO", "3") + enc(*args), replies=2)
    return _after_first_reply(out)


def _after_first_reply(data: bytes) -> bytes:
    r = hiredis.Reader(protocolError=AssertionError)
    for i in range(1, len(data) + 1):
        r.feed(data[i - 1:i])
        if r.gets() is not False:
            return data[i:]
    raise AssertionError("no complete reply in %r" % data[:200])


def _sorted_entries(reply):
    """CLUSTER SLOTS / SHARDS list the nodes in hash-table order (Redis: random per
    process): compare the entries as a sorted list."""
    return sorted(map(repr, reply))


def _by_index(procs, reply):
    """A decoded CLUSTER SLOTS / SHARDS with ids and ports as node indexes."""
    norm = _normaliser(procs)
    return _sorted_entries(_decode(norm, reply))


def _decode(norm, x):
    if isinstance(x, bytes):
        return norm(x)
    if isinstance(x, int):
        s = norm(str(x).encode())
        return s if s != str(x).encode() else x
    if isinstance(x, (list, tuple)):
        return [_decode(norm, y) for y in x]
    if isinstance(x, dict):
        return {_decode(norm, k): _decode(norm, v) for k, v in x.items()}
    return x


def _both(pair, fn):
    ours, theirs = pair
    return fn(ours), fn(theirs)


def _set_all(procs, *args):
    for p in procs:
        assert call(p, "CONFIG", "SET", *args) == "OK"


def _as_dict(x) -> dict:
    """A map reply, from RESP3 (a dict) or RESP2 (a flat list)."""
    return x if isinstance(x, dict) else dict(zip(x[::2], x[1::2]))


def _shard_without_offsets(shard):
    """A SHARDS entry as nested dicts, replication offsets blanked (they differ)."""
    d = _as_dict(shard)
    nodes = []
    for n in d[b"nodes"]:
        n = _as_dict(n)
        n[b"replication-offset"] = "offset"
        nodes.append(n)
    return {**d, b"nodes": nodes, "resp3": isinstance(shard, dict)}


def _decoded(p: Proc, *args, resp3=False):
    return p.client(protocol=3 if resp3 else 2).execute_command(*args)


# ----------------------------------------------------------------------------- hostnames


def test_cluster_nodes_carry_hostnames(pair):
    for procs in pair:
        for p in procs:
            lines = call(p, "CLUSTER", "NODES").splitlines()
            addr = {f.split()[0]: f.split()[1] for f in lines}
            ids = [call(q, "CLUSTER", "MYID") for q in procs]
            for q, nid, h in zip(procs, ids, HOSTS):
                want = "127.0.0.1:%d@%d" % (q.port, q.port + 10000) + ("," + h if h else "")
                assert addr[nid] == want, (p.port, addr)


def test_config_set_hostname_reaches_every_node(pair):
    ours, theirs = pair
    for procs in pair:
        assert call(procs[2], "CONFIG", "SET", "cluster-announce-hostname", "host-c.example") == "OK"
        assert call(procs[2], "CONFIG", "GET", "cluster-announce-hostname") == \
            {"cluster-announce-hostname": "host-c.example"}
        wait_until(lambda: all(",host-c.example " in call(p, "CLUSTER", "NODES") for p in procs),
                   10, "the new hostname on every node")
        shards = [_as_dict(s) for s in _decoded(procs[1], "CLUSTER", "SHARDS")]
        seen = [_as_dict(n).get(b"hostname") for s in shards for n in s[b"nodes"]]
        assert b"host-c.example" in seen and seen.count(None) == 1      # D has none
    # refused values leave the hostname as it was, with Redis's error text
    for bad in ("bad_host", "x" * 256, "a b"):
        errs = []
        for procs in pair:
            c = procs[2].client()
            try:
                c.execute_command("CONFIG", "SET", "cluster-announce-hostname", bad)
            except Exception as e:  # noqa: BLE001 - the error text is compared
                errs.append(str(e))
            finally:
                c.close()
            assert call(procs[2], "CONFIG", "GET", "cluster-announce-hostname") == \
                {"cluster-announce-hostname": "host-c.example"}
        assert len(errs) == 2 and errs[0] == errs[1], errs
    # cleared: gone from CLUSTER NODES everywhere (no ping extension = no hostname)
    for procs in pair:
        assert call(procs[2], "CONFIG", "SET", "cluster-announce-hostname", "") == "OK"
        wait_until(lambda: all(",host-c.example" not in call(p, "CLUSTER", "NODES")
                               for p in procs), 10, "the hostname cleared on every node")
    # the replica announces one too (its own line, on every node)
    for procs in pair:
        assert call(procs[3], "CONFIG", "SET", "cluster-announce-hostname", "host-d.example") == "OK"
        wait_until(lambda: all(",host-d.example " in call(p, "CLUSTER", "NODES") for p in procs),
                   10, "the replica's hostname on every node")


@pytest.mark.parametrize("etype", ENDPOINT_TYPES)
def test_slots_and_shards_per_endpoint_type(pair, etype):
    ours, theirs = pair
    try:
        for procs in pair:
            _set_all(procs, "cluster-preferred-endpoint-type", etype)
        for resp3 in (False, True):
            for sub in ("SLOTS", "SHARDS"):
                o = _decoded(ours[1], "CLUSTER", sub, resp3=resp3)
                t = _decoded(theirs[1], "CLUSTER", sub, resp3=resp3)
                if sub == "SHARDS":
                    o = [_shard_without_offsets(s) for s in o]
                    t = [_shard_without_offsets(s) for s in t]
                assert _by_index(ours, o) == _by_index(theirs, t), (sub, resp3)
        # and byte for byte, one shard (one slot range) at a time
        for resp3 in (False, True):
            o = _cmd(ours[1], "CLUSTER", "SLOTS", resp3=resp3)
            t = _cmd(theirs[1], "CLUSTER", "SLOTS", resp3=resp3)
            assert sorted(map(_normaliser(ours), _split_top(o))) == \
                sorted(map(_normaliser(theirs), _split_top(t))), resp3
    finally:
        for procs in pair:
            _set_all(procs, "cluster-preferred-endpoint-type", "ip")


def _split_top(data: bytes) -> list[bytes]:
    """The elements of a top-level RESP array, as raw bytes each."""
    head, _, rest = data.partition(b"\r\n")
    assert head[:1] == b"*"
    out = []
    while rest:
        r = hiredis.Reader()
        for i in range(1, len(rest) + 1):
            r.feed(rest[i - 1:i])
            if r.gets() is not False:
                out.append(rest[:i])
                rest = rest[i:]
                break
        else:
            raise AssertionError("truncated %r" % rest[:100])
    return out


@pytest.mark.parametrize("etype", ENDPOINT_TYPES)
def test_moved_and_ask_use_the_preferred_endpoint(pair, etype):
    ours, theirs = pair
    got = []
    try:
        for procs in pair:
            _set_all(procs, "cluster-preferred-endpoint-type", etype)
            norm = _normaliser(procs)
            replies = []
            # asked to B: slots of C (no hostname) and of A (host-a.example)
            for key in ("{a}1", "{b}2", "foo"):         # slots 15495, 3300, 12182
                replies.append(norm(raw_command(procs[1].port, enc("GET", key), replies=1)))
            replies.append(norm(raw_command(procs[0].port, enc("GET", "{x}k"), replies=1)))
            # a migrating slot answers ASK for a key it does not have
            a_id = call(procs[0], "CLUSTER", "MYID")
            b_id = call(procs[1], "CLUSTER", "MYID")
            slot = 3300
            assert call(procs[1], "CLUSTER", "SETSLOT", str(slot), "IMPORTING", a_id) == "OK"
            assert call(procs[0], "CLUSTER", "SETSLOT", str(slot), "MIGRATING", b_id) == "OK"
            try:
                replies.append(norm(raw_command(procs[0].port, enc("GET", "{b}2"), replies=1)))
            finally:
                call(procs[0], "CLUSTER", "SETSLOT", str(slot), "STABLE")
                call(procs[1], "CLUSTER", "SETSLOT", str(slot), "STABLE")
            got.append(replies)
    finally:
        for procs in pair:
            _set_all(procs, "cluster-preferred-endpoint-type", "ip")
    assert got[0] == got[1]
    assert any(r.startswith(b"-MOVED") for r in got[0]) and got[0][-1].startswith(b"-ASK")
    if etype == "hostname":
        assert any(b" host-a.example:" in r for r in got[0])
        assert any(b" ?:" in r for r in got[0])          # C has no hostname
    elif etype == "unknown-endpoint":
        assert all(re.match(rb"-(MOVED|ASK) \d+ :<port\d>\r\n", r) for r in got[0]
                   if r.startswith((b"-MOVED", b"-ASK")))


def test_hostnames_survive_restart(pair):
    ours, _ = pair
    p = ours[2]                                    # C: knows A's and B's hostnames
    with open(os.path.join(p.dir, "nodes.conf")) as fh:
        conf = fh.read()
    assert ",host-a.example " in conf and ",host-b.example " in conf
    before = call(p, "CLUSTER", "NODES")
    p.stop()
    p.start()
    after = call(p, "CLUSTER", "NODES")            # from nodes.conf, before any ping
    for h in ("host-a.example", "host-b.example"):
        assert ",%s " % h in after
    assert {line.split()[1] for line in before.splitlines()} == \
        {line.split()[1] for line in after.splitlines()}
    wait_until(lambda: all(",host-a.example " in call(q, "CLUSTER", "NODES") for q in ours),
               10, "hostnames after the restart")


# ----------------------------------------------------------------------------- replicas after create


@pytest.mark.parametrize("server", ["pynode", "redis"])
def test_slots_agree_with_replicas_soon_after_create(server):
    """A replica is listed once its offset is non-zero (the primary's first
    replication PING, every repl-ping-replica-period). From the moment one node
    lists a replica, every pynode node lists it within a second (redis-server
    takes up to its ping interval); with a 1 s ping period all six nodes agree,
    replicas included, within 3 s of `--cluster create`."""
    c = Cluster(3, 1, server=server,
                extra=["--repl-ping-replica-period", "1", "--repl-diskless-sync-delay", "0"])
    try:
        c.start()
        c.create()
        t0 = time.monotonic()
        first_seen: dict[str, float] = {}
        all_seen: dict[str, float] = {}
        while True:
            now = time.monotonic()
            views = []
            for n in c.nodes:
                reply = n.call("CLUSTER", "SLOTS")
                views.append(sorted(map(repr, reply)))
                listed = collections.Counter(r[2] for e in reply for r in e[3:])
                for rid in listed:
                    first_seen.setdefault(rid, now)
            for rid in first_seen:
                if rid not in all_seen and all(rid in "".join(v) for v in views):
                    all_seen[rid] = now
            if len(all_seen) == 3 and all(v == views[0] for v in views):
                break
            assert now - t0 < 20, "no agreement after 20 s: %r" % views
            time.sleep(0.01)
        spread = {rid: all_seen[rid] - first_seen[rid] for rid in all_seen}
        if server == "pynode":
            # a replica's first offset is broadcast at once
            assert max(spread.values()) < 1.0, spread
            assert time.monotonic() - t0 < 3.0
        else:
            # redis-server: carried by the regular pings (node timeout / 2 = 1 s)
            assert max(spread.values()) < 2.0, spread
    finally:
        c.cleanup()


# ----------------------------------------------------------------------------- links


@pytest.mark.parametrize("server", ["pynode", "redis"])
def test_links_two_per_peer(server):
    """Every node has one outbound (to) and one inbound (from) link per peer, and
    keeps them; the fields of a link are Redis's."""
    n = 8
    c = Cluster(n, 0, server=server)
    try:
        c.up(timeout=120)
        ids = {node.port: node.call("CLUSTER", "MYID") for node in c.nodes}

        def complete():
            for node in c.nodes:
                links = node.call("CLUSTER", "LINKS")
                per_peer = collections.defaultdict(list)
                for link in links:
                    per_peer[link["node"]].append(link["direction"])
                want = {nid for port, nid in ids.items() if port != node.port}
                if set(per_peer) != want or any(sorted(v) != ["from", "to"]
                                                for v in per_peer.values()):
                    return False
            return True

        wait_until(complete, 20, "two links per peer on every node")
        time.sleep(2)
        assert complete()
        raw = raw_call(c.nodes[0].port, b"CLUSTER", b"LINKS")
        assert len(raw) == 2 * (n - 1)
        for row in raw:
            keys = [k[1] for k in row[::2]]
            assert keys == [b"direction", b"node", b"create-time", b"events",
                            b"send-buffer-allocated", b"send-buffer-used"]
            vals = row[1::2]
            assert vals[0][0] == "bulk" and vals[1][0] == "bulk"
            assert all(isinstance(v, int) for v in (vals[2], vals[4], vals[5]))
            assert vals[3] in (("bulk", b"r"), ("bulk", b"rw"))
    finally:
        c.cleanup()
