"""DEBUG: Redis 7.0.15's operator and test-suite subcommands.

Reply texts and argument rules are redis-server 7.0.15's (checked side by
side). Internals that exist only in C (jemalloc, dict rehashing, SDS headers,
reply buffers) answer in Redis's format with what pynode can compute, or are
accepted and remembered where the effect has no counterpart; see
docs/ARCHITECTURE.md ("DEBUG").
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time

from pynode.commands import CommandError, command, parse_int
from pynode.commands.server import _help, _is_local, _s
from pynode.resp import OK
from storage.slots import keyslot

DEBUG_NOT_ALLOWED = ("ERR DEBUG command not allowed. If the enable-debug-command option is set "
                     "to \"local\", you can run it from a local connection, otherwise you need "
                     "to set this option in the configuration file, and then restart the "
                     "server.")

NO_SUCH_KEY = "ERR no such key"

# The text of `DEBUG HELP` of redis-server 7.0.15 built without jemalloc
# (pynode reports mem_allocator:libc, so MALLCTL / MALLCTL-STR do not exist).
DEBUG_HELP = [
    "AOF-FLUSH-SLEEP <microsec>",
    "    Server will sleep before flushing the AOF, this is used for testing.",
    "ASSERT",
    "    Crash by assertion failed.",
    "CHANGE-REPL-ID",
    "    Change the replication IDs of the instance.",
    "    Dangerous: should be used only for testing the replication subsystem.",
    "CONFIG-REWRITE-FORCE-ALL",
    "    Like CONFIG REWRITE but writes all configuration options, including",
    "    keywords not listed in original configuration file or default values.",
    "CRASH-AND-RECOVER [<milliseconds>]",
    "    Hard crash and restart after a <milliseconds> delay (default 0).",
    "DIGEST",
    "    Output a hex signature representing the current DB content.",
    "DIGEST-VALUE <key> [<key> ...]",
    "    Output a hex signature of the values of all the specified keys.",
    "ERROR <string>",
    "    Return a Redis protocol error with <string> as message. Useful for clients",
    "    unit tests to simulate Redis errors.",
    "LEAK <string>",
    "    Create a memory leak of the input string.",
    "LOG <message>",
    "    Write <message> to the server log.",
    "HTSTATS <dbid>",
    "    Return hash table statistics of the specified Redis database.",
    "HTSTATS-KEY <key>",
    "    Like HTSTATS but for the hash table stored at <key>'s value.",
    "LOADAOF",
    "    Flush the AOF buffers on disk and reload the AOF in memory.",
    "REPLICATE <string>",
    "    Replicates the provided string to replicas, allowing data divergence.",
    "OBJECT <key>",
    "    Show low level info about `key` and associated value.",
    "DROP-CLUSTER-PACKET-FILTER <packet-type>",
    "    Drop all packets that match the filtered type. Set to -1 allow all packets.",
    "OOM",
    "    Crash the server simulating an out-of-memory error.",
    "PANIC",
    "    Crash the server simulating a panic.",
    "POPULATE <count> [<prefix>] [<size>]",
    "    Create <count> string keys named key:<num>. If <prefix> is specified then",
    "    it is used instead of the 'key' prefix. These are not propagated to",
    "    replicas. Cluster slots are not respected so keys not belonging to the",
    "    current node can be created in cluster mode.",
    "PROTOCOL <type>",
    "    Reply with a test value of the specified type. <type> can be: string,",
    "    integer, double, bignum, null, array, set, map, attrib, push, verbatim,",
    "    true, false.",
    "RELOAD [option ...]",
    "    Save the RDB on disk and reload it back to memory. Valid <option> values:",
    "    * MERGE: conflicting keys will be loaded from RDB.",
    "    * NOFLUSH: the existing database will not be removed before load, but",
    "      conflicting keys will generate an exception and kill the server.",
    "    * NOSAVE: the database will be loaded from an existing RDB file.",
    "    Examples:",
    "    * DEBUG RELOAD: verify that the server is able to persist, flush and reload",
    "      the database.",
    "    * DEBUG RELOAD NOSAVE: replace the current database with the contents of an",
    "      existing RDB file.",
    "    * DEBUG RELOAD NOSAVE NOFLUSH MERGE: add the contents of an existing RDB",
    "      file to the database.",
    "RESTART [<milliseconds>]",
    "    Graceful restart: save config, db, restart after a <milliseconds> delay (default 0).",
    "SDSLEN <key>",
    "    Show low level SDS string info representing `key` and value.",
    "SEGFAULT",
    "    Crash the server with sigsegv.",
    "SET-ACTIVE-EXPIRE <0|1>",
    "    Setting it to 0 disables expiring keys in background when they are not",
    "    accessed (otherwise the Redis behavior). Setting it to 1 reenables back the",
    "    default.",
    "QUICKLIST-PACKED-THRESHOLD <size>",
    "    Sets the threshold for elements to be inserted as plain vs packed nodes",
    "    Default value is 1GB, allows values up to 4GB. Setting to 0 restores to default.",
    "SET-SKIP-CHECKSUM-VALIDATION <0|1>",
    "    Enables or disables checksum checks for RDB files and RESTORE's payload.",
    "SLEEP <seconds>",
    "    Stop the server for <seconds>. Decimals allowed.",
    "STRINGMATCH-TEST",
    "    Run a fuzz tester against the stringmatchlen() function.",
    "STRUCTSIZE",
    "    Return the size of different Redis core C structures.",
    "LISTPACK <key>",
    "    Show low level info about the listpack encoding of <key>.",
    "QUICKLIST <key> [<0|1>]",
    "    Show low level info about the quicklist encoding of <key>.",
    "    The optional argument (0 by default) sets the level of detail",
    "CLIENT-EVICTION",
    "    Show low level client eviction pools info (maxmemory-clients).",
    "PAUSE-CRON <0|1>",
    "    Stop periodic cron job processing.",
    "REPLYBUFFER PEAK-RESET-TIME <NEVER||RESET|time>",
    "    Sets the time (in milliseconds) to wait between client reply buffer peak resets.",
    "    In case NEVER is provided the last observed peak will never be reset",
    "    In case RESET is provided the peak reset time will be restored to the default value",
    "REPLYBUFFER RESIZING <0|1>",
    "    Enable or disable the reply buffer resize cron job",
    "CLUSTERLINK KILL <to|from|all> <node-id>",
    "    Kills the link based on the direction to/from (both) with the provided node.",
]

def _atof(b: bytes) -> float:
    """strtod()-like: the longest numeric prefix, 0 if none."""
    s = b.decode("latin-1").strip()
    for end in range(len(s), 0, -1):
        try:
            return float(s[:end])
        except ValueError:
            continue
    return 0.0


def _atoi(b: bytes) -> int:
    s = b.decode("latin-1").strip()
    i = 1 if s[:1] in ("-", "+") else 0
    while i < len(s) and s[i].isdigit():
        i += 1
    try:
        return int(s[:i])
    except ValueError:
        return 0


def _serialized_len(value) -> int:
    """rdbSavedObjectLen: the bytes of the value's RDB encoding (type byte excluded)."""
    from storage import rdb
    if type(value) is bytes:
        return len(rdb.encode_blob(value))       # LZF as rdbSaveStringObject
    try:
        return len(rdb.encode_value(value)[1])
    except rdb.RDBError:
        return sys.getsizeof(value)




def _positive_long(b: bytes) -> int:
    """getPositiveLongFromObjectOrReply with Redis's default message."""
    try:
        v = parse_int(b)
    except CommandError:
        v = -1
    if v < 0:
        raise CommandError("ERR value is out of range, must be positive")
    return v


_MEM_UNITS = {b"": 1, b"b": 1, b"k": 1000, b"kb": 1024, b"m": 1000 ** 2, b"mb": 1024 ** 2,
              b"g": 1000 ** 3, b"gb": 1024 ** 3}


def _memtoull(b: bytes) -> int | None:
    """memtoull(): digits and an optional unit; None where Redis sets *err."""
    s = b.lower()
    i = 0
    while i < len(s) and 48 <= s[i] <= 57:
        i += 1
    mul = _MEM_UNITS.get(s[i:])
    if i == 0 or mul is None:
        return None
    v = int(s[:i]) * mul
    return v if v < 1 << 64 else None


def _raw_lookup(db, key: bytes):
    """dictFind on the main dict: logically expired keys are found too."""
    return db.slots[keyslot(key)].get(key)


# ------------------------------------------------------------------ OBJECT
def _debug_object(c, key: bytes) -> bytes:
    from storage.values import LIMITS, encoding, refcount
    db = c.db
    v = _raw_lookup(db, key)
    if v is None:
        raise CommandError(NO_SUCH_KEY)
    ks = c.srv.ks
    lru = db.clock.get(key, ks.default_clock())
    enc = "raw" if type(v) is bytes and key in db.raw else encoding(v)
    extra = ""
    if enc == "quicklist":
        nodes = len(v.nodes)
        extra = (" ql_nodes:%d ql_avg_node:%.2f ql_listpack_max:%d ql_compressed:%d "
                 "ql_uncompressed_size:%d" % (
                     nodes, v.count / nodes if nodes else float("nan"), v.fill,
                     LIMITS.list_compress_depth != 0, sum(v.sizes)))
    return ("+Value at:%#x refcount:%d encoding:%s serializedlength:%d lru:%d "
            "lru_seconds_idle:%d%s\r\n" % (id(v), refcount(v), enc, _serialized_len(v),
                                           lru, ks.idle_ms(lru) // 1000, extra)).encode()


# ------------------------------------------------------------------ SDSLEN
def _jemalloc_size(n: int) -> int:
    """The jemalloc size class an allocation of n bytes lands in (what
    zmalloc_size reports in Redis)."""
    if n <= 8:
        return 8
    if n <= 16:
        return 16
    if n <= 128:
        return (n + 15) & ~15
    # four classes per doubling above 128
    p = 1 << (n - 1).bit_length()
    step = p >> 3
    return (n + step - 1) // step * step


def _sds_hdr(n: int, key: bool) -> int:
    # keys use sdshdr5 for short strings, values (sdsnewlen from robj) at least sdshdr8
    if n < 32:
        return 1 if key else 3
    return 3 if n < 256 else 5 if n < 65536 else 9


def _debug_sdslen(c, key: bytes) -> bytes:
    from storage.values import EMBSTR_SIZE_LIMIT, string_int
    db = c.db
    v = _raw_lookup(db, key)
    if v is None:
        raise CommandError(NO_SUCH_KEY)
    if type(v) is not bytes or (string_int(v) is not None and key not in db.raw):
        raise CommandError("ERR Not an sds encoded string.")
    n = len(v)
    key_alloc = _jemalloc_size(_sds_hdr(len(key), True) + len(key) + 1)
    if n <= EMBSTR_SIZE_LIMIT and key not in db.raw:
        val_alloc = _jemalloc_size(16 + 3 + n + 1) - 16   # robj + sds in one block
    else:
        val_alloc = _jemalloc_size(_sds_hdr(n, False) + n + 1)
    return ("+key_sds_len:%d, key_sds_avail:0, key_zmalloc: %d, val_sds_len:%d, "
            "val_sds_avail:0, val_zmalloc: %d\r\n" % (len(key), key_alloc, n,
                                                      val_alloc)).encode()


# ------------------------------------------------------------------ HTSTATS
DICT_STATS_VECTLEN = 50


def _table_size(n: int) -> int:
    """The size a Redis dict reaches after n insertions (it starts at 4 and
    doubles to the next power of two when it is full)."""
    return 4 if n <= 4 else 1 << (n - 1).bit_length()


def dict_stats(items, n: int) -> str:
    """dictGetStats' text for a dict of n elements. Bucket chains are laid out
    by Python's hash of each element over Redis's table size."""
    if n == 0:
        return ("Hash table 0 stats (main hash table):\n"
                "No stats available for empty dictionaries\n")
    size = _table_size(n)
    mask = size - 1
    chains: dict[int, int] = {}
    for k in items:
        b = hash(k) & mask
        chains[b] = chains.get(b, 0) + 1
    clvector = [0] * DICT_STATS_VECTLEN
    clvector[0] = size - len(chains)
    for ln in chains.values():
        clvector[min(ln, DICT_STATS_VECTLEN - 1)] += 1
    slots = len(chains)
    out = ["Hash table 0 stats (main hash table):\n"
           " table size: %d\n"
           " number of elements: %d\n"
           " different slots: %d\n"
           " max chain length: %d\n"
           " avg chain length (counted): %.02f\n"
           " avg chain length (computed): %.02f\n"
           " Chain length distribution:\n"
           % (size, n, slots, max(chains.values()), n / slots, n / slots)]
    for i in range(DICT_STATS_VECTLEN - 1):
        if clvector[i]:
            out.append("   %d: %d (%.02f%%)\n" % (i, clvector[i], clvector[i] / size * 100))
    return "".join(out)


def _verbatim(text: str, resp: int) -> bytes:
    b = text.encode()
    if resp == 3:
        return b"=%d\r\ntxt:%s\r\n" % (len(b) + 4, b)
    return b"$%d\r\n%s\r\n" % (len(b), b)


def _debug_htstats(c, arg: bytes) -> bytes:
    srv = c.srv
    dbid = parse_int(arg)
    if dbid < 0 or dbid >= len(srv.ks.dbs):
        raise CommandError("ERR Out of range database")
    db = srv.ks.dbs[dbid]
    if db is None:
        keys, nkeys, exp = (), 0, {}
    else:
        keys = (k for d in db.slots if d for k in d)
        nkeys = sum(len(d) for d in db.slots)
        exp = db.expires
    text = ("[Dictionary HT]\n" + dict_stats(keys, nkeys) +
            "[Expires HT]\n" + dict_stats(exp, len(exp)))
    return _verbatim(text, c.resp)


def _debug_htstats_key(c, key: bytes) -> bytes:
    from storage.values import encoding
    v = c.db.peek(key)
    if v is None:
        raise CommandError(NO_SUCH_KEY)
    enc = encoding(v) if type(v) is not bytes else "raw"
    if enc == "hashtable":
        members = v.keys() if isinstance(v, dict) else list(v.arr)
    elif enc == "skiplist":
        members = v.scores
    else:
        raise CommandError("ERR The value stored at the specified key is not represented "
                           "using an hash table")
    return _verbatim(dict_stats(members, len(v)), c.resp)


# ------------------------------------------------------------------ LISTPACK / QUICKLIST
def _debug_listpack(c, key: bytes) -> bytes:
    from storage.values import encoding
    v = c.db.peek(key)
    if v is None:
        raise CommandError(NO_SUCH_KEY)
    if type(v) is bytes or encoding(v) != "listpack":
        raise CommandError("ERR Not a listpack encoded object.")
    items = list(v.items()) if isinstance(v, dict) else list(getattr(v, "scores", {}).items())
    print("{listpack %d entries}" % len(items), *("  %r" % (e,) for e in items),
          sep="\n", flush=True)
    return b"+Listpack structure printed on stdout\r\n"


def _debug_quicklist(c, key: bytes, full: int) -> bytes:
    v = c.db.peek(key)
    if v is None:
        raise CommandError(NO_SUCH_KEY)
    if getattr(v, "encoding", None) != "quicklist":
        raise CommandError("ERR Not a quicklist encoded object.")
    v.settle()
    print("{count : %d}\n{len : %d}\n{fill : %d}" % (v.count, len(v.nodes), v.fill),
          flush=True)
    for i, (node, size) in enumerate(zip(v.nodes, v.sizes)):
        print("{node %d}\n{sz: %d}\n{count: %d}" % (i, size, len(node)), flush=True)
        if full:
            for e in node:
                print("  %r" % (e,), flush=True)
    return b"+Quicklist structure printed on stdout\r\n"


# ------------------------------------------------------------------ POPULATE
def _debug_populate(c, argv) -> bytes:
    n = len(argv)
    count = _positive_long(argv[2])
    size = _positive_long(argv[4]) if n == 5 else 0
    prefix = argv[3] if n >= 4 else b"key"
    # snprintf into a 128-byte buffer: the key is cut at 127 bytes, as in Redis
    db = c.db
    for j in range(count):
        key = (b"%s:%d" % (prefix, j))[:127]
        if db.get(key) is not None:     # lookupKeyWrite: an expired key is replaced
            continue
        val = b"value:%d" % j
        if size:
            val = val[:size] + bytes(max(0, size - len(val)))
        db.set(key, val)
    return OK


# ------------------------------------------------------------------ PROTOCOL
PROTOCOL_TYPES = ("ERR Wrong protocol type name. Please use one of the following: "
                  "string|integer|double|bignum|null|array|set|map|attrib|push|verbatim|"
                  "true|false")

_PROTO2 = {
    b"string": b"$11\r\nHello World\r\n",
    b"integer": b":12345\r\n",
    b"double": b"$5\r\n3.141\r\n",
    b"bignum": b"$37\r\n1234567999999999999999999999999999999\r\n",
    b"null": b"$-1\r\n",
    b"array": b"*3\r\n:0\r\n:1\r\n:2\r\n",
    b"set": b"*3\r\n:0\r\n:1\r\n:2\r\n",
    b"map": b"*6\r\n:0\r\n:0\r\n:1\r\n:1\r\n:2\r\n:0\r\n",
    b"attrib": b"$39\r\nSome real reply following the attribute\r\n",
    b"true": b":1\r\n",
    b"false": b":0\r\n",
    b"verbatim": b"$25\r\nThis is a verbatim\nstring\r\n",
}
_PROTO3 = dict(_PROTO2)
_PROTO3.update({
    b"double": b",3.141\r\n",
    b"bignum": b"(1234567999999999999999999999999999999\r\n",
    b"null": b"_\r\n",
    b"set": b"~3\r\n:0\r\n:1\r\n:2\r\n",
    b"map": b"%3\r\n:0\r\n#f\r\n:1\r\n#t\r\n:2\r\n#f\r\n",
    b"attrib": (b"|1\r\n$14\r\nkey-popularity\r\n*2\r\n$7\r\nkey:123\r\n:90\r\n"
               b"$39\r\nSome real reply following the attribute\r\n"),
    b"push": (b">2\r\n$16\r\nserver-cpu-usage\r\n:42\r\n"
             b"$40\r\nSome real reply following the push reply\r\n"),
    b"true": b"#t\r\n",
    b"false": b"#f\r\n",
    b"verbatim": b"=29\r\ntxt:This is a verbatim\nstring\r\n",
})


def _debug_protocol(c, name: bytes) -> bytes:
    name = name.lower()
    if c.resp >= 3:
        r = _PROTO3.get(name)
    else:
        if name == b"push":
            raise CommandError("ERR RESP2 is not supported by this command")
        r = _PROTO2.get(name)
    if r is None:
        raise CommandError(PROTOCOL_TYPES)
    return r


# ------------------------------------------------------------------ RELOAD / LOADAOF
def _debug_reload(c, argv) -> bytes:
    """Save the RDB (unless NOSAVE), then load it back: into an emptied
    dataset (unless NOFLUSH), replacing keys that exist (MERGE) or crashing
    on them (NOFLUSH without MERGE), as rdbLoad with RDBFLAGS_ALLOW_DUP.
    The file is parsed before anything is changed: a missing or damaged
    file leaves the dataset as it was."""
    from storage import rdb
    srv = c.srv
    flush = save = True
    merge = False
    for a in argv[2:]:
        o = a.lower()
        if o == b"merge":
            merge = True
        elif o == b"noflush":
            flush = False
        elif o == b"nosave":
            save = False
        else:
            raise CommandError("ERR DEBUG RELOAD only supports the MERGE, NOFLUSH and "
                               "NOSAVE options.")
    snaps = srv.snapshots
    if save and not snaps.save():
        return b"-ERR\r\n"
    path = snaps.path()
    loaded: list = []
    codes: list[bytes] = []
    clocks: list = []                 # saved idle times / LFU counters
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        rdb.load(data, lambda dbid, key, value, expire: loaded.append((dbid, key, value,
                                                                        expire)),
                 None, name=path, on_function=codes.append,
                 on_clock=lambda *clock: clocks.append(clock))
    except (OSError, rdb.RDBError) as e:
        srv.log.warning("DEBUG RELOAD: error loading %s: %s" % (path, e))
        raise CommandError("ERR Error trying to load the RDB dump") from None
    ks = srv.ks
    if not flush and not merge:
        for dbid, key, _v, _e in loaded:
            if dbid < len(ks.dbs) and ks.dbs[dbid] is not None and \
                    _raw_lookup(ks.dbs[dbid], key) is not None:
                srv.log.warning("RDB has duplicated key '%s' in DB %d" % (_s(key), dbid))
                crash_panic(srv, "Duplicated key found in RDB file")
    dirty = srv.dirty
    srv.set_loading(True)
    try:
        if flush:
            ks.flushall()
        for dbid, key, value, expire in loaded:
            db = ks.db(dbid)
            if merge and _raw_lookup(db, key) is not None:
                db.delete(key)
            db.set(key, value)
            if expire != -1:
                db.set_expire(key, expire)
        for clock in clocks:
            snaps.take_clock(*clock)
        if codes:
            srv.scripting.load_functions(codes)
    finally:
        srv.set_loading(False, dirty)
    srv.log.notice("DB reloaded by DEBUG RELOAD")
    return OK


def _debug_loadaof(c) -> bytes:
    """Flush the AOF buffer, empty the dataset and replay the AOF files (the
    server replays them into a fresh keyspace that replaces the live one only
    when the whole AOF loaded)."""
    srv = c.srv
    if srv.aof is None:
        raise CommandError("ERR Error trying to load the AOF files, check server logs.")
    try:
        srv.reload_aof()
    except Exception as e:  # noqa: BLE001 - the dataset stays as it was
        srv.log.warning("DEBUG LOADAOF failed: %s" % e)
        raise CommandError("ERR Error trying to load the AOF files, check server logs.") \
            from None
    srv.log.notice("Append Only File loaded by DEBUG LOADAOF")
    return OK


# ------------------------------------------------------------------ crashes
def _bug_report(srv, lines: list[str]) -> None:
    log = srv.log
    log.raw(3, "\n\n=== REDIS BUG REPORT START: Cut & paste starting from here ===\n")
    for ln in lines:
        log.warning(ln)
    log.raw(3, "\n=== REDIS BUG REPORT END. Make sure to include from START to END. ===\n\n"
               "       Please report the crash by opening an issue on github:\n\n"
               "           http://github.com/redis/redis/issues\n\n")


def _die(srv, sig: int) -> None:
    """End the process by `sig` with its default action, as bugReportEnd: the
    pidfile of a daemon goes first."""
    pidfile = srv.cfg.get("pidfile")
    if pidfile and srv.cfg.bool("daemonize"):
        try:
            os.unlink(pidfile)
        except OSError:
            pass
    try:
        import faulthandler
        faulthandler.disable()
    except Exception:  # noqa: BLE001
        pass
    sys.stdout.flush()
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)
    os._exit(128 + sig)               # not reached


def crash_panic(srv, msg: str) -> None:
    """serverPanic: the Guru Meditation lines, then abort()."""
    _bug_report(srv, ["------------------------------------------------",
                      "!!! Software Failure. Press left mouse button to continue",
                      "Guru Meditation: %s #debug.py" % msg])
    _die(srv, signal.SIGABRT)


def _crash_assert(c, argv) -> None:
    lines = ["=== ASSERTION FAILED CLIENT CONTEXT ===",
             "client->flags = 0",
             "client->conn = %s" % c.addr,
             "client->argc = %d" % len(argv)]
    lines += ['client->argv[%d] = "%s" (refcount: 1)' % (i, _s(a)) for i, a in enumerate(argv)]
    lines += ["=== ASSERTION FAILED OBJECT CONTEXT ===",
              "Object type: 0", "Object encoding: 0", "Object refcount: 1",
              "=== ASSERTION FAILED ===",
              "==> debug.py '1 == 2' is not true"]
    _bug_report(c.srv, lines)
    _die(c.srv, signal.SIGABRT)


def _crash_segfault(srv) -> None:
    _bug_report(srv, ["Redis %s crashed by signal: 11, si_code: 2" % _version(),
                      "Crashed running the instruction at: DEBUG SEGFAULT",
                      "Accessing address: (nil)"])
    _die(srv, signal.SIGSEGV)


def _crash_oom(srv) -> None:
    n = (1 << 64) - 1
    srv.log.warning("Out Of Memory allocating %d bytes!" % n)
    crash_panic(srv, "Redis aborting for OUT OF MEMORY. Allocating %d bytes!" % n)


def _version() -> str:
    from pynode.config import VERSION
    return VERSION


# ------------------------------------------------------------------ RESTART
def _debug_restart(c, argv, graceful: bool) -> bytes:
    """restartServer: (gracefully: rewrite the config and save the data the
    way SHUTDOWN does), wait `delay` ms, and exec the same command line."""
    srv = c.srv
    delay = parse_int(argv[2]) if len(argv) >= 3 else 0
    if graceful:
        if srv.cfg.config_file:
            from pynode.commands.config import rewrite_config
            try:
                rewrite_config(srv, srv.cfg.config_file)
            except Exception as e:  # noqa: BLE001
                srv.log.warning("Can't restart: configuration rewrite failed: %s" % e)
                raise CommandError("ERR failed to restart the server. Check server logs.") \
                    from None
        if not srv.snapshots.on_shutdown(save=False, nosave=False):
            raise CommandError("ERR failed to restart the server. Check server logs.")
        if srv.aof is not None:
            srv.aof.flush()
    if delay > 0:
        time.sleep(delay / 1000)
    args = [sys.executable, "-m", "pynode"] + sys.argv[1:]
    try:
        sys.stdout.flush()
        os.execv(sys.executable, args)
    except OSError as e:
        srv.log.warning("Can't restart: execve returned: %s" % e)
    raise CommandError("ERR failed to restart the server. Check server logs.")


# ------------------------------------------------------------------ cluster bus
def _debug_clusterlink_kill(c, argv) -> bytes:
    srv = c.srv
    if srv.cluster is None:
        raise CommandError("ERR Debug option only available for cluster mode enabled setup!")
    node_id = _s(argv[4])
    cl = srv.cluster
    if node_id not in cl.state.nodes:
        raise CommandError("ERR Unknown node %s" % node_id)
    direction = argv[3].lower()
    t = cl.transport
    if direction in (b"from", b"to", b"all"):
        if t is not None:
            t.kill_links(node_id, outbound=direction != b"from", inbound=direction != b"to")
        return OK
    # Redis replies the error and then +OK as well
    return b"-ERR Unknown direction %s\r\n+OK\r\n" % argv[3]


def apply_cluster_debug(srv) -> None:
    """Hand the bus settings of DEBUG to the cluster state and transport."""
    cl = srv.cluster
    if cl is None:
        return
    st = cl.state
    f = srv.debug.cluster_drop_packet_filter
    st.drop_filter = None if f == -1 else f
    st.close_link_on_drop = srv.debug.cluster_close_link_on_packet_drop
    if cl.transport is not None:
        cl.transport.paused = srv.debug.pause_cron


# ------------------------------------------------------------------ misc
def _client_eviction(c) -> bytes:
    from pynode.info import client_memory
    srv = c.srv
    if not srv.cfg.int("maxmemory-clients"):
        raise CommandError("ERR maxmemory-clients is disabled.")
    lo, hi = 15, 33                       # CLIENT_MEM_USAGE_BUCKET_MIN/MAX_LOG
    n = hi - lo + 1
    mem = [0] * n
    cnt = [0] * n
    for cl in srv.clients.values():
        m = client_memory(cl)
        b = 0 if m < (1 << lo) else min(n - 1, m.bit_length() - lo)
        mem[b] += m
        cnt[b] += 1
    out = []
    for j in range(n):
        s = "bucket          0" if j == 0 else "bucket %10d" % (1 << (j - 1 + lo))
        s += "+            : " if j == n - 1 else " - %10d: " % ((1 << (j + lo)) - 1)
        out.append(s + "tot-mem: %10d, clients: %d\n" % (mem[j], cnt[j]))
    return _verbatim("".join(out), c.resp)


def _stringmatch_test() -> bytes:
    """stringmatchlen_fuzz_test: random patterns against random strings; the
    matcher must neither raise nor hang."""
    from storage.glob import match
    rng = random.Random()
    alphabet = b"*?[]^-\\abc"
    for _ in range(1000):
        pat = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 32)))
        s = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 32)))
        match(pat, s)
        match(pat, s, True)
    return b"+Apparently Redis did not crash: test passed\r\n"


def _change_repl_id(srv) -> bytes:
    srv.log.notice("Changing replication IDs after receiving DEBUG change-repl-id")
    from pynode.replication import NULL_ID, new_id
    repl = srv.replication
    repl.replid = new_id()
    repl.replid2 = NULL_ID
    repl.second_offset = -1
    return OK


SUBCOMMAND_ERROR = ("ERR unknown subcommand or wrong number of arguments for '%s'. Try "
                    "DEBUG HELP.")


@command("debug")
def debug(c, argv):
    srv = c.srv
    mode = srv.debug_enabled
    if not (mode == "yes" or (mode == "local" and _is_local(c))):
        raise CommandError(DEBUG_NOT_ALLOWED)
    sub = argv[1].lower()
    n = len(argv)
    if sub == b"help" and n == 2:
        return _help("DEBUG", DEBUG_HELP)
    if sub == b"segfault":
        _crash_segfault(srv)
    if sub == b"panic":
        crash_panic(srv, "DEBUG PANIC called at Unix time %d" % int(time.time()))
    if sub in (b"restart", b"crash-and-recover"):
        return _debug_restart(c, argv, sub == b"restart")
    if sub == b"oom":
        _crash_oom(srv)
    if sub == b"assert":
        _crash_assert(c, argv)
    if sub == b"log" and n == 3:
        srv.log.warning("DEBUG LOG: %s" % _s(argv[2]))
        return OK
    if sub == b"leak" and n == 3:
        srv.debug.leaks.append(bytes(argv[2]))
        return OK
    if sub == b"reload":
        return _debug_reload(c, argv)
    if sub == b"loadaof":
        return _debug_loadaof(c)
    if sub == b"drop-cluster-packet-filter" and n == 3:
        srv.debug.cluster_drop_packet_filter = parse_int(argv[2])
        apply_cluster_debug(srv)
        return OK
    if sub == b"close-cluster-link-on-packet-drop" and n == 3:
        srv.debug.cluster_close_link_on_packet_drop = bool(_atoi(argv[2]))
        apply_cluster_debug(srv)
        return OK
    if sub == b"object" and n == 3:
        return _debug_object(c, argv[2])
    if sub == b"sdslen" and n == 3:
        return _debug_sdslen(c, argv[2])
    if sub == b"listpack" and n == 3:
        return _debug_listpack(c, argv[2])
    if sub == b"quicklist" and n in (3, 4):
        return _debug_quicklist(c, argv[2], _atoi(argv[3]) if n == 4 else 0)
    if sub == b"populate" and 3 <= n <= 5:
        return _debug_populate(c, argv)
    if sub == b"digest" and n == 2:
        from storage.digest import dataset_digest
        return b"+%s\r\n" % dataset_digest(srv.ks).hex().encode()
    if sub == b"digest-value":
        from storage.digest import value_digest
        db = c.db
        out = [b"*%d\r\n" % (n - 2)]
        for key in argv[2:]:
            v = _raw_lookup(db, key)
            d = value_digest(v, key in db.expires) if v is not None else bytes(20)
            out.append(b"+%s\r\n" % bytes(d).hex().encode())
        return b"".join(out)
    if sub == b"protocol" and n == 3:
        return _debug_protocol(c, argv[2])
    if sub == b"sleep" and n == 3:
        time.sleep(max(0.0, _atof(argv[2])))
        return OK
    if sub == b"set-active-expire" and n == 3:
        srv.debug.active_expire = bool(_atoi(argv[2]))
        return OK
    if sub == b"quicklist-packed-threshold" and n == 3:
        sz = _memtoull(argv[2])
        if sz is None or sz > (1 << 32) - (1 << 20):
            raise CommandError("ERR argument must be a memory value bigger than 1 and "
                               "smaller than 4gb")
        srv.debug.quicklist_packed_threshold = sz or 1 << 30
        return OK
    if sub == b"set-skip-checksum-validation" and n == 3:
        from storage import rdb
        rdb.checksum_validation = not _atoi(argv[2])
        return OK
    if sub == b"aof-flush-sleep" and n == 3:
        srv.debug.aof_flush_sleep = _atoi(argv[2])
        if srv.aof is not None:
            srv.aof.flush_sleep_us = srv.debug.aof_flush_sleep
        return OK
    if sub == b"replicate" and n >= 3:
        repl = srv.replication
        if repl.backlog is not None:   # no backlog: no replicas
            repl.feed(-1, list(argv[2:]))
        return OK
    if sub == b"error" and n == 3:
        return b"-" + argv[2].replace(b"\r", b" ").replace(b"\n", b" ") + b"\r\n"
    if sub == b"structsize" and n == 2:
        s = b"bits:64 robj:16 dictentry:24 sdshdr5:1 sdshdr8:3 sdshdr16:5 sdshdr32:9 sdshdr64:17 "
        return b"$%d\r\n%s\r\n" % (len(s), s)
    if sub == b"htstats" and n == 3:
        return _debug_htstats(c, argv[2])
    if sub == b"htstats-key" and n == 3:
        return _debug_htstats_key(c, argv[2])
    if sub == b"change-repl-id" and n == 2:
        return _change_repl_id(srv)
    if sub == b"stringmatch-test" and n == 2:
        return _stringmatch_test()
    if sub == b"set-disable-deny-scripts" and n == 3:
        srv.debug.script_disable_deny_script = bool(_atoi(argv[2]))
        return OK
    if sub == b"config-rewrite-force-all" and n == 2:
        from pynode.commands.config import rewrite_config
        path = srv.cfg.config_file
        try:
            if not path:
                raise OSError(14, os.strerror(14))      # EFAULT, as fopen(NULL)
            rewrite_config(srv, path, force_all=True)
        except OSError as e:
            raise CommandError("ERR CONFIG-REWRITE-FORCE-ALL failed: %s"
                               % (e.strerror or e)) from None
        return OK
    if sub == b"client-eviction" and n == 2:
        return _client_eviction(c)
    if sub == b"pause-cron" and n == 3:
        srv.debug.pause_cron = bool(_atoi(argv[2]))
        apply_cluster_debug(srv)
        return OK
    if sub == b"replybuffer" and n == 4:
        what = argv[2].lower()
        if what == b"peak-reset-time":
            v = argv[3].lower()
            if v == b"never":
                srv.debug.reply_buffer_peak_reset_time = -1
            elif v == b"reset":
                srv.debug.reply_buffer_peak_reset_time = 5000
            else:
                srv.debug.reply_buffer_peak_reset_time = parse_int(argv[3])
        elif what == b"resizing":
            srv.debug.reply_buffer_resizing_enabled = bool(_atoi(argv[3]))
        else:
            raise CommandError(SUBCOMMAND_ERROR % _s(argv[1]))
        return OK
    if sub == b"clusterlink" and n == 5 and argv[2].lower() == b"kill":
        return _debug_clusterlink_kill(c, argv)
    raise CommandError(SUBCOMMAND_ERROR % _s(argv[1]))
