"""The command table: every command's handler plus Redis 7.0's metadata.

A handler is `fn(client, argv) -> bytes | None`: the encoded reply, or None
when the reply is sent later (or not at all).  It raises CommandError for an
error reply.  Arity, flags and key positions come from command_meta, so they
are exactly what Redis 7.0 reports.
"""

from __future__ import annotations

import importlib

from pynode.command_meta import COMMANDS as META, CommandMeta


class CommandError(Exception):
    """An error reply; the message starts with its code (ERR, WRONGTYPE, ...)."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg


WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
SYNTAX = "ERR syntax error"
NOT_INT = "ERR value is not an integer or out of range"
NOT_FLOAT = "ERR value is not a valid float"


class Command:
    __slots__ = ("name", "handler", "meta", "arity", "flags", "write", "readonly",
                 "denyoom", "admin", "noauth", "pubsub", "loading", "stale",
                 "nomulti", "noscript", "fast", "may_replicate", "skip_monitor",
                 "skip_slowlog", "blocking", "movablekeys", "first_key", "last_key",
                 "step", "subs", "parent", "calls", "ns", "rejected", "failed",
                 "bname", "key_pos", "asking", "flags_of", "views", "lat", "hidden",
                 "batch")

    def __init__(self, name: str, handler, meta: CommandMeta) -> None:
        self.name = name                      # "get" or "client|list"
        self.bname = name.encode()
        self.handler = handler
        self.meta = meta
        self.arity = meta.arity
        f = set(meta.flags)
        self.flags = f
        self.write = "write" in f
        self.readonly = "readonly" in f
        self.denyoom = "denyoom" in f
        self.admin = "admin" in f
        self.noauth = "no_auth" in f
        self.pubsub = "pubsub" in f
        self.loading = "loading" in f
        self.stale = "stale" in f
        self.nomulti = "no_multi" in f
        self.noscript = "noscript" in f
        self.fast = "fast" in f
        self.may_replicate = "may_replicate" in f
        self.skip_monitor = "skip_monitor" in f
        self.skip_slowlog = "skip_slowlog" in f
        self.blocking = "blocking" in f
        self.movablekeys = "movablekeys" in f
        self.asking = "asking" in f            # RESTORE-ASKING: served while importing
        self.first_key = meta.first_key
        self.last_key = meta.last_key
        self.step = meta.step
        # the position of the only key, for commands with exactly one fixed key
        self.key_pos = (self.first_key if self.first_key > 0 and self.last_key == self.first_key
                        and not self.movablekeys else 0)
        # EVAL/FCALL: fn(srv, cmd, argv) -> the command as its script's flags
        # make it (write, denyoom, stale) for routing, READONLY and OOM checks
        self.flags_of = None
        # fn(c, cmds, i, slot) -> j: runs cmds[i:j], a run of this command
        # that all succeed (replies +OK), in one call (Server.execute_fast)
        self.batch = None
        self.views: dict | None = None
        self.subs: dict[bytes, Command] | None = None
        # subcommands newer than Redis 7.0 (CLUSTER MIGRATESLOTS ...): dispatched,
        # but not in `subs`, so COMMAND COUNT/LIST/INFO/DOCS stay Redis 7.0's
        self.hidden: dict[bytes, Command] | None = None
        self.parent: Command | None = None
        self.calls = 0
        self.ns = 0              # the calls' total duration in nanoseconds
        self.rejected = 0
        self.failed = 0
        self.lat: list = []      # call durations (ns) not yet in the latency histogram

    def view(self, write: bool, denyoom: bool, stale: bool) -> "Command":
        """This command with other write/denyoom/stale flags (a script's own
        flags decide them for EVAL and FCALL); stats stay on the original."""
        key = (write, denyoom, stale)
        if self.views is None:
            self.views = {}
        v = self.views.get(key)
        if v is None:
            v = Command(self.name, self.handler, self.meta)
            v.write, v.denyoom, v.stale = write, denyoom, stale
            v.readonly = not write
            self.views[key] = v
        return v

    def keys(self, argv: list[bytes]) -> list[bytes]:
        """The key arguments by the legacy first/last/step triple."""
        if self.first_key <= 0:
            return []
        last = self.last_key
        if last < 0:
            last = len(argv) + last
        return argv[self.first_key:last + 1:self.step]


# name (bytes, lowercase) -> handler, filled by the @command decorators
_HANDLERS: dict[str, object] = {}
# name -> function(argv) -> key list, for commands with movable keys
KEY_FINDERS: dict[str, object] = {}
# name -> fn(srv, cmd, argv) -> Command: flags that depend on the arguments
FLAGS_OF: dict[str, object] = {}
# name -> a run of the command in one call (Command.batch)
BATCHES: dict[str, object] = {}
# "parent|sub" -> (handler, arity, flags) of subcommands Redis 7.0 lacks
_HIDDEN: dict[str, tuple] = {}


def _modules() -> list[str]:
    """Every module of this package: a command group registers itself by
    existing here (one module per group), so adding a group edits no list."""
    import pkgutil
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.ispkg)


def command(*names: str, keys=None, batch=None):
    """Register a handler for one or more command names ("get", "client|list")."""

    def deco(fn):
        for n in names:
            if n not in META:
                raise KeyError("no Redis metadata for command %r" % n)
            _HANDLERS[n] = fn
            if keys is not None:
                KEY_FINDERS[n] = keys
            if batch is not None:
                BATCHES[n] = batch
        return fn

    return deco


def hidden_command(name: str, arity: int, flags: tuple = ("admin", "stale")):
    """Register a subcommand ("cluster|migrateslots") that Redis 7.0 does not
    have: the dispatcher runs it, COMMAND does not list it (its metadata is the
    container's, with its own name, arity and flags)."""

    def deco(fn):
        _HIDDEN[name] = (fn, arity, tuple(flags))
        return fn

    return deco


def build_table() -> dict[bytes, Command]:
    """Import every command module and return name -> Command (lowercase bytes)."""
    for m in _modules():
        importlib.import_module("pynode.commands." + m)
    table: dict[bytes, Command] = {}
    for name, fn in _HANDLERS.items():
        if "|" in name:
            continue
        cmd = table[name.encode()] = Command(name, fn, META[name])
        cmd.flags_of = FLAGS_OF.get(name)
        cmd.batch = BATCHES.get(name)
    for name, fn in _HANDLERS.items():
        if "|" not in name:
            continue
        parent_name, sub = name.split("|", 1)
        parent = table.get(parent_name.encode())
        if parent is None:
            parent = table[parent_name.encode()] = Command(parent_name, None, META[parent_name])
        if parent.subs is None:
            parent.subs = {}
        cmd = Command(name, fn, META[name])
        cmd.parent = parent
        parent.subs[sub.encode()] = cmd
    import dataclasses
    for name, (fn, arity, flags) in _HIDDEN.items():
        parent_name, sub = name.split("|", 1)
        parent = table[parent_name.encode()]
        meta = dataclasses.replace(META[parent_name], name=name, arity=arity, flags=flags,
                                   subcommands=())
        cmd = Command(name, fn, meta)
        cmd.parent = parent
        if parent.hidden is None:
            parent.hidden = {}
        parent.hidden[sub.encode()] = cmd
    return table


def all_commands(table: dict[bytes, Command]):
    for cmd in table.values():
        yield cmd
        if cmd.subs:
            yield from cmd.subs.values()


def lookup_read(c, key: bytes, kind=None, touch: bool = True, miss_event: bool = True):
    """lookupKeyRead (+ checkType when `kind` is a value class): the value or
    None, counting keyspace hits and misses; a miss is a keymiss event.
    touch=False is LOOKUP_NOTOUCH, miss_event=False LOOKUP_NONOTIFY."""
    v = c.db.get(key) if touch else c.db.peek(key)
    srv = c.srv
    if v is None:
        srv.stats.keyspace_misses += 1
        if miss_event and srv.notify_flags:
            from pynode import notify
            notify.key_miss(srv, key, c.db.id)
        return None
    srv.stats.keyspace_hits += 1
    if kind is not None and type(v) is not kind:
        raise CommandError(WRONGTYPE)
    return v


def lookup_write(c, key: bytes, kind=None):
    """lookupKeyWrite (+ checkType): the value or None, no hit/miss counting."""
    v = c.db.get(key)
    if v is not None and kind is not None and type(v) is not kind:
        raise CommandError(WRONGTYPE)
    return v


def parse_int(b: bytes, msg: str = NOT_INT) -> int:
    """Parse a Redis integer argument (strict, like string2ll)."""
    try:
        if b and (b[0] in b"-0123456789") and b.lstrip(b"-").isdigit():
            if len(b) > 1 and (b[0] == 48 or b[:2] == b"-0"):
                raise ValueError
            v = int(b)
            if -9223372036854775808 <= v <= 9223372036854775807:
                return v
    except ValueError:
        pass
    raise CommandError(msg)


def parse_float(b: bytes, msg: str = NOT_FLOAT) -> float:
    try:
        s = b.decode("ascii").strip()
        if s != b.decode("ascii") or not s or "_" in s or s.lower() in ("nan", "-nan", "+nan"):
            raise ValueError
        return float(s)
    except (ValueError, UnicodeDecodeError):
        raise CommandError(msg) from None
