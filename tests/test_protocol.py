"""Process-level protocol tests: raw sockets and redis-py against pynode, with the
same bytes sent to a real redis-server 7.0 wherever the exact reply matters."""

from __future__ import annotations

import re
import socket
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pynode.resp import RequestParser
from tests.helpers import Proc, raw_command


@pytest.fixture(scope="module")
def pn():
    p = Proc().start()
    yield p
    p.cleanup()


@pytest.fixture(scope="module")
def pn_auth():
    p = Proc(["--requirepass", "pw"]).start(password="pw")
    yield p
    p.cleanup()


@pytest.fixture(scope="module")
def rs_auth():
    p = Proc(["--requirepass", "pw"], redis_server=True).start(password="pw")
    yield p
    p.cleanup()


MB = 1024 * 1024
LIMITS = ["--client-query-buffer-limit", "1mb", "--proto-max-bulk-len", "4mb"]


@pytest.fixture(scope="module")
def pn_small():
    p = Proc(LIMITS).start()
    yield p
    p.cleanup()


@pytest.fixture(scope="module")
def rs_small():
    p = Proc(LIMITS, redis_server=True).start()
    yield p
    p.cleanup()


def mbulk(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def recv_exact(s: socket.socket, n: int, timeout: float = 20.0) -> bytes:
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while len(buf) < n:
        assert time.monotonic() < deadline, "timed out with %d of %d bytes" % (len(buf), n)
        chunk = s.recv(max(65536, n - len(buf)))
        assert chunk, "connection closed after %d of %d bytes" % (len(buf), n)
        buf += chunk
    return bytes(buf)


def until_close(port: int, payload: bytes) -> bytes:
    """Everything the server sends until it closes the connection (bounded)."""
    return raw_command(port, payload, timeout=5.0, read_until_close=True)


def drain(s: socket.socket, timeout: float = 5.0) -> tuple[bytes, bool]:
    """(bytes received, whether the server closed the connection)."""
    got = b""
    s.settimeout(timeout)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return got, True
            got += data
    except ConnectionResetError:
        return got, True
    except socket.timeout:
        return got, False


def _commands_in(payload: bytes) -> int | None:
    """How many commands `payload` holds, or None if it is damaged or incomplete."""
    p = RequestParser()
    try:
        cmds = p.feed(payload)
    except Exception:  # noqa: BLE001 - a protocol error: no count
        return None
    return len(cmds) if p.error is None and p.pending() == 0 else None


def same(pn, real, payload: bytes, close: bool = False, mask_id: bool = False) -> bytes:
    """Send payload to both servers; the replies must be byte-identical.  A payload
    of whole, well-formed commands is read until one reply per command has come
    (no 0.3 s wait for silence)."""
    if close:
        a, b = until_close(pn.port, payload), until_close(real.port, payload)
    else:
        n = _commands_in(payload)
        a = raw_command(pn.port, payload, replies=n)
        b = raw_command(real.port, payload, replies=n)
    if mask_id:
        a = re.sub(rb"\$2\r\nid\r\n:\d+\r\n", b"ID", a)
        b = re.sub(rb"\$2\r\nid\r\n:\d+\r\n", b"ID", b)
    assert a == b, "payload %r\n pynode: %r\n redis:  %r" % (payload, a, b)
    return a


# ------------------------------------------------------------------ pipelining

def test_ten_thousand_pings_in_one_write(pn):
    with connect(pn.port) as s:
        s.sendall(mbulk(b"PING") * 10000)
        assert recv_exact(s, 7 * 10000) == b"+PONG\r\n" * 10000
        # and inline PINGs, also in one write
        s.sendall(b"PING\r\n" * 10000)
        assert recv_exact(s, 7 * 10000) == b"+PONG\r\n" * 10000


def test_ten_thousand_sets_in_one_write_in_order(pn):
    c = pn.client()
    c.flushall()
    payload = b"".join(mbulk(b"SET", b"pipe:%d" % i, b"v%d" % i) for i in range(10000))
    payload += b"".join(mbulk(b"INCR", b"counter") for _ in range(10000))
    with connect(pn.port) as s:
        s.sendall(payload)
        expect = b"+OK\r\n" * 10000 + b"".join(b":%d\r\n" % i for i in range(1, 10001))
        assert recv_exact(s, len(expect)) == expect
    assert c.dbsize() == 10001
    assert c.get("pipe:9999") == b"v9999"
    assert c.get("counter") == b"10000"


def test_pipeline_with_mixed_replies_matches_redis(pn, real):
    payload = (mbulk(b"FLUSHALL") + mbulk(b"SET", b"a", b"1") + b"GET a\r\n" +
               mbulk(b"GET", b"missing") + mbulk(b"INCR", b"a") + mbulk(b"SET", b"b", b"x") + mbulk(b"INCR", b"b") +
               mbulk(b"ECHO", b"") + b"PING hello\r\n" + mbulk(b"MGET", b"a", b"missing") +
               mbulk(b"DEL", b"a") + mbulk(b"EXISTS", b"a"))
    out = same(pn, real, payload)
    assert out.startswith(b"+OK\r\n+OK\r\n$1\r\n1\r\n$-1\r\n:2\r\n+OK\r\n-ERR value is not")


# ------------------------------------------------------------------ inline

@pytest.mark.parametrize("payload,reply", [
    (b"PING\r\n", b"+PONG\r\n"),
    (b"PING\n", b"+PONG\r\n"),
    (b"SET inl b\n", b"+OK\r\n"),
    (b"ping\r\n\r\n\n   \r\nping\r\n", b"+PONG\r\n+PONG\r\n"),
    (b'ECHO "a b\\x41\\n"\r\n', b"$5\r\na bA\n\r\n"),
    (b"ECHO 'it\\'s'\r\n", b"$4\r\nit's\r\n"),
    (b'ECHO ""\r\n', b"$0\r\n\r\n"),
    (b"ECHO a\x0bb\r\n", b"$3\r\na\x0bb\r\n"),
])
def test_inline_commands(pn, real, payload, reply):
    assert same(pn, real, payload) == reply


# ------------------------------------------------------------------ protocol errors

@pytest.mark.parametrize("payload", [
    b"PING\r\nPING\r\n*1\r\nx\r\nPING\r\n",
    mbulk(b"SET", b"perr", b"1") + b"*x\r\n" + mbulk(b"PING"),
    mbulk(b"PING") + b"*1\r\n$x\r\n",
    mbulk(b"PING") + b"*1\r\n$-1\r\n",
    b"*1\r\n$04\r\nPING\r\n",
    b"* 1\r\n$4\r\nPING\r\n",
    b"*-0\r\n",
    b"*2147483648\r\n",
    b"*1\r\n\r\n",
    b"*1\r\n\xff\r\n",
    b"*1\r\n:1\r\n",
    b"*1\r\n*1\r\n$1\r\na\r\n",
    b'PING\r\nSET a "b"c\r\nPING\r\n',
    b"SET a 'b\r\n",
    b"*1\r\n$9999999999999\r\n",
    b"PING\r\n" + b"x" * (64 * 1024 + 100),
    b"*" + b"1" * (64 * 1024 + 100),
    b"*1\r\n$" + b"1" * (64 * 1024 + 100),
])
def test_protocol_error_replies_then_closes_like_redis(pn, real, payload):
    out = same(pn, real, payload, close=True)
    assert re.search(rb"-ERR Protocol error: [^\r\n]*\r\n$", out)


def test_protocol_error_answers_earlier_commands_and_closes(pn):
    c = pn.client()
    c.delete("perr2")
    with connect(pn.port) as s:
        s.sendall(mbulk(b"INCR", b"perr2") + b"PING\r\n" + b"*1\r\n$x\r\n" +
                  mbulk(b"INCR", b"perr2"))
        got = b""
        s.settimeout(5)
        while True:
            d = s.recv(4096)
            if not d:
                break
            got += d
    assert got == b":1\r\n+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"
    assert c.get("perr2") == b"1"         # the command after the error never ran
    assert c.ping()                       # and the server is fine


def test_well_formed_edge_cases_match_redis(pn, real):
    # *0 / *-1 are skipped, a line ends at its \r, the CRLF after a bulk is not checked
    same(pn, real, b"*0\r\n*-1\r\nPING\r\n" + b"*1\r\n$4\r\nPINGxx" + b"*1\rx$4\r\nPING\r\n")


# ------------------------------------------------------------------ error texts

@pytest.mark.parametrize("payload,reply", [
    (mbulk(b"foo", b"a", b"b"), b"-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n"),
    (b"foo\r\n", b"-ERR unknown command 'foo', with args beginning with: \r\n"),
    (mbulk(b"GET"), b"-ERR wrong number of arguments for 'get' command\r\n"),
    (mbulk(b"get", b"a", b"b"), b"-ERR wrong number of arguments for 'get' command\r\n"),
    (mbulk(b"CONFIG", b"nosuch"), None),
    (mbulk(b"CLIENT", b"nosuch"), None),
    (mbulk(b"SET", b"k", b"v", b"XX", b"NX"), b"-ERR syntax error\r\n"),
])
def test_error_texts_match_redis(pn, real, payload, reply):
    out = same(pn, real, payload)
    if reply is not None:
        assert out == reply


def test_long_unknown_command_args_are_truncated_like_redis(pn, real):
    same(pn, real, mbulk(b"nosuchcmd", b"x" * 200, b"y\r\nz", b"'q'"))


# ------------------------------------------------------------------ HELLO / AUTH

def test_hello_versions(pn, real):
    v2 = same(pn, real, mbulk(b"HELLO", b"2"), mask_id=True)
    assert v2.startswith(b"*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15")
    v3 = same(pn, real, mbulk(b"HELLO", b"3") + mbulk(b"GET", b"nokey") + mbulk(b"HELLO", b"2") +
              mbulk(b"GET", b"nokey"), mask_id=True)
    assert v3.startswith(b"%7\r\n")
    assert b"\r\n_\r\n*14\r\n" in v3 and v3.endswith(b"$-1\r\n")
    same(pn, real, mbulk(b"HELLO"), mask_id=True)
    assert same(pn, real, mbulk(b"HELLO", b"4")) == b"-NOPROTO unsupported protocol version\r\n"
    assert same(pn, real, mbulk(b"HELLO", b"1")) == b"-NOPROTO unsupported protocol version\r\n"
    assert same(pn, real, mbulk(b"HELLO", b"x")) == \
        b"-ERR Protocol version is not an integer or out of range\r\n"
    same(pn, real, mbulk(b"HELLO", b"3", b"AUTH", b"default"))
    same(pn, real, mbulk(b"HELLO", b"3", b"SETNAME", b"a b"))
    same(pn, real, mbulk(b"HELLO", b"3", b"FOO"))


def test_resp3_nulls_and_types(pn, real):
    setup = mbulk(b"SET", b"r3", b"v")
    cmds = (mbulk(b"GET", b"nokey") + mbulk(b"MGET", b"nokey", b"r3") +
            mbulk(b"CONFIG", b"GET", b"maxmemory") + mbulk(b"EXISTS", b"r3") +
            mbulk(b"DEL", b"r3"))
    r2 = same(pn, real, setup + cmds)
    r3 = same(pn, real, setup + mbulk(b"HELLO", b"3") + cmds, mask_id=True)
    assert r2.endswith(b"$-1\r\n*2\r\n$-1\r\n$1\r\nv\r\n"
                       b"*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n:1\r\n:1\r\n")
    assert r3.endswith(b"_\r\n*2\r\n_\r\n$1\r\nv\r\n"
                       b"%1\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n:1\r\n:1\r\n")


def test_resp3_with_redis_py(pn):
    c = redis.Redis(host="127.0.0.1", port=pn.port, protocol=3, socket_timeout=10)
    try:
        assert c.get("r3:none") is None
        assert c.config_get("maxmemory") == {"maxmemory": "0"}
        assert c.client_getname() is None
        assert c.set("r3:k", "v") and c.getdel("r3:k") == b"v"
    finally:
        c.close()


def test_auth_flow_matches_redis(pn_auth, rs_auth):
    a, b = pn_auth, rs_auth
    assert same(a, b, mbulk(b"GET", b"k")) == b"-NOAUTH Authentication required.\r\n"
    assert same(a, b, b"PING\r\n") == b"-NOAUTH Authentication required.\r\n"
    wrong = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    assert same(a, b, mbulk(b"AUTH", b"nope")) == wrong
    assert same(a, b, mbulk(b"AUTH", b"default", b"nope")) == wrong
    assert same(a, b, mbulk(b"AUTH", b"bob", b"pw")) == wrong
    assert same(a, b, mbulk(b"AUTH", b"pw") + mbulk(b"PING")) == b"+OK\r\n+PONG\r\n"
    assert same(a, b, mbulk(b"AUTH", b"default", b"pw") + b"GET k\r\n") == b"+OK\r\n$-1\r\n"
    assert same(a, b, mbulk(b"AUTH", b"a", b"b", b"c")) == b"-ERR syntax error\r\n"
    # HELLO before AUTH is allowed, HELLO with AUTH authenticates
    same(a, b, mbulk(b"HELLO", b"3"))
    out = same(a, b, mbulk(b"HELLO", b"3", b"AUTH", b"default", b"pw", b"SETNAME", b"x") +
               mbulk(b"CLIENT", b"GETNAME") + mbulk(b"GET", b"nokey"), mask_id=True)
    assert out.startswith(b"%7\r\n") and out.endswith(b"$1\r\nx\r\n_\r\n")
    same(a, b, mbulk(b"HELLO", b"2", b"AUTH", b"default", b"bad"))
    same(a, b, mbulk(b"HELLO", b"3", b"AUTH", b"default"))


def test_auth_with_redis_py(pn_auth):
    # no retries: redis-py retries a refused AUTH with backoff (seconds, for nothing)
    once = Retry(NoBackoff(), 0)
    with pytest.raises(redis.AuthenticationError):
        pn_auth.client(password="bad", retry=once).ping()
    with pytest.raises(redis.AuthenticationError):
        pn_auth.client(retry=once).get("x")
    c = pn_auth.client(password="pw")
    assert c.ping()
    c3 = redis.Redis(host="127.0.0.1", port=pn_auth.port, password="pw", protocol=3,
                     client_name="x", socket_timeout=10)
    assert c3.client_getname() == "x" or c3.client_getname() == b"x"
    c.close()
    c3.close()


def test_auth_without_password_configured(pn, real):
    out = same(pn, real, mbulk(b"AUTH", b"pw"))
    assert out == (b"-ERR AUTH <password> called without any password configured for the "
                   b"default user. Are you sure your configuration is correct?\r\n")
    # the default user is "nopass": any password is accepted
    assert same(pn, real, mbulk(b"AUTH", b"default", b"pw")) == b"+OK\r\n"
    wrong = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    assert same(pn, real, mbulk(b"AUTH", b"bob", b"pw")) == wrong


# ------------------------------------------------------------------ clients going away

def test_client_vanishing_mid_command_loses_nothing(pn):
    c = pn.client()
    c.delete("vanish", "vanish:half")
    s = connect(pn.port)
    s.sendall(mbulk(b"SET", b"vanish", b"kept") + mbulk(b"PING"))
    assert recv_exact(s, 12) == b"+OK\r\n+PONG\r\n"
    half = mbulk(b"SET", b"vanish:half", b"x" * 1000)
    s.sendall(half[:len(half) // 2])
    s.close()
    # a big bulk half sent, then a reset
    s = connect(pn.port)
    s.sendall(b"*3\r\n$3\r\nSET\r\n$11\r\nvanish:half\r\n$1000000\r\n" + b"y" * 300000)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()
    for _ in range(3):
        c2 = pn.client()
        assert c2.ping()
        assert c2.get("vanish") == b"kept"
        assert c2.get("vanish:half") is None
        c2.close()
    # the server dropped both connections
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if len(c.client_list()) == 1:
            break
        time.sleep(0.05)
    assert len(c.client_list()) == 1


def test_slow_client_big_value_in_small_chunks(pn):
    value = bytes(range(256)) * (5 * 1024 * 1024 // 256)
    payload = mbulk(b"SET", b"slow:big", value) + mbulk(b"STRLEN", b"slow:big")
    with connect(pn.port, timeout=30) as s:
        for i in range(0, len(payload), 1024):
            s.sendall(payload[i:i + 1024])
        assert recv_exact(s, 5 + len(b":5242880\r\n")) == b"+OK\r\n:5242880\r\n"
    c = pn.client(socket_timeout=30)
    assert c.get("slow:big") == value
    c.delete("slow:big")


def test_byte_by_byte_commands(pn):
    payload = mbulk(b"SET", b"bb", b"v\r\nv") + b"GET bb\r\n" + mbulk(b"DEL", b"bb")
    with connect(pn.port) as s:
        for i in range(len(payload)):
            s.sendall(payload[i:i + 1])
        assert recv_exact(s, 5 + 10 + 4) == b"+OK\r\n$4\r\nv\r\nv\r\n:1\r\n"


# ------------------------------------------------------------------ limits

def test_proto_max_bulk_len_like_redis(pn_small, rs_small):
    head = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n"
    out = same(pn_small, rs_small, mbulk(b"PING") + head + b"$%d\r\n" % (4 * MB + 1),
               close=True)
    assert out == b"+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"


def test_query_buffer_limit_closes_the_connection(pn_small, rs_small):
    """A 2 MB argument (allowed by proto-max-bulk-len 4mb) with
    client-query-buffer-limit 1mb: the client is closed without a reply, the
    server goes on; a 900 KB one is fine."""
    for p in (pn_small, rs_small):
        s = connect(p.port)
        s.sendall(b"PING\r\n")
        assert recv_exact(s, 7) == b"+PONG\r\n"
        s.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000000\r\n")
        try:
            for _ in range(200):
                s.sendall(b"x" * 10000)
                time.sleep(0.0005)
            s.sendall(b"\r\n")
        except OSError:
            pass
        got, closed = drain(s)
        s.close()
        assert closed and got == b"", (p.redis_server, got)
        c = p.client()
        assert c.ping() and c.get("k") is None
        assert c.set("k", b"y" * 900000) and c.strlen("k") == 900000
        c.delete("k")
        c.close()


def test_oversized_inline_and_counts(pn, real):
    same(pn, real, b"x" * (70 * 1024), close=True)
    same(pn, real, b"*1\r\n$" + b"9" * (70 * 1024), close=True)
