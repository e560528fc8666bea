"""ACL: rules, descriptions, enforcement, ACL LOG, files and start-up,
compared byte for byte with redis-server 7.0.15 wherever a client sees it.

Redis iterates its command table in hash order (random per process), so the
single-command rules of a description (`+get -set`) and ACL CAT <category>
are compared as sets; everything else, categories included, in order."""

from __future__ import annotations

import os
import re
import shlex
import socket
import time

import pytest
from hypothesis import given, settings, strategies as st

from pynode import acl as aclmod
from tests.compare import Conn, parse
from tests.helpers import Proc, free_port, wait_until

SINGLE = re.compile(rb"^[+-][a-z]")


def _norm_descr(s: bytes) -> bytes:
    """Within each selector, single-command rules sorted after the rest."""
    out = []
    for seg in re.split(rb"(\(|\))", s):
        if seg in (b"(", b")"):
            out.append(seg)
            continue
        toks = seg.split(b" ")
        keep = [t for t in toks if not SINGLE.match(t)]
        singles = sorted(t for t in toks if SINGLE.match(t))
        out.append(b" ".join(keep + singles))
    return b"".join(out)


VOLATILE = {b"id", b"addr", b"laddr", b"fd", b"age", b"idle", b"qbuf", b"qbuf-free",
            b"argv-mem", b"multi-mem", b"rbs", b"rbp", b"obl", b"oll", b"omem", b"tot-mem",
            b"events"}


def _norm_tree(node, sort=False):
    t, v = node
    if isinstance(v, list):
        items = [_norm_tree(x) for x in v]
        if t in (b"%",) or (t == b"*" and len(items) == 14 and items[0] == (b"$", b"count")):
            # an ACL LOG entry: age and the volatile client fields masked
            d = []
            for i in range(0, len(items), 2):
                k, val = items[i], items[i + 1]
                if k[1] == b"age-seconds":
                    val = (val[0], b"<age>")
                elif k[1] == b"client-info":
                    val = (val[0], b" ".join(f for f in val[1].split(b" ")
                                            if f.split(b"=", 1)[0] not in VOLATILE))
                d += [k, val]
            return (t, d)
        for i in range(len(items) - 1):
            if items[i] == (b"$", b"id") and items[i + 1][0] == b":":
                items[i + 1] = (b":", b"<id>")            # HELLO's client id
        return (t, sorted(items, key=repr) if sort else items)
    if isinstance(v, bytes) and t in (b"$", b"+"):
        return (t, _norm_descr(v))
    return node


def norm(raw: bytes, mode: str):
    node, _ = parse(raw)
    return _norm_tree(node, sort=mode == "~")


def run(ports, script, resp=2, conns=None):
    """Each line on both servers (one connection each); the differences."""
    own = conns is None
    if own:
        conns = [Conn(p, resp) for p in ports]
    bad = []
    try:
        for line in script:
            mode = ""
            if line.startswith("~ "):
                mode, line = "~", line[2:]
            args = shlex.split(line)
            replies = [norm(c.call(*args), mode) for c in conns]
            if replies[0] != replies[1]:
                bad.append((line, replies))
    finally:
        if own:
            for c in conns:
                c.close()
    return bad


@pytest.fixture
def pair(server, real):
    """Both servers with only the default user and an empty ACL LOG."""
    for p in (server.port, real.port):
        c = Conn(p)
        for name in re.findall(rb"\$\d+\r\n([^\r]+)\r\n", c.call("ACL", "USERS")):
            if name != b"default":
                c.call("ACL", "DELUSER", name)
        c.call("ACL", "SETUSER", "default", "reset", "on", "nopass", "~*", "&*", "+@all")
        c.call("CONFIG", "SET", "requirepass", "")
        c.call("ACL", "SETUSER", "default", "nopass")
        c.call("ACL", "LOG", "RESET")
        c.call("FLUSHALL")
        c.close()
    return [server.port, real.port]


RULES = [
    "ACL SETUSER bob",
    "ACL SETUSER alice on >p1 ~foo* %R~bar %W~baz &ch* +get +set +config|get -@all +@string",
    "ACL SETUSER carl +select|0 +@all -@dangerous -get +client|list",
    "ACL SETUSER d +@read -@hash +hget -config +config|get",
    "ACL SETUSER e on nopass allkeys allchannels allcommands -@admin +config|get",
    "ACL SETUSER f (+get ~x*) (+set %W~y*) ~z &q",
    "ACL SETUSER f clearselectors",
    "ACL SETUSER g on #e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 >a >a",
    "ACL SETUSER g !e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 <a",
    "ACL SETUSER h +@all -@write +set -@read +@geo -@slow",
    "ACL SETUSER i %R~a %W~a %RW~b ~c %R~",
    "ACL SETUSER j +SELECT|Ab +select|ab +debug|object +@keyspace -@fast",
    "ACL SETUSER k on resetpass nopass >x resetkeys ~k reset",
    "ACL SETUSER l ( ~x +get ) (&ch +publish)",
    "ACL SETUSER m skip-sanitize-payload +@pubsub -publish nocommands +@transaction",
    "ACL SETUSER n +@all -config +config|set +client -client|kill",
    "ACL LIST",
    "ACL USERS",
    "ACL GETUSER alice",
    "ACL GETUSER f",
    "ACL GETUSER l",
    "ACL GETUSER i",
    "ACL GETUSER nobody",
    "ACL GETUSER default",
]

ERRORS = [
    "ACL SETUSER t %~x", "ACL SETUSER t %RR~x", "ACL SETUSER t +config|get|x",
    "ACL SETUSER t +config|", "ACL SETUSER t +get|", "ACL SETUSER t +bogus",
    "ACL SETUSER t -select|0", "ACL SETUSER t +@bogus", "ACL SETUSER t (~x",
    "ACL SETUSER t (+get", "ACL SETUSER t xyz", "ACL SETUSER t #abc", "ACL SETUSER t <nope",
    "ACL SETUSER t '&a b'", "ACL SETUSER t ~* ~x", "ACL SETUSER t &* &x",
    "ACL SETUSER 'a b'", "ACL SETUSER t '(~x' '+get)' '(' '-get'", "ACL SETUSER t '(~x +y)'",
    "ACL SETUSER t '!'", "ACL SETUSER t '+config|nope'", "ACL DELUSER default t",
    "ACL CAT a b", "ACL CAT nope", "ACL FOO", "ACL GENPASS 0", "ACL GENPASS 4097",
    "ACL GENPASS x", "ACL GENPASS 1 2", "ACL LOG x", "ACL LOG 1 2", "ACL DRYRUN nobody get x",
    "ACL DRYRUN default nosuch", "ACL DRYRUN default get", "ACL DRYRUN default config",
    "ACL LOAD", "ACL SAVE", "ACL HELP", "ACL USERS", "ACL LIST", "ACL WHOAMI", "ACL CAT",
    "AUTH a b c", "AUTH x", "AUTH nobody x", "HELLO 3 AUTH nobody x", "ACL LOG 0",
]


@pytest.mark.parametrize("resp", [2, 3])
def test_setuser_rules_and_descriptions_match_redis(pair, resp):
    assert run(pair, RULES, resp) == []


def test_malformed_rules_and_errors_match_redis(pair):
    assert run(pair, ERRORS) == []
    # nothing of a refused SETUSER is applied
    assert run(pair, ["ACL SETUSER t on >p +get", "ACL SETUSER t off -get +bogus",
                      "ACL LIST"]) == []


def test_acl_cat_matches_redis(pair):
    script = ["ACL CAT"] + ["~ ACL CAT %s" % c for c in aclmod.CATEGORIES]
    assert run(pair, script) == []
    assert run(pair, ["~ ACL CAT KEYSPACE"], 3) == []


def test_genpass_lengths():
    p = Proc().start()
    try:
        c = Conn(p.port)
        for bits, n in ((None, 64), (1, 1), (5, 2), (4096, 1024)):
            raw = c.call("ACL", "GENPASS", *([] if bits is None else [str(bits)]))
            v = parse(raw)[0][1]
            assert len(v) == n and re.fullmatch(rb"[0-9a-f]+", v)
        c.close()
    finally:
        p.cleanup()


DRYRUN = [
    "ACL SETUSER u on nopass ~k* %R~r* %W~w* &ch* +@read +@write -flushall +config|get",
    "ACL SETUSER u (+@all ~sel*) (+publish &sel*)",
    "ACL DRYRUN u get k1", "ACL DRYRUN u get z", "ACL DRYRUN u get r1", "ACL DRYRUN u set r1 x",
    "ACL DRYRUN u set w1 x", "ACL DRYRUN u get w1", "ACL DRYRUN u lmove k1 w1 left right",
    "ACL DRYRUN u lmove w1 k1 left right", "ACL DRYRUN u mset k1 a z b",
    "ACL DRYRUN u config get x", "ACL DRYRUN u config set x y", "ACL DRYRUN u flushall",
    "ACL DRYRUN u publish ch1 m", "ACL DRYRUN u publish x m", "ACL DRYRUN u publish sel1 m",
    "ACL DRYRUN u subscribe ch1 sel2 nope", "ACL DRYRUN u psubscribe ch*",
    "ACL DRYRUN u psubscribe ch1*", "ACL DRYRUN u get sel9", "ACL DRYRUN u flushall",
    "ACL DRYRUN u sort k1 store w1", "ACL DRYRUN u sort k1 store r1",
    "ACL DRYRUN u eval x 2 k1 r1", "ACL DRYRUN u set k1 x get", "ACL DRYRUN u copy r1 w1",
    "ACL DRYRUN u auth x", "ACL DRYRUN u xread streams k1 r1 0 0",
    "ACL SETUSER v on +select|0 +debug|Sleep",
    "ACL DRYRUN v select 0", "ACL DRYRUN v select 1", "ACL DRYRUN v debug sleep 0",
    "ACL DRYRUN v get x",
]


def test_dryrun_matches_redis(pair):
    assert run(pair, DRYRUN) == []


ENFORCE = [
    "ACL SETUSER alice on >pw ~k* %R~ro* &ch* +@all -flushall -@dangerous",
    "SET ro1 v",
    "AUTH alice wrong",
    "AUTH alice pw",
    "ACL WHOAMI",
    "GET k1", "SET k1 v", "GET ro1", "SET ro1 x", "GET zz", "FLUSHALL", "KEYS *",
    "MSET k1 a k2 b", "MSET k1 a zz b", "PUBLISH ch1 x", "PUBLISH other x",
    "CONFIG SET maxmemory 0", "CLIENT KILL USER nobody", "DEBUG SLEEP 0",
    "MULTI", "SET k3 v", "GET zz", "FLUSHALL", "EXEC",
    "MULTI", "SET k3 v", "GET k3", "EXEC",
    "EVAL \"return redis.call('get', 'zz')\" 0",
    "EVAL \"return redis.call('flushall')\" 0",
    "EVAL \"return redis.call('get', KEYS[1])\" 1 k1",
    "EVAL \"return redis.pcall('set', 'ro1', 'x')\" 0",
    "EVAL \"return redis.acl_check_cmd('get', 'k1')\" 0",
    "EVAL \"return redis.acl_check_cmd('flushall')\" 0",
    "EVAL \"return redis.acl_check_cmd('set', 'zz', 'v')\" 0",
    "AUTH default x",
    "ACL WHOAMI",
    "HELLO 2 AUTH nobody x",
    "ACL WHOAMI",
    "ACL LOG 100",
    "ACL LOG 2",
    "ACL LOG RESET",
    "ACL LOG",
]


@pytest.mark.parametrize("resp", [2, 3])
def test_enforcement_and_log_match_redis(pair, resp):
    assert run(pair, ENFORCE, resp) == []


def test_subscribe_denial_and_psubscribe_literal(pair):
    script = ["ACL SETUSER s on nopass +@all ~* &news.* &lit*",
              "AUTH s x", "SUBSCRIBE news.1 other", "PSUBSCRIBE news.*", "PSUBSCRIBE lit*",
              "PING"]
    assert run(pair, script) == []
    script = ["ACL LOG 3"]
    assert run(pair, script) == []


def test_exec_rechecks_rules_changed_meanwhile(pair):
    conns = [Conn(p) for p in pair]
    admins = [Conn(p) for p in pair]
    try:
        for a in admins:
            a.call("ACL", "SETUSER", "x", "on", "nopass", "+@all", "~*")
        assert run(pair, ["AUTH x y", "MULTI", "SET a 1", "GET a", "PUBLISH c m"],
                   conns=conns) == []
        for a in admins:
            a.call("ACL", "SETUSER", "x", "-get", "resetkeys", "~b", "resetchannels")
        assert run(pair, ["EXEC", "ACL LOG 3"], conns=conns) == []
    finally:
        for c in conns + admins:
            c.close()


def test_auth_requirepass_and_hello(pair):
    script = ["CONFIG SET requirepass secret", "ACL LIST", "AUTH wrong", "AUTH secret",
              "AUTH default secret", "HELLO 3 AUTH default nope", "HELLO 2 AUTH default secret",
              "ACL SETUSER default nopass", "AUTH x", "ACL SETUSER default off",
              "ACL LIST", "ACL SETUSER default on"]
    assert run(pair, script) == []
    # a new connection while the default user has a password
    for p in pair:
        Conn(p).call("CONFIG", "SET", "requirepass", "pw2")
    fresh = ["GET x", "HELLO 3", "ACL WHOAMI", "AUTH pw2", "GET x", "RESET", "GET x"]
    try:
        assert run(pair, fresh) == []
    finally:
        for p in pair:
            c = Conn(p)
            c.call("AUTH", "pw2")
            c.call("CONFIG", "SET", "requirepass", "")
            c.close()


def test_one_megabyte_password(pair):
    big = "p" * (1 << 20)
    conns = [Conn(p) for p in pair]
    try:
        for c in conns:
            assert c.call("ACL", "SETUSER", "big", "on", ">" + big, "+@all") == b"+OK\r\n"
            assert c.call("AUTH", "big", big) == b"+OK\r\n"
            assert c.call("AUTH", "big", big[:-1]).startswith(b"-WRONGPASS")
        assert run(pair, ["ACL GETUSER big"], conns=conns) == []
    finally:
        for c in conns:
            c.close()


def _assert_closed(conn) -> None:
    """The server closed this connection."""
    with pytest.raises((ConnectionError, OSError)):
        conn.call("PING")


def _drop_user(admin, name: str, other) -> None:
    admin.call("ACL", "DELUSER", name)
    admin.close()
    other.close()


def test_client_list_user_and_kill_user(server):
    admin = Conn(server.port)
    alice = Conn(server.port)
    try:
        admin.call("ACL", "SETUSER", "cl", "on", ">p", "+@all", "~*")
        assert alice.call("AUTH", "cl", "p") == b"+OK\r\n"
        info = parse(alice.call("CLIENT", "INFO"))[0][1]
        assert b" user=cl " in info
        assert admin.call("CLIENT", "KILL", "USER", "nobody") == \
            b"-ERR No such user 'nobody'\r\n"
        assert admin.call("CLIENT", "KILL", "USER", "cl") == b":1\r\n"
        _assert_closed(alice)
    finally:
        _drop_user(admin, "cl", alice)


def test_deluser_disconnects_its_clients(server):
    admin = Conn(server.port)
    victims = [Conn(server.port) for _ in range(2)]
    other = Conn(server.port)
    try:
        admin.call("ACL", "SETUSER", "gone", "on", ">p", "+@all", "~*")
        for v in victims:
            assert v.call("AUTH", "gone", "p") == b"+OK\r\n"
        assert admin.call("ACL", "DELUSER", "gone", "never") == b":1\r\n"
        for v in victims:
            _assert_closed(v)
        assert other.call("PING") == b"+PONG\r\n"
        # the deleting client itself is answered, then closed
        admin.call("ACL", "SETUSER", "self", "on", ">p", "+@all")
        assert admin.call("AUTH", "self", "p") == b"+OK\r\n"
        assert admin.call("ACL", "DELUSER", "self") == b":1\r\n"
        _assert_closed(admin)
    finally:
        for c in victims + [admin, other]:
            c.close()


def test_setuser_drops_subscribers_whose_channels_go(server):
    admin = Conn(server.port)
    sub = Conn(server.port)
    try:
        admin.call("ACL", "SETUSER", "ps", "on", ">p", "+@all", "resetchannels", "&a*", "&b")
        assert sub.call("AUTH", "ps", "p") == b"+OK\r\n"
        sub.call("SUBSCRIBE", "b")
        admin.call("ACL", "SETUSER", "ps", "&c")          # a superset: kept
        assert sub.call("PING").startswith(b"*2")
        admin.call("ACL", "SETUSER", "ps", "resetchannels", "&a*")
        _assert_closed(sub)
    finally:
        _drop_user(admin, "ps", sub)


# ---------------------------------------------------------------- files and start-up
def _saved_acl(real_or_pynode: bool, lines: list[str]) -> list[bytes]:
    d = __import__("tempfile").mkdtemp(prefix="pynode-acl-")
    path = os.path.join(d, "users.acl")
    open(path, "w").write("")
    p = Proc(redis_server=real_or_pynode, args=["--aclfile", path]).start()
    try:
        c = Conn(p.port)
        for line in lines:
            assert c.call(*shlex.split(line)) == b"+OK\r\n", line
        assert c.call("ACL", "SAVE") == b"+OK\r\n"
        data = open(path, "rb").read()
        # edit the file and load it back: the changes are live
        open(path, "ab").write(b"user added on nopass +ping\n")
        assert c.call("ACL", "LOAD") == b"+OK\r\n"
        users = c.call("ACL", "USERS")
        c.close()
        return [_norm_descr(x) for x in data.split(b"\n")] + [users]
    finally:
        p.cleanup()
        __import__("shutil").rmtree(d, ignore_errors=True)


def test_aclfile_save_load_round_trip_matches_redis():
    lines = ["ACL SETUSER zed on >pw ~a* %R~b* &c* -@all +@hash +get (+set ~s*)",
             "ACL SETUSER amy off +@all -@dangerous",
             "ACL SETUSER default on nopass ~* &* +@all -debug"]
    assert _saved_acl(False, lines) == _saved_acl(True, lines)


def test_bad_aclfile_leaves_rules_and_refuses_start(tmp_path):
    path = tmp_path / "users.acl"
    path.write_text("user ok on nopass +@all ~*\n")
    p = Proc(args=["--aclfile", str(path)]).start()
    try:
        c = Conn(p.port)
        assert c.call("ACL", "USERS") == b"*2\r\n$7\r\ndefault\r\n$2\r\nok\r\n"
        path.write_text("user x on badrule\n\nfoo\n")
        err = c.call("ACL", "LOAD")
        assert err == ("-ERR %s:1: Syntax error. %s:3 should start with user keyword followed "
                       "by the username. WARNING: ACL errors detected, no change to the "
                       "previously active ACL rules was performed\r\n"
                       % (path, path)).encode()
        assert c.call("ACL", "USERS") == b"*2\r\n$7\r\ndefault\r\n$2\r\nok\r\n"
        c.close()
    finally:
        p.cleanup()
    p = Proc(args=["--aclfile", str(path)])
    p.start(wait=False)
    try:
        assert p.wait_exit() == 1
        assert ("Aborting Redis startup because of ACL errors: %s:1: Syntax error." % path
                in p.log())
    finally:
        p.cleanup()


def _start_failure(conf: str, redis_server: bool) -> str:
    p = Proc(redis_server=redis_server, conf_text=conf)
    p.start(wait=False)
    try:
        p.wait_exit()
        out = p.log()
    finally:
        p.cleanup()
    m = re.search(r"\*\*\* FATAL CONFIG FILE ERROR.*?\n(.*?)\n(.*?)\n(.*?)\n", out, re.S)
    if m:
        return "\n".join(m.groups())
    return [ln.split(" # ", 1)[-1] for ln in out.splitlines() if "ACL" in ln][-1]


@pytest.mark.parametrize("conf", [
    "user bob on badrule\n",
    "user bob on\nuser bob off\n",
    "user bob on (~x\n",
    "user bob on +get +nosuch\n",
    "user bob on #abc\n",
])
def test_bad_user_lines_refuse_start_like_redis(conf):
    assert _start_failure(conf, False) == _start_failure(conf, True)


def test_user_lines_in_config_and_rewrite(tmp_path):
    conf = ("requirepass ignored\nuser default on nopass ~* &* +@all -keys\n"
            "user cfg on >pw ~c* +@read\n")
    p = Proc(conf_text=conf).start()
    try:
        c = Conn(p.port)
        assert c.call("KEYS", "*").startswith(b"-NOPERM")
        assert c.call("AUTH", "cfg", "pw") == b"+OK\r\n"
        assert c.call("GET", "c1") == b"$-1\r\n"
        assert c.call("AUTH", "default", "x") == b"+OK\r\n"
        c.call("ACL", "SETUSER", "later", "on", "nopass", "+ping")
        assert c.call("CONFIG", "REWRITE") == b"+OK\r\n"
        text = open(os.path.join(p.dir, "test-%d.conf" % p.port)).read()
        assert "user later on nopass resetchannels -@all +ping" in text
        assert "user default on nopass sanitize-payload ~* &* +@all -keys" in text
        c.close()
    finally:
        p.cleanup()
    p = Proc(conf_text="user x on\n", args=["--aclfile", str(tmp_path / "a.acl")])
    p.start(wait=False)
    try:
        assert p.wait_exit() == 1
        assert "declare users directly in your redis.conf, but not both" in p.log()
    finally:
        p.cleanup()


def test_replica_authenticates_with_masteruser():
    primary = Proc(conf_text="user default off\nuser repl on >rp +psync +replconf +ping\n"
                             "user admin on >ap +@all ~*\n").start(password=None, wait=False)
    try:
        wait_until(lambda: _pings(primary.port), what="primary up")
        replica = Proc(args=["--replicaof", "127.0.0.1", str(primary.port),
                             "--masteruser", "repl", "--masterauth", "rp"]).start()
        try:
            a = Conn(primary.port)
            assert a.call("AUTH", "admin", "ap") == b"+OK\r\n"
            assert a.call("SET", "k", "v") == b"+OK\r\n"
            r = Conn(replica.port)
            wait_until(lambda: r.call("GET", "k") == b"$1\r\nv\r\n", what="replicated")
            a.call("ACL", "SETUSER", "repl", "resetpass", ">other")
            a.call("CLIENT", "KILL", "USER", "repl")
            wait_until(lambda: b"master_link_status:down" in r.call("INFO", "replication"),
                       what="link down with a wrong password")
            a.close()
            r.close()
        finally:
            replica.cleanup()
    finally:
        primary.cleanup()


def _pings(port: int) -> bool:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=1)
    except OSError:
        return False
    s.close()
    return True


# ---------------------------------------------------------------- property: rules vs a model
CMDS = ["get", "set", "hget", "lpush", "config|get", "config|set", "flushall", "publish",
        "select", "client|list", "ping"]
CATS = ["read", "write", "hash", "string", "admin", "fast", "slow", "dangerous", "pubsub"]
KEYS = ["a1", "a2", "b1", "c"]


def _model_cmds(meta):
    """What each rule does to the set of allowed commands, from the metadata."""
    def family(name):
        return {name} | set(meta[name].subcommands)
    return family


rule = st.one_of(
    st.sampled_from(["allcommands", "nocommands", "+@all", "-@all", "allkeys", "resetkeys"]),
    st.builds(lambda s, c: s + "@" + c, st.sampled_from("+-"), st.sampled_from(CATS)),
    st.builds(lambda s, c: s + c, st.sampled_from("+-"), st.sampled_from(CMDS)),
    st.builds(lambda p: "~" + p, st.sampled_from(["a*", "b?", "c", "*"])),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(rule, max_size=12))
def test_rules_against_a_model(rules):
    from pynode.command_meta import COMMANDS as META
    family = _model_cmds(META)
    every = set(META)
    allowed: set = set()
    allkeys = False
    pats: list = []
    u = aclmod.User(b"m")
    for r in rules:
        try:
            u.apply(r.encode())
        except aclmod.AclError:
            assert r.startswith("~") and allkeys          # only ~pat after allkeys fails
            continue
        if r in ("allcommands", "+@all"):
            allowed = set(every)
        elif r in ("nocommands", "-@all"):
            allowed = set()
        elif r == "allkeys" or r == "~*":
            allkeys, pats = True, []
        elif r == "resetkeys":
            allkeys, pats = False, []
        elif r.startswith("~"):
            pats.append(r[1:])
        else:
            names = ([n for n in META if "@" + r[2:] in META[n].acl_categories]
                     if r[1] == "@" else [r[1:]])
            fam = set().union(*(family(n) for n in names)) if names else set()
            allowed = allowed | fam if r[0] == "+" else allowed - fam
    # the description sets the same rules up again
    again = aclmod.User(b"m2")
    for op in u.describe().split(" "):
        again.apply(op.encode())
    assert again.root.allowed == u.root.allowed
    for name in CMDS:
        cid = aclmod.CATALOG.ids[name]
        assert bool(u.root.allowed >> cid & 1) == (name in allowed), (name, rules)
    for k in KEYS:
        expect = allkeys or any(__import__("fnmatch").fnmatchcase(k, p) for p in pats)
        assert u.check_key(k.encode(), ("RW", "access", "update")) == expect


def test_check_cost_free_for_the_default_user():
    from pynode.acl import Acl
    a = Acl()
    assert a.default.unrestricted
    old, t = a.setuser(b"default", [b"-get"])
    a.commit(b"default", old, t)
    assert not a.default.unrestricted
    a.default.apply(b"+@all")
    assert a.default.unrestricted
