"""Keyspace notifications (notify-keyspace-events), as Redis's notify.c.

A command that changes a key calls

    notify(srv, HASH, b"hset", key, dbid)

after the change. When the class is enabled, the event is published on
`__keyspace@<db>__:<key>` (message: the event) for K and on
`__keyevent@<db>__:<event>` (message: the key) for E, to this node's
subscribers only (Redis does not send keyspace events over the cluster bus).
`srv.notify_flags` is 0 when nothing is enabled, so callers on hot paths can
test it before building anything.

Who emits what (as Redis 7.0):
- a command, after its change, with its own event name (t_string.c: set,
  expire after a SET with a TTL, setrange, append, incrby, incrbyfloat;
  bitops.c: setbit, set/del from BITOP; db.c/expire.c: del, rename_from and
  rename_to, copy_to, move_from and move_to, expire, persist; PFADD/PFMERGE:
  pfadd; the value-type modules their own: hset, lpush, zadd, xadd ...);
- a read miss, where the keyspace_misses stat is counted (lookupKeyRead,
  not the NONOTIFY lookups of OBJECT): keymiss (`key_miss` below);
- the server itself: expired (Server.on_key_expired, lazy and active
  expiry, SCAN and RANDOMKEY included), new (Server.on_key_new, reported by
  the keyspace when a key is created: the keyspace turns that hook on only
  while the 'n' class is enabled), evicted (pynode/evict.py).
The 'n' class is kept even when CONFIG GET does not show it (Redis prints
"AKE" for "KEAn"): `parse_flags(value, new)`.
"""

from __future__ import annotations

KEYSPACE = 1 << 0     # K
KEYEVENT = 1 << 1     # E
GENERIC = 1 << 2      # g
STRING = 1 << 3       # $
LIST = 1 << 4         # l
SET = 1 << 5          # s
HASH = 1 << 6         # h
ZSET = 1 << 7         # z
EXPIRED = 1 << 8      # x
EVICTED = 1 << 9      # e
STREAM = 1 << 10      # t
KEY_MISS = 1 << 11    # m
MODULE = 1 << 13      # d
NEW = 1 << 14         # n

_CLASS = {"K": KEYSPACE, "E": KEYEVENT, "g": GENERIC, "$": STRING, "l": LIST, "s": SET,
          "h": HASH, "z": ZSET, "x": EXPIRED, "e": EVICTED, "t": STREAM, "m": KEY_MISS,
          "d": MODULE, "n": NEW}
ALL = GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE


def parse_flags(value: str, new: bool = False) -> int:
    """The bit set of a (normalized) notify-keyspace-events value; `new`:
    the 'n' class was given (CONFIG GET hides it next to 'A')."""
    flags = NEW if new else 0
    for ch in value:
        if ch == "A":
            flags |= ALL
        else:
            flags |= _CLASS.get(ch, 0)
    return flags


publish_message = None          # pynode.commands.pubsub.publish_message, on first use


def notify(srv, type_: int, event: bytes, key: bytes, dbid: int) -> None:
    """notifyKeyspaceEvent(type, event, key, dbid)."""
    flags = srv.notify_flags
    if not flags & type_ or not (srv.pubsub.channels or srv.pubsub.patterns):
        return                  # class off, or nobody subscribed to anything
    global publish_message
    if publish_message is None:
        from pynode.commands.pubsub import publish_message
    if flags & KEYSPACE:
        publish_message(srv, b"__keyspace@%d__:%s" % (dbid, key), event)
    if flags & KEYEVENT:
        publish_message(srv, b"__keyevent@%d__:%s" % (dbid, event), key)


def key_miss(srv, key: bytes, dbid: int) -> None:
    """A read lookup found nothing (callers test srv.notify_flags first)."""
    notify(srv, KEY_MISS, b"keymiss", key, dbid)
