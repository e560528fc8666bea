"""The command surface equals redis-server 7.0.15's: COMMAND COUNT, COMMAND LIST,
COMMAND INFO and COMMAND DOCS for every command and subcommand."""

import hiredis

from tests.helpers import raw_command


def enc(*args) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def call(port: int, *args, proto: int = 2):
    pre = enc("HELLO", "3") if proto == 3 else b""
    data = raw_command(port, pre + enc(*args), replies=2 if pre else 1)
    rd = hiredis.Reader()
    rd.feed(data)
    v = rd.gets()
    if pre:
        v = rd.gets()
    return v


def norm(v):
    """A reply with map-like pairs sorted, so containers listed in Redis's hash
    order compare equal to the same entries in another order."""
    if isinstance(v, dict):
        return sorted((norm(k), norm(x)) for k, x in v.items())
    if isinstance(v, list):
        return [norm(x) for x in v]
    return v


def pairs(v) -> dict:
    """A map reply as a dict: RESP3 maps already are, RESP2 sends them flat."""
    return v if isinstance(v, dict) else dict(zip(v[::2], v[1::2]))


def doc_entry(v) -> dict:
    """One COMMAND DOCS entry with its subcommands keyed by name (Redis lists
    them in its dict's hash order, pynode sorted)."""
    d = pairs(v)
    if b"subcommands" in d:
        d[b"subcommands"] = {k: doc_entry(x) for k, x in pairs(d[b"subcommands"]).items()}
    return d


def docs_map(port: int, proto: int) -> dict:
    return {k: doc_entry(v) for k, v in pairs(call(port, "COMMAND", "DOCS", proto=proto)).items()}


def test_command_count_and_list_equal_redis(server, real):
    assert call(server.port, "COMMAND", "COUNT") == call(real.port, "COMMAND", "COUNT")
    ours = sorted(call(server.port, "COMMAND", "LIST"))
    theirs = sorted(call(real.port, "COMMAND", "LIST"))
    assert [x for x in theirs if x not in ours] == [], "missing"
    assert [x for x in ours if x not in theirs] == [], "extra"


def test_command_docs_equal_redis_for_every_command(server, real):
    for proto in (2, 3):
        ours, theirs = docs_map(server.port, proto), docs_map(real.port, proto)
        assert sorted(ours) == sorted(theirs)
        bad = [name for name in theirs if norm(ours[name]) != norm(theirs[name])]
        assert bad == [], (proto, bad[:10])


def test_command_info_equal_redis_for_every_command(server, real):
    def table(port):
        out = {}
        for e in call(port, "COMMAND"):
            subs = e[9] if len(e) > 9 else []
            out[e[0]] = (e[:9], sorted(norm(subs)), norm(e[10:]))
        return out
    ours, theirs = table(server.port), table(real.port)
    assert sorted(ours) == sorted(theirs)
    bad = [name for name in theirs if ours[name] != theirs[name]]
    assert bad == [], bad[:10]
