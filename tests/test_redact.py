"""Secrets never reach SLOWLOG or MONITOR: the same commands on pynode and
redis-server 7.0.15 leave the same redacted entries."""

import re
import socket
import time

import redis

from tests.helpers import Proc

COMMANDS = [
    ("ACL", "SETUSER", "bob", "on", ">secret", "~*", "+@all"),
    ("AUTH", "bob", "secret"),
    ("AUTH", "wrong"),
    ("HELLO", "3", "AUTH", "bob", "secret"),
    ("HELLO", "2"),
    ("MIGRATE", "127.0.0.1", "1", "k", "0", "10", "AUTH2", "u", "p"),
    ("MIGRATE", "127.0.0.1", "1", "k", "0", "10", "AUTH", "p"),
    ("CONFIG", "SET", "masterauth", "a"),
    ("CONFIG", "SET", "maxmemory", "0", "masteruser", "u"),
    ("CONFIG", "SET", "requirepass", ""),
    ("ACL", "DELUSER", "bob"),
    ("CLIENT", "SETNAME", "x"),
]


def run(port: int) -> tuple[list, list]:
    c = redis.Redis(port=port, socket_timeout=5)
    c.config_set("slowlog-log-slower-than", 0)
    c.slowlog_reset()
    mon = socket.create_connection(("127.0.0.1", port), timeout=5)
    mon.sendall(b"MONITOR\r\n")
    assert mon.recv(100) == b"+OK\r\n"
    for args in COMMANDS:
        one = redis.Redis(port=port, socket_timeout=5)
        try:
            one.execute_command(*args)
        except redis.RedisError:
            pass
        one.close()
    c.config_set("slowlog-log-slower-than", 10000)
    log = [[a.decode() if isinstance(a, bytes) else a for a in e["command"].split(b" ")]
           for e in c.slowlog_get(50)]
    time.sleep(0.3)
    mon.settimeout(0.5)
    data = b""
    try:
        while True:
            chunk = mon.recv(1 << 16)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    mon.close()
    lines = [re.sub(r"^\+[\d.]+ \[\d+ [^\]]+\] ", "", ln) for ln in data.decode().splitlines()]
    c.close()
    return log, lines


def test_slowlog_and_monitor_redact_like_redis():
    with Proc() as p, Proc(redis_server=True) as r:
        ours, theirs = run(p.port), run(r.port)
    assert ours[0] == theirs[0]
    assert ours[1] == theirs[1]
    joined = repr(ours)
    assert "secret" not in joined and "(redacted)" in joined
