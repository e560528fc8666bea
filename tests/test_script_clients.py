"""Clients that depend on server-side scripting, against a 3+3 cluster.

* redis-py's ``redis.lock.Lock`` through ``redis.cluster.RedisCluster``: acquiring
  is ``SET NX PX``, but release, extend and reacquire are Lua scripts run with
  EVALSHA (SCRIPT LOAD to every primary on NOSCRIPT).  Lock names sit in three
  slots served by three different primaries.
* BullMQ (tests/node/bullmq_cluster.js) over an ioredis Cluster with the queue
  prefix ``{bq}``: nearly every BullMQ operation is a Lua script, and the worker
  blocks on BZPOPMIN and reads the events stream with XREAD BLOCK.

The cluster is pynode, or redis-server 7.0 with PYNODE_CLUSTER_SERVER=redis
(tests/cluster_helpers.py).  The npm packages are pinned by
tests/node/package-lock.json (`npm ci --prefix tests/node`; .ci/run does it); a
missing install fails the BullMQ test, never skips it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time

import pytest
from redis.exceptions import LockError, LockNotOwnedError
from redis.lock import Lock

from tests.cluster_helpers import Cluster, key_for_slot, keyslot

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")
BULLMQ_SCRIPT = os.path.join(NODE_DIR, "bullmq_cluster.js")

# one slot in each primary's range as `redis-cli --cluster create` splits 16384
# slots over three primaries (0-5460, 5461-10922, 10923-16383)
LOCK_SLOTS = (100, 8000, 15000)


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(primaries=3, replicas=1).up()
    try:
        yield c
    finally:
        c.cleanup()


@pytest.fixture
def rc(cluster):
    c = cluster.cluster_client()
    try:
        yield c
    finally:
        c.close()


def lock_name(slot: int, what: str) -> str:
    """A lock key in `slot`: the hash tag decides the slot."""
    name = "lock:%s:%s" % (key_for_slot(slot), what)
    assert keyslot(name) == slot
    return name


def token_of(lock: Lock) -> str:
    tok = lock.local.token
    assert tok is not None, "lock holds no token"
    return tok.decode() if isinstance(tok, bytes) else tok


def wait_gone(rc, key: str, timeout: float = 5.0) -> float:
    """Poll until key no longer exists (bounded); returns the seconds it took."""
    t0 = time.monotonic()
    while rc.exists(key):
        if time.monotonic() - t0 > timeout:
            raise AssertionError("%s still exists after %.1fs (pttl %s)"
                                 % (key, timeout, rc.pttl(key)))
        time.sleep(0.02)
    return time.monotonic() - t0


# -- redis-py Lock ----------------------------------------------------------------


def test_lock_slots_on_distinct_primaries(cluster):
    owners = {cluster.owner_of(s) for s in LOCK_SLOTS}
    assert len(owners) == 3, "lock slots %s served by %s" % (LOCK_SLOTS, owners)


@pytest.mark.parametrize("slot", LOCK_SLOTS)
def test_lock_acquire_release(rc, slot):
    name = lock_name(slot, "basic")
    lock = rc.lock(name, timeout=10)
    assert not lock.locked() and not lock.owned()
    assert lock.acquire(blocking=False) is True
    assert lock.locked() and lock.owned()
    assert rc.get(name) == token_of(lock)
    assert 0 < rc.pttl(name) <= 10000
    lock.release()                               # EVALSHA of LUA_RELEASE_SCRIPT
    assert rc.exists(name) == 0
    assert not lock.locked() and not lock.owned()
    with pytest.raises(LockError):               # no token any more: refused client-side
        lock.release()
    # and again: the same Lock object can be taken once more
    assert lock.acquire(blocking=False) is True
    lock.release()
    assert rc.exists(name) == 0


@pytest.mark.parametrize("slot", LOCK_SLOTS)
def test_lock_context_manager(rc, slot):
    name = lock_name(slot, "ctx")
    with rc.lock(name, timeout=5, blocking_timeout=2) as lock:
        assert lock.owned()
        # held: a second one cannot get it within its own short blocking_timeout
        with pytest.raises(LockError):
            with rc.lock(name, timeout=5, sleep=0.05, blocking_timeout=0.3):
                pass
        assert lock.owned()
    assert rc.exists(name) == 0


@pytest.mark.parametrize("slot", LOCK_SLOTS)
def test_lock_nonblocking_acquire_fails_while_held(rc, slot):
    name = lock_name(slot, "nb")
    a = rc.lock(name, timeout=10)
    b = rc.lock(name, timeout=10)
    assert a.acquire(blocking=False)
    t0 = time.monotonic()
    assert b.acquire(blocking=False) is False
    assert time.monotonic() - t0 < 2                 # did not wait
    assert b.locked() and not b.owned()
    assert a.owned()
    a.release()
    assert b.acquire(blocking=False) is True
    assert b.owned() and not a.owned()
    b.release()
    assert not a.locked() and not b.locked()


@pytest.mark.parametrize("slot", LOCK_SLOTS)
def test_lock_blocking_acquire_waits_for_holder_timeout(rc, slot):
    name = lock_name(slot, "wait")
    holder = rc.lock(name, timeout=1.0)
    assert holder.acquire(blocking=False)
    waiter = rc.lock(name, timeout=10, sleep=0.05)
    t0 = time.monotonic()
    assert waiter.acquire(blocking_timeout=8) is True
    waited = time.monotonic() - t0
    # the holder never releases: the waiter gets the lock when its PX runs out
    assert 0.5 <= waited < 8, waited
    assert waiter.owned() and not holder.owned()
    assert rc.get(name) == token_of(waiter)
    assert rc.pttl(name) > 5000                      # the waiter's own timeout now
    with pytest.raises(LockNotOwnedError):           # the old holder's token is stale
        holder.release()
    assert waiter.owned()
    waiter.release()
    assert rc.exists(name) == 0


@pytest.mark.parametrize("slot", LOCK_SLOTS)
def test_lock_blocking_acquire_gives_up_at_blocking_timeout(rc, slot):
    name = lock_name(slot, "giveup")
    holder = rc.lock(name, timeout=10)
    assert holder.acquire(blocking=False)
    waiter = rc.lock(name, timeout=10, sleep=0.05)
    t0 = time.monotonic()
    assert waiter.acquire(blocking_timeout=0.5) is False
    waited = time.monotonic() - t0
    assert 0.3 <= waited < 3, waited
    assert not waiter.owned() and holder.owned()
    holder.release()


@pytest.mark.parametrize("slot", LOCK_SLOTS)
def test_lock_timeout_expiry_frees_lock(rc, slot):
    name = lock_name(slot, "expire")
    lock = rc.lock(name, timeout=0.5)
    assert lock.acquire(blocking=False)
    pttl = rc.pttl(name)
    assert pttl == -2 or 0 < pttl <= 500, pttl      # -2: already gone on a slow run
    wait_gone(rc, name)
    assert not lock.locked() and not lock.owned()
    # every script refuses a token whose key is gone
    with pytest.raises(LockNotOwnedError):
        lock.extend(5)
    with pytest.raises(LockNotOwnedError):
        lock.reacquire()
    with pytest.raises(LockNotOwnedError):
        lock.release()
    other = rc.lock(name, timeout=5)
    assert other.acquire(blocking=False)
    other.release()


@pytest.mark.parametrize("slot", LOCK_SLOTS)
def test_lock_extend(rc, slot):
    name = lock_name(slot, "extend")
    lock = rc.lock(name, timeout=2)
    assert lock.acquire(blocking=False)
    assert 0 < rc.pttl(name) <= 2000
    assert lock.extend(3) is True                    # adds to what is left
    assert 3000 < rc.pttl(name) <= 5000, rc.pttl(name)
    assert lock.extend(1.5, replace_ttl=True) is True  # replaces it
    assert 0 < rc.pttl(name) <= 1500, rc.pttl(name)
    assert lock.extend(20, replace_ttl=True) is True
    assert 15000 < rc.pttl(name) <= 20000, rc.pttl(name)
    # someone else's token cannot extend it, and the TTL stays as it was
    other = rc.lock(name, timeout=2)
    other.local.token = b"not-the-owner"
    with pytest.raises(LockNotOwnedError):
        other.extend(100, replace_ttl=True)
    assert 15000 < rc.pttl(name) <= 20000
    # the script refuses a key without a TTL (PTTL -1)
    assert rc.persist(name)
    with pytest.raises(LockNotOwnedError):
        lock.extend(1)
    assert rc.pttl(name) == -1
    assert lock.owned()
    lock.release()
    assert rc.exists(name) == 0


def test_lock_extend_without_timeout_is_refused(rc):
    lock = rc.lock(lock_name(LOCK_SLOTS[0], "notimeout"))
    assert lock.acquire(blocking=False)
    try:
        assert rc.pttl(lock.name) == -1
        with pytest.raises(LockError):
            lock.extend(1)
    finally:
        lock.release()


@pytest.mark.parametrize("slot", LOCK_SLOTS)
def test_lock_reacquire(rc, slot):
    name = lock_name(slot, "reacquire")
    lock = rc.lock(name, timeout=5)
    assert lock.acquire(blocking=False)
    assert rc.pexpire(name, 1000)
    assert 0 < rc.pttl(name) <= 1000
    assert lock.reacquire() is True                  # back to the full timeout
    assert 4000 < rc.pttl(name) <= 5000, rc.pttl(name)
    other = rc.lock(name, timeout=60)
    other.local.token = b"not-the-owner"
    with pytest.raises(LockNotOwnedError):
        other.reacquire()
    assert 0 < rc.pttl(name) <= 5000
    lock.release()


@pytest.mark.parametrize("slot", LOCK_SLOTS)
def test_lock_release_with_other_token_raises(rc, slot):
    name = lock_name(slot, "othertoken")
    owner = rc.lock(name, timeout=10)
    assert owner.acquire(blocking=False)
    intruder = rc.lock(name, timeout=10)             # same name, forced local token
    intruder.local.token = b"not-the-owner"
    assert not intruder.owned() and intruder.locked()
    with pytest.raises(LockNotOwnedError):
        intruder.release()
    # nothing was deleted: the owner still holds it
    assert rc.get(name) == token_of(owner)
    assert owner.owned()
    owner.release()
    assert rc.exists(name) == 0


def test_lock_scripts_reloaded_after_script_flush(cluster, rc):
    """SCRIPT FLUSH on every primary: the next release gets NOSCRIPT, SCRIPT LOADs
    to all primaries and retries the EVALSHA, on each of the three shards."""
    assert rc.script_flush() is True
    rc.lock("x")                                     # registers the class's Script objects
    sha = Lock.lua_release.sha
    assert rc.script_exists(sha) == [False]
    for slot in LOCK_SLOTS:
        lock = rc.lock(lock_name(slot, "flush"), timeout=10)
        assert lock.acquire(blocking=False)
        lock.release()
        assert rc.exists(lock.name) == 0
    assert rc.script_exists(sha) == [True]           # folded over all primaries
    for port in cluster.primary_ports():
        assert cluster.node_by_port(port).call("SCRIPT", "EXISTS", sha) == [1], port


def test_lock_mutual_exclusion_under_contention(cluster):
    """Four threads, each with its own cluster client, do a read-modify-write of a
    counter in the lock's slot under the lock; no update may be lost."""
    slot = LOCK_SLOTS[1]
    name = lock_name(slot, "mutex")
    counter = "counter:%s" % key_for_slot(slot)
    setup = cluster.cluster_client()
    setup.delete(counter)
    threads_n, rounds = 4, 15
    errors: list[BaseException] = []
    stop = threading.Event()

    def worker():
        c = cluster.cluster_client()
        try:
            for _ in range(rounds):
                if stop.is_set():
                    return
                with c.lock(name, timeout=5, sleep=0.01, blocking_timeout=20):
                    v = int(c.get(counter) or 0)
                    time.sleep(0.002)
                    c.set(counter, v + 1)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            c.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(threads_n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    for t in threads:
        t.join(timeout=max(0.1, deadline - time.monotonic()))
    stop.set()
    try:
        assert not any(t.is_alive() for t in threads), "lock workers still running after 60s"
        assert not errors, [str(e) for e in errors]
        assert int(setup.get(counter)) == threads_n * rounds
        assert setup.exists(name) == 0
    finally:
        setup.close()


# -- BullMQ -----------------------------------------------------------------------


def _require_bullmq() -> None:
    assert shutil.which("node"), "node (Node.js >= 20) is not installed: apt-get install nodejs npm"
    pkg = os.path.join(NODE_DIR, "node_modules", "bullmq", "package.json")
    assert os.path.isfile(pkg), ("bullmq is not installed in tests/node/node_modules: "
                                 "run `npm ci --prefix tests/node`")


def test_bullmq_on_cluster(cluster, rc):
    _require_bullmq()
    # seeds that are not the first node, so discovery is exercised
    seeds = ["127.0.0.1:%d" % p for p in cluster.ports[1:3]]
    env_timeout_ms = 60000
    env = dict(os.environ, BULLMQ_TIMEOUT_MS=str(env_timeout_ms))
    cmd = ["node", BULLMQ_SCRIPT, *seeds]
    t0 = time.monotonic()
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=150, env=env,
                             stdin=subprocess.DEVNULL, cwd=NODE_DIR)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("bullmq_cluster.js still running after 150s (it bounds "
                             "itself at %d ms):\n%s\n%s" % (env_timeout_ms, e.stdout, e.stderr))
    took = time.monotonic() - t0
    out = res.stdout + res.stderr
    assert res.returncode == 0, "bullmq_cluster.js exited %d after %.1fs:\n%s\n%s" % (
        res.returncode, took, out, cluster.diagnostics())
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("SUMMARY ")]
    assert len(lines) == 1, out
    s = json.loads(lines[0][len("SUMMARY "):])
    assert "OK: bullmq jobs completed on the cluster" in res.stdout, out

    assert s["ok"] is True, s
    assert s["masters"] == 3, s
    assert s["prefix"] == "{bq}" and s["slot"] == keyslot("{bq}"), s
    assert s["expected"] == 52 and s["completed"] == 52, s
    assert s["jobCounts"] == {"completed": 52, "failed": 0, "delayed": 0, "wait": 0,
                              "active": 0}, s
    assert s["events"] == {"completed": 52, "failed": 0, "delayed": 3, "added": 52}, s
    # the job that failed twice, then succeeded on its third attempt
    f = s["flaky"]
    assert f["state"] == "completed" and f["attemptsMade"] == 3 and f["processed"] == 3, f
    assert f["failedEvents"] == 2, f
    assert f["returnvalue"] == {"ok": True, "attempt": 3}, f
    assert all(g >= 180 for g in f["retryGapsMs"]), f            # fixed backoff 200 ms
    # the delayed job was not taken before its delay
    d = s["delayed"]
    assert d["state"] == "completed" and d["delay"] == 500, d
    assert d["processedOn"] - d["timestamp"] >= 500, d
    assert d["workerSawAfterMs"] >= 500, d
    assert d["returnvalue"] == {"ok": True, "tag": "late"}, d
    assert s["batch"] == {"jobs": 50, "ok": 50}, s
    assert s["connectionErrors"] == [], s

    # the jobs really are on the server, in the slot of {bq}
    queue = s["queue"]
    assert rc.zcard("{bq}:%s:completed" % queue) == 52
    job = rc.hgetall("{bq}:%s:%s" % (queue, f["id"]))
    assert job.get("name") == "flaky" and json.loads(job["returnvalue"]) == f["returnvalue"]
    owner = cluster.owner_of(keyslot("{bq}"))
    assert cluster.node_by_port(owner).call(
        "CLUSTER", "COUNTKEYSINSLOT", keyslot("{bq}")) >= 52
