"""What the server tells about itself: INFO, COMMAND, SLOWLOG, MONITOR, MEMORY.

Reply shapes and error texts follow Redis 7.0.15 (checked side by side with a
real redis-server).
"""

from __future__ import annotations

import sys

from pynode import info as infomod
from pynode.command_meta import COMMANDS as META
from pynode.commands import SYNTAX, CommandError, command, parse_int
from pynode.commands.server import _help, _s, _verbatim
from pynode.keyspecs import command_keys, has_keys
from pynode.resp import OK, Double, Map, SetReply, Status, encode, integer
from storage import values as valuemod
from storage.glob import match as glob_match
from storage.slots import keyslot


# ====================================================================== INFO
@command("info")
def info_cmd(c, argv):
    text = infomod.build(c.srv, [_s(a) for a in argv[1:]])
    return _verbatim(c, text)


# ====================================================================== COMMAND
COMMAND_HELP = [
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full Redis command.",
    "GETKEYSANDFLAGS <full-command>",
    "    Return the keys and the access flags from a full Redis command.",
]


def _spec_map(spec) -> Map:
    bs = spec.begin_search
    if bs[0] == "index":
        b = Map({b"type": b"index", b"spec": Map({b"index": bs[1]})})
    elif bs[0] == "keyword":
        b = Map({b"type": b"keyword",
                 b"spec": Map({b"keyword": bs[1].encode(), b"startfrom": bs[2]})})
    else:
        b = Map({b"type": b"unknown", b"spec": Map()})
    fk = spec.find_keys
    if fk[0] == "range":
        f = Map({b"type": b"range",
                 b"spec": Map({b"lastkey": fk[1], b"keystep": fk[2], b"limit": fk[3]})})
    elif fk[0] == "keynum":
        f = Map({b"type": b"keynum",
                 b"spec": Map({b"keynumidx": fk[1], b"firstkey": fk[2], b"keystep": fk[3]})})
    else:
        f = Map({b"type": b"unknown", b"spec": Map()})
    m = Map()
    if spec.notes:
        m[b"notes"] = spec.notes.encode()
    m[b"flags"] = SetReply([Status(x) for x in spec.flags])
    m[b"begin_search"] = b
    m[b"find_keys"] = f
    return m


def command_info_reply(meta, subs=None) -> list:
    """COMMAND INFO's 10-element array for one command (a Python value for encode)."""
    if subs:
        sub = [command_info_reply(META[s]) for s in subs]
    else:
        sub = SetReply()
    return [meta.name.encode(), meta.arity, SetReply([Status(f) for f in meta.flags]),
            meta.first_key, meta.last_key, meta.step,
            SetReply([Status(a) for a in meta.acl_categories]),
            SetReply([t.encode() for t in meta.tips]),
            SetReply([_spec_map(s) for s in meta.key_specs]), sub]


def _arg_map(a: dict) -> Map:
    m = Map()
    m[b"name"] = a["name"].encode()
    m[b"type"] = a["type"].encode()
    if "key_spec_index" in a:
        m[b"key_spec_index"] = a["key_spec_index"]
    if "token" in a:
        m[b"token"] = a["token"].encode()
    if "summary" in a:
        m[b"summary"] = a["summary"].encode()
    if "since" in a:
        m[b"since"] = a["since"].encode()
    if "deprecated_since" in a:
        m[b"deprecated_since"] = a["deprecated_since"].encode()
    if a.get("flags"):
        m[b"flags"] = SetReply([Status(f) for f in a["flags"]])
    if "arguments" in a:
        m[b"arguments"] = [_arg_map(x) for x in a["arguments"]]
    return m


def command_docs_reply(meta, subs=None) -> Map:
    m = Map()
    if meta.summary:
        m[b"summary"] = meta.summary.encode()
    if meta.since:
        m[b"since"] = meta.since.encode()
    m[b"group"] = meta.group.encode()
    if meta.complexity:
        m[b"complexity"] = meta.complexity.encode()
    if meta.doc_flags:
        m[b"doc_flags"] = SetReply([Status(f) for f in meta.doc_flags])
    if meta.deprecated_since:
        m[b"deprecated_since"] = meta.deprecated_since.encode()
    if meta.replaced_by:
        m[b"replaced_by"] = meta.replaced_by.encode()
    if meta.history:
        m[b"history"] = SetReply([[v.encode(), t.encode()] for v, t in meta.history])
    if meta.arguments:
        m[b"arguments"] = [_arg_map(a) for a in meta.arguments]
    if subs is not None:
        m[b"subcommands"] = Map((s.encode(), command_docs_reply(META[s])) for s in subs)
    return m


def _subs_of(cmd) -> list[str] | None:
    """Implemented subcommands of a container, in Redis's metadata order."""
    if not cmd.subs:
        return None
    have = {s.name for s in cmd.subs.values()}
    order = [s for s in cmd.meta.subcommands if s in have]
    order.extend(sorted(have - set(order)))
    return order


def _lookup(srv, name: bytes):
    cmd = srv.table.get(name.lower())
    if cmd is not None:
        return cmd
    if b"|" in name:
        parent, sub = name.lower().split(b"|", 1)
        p = srv.table.get(parent)
        if p is not None and p.subs:
            return p.subs.get(sub)
    return None


@command("command")
def command_cmd(c, argv):
    if len(argv) > 1:
        raise CommandError("ERR unknown subcommand '%s'. Try COMMAND HELP."
                           % _s(argv[1])[:128])
    srv = c.srv
    return encode([command_info_reply(cmd.meta, _subs_of(cmd)) for cmd in srv.table.values()],
                  c.resp)


@command("command|help")
def command_help(c, argv):
    return _help("COMMAND", COMMAND_HELP)


@command("command|count")
def command_count(c, argv):
    return integer(len(c.srv.table))


@command("command|info")
def command_info(c, argv):
    srv = c.srv
    if len(argv) == 2:
        return command_cmd(c, argv[:1])
    out = []
    for name in argv[2:]:
        cmd = _lookup(srv, name)
        out.append(None if cmd is None else command_info_reply(cmd.meta, _subs_of(cmd)))
    return encode(out, c.resp)


@command("command|docs")
def command_docs(c, argv):
    srv = c.srv
    out = Map()
    if len(argv) == 2:
        for cmd in srv.table.values():
            out[cmd.name.encode()] = command_docs_reply(cmd.meta, _subs_of(cmd))
    else:
        for name in argv[2:]:
            cmd = _lookup(srv, name)
            if cmd is not None:
                out[cmd.name.encode()] = command_docs_reply(cmd.meta, _subs_of(cmd))
    return encode(out, c.resp)


@command("command|list")
def command_list(c, argv):
    srv = c.srv
    names = []
    for cmd in srv.table.values():
        names.append(cmd.name)
        if cmd.subs:
            names.extend(_subs_of(cmd))
    if len(argv) == 2:
        pass
    elif len(argv) == 5 and argv[2].lower() == b"filterby":
        kind = argv[3].lower()
        val = argv[4]
        if kind == b"module":
            names = []
        elif kind == b"aclcat":
            cat = "@" + _s(val).lower()
            names = [n for n in names if cat in META[n].acl_categories]
        elif kind == b"pattern":
            names = [n for n in names if glob_match(val, n.encode(), nocase=True)]
        else:
            raise CommandError(SYNTAX)
    else:
        raise CommandError(SYNTAX)
    return encode([n.encode() for n in names], c.resp)


def _getkeys(c, argv, with_flags: bool):
    srv = c.srv
    args = argv[2:]
    cmd = srv.table.get(args[0].lower())
    if cmd is not None and cmd.subs is not None and len(args) > 1:
        cmd = cmd.subs.get(args[1].lower())
    if cmd is None or cmd.handler is None:
        raise CommandError("ERR Invalid command specified")
    if not has_keys(cmd):
        raise CommandError("ERR The command has no key arguments")
    arity = cmd.arity
    if (arity > 0 and arity != len(args)) or len(args) < -arity:
        raise CommandError("ERR Invalid number of arguments specified for command")
    keys = command_keys(cmd, args)
    if not keys:
        if "no_mandatory_keys" in cmd.flags:
            return encode([], c.resp)
        raise CommandError("ERR Invalid arguments specified for command")
    if with_flags:
        return encode([[args[i], SetReply([Status(f) for f in fl])] for i, fl in keys],
                      c.resp)
    return encode([args[i] for i, _ in keys], c.resp)


@command("command|getkeys")
def command_getkeys(c, argv):
    return _getkeys(c, argv, False)


@command("command|getkeysandflags")
def command_getkeysandflags(c, argv):
    return _getkeys(c, argv, True)




# ====================================================================== SLOWLOG
SLOWLOG_HELP = [
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
]


@command("slowlog|help")
def slowlog_help(c, argv):
    return _help("SLOWLOG", SLOWLOG_HELP)


@command("slowlog|get")
def slowlog_get(c, argv):
    srv = c.srv
    count = 10
    if len(argv) == 3:
        try:
            count = parse_int(argv[2])
        except CommandError:
            count = -2
        if count < -1:
            raise CommandError("ERR count should be greater than or equal to -1")
        if count == -1:
            count = len(srv.slowlog)
    elif len(argv) > 3:
        raise CommandError(SYNTAX)
    out = []
    for i, e in enumerate(srv.slowlog):
        if i >= count:
            break
        out.append([e[0], e[1], e[2], list(e[3]), e[4], e[5]])
    return encode(out, c.resp)


@command("slowlog|len")
def slowlog_len(c, argv):
    return integer(len(c.srv.slowlog))


@command("slowlog|reset")
def slowlog_reset(c, argv):
    c.srv.slowlog.clear()
    return OK


# ====================================================================== MONITOR
@command("monitor")
def monitor(c, argv):
    if c.monitor:
        return None
    srv = c.srv
    c.monitor = True
    srv.monitors.append(c)
    c.update_special()
    return OK


# ====================================================================== MEMORY
MEMORY_HELP = [
    "DOCTOR",
    "    Return memory problems reports.",
    "MALLOC-STATS",
    "    Return internal statistics report from the memory allocator.",
    "PURGE",
    "    Attempt to purge dirty pages for reclamation by the allocator.",
    "STATS",
    "    Return information about the memory usage of the server.",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
]

@command("memory|help")
def memory_help(c, argv):
    return _help("MEMORY", MEMORY_HELP)


@command("memory|usage")
def memory_usage(c, argv):
    samples = 5
    i = 3
    while i < len(argv):
        if argv[i].lower() == b"samples" and i + 1 < len(argv):
            samples = parse_int(argv[i + 1])
            if samples < 0:
                raise CommandError(SYNTAX)
            i += 2
        else:
            raise CommandError(SYNTAX)
    key = argv[2]
    db = c.db
    v = db.slots[keyslot(key)].get(key)   # dictFind: no expiry check, no access
    if v is None:
        return c.nil
    size = valuemod.memory_usage(key, v, samples)
    if key in db.expires:
        size += valuemod.EXPIRE_ENTRY
    return integer(size)


def _memory_overview(srv) -> dict:
    m = infomod._memory(srv)
    return m


@command("memory|stats")
def memory_stats(c, argv):
    srv = c.srv
    m = _memory_overview(srv)
    used = m["used_memory"]
    startup = m["used_memory_startup"]
    out = Map()
    out[b"peak.allocated"] = m["used_memory_peak"]
    out[b"total.allocated"] = used
    out[b"startup.allocated"] = startup
    out[b"replication.backlog"] = 0
    out[b"clients.slaves"] = 0
    out[b"clients.normal"] = m["mem_clients_normal"]
    out[b"cluster.links"] = 0
    out[b"aof.buffer"] = m["mem_aof_buffer"]
    out[b"lua.caches"] = 0
    out[b"functions.caches"] = 0
    keys = 0
    for db in srv.ks.dbs:
        if db is None:
            continue
        size = db.size()
        if not size:
            continue
        keys += size
        main = sum(sys.getsizeof(d) for d in db.slots if d)
        out[b"db.%d" % db.id] = Map({b"overhead.hashtable.main": main,
                                     b"overhead.hashtable.expires":
                                         sys.getsizeof(db.expires) if db.expires else 0,
                                     b"overhead.hashtable.slot-to-keys": 0})
    overhead = m["used_memory_overhead"]
    dataset = m["used_memory_dataset"]
    net = used - startup
    out[b"overhead.total"] = overhead
    out[b"keys.count"] = keys
    out[b"keys.bytes-per-key"] = net // keys if keys else 0
    out[b"dataset.bytes"] = dataset
    out[b"dataset.percentage"] = Double(dataset * 100.0 / net if net > 0 else 0.0)
    peak = m["used_memory_peak"]
    out[b"peak.percentage"] = Double(used * 100.0 / peak if peak else 100.0)
    out[b"allocator.allocated"] = m["allocator_allocated"]
    out[b"allocator.active"] = m["allocator_active"]
    out[b"allocator.resident"] = m["allocator_resident"]
    out[b"allocator-fragmentation.ratio"] = Double(float(m["allocator_frag_ratio"]))
    out[b"allocator-fragmentation.bytes"] = m["allocator_frag_bytes"]
    out[b"allocator-rss.ratio"] = Double(float(m["allocator_rss_ratio"]))
    out[b"allocator-rss.bytes"] = m["allocator_rss_bytes"]
    out[b"rss-overhead.ratio"] = Double(1.0)
    out[b"rss-overhead.bytes"] = 0
    out[b"fragmentation"] = Double(float(m["mem_fragmentation_ratio"]))
    out[b"fragmentation.bytes"] = m["mem_fragmentation_bytes"]
    return encode(out, c.resp)


@command("memory|doctor")
def memory_doctor(c, argv):
    srv = c.srv
    m = _memory_overview(srv)
    used = m["used_memory"]
    if used < 5 * 1024 * 1024:
        text = ("Hi Sam, this instance is empty or is using very little memory, my issues "
                "detector can't be used in these conditions. Please, leave for your mission "
                "on Earth and fill it with some data. The new Sam and I will be back to our "
                "programming as soon as I finished rebooting.\n")
        return _verbatim(c, text)
    issues = []
    if m["used_memory_peak"] / used > 1.5:
        issues.append(
            " * Peak memory: In the past this instance used more than 150% the memory that "
            "is currently using. The allocator is normally not able to release memory after "
            "a peak, so you can expect to see a big fragmentation ratio, however this is "
            "actually harmless and is only due to the memory peak, and if the Redis instance "
            "Resident Set Size (RSS) is currently bigger than expected, the memory will be "
            "used as soon as you fill the Redis instance with more data. If the memory peak "
            "was only occasional and you want to try to reclaim memory, please try the MEMORY "
            "PURGE command, otherwise the only other option is to shutdown and restart the "
            "instance.\n\n")
    if float(m["mem_fragmentation_ratio"]) > 1.4 and m["mem_fragmentation_bytes"] > 10 << 20:
        issues.append(
            " * High total RSS: This instance has a memory fragmentation and RSS overhead "
            "greater than 1.4 (this means that the Resident Set Size of the Redis process is "
            "much larger than the sum of the logical allocations Redis performed). This "
            "problem is usually due either to a large peak memory (check if there is a peak "
            "memory entry above in the report) or may result from a workload that causes the "
            "allocator to fragment memory a lot. If the problem is a large peak memory, then "
            "there is no issue. Otherwise, make sure you are using the Jemalloc allocator and "
            "not the default libc malloc. Note: The currently used allocator is \"libc\".\n\n")
    if not issues:
        text = ("Hi Sam, I can't find any memory issue in your instance. I can only account "
                "for what occurs on this base.\n")
    else:
        text = ("Sam, I detected a few issues in this Redis instance memory implants:\n\n"
                + "".join(issues)
                + "I'm here to keep you safe, Sam. I want to help you.\n")
    return _verbatim(c, text)


@command("memory|malloc-stats")
def memory_malloc_stats(c, argv):
    return _verbatim(c, "Stats not supported for the current allocator")


@command("memory|purge")
def memory_purge(c, argv):
    try:
        import ctypes
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
    return OK
