"""Pub/Sub against Redis 7.0 behaviour: exact wire shapes (RESP2 arrays,
RESP3 pushes), the RESP2 subscribed context, PUBSUB introspection, and
redis-py's PubSub objects in both protocols.

Set PYNODE_TEST_AGAINST_REDIS=1 to run the same tests against a real
redis-server (to check that the expectations are Redis's own)."""

from __future__ import annotations

import os
import time

import pytest

from tests.helpers import Proc, raw_command
from tests.test_transactions import Conn

AGAINST_REDIS = bool(os.environ.get("PYNODE_TEST_AGAINST_REDIS"))


@pytest.fixture(scope="module")
def server():
    p = Proc(redis_server=AGAINST_REDIS).start()
    yield p
    p.cleanup()


@pytest.fixture
def conn(server, r):
    c = Conn(server.port)
    yield c
    c.close()


def _wait(pred, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def _msg(kind: bytes, *parts, resp: int = 2) -> bytes:
    """A pub/sub message / notice: an array (RESP2) or a push (RESP3)."""
    items = [kind] + list(parts)
    out = [b"%s%d\r\n" % (b">" if resp == 3 else b"*", len(items))]
    for x in items:
        if x is None:
            out.append(b"_\r\n" if resp == 3 else b"$-1\r\n")
        elif isinstance(x, int):
            out.append(b":%d\r\n" % x)
        else:
            out.append(b"$%d\r\n%s\r\n" % (len(x), x))
    return b"".join(out)


def _get_message(p, timeout=5.0):
    """The next non-None message of a redis-py PubSub (bounded wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = p.get_message(timeout=0.1)
        if m is not None:
            return m
    raise AssertionError("no pub/sub message within %.1fs" % timeout)


# ------------------------------------------------------------------ wire shapes, RESP2
def test_subscribe_wire_shapes_resp2(server, r):
    out = raw_command(server.port,
                      b"UNSUBSCRIBE\r\nPUNSUBSCRIBE\r\nSUBSCRIBE a b a\r\nPSUBSCRIBE p*\r\n"
                      b"UNSUBSCRIBE b zz\r\nPUNSUBSCRIBE p* q\r\nUNSUBSCRIBE\r\n")
    assert out == (_msg(b"unsubscribe", None, 0) + _msg(b"punsubscribe", None, 0)
                   + _msg(b"subscribe", b"a", 1) + _msg(b"subscribe", b"b", 2)
                   + _msg(b"subscribe", b"a", 2) + _msg(b"psubscribe", b"p*", 3)
                   + _msg(b"unsubscribe", b"b", 2) + _msg(b"unsubscribe", b"zz", 2)
                   + _msg(b"punsubscribe", b"p*", 1) + _msg(b"punsubscribe", b"q", 1)
                   + _msg(b"unsubscribe", b"a", 0))


def test_unsubscribe_all_without_channels_counts_patterns(server, r):
    out = raw_command(server.port, b"PSUBSCRIBE x\r\nUNSUBSCRIBE\r\nPUNSUBSCRIBE\r\n")
    assert out == (_msg(b"psubscribe", b"x", 1) + _msg(b"unsubscribe", None, 1)
                   + _msg(b"punsubscribe", b"x", 0))


def test_unsubscribe_all_replies_once_per_channel(r, conn):
    conn.send("SUBSCRIBE", "c1", "c2", "c3")
    conn.read_exact(len(_msg(b"subscribe", b"c1", 1)) * 3)
    conn.send("UNSUBSCRIBE")
    got = conn.read_exact(len(_msg(b"unsubscribe", b"c1", 1)) * 3)
    notices = {_msg(b"unsubscribe", ch, n) for ch in (b"c1", b"c2", b"c3") for n in (0, 1, 2)}
    parts = [got[i:i + len(got) // 3] for i in range(0, len(got), len(got) // 3)]
    assert all(p in notices for p in parts)
    assert [p[-3:-2] for p in parts] == [b"2", b"1", b"0"]
    conn.call("GET", "x", expect=b"$-1\r\n")           # back to normal mode


def test_resp2_subscribed_context_restrictions(server, r):
    out = raw_command(server.port,
                      b"SUBSCRIBE a\r\nGET x\r\nMULTI\r\nHELLO 3\r\nPING\r\nPING hi\r\n"
                      b"PSUBSCRIBE z\r\nPUBSUB NUMPAT\r\nRESET\r\nGET x\r\n")
    ctx = ("only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed "
           "in this context\r\n")
    assert out == (_msg(b"subscribe", b"a", 1)
                   + b"-ERR Can't execute 'get': " + ctx.encode()
                   + b"-ERR Can't execute 'multi': " + ctx.encode()
                   + b"-ERR Can't execute 'hello': " + ctx.encode()
                   + b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
                   + b"*2\r\n$4\r\npong\r\n$2\r\nhi\r\n"
                   + _msg(b"psubscribe", b"z", 2)
                   + b"-ERR Can't execute 'pubsub|numpat': " + ctx.encode()
                   + b"+RESET\r\n$-1\r\n")
    assert r.pubsub_numsub("a") == [(b"a", 0)]    # RESET dropped the subscriptions


def test_quit_in_subscribed_context(r, conn):
    conn.call("SUBSCRIBE", "a", expect=_msg(b"subscribe", b"a", 1))
    conn.call("QUIT", expect=b"+OK\r\n")
    assert conn.s.recv(100) == b""
    _wait(lambda: r.pubsub_numsub("a") == [(b"a", 0)], what="unsubscribe on QUIT")


def test_messages_resp2(r, server):
    sub = Conn(server.port)
    try:
        sub.call("SUBSCRIBE", "news", expect=_msg(b"subscribe", b"news", 1))
        sub.call("PSUBSCRIBE", "n*", "*s", expect=_msg(b"psubscribe", b"n*", 2)
                 + _msg(b"psubscribe", b"*s", 3))
        assert r.publish("news", b"hi\r\n\x00") == 3
        got = sub.read_exact(len(_msg(b"message", b"news", b"hi\r\n\x00"))
                             + len(_msg(b"pmessage", b"n*", b"news", b"hi\r\n\x00")) * 2)
        assert got.startswith(_msg(b"message", b"news", b"hi\r\n\x00"))
        rest = got[len(_msg(b"message", b"news", b"hi\r\n\x00")):]
        assert rest in (_msg(b"pmessage", b"n*", b"news", b"hi\r\n\x00")
                        + _msg(b"pmessage", b"*s", b"news", b"hi\r\n\x00"),
                        _msg(b"pmessage", b"*s", b"news", b"hi\r\n\x00")
                        + _msg(b"pmessage", b"n*", b"news", b"hi\r\n\x00"))
        assert r.publish("nope", "x") == 1               # only n*
        sub.call("PING", expect=_msg(b"pmessage", b"n*", b"nope", b"x")
                 + b"*2\r\n$4\r\npong\r\n$0\r\n\r\n")
        assert r.publish("other", "x") == 0
    finally:
        sub.close()


# ------------------------------------------------------------------ RESP3
def test_resp3_pushes_and_commands_allowed(r, conn):
    conn.send("HELLO", "3")
    assert conn.drain().startswith(b"%7\r\n")
    conn.call("UNSUBSCRIBE", expect=_msg(b"unsubscribe", None, 0, resp=3))
    conn.call("SUBSCRIBE", "a", expect=_msg(b"subscribe", b"a", 1, resp=3))
    conn.call("GET", "x", expect=b"_\r\n")               # any command in RESP3
    conn.call("PING", expect=b"+PONG\r\n")
    conn.call("PUBLISH", "a", "hello",                   # own message first
              expect=_msg(b"message", b"a", b"hello", resp=3) + b":1\r\n")
    conn.call("PSUBSCRIBE", "a*", expect=_msg(b"psubscribe", b"a*", 2, resp=3))
    conn.call("PUBLISH", "a", "x",
              expect=_msg(b"message", b"a", b"x", resp=3)
              + _msg(b"pmessage", b"a*", b"a", b"x", resp=3) + b":2\r\n")
    conn.call("UNSUBSCRIBE", "a", "zz", expect=_msg(b"unsubscribe", b"a", 1, resp=3)
              + _msg(b"unsubscribe", b"zz", 1, resp=3))
    conn.call("PUNSUBSCRIBE", expect=_msg(b"punsubscribe", b"a*", 0, resp=3))


def test_resp3_pipelined_subscribe_then_publish_keeps_order(r, conn):
    conn.send("HELLO", "3")
    conn.drain()
    conn.s.sendall(b"SUBSCRIBE q\r\nPUBLISH q m\r\n")
    expect = (_msg(b"subscribe", b"q", 1, resp=3) + _msg(b"message", b"q", b"m", resp=3)
              + b":1\r\n")
    assert conn.read_exact(len(expect)) == expect


def test_resp3_and_resp2_subscribers_get_their_own_encoding(r, server):
    s2, s3 = Conn(server.port), Conn(server.port)
    try:
        s3.send("HELLO", "3")
        s3.drain()
        s2.call("SUBSCRIBE", "ch", expect=_msg(b"subscribe", b"ch", 1))
        s3.call("SUBSCRIBE", "ch", expect=_msg(b"subscribe", b"ch", 1, resp=3))
        assert r.publish("ch", "payload") == 2
        assert s2.read_exact(len(_msg(b"message", b"ch", b"payload"))) == \
            _msg(b"message", b"ch", b"payload")
        assert s3.read_exact(len(_msg(b"message", b"ch", b"payload", resp=3))) == \
            _msg(b"message", b"ch", b"payload", resp=3)
    finally:
        s2.close()
        s3.close()


# ------------------------------------------------------------------ redis-py
@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_pubsub(server, r, protocol):
    c = server.client(protocol=protocol)
    p = c.pubsub()
    try:
        p.subscribe("chan")
        m = _get_message(p)
        assert m["type"] == "subscribe" and m["channel"] == b"chan" and m["data"] == 1
        p.psubscribe("ch*")
        m = _get_message(p)
        assert m["type"] == "psubscribe" and m["channel"] == b"ch*" and m["data"] == 2
        assert r.publish("chan", b"\xff\x00bin") == 2
        m1, m2 = _get_message(p), _get_message(p)
        assert m1 == {"type": "message", "pattern": None, "channel": b"chan",
                      "data": b"\xff\x00bin"}
        assert m2 == {"type": "pmessage", "pattern": b"ch*", "channel": b"chan",
                      "data": b"\xff\x00bin"}
        p.unsubscribe("chan")
        m = _get_message(p)
        assert m["type"] == "unsubscribe" and m["data"] == 1
        p.punsubscribe()
        m = _get_message(p)
        assert m["type"] == "punsubscribe" and m["data"] == 0
        assert r.publish("chan", "x") == 0
    finally:
        p.close()
        c.close()


def test_publish_counts_receivers(server, r):
    subs = [Conn(server.port) for _ in range(3)]
    try:
        subs[0].call("SUBSCRIBE", "x", expect=_msg(b"subscribe", b"x", 1))
        subs[1].call("SUBSCRIBE", "x", expect=_msg(b"subscribe", b"x", 1))
        subs[1].call("PSUBSCRIBE", "x", expect=_msg(b"psubscribe", b"x", 2))
        subs[2].call("PSUBSCRIBE", "?", "[xy]", "*", expect=_msg(b"psubscribe", b"?", 1)
                     + _msg(b"psubscribe", b"[xy]", 2) + _msg(b"psubscribe", b"*", 3))
        assert r.publish("x", "m") == 6
        assert r.publish("y", "m") == 3
        assert r.publish("yy", "m") == 1
    finally:
        for s in subs:
            s.close()


@pytest.mark.parametrize("pattern,channel,hit", [
    (b"h?llo", b"hello", True), (b"h?llo", b"heello", False),
    (b"h*llo", b"heeeello", True), (b"h[ae]llo", b"hallo", True),
    (b"h[ae]llo", b"hillo", False), (b"h[^e]llo", b"hallo", True),
    (b"h[^e]llo", b"hello", False), (b"h[a-b]llo", b"hbllo", True),
    (b"h\\*llo", b"h*llo", True), (b"h\\*llo", b"hello", False),
])
def test_pattern_matching(server, r, pattern, channel, hit):
    sub = Conn(server.port)
    try:
        sub.call("PSUBSCRIBE", pattern, expect=_msg(b"psubscribe", pattern, 1))
        assert r.publish(channel, "m") == (1 if hit else 0)
    finally:
        sub.close()


# ------------------------------------------------------------------ PUBSUB
def test_pubsub_introspection(server, r):
    a, b = Conn(server.port), Conn(server.port)
    try:
        a.call("SUBSCRIBE", "news.art", "news.music", expect=_msg(b"subscribe", b"news.art", 1)
               + _msg(b"subscribe", b"news.music", 2))
        b.call("SUBSCRIBE", "news.art", "sport", expect=_msg(b"subscribe", b"news.art", 1)
               + _msg(b"subscribe", b"sport", 2))
        a.call("PSUBSCRIBE", "news.*", "x", expect=_msg(b"psubscribe", b"news.*", 3)
               + _msg(b"psubscribe", b"x", 4))
        b.call("PSUBSCRIBE", "news.*", expect=_msg(b"psubscribe", b"news.*", 3))
        assert sorted(r.pubsub_channels()) == [b"news.art", b"news.music", b"sport"]
        assert sorted(r.pubsub_channels("news.*")) == [b"news.art", b"news.music"]
        assert r.pubsub_channels("nomatch*") == []
        assert r.pubsub_numsub("news.art", "sport", "none") == [
            (b"news.art", 2), (b"sport", 1), (b"none", 0)]
        assert r.pubsub_numpat() == 2           # distinct patterns
        out = raw_command(server.port, b"PUBSUB NUMSUB\r\nPUBSUB NUMSUB sport\r\n"
                                       b"PUBSUB SHARDCHANNELS\r\nPUBSUB SHARDNUMSUB a\r\n")
        assert out == b"*0\r\n*2\r\n$5\r\nsport\r\n:1\r\n*0\r\n*2\r\n$1\r\na\r\n:0\r\n"
    finally:
        a.close()
        b.close()
    _wait(lambda: r.pubsub_numpat() == 0 and r.pubsub_channels() == [],
          what="subscriptions dropped on disconnect")


def test_pubsub_errors_and_help(server, r):
    out = raw_command(server.port, b"PUBSUB FOO\r\nPUBSUB NUMPAT x\r\nPUBSUB CHANNELS a b\r\n"
                                   b"PUBSUB shardchannels a b\r\nPUBSUB\r\nPUBLISH a\r\n"
                                   b"SUBSCRIBE\r\n")
    assert out == (b"-ERR unknown subcommand 'FOO'. Try PUBSUB HELP.\r\n"
                   b"-ERR wrong number of arguments for 'pubsub|numpat' command\r\n"
                   b"-ERR unknown subcommand or wrong number of arguments for 'CHANNELS'. "
                   b"Try PUBSUB HELP.\r\n"
                   b"-ERR unknown subcommand or wrong number of arguments for "
                   b"'shardchannels'. Try PUBSUB HELP.\r\n"
                   b"-ERR wrong number of arguments for 'pubsub' command\r\n"
                   b"-ERR wrong number of arguments for 'publish' command\r\n"
                   b"-ERR wrong number of arguments for 'subscribe' command\r\n")
    help_lines = r.execute_command("PUBSUB", "HELP")
    assert help_lines[0] == b"PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    assert len(help_lines) == 14 and help_lines[-1] == b"    Prints this help."


def test_publish_does_not_touch_keyspace_or_watch(r, conn):
    conn.call("WATCH", "chan", expect=b"+OK\r\n")
    assert r.publish("chan", "m") == 0
    conn.call("MULTI", expect=b"+OK\r\n")
    conn.call("PUBLISH", "chan", "m", expect=b"+QUEUED\r\n")
    conn.call("EXEC", expect=b"*1\r\n:0\r\n")
    assert r.dbsize() == 0


def test_many_subscribers_and_disconnects(server, r):
    subs = [Conn(server.port) for _ in range(20)]
    try:
        for s in subs:
            s.call("SUBSCRIBE", "fan", expect=_msg(b"subscribe", b"fan", 1))
        assert r.publish("fan", "x") == 20
        for s in subs:
            assert s.read_exact(len(_msg(b"message", b"fan", b"x"))) == \
                _msg(b"message", b"fan", b"x")
        for s in subs[:10]:
            s.close()
        _wait(lambda: r.pubsub_numsub("fan") == [(b"fan", 10)], what="10 subscribers left")
        assert r.publish("fan", "y") == 10
    finally:
        for s in subs[10:]:
            s.close()


def test_slow_subscriber_is_disconnected_over_the_hard_limit():
    p = Proc(["--client-output-buffer-limit", "pubsub 1mb 0 0"],
             redis_server=AGAINST_REDIS).start()
    try:
        r = p.client()
        slow = Conn(p.port)
        slow.call("SUBSCRIBE", "flood", expect=_msg(b"subscribe", b"flood", 1))
        payload = b"x" * 100_000
        for _ in range(400):                    # 40 MB, never read by `slow`
            r.publish("flood", payload)
            if r.pubsub_numsub("flood") == [(b"flood", 0)]:
                break
        _wait(lambda: r.pubsub_numsub("flood") == [(b"flood", 0)], what="disconnect")
        slow.close()
        r.close()
    finally:
        p.cleanup()


def test_resp3_pushes_ignore_client_reply_off(server):
    """A RESP3 client with CLIENT REPLY OFF still gets its subscribe and
    unsubscribe confirmations (push replies), as redis-server sends them;
    its other replies stay off.  (A client waiting for the confirmation
    used to wait forever.)"""
    from tests.helpers import Proc, enc, raw_command
    payload = (enc("HELLO", "3") + enc("CLIENT", "REPLY", "OFF") + enc("SUBSCRIBE", "c1", "c2")
               + enc("PING") + enc("UNSUBSCRIBE", "c1") + enc("CLIENT", "REPLY", "SKIP")
               + enc("SUBSCRIBE", "c3") + enc("CLIENT", "REPLY", "ON") + enc("PING", "x"))
    real = Proc(redis_server=True).start()
    try:
        outs = []
        for port in (server.port, real.port):
            out = raw_command(port, payload, timeout=5, replies=7)
            outs.append(out.split(b"modules\r\n*0\r\n", 1)[1])
        assert outs[0] == outs[1]
        assert outs[0].endswith(b"$1\r\nx\r\n") and outs[0].count(b">3\r\n") == 4
    finally:
        real.cleanup()
