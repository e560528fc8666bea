"""The proxy's pure parts, tested without sockets: reply framing (RESP2 and
RESP3), the slot map, a command's routing key, multi-key commands cut per slot
and joined in the client's order, SCAN's composite cursor, redirections."""

from __future__ import annotations

import hiredis

from pynode.command_meta import COMMANDS
from pynode.keyspecs import _InvalidSpec, keys_by_specs
from pynode.resp import unknown_command, unknown_subcommand
from storage.slots import keyslot

# ---------------------------------------------------------------- framing

_LINE = frozenset(b"+-:_,#(")
_BLOB = frozenset(b"$!=")
_AGG = frozenset(b"*~>")
_PAIRS = frozenset(b"%|")


class FrameError(Exception):
    """A node sent bytes that are not RESP."""


def reply_end(buf: bytes, pos: int = 0) -> int:
    """Offset just past the complete reply starting at pos, or -1 if incomplete."""
    n = len(buf)
    need = 1
    find = buf.find
    while need:
        if pos >= n:
            return -1
        nl = find(b"\r\n", pos)
        if nl < 0:
            return -1
        t = buf[pos]
        need -= 1
        if t in _LINE:
            pos = nl + 2
            continue
        try:
            count = int(buf[pos + 1:nl])
        except ValueError:
            raise FrameError("bad length line %r" % buf[pos:nl][:40]) from None
        pos = nl + 2
        if t in _BLOB:
            if count >= 0:
                pos += count + 2
                if pos > n:
                    return -1
        elif t in _AGG:
            if count > 0:
                need += count
        elif t in _PAIRS:
            if count > 0:
                need += 2 * count
            if t == 124:        # an attribute precedes the reply it describes
                need += 1
        else:
            raise FrameError("unknown reply type %r" % chr(t))
    return pos


def elements(buf: bytes) -> list[bytes]:
    """The element frames of one aggregate reply (its header skipped)."""
    nl = buf.find(b"\r\n")
    count = int(buf[1:nl])
    if buf[0] in _PAIRS:
        count *= 2
    out = []
    pos = nl + 2
    for _ in range(max(count, 0)):
        end = reply_end(buf, pos)
        out.append(buf[pos:end])
        pos = end
    return out


def decode(frame: bytes):
    r = hiredis.Reader()
    r.feed(frame)
    return r.gets()


_BULK_HEAD = [b"$%d\r\n" % n for n in range(1024)]   # joined: %-formatting bytes is slower


def cmd_bytes(argv: list[bytes]) -> bytes:
    n = len(argv)
    try:
        if n == 3:
            a, b, c = argv
            h = _BULK_HEAD
            return b"".join((b"*3\r\n", h[len(a)], a, b"\r\n", h[len(b)], b, b"\r\n",
                             h[len(c)], c, b"\r\n"))
        if n == 2:
            a, b = argv
            h = _BULK_HEAD
            return b"".join((b"*2\r\n", h[len(a)], a, b"\r\n", h[len(b)], b, b"\r\n"))
    except IndexError:       # an argument of 1 KiB or more
        pass
    parts = [b"*%d\r\n" % n]
    for a in argv:
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)


def err(text: str) -> bytes:
    return b"-" + text.encode() + b"\r\n"


# ---------------------------------------------------------------- the slot map

class SlotMap:
    """Owner of every slot (address of the primary) and its replicas."""

    def __init__(self) -> None:
        self.primary: list[tuple | None] = [None] * 16384
        self.replicas: list[tuple] = [()] * 16384
        self.epoch = 0          # bumped on every change; lets a split notice

    def load_slots(self, reply, default_host: str) -> None:
        """Replace the map with a decoded CLUSTER SLOTS reply."""
        primary: list[tuple | None] = [None] * 16384
        replicas: list[tuple] = [()] * 16384
        for entry in reply:
            lo, hi = int(entry[0]), int(entry[1])
            addrs = []
            for node in entry[2:]:
                host = node[0].decode() if isinstance(node[0], bytes) else str(node[0])
                if not host or host == "?":
                    host = default_host
                addrs.append((host, int(node[1])))
            if not addrs:
                continue
            reps = tuple(addrs[1:])
            for s in range(lo, hi + 1):
                primary[s] = addrs[0]
                replicas[s] = reps
        self.primary = primary
        self.replicas = replicas
        self.epoch += 1

    def move(self, slot: int, addr: tuple) -> None:
        if self.primary[slot] != addr:
            self.primary[slot] = addr
            self.replicas[slot] = ()
            self.epoch += 1

    def primaries(self) -> list[tuple]:
        """Each primary once, ordered by the first slot it serves."""
        seen: dict = {}
        for a in self.primary:
            if a is not None and a not in seen:
                seen[a] = len(seen)
        return list(seen)

    def shards(self) -> list[int]:
        """The first slot of each primary, in slot order: a command routed by it
        reaches that shard's primary, whoever it is after a failover."""
        seen: set = set()
        out = []
        for slot, a in enumerate(self.primary):
            if a is not None and a not in seen:
                seen.add(a)
                out.append(slot)
        return out

    def covered(self) -> bool:
        return None not in self.primary


# ---------------------------------------------------------------- commands

def first_key(name: str, argv: list[bytes]) -> bytes | None:
    """The first key of a command (its routing key), None for keyless commands."""
    meta = COMMANDS.get(name)
    if meta is None:
        return None
    if meta.subcommands and len(argv) > 1:
        sub = COMMANDS.get(name + "|" + argv[1].decode("latin-1").lower())
        if sub is not None:
            meta = sub
    if "movablekeys" in meta.flags:
        try:
            found = keys_by_specs(meta, argv)
        except (_InvalidSpec, IndexError):
            found = []
        if found:
            return argv[found[0][0]]
    fk = meta.first_key
    if 0 < fk < len(argv):
        return argv[fk]
    return None


CROSSSLOT = "CROSSSLOT Keys in request don't hash to the same slot"


def tx_check(argv: list[bytes]) -> tuple[str | None, int | None]:
    """What a cluster node says to a command queued inside MULTI, checked against
    the command table: (error text or None, the slot of its keys or None)."""
    name = argv[0].decode("latin-1").lower()
    meta = COMMANDS.get(name)
    if meta is None:
        return unknown_command(argv), None
    if meta.subcommands:
        sub = COMMANDS.get(name + "|" + argv[1].decode("latin-1").lower()) \
            if len(argv) > 1 else None
        if sub is None:
            return (unknown_subcommand(argv) if len(argv) > 1 else
                    "ERR wrong number of arguments for '%s' command" % name), None
        meta = sub
    if meta.arity != len(argv) and (meta.arity > 0 or len(argv) < -meta.arity):
        return "ERR wrong number of arguments for '%s' command" % meta.name, None
    if "no_multi" in meta.flags:
        return "ERR Command not allowed inside a transaction", None
    try:
        slots = {keyslot(argv[i]) for i, _ in keys_by_specs(meta, argv)}
    except (_InvalidSpec, IndexError):
        slots = set()
    if len(slots) > 1:
        return CROSSSLOT, None
    return None, (slots.pop() if slots else None)


SPLIT = {b"mget": 1, b"mset": 2, b"del": 1, b"unlink": 1, b"exists": 1, b"touch": 1}


def split(argv: list[bytes], step: int) -> list[tuple[int, list[bytes], list[int]]]:
    """Cut a multi-key command into one command per slot:
    [(slot, sub-argv, positions of its keys in the client's command)]."""
    groups: dict[int, tuple[list[bytes], list[int]]] = {}
    order = []
    for i, idx in enumerate(range(1, len(argv), step)):
        key = argv[idx]
        slot = keyslot(key)
        g = groups.get(slot)
        if g is None:
            g = groups[slot] = ([argv[0]], [])
            order.append(slot)
        g[0].extend(argv[idx:idx + step])
        g[1].append(i)
    return [(s, groups[s][0], groups[s][1]) for s in order]


def join(name: bytes, parts: list[tuple[list[int], bytes]], nkeys: int) -> bytes:
    """The client's reply from the replies of the per-slot commands."""
    for _, r in parts:
        if r[:1] == b"-":
            return r
    if name == b"mget":
        out: list[bytes] = [b""] * nkeys
        for positions, r in parts:
            for p, e in zip(positions, elements(r)):
                out[p] = e
        return b"*%d\r\n" % nkeys + b"".join(out)
    if name == b"mset":
        return b"+OK\r\n"
    return b":%d\r\n" % sum(int(r[1:-2]) for _, r in parts)


def scan_cursor(cursor: bytes) -> tuple[int, int] | None:
    """(shard index, the node's own cursor) from the proxy's cursor."""
    if not cursor.isdigit():
        return None
    c = int(cursor)
    if c >= 1 << 64:
        return None
    return c & 1023, c >> 10


def parse_redirect(frame: bytes):
    """-MOVED 3999 127.0.0.1:6381 -> (3999, ("127.0.0.1", 6381))."""
    try:
        _, slot, hostport = frame[1:-2].split(b" ")
        host, port = hostport.rsplit(b":", 1)
        return int(slot), (host.decode(), int(port))
    except ValueError:
        return None


# ---------------------------------------------------------------- replay

# Writes whose effect is the same run once or twice (the data, not always the
# reply: a count such as DEL's or SADD's is the second run's). Besides these,
# every read-only command and every write whose key specs all overwrite
# ("OW" update: MSET, SETEX, PSETEX) or remove ("RM": DEL, UNLINK) the key.
_REPLAY_WRITES = frozenset(("set", "hset", "hmset", "hdel", "sadd", "srem", "zadd", "zrem",
                            "expireat", "pexpireat", "persist"))
# options that make a replay differ from the first run: SET NX/GET answer from
# what the first run did, ZADD INCR adds again
# (where the options begin, the options); a member named like an option only
# costs the replay
_REPLAY_BAD_OPTS = {"set": (3, frozenset((b"nx", b"get"))), "zadd": (2, frozenset((b"incr",)))}


def _replayable(name: str) -> bool:
    meta = COMMANDS.get(name)
    if meta is None or meta.subcommands or "movablekeys" in meta.flags:
        return False
    if "readonly" in meta.flags:
        return "blocking" not in meta.flags and bool(meta.key_specs)
    if name in _REPLAY_WRITES:
        return True
    if name.startswith("restore"):      # a second run finds the key: BUSYKEY
        return False
    specs = meta.key_specs
    return bool(specs) and all(ks.flags[0] == "RM" or (ks.flags[0] == "OW" and
                                                       "update" in ks.flags)
                               for ks in specs)


REPLAYABLE = frozenset(n for n in COMMANDS if "|" not in n and _replayable(n))


def replay_safe(data: bytes) -> bool:
    """May a command (as sent, RESP bytes) be sent again after a link died with
    it in flight, when it may or may not have run?"""
    r = hiredis.Reader()
    r.feed(data)
    argv = r.gets()
    if not isinstance(argv, list) or not argv:
        return False
    name = argv[0].decode("latin-1").lower()
    if name not in REPLAYABLE:
        return False
    bad = _REPLAY_BAD_OPTS.get(name)
    return bad is None or not any(a.lower() in bad[1] for a in argv[bad[0]:])


MULTI = cmd_bytes([b"MULTI"])
EXEC = cmd_bytes([b"EXEC"])
ASKING = cmd_bytes([b"ASKING"])
SLOTS_CMD = cmd_bytes([b"CLUSTER", b"SLOTS"])
NO_MAP = "CLUSTERDOWN The proxy has no slot map of the cluster yet"
REDIRECTS = (b"-MOVED ", b"-ASK ", b"-TRYAGAIN", b"-CLUSTERDOWN", b"-READONLY",
              b"-MASTERDOWN", b"-LOADING")
