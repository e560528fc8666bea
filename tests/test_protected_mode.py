"""Protected mode, rename-command, enable-debug-command, compared with
redis-server 7.0.15 byte for byte.  A non-loopback client connects from the
machine's own non-loopback address to a server bound to every address."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.helpers import ROOT, Proc, enc


def outside_ip() -> str:
    """This machine's first non-loopback IPv4 address."""
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    ips = [ip for ip in out if "." in ip and not ip.startswith("127.")]
    assert ips, "the tests need a non-loopback IPv4 address on this machine"
    return ips[0]


def exchange(host: str, port: int, payload: bytes | None, source: str | None = None,
             wait: float = 0.5) -> bytes:
    """Connect (from `source`), send `payload`, return all bytes until close or `wait`."""
    s = socket.create_connection((host, port), timeout=5,
                                 source_address=(source, 0) if source else None)
    try:
        if payload:
            s.sendall(payload)
        s.settimeout(wait)
        got = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                got += d
        except (socket.timeout, ConnectionResetError):
            pass
        return got
    finally:
        s.close()


def both(*args) -> list[Proc]:
    """The same arguments to redis-server and to pynode, both started."""
    procs = []
    try:
        for redis_server in (True, False):
            procs.append(Proc(["--bind", "0.0.0.0", *args], redis_server=redis_server).start())
    except BaseException:
        for p in procs:
            p.stop()
            p.cleanup()
        raise
    return procs


@pytest.fixture
def servers(request):
    procs = both(*getattr(request, "param", ()))
    yield procs
    for p in procs:
        p.stop()
        p.cleanup()


def test_denied_for_an_outside_client_without_a_password(servers):
    ip = outside_ip()
    # the reply is sent at once, before any command, and the connection closed
    replies = [exchange(ip, p.port, None, source=ip, wait=3) for p in servers]
    assert replies[0] == replies[1]
    assert replies[1].startswith(b"-DENIED Redis is running in protected mode because")
    assert replies[1].endswith(b"accepting connections from the outside.\r\n")
    replies = [exchange(ip, p.port, None, source=ip) for p in servers]
    assert replies[0] == replies[1]
    # loopback clients are served
    assert [exchange("127.0.0.1", p.port, enc("PING")) for p in servers] == [b"+PONG\r\n"] * 2
    info = [p.client().info("stats")["rejected_connections"] for p in servers]
    assert info[0] == info[1] == 2


@pytest.mark.parametrize("servers", [("--requirepass", "pw")], indirect=True)
def test_a_password_lifts_protected_mode(servers):
    ip = outside_ip()
    replies = [exchange(ip, p.port, enc("PING") + enc("AUTH", "pw") + enc("PING"), source=ip)
               for p in servers]
    assert replies[0] == replies[1]
    assert replies[1].startswith(b"-NOAUTH Authentication required.\r\n+OK\r\n+PONG")


@pytest.mark.parametrize("servers", [("--protected-mode", "no")], indirect=True)
def test_protected_mode_off_and_back_on_with_config_set(servers):
    ip = outside_ip()
    assert [exchange(ip, p.port, enc("PING"), source=ip) for p in servers] == [b"+PONG\r\n"] * 2
    for p in servers:
        assert p.client().config_set("protected-mode", "yes")
    replies = [exchange(ip, p.port, None, source=ip) for p in servers]
    assert replies[0] == replies[1] and replies[1].startswith(b"-DENIED")
    # a password set through ACL for the default user counts as well
    for p in servers:
        p.client().execute_command("ACL", "SETUSER", "default", ">pw2")
    replies = [exchange(ip, p.port, enc("AUTH", "pw2") + enc("PING"), source=ip)
               for p in servers]
    assert replies[0] == replies[1] == b"+OK\r\n+PONG\r\n"


def test_unix_socket_clients_are_local(tmp_path):
    p = Proc(["--bind", "0.0.0.0", "--unixsocket", str(tmp_path / "s.sock")]).start()
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(tmp_path / "s.sock"))
        s.sendall(enc("PING"))
        s.settimeout(5)
        assert s.recv(100) == b"+PONG\r\n"
        s.close()
    finally:
        p.stop()
        p.cleanup()


@pytest.mark.parametrize("servers", [("--enable-debug-command", "local",
                                      "--protected-mode", "no")], indirect=True)
def test_enable_debug_command_local(servers):
    ip = outside_ip()
    outside = [exchange(ip, p.port, enc("DEBUG", "SLEEP", "0"), source=ip) for p in servers]
    assert outside[0] == outside[1]
    assert outside[1].startswith(b"-ERR DEBUG command not allowed.")
    local = [exchange("127.0.0.1", p.port, enc("DEBUG", "SLEEP", "0")) for p in servers]
    assert local[0] == local[1] == b"+OK\r\n"


@pytest.mark.parametrize("servers", [("--enable-protected-configs", "local",
                                      "--protected-mode", "no")], indirect=True)
def test_enable_protected_configs_local(servers):
    ip = outside_ip()
    args = enc("CONFIG", "SET", "dbfilename", "other.rdb")
    outside = [exchange(ip, p.port, args, source=ip) for p in servers]
    assert outside[0] == outside[1]
    assert outside[1].startswith(b"-ERR CONFIG SET failed (possibly related to argument "
                                 b"'dbfilename') - can't set protected config")
    assert [exchange("127.0.0.1", p.port, args) for p in servers] == [b"+OK\r\n"] * 2


@pytest.mark.parametrize("conf", [
    "rename-command get set\n",
    "rename-command get \"\"\nrename-command get foo\n",
    "rename-command get GET2\nrename-command set get2\n",
    "rename-command nosuchcommand x\n",
])
def test_rename_command_refused_like_redis(tmp_path, conf):
    path = tmp_path / "r.conf"
    path.write_text(conf)
    outs = []
    for cmd in (["redis-server"], [sys.executable, "-m", "pynode"]):
        env = dict(os.environ, PYTHONPATH=ROOT)
        r = subprocess.run(cmd + [str(path), "--port", "0"], capture_output=True,
                           timeout=20, env=env, cwd=str(tmp_path))
        outs.append((r.returncode, r.stderr))
    assert outs[0] == outs[1]
    assert b"FATAL CONFIG FILE ERROR" in outs[1][1]


def test_rename_command_applies(tmp_path):
    path = tmp_path / "r.conf"
    path.write_text("rename-command get fetch\nrename-command flushall \"\"\n"
                    "rename-command set get\n")
    outs = []
    for redis_server in (True, False):
        p = Proc([], redis_server=redis_server, conf_text=path.read_text()).start()
        try:
            outs.append(exchange("127.0.0.1", p.port,
                                 enc("GET", "k", "v") + enc("FETCH", "k") + enc("FLUSHALL")
                                 + enc("CONFIG", "SET", "rename-command", "x"), wait=0.3))
        finally:
            p.stop()
            p.cleanup()
    assert outs[0] == outs[1]
    assert outs[1].startswith(b"+OK\r\n$1\r\nv\r\n-ERR unknown command 'FLUSHALL'")
