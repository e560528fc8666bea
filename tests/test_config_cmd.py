"""CONFIG GET / SET / RESETSTAT / REWRITE against a pynode process (and a real
redis-server 7.0 for the error texts)."""

from __future__ import annotations

import os
import socket
import time

import pytest
import redis

from tests.helpers import Proc, enc, free_port, raw_command


def test_config_get_patterns_aliases(r):
    assert r.config_get("maxclients") == {"maxclients": "10000"}
    assert r.config_get("nosuch") == {}
    got = r.config_get("hz", "maxclients", "port")
    assert set(got) == {"hz", "maxclients", "port"}
    # the alias is returned under the name asked for
    assert r.config_get("slave-read-only") == {"slave-read-only": "yes"}
    assert r.config_get("SLAVE-read-only") == {"SLAVE-read-only": "yes"}
    # a glob matches names and aliases, case-insensitively; hidden configs need the exact name
    got = r.config_get("*MAX-*-entries*")
    assert set(got) == {"hash-max-listpack-entries", "hash-max-ziplist-entries",
                        "zset-max-listpack-entries", "zset-max-ziplist-entries",
                        "set-max-intset-entries"}
    assert r.config_get("rdb-key*") == {}
    assert r.config_get("rdb-key-save-delay") == {"rdb-key-save-delay": "0"}
    assert r.config_get("include") == {} and r.config_get("rename-command") == {}
    everything = r.config_get("*")
    assert len(everything) > 150 and "dir" in everything and "save" in everything


def test_config_get_resp3_map(server):
    data = raw_command(server.port, enc("HELLO", "3") + enc("CONFIG", "GET", "maxmemory"))
    assert data.endswith(b"%1\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n")


ERROR_CASES = [
    ("CONFIG", "SET", "foo", "bar"),
    ("CONFIG", "SET", "hz", "abc"),
    ("CONFIG", "SET", "hz", "20", "hz", "30"),
    ("CONFIG", "SET", "hz", "20", "maxclients", "abc"),
    ("CONFIG", "SET", "daemonize", "yes"),
    ("CONFIG", "SET", "appendfsync", "sometimes"),
    ("CONFIG", "SET", "save", "100 x"),
    ("CONFIG", "SET", "loglevel", "warning", "foo"),
    ("CONFIG", "SET", "include", "x"),
    ("CONFIG", "SET", "dir", "/nonexistent"),
    ("CONFIG", "SET", "dbfilename", "x.rdb"),
    ("CONFIG", "SET", "maxmemory", "10x"),
    ("CONFIG", "SET", "appendonly", "maybe"),
    ("CONFIG", "SET", "proto-max-bulk-len", "1000"),
    ("CONFIG", "SET"),
    ("CONFIG", "GET"),
    ("CONFIG", "REWRITE"),
    ("CONFIG", "FOO"),
]


def test_config_errors_match_redis(server, real):
    for case in ERROR_CASES:
        ours = raw_command(server.port, enc(*case), replies=1)
        theirs = raw_command(real.port, enc(*case), replies=1)
        assert ours == theirs, case


def test_config_set_multiple_is_all_or_nothing(r):
    assert r.execute_command("CONFIG", "SET", "hz", "20", "slowlog-max-len", "77") == b"OK"
    assert r.config_get("hz") == {"hz": "20"}
    assert r.config_get("slowlog-max-len") == {"slowlog-max-len": "77"}
    with pytest.raises(redis.ResponseError, match="argument 'maxmemory'"):
        r.execute_command("CONFIG", "SET", "hz", "30", "maxmemory", "lots")
    assert r.config_get("hz") == {"hz": "20"}          # unchanged
    assert r.execute_command("CONFIG", "SET", "hz", "10", "slowlog-max-len", "128",
                             "maxmemory", "100mb") == b"OK"
    assert r.config_get("maxmemory") == {"maxmemory": "104857600"}
    assert r.info("memory")["maxmemory"] == 104857600
    assert r.config_set("maxmemory", "0")
    assert r.config_set("save", "100 10 30 5")
    assert r.config_get("save") == {"save": "100 10 30 5"}
    assert r.config_set("save", "")
    assert r.config_set("client-output-buffer-limit", "normal 1mb 0 0")
    assert r.config_get("client-output-buffer-limit")["client-output-buffer-limit"] == \
        "normal 1048576 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"


def test_config_set_requirepass_takes_effect():
    p = Proc().start()
    try:
        c = p.client()
        assert c.config_set("requirepass", "s3cret")
        assert c.ping()                         # this connection stays authenticated
        data = raw_command(p.port, enc("GET", "x"))
        assert data == b"-NOAUTH Authentication required.\r\n"
        c2 = p.client(password="s3cret")
        assert c2.ping()
        assert c2.config_get("requirepass") == {"requirepass": "s3cret"}
        assert c2.config_set("requirepass", "")
        assert raw_command(p.port, enc("PING")) == b"+PONG\r\n"
    finally:
        p.cleanup()


def test_config_set_maxclients_and_timeout():
    p = Proc().start()
    try:
        c = p.client()
        c.ping()
        assert c.config_set("maxclients", 2)
        s2 = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        s2.sendall(enc("PING"))
        assert s2.recv(100) == b"+PONG\r\n"
        s3 = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        assert s3.recv(100) == b"-ERR max number of clients reached\r\n"   # sent on accept
        s3.close()
        s2.close()
        assert c.config_set("maxclients", 100)
        # timeout: an idle client gets closed
        assert c.config_set("timeout", 1)
        s3 = socket.create_connection(("127.0.0.1", p.port), timeout=10)
        s3.sendall(enc("PING"))
        assert s3.recv(100) == b"+PONG\r\n"
        t0 = time.monotonic()
        assert s3.recv(100) == b""              # closed by the server
        assert time.monotonic() - t0 < 8
        s3.close()
    finally:
        p.cleanup()


def test_config_set_port_moves_the_listener():
    p = Proc().start()
    try:
        c = p.client()
        newport = free_port()
        assert c.config_set("port", newport)
        assert c.config_get("port") == {"port": str(newport)}
        deadline = time.monotonic() + 5
        while True:
            try:
                assert raw_command(newport, enc("PING")) == b"+PONG\r\n"
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", p.port), timeout=2).close()
        assert redis.Redis(port=newport).info("server")["tcp_port"] == newport
        p.port = newport     # so cleanup's SIGTERM targets the right process anyway
    finally:
        p.cleanup()


def test_config_set_appendonly_at_runtime():
    p = Proc().start()
    try:
        c = p.client()
        c.set("before", "1")
        assert c.config_set("appendonly", "yes")
        deadline = time.monotonic() + 10
        while c.info("persistence")["aof_rewrite_in_progress"] or \
                c.info("persistence")["aof_rewrites"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert c.info("persistence")["aof_enabled"] == 1
        c.set("after", "2")
        assert os.path.isdir(os.path.join(p.dir, "appendonlydir"))
        assert c.config_set("appendfsync", "always")
        c.set("after2", "3")
        p.stop()
        p2 = Proc(port=p.port, workdir=p.dir, args=["--appendonly", "yes"]).start()
        try:
            c2 = p2.client()
            assert c2.mget("before", "after", "after2") == [b"1", b"2", b"3"]
        finally:
            p2.stop()
    finally:
        p.cleanup()


def test_config_resetstat(r):
    r.ping()
    with pytest.raises(redis.ResponseError):
        r.execute_command("NOSUCH")
    assert r.info("stats")["total_error_replies"] >= 1
    assert r.config_resetstat()
    info = r.info("everything")
    assert info["total_error_replies"] == 0
    assert info["total_commands_processed"] <= 2
    assert not any(k.startswith("errorstat_") for k in info)
    assert list(k for k in info if k.startswith("cmdstat_")) == ["cmdstat_config|resetstat"] \
        or set(k for k in info if k.startswith("cmdstat_")) <= {"cmdstat_config|resetstat",
                                                                "cmdstat_info"}


CONF = """# my comment
bind 127.0.0.1
slave-read-only yes
save 900 1
save 300 10
hz 15

# another comment
maxmemory 100mb
unknown-looking-but-kept-line-is-not-allowed-so-none
"""


def test_config_rewrite_round_trip():
    conf = CONF.replace("unknown-looking-but-kept-line-is-not-allowed-so-none\n",
                        "rename-command LOLWUT LOLWUT2\n")
    p = Proc(conf_text=conf).start()
    try:
        c = p.client()
        assert c.execute_command("CONFIG", "SET", "hz", "10", "maxmemory", "2gb",
                                 "loglevel", "warning", "notify-keyspace-events", "KEA") == b"OK"
        assert c.execute_command("CONFIG", "REWRITE") == b"OK"
        path = os.path.join(p.dir, "test-%d.conf" % p.port)
        text = open(path).read()
        lines = text.splitlines()
        assert lines[0] == "# my comment"
        assert "# another comment" in lines
        assert "rename-command LOLWUT LOLWUT2" in lines
        assert "replica-read-only yes" in lines and "slave-read-only yes" not in lines
        assert lines.index("hz 10") == lines.index("replica-read-only yes") + 3
        assert "maxmemory 2gb" in lines and "maxmemory 100mb" not in lines
        assert "# Generated by CONFIG REWRITE" in lines
        tail = lines[lines.index("# Generated by CONFIG REWRITE") + 1:]
        assert "loglevel warning" in tail
        assert 'notify-keyspace-events "AKE"' in tail
        assert "port %d" % p.port in tail
        assert any(ln.startswith('dir "') for ln in tail)
        assert not any(os.path.basename(f).startswith("test-%d.conf.tmp" % p.port)
                       for f in os.listdir(p.dir))
        # a second rewrite changes nothing and keeps one signature
        assert c.execute_command("CONFIG", "REWRITE") == b"OK"
        assert open(path).read() == text
        p.stop()
        p2 = Proc(port=p.port, workdir=p.dir)
        p2.command = lambda: [__import__("sys").executable, "-m", "pynode", path]
        p2.start()
        try:
            c2 = p2.client()
            assert c2.config_get("hz") == {"hz": "10"}
            assert c2.config_get("maxmemory") == {"maxmemory": str(2 * 1024 ** 3)}
            assert c2.config_get("loglevel") == {"loglevel": "warning"}
            assert c2.config_get("save") == {"save": ""}   # --save "" overrode the file
        finally:
            p2.stop()
    finally:
        p.cleanup()


def test_config_rewrite_without_file(r):
    with pytest.raises(redis.ResponseError, match="The server is running without a config file"):
        r.execute_command("CONFIG", "REWRITE")


def test_config_rewrite_requirepass_and_default_user():
    p = Proc(conf_text="# conf\nrequirepass abc\n").start(password="abc")
    try:
        c = p.client(password="abc")
        assert c.config_set("requirepass", "new pass")
        c.execute_command("CONFIG", "REWRITE")
        text = open(os.path.join(p.dir, "test-%d.conf" % p.port)).read()
        assert 'requirepass "new pass"' in text
        assert "user default on #" in text
    finally:
        p.cleanup()
