"""RDB persistence: a plain pynode keeps its data across SIGTERM and restart,
SAVE/BGSAVE/SHUTDOWN SAVE|NOSAVE/save points/FLUSHALL as Redis 7.0, dump.rdb
files move both ways between pynode and redis-server, and a damaged file
stops start-up instead of loading part of it."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time

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


def fill_random(c, prefix: str, n: int, size: int) -> None:
    """n string keys <prefix><i> of 2 * size random hex characters."""
    pipe = c.pipeline(transaction=False)
    for i in range(n):
        pipe.set("%s%d" % (prefix, i), os.urandom(size).hex())
    pipe.execute()


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


@pytest.mark.parametrize("damage", ["truncated", "flipped", "version"])
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
        elif damage == "version":
            data = b"REDIS0011" + data[9:]                # a newer format than 7.0's
        else:
            data = data[:60] + bytes([data[60] ^ 0xFF]) + data[61:]
        open(path, "wb").write(data)
        p.start(wait=False)
        assert p.wait_exit(20) == 1
        log = p.log()
        assert "Fatal error loading the DB" in log and "dump.rdb" in log
        assert "offset" in log or "checksum" in log or "version 11" in log
        assert "Done loading RDB" not in log              # never a partial load
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
    r = Proc().start()
    try:
        c = p.client()
        for i in range(200):
            c.set("k%d" % i, i)
        rc = r.client()
        forks = c.info("stats")["total_forks"]
        assert c.bgsave()                                  # ~10 s
        rc.replicaof("127.0.0.1", p.port)
        wait_until(lambda: "Waiting for next BGSAVE for SYNC" in p.log(), 10,
                   "the delayed sync")
        assert c.info("persistence")["rdb_bgsave_in_progress"] == 1
        assert c.info("stats")["total_forks"] == forks + 1
        c.config_set("rdb-key-save-delay", 0)             # the sync's child: fast
        wait_until(lambda: rc.info("replication").get("master_link_status") == "up", 40,
                   "the sync after the BGSAVE")
        assert rc.dbsize() == 200
        assert c.info("stats")["total_forks"] == forks + 2
        assert c.info("persistence")["rdb_saves"] == 1
    finally:
        r.cleanup()
        p.cleanup()


def _loading_view(p):
    """Start p on its dump.rdb and watch it while it loads: PING's reply,
    INFO persistence's loading fields, and once loaded the log lines."""
    import re
    from tests.compare import Conn
    p.start(wait=False)
    deadline = time.monotonic() + 20
    raw = None
    while raw is None:
        assert time.monotonic() < deadline, "no listener while loading:\n" + p.log()
        try:
            raw = Conn(p.port)
        except OSError:
            time.sleep(0.02)
    ping = raw.call("PING")
    info = raw.call("INFO", "persistence").decode()
    fields = dict(line.split(":", 1) for line in info.split("\r\n")[1:] if ":" in line)
    wait_until(lambda: raw.call("PING") == b"+PONG\r\n", 60, "the end of the load")
    after = raw.call("INFO", "persistence").decode()
    raw.close()
    lines = re.findall(r"(Loading RDB produced by version [\d.]+|RDB age \d+ seconds|"
                       r"RDB memory usage when created [\d.]+ Mb|Done loading RDB, keys "
                       r"loaded: \d+, keys expired: \d+\.|DB loaded from disk: )", p.log())
    return ping, fields, after, lines


def test_clients_get_loading_while_a_big_dump_rdb_loads_as_redis():
    """The listener is bound before dump.rdb is loaded: during a long load
    (key-load-delay) clients get -LOADING, INFO shows loading:1 and the
    loading_* fields; the log has rdbLoad's lines; keys that expired in the
    file are dropped and counted, as redis-server 7.0 does."""
    src = Proc(["--enable-debug-command", "yes"]).start()
    try:
        c = src.client()
        fill_random(c, "key:", 1500, 300)
        c.set("gone", "x", px=300)
        c.set("stays", "y", ex=1000)
        assert c.save()
        c.close()
        path = os.path.join(src.dir, "dump.rdb")
        size = os.path.getsize(path)
        time.sleep(0.5)                                   # "gone" is expired in the file
        views = []
        for rs in (False, True):
            p = Proc(["--key-load-delay", "2000", "--loading-process-events-interval-bytes",
                      "1024"], redis_server=rs)
            shutil.copy(path, os.path.join(p.dir, "dump.rdb"))
            try:
                views.append(_loading_view(p))
            finally:
                p.cleanup()
    finally:
        src.cleanup()
    (ping, fields, after, lines), (rping, rfields, rafter, rlines) = views
    assert ping == rping == b"-LOADING Redis is loading the dataset in memory\r\n"
    assert fields["loading"] == rfields["loading"] == "1"
    names = [k for k in rfields if k.startswith("loading_")]
    assert names == ["loading_start_time", "loading_total_bytes", "loading_rdb_used_mem",
                     "loading_loaded_bytes", "loading_loaded_perc", "loading_eta_seconds"]
    assert [k for k in fields if k.startswith("loading_")] == names
    assert int(fields["loading_total_bytes"]) == size == int(rfields["loading_total_bytes"])
    assert 0 <= float(fields["loading_loaded_perc"]) < 100
    assert "loading:0" in after and "loading_total_bytes" not in after
    assert "rdb_last_load_keys_loaded:1501" in after and "rdb_last_load_keys_expired:1" in after
    assert "rdb_last_load_keys_loaded:1501" in rafter and "rdb_last_load_keys_expired:1" in rafter
    want = ["Done loading RDB, keys loaded: 1501, keys expired: 1.", "DB loaded from disk: "]
    assert lines[-2:] == rlines[-2:] == want
    assert [ln.split(" ")[:2] for ln in lines[:3]] == [ln.split(" ")[:2] for ln in rlines[:3]]
    assert lines[0] == "Loading RDB produced by version 7.0.15"


def test_replica_keeps_or_deletes_the_sync_rdb_as_redis():
    """A replica (repl-diskless-load disabled) stores the master's RDB as
    its dump.rdb; with rdb-del-sync-files yes and no persistence it removes
    it once loaded; pynode and redis-server replicas do the same."""
    primary = Proc().start()
    try:
        c = primary.client()
        for i in range(50):
            c.set("k%d" % i, i)
        seen = []
        for rs in (False, True):
            for delete in ("no", "yes"):
                r = Proc(["--rdb-del-sync-files", delete], redis_server=rs).start()
                try:
                    rc = r.client()
                    rc.replicaof("127.0.0.1", primary.port)
                    wait_until(lambda: rc.info("replication").get("master_link_status")
                               == "up", 30, "the sync")
                    assert rc.dbsize() == 50
                    time.sleep(0.3)                      # Redis unlinks in the background
                    path = os.path.join(r.dir, "dump.rdb")
                    kept = os.path.exists(path)
                    seen.append((delete, kept, "Removing the RDB file obtained from the "
                                 "master. This replica has persistence disabled" in r.log()))
                    if kept:
                        assert open(path, "rb").read(9) == b"REDIS0010"
                finally:
                    r.cleanup()
    finally:
        primary.cleanup()
    assert seen[:2] == seen[2:] == [("no", True, False), ("yes", False, True)]


def test_full_disk_bgsave_fails_then_recovers_as_redis():
    """A background save that cannot write (RLIMIT_FSIZE lowered on the
    server: writes past it fail with EFBIG, as on a full disk) fails;
    with save points, writes get MISCONF; when the limit is raised again the
    next BGSAVE succeeds, writes are accepted, and nothing was lost."""
    import resource
    from tests.compare import Conn
    runs = []
    for rs in (False, True):
        p = Proc(["--save", "3600 1"], redis_server=rs).start()
        try:
            c = p.client()
            fill_random(c, "k", 200, 512)
            pid = p.proc.pid
            soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (65536, hard))
            got = [c.bgsave() is not None]
            wait_until(lambda: c.info("persistence")["rdb_last_bgsave_status"] == "err", 20,
                       "the failed save")
            raw = Conn(p.port)
            got += [raw.call("SET", "x", "1")[:8], raw.call("GET", "k0")[:4]]
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))
            got.append(raw.call("BGSAVE"))
            wait_until(lambda: c.info("persistence")["rdb_last_bgsave_status"] == "ok", 20,
                       "the save after the space came back")
            got.append(raw.call("SET", "x", "1"))
            got.append(sorted(n for n in os.listdir(p.dir) if n.endswith(".rdb")))
            raw.close()
            p.kill(signal.SIGKILL)
            p.start()
            got.append(p.client().dbsize())               # the snapshot holds every key
            runs.append(got)
        finally:
            p.cleanup()
    assert runs[0] == runs[1]
    assert runs[0] == [True, b"-MISCONF", b"$102", b"+Background saving started\r\n",
                       b"+OK\r\n", ["dump.rdb"], 200]
