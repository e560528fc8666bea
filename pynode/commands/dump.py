"""DUMP, RESTORE, RESTORE-ASKING and MIGRATE (Redis 7.0's cluster.c).

The payload format lives in storage/dump.py.  MIGRATE talks to the target
with a blocking socket and a timeout while the event loop waits, exactly as
Redis's migrateCommand does: the source deletes a key only after the target
has answered +OK to its RESTORE, so at every instant a client can observe the
key is on the source or on the target (it is briefly on both, and the
importing target serves it only to ASKING clients).  A timeout or a dropped
target leaves the key on the source and answers -IOERR.  Connections to
targets are cached for 10 s, as Redis's migrate socket cache.
"""

from __future__ import annotations

import random
import socket
import time
from binascii import crc_hqx
from itertools import islice

from gossip import outgoing
from pynode import evict, notify
from pynode.commands import SYNTAX, CommandError, command, parse_int
from pynode.commands import lookup_read
from pynode.resp import OK
from storage import dump as dumpfmt
from storage.slots import keyslot

BUSYKEY = "BUSYKEY Target key name already exists."
CACHE_TTL_S = 10            # MIGRATE_SOCKET_CACHE_TTL
CACHE_ITEMS = 64            # MIGRATE_SOCKET_CACHE_ITEMS
LLONG_MAX = 9223372036854775807


# ------------------------------------------------------------------ DUMP / RESTORE
@command("dump")
def dump(c, argv):
    v = lookup_read(c, argv[1])
    if v is None:
        return c.nil
    payload = dumpfmt.dumps(v)
    return b"$%d\r\n%s\r\n" % (len(payload), payload)


def restore_batch(c, cmds: list, i: int, slot: int) -> int:
    """RESTORE's common case for a run of commands (the RESTORE-ASKINGs of
    a MIGRATE's batch, in one read): from cmds[i], the commands of the same
    name without TTL or option, of new keys of `slot` (the run's first key's,
    which the dispatcher routed), whose payloads load, are stored in one
    keyspace call, which checks each key is new as it stores it.  Returns
    the index after them (i: none); the dispatcher books each as a call
    answered +OK.  The command that ends the run (a
    key that exists or came earlier in the run, another slot, a payload
    that does not load, ...) is left to restore() for its reply; so are
    runs when keyspace events or blocked clients could see the keys one by
    one."""
    srv = c.srv
    db = c.db
    if srv.notify_flags or db.blocking_keys:
        return i
    name = cmds[i][0]
    keys = []
    payloads = []
    prefix = None       # a hash-tagged key's text up to its tag's end: same slot
    for argv in islice(cmds, i, None):
        if len(argv) != 4 or argv[0] != name or argv[2] != b"0":
            break
        key = argv[1]
        if 123 in key:
            if prefix is None or not key.startswith(prefix):
                s = key.find(b"{")
                e = key.find(b"}", s + 1)
                if e > s + 1:
                    if crc_hqx(key[s + 1:e], 0) & 16383 != slot:
                        break
                    prefix = key[:e + 1]
                elif keyslot(key) != slot:
                    break
        elif crc_hqx(key, 0) & 16383 != slot:
            break
        keys.append(key)
        payloads.append(argv[3])
    values = dumpfmt.loads_run(payloads)
    # stored while new: a key that exists (or came earlier in the run) ends it
    stored = db.add_keys(slot, keys, values) if values else 0
    srv.dirty += stored
    return i + stored


@command("restore", "restore-asking", batch=restore_batch)
def restore(c, argv):
    n = len(argv)
    if n == 4 and argv[2] == b"0":
        # the common case (MIGRATE of a key without TTL): no options, no expiry
        db = c.db
        key = argv[1]
        if db.get(key) is not None:
            raise CommandError(BUSYKEY)
        try:
            value = dumpfmt.loads(argv[3])
        except dumpfmt.DumpError as e:
            raise CommandError(str(e)) from None
        db.set(key, value)
        srv = c.srv
        srv.dirty += 1
        if srv.notify_flags:
            notify.notify(srv, notify.GENERIC, b"restore", key, db.id)
        return OK
    replace = absttl = False
    idle = freq = -1
    j = 4
    while j < n:
        opt = argv[j].lower()
        more = n - j - 1
        if opt == b"replace":
            replace = True
        elif opt == b"absttl":
            absttl = True
        elif opt == b"idletime" and more >= 1 and freq == -1:
            idle = parse_int(argv[j + 1])
            if idle < 0:
                raise CommandError("ERR Invalid IDLETIME value, must be >= 0")
            j += 1
        elif opt == b"freq" and more >= 1 and idle == -1:
            freq = parse_int(argv[j + 1])
            if freq < 0 or freq > 255:
                raise CommandError("ERR Invalid FREQ value, must be >= 0 and <= 255")
            j += 1
        else:
            raise CommandError(SYNTAX)
        j += 1
    db = c.db
    key = argv[1]
    srv = c.srv
    if not replace and db.get(key) is not None:
        raise CommandError(BUSYKEY)
    ttl = parse_int(argv[2])
    if ttl < 0:
        raise CommandError("ERR Invalid TTL value, must be >= 0")
    try:
        value = dumpfmt.loads(argv[3])
    except dumpfmt.DumpError as e:
        raise CommandError(str(e)) from None
    deleted = db.delete(key) if replace else False
    if ttl and not absttl:
        ttl += srv.ks.now
    if ttl and ttl <= srv.ks.now and not srv.loading and srv.replication.masterhost is None:
        # already expired: nothing to create (a replaced key is deleted)
        if deleted:
            srv.dirty += 1
            c.rewrite = [[b"UNLINK" if srv.cfg.bool("lazyfree-lazy-server-del") else b"DEL",
                          key]]
            notify.notify(srv, notify.GENERIC, b"del", key, db.id)
        return OK
    db.set(key, value)
    if idle >= 0 or freq >= 0:
        evict.set_lru_or_lfu(srv, db, key, freq, idle)
    if ttl:
        db.set_expire(key, ttl)
        if not absttl:
            c.rewrite = [argv[:2] + [b"%d" % ttl] + argv[3:] + [b"ABSTTL"]]
    srv.dirty += 1
    notify.notify(srv, notify.GENERIC, b"restore", key, db.id)
    return OK


# ------------------------------------------------------------------ MIGRATE
class _Target:
    """A cached connection to a MIGRATE target."""

    __slots__ = ("sock", "last_dbid", "last_use", "buf")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.last_dbid = -1
        self.last_use = time.monotonic()
        self.buf = bytearray()

    def read_lines(self, n: int, deadline: float, lines: list) -> None:
        """Append n reply lines (without CRLF) to `lines` as they arrive;
        raises OSError / TimeoutError, `lines` then holding those read."""
        while True:
            buf = self.buf
            if b"\r\n" in buf:
                parts = bytes(buf).split(b"\r\n")
                rest = parts.pop()              # after the last CRLF: a partial line
                want = n - len(lines)
                if len(parts) > want:          # (more than asked: kept for later)
                    rest = b"\r\n".join(parts[want:] + [rest])
                    del parts[want:]
                lines += parts
                self.buf = bytearray(rest)
            if len(lines) >= n:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("connection closed by the target")
            self.buf += data
            if len(self.buf) > 1 << 20 and b"\r\n" not in self.buf:
                raise ConnectionError("reply line too long")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _cache(srv) -> dict:
    return srv.migrate_cache


def close_idle_targets(srv) -> None:
    """migrateCloseTimedoutSockets: drop connections idle for more than 10 s."""
    cache = srv.migrate_cache
    if not cache:
        return
    now = time.monotonic()
    for name, t in list(cache.items()):
        if now - t.last_use > CACHE_TTL_S:
            t.close()
            del cache[name]


def _get_target(srv, host: bytes, port: bytes, timeout_ms: int) -> _Target:
    cache = _cache(srv)
    name = (host, port)
    t = cache.get(name)
    if t is not None:
        t.last_use = time.monotonic()
        return t
    if len(cache) >= CACHE_ITEMS:
        victim = random.choice(list(cache))
        cache.pop(victim).close()
    try:
        addr = (host.decode("utf-8", "replace"), int(port))
        src = srv.cfg.source_addr()
        sock = outgoing.connect(addr, src, timeout_ms / 1000.0)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if srv.tls is not None and srv.cfg.bool("tls-cluster"):
            # as Redis: MIGRATE speaks TLS to the target when the cluster does
            sock = srv.tls.client.wrap_socket(sock)
    except ConnectionRefusedError:
        # Redis connects without blocking and waits for the socket to be
        # writable, which a refused connection is: its first write fails
        raise CommandError("IOERR error or timeout writing to target instance") from None
    except (OSError, ValueError):
        raise CommandError("IOERR error or timeout connecting to the client") from None
    t = cache[name] = _Target(sock)
    return t


def _close_target(srv, host: bytes, port: bytes) -> None:
    t = _cache(srv).pop((host, port), None)
    if t is not None:
        t.close()


def _bulk(a: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(a), a)


def _restored(sent: list, lines: list, heads: int) -> tuple[list, str | None]:
    """The keys the target stored and the first error it replied, from the
    lines read: `heads` replies (AUTH, SELECT) then one a key, as far as
    they came.  An error to AUTH or SELECT fails every key whose reply
    came; each key's own reply counts otherwise (migrateCommand)."""
    replies = lines[heads:]
    if not replies:
        return [], None
    bad = next((line for line in lines[:heads] if line[:1] == b"-"), None)
    if bad is None:
        if replies.count(b"+OK") == len(replies):
            return sent[:len(replies)], None      # the common case: all stored
        acked = [key for key, line in zip(sent, replies) if line[:1] != b"-"]
        if len(acked) == len(replies):
            return acked, None
        bad = next(line for line in replies if line[:1] == b"-")
    else:
        acked = []
    return acked, bad[1:].decode("utf-8", "replace")


@command("migrate")
def migrate(c, argv):
    copy = replace = False
    username = password = None
    first_key, num_keys = 3, 1
    n = len(argv)
    j = 6
    while j < n:
        opt = argv[j].lower()
        more = n - 1 - j
        if opt == b"copy":
            copy = True
        elif opt == b"replace":
            replace = True
        elif opt == b"auth":
            if not more:
                raise CommandError(SYNTAX)
            j += 1
            password = argv[j]
        elif opt == b"auth2":
            if more < 2:
                raise CommandError(SYNTAX)
            username, password = argv[j + 1], argv[j + 2]
            j += 2
        elif opt == b"keys":
            if argv[3]:
                raise CommandError("ERR When using MIGRATE KEYS option, the key argument "
                                   "must be set to the empty string")
            first_key = j + 1
            num_keys = n - j - 1
            break
        else:
            raise CommandError(SYNTAX)
        j += 1
    timeout = parse_int(argv[5])
    dbid = parse_int(argv[4])
    if timeout <= 0:
        timeout = 1000
    db = c.db
    keys = argv[first_key:first_key + num_keys]
    # lookupKeyRead of each key, without touching their clocks (see below)
    found = [(key, v) for key, v in zip(keys, db.peek_keys(keys)) if v is not None]
    stats = c.srv.stats
    stats.keyspace_hits += len(found)
    if len(found) < len(keys):
        stats.keyspace_misses += len(keys) - len(found)
        if c.srv.notify_flags:
            there = dict(found)
            for key in keys:
                if key not in there:
                    notify.key_miss(c.srv, key, db.id)
            there = None
    if not found:
        return b"+NOKEY\r\n"
    moved: list[bytes] = []
    try:
        return _migrate_found(c, argv[1], argv[2], dbid, timeout, copy, replace, username,
                              password, found, moved)
    finally:
        if len(moved) < len(found):
            # lookupKeyRead's access, given to the keys that stay (COPY, a
            # refused key, an error) once known: a moved key needs none
            gone = set(moved)
            for key, _ in found:
                if key not in gone:
                    db.get(key)


def _migrate_found(c, host: bytes, port: bytes, dbid: int, timeout: int, copy: bool,
                   replace: bool, username, password, found: list, moved: list):
    """MIGRATE's moves of the keys found; the keys it deleted go to `moved`."""
    srv = c.srv
    db = c.db
    restore_name = b"RESTORE-ASKING" if srv.cluster is not None else b"RESTORE"
    may_retry = True
    while True:
        t = _get_target(srv, host, port, timeout)
        out = []
        if password is not None:
            out.append(b"*3\r\n$4\r\nAUTH\r\n" + _bulk(username) + _bulk(password)
                       if username is not None else b"*2\r\n$4\r\nAUTH\r\n" + _bulk(password))
        select = t.last_dbid != dbid
        if select:
            out.append(b"*2\r\n$6\r\nSELECT\r\n" + _bulk(b"%d" % dbid))
        now = srv.ks.now
        sent = []
        expires = db.expires
        payloads = dumpfmt.dumps_run([v for _, v in found])
        head = b"*%d\r\n%s" % (5 if replace else 4, _bulk(restore_name))
        tail = b"$7\r\nREPLACE\r\n" if replace else b""
        for key, payload in zip([key for key, _ in found], payloads):
            when = expires.get(key) if expires else None
            if when is None:
                ttl = b"$1\r\n0\r\n"
            else:
                left = when - now
                if left < 0:
                    continue          # expired since the lookup
                ttl = _bulk(b"%d" % max(left, 1))
            out.append(b"%s$%d\r\n%s\r\n%s$%d\r\n%s\r\n%s" % (
                head, len(key), key, ttl, len(payload), payload, tail))
            sent.append(key)
        deadline = time.monotonic() + timeout / 1000.0
        write_error = False
        heads = (password is not None) + select
        lines: list[bytes] = []
        socket_error = timed_out = False
        try:
            t.sock.settimeout(timeout / 1000.0)
            try:
                t.sock.sendall(b"".join(out))
            except OSError:
                write_error = True
                raise
            t.read_lines(heads + len(sent), deadline, lines)
        except (OSError, TimeoutError) as e:
            socket_error = True
            timed_out = isinstance(e, (TimeoutError, socket.timeout))
        acked, errored = _restored(sent, lines, heads)
        if errored is not None:
            t.last_dbid = -1
        if socket_error:
            _close_target(srv, host, port)
            if not acked and errored is None and may_retry and not timed_out:
                may_retry = False
                continue              # a stale cached connection: reconnect once
        break
    if not copy and acked:
        moved += acked
        # a deleted value must be held by its slot dict alone for
        # lazyfree-lazy-server-del to free it in pieces: keep only the keys
        found[:] = [(key, None) for key, _ in found]
        db.delete_keys(acked)
        if srv.notify_flags:
            for key in acked:
                notify.notify(srv, notify.GENERIC, b"del", key, db.id)
        srv.dirty += len(acked)
        c.rewrite = [[b"DEL"] + acked]
    if errored is not None:
        raise CommandError("ERR Target instance replied with error: %s" % errored)
    if socket_error:
        raise CommandError("IOERR error or timeout %s to target instance"
                           % ("writing" if write_error else "reading"))
    t.last_dbid = dbid
    t.last_use = time.monotonic()
    return OK
