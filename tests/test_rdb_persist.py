"""RDB persistence: a plain pynode keeps its data across SIGTERM and restart,
SAVE/BGSAVE/SHUTDOWN SAVE|NOSAVE/save points/FLUSHALL as Redis 7.0, dump.rdb
files move both ways between pynode and redis-server, and a damaged file
stops start-up instead of loading part of it."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile

import pytest
import redis

from tests.helpers import Proc, wait_until

DEFAULT_SAVE = ["--save", "3600 1 300 100 60 10000"]


def fill(c) -> None:
    """One key of every type, some with a TTL, and a function library."""
    c.set("str", "v")
    c.set("int", "12345")
    c.set("ttl", "x", ex=1000)
    c.rpush("list", *[str(i) for i in range(200)])
    c.sadd("intset", 1, 2, 3)
    c.sadd("set", "a", "b", "c")
    c.hset("hash", mapping={"f%d" % i: "v%d" % i for i in range(10)})
    c.zadd("zset", {"m%d" % i: i / 3 for i in range(20)})
    c.xadd("stream", {"f": "v"})
    c.pfadd("hll", "a", "b", "c")
    c.function_load("#!lua name=kept\nredis.register_function('kept_f', "
                    "function() return 'kept' end)")


def digest(c) -> bytes:
    return c.execute_command("DEBUG", "DIGEST")


def test_plain_pynode_keeps_its_data_across_sigterm():
    p = Proc(DEFAULT_SAVE)
    p.start()
    try:
        c = p.client()
        fill(c)
        c.close()
        p.kill(signal.SIGTERM)
        assert os.path.exists(os.path.join(p.dir, "dump.rdb"))
        assert "DB saved on disk" in p.log()
        p.start()
        c = p.client()
        assert c.get("str") == b"v" and c.llen("list") == 200 and c.zcard("zset") == 20
        assert 900 < c.ttl("ttl") <= 1000
        assert c.fcall("kept_f", 0) == b"kept"
        info = c.info("persistence")
        assert info["rdb_last_load_keys_loaded"] == 10
        c.close()
    finally:
        p.cleanup()


def _shutdown(c, how: str) -> None:
    try:
        c.execute_command("SHUTDOWN", how)
    except redis.ConnectionError:
        pass                                      # the server is gone: as expected


def test_shutdown_save_and_nosave():
    p = Proc()                                    # --save "": no save points
    p.start()
    try:
        c = p.client()
        c.set("k", "1")
        _shutdown(c, "SAVE")
        assert p.wait_exit() == 0
        path = os.path.join(p.dir, "dump.rdb")
        assert os.path.exists(path)
        p.start()
        c = p.client()
        assert c.get("k") == b"1"
        c.set("k", "2")
        mtime = os.path.getmtime(path)
        _shutdown(c, "NOSAVE")
        assert p.wait_exit() == 0
        assert os.path.getmtime(path) == mtime
        p.start()
        assert p.client().get("k") == b"1"
    finally:
        p.cleanup()


def test_save_bgsave_lastsave_and_info():
    p = Proc(["--enable-debug-command", "yes"]).start()
    try:
        c = p.client()
        c.set("a", "1")
        assert c.info("persistence")["rdb_changes_since_last_save"] >= 1
        assert c.save()
        info = c.info("persistence")
        assert info["rdb_changes_since_last_save"] == 0 and info["rdb_saves"] == 1
        last = c.lastsave()
        c.set("b", "2")
        assert c.bgsave() in (True, b"Background saving started")
        wait_until(lambda: c.info("persistence")["rdb_bgsave_in_progress"] == 0, 20, "bgsave")
        info = c.info("persistence")
        assert info["rdb_saves"] == 2 and info["rdb_last_bgsave_status"] == "ok"
        assert c.lastsave() >= last
        assert c.info("stats")["total_forks"] >= 1
        with pytest.raises(redis.ResponseError, match="syntax error"):
            c.execute_command("BGSAVE", "now")
    finally:
        p.cleanup()


def test_save_points_start_a_background_save():
    p = Proc(["--save", "1 1"]).start()
    try:
        c = p.client()
        c.set("k", "v")
        wait_until(lambda: c.info("persistence")["rdb_saves"] >= 1, 15, "a save point")
        assert "1 changes in 1 seconds. Saving..." in p.log()
        assert os.path.exists(os.path.join(p.dir, "dump.rdb"))
    finally:
        p.cleanup()


def test_flushall_saves_with_save_points():
    p = Proc(DEFAULT_SAVE).start()
    try:
        c = p.client()
        c.set("k", "v")
        c.flushall()
        assert c.info("persistence")["rdb_saves"] == 1
        p.kill(signal.SIGKILL)
        p.start()
        assert p.client().dbsize() == 0
    finally:
        p.cleanup()


@pytest.mark.parametrize("direction", ["pynode->redis", "redis->pynode"])
def test_dump_rdb_moves_between_servers(direction):
    src_is_redis = direction.startswith("redis")
    src = Proc(["--enable-debug-command", "yes"], redis_server=src_is_redis).start()
    workdir = tempfile.mkdtemp(prefix="pynode-rdb-")
    try:
        c = src.client()
        fill(c)
        want = digest(c)
        assert c.save()
        shutil.copy(os.path.join(src.dir, "dump.rdb"), os.path.join(workdir, "dump.rdb"))
        dst = Proc(["--enable-debug-command", "yes"], redis_server=not src_is_redis,
                   workdir=workdir).start()
        try:
            d = dst.client()
            assert digest(d) == want
            assert d.fcall("kept_f", 0) == b"kept"
            assert 900 < d.ttl("ttl") <= 1000
        finally:
            dst.stop()
    finally:
        src.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_damaged_dump_rdb_stops_startup(damage):
    p = Proc().start()
    try:
        c = p.client()
        fill(c)
        c.save()
        p.stop()
        path = os.path.join(p.dir, "dump.rdb")
        data = open(path, "rb").read()
        if damage == "truncated":
            data = data[:len(data) // 2]
        else:
            data = data[:60] + bytes([data[60] ^ 0xFF]) + data[61:]
        open(path, "wb").write(data)
        p.start(wait=False)
        assert p.wait_exit(20) == 1
        log = p.log()
        assert "Fatal error loading the DB" in log and "dump.rdb" in log
        assert "offset" in log or "checksum" in log
    finally:
        p.cleanup()


def test_misconf_after_a_failed_bgsave_as_redis():
    """A background save that fails (its directory is gone) stops writes and
    PING with Redis's MISCONF text until a save succeeds or
    stop-writes-on-bgsave-error is turned off; reads go on."""
    from tests.compare import Conn
    replies = []
    for rs in (False, True):
        p = Proc(["--save", "3600 1", "--enable-protected-configs", "yes"],
                 redis_server=rs).start()
        gone = tempfile.mkdtemp(prefix="pynode-gone-")
        try:
            c = p.client()
            c.set("k", "v")
            c.config_set("dir", gone)
            shutil.rmtree(gone)
            c.bgsave()
            wait_until(lambda: c.info("persistence")["rdb_last_bgsave_status"] == "err", 20,
                       "the failed save")
            raw = Conn(p.port)
            got = [raw.call("SET", "x", "1"), raw.call("PING"), raw.call("GET", "k")]
            c.config_set("stop-writes-on-bgsave-error", "no")
            got.append(raw.call("SET", "x", "2"))
            c.config_set("stop-writes-on-bgsave-error", "yes")
            got.append(raw.call("SET", "x", "3"))
            os.makedirs(gone)
            c.config_set("dir", gone)            # Redis chdirs: enter the new directory
            got.append(raw.call("SAVE"))
            got.append(raw.call("SET", "x", "4"))
            raw.close()
            replies.append(got)
        finally:
            p.cleanup()
            shutil.rmtree(gone, ignore_errors=True)
    assert replies[0] == replies[1]
    assert replies[0][0].startswith(b"-MISCONF Redis is configured to save RDB snapshots")
    assert replies[0][2] == b"$1\r\nv\r\n" and replies[0][3] == b"+OK\r\n"
    assert replies[0][-1] == b"+OK\r\n"


def test_one_child_at_a_time_as_redis():
    """A BGSAVE child runs: BGSAVE [SCHEDULE] and SAVE are refused with
    Redis's text, BGREWRITEAOF is scheduled and starts when the save is
    done; the same replies as redis-server 7.0."""
    from tests.compare import Conn
    runs = []
    for rs in (False, True):
        p = Proc(["--rdb-key-save-delay", "100000"], redis_server=rs).start()
        try:
            c = p.client()
            for i in range(20):
                c.set("k%d" % i, i)
            raw = Conn(p.port)
            got = [raw.call("BGSAVE"), raw.call("BGSAVE"), raw.call("BGSAVE", "SCHEDULE"),
                   raw.call("SAVE"), raw.call("BGREWRITEAOF")]
            info = c.info("persistence")
            got.append((info["rdb_bgsave_in_progress"], info["aof_rewrite_scheduled"],
                        info["aof_rewrite_in_progress"]))
            got.append(raw.call("BGREWRITEAOF"))
            wait_until(lambda: c.info("persistence")["aof_rewrites"] == 1, 30,
                       "the scheduled rewrite")
            info = c.info("persistence")
            got.append((info["rdb_saves"], info["rdb_last_bgsave_status"]))
            raw.close()
            runs.append(got)
        finally:
            p.cleanup()
    assert runs[0] == runs[1]
    assert runs[0][:5] == [b"+Background saving started\r\n",
                           b"-ERR Background save already in progress\r\n",
                           b"-ERR Background save already in progress\r\n",
                           b"-ERR Background save already in progress\r\n",
                           b"+Background append only file rewriting scheduled\r\n"]
    assert runs[0][5] == (1, 1, 0)


def test_full_sync_waits_for_a_running_bgsave():
    """A replica asking for a full sync while a BGSAVE child runs waits for
    it (one child at a time), then syncs every key; each fork is counted."""
    p = Proc(["--rdb-key-save-delay", "50000"]).start()
    r = Proc()
    try:
        c = p.client()
        for i in range(40):
            c.set("k%d" % i, i)
        forks = c.info("stats")["total_forks"]
        assert c.bgsave()
        r.start()
        rc = r.client()
        rc.replicaof("127.0.0.1", p.port)
        wait_until(lambda: "BGSAVE for SYNC" in p.log(), 10, "the delayed sync")
        assert c.info("persistence")["rdb_bgsave_in_progress"] == 1
        wait_until(lambda: rc.info("replication").get("master_link_status") == "up", 40,
                   "the sync after the BGSAVE")
        assert rc.dbsize() == 40
        assert "Waiting for next BGSAVE for SYNC" in p.log()
        assert c.info("stats")["total_forks"] == forks + 2
        assert c.info("persistence")["rdb_saves"] == 1
    finally:
        r.cleanup()
        p.cleanup()
