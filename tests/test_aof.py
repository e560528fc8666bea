"""AOF persistence with real processes: restart, kill -9, damage, rewrite, and
cross-checks with a real redis-server 7 in both directions."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time

import pytest
import redis

from storage.aof import Manifest, replay
from tests.helpers import Proc

AOF_ARGS = ["--appendonly", "yes", "--aof-use-rdb-preamble", "no"]


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="pynode-aof-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def start(workdir, *extra, redis_server=False, wait=True) -> Proc:
    return Proc(AOF_ARGS + list(extra), workdir=workdir, redis_server=redis_server).start(wait)


def aofdir(workdir) -> str:
    return os.path.join(workdir, "appendonlydir")


def manifest(workdir) -> Manifest:
    with open(os.path.join(aofdir(workdir), "appendonly.aof.manifest")) as fh:
        return Manifest.parse(fh.read())


def last_incr(workdir) -> str:
    return os.path.join(aofdir(workdir), manifest(workdir).incr[-1].name)


def wait_for(pred, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def fill_sample(c: redis.Redis) -> None:
    """Strings, TTLs, several databases, a transaction."""
    c.set("plain", "v1")
    c.set("bin", b"\x00\r\n*$\xff")
    c.set("ttl-ex", "t", ex=1000)
    c.set("soon-gone", "x", px=1)
    c.set("later", "l")
    c.expire("later", 2000)
    c.incr("counter")
    c.incrby("counter", 41)
    c.set("deleted", "d")
    c.delete("deleted")
    c.execute_command("SELECT", "0")
    d3 = redis.Redis(host="127.0.0.1", port=c.connection_pool.connection_kwargs["port"], db=3)
    d3.set("in-db3", "three")
    d3.close()
    p = c.pipeline(transaction=True)
    p.set("tx-a", "1")
    p.incr("tx-a")
    p.set("tx-b", "b")
    p.execute()
    time.sleep(0.01)  # soon-gone has expired


def check_sample(port: int) -> None:
    c = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    assert c.get("plain") == b"v1"
    assert c.get("bin") == b"\x00\r\n*$\xff"
    assert c.get("ttl-ex") == b"t"
    assert 900 < c.ttl("ttl-ex") <= 1000
    assert c.get("later") == b"l" and 1900 < c.ttl("later") <= 2000
    assert c.get("soon-gone") is None
    assert c.get("deleted") is None
    assert c.get("counter") == b"42"
    assert c.get("tx-a") == b"2" and c.get("tx-b") == b"b"
    assert c.ttl("plain") == -1
    d3 = redis.Redis(host="127.0.0.1", port=port, db=3, socket_timeout=10)
    assert d3.get("in-db3") == b"three"
    assert c.get("in-db3") is None
    c.close()
    d3.close()


def test_fresh_start_layout_and_restart(workdir):
    p = start(workdir, "--appendfsync", "always")
    try:
        d = aofdir(workdir)
        assert sorted(os.listdir(d)) == ["appendonly.aof.1.base.aof",
                                         "appendonly.aof.1.incr.aof",
                                         "appendonly.aof.manifest"]
        with open(os.path.join(d, "appendonly.aof.manifest")) as fh:
            assert fh.read() == ("file appendonly.aof.1.base.aof seq 1 type b\n"
                                 "file appendonly.aof.1.incr.aof seq 1 type i\n")
        fill_sample(p.client())
    finally:
        p.stop()
    assert p.proc.returncode == 0
    with open(last_incr(workdir), "rb") as fh:
        data = fh.read()
    assert data.startswith(b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n")
    assert b"*1\r\n$5\r\nMULTI\r\n" in data and b"*1\r\n$4\r\nEXEC\r\n" in data
    p2 = start(workdir)
    try:
        check_sample(p2.port)
        assert "DB loaded from" in p2.log()
        assert "Opening AOF incr file appendonly.aof.1.incr.aof on server start" in p2.log()
        # writes continue into the same incr file and survive one more restart
        p2.client().set("second-run", "yes")
    finally:
        p2.stop()
    p3 = start(workdir)
    try:
        check_sample(p3.port)
        assert p3.client().get("second-run") == b"yes"
    finally:
        p3.stop()


def test_kill9_loses_no_acknowledged_write(workdir):
    p = start(workdir, "--appendfsync", "always")
    acked: list[int] = []
    stop = threading.Event()

    def writer():
        c = p.client(socket_timeout=5)
        i = 0
        while not stop.is_set():
            try:
                c.set("k%d" % i, "v%d" % i)
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                return
            acked.append(i)
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        wait_for(lambda: len(acked) >= 1500, 30, "1500 acknowledged writes")
        p.kill(signal.SIGKILL)
    finally:
        stop.set()
        t.join(15)
        p.stop()
    assert not t.is_alive()
    assert len(acked) >= 1500
    p2 = start(workdir)
    try:
        c = p2.client()
        keys = ["k%d" % i for i in acked]
        vals = []
        for j in range(0, len(keys), 1000):
            vals.extend(c.mget(keys[j:j + 1000]))
        missing = [k for k, v in zip(keys, vals) if v is None]
        assert not missing, "acknowledged writes lost: %r" % missing[:10]
        assert all(v == ("v" + k[1:]).encode() for k, v in zip(keys, vals))
    finally:
        p2.stop()


def test_truncated_last_command_is_dropped_with_warning(workdir):
    p = start(workdir, "--appendfsync", "always")
    try:
        c = p.client()
        c.set("a", "1")
        c.set("b", "2")
    finally:
        p.stop()
    path = last_incr(workdir)
    good_size = os.path.getsize(path)
    with open(path, "ab") as fh:
        fh.write(b"*3\r\n$3\r\nSET\r\n$1\r\nc\r\n$10\r\nonly-")
    p2 = start(workdir)
    try:
        log = p2.log()
        name = os.path.basename(path)
        assert "!!! Warning: short read while loading the AOF file %s!!!" % name in log
        assert "AOF %s loaded anyway because aof-load-truncated is enabled" % name in log
        assert os.path.getsize(path) == good_size
        c = p2.client()
        assert c.get("a") == b"1" and c.get("b") == b"2" and c.get("c") is None
        c.set("d", "4")
    finally:
        p2.stop()
    p3 = start(workdir)
    try:
        c = p3.client()
        assert c.mget("a", "b", "c", "d") == [b"1", b"2", None, b"4"]
        assert "short read" not in p3.log()
    finally:
        p3.stop()


def test_truncated_refused_when_option_off(workdir):
    p = start(workdir)
    try:
        p.client().set("a", "1")
    finally:
        p.stop()
    with open(last_incr(workdir), "ab") as fh:
        fh.write(b"*2\r\n$3\r\nDEL")
    p2 = start(workdir, "--aof-load-truncated", "no", wait=False)
    try:
        assert p2.wait_exit(20) == 1
        assert "Unexpected end of file" in p2.log()
        assert "appendonly.aof.1.incr.aof" in p2.log()
    finally:
        p2.stop()


def test_corruption_in_the_middle_stops_startup(workdir):
    p = start(workdir, "--appendfsync", "always")
    try:
        c = p.client()
        for i in range(10):
            c.set("key%d" % i, "value%d" % i)
    finally:
        p.stop()
    path = last_incr(workdir)
    with open(path, "rb") as fh:
        data = bytearray(fh.read())
    # damage the 5th command's "*3" header
    offset = -1
    for _ in range(5):
        offset = data.index(b"*3\r\n", offset + 1)
    data[offset] = ord("x")
    with open(path, "wb") as fh:
        fh.write(data)
    p2 = start(workdir, wait=False)
    try:
        assert p2.wait_exit(20) == 1
        log = p2.log()
        assert path in log or os.path.basename(path) in log
        assert "offset %d" % offset in log
        assert "redis-check-aof --fix" in log
        assert "Ready to accept connections" not in log
    finally:
        p2.stop()
    with open(path, "rb") as fh:
        assert fh.read() == bytes(data)  # nothing was truncated or rewritten


def test_unknown_command_and_bad_manifest_stop_startup(workdir):
    p = start(workdir)
    try:
        p.client().set("a", "1")
    finally:
        p.stop()
    path = last_incr(workdir)
    with open(path, "ab") as fh:
        fh.write(b"*2\r\n$9\r\nNOSUCHCMD\r\n$1\r\nx\r\n")
    p2 = start(workdir, wait=False)
    try:
        assert p2.wait_exit(20) == 1
        assert "Unknown command 'NOSUCHCMD'" in p2.log()
        assert os.path.basename(path) in p2.log()
    finally:
        p2.stop()
    mpath = os.path.join(aofdir(workdir), "appendonly.aof.manifest")
    with open(mpath, "a") as fh:
        fh.write("file appendonly.aof.7.incr.aof seq 1 type i\n")
    p3 = start(workdir, wait=False)
    try:
        assert p3.wait_exit(20) == 1
        assert "non-monotonic" in p3.log() and mpath in p3.log()
    finally:
        p3.stop()


def test_missing_file_in_manifest_stops_startup(workdir):
    p = start(workdir)
    try:
        p.client().set("a", "1")
    finally:
        p.stop()
    base = os.path.join(aofdir(workdir), manifest(workdir).base.name)
    os.unlink(base)
    p2 = start(workdir, wait=False)
    try:
        assert p2.wait_exit(20) == 1
        assert base in p2.log() and "doesn't exist" in p2.log()
    finally:
        p2.stop()


def _rewrite_done(c: redis.Redis, seq: int, workdir) -> bool:
    m = manifest(workdir)
    return m.base is not None and m.base.seq >= seq and not any(
        n.startswith("temp-rewriteaof-bg") for n in os.listdir(aofdir(workdir)))


def test_bgrewriteaof_compacts_and_keeps_concurrent_writes(workdir):
    p = start(workdir, "--appendfsync", "everysec")
    try:
        c = p.client()
        pipe = c.pipeline(transaction=False)
        for round_ in range(3):
            for i in range(20000):
                pipe.set("key:%d" % i, "r%d-%d" % (round_, i))
            pipe.execute()
        c.set("ttl-key", "t", ex=5000)
        c5 = p.client(db=5)
        c5.set("db5", "five")
        before = sum(os.path.getsize(os.path.join(aofdir(workdir), n))
                     for n in os.listdir(aofdir(workdir)))
        assert c.bgrewriteaof() in (True, b"Background append only file rewriting started",
                                    "Background append only file rewriting started")
        # writes while the child runs land in the new incr file
        for i in range(200):
            c.set("during:%d" % i, "d%d" % i)
        c.delete("key:0")
        wait_for(lambda: _rewrite_done(c, 2, workdir), 60, "the rewrite to finish")
        d = aofdir(workdir)
        # the history files go after the manifest switch (as Redis's bio job)
        wait_for(lambda: sorted(os.listdir(d)) == ["appendonly.aof.2.base.aof",
                                                   "appendonly.aof.2.incr.aof",
                                                   "appendonly.aof.manifest"],
                 10, "the old base and incr files to be deleted")
        after = sum(os.path.getsize(os.path.join(d, n)) for n in os.listdir(d))
        assert after < before / 2
        with open(os.path.join(d, "appendonly.aof.2.base.aof"), "rb") as fh:
            base = []
            replay(fh.read(), base.append)
        sets = {a[1]: a[2] for a in base if a[0] == b"SET"}
        assert sets[b"key:19999"] == b"r2-19999" and len(sets) >= 20002
        assert b"during:0" not in sets and b"key:0" in sets  # the snapshot is at the fork
        assert [b"SELECT", b"5"] in base
        assert any(a[0] == b"PEXPIREAT" and a[1] == b"ttl-key" for a in base)
        assert "Background AOF rewrite finished successfully" in p.log()
        c.set("after-rewrite", "1")
    finally:
        p.stop()
    p2 = start(workdir)
    try:
        c = p2.client()
        assert c.dbsize() == 20000 - 1 + 1 + 200 + 1
        assert c.get("key:0") is None and c.get("key:1") == b"r2-1"
        assert c.get("during:199") == b"d199" and c.get("after-rewrite") == b"1"
        assert 4000 < c.ttl("ttl-key") <= 5000
        assert p2.client(db=5).get("db5") == b"five"
    finally:
        p2.stop()


def test_auto_rewrite_on_growth(workdir):
    p = start(workdir, "--auto-aof-rewrite-min-size", "200kb",
              "--auto-aof-rewrite-percentage", "100")
    try:
        c = p.client()
        pipe = c.pipeline(transaction=False)
        for r in range(30):
            for i in range(200):
                pipe.set("k%d" % i, "x" * 50)
            pipe.execute()
        wait_for(lambda: _rewrite_done(c, 2, workdir), 60, "an automatic rewrite")
        assert "Starting automatic rewriting of AOF on" in p.log()
        c.set("k0", "final")
    finally:
        p.stop()
    p2 = start(workdir)
    try:
        c = p2.client()
        assert c.dbsize() == 200 and c.get("k0") == b"final"
    finally:
        p2.stop()


def test_redis_server_loads_pynode_aof(workdir):
    p = start(workdir, "--appendfsync", "always")
    try:
        c = p.client()
        fill_sample(c)
        c.bgrewriteaof()
        wait_for(lambda: _rewrite_done(c, 2, workdir), 60, "the rewrite to finish")
        c.set("after", "rewrite")
    finally:
        p.stop()
    r = start(workdir, redis_server=True)
    try:
        check_sample(r.port)
        assert r.client().get("after") == b"rewrite"
    finally:
        r.stop()


def test_redis_server_loads_pynode_aof_without_rewrite(workdir):
    p = start(workdir, "--appendfsync", "always")
    try:
        fill_sample(p.client())
    finally:
        p.stop()
    r = start(workdir, redis_server=True)
    try:
        check_sample(r.port)
    finally:
        r.stop()


def test_pynode_loads_redis_server_aof(workdir):
    r = start(workdir, redis_server=True)
    try:
        c = r.client()
        fill_sample(c)
        c.bgrewriteaof()
        wait_for(lambda: c.info("persistence")["aof_rewrite_in_progress"] == 0
                 and c.info("persistence")["aof_rewrites"] >= 1, 30, "redis rewrite")
        c.set("post-rewrite", "incr")
        c.set("plain", "v1")
        c.shutdown()
    except redis.ConnectionError:
        pass
    finally:
        r.stop()
    m = manifest(workdir)
    with open(os.path.join(aofdir(workdir), m.base.name), "rb") as fh:
        assert b"SET" in fh.read()  # the base is in AOF format, with data
    p = start(workdir)
    try:
        check_sample(p.port)
        assert p.client().get("post-rewrite") == b"incr"
        p.client().set("from-pynode", "1")
    finally:
        p.stop()
    r2 = start(workdir, redis_server=True)
    try:
        assert r2.client().get("from-pynode") == b"1"
        check_sample(r2.port)
    finally:
        r2.stop()


def test_appendonly_off_rewrite_then_turned_on_at_runtime(workdir):
    """As Redis 7.0: BGREWRITEAOF with appendonly no writes a base and a manifest;
    CONFIG SET appendonly yes rewrites a new base, with an incr file after it."""
    p = Proc(["--aof-use-rdb-preamble", "no"], workdir=workdir).start()
    try:
        c = p.client()
        c.set("a", "1")
        c.bgrewriteaof()
        wait_for(lambda: os.path.exists(os.path.join(aofdir(workdir),
                                                     "appendonly.aof.manifest"))
                 and _rewrite_done(c, 1, workdir), 30, "the rewrite with appendonly no")
        assert sorted(os.listdir(aofdir(workdir))) == ["appendonly.aof.1.base.aof",
                                                       "appendonly.aof.manifest"]
        c.set("b", "2")
        assert c.config_set("appendonly", "yes")
        c.set("c", "3")  # written while the rewrite runs: kept in the temp incr file
        wait_for(lambda: _rewrite_done(c, 2, workdir) and manifest(workdir).incr, 30,
                 "the rewrite started by CONFIG SET appendonly yes")
        with open(os.path.join(aofdir(workdir), "appendonly.aof.manifest")) as fh:
            assert fh.read() == ("file appendonly.aof.2.base.aof seq 2 type b\n"
                                 "file appendonly.aof.1.incr.aof seq 1 type i\n")
        c.set("d", "4")
    finally:
        p.stop()
    assert sorted(os.listdir(aofdir(workdir))) == ["appendonly.aof.1.incr.aof",
                                                   "appendonly.aof.2.base.aof",
                                                   "appendonly.aof.manifest"]
    p2 = start(workdir)
    try:
        assert p2.client().mget("a", "b", "c", "d") == [b"1", b"2", b"3", b"4"]
    finally:
        p2.stop()
    r = start(workdir, redis_server=True)
    try:
        assert r.client().mget("a", "b", "c", "d") == [b"1", b"2", b"3", b"4"]
    finally:
        r.stop()


def test_total_forks_counts_every_fork():
    """INFO total_forks counts BGREWRITEAOF and the automatic rewrite (which
    was not counted); every fork goes through pynode.children.Children."""
    p = Proc(["--appendonly", "yes", "--auto-aof-rewrite-min-size", "65536",
              "--auto-aof-rewrite-percentage", "100"]).start()
    try:
        c = p.client()

        def forks() -> int:
            return c.info("stats")["total_forks"]

        def rewriting() -> bool:
            return c.info("persistence")["aof_rewrite_in_progress"] == 1

        deadline = time.monotonic() + 20
        while rewriting() and time.monotonic() < deadline:
            time.sleep(0.05)
        base = forks()
        c.bgrewriteaof()
        assert forks() == base + 1
        while rewriting() and time.monotonic() < deadline:
            time.sleep(0.05)
        # grow the AOF past twice its base size: the cron starts a rewrite
        value = "x" * 1000
        for i in range(400):
            c.set("k%d" % i, value)
            if forks() > base + 1:
                break
        while forks() == base + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert forks() >= base + 2
        assert c.info("stats")["latest_fork_usec"] > 0
    finally:
        p.cleanup()
