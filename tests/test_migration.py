"""Slot migration states on a real cluster: MIGRATING / IMPORTING / STABLE / NODE,
ASK, ASKING, TRYAGAIN, RESTORE-ASKING, the open states in nodes.conf across a
restart, and the epoch bump that makes the new owner win everywhere.

Every expectation here was first checked against redis-server 7.0.15
(PYNODE_CLUSTER_SERVER=redis runs this module against it).
"""

from __future__ import annotations

import glob
import os
import signal
import time

import pytest
import redis

from tests.cluster_helpers import Cluster, key_for_slot, keyslot, run
from tests.helpers import wait_ping
from tests.inproc import _decode

TRYAGAIN = "Multiple keys request during rehashing of slot"


@pytest.fixture(scope="module")
def cl():
    with Cluster(primaries=3, replicas=1) as c:
        c.wait_replicas_synced()
        yield c


def _r(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)


def _raw(conn: redis.Redis, *args):
    """The reply, or the error text (redis-py strips MOVED/ASK, so rebuild them)."""
    try:
        return conn.execute_command(*args)
    except redis.exceptions.MovedError as e:        # (a subclass of AskError)
        return "MOVED %d %s:%d" % (e.slot_id, e.host, e.port)
    except redis.exceptions.AskError as e:
        return "ASK %d %s:%d" % (e.slot_id, e.host, e.port)
    except redis.ResponseError as e:
        return "ERR:" + str(e)


def _asking(conn: redis.Redis, *args):
    p = conn.pipeline(transaction=False)
    p.execute_command("ASKING")
    p.execute_command(*args)
    out = p.execute(raise_on_error=False)
    r = out[1]
    return "ERR:" + str(r) if isinstance(r, Exception) else r


def _ids(cl) -> dict[int, str]:
    return {n["port"]: n["id"] for n in cl.live_node().nodes()}


def _myself_line(port: int) -> str:
    text = _r(port).execute_command("CLUSTER", "NODES").decode()
    return next(line for line in text.splitlines() if "myself" in line)


def _wait(cond, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def test_migration_states_and_redirections(cl):
    ids = _ids(cl)
    tag = "{mig}"
    slot = keyslot(tag)
    src = cl.owner_of(slot)
    dst = next(p for p in cl.primary_ports() if p != src)
    S, D = _r(src), _r(dst)
    S.mset({tag + "a": 1, tag + "b": 2, tag + "c": 3})
    assert _raw(D, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[src]) == b"OK"
    assert _raw(S, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[dst]) == b"OK"
    ask = "ASK %d 127.0.0.1:%d" % (slot, dst)
    moved_to_src = "MOVED %d 127.0.0.1:%d" % (slot, src)
    # the source serves what it still has, ASKs for what it does not
    assert _raw(S, "GET", tag + "a") == b"1"
    assert _raw(S, "GET", tag + "zz") == ask
    assert _raw(S, "SET", tag + "new", "x") == ask
    assert _raw(S, "MGET", tag + "x", tag + "y") == ask
    # the target refuses without ASKING
    assert _raw(D, "GET", tag + "a") == moved_to_src
    # one read of pipelined commands: RESTORE-ASKING is served, a plain
    # RESTORE and a GET of the slot are MOVED, between them and after
    payload = S.dump(tag + "c")
    p = D.pipeline(transaction=False)
    for cmd in (("RESTORE-ASKING", tag + "r1", 0, payload), ("RESTORE", tag + "r2", 0, payload),
                ("RESTORE-ASKING", tag + "r3", 0, payload), ("GET", tag + "r3"),
                ("RESTORE-ASKING", tag + "r1", 0, payload)):
        p.execute_command(*cmd)
    got = [str(r) if isinstance(r, Exception) else r for r in p.execute(raise_on_error=False)]
    assert got == [b"OK", "%d 127.0.0.1:%d" % (slot, src), b"OK",
                   "%d 127.0.0.1:%d" % (slot, src), "BUSYKEY Target key name already exists."]
    assert [_asking(D, "GET", tag + "r%d" % i) for i in (1, 2, 3)] == [b"3", None, b"3"]
    assert [_asking(D, "DEL", tag + "r%d" % i) for i in (1, 3)] == [1, 1]
    # move a and b (RESTORE-ASKING needs no ASKING)
    assert _raw(S, "MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS", tag + "a",
                tag + "b") == b"OK"
    assert _raw(S, "GET", tag + "a") == ask
    # keys split across the two nodes: TRYAGAIN on both sides
    assert _raw(S, "MGET", tag + "a", tag + "c") == "ERR:" + TRYAGAIN
    assert _raw(S, "DEL", tag + "b", tag + "c") == "ERR:" + TRYAGAIN
    assert _asking(D, "MGET", tag + "a", tag + "c") == "ERR:" + TRYAGAIN
    assert _asking(D, "MGET", tag + "a", tag + "b") == [b"1", b"2"]
    assert _asking(D, "GET", tag + "a") == b"1"
    assert _asking(D, "SET", tag + "new", "n") is True
    # ASKING lasts one command
    assert _raw(D, "GET", tag + "a") == moved_to_src
    # the source cannot give the slot away while it holds keys
    assert _raw(S, "CLUSTER", "SETSLOT", slot, "NODE", ids[dst]) == (
        "ERR:Can't assign hashslot %d to a different node while I still hold keys for "
        "this hash slot." % slot)
    assert _raw(S, "MIGRATE", "127.0.0.1", dst, tag + "c", 0, 5000) == b"OK"
    assert _raw(S, "CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    # SETSLOT errors
    other = next(p for p in cl.primary_ports() if p not in (src, dst))
    assert _raw(_r(other), "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[dst]) == (
        "ERR:I'm not the owner of hash slot %d" % slot)
    assert _raw(S, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[dst]) == (
        "ERR:I'm already the owner of hash slot %d" % slot)
    assert _raw(S, "CLUSTER", "SETSLOT", slot, "MIGRATING", "f" * 40) == (
        "ERR:I don't know about node " + "f" * 40)
    replica_of_src = next(n["port"] for n in cl.live_node().nodes()
                          if n["master"] == ids[src])
    assert _raw(_r(replica_of_src), "CLUSTER", "SETSLOT", slot, "STABLE") == (
        "ERR:Please use SETSLOT only with masters.")
    # finish: the target first (it bumps its epoch), then the source
    epoch_before = int(cl.node_by_port(dst).info()["cluster_current_epoch"])
    assert _raw(D, "CLUSTER", "SETSLOT", slot, "NODE", ids[dst]) == b"OK"
    assert int(cl.node_by_port(dst).info()["cluster_my_epoch"]) > epoch_before
    assert _raw(S, "CLUSTER", "SETSLOT", slot, "NODE", ids[dst]) == b"OK"
    # everyone (replicas included) learns the new owner
    _wait(lambda: all(cl.owner_of(slot) == dst for _ in [0]) and
          all(any(slot in n["slots"] and n["port"] == dst for n in node.nodes())
              for node in cl.nodes), what="all nodes to see the new owner")
    assert _raw(D, "MGET", tag + "a", tag + "b", tag + "c", tag + "new") == [
        b"1", b"2", b"3", b"n"]
    assert _raw(S, "GET", tag + "a") == "MOVED %d 127.0.0.1:%d" % (slot, dst)
    ro = _r(replica_of_src)
    ro.execute_command("READONLY")
    assert _raw(ro, "GET", tag + "a") == "MOVED %d 127.0.0.1:%d" % (slot, dst)
    cl.wait_agree()


def test_open_states_are_kept_across_a_restart(cl):
    ids = _ids(cl)
    slot = keyslot("{keep}")
    src = cl.owner_of(slot)
    dst = next(p for p in cl.primary_ports() if p != src)
    assert _raw(_r(dst), "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[src]) == b"OK"
    assert _raw(_r(src), "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[dst]) == b"OK"
    mig = "[%d->-%s]" % (slot, ids[dst])
    imp = "[%d-<-%s]" % (slot, ids[src])
    assert mig in _myself_line(src) and imp in _myself_line(dst)
    # the restarts below may take longer than node-timeout on a loaded machine:
    # no replica takes over meanwhile (that would be a failover, not this test)
    _no_failover(cl, "yes")
    for port, mark in ((src, mig), (dst, imp)):
        node = cl.node_by_port(port)
        conf = open(os.path.join(node.dir, "nodes-%d.conf" % port)).read()
        assert mark in conf
        node.proc.kill(signal.SIGKILL)
        node.proc.start(wait=False)
        wait_ping(port, timeout=20)
        assert mark in _myself_line(port)
    # a cluster-aware client still reaches every key meanwhile
    rc = cl.cluster_client()
    rc.set("{keep}k", "v")
    assert rc.get("{keep}k") == "v"
    rc.close()
    assert _raw(_r(src), "CLUSTER", "SETSLOT", slot, "STABLE") == b"OK"
    assert _raw(_r(dst), "CLUSTER", "SETSLOT", slot, "STABLE") == b"OK"
    assert mig not in _myself_line(src) and imp not in _myself_line(dst)
    _no_failover(cl, "no")
    cl.wait_ok()
    cl.wait_agree()


def _no_failover(cl, value: str) -> None:
    for node in cl.nodes:
        assert node.call("CONFIG", "SET", "cluster-replica-no-failover", value) in ("OK", True)


def _half_moved(cl, tag: str):
    """20 keys in the slot of `tag`, the slot open (MIGRATING on its owner,
    IMPORTING on another primary) and 5 of them MIGRATEd: fewer moved than
    left, as `--cluster fix` picks an owner by the number of keys. Returns
    (slot, keys, source port, target port, ids)."""
    ids = _ids(cl)
    slot = keyslot(tag)
    src = cl.owner_of(slot)
    dst = next(p for p in cl.primary_ports() if p != src)
    S, D = _r(src), _r(dst)
    keys = ["%s:%d" % (tag, i) for i in range(20)]
    for k in keys:
        S.set(k, "v" + k)
    assert _raw(D, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[src]) == b"OK"
    assert _raw(S, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[dst]) == b"OK"
    assert S.execute_command("MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS",
                             *keys[:5]) == b"OK"
    for c in (S, D):
        assert c.execute_command("WAIT", 1, 5000) == 1      # the replicas have it
        c.close()
    return slot, keys, src, dst, ids


def _fixed(cl, slot: int, keys: list[str], owner: int, others) -> None:
    """`redis-cli --cluster fix` takes its "Case 2" (every key of the slot to
    its owner); then the slot is closed and every key reads back."""
    res = run(["redis-cli", "--cluster", "fix", "127.0.0.1:%d" % owner, "--cluster-yes"], 60)
    assert res.returncode == 0 and "Case 2" in res.stdout, res.stdout[-2000:]
    _wait(lambda: not cl.problems(), what="the cluster to agree")
    assert _r(owner).execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 20
    for port in others:
        assert _r(port).execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    rc = cl.cluster_client()
    assert rc.mget_nonatomic(keys) == ["v" + k for k in keys]
    rc.close()
    res = cl.check(owner)
    assert res.returncode == 0 and "[OK] All 16384 slots covered." in res.stdout \
        and "[WARNING]" not in res.stdout, res.stdout[-2000:]


def test_failover_of_the_importing_target_keeps_the_migrated_keys(cl):
    """A legacy move interrupted by a failover of its target: the promoted
    replica keeps the keys MIGRATE brought (the source no longer has them) in
    a slot it does not own, and `redis-cli --cluster fix` moves them back to
    the owner, as with redis-server 7.0."""
    slot, keys, src, dst, ids = _half_moved(cl, "{fo-imp}")
    rep = next(n["port"] for n in cl.live_node().nodes() if n["master"] == ids[dst])
    R = _r(rep)
    assert R.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 5
    assert R.execute_command("CLUSTER", "FAILOVER") == b"OK"
    _wait(lambda: "master" in _myself_line(rep) and "slave" in _myself_line(dst),
          what="the target's replica to take over")
    _wait(lambda: not cl.problems(), what="the cluster to agree")
    time.sleep(0.5)                 # (a background cleaner would have run by now)
    assert R.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 5
    assert _r(src).execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 15
    R.close()
    _fixed(cl, slot, keys, src, (rep,))
    assert "[%d->-" % slot not in _myself_line(src)


def test_failover_of_the_migrating_source_leaves_the_slot_to_fix(cl):
    """A legacy move interrupted by a failover of its source: the new primary
    of the source's shard claims the slot, the target (importing it) ignores
    that claim and, the old source being a replica now, sees the slot unowned:
    cluster_state:fail there, as with redis-server 7.0. `redis-cli --cluster
    fix` moves the target's keys of the slot to the new owner and closes it."""
    slot, keys, src, dst, ids = _half_moved(cl, "{fo-mig}")
    rep = next(n["port"] for n in cl.live_node().nodes() if n["master"] == ids[src])
    assert _r(rep).execute_command("CLUSTER", "FAILOVER") == b"OK"
    _wait(lambda: "master" in _myself_line(rep) and "slave" in _myself_line(src),
          what="the source's replica to take over")
    _wait(lambda: b"cluster_state:fail" in _r(dst).execute_command("CLUSTER", "INFO"),
          what="the target to see the slot unowned")
    assert "[%d-<-" % slot in _myself_line(dst)
    _fixed(cl, slot, keys, rep, (dst,))
    assert "[%d-<-" % slot not in _myself_line(dst)


def test_key_for_slot_helper_lands_in_its_slot():
    for slot in (0, 1, 5000, 16383):
        assert keyslot(key_for_slot(slot)) == slot


def _slot_keys_of(conn: redis.Redis, slots: list[int]) -> list:
    """The keys of these slots (CLUSTER GETKEYSINSLOT: a replica answers too)."""
    return sorted(k for s in slots for k in conn.execute_command("CLUSTER", "GETKEYSINSLOT",
                                                                  s, 1000))


def _aof_commands(node_dir: str) -> list:
    """The commands in a node's incremental AOF files (appendonlydir)."""
    out = []
    for path in sorted(glob.glob(os.path.join(node_dir, "appendonlydir", "*.incr.aof"))):
        with open(path, "rb") as fh:
            out += _decode(fh.read())
    return out


def test_a_read_of_restore_asking_answers_each_command(cl):
    """One write of RESTORE-ASKINGs into an importing slot (what MIGRATE
    sends, which the target runs as one batch) with, in the middle: a key
    restored earlier in the write, a key that exists, a bad checksum, a key
    of a slot the target owns, of a slot neither owned nor importing, a TTL,
    REPLACE, a list; then MULTI around RESTORE-ASKING.  Replies and
    commandstats are redis-server's (PYNODE_CLUSTER_SERVER=redis), the
    target's replica ends with the same keys and its AOF has the commands
    that succeeded, in order."""
    ids = _ids(cl)
    tag = "{rrun}"
    slot = keyslot(tag)
    src = cl.owner_of(slot)
    dst = next(p for p in cl.primary_ports() if p != src)
    third = next(p for p in cl.primary_ports() if p not in (src, dst))
    slots_of = {n["port"]: n["slots"] for n in cl.live_node().nodes() if "master" in n["flags"]}
    owned, away = min(slots_of[dst]), min(slots_of[third])
    mine, elsewhere = key_for_slot(owned) + "m", key_for_slot(away) + "e"
    S, D = _r(src), _r(dst)
    D.config_set("appendonly", "yes")
    _wait(lambda: D.info("persistence")["aof_rewrite_in_progress"] == 0
          and D.info("persistence")["aof_enabled"] == 1, what="the AOF to be on")
    S.set(tag + "v", "xxx")
    S.rpush(tag + "l", "a", "b", "c")
    good, lst = S.dump(tag + "v"), S.dump(tag + "l")
    bad = good[:-1] + bytes([good[-1] ^ 1])
    assert _raw(D, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[src]) == b"OK"
    try:
        assert _asking(D, "SET", tag + "old", "o") is True
        before = D.info("commandstats").get("cmdstat_restore-asking", {})
        cmds = [("RESTORE-ASKING", tag + str(i), 0, good) for i in range(3)] + [
            ("RESTORE-ASKING", tag + "1", 0, good), ("RESTORE-ASKING", tag + "3", 0, good),
            ("RESTORE-ASKING", tag + "old", 0, good), ("RESTORE-ASKING", tag + "4", 0, good),
            ("RESTORE-ASKING", tag + "5", 0, bad), ("RESTORE-ASKING", tag + "6", 0, good),
            ("RESTORE-ASKING", mine, 0, good), ("RESTORE-ASKING", tag + "7", 0, good),
            ("RESTORE-ASKING", elsewhere, 0, good), ("RESTORE-ASKING", "x" + tag + "8", 0, good),
            ("RESTORE-ASKING", tag + "9", 50000, good),
            ("RESTORE-ASKING", tag + "old", 0, good, "REPLACE"),
            ("RESTORE-ASKING", tag + "10", 0, lst), ("RESTORE-ASKING", tag + "11", 0, good)]
        p = D.pipeline(transaction=False)
        for cmd in cmds:
            p.execute_command(*cmd)
        got = [str(r) if isinstance(r, Exception) else r for r in p.execute(raise_on_error=False)]
        busy = "BUSYKEY Target key name already exists."
        assert got == [b"OK"] * 3 + [busy, b"OK", busy, b"OK",
                                     "DUMP payload version or checksum are wrong", b"OK",
                                     b"OK", b"OK", "%d 127.0.0.1:%d" % (away, third)] + [b"OK"] * 5
        after = D.info("commandstats")["cmdstat_restore-asking"]
        assert [after[k] - before.get(k, 0) for k in ("calls", "failed_calls",
                                                      "rejected_calls")] == [16, 3, 1]
        # MULTI: queued, EXEC not being RESTORE-ASKING is redirected to the owner
        m = D.pipeline(transaction=True)
        m.execute_command("RESTORE-ASKING", tag + "m1", 0, good)
        m.execute_command("RESTORE-ASKING", tag + "m2", 0, good)
        try:
            multi = m.execute(raise_on_error=False)
        except redis.exceptions.ResponseError as e:
            multi = str(e)
        assert multi == "%d 127.0.0.1:%d" % (slot, src)         # (MOVED, as redis-py says it)
        assert _asking(D, "EXISTS", tag + "m1") == 0
        stored = [cmd[1] for cmd, r in zip(cmds, got) if r == b"OK"]
        keys = _slot_keys_of(D, [slot, owned])
        assert keys == sorted(set(k.encode() for k in stored) | {(tag + "old").encode()})
        assert _asking(D, "GET", tag + "old") == b"xxx" and _asking(D, "LLEN", tag + "10") == 3
        assert D.pttl(mine) == -1 and _asking(D, "PTTL", tag + "9") > 40000
        replica = next(n["port"] for n in cl.live_node().nodes() if n["master"] == ids[dst])
        assert D.execute_command("WAIT", 1, 5000) == 1
        assert _slot_keys_of(_r(replica), [slot, owned]) == keys
        assert [c[1].decode() for c in _aof_commands(cl.node_by_port(dst).dir)
                if c[0].lower().startswith(b"restore")] == stored
    finally:
        for key in [tag + "v", tag + "l"]:
            S.delete(key)
        for key in _slot_keys_of(D, [slot]):
            _asking(D, "DEL", key)
        D.delete(mine)
        assert _raw(D, "CLUSTER", "SETSLOT", slot, "STABLE") == b"OK"
        D.config_set("appendonly", "no")
