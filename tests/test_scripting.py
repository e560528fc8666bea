"""Lua scripting and functions, against redis-server 7.0 where a client can
see the difference: replies and error texts byte for byte (RESP2 and RESP3),
what reaches the AOF and the replicas, persistence, FUNCTION DUMP/RESTORE
both ways, busy scripts and SCRIPT/FUNCTION KILL, bad input."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import tempfile
import time

import pytest
import redis

from tests.compare import Conn, normalize, parse
from tests.helpers import Proc, enc, wait_until

CASES = os.path.join(os.path.dirname(__file__), "data", "scripting_cases.txt")


def load_sections() -> dict:
    """name -> [(mode, argv)] from tests/data/scripting_cases.txt."""
    sections: dict = {}
    cur = None
    with open(CASES) as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if line.startswith("#"):
                word = line[1:].strip()
                if word and " " not in word:
                    cur = sections.setdefault(word, [])
                continue
            mode = ""
            if line.startswith("~ "):
                mode, line = "~", line[2:]
            argv = [a.replace("\\n", "\n") for a in shlex.split(line)]
            cur.append((mode, argv))
    return sections


SECTIONS = load_sections()


def reset(port: int) -> None:
    c = Conn(port)
    try:
        for cmd in (("FLUSHALL",), ("SCRIPT", "FLUSH"), ("FUNCTION", "FLUSH")):
            c.call(*cmd)
    finally:
        c.close()


def differences(ports, cases, resp: int) -> list:
    for p in ports:
        reset(p)
    conns = [Conn(p, resp) for p in ports]
    bad = []
    try:
        for mode, argv in cases:
            replies = [normalize(c.call(*argv), mode) for c in conns]
            if replies[0] != replies[1]:
                bad.append((argv, replies))
    finally:
        for c in conns:
            c.close()
    return bad


@pytest.fixture(scope="module")
def real():
    p = Proc(redis_server=True).start()
    yield p
    p.cleanup()


@pytest.mark.parametrize("resp", [2, 3])
@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_same_replies_as_redis(server, real, section, resp):
    bad = differences([server.port, real.port], SECTIONS[section], resp)
    assert not bad, "\n".join("%r\n  pynode: %r\n  redis:  %r" % (a, r[0], r[1])
                              for a, r in bad[:10])


def test_cases_cover_every_scripting_command():
    used = {argv[0].upper() + (" " + argv[1].upper() if argv[0].upper() in
                               ("SCRIPT", "FUNCTION") else "")
            for sec in SECTIONS.values() for _, argv in sec}
    for name in ("EVAL", "EVALSHA", "EVAL_RO", "FCALL", "FCALL_RO", "SCRIPT LOAD",
                 "SCRIPT EXISTS", "SCRIPT FLUSH", "SCRIPT KILL", "FUNCTION LOAD",
                 "FUNCTION DELETE", "FUNCTION FLUSH", "FUNCTION LIST", "FUNCTION STATS",
                 "FUNCTION KILL", "FUNCTION DUMP", "FUNCTION RESTORE", "FUNCTION HELP",
                 "SCRIPT HELP"):
        assert name in used, name


def test_random_sequence_is_redis_rand48(server, real):
    """math.randomseed(n) then math.random: the same numbers as Redis."""
    script = ("math.randomseed(tonumber(ARGV[1])) local t = {} "
              "for i = 1, 20 do t[i] = tostring(math.random()) end "
              "t[21] = math.random(100) t[22] = math.random(-5, 5) return t")
    for seed in ("0", "1", "12345", "-7"):
        got = [Conn(p).call("EVAL", script, "0", seed) for p in (server.port, real.port)]
        assert got[0] == got[1], seed


def test_evalsha_after_eval_and_script_load(r):
    sha = r.script_load("return ARGV[1]")
    assert r.evalsha(sha, 0, "x") == b"x"
    assert r.script_exists(sha, "0" * 40) == [True, False]
    assert r.eval("return 'e'", 0) == b"e"
    sha2 = r.script_load("return 'e'")
    assert r.evalsha(sha2.upper(), 0) == b"e"      # the sha is not case-sensitive
    r.script_flush()
    with pytest.raises(redis.exceptions.NoScriptError):
        r.evalsha(sha, 0, "x")


def test_script_writes_with_no_aof_or_replica(r):
    # nothing takes a script's writes here (they are not collected): the
    # writes, set_repl and a script inside MULTI answer as Redis's
    assert r.info("persistence")["aof_enabled"] == 0
    assert r.info("replication")["connected_slaves"] == 0
    assert r.eval("redis.set_repl(redis.REPL_NONE) redis.call('set', KEYS[1], 1) "
                  "redis.set_repl(redis.REPL_AOF) return redis.call('incr', KEYS[1])",
                  1, "a") == 2
    p = r.pipeline(transaction=True)
    p.eval("return redis.call('incr', KEYS[1])", 1, "a")
    p.set("b", 1)
    assert p.execute() == [3, True]
    assert r.mget("a", "b") == [b"3", b"1"]


def test_info_memory_counts_scripts_and_functions(r):
    r.script_flush()
    r.function_flush()
    before = r.info("memory")
    assert before["number_of_cached_scripts"] == 0
    r.eval("return 1", 0)
    r.script_load("return 2")
    r.function_load("#!lua name=im\nredis.register_function('im1', function() return 1 end)\n"
                    "redis.register_function('im2', function() return 2 end)")
    after = r.info("memory")
    assert after["number_of_cached_scripts"] == 2
    assert after["number_of_functions"] == 2
    assert after["number_of_libraries"] == 1
    assert after["used_memory_scripts_eval"] == len("return 1") + len("return 2")
    assert after["used_memory_vm_eval"] > 0 and after["used_memory_vm_functions"] > 0
    assert after["used_memory_vm_total"] == (after["used_memory_vm_eval"]
                                             + after["used_memory_vm_functions"])
    stats = r.info("commandstats")
    assert stats["cmdstat_eval"]["calls"] >= 1
    assert stats["cmdstat_function|load"]["calls"] >= 1


def test_script_commands_are_counted_in_commandstats_as_redis(r):
    r.config_resetstat()
    r.eval("redis.call('set', 'cs', '1') return redis.call('get', 'cs')", 0)
    stats = r.info("commandstats")
    assert stats["cmdstat_eval"]["calls"] == 1
    assert stats["cmdstat_set"]["calls"] == 1
    assert stats["cmdstat_get"]["calls"] == 1


# ------------------------------------------------------------------ propagation
def aof_commands(workdir: str, timeout: float = 5.0) -> list:
    from tests.compare import aof_commands as read
    return read(workdir, timeout)


def run_on(port: int, cmds) -> None:
    c = Conn(port)
    try:
        for argv in cmds:
            c.call(*argv)
    finally:
        c.close()


PROPAGATION = [
    ("SET", "k0", "v"),
    ("EVAL", "redis.call('set', KEYS[1], 'a') redis.call('incr', 'n') return 1", "1", "k1"),
    ("EVAL", "return redis.call('set', KEYS[1], 'b')", "1", "k2"),
    ("EVAL", "return redis.call('get', 'k2')", "0"),
    ("EVAL", "redis.call('set', 'x', 1) redis.call('nope')", "0"),
    ("EVAL", "redis.call('select', 3) redis.call('set', 'in3', 'v') return 1", "0"),
    ("EVAL", "redis.set_repl(redis.REPL_NONE) redis.call('set', 'none', 1) "
             "redis.set_repl(redis.REPL_ALL) redis.call('set', 'all', 1)", "0"),
    ("EVAL", "redis.set_repl(redis.REPL_AOF) redis.call('set', 'aofonly', 1) "
             "redis.set_repl(redis.REPL_REPLICA) redis.call('set', 'replonly', 1)", "0"),
    ("EVAL", "redis.call('set', 'ex', 1, 'EX', 100) return 1", "0"),
    ("MULTI",), ("EVAL", "redis.call('set', 'm1', 1) return 1", "0"),
    ("SET", "m2", "2"), ("EXEC",),
    ("FUNCTION", "LOAD", "#!lua name=plib\nredis.register_function('pf', "
                         "function(k, a) redis.call('set', k[1], a[1]) "
                         "redis.call('set', k[1] .. 'x', a[1]) end)"),
    ("FCALL", "pf", "1", "fk", "fv"),
    ("FUNCTION", "DELETE", "plib"),
    ("EVAL", "#!lua flags=no-writes\nreturn redis.call('get', 'k0')", "0"),
]


def test_aof_gets_script_effects_like_redis():
    """A script's writes reach the AOF wrapped in MULTI/EXEC (one write
    alone), never the script; set_repl decides the targets; FUNCTION LOAD
    and DELETE are there; the whole thing matches redis-server's AOF."""
    got = []
    for redis_server in (False, True):
        p = Proc(["--appendonly", "yes", "--appendfsync", "always",
                  "--aof-use-rdb-preamble", "no"], redis_server=redis_server).start()
        try:
            run_on(p.port, PROPAGATION)
            cmds = aof_commands(p.dir)
            # the PXAT deadline of SET EX differs by a few ms between servers
            got.append([[a if not (i == 4 and cmd[0] == b"SET" and cmd[3:4] == [b"PXAT"])
                         else b"T" for i, a in enumerate(cmd)] for cmd in cmds])
        finally:
            p.cleanup()
    assert got[0] == got[1], "\n".join(map(repr, zip(got[0], got[1])))
    flat = [c[0] for c in got[0]]
    assert b"EVAL" not in flat and b"FCALL" not in flat
    assert [b"FUNCTION", b"DELETE", b"plib"] in got[0]


def test_functions_survive_restart_rewrite_and_reload():
    p = Proc(["--appendonly", "yes", "--appendfsync", "always",
              "--enable-debug-command", "yes"]).start()
    try:
        c = p.client()
        c.function_load("#!lua name=keep\nredis.register_function{function_name='kf', "
                        "callback=function(k, a) return 'kept ' .. a[1] end, "
                        "flags={'no-writes'}, description='survives'}")
        c.set("k", "v")
        assert c.fcall("kf", 0, "x") == b"kept x"
        p.stop()
        p.start()
        c = p.client()
        assert c.fcall("kf", 0, "y") == b"kept y"
        c.bgrewriteaof()
        deadline = time.monotonic() + 20
        while c.info("persistence")["aof_rewrite_in_progress"] and time.monotonic() < deadline:
            time.sleep(0.05)
        d = os.path.join(p.dir, "appendonlydir")
        base = [n for n in os.listdir(d) if ".base." in n]
        assert base
        with open(os.path.join(d, base[0]), "rb") as fh:
            data = fh.read()
        assert data.startswith(b"*3\r\n$8\r\nFUNCTION\r\n$4\r\nLOAD\r\n")
        c.execute_command("DEBUG", "RELOAD")
        assert c.fcall("kf", 0, "z") == b"kept z"
        p.stop()
        p.start()
        c = p.client()
        lib = c.function_list()[0]
        assert lib[b"library_name"] if isinstance(lib, dict) else lib[1] == b"keep"
        assert c.fcall("kf", 0, "w") == b"kept w" and c.get("k") == b"v"
    finally:
        p.cleanup()


def test_function_dump_restore_both_ways(server, real):
    code = ("#!lua name=moved\nredis.register_function('mv1', function(k, a) "
            "return 'moved ' .. #k end)\nredis.register_function{function_name='mv2', "
            "callback=function() return 2 end, flags={'no-writes', 'allow-oom'}}")
    for src, dst in ((server, real), (real, server)):
        reset(src.port)
        reset(dst.port)
        a, b = src.client(), dst.client()
        a.function_load(code)
        payload = a.function_dump()
        assert b.function_restore(payload)
        assert b.fcall("mv1", 1, "x") == b"moved 1"
        assert b.fcall_ro("mv2", 0) == 2
        with pytest.raises(redis.ResponseError, match="Library moved already exists"):
            b.function_restore(payload)
        assert b.function_restore(payload, "REPLACE")
        assert b.function_restore(payload, "FLUSH")
        a.close()
        b.close()


def test_function_restore_rejects_corrupt_payloads(server, real):
    good = None
    for p in (server, real):
        reset(p.port)
    c = server.client()
    c.function_load("#!lua name=orig\nredis.register_function('o1', function() return 1 end)")
    good = c.function_dump()
    bad = [b"", b"x", good[:-1], good[:5] + b"\xff" + good[6:], b"\x00" + good[1:],
           good[:-10] + b"\x0b\x00" + good[-8:]]
    for payload in bad:
        replies = []
        for p in (server, real):
            replies.append(Conn(p.port).call("FUNCTION", "RESTORE", payload))
        assert replies[0] == replies[1], (payload, replies)
    assert c.fcall("o1", 0) == 1          # nothing changed
    c.close()


# ------------------------------------------------------------------ replication
def test_replica_gets_effects_and_functions():
    primary = Proc().start()
    replica = Proc(["--replicaof", "127.0.0.1", str(primary.port)])
    try:
        pc = primary.client()
        pc.function_load("#!lua name=rlib\nredis.register_function('rf', "
                         "function(k, a) return redis.call('incrby', k[1], a[1]) end)\n"
                         "redis.register_function{function_name='rget', callback="
                         "function(k) return redis.call('get', k[1]) end, flags={'no-writes'}}")
        pc.set("before", "1")
        replica.start()
        rc = replica.client()
        wait_until(lambda: rc.info("replication")["master_link_status"] == "up", what="link")
        # the full sync carried the library
        assert wait_until(lambda: rc.fcall_ro("rget", 1, "before") == b"1", what="full sync")
        pc.fcall("rf", 1, "ctr", 5)
        pc.eval("redis.call('set', 'a', 1) redis.call('set', 'b', 2)", 0)
        pc.function_load("#!lua name=later\nredis.register_function{function_name='lf', "
                         "callback=function() return 'later' end, flags={'no-writes'}}")
        assert pc.wait(1, 5000) == 1
        assert rc.get("ctr") == b"5" and rc.mget("a", "b") == [b"1", b"2"]
        assert rc.fcall_ro("rget", 1, "ctr") == b"5"
        assert rc.eval_ro("return redis.call('get', 'a')", 0) == b"1"
        # a function without no-writes is a write command: refused before it runs
        with pytest.raises(redis.ResponseError, match="You can't write against a "
                                                      "read only replica"):
            rc.execute_command("FCALL", "rf", 1, "ctr", 1)
        # so is a shebang script; a plain EVAL runs and its write is refused inside
        with pytest.raises(redis.ResponseError, match="read only replica"):
            rc.execute_command("EVAL", "#!lua\nreturn redis.call('set', 'x', 1)", 0)
        with pytest.raises(redis.ResponseError, match="read only replica"):
            rc.eval("return redis.call('set', 'x', 1)", 0)
        assert rc.fcall("lf", 0) == b"later"
    finally:
        replica.cleanup()
        primary.cleanup()


# ------------------------------------------------------------------ busy scripts
@pytest.fixture
def busy_server():
    p = Proc(["--busy-reply-threshold", "100"]).start()
    yield p
    p.cleanup()


class _Raw:
    """A raw connection that sends a command without waiting for its reply."""

    def __init__(self, port: int) -> None:
        from tests.compare import Reader
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.reader = Reader(self.sock)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


def _send(port: int, *argv) -> _Raw:
    s = _Raw(port)
    s.sendall(enc(*argv))
    return s


def _read_reply(s: _Raw, timeout: float = 20.0) -> bytes:
    return s.reader.read(timeout)


def _wait_busy(c, timeout: float = 10.0):
    def busy():
        try:
            c.ping()
            return False
        except redis.exceptions.BusyLoadingError:
            return True
        except redis.ResponseError as e:
            return str(e).startswith("BUSY")
    wait_until(busy, timeout, "the script to be busy")


def test_busy_script_killed_by_script_kill(busy_server):
    port = busy_server.port
    s = _send(port, "EVAL", "local i = 0 while true do i = i + 1 end", "0")
    # the script's own client sends more: it runs after the script's answer
    s.sendall(enc("PING"))
    c = busy_server.client()
    _wait_busy(c)
    with pytest.raises(redis.ResponseError, match="^BUSY Redis is busy running a script. You "
                                                  "can only call SCRIPT KILL or SHUTDOWN NOSAVE."):
        c.get("x")
    with pytest.raises(redis.ResponseError, match="BUSY Redis is busy running a script. You "
                                                  "can only call SCRIPT KILL"):
        c.execute_command("FUNCTION", "KILL")
    raw = Conn(port).call("FUNCTION", "STATS")
    assert raw.startswith(b"*4\r\n$14\r\nrunning_script\r\n*6\r\n$4\r\nname\r\n$40\r\n")
    assert c.execute_command("SCRIPT", "KILL") == b"OK"
    reply = _read_reply(s)
    assert reply.startswith(b"-ERR Script killed by user with SCRIPT KILL... script: ")
    assert _read_reply(s) == b"+PONG\r\n"
    s.close()
    assert c.ping()
    with pytest.raises(redis.ResponseError, match="NOTBUSY No scripts in execution right now."):
        c.execute_command("SCRIPT", "KILL")
    assert "Slow script detected" in busy_server.log()


def test_pcall_cannot_swallow_the_kill(busy_server):
    port = busy_server.port
    s = _send(port, "EVAL", "while true do pcall(function() while true do end end) end", "0")
    c = busy_server.client()
    _wait_busy(c)
    assert c.execute_command("SCRIPT", "KILL") == b"OK"
    assert _read_reply(s).startswith(b"-ERR Script killed by user with SCRIPT KILL...")
    s.close()
    assert c.ping()


def test_function_kill_and_unkillable_write(busy_server):
    c = busy_server.client()
    c.function_load("#!lua name=spin\nredis.register_function('spin', function() "
                    "while true do end end)\nredis.register_function('wspin', function() "
                    "redis.call('set', 'w', 1) local function now() local t = "
                    "redis.call('time') return t[1] * 1000000 + t[2] end local t0 = now() "
                    "while now() < t0 + 1500000 do end return 'done' end)")
    s = _send(busy_server.port, "FCALL", "spin", "0")
    _wait_busy(c)
    with pytest.raises(redis.ResponseError, match="can only call FUNCTION KILL"):
        c.execute_command("SCRIPT", "KILL")
    assert c.execute_command("FUNCTION", "KILL") == b"OK"
    assert _read_reply(s).startswith(b"-ERR Script killed by user with SCRIPT KILL...")
    s.close()
    s = _send(busy_server.port, "FCALL", "wspin", "0")
    _wait_busy(c)
    with pytest.raises(redis.ResponseError, match="^UNKILLABLE Sorry the script already "
                                                  "executed write commands"):
        c.execute_command("FUNCTION", "KILL")
    assert _read_reply(s) == b"$4\r\ndone\r\n"     # it finished on its own
    s.close()
    assert c.get("w") == b"1"


def test_shutdown_nosave_stops_a_busy_server(busy_server):
    s = _send(busy_server.port, "EVAL", "redis.call('set', 'a', 1) while true do end", "0")
    c = busy_server.client()
    _wait_busy(c)
    with pytest.raises(redis.ResponseError, match="BUSY"):
        c.execute_command("SHUTDOWN")
    with pytest.raises(redis.ConnectionError):
        c.execute_command("SHUTDOWN", "NOSAVE")
    assert busy_server.wait_exit(15) == 0
    s.close()


def test_function_load_timeout_on_endless_library(r):
    with pytest.raises(redis.ResponseError, match="FUNCTION LOAD timeout"):
        r.function_load("#!lua name=endless\nwhile true do end")
    assert r.ping()


# ------------------------------------------------------------------ bad input
def test_script_that_allocates_without_bound_gets_an_error(r):
    with pytest.raises(redis.ResponseError, match="not enough memory"):
        r.eval("local t = {} local s = string.rep('x', 1048576) "
               "for i = 1, 100000 do t[i] = s .. i end return #t", 0)
    assert r.eval("return 'still here'", 0) == b"still here"


def test_big_script_and_garbage(r):
    body = "return 1 --" + "x" * (100 << 20)
    assert r.eval(body, 0) == 1
    r.script_flush()
    with pytest.raises(redis.ResponseError, match="Error compiling script"):
        r.eval("\x00\xff\x1bLua garbage", 0)
    with pytest.raises(redis.ResponseError, match="Error compiling"):
        r.eval("\x1bLua\x51\x00", 0)              # precompiled chunks are refused
    with pytest.raises(redis.ResponseError, match="reached lua stack limit"):
        r.eval("local t = {} t[1] = t return t", 0)
    with pytest.raises(redis.ResponseError, match="stack overflow"):
        r.eval("local function f() f() end f()", 0)
    assert r.ping()


def test_sandbox_escapes_are_closed(r):
    for probe in ("return os.getenv('HOME')", "return io.open('/etc/passwd')",
                  "return require('os')", "return loadfile('/etc/passwd')",
                  "return dofile('/etc/passwd')", "return debug.getinfo(1)",
                  "return getfenv(0).os", "return newproxy()"):
        with pytest.raises(redis.ResponseError):
            r.eval(probe, 0)
    # a chunk made by loadstring sees the sandbox, not the real globals
    with pytest.raises(redis.ResponseError, match="nonexistent global variable 'os'"):
        r.eval("return loadstring('return os')()", 0)
    # Python objects are never reachable through the API functions
    with pytest.raises(redis.ResponseError):
        r.eval("return redis.call.__class__", 0)
    # nothing a script does to the shared state leaks into the next one
    with pytest.raises(redis.ResponseError, match="readonly table"):
        r.eval("getmetatable('').__index = {upper = function() return 'pwned' end}", 0)
    assert r.eval("return ('a'):upper()", 0) == b"A"


# ------------------------------------------------------------------ introspection
def _monitor_lines(port: int, cmds) -> list:
    mon = _Raw(port)
    mon.sendall(enc("MONITOR"))
    assert _read_reply(mon) == b"+OK\r\n"
    run_on(port, cmds)
    run_on(port, [("PING", "monitor-end")])
    lines = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        line = _read_reply(mon)
        text = line.decode()
        body = text.split(" ", 1)[1]                     # drop the timestamp
        db, rest = body.split(" ", 1)
        who, cmd = rest.split("] ", 1)
        lines.append((db + " " + ("lua" if who == "lua" else "client") + "]", cmd.strip()))
        if "monitor-end" in cmd:
            break
    mon.close()
    return lines


def test_monitor_shows_scripts_as_redis(server, real):
    cmds = [("EVAL", "redis.call('set', 'mk', '1') return redis.call('get', 'mk')", "0"),
            ("FCALL", "nosuch", "0"), ("EVAL", "return 1", "x"),
            ("FUNCTION", "LOAD", "REPLACE", "#!lua name=mon\nredis.register_function("
                                            "'monf', function() return redis.call('ping') end)"),
            ("FCALL", "monf", "0")]
    got = [_monitor_lines(p.port, cmds) for p in (server, real)]
    assert got[0] == got[1]
    assert ("[0 lua]", '"set" "mk" "1"') in got[0]


def test_slowlog_records_scripts_and_their_commands(server, real):
    out = []
    for p in (server, real):
        c = p.client()
        c.config_set("slowlog-log-slower-than", 0)
        c.slowlog_reset()
        c.eval("redis.call('set', 'sk', '1') return redis.call('get', 'sk')", 0)
        entries = c.slowlog_get(10)
        c.config_set("slowlog-log-slower-than", 10000)
        out.append([(e["command"], e["client_address"]) for e in entries])
        c.close()
    assert [cmd for cmd, _ in out[0]] == [cmd for cmd, _ in out[1]]
    # the script's own commands show the script client's address, as Redis's
    inner = [[a for cmd, a in o if cmd.split()[0] in (b"get", b"set")] for o in out]
    assert inner[0] == inner[1] and len(inner[0]) == 2


def test_command_info_and_docs_for_scripting_commands(server, real):
    from pynode.command_meta import COMMANDS as META
    names = ["eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"]
    # containers list their subcommands in Redis's hash order: compare each one
    names += [n for n in META if n.startswith(("script|", "function|"))]
    for name in names:
        for sub in (("COMMAND", "INFO", name), ("COMMAND", "DOCS", name)):
            replies = [Conn(p.port).call(*sub) for p in (server, real)]
            assert replies[0] == replies[1], sub
    for name in ("script", "function"):
        subs = [sorted(parse(Conn(p.port).call("COMMAND", "INFO", name))[0][1][0][1][9][1],
                       key=lambda x: x[1][0][1]) for p in (server, real)]
        assert subs[0] == subs[1]
    replies = [Conn(p.port).call("COMMAND", "GETKEYS", "EVAL", "return 1", "2", "a", "b", "c")
               for p in (server, real)]
    assert replies[0] == replies[1]


# ------------------------------------------------------------------ flags vs. state
def _same(procs, cmds) -> list:
    out = []
    for p in procs:
        c = Conn(p.port)
        try:
            out.append([c.call(*a) for a in cmds])
        finally:
            c.close()
    for a, x, y in zip(cmds, out[0], out[1]):
        assert x == y, "%r\n  pynode: %r\n  redis:  %r" % (a, x, y)
    return out[0]


def test_oom_refuses_scripts_as_redis():
    procs = [Proc(["--maxmemory-policy", "noeviction"], redis_server=rs).start()
             for rs in (False, True)]
    try:
        for p in procs:
            c = p.client()
            c.set("fill", "x")
            c.config_set("maxmemory", 1)          # always over
            c.close()
        replies = _same(procs, [
            ("EVAL", "return redis.call('set', 'k', 'v')", "0"),
            ("EVAL", "return redis.call('get', 'fill') and 1", "0"),
            ("EVAL", "#!lua\nreturn redis.call('get', 'k')", "0"),
            ("EVAL", "#!lua flags=no-writes\nreturn redis.call('exists', 'fill')", "0"),
            ("EVAL", "#!lua flags=allow-oom\nreturn redis.call('set', 'k2', 'v')", "0"),
            ("EVAL", "redis.call('del', 'nosuch') return redis.call('set', 'k3', 'v')", "0"),
            ("EVAL_RO", "return redis.call('get', 'k2')", "0"),
        ])
        assert replies[0].startswith(b"-OOM command not allowed")
        assert replies[2].startswith(b"-OOM command not allowed")       # denyoom: refused
        assert replies[4] == b"+OK\r\n"
        # after a first write (even one that changed nothing) a script is not stopped
        assert replies[5] == b"+OK\r\n"
    finally:
        for p in procs:
            p.cleanup()


def test_stale_replica_refuses_scripts_as_redis():
    from tests.helpers import free_port
    dead = free_port()           # a primary that is never there
    procs = [Proc(["--replicaof", "127.0.0.1", str(dead), "--replica-serve-stale-data", "no"],
                  redis_server=rs).start(wait=False) for rs in (False, True)]
    try:
        for p in procs:                      # PING is refused here: wait for INFO
            def up(port=p.port):
                try:
                    c = Conn(port)
                except OSError:
                    return False
                c.close()
                return True
            wait_until(up, 10, "start")
        _same(procs, [
            ("EVAL", "return 1", "0"),
            ("EVAL", "#!lua\nreturn 1", "0"),
            ("EVAL", "#!lua flags=no-writes\nreturn 1", "0"),
            ("EVAL", "#!lua flags=no-writes,allow-stale\nreturn 1", "0"),
            ("EVAL", "#!lua flags=no-writes,allow-stale\nreturn redis.call('get', 'x')", "0"),
            ("EVAL", "#!lua flags=no-writes,allow-stale\nreturn redis.call('ping')", "0"),
            ("EVAL_RO", "return 1", "0"),
            ("FCALL", "nosuch", "0"),
            ("SET", "a", "b"),                   # READONLY comes before MASTERDOWN
            ("GET", "a"),
        ])
    finally:
        for p in procs:
            p.cleanup()


def test_redis_cli_functions_rdb(server, real):
    """`redis-cli --functions-rdb` (REPLCONF rdb-filter-only functions): an RDB
    with the libraries and no keys, which redis-server loads."""
    import subprocess
    lib = "#!lua name=frdb\nredis.register_function('frdb_f', function() return 'f' end)"
    c = server.client()
    c.function_flush()
    c.function_load(lib)
    c.set("not-in-the-rdb", "v")
    path = os.path.join(server.dir, "functions.rdb")
    res = subprocess.run(["redis-cli", "-p", str(server.port), "--functions-rdb", path],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    with open(path, "rb") as fh:
        data = fh.read()
    assert b"frdb_f" in data and b"not-in-the-rdb" not in data
    # redis-server starts from it with the library and no keys
    workdir = tempfile.mkdtemp(prefix="pynode-frdb-")
    try:
        shutil.copy(path, os.path.join(workdir, "dump.rdb"))
        p = Proc(redis_server=True, workdir=workdir)
        p.args = ["--dbfilename", "dump.rdb"]
        p.start()
        try:
            rc = p.client()
            assert rc.fcall("frdb_f", 0) == b"f"
            assert rc.dbsize() == 0
        finally:
            p.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    c.close()
