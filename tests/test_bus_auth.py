"""The authenticated cluster bus: gossip/busauth.py as a unit, and the outsider
scenario against real nodes (cluster-bus-secret; mutual TLS is in test_tls.py).

The outsider: a node that can reach the bus but does not hold the secret MEETs
the cluster, claims slot 12182 (the slot of "foo") with CLUSTER SETSLOT ...
NODE <itself> and CLUSTER BUMPEPOCH.  Nothing may change: no node learns of
it, every slot keeps its owner, the refusals are counted and logged."""

from __future__ import annotations

import socket
import time

import pytest
from hypothesis import given, settings, strategies as st

from gossip import codec
from gossip.busauth import AuthError, LinkAuth, check_secrets
from tests.cluster_helpers import Cluster, free_ports, parse_info
from tests.helpers import Proc, wait_until

S1, S2 = b"first-secret-1", b"second-secret-2"


def pair(a_secrets, b_secrets):
    """A connecting (a) and an accepting (b) side, handshake run to the end."""
    a = LinkAuth(True, a_secrets)
    b = LinkAuth(False, b_secrets)
    to_b, to_a = a.hello(), b.hello()
    for _ in range(3):
        pb, out_b = b.feed(to_b)
        pa, out_a = a.feed(to_a)
        assert pa == pb == b""
        to_b, to_a = out_a, out_b
    return a, b


# ------------------------------------------------------------------ unit

def test_frames_pass_after_the_handshake_and_queue_before_it():
    a = LinkAuth(True, [S1])
    b = LinkAuth(False, [S1])
    assert a.seal(b"early frame") == b""             # waits for the handshake
    plain, out_b = b.feed(a.hello())
    assert plain == b"" and len(out_b) == 1 + 32
    plain, out_a = a.feed(b.hello() + out_b)
    assert plain == b"" and a.is_open
    plain, out_b2 = b.feed(out_a)                    # a's proof, then its queued frame
    assert b.is_open and plain == b"early frame" and out_b2 == b""
    for i in range(5):
        got, _ = b.feed(a.seal(b"to b %d" % i))
        assert got == b"to b %d" % i
        got, _ = a.feed(b.seal(b"to a %d" % i))
        assert got == b"to a %d" % i


def test_wrong_secret_is_refused_on_both_sides():
    a = LinkAuth(True, [S1])
    b = LinkAuth(False, [S2])
    _, out_b = b.feed(a.hello())
    _, out_a = a.feed(b.hello())
    with pytest.raises(AuthError, match="could not prove"):
        b.feed(out_a)
    with pytest.raises(AuthError, match="could not prove"):
        a.feed(out_b)
    assert not a.is_open and not b.is_open


@pytest.mark.parametrize("a_s,b_s,agreed", [
    ([S2, S1], [S1], S1),          # one node rotated already
    ([S1], [S2, S1], S1),
    ([S2, S1], [S2, S1], S2),      # both rotated: the new one is used
    ([S2], [S2, S1], S2),
])
def test_rotation_overlap(a_s, b_s, agreed):
    a, b = pair(a_s, b_s)
    assert a.is_open and b.is_open and a.secret == b.secret == agreed
    assert b.feed(a.seal(b"x"))[0] == b"x"


def test_replayed_reordered_or_tampered_records_are_refused():
    a, b = pair([S1], [S1])
    r0, r1 = a.seal(b"zero"), a.seal(b"one")
    assert b.feed(r0)[0] == b"zero"
    with pytest.raises(AuthError, match="replayed"):
        b.feed(r0)                                   # the same record again
    a, b = pair([S1], [S1])
    r0, r1 = a.seal(b"zero"), a.seal(b"one")
    with pytest.raises(AuthError):
        b.feed(r1)                                   # out of order
    a, b = pair([S1], [S1])
    r0 = bytearray(a.seal(b"zero"))
    r0[5] ^= 1
    with pytest.raises(AuthError):
        b.feed(bytes(r0))


def test_a_captured_proof_replayed_on_a_new_link_is_refused():
    real_a = LinkAuth(True, [S1])
    b = LinkAuth(False, [S1])
    _, proof = real_a.feed(b.hello())       # real_a's proof answers b's nonce
    replay = LinkAuth(False, [S1])           # another link: another nonce
    replay.feed(real_a.hello())
    with pytest.raises(AuthError, match="could not prove"):
        replay.feed(proof)
    b.feed(real_a.hello())
    b.feed(proof)
    assert b.is_open                         # where it belongs it is good


def test_a_plain_bus_frame_or_garbage_is_refused_at_once():
    h = codec.Header(sender="a" * 40, current_epoch=99, config_epoch=99, flags=frozenset(),
                     primary_id=None, slots=b"\0" * 2048, ip="", port=1, cport=2,
                     offset=0, state="ok")
    frame = codec.encode(codec.Message(codec.MsgType.MEET, h, (), None))
    with pytest.raises(AuthError, match="did not start"):
        LinkAuth(False, [S1]).feed(frame[:3])        # refused on its first bytes
    with pytest.raises(AuthError):
        LinkAuth(False, [S1]).feed(b"\x16\x03\x01garbage")
    with pytest.raises(AuthError, match="too large"):
        a, b = pair([S1], [S1])
        b.feed(b"\xff\xff\xff\xff")


def test_secret_values_are_checked():
    check_secrets("longenough other-long-one")
    for bad, reason in (("short", "at least 8"), ("x" * 600, "at most 512"),
                        ("aaaaaaaa bbbbbbbb cccccccc dddddddd eeeeeeee", "at most 4")):
        with pytest.raises(ValueError, match=reason):
            check_secrets(bad)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=8),
       st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=40))
def test_any_split_of_the_stream_gives_the_same_frames(frames, cuts):
    a = LinkAuth(True, [S1])
    b = LinkAuth(False, [S1])
    stream = a.hello()
    _, out_b = b.feed(b"")
    _, proof_b = b.feed(stream)
    _, out_a = a.feed(b.hello() + proof_b)
    stream = out_a + b"".join(a.seal(f) for f in frames)
    b2 = LinkAuth(False, [S1], nonce=b.nonce)
    got = []
    pos = 0
    i = 0
    b2.feed(a.hello())
    while pos < len(stream):
        n = cuts[i % len(cuts)]
        i += 1
        plain, _ = b2.feed(stream[pos:pos + n])
        got.append(plain)
        pos += n
    assert b"".join(got) == b"".join(frames)


# ------------------------------------------------------------------ processes

SECRET = "cluster-bus-secret-for-tests"


def _slot_owners(node) -> dict[int, str]:
    return {s: n["id"] for n in node.nodes() for s in n["slots"]}


def _authenticated_session(addr, frame: bytes) -> bytes:
    """Open a bus link holding the secret, send one sealed frame; return every
    byte sent (what an eavesdropper captures)."""
    auth = LinkAuth(True, [SECRET.encode()])
    sent = auth.hello()
    with socket.create_connection(addr, timeout=5) as s:
        s.sendall(sent)
        got = b""
        while not auth.is_open:
            d = s.recv(4096)
            assert d, "the node closed a link that holds the secret"
            got += d
            _, out = auth.feed(d)
            if out:
                s.sendall(out)
                sent += out
        record = auth.seal(frame)
        s.sendall(record)
        sent += record
        time.sleep(0.2)
    return sent


def _outsider_attack(cl: Cluster, outsider: Proc, target_port: int) -> None:
    """MEET the cluster from the outsider, claim slot 12182, bump the epoch."""
    o = outsider.client(decode_responses=True)
    assert o.execute_command("CLUSTER", "MEET", "127.0.0.1", target_port) == "OK"
    o.execute_command("CLUSTER", "ADDSLOTS", 12182)
    o.execute_command("CLUSTER", "SETSLOT", 12182, "NODE", o.execute_command("CLUSTER", "MYID"))
    for _ in range(3):
        o.execute_command("CLUSTER", "BUMPEPOCH")
    o.close()


def test_outsider_without_the_secret_changes_nothing():
    with Cluster(primaries=3, replicas=0, extra=["--cluster-bus-secret", SECRET]) as cl:
        first = cl.nodes[0]
        owners = _slot_owners(first)
        epoch = parse_info(first.call("CLUSTER", "INFO"))["cluster_current_epoch"]
        port = free_ports(1, exclude=set(cl.ports))[0]
        outsider = Proc(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"],
                        port=port)
        outsider.start()
        try:
            _outsider_attack(cl, outsider, cl.ports[0])
            wait_until(lambda: int(first.info().get("cluster_stats_bus_auth_refused", 0)) > 0,
                       timeout=20, what="the outsider's MEET refused")
            time.sleep(2.5)                  # gossip rounds in which a change would show
            for node in cl.nodes:
                ids = [n["id"] for n in node.nodes()]
                assert len(ids) == 3, node.call("CLUSTER", "NODES")
                assert _slot_owners(node) == owners
                info = node.info()
                assert info["cluster_state"] == "ok"
            assert parse_info(first.call("CLUSTER", "INFO"))["cluster_current_epoch"] == epoch
            log = first.proc.log()
            assert log.count("Cluster bus link from 127.0.0.1 refused") == 1, log
            assert first.call("INFO", "cluster")["cluster_bus_auth_refused"] > 0
            # a raw socket sending a bus frame claiming the slot: refused too
            before = int(first.info()["cluster_stats_bus_auth_refused"])
            h = codec.Header(sender="f" * 40, current_epoch=1000, config_epoch=1000,
                             flags=frozenset({"master"}), primary_id=None,
                             slots=bytes([0xff]) * 2048, ip="127.0.0.1", port=port,
                             cport=port + 10000, offset=0, state="ok")
            frame = codec.encode(codec.Message(codec.MsgType.PING, h, (), None))
            with socket.create_connection(("127.0.0.1", cl.ports[0] + 10000), timeout=5) as s:
                s.sendall(frame)
                s.settimeout(5)
                got = b""
                try:
                    while True:
                        d = s.recv(4096)
                        if not d:
                            break
                        got += d
                except OSError:
                    pass
            assert got.startswith(b"PNBUSAUTH1")     # our hello, then the close
            wait_until(lambda: int(first.info()["cluster_stats_bus_auth_refused"]) > before,
                       timeout=10, what="the raw frame refused")
            assert _slot_owners(first) == owners
            # a captured session (handshake + a sealed frame) replayed on a new link
            captured = _authenticated_session(("127.0.0.1", cl.ports[0] + 10000), frame)
            refused = int(first.info()["cluster_stats_bus_auth_refused"])
            with socket.create_connection(("127.0.0.1", cl.ports[0] + 10000), timeout=5) as s:
                s.sendall(captured)
                s.settimeout(5)
                try:
                    while s.recv(4096):
                        pass
                except OSError:
                    pass
            wait_until(lambda: int(first.info()["cluster_stats_bus_auth_refused"]) > refused,
                       timeout=10, what="the replayed session refused")
            assert _slot_owners(first) == owners
            # a peer that stops in the middle of the handshake is dropped in time
            refused = int(first.info()["cluster_stats_bus_auth_refused"])
            with socket.create_connection(("127.0.0.1", cl.ports[0] + 10000), timeout=5) as s:
                s.sendall(b"PNBUS")
                s.settimeout(10)
                t0 = time.monotonic()
                try:
                    while s.recv(4096):
                        pass
                except OSError:
                    pass
                assert time.monotonic() - t0 < 8          # node timeout 2 s
            assert int(first.info()["cluster_stats_bus_auth_refused"]) > refused
            # clients still find "foo" where it was
            rc = cl.cluster_client()
            rc.set("foo", "bar")
            assert rc.get("foo") == "bar"
            assert _slot_owners(first)[12182] == owners[12182]
            rc.close()
        finally:
            outsider.stop()
            outsider.cleanup()


def test_secret_rotation_with_config_set_and_add_node():
    extra = ["--cluster-bus-secret", "old-secret-1", "--enable-debug-command", "yes"]
    with Cluster(primaries=3, replicas=0, extra=extra) as cl:
        for node in cl.nodes:                        # round 1: new first, old still good
            assert node.call("CONFIG", "SET", "cluster-bus-secret",
                             "new-secret-2 old-secret-1") == "OK"
        for node in cl.nodes:                        # round 2: only the new one
            assert node.call("CONFIG", "SET", "cluster-bus-secret", "new-secret-2") == "OK"
        assert cl.nodes[0].call("CONFIG", "GET", "cluster-bus-secret") == {
            "cluster-bus-secret": "new-secret-2"}
        # links made now use the new secret: drop node 0's, they come back
        for n in cl.nodes[0].nodes():
            if "myself" not in n["flags"]:
                assert cl.nodes[0].call("DEBUG", "CLUSTERLINK", "KILL", "ALL", n["id"]) == "OK"
        wait_until(lambda: len(cl.nodes[0].call("CLUSTER", "LINKS")) == 4, timeout=20,
                   what="links to and from node 0 made again")
        assert all(n["link"] == "connected" for n in cl.nodes[0].nodes())
        assert int(cl.nodes[0].info()["cluster_stats_bus_auth_refused"]) == 0
        err = cl.cli("CONFIG", "SET", "cluster-bus-secret", "short").stdout
        assert "at least 8" in err
        # new links: a node holding the new secret joins by redis-cli --cluster add-node
        cl.extra = ["--cluster-bus-secret", "new-secret-2"]
        new = cl.add_node()
        res = cl.cli("--cluster", "add-node", "127.0.0.1:%d" % new.port,
                     "127.0.0.1:%d" % cl.ports[0])
        assert res.returncode == 0, res.stdout + res.stderr
        try:
            wait_until(lambda: all(len(n.nodes()) == 4 for n in cl.nodes), timeout=30,
                       what="the new node known everywhere")
        except AssertionError:
            raise AssertionError(cl.diagnostics())
        # one with the old secret only is refused
        port = free_ports(1, exclude=set(cl.ports))[0]
        stale = Proc(["--cluster-enabled", "yes", "--cluster-bus-secret", "old-secret-1"],
                     port=port)
        stale.start()
        try:
            stale.client().execute_command("CLUSTER", "MEET", "127.0.0.1", cl.ports[0])
            wait_until(lambda: int(cl.nodes[0].info()["cluster_stats_bus_auth_refused"]) > 0,
                       timeout=20, what="the stale node refused")
            time.sleep(1)
            assert all(len(n.nodes()) == 4 for n in cl.nodes)
        finally:
            stale.stop()
            stale.cleanup()


def test_unprotected_bus_warns_or_refuses_to_start():
    wide = ["--bind", "0.0.0.0"]
    p = Proc(["--cluster-enabled", "yes"] + wide)
    p.start()
    try:
        assert "WARNING: The cluster bus port %d listens beyond the loopback" % (
            p.port + 10000) in p.log()
    finally:
        p.stop()
        p.cleanup()
    p = Proc(["--cluster-enabled", "yes", "--cluster-bus-port-protected-mode", "yes"] + wide)
    try:
        p.start(wait=False)
        assert p.wait_exit(20) == 1
        assert "Refusing to start (cluster-bus-port-protected-mode yes)" in p.log()
    finally:
        p.cleanup()
    for args in (["--bind", "127.0.0.1"], wide + ["--cluster-bus-secret", SECRET]):
        p = Proc(["--cluster-enabled", "yes", "--cluster-bus-port-protected-mode", "yes"]
                 + args)
        p.start()
        try:
            assert "listens beyond the loopback" not in p.log()
        finally:
            p.stop()
            p.cleanup()
