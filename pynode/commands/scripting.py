"""Scripting commands: EVAL EVALSHA EVAL_RO EVALSHA_RO SCRIPT, FUNCTION
FCALL FCALL_RO, as Redis 7.0's eval.c and functions.c (the machinery is in
pynode/scripting/)."""

from __future__ import annotations

from pynode.commands import FLAGS_OF, CommandError, command, parse_int
from pynode.commands.server import _help
from pynode.resp import OK, Map, SetReply, Status, bulk, encode
from pynode.scripting import eval as evalmod
from pynode.scripting.runner import ALLOW_OOM, ALLOW_STALE, EVAL_COMPAT, NO_WRITES
from storage.glob import match as glob_match
from storage.slots import keyslot

NOSCRIPT = "NOSCRIPT No matching script. Please use EVAL."


_SMALL = {b"%d" % i: i for i in range(10)}


def _split(c, argv: list[bytes], bad_numkeys: str | None = None):
    """numkeys, keys, args of EVAL/FCALL, with Redis's checks."""
    numkeys = _SMALL.get(argv[2])
    if numkeys is not None:
        pass
    elif bad_numkeys is None:
        numkeys = parse_int(argv[2])
    else:
        try:
            numkeys = parse_int(argv[2])
        except CommandError:
            raise CommandError(bad_numkeys) from None
    if numkeys > len(argv) - 3:
        raise CommandError("ERR Number of keys can't be greater than number of args")
    if numkeys < 0:
        raise CommandError("ERR Number of keys can't be negative")
    keys = argv[3:3 + numkeys]
    args = argv[3 + numkeys:]
    slot = keyslot(keys[0]) if keys and c.srv.cluster is not None else -1
    return keys, args, slot


def _monitor(c, argv) -> None:
    """EVAL and FCALL are shown to MONITOR before the commands they run
    (they skip the dispatcher's feed, which comes after the command)."""
    srv = c.srv
    if srv.monitors:
        srv.feed_monitors(c, argv)


def _eval(c, argv, evalsha: bool, ro: bool):
    srv = c.srv
    if srv.monitors:
        _monitor(c, argv)
    keys, args, slot = _split(c, argv)
    sc = srv.scripting
    s = evalmod.lookup(sc, argv, evalsha)
    if s is None:
        raise CommandError(NOSCRIPT)
    return sc.run(c, sc.eval_engine or sc.eval_lua(), s.fn, keys, args, s.name, s.flags, ro,
                  True, slot, argv)


@command("eval")
def eval_(c, argv):
    return _eval(c, argv, False, False)


@command("evalsha")
def evalsha(c, argv):
    return _eval(c, argv, True, False)


@command("eval_ro")
def eval_ro(c, argv):
    return _eval(c, argv, False, True)


@command("evalsha_ro")
def evalsha_ro(c, argv):
    return _eval(c, argv, True, True)


def _fcall(c, argv, ro: bool):
    if c.srv.monitors:
        _monitor(c, argv)
    sc = c.srv.scripting
    f = sc.functions.find(argv[1])
    if f is None:
        raise CommandError("ERR Function not found")
    keys, args, slot = _split(c, argv, "ERR Bad number of keys provided")
    return sc.run(c, sc.functions.lua(), f.fn, keys, args, f.funcname, f.flags, ro, False,
                  slot, argv)


@command("fcall")
def fcall(c, argv):
    return _fcall(c, argv, False)


@command("fcall_ro")
def fcall_ro(c, argv):
    return _fcall(c, argv, True)


def _script_flags(flags: int, cmd):
    """scriptFlagsToCmdFlags: a script with a shebang (or any function) is
    a write/deny-oom command unless its flags say otherwise."""
    if flags & EVAL_COMPAT:
        return cmd
    write = not flags & NO_WRITES
    denyoom = not flags & (ALLOW_OOM | NO_WRITES)
    return cmd.view(write, denyoom, bool(flags & ALLOW_STALE))


def script_flags(srv, cmd, argv) -> int | None:
    """The flags of the script EVAL*/FCALL* would run (None: no such function)."""
    if cmd.name.startswith("fcall"):
        f = srv.scripting.functions.find(argv[1]) if len(argv) > 1 else None
        return None if f is None else f.flags
    return evalmod.flags_of(srv.scripting, argv, cmd.name.startswith("evalsha"))


def _flags_of(srv, cmd, argv):
    flags = script_flags(srv, cmd, argv)
    return cmd if flags is None else _script_flags(flags, cmd)


FLAGS_OF.update(dict.fromkeys(("eval", "eval_ro", "evalsha", "evalsha_ro", "fcall", "fcall_ro"),
                               _flags_of))


# ====================================================================== SCRIPT
SCRIPT_HELP = [
    "DEBUG (YES|SYNC|NO)",
    "    Set the debug mode for subsequent scripts executed.",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
]


@command("script|help")
def script_help(c, argv):
    return _help("SCRIPT", SCRIPT_HELP)


@command("script|load")
def script_load(c, argv):
    s = evalmod.create(c.srv.scripting, argv[2])
    return bulk(s.sha)


@command("script|exists")
def script_exists(c, argv):
    scripts = c.srv.scripting.scripts
    out = [b"*%d\r\n" % (len(argv) - 2)]
    for sha in argv[2:]:
        out.append(b":1\r\n" if sha.lower() in scripts else b":0\r\n")
    return b"".join(out)


@command("script|flush")
def script_flush(c, argv):
    if len(argv) == 3:
        mode = argv[2].lower()
        if mode not in (b"sync", b"async"):
            raise CommandError("ERR SCRIPT FLUSH only support SYNC|ASYNC option")
    elif len(argv) != 2:
        raise CommandError("ERR SCRIPT FLUSH only support SYNC|ASYNC option")
    c.srv.scripting.flush_eval()
    return OK


@command("script|kill")
def script_kill(c, argv):
    err = c.srv.scripting.kill(True)
    if err is not None:
        raise CommandError(err)
    return OK


@command("script|debug")
def script_debug(c, argv):
    mode = argv[2].lower()
    if mode == b"no":
        return OK
    if mode in (b"yes", b"sync"):
        raise CommandError("ERR SCRIPT DEBUG (the Lua debugger) is not supported by pynode")
    raise CommandError("ERR Use SCRIPT DEBUG YES/SYNC/NO")


# ====================================================================== FUNCTION
FUNCTION_HELP = [
    "LOAD [REPLACE] <FUNCTION CODE>",
    "    Create a new library with the given library name and code.",
    "DELETE <LIBRARY NAME>",
    "    Delete the given library.",
    "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
    "    Return general information on all the libraries:",
    "    * Library name",
    "    * The engine used to run the Library",
    "    * Library description",
    "    * Functions list",
    "    * Library code (if WITHCODE is given)",
    "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
    "STATS",
    "    Return information about the current function running:",
    "    * Function name",
    "    * Command used to run the function",
    "    * Duration in MS that the function is running",
    "    If no function is running, return nil",
    "    In addition, returns a list of available engines.",
    "KILL",
    "    Kill the current running function.",
    "FLUSH [ASYNC|SYNC]",
    "    Delete all the libraries.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the libraries.",
    "    * SYNC: Synchronously flush the libraries.",
    "DUMP",
    "    Return a serialized payload representing the current libraries, can be restored "
    "using FUNCTION RESTORE command",
    "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
    "    Restore the libraries represented by the given payload, it is possible to give a "
    "restore policy to",
    "    control how to handle existing libraries (default APPEND):",
    "    * FLUSH: delete all existing libraries.",
    "    * APPEND: appends the restored libraries to the existing libraries. On collision, "
    "abort.",
    "    * REPLACE: appends the restored libraries to the existing libraries, On collision, "
    "replace the old",
    "      libraries with the new libraries (notice that even on this option there is a "
    "chance of failure",
    "      in case of functions name collision with another library).",
]


@command("function|help")
def function_help(c, argv):
    return _help("FUNCTION", FUNCTION_HELP)


@command("function|load")
def function_load(c, argv):
    replace = False
    i = 2
    n = len(argv)
    while i < n - 1:
        a = argv[i]
        i += 1
        if a.lower() == b"replace":
            replace = True
            continue
        raise CommandError("ERR Unknown option given: %s" % a.decode("utf-8", "replace"))
    srv = c.srv
    timeout = "M" not in c.flags_extra and not srv.loading
    name = srv.scripting.functions.create(argv[i], replace, timeout)
    srv.dirty += 1
    return bulk(name)


@command("function|delete")
def function_delete(c, argv):
    c.srv.scripting.functions.delete(argv[2])
    c.srv.dirty += 1
    return OK


@command("function|flush")
def function_flush(c, argv):
    if len(argv) == 3:
        if argv[2].lower() not in (b"sync", b"async"):
            raise CommandError("ERR FUNCTION FLUSH only supports SYNC|ASYNC option")
    elif len(argv) > 3:
        raise CommandError(_subcommand_syntax(argv))
    c.srv.scripting.functions.flush()
    c.srv.dirty += 1
    return OK


def _subcommand_syntax(argv) -> str:
    """addReplySubcommandSyntaxError: names the subcommand as it was typed."""
    return ("ERR unknown subcommand or wrong number of arguments for '%s'. Try %s HELP."
            % (argv[1].decode("utf-8", "replace")[:128], argv[0].decode().upper()))


FLAG_ORDER = (b"no-writes", b"allow-oom", b"allow-stale", b"no-cluster",
              b"allow-cross-slot-keys")


@command("function|list")
def function_list(c, argv):
    with_code = False
    pattern = None
    i = 2
    n = len(argv)
    while i < n:
        a = argv[i].lower()
        if not with_code and a == b"withcode":
            with_code = True
        elif pattern is None and a == b"libraryname":
            if i >= n - 1:
                raise CommandError("ERR library name argument was not given")
            i += 1
            pattern = argv[i]
        else:
            raise CommandError("ERR Unknown argument %s" % argv[i].decode("utf-8", "replace"))
        i += 1
    out = []
    for lib in c.srv.scripting.functions.libraries.values():
        if pattern is not None and not glob_match(pattern, lib.name, nocase=True):
            continue
        funcs = []
        for f in lib.functions.values():
            funcs.append(Map([(b"name", f.name), (b"description", f.desc),
                              (b"flags", SetReply([Status(x.decode()) for x in FLAG_ORDER
                                                   if x in f.flag_names]))]))
        m = [(b"library_name", lib.name), (b"engine", b"LUA"), (b"functions", funcs)]
        if with_code:
            m.append((b"library_code", lib.code))
        out.append(Map(m))
    return encode(out, c.resp)


@command("function|stats")
def function_stats(c, argv):
    import time
    sc = c.srv.scripting
    ctx = sc.ctx
    running = None
    if ctx is not None:
        running = Map([(b"name", ctx.funcname.encode()),
                       (b"command", list(ctx.argv)),
                       (b"duration_ms", int((time.monotonic() - ctx.start) * 1000))])
    fe = sc.functions
    engines = Map([(b"LUA", Map([(b"libraries_count", len(fe.libraries)),
                                 (b"functions_count", fe.count_functions())]))])
    return encode(Map([(b"running_script", running), (b"engines", engines)]), c.resp)


@command("function|kill")
def function_kill(c, argv):
    err = c.srv.scripting.kill(False)
    if err is not None:
        raise CommandError(err)
    return OK


@command("function|dump")
def function_dump(c, argv):
    return bulk(c.srv.scripting.functions.dump())


@command("function|restore")
def function_restore(c, argv):
    if len(argv) > 4:
        raise CommandError(_subcommand_syntax(argv))
    policy = "append"
    if len(argv) == 4:
        p = argv[3].lower()
        if p not in (b"append", b"replace", b"flush"):
            raise CommandError("ERR Wrong restore policy given, value should be either FLUSH, "
                               "APPEND or REPLACE.")
        policy = p.decode()
    c.srv.scripting.functions.restore(argv[2], policy)
    c.srv.dirty += 1
    return OK
