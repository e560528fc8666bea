"""Client-side caching: key tracking and invalidation, as Redis 7.0's tracking.c.

`srv.tracking` holds the server-wide state:

- the tracking table: key -> ids of the clients that read it with tracking on
  (default mode), bounded by tracking-table-max-keys (random keys evicted with
  an invalidation, as trackingLimitUsedSlots);
- the prefix table of BCAST clients: prefix -> (keys modified since the last
  broadcast, with the client that modified each last; subscribed clients);
- invalidations for the client whose command is running, held until that
  command's reply is written (7.0's tracking_pending_keys).

A client's own state is `c.tracking`, a ClientTracking (None when tracking was
never on or was turned off and no invalidation is still owed to it).

Cost when nobody tracks: the keyspace's write paths test `db.tracked` (None
until the first CLIENT TRACKING ON, and again once the table, the prefixes and
the tracking clients are all gone); Server.execute tests `c.tracking`.

Invalidations reach a client as a RESP3 push `>2 invalidate [keys]` (`_`, or
`$-1` for a RESP2 tracking client, after a flush), or, with REDIRECT to a
RESP2 client in pub/sub mode, as a message on `__redis__:invalidate`; a
redirect whose client is gone makes a RESP3 tracking client receive
`tracking-redir-broken <id>`.
"""

from __future__ import annotations

import random

from pynode.keyspecs import command_keys

CHANNEL = b"__redis__:invalidate"
# EVAL_RO / FCALL_RO are read-only but remember nothing themselves: the
# commands their scripts run remember the script's declared keys
_SCRIPT_RO = frozenset(("eval_ro", "evalsha_ro", "fcall_ro"))


class ClientTracking:
    """One client's CLIENT TRACKING state (Redis's CLIENT_TRACKING_* flags)."""

    __slots__ = ("on", "redirect", "bcast", "optin", "optout", "noloop", "caching",
                 "broken", "prefixes")

    def __init__(self) -> None:
        self.on = True
        self.redirect = 0
        self.bcast = False
        self.optin = False
        self.optout = False
        self.noloop = False
        self.caching = False          # CLIENT CACHING given for the next command
        self.broken = False           # the redirect client is gone
        self.prefixes: set[bytes] = set()


class Bcast:
    """bcastState: keys modified since the last broadcast (key -> the client
    that modified it last, or None) and the clients subscribed to the prefix."""

    __slots__ = ("keys", "clients")

    def __init__(self) -> None:
        self.keys: dict[bytes, object] = {}
        self.clients: dict = {}


def _bulk(b: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(b), b)


class Tracking:
    def __init__(self, srv) -> None:
        self.srv = srv
        self.clients = 0                        # tracking_clients
        self.table: dict[bytes, set[int]] = {}  # key -> client ids
        self.keys: list[bytes] = []             # the table's keys, for random eviction
        self.pos: dict[bytes, int] = {}         # key -> index in self.keys
        self.items = 0                          # ids stored across the table
        self.prefixes: dict[bytes, Bcast] = {}
        self.max_keys = 1000000                 # tracking-table-max-keys
        self.pending: list = []                 # (client, key or None) owed after a reply
        self.bcast_scheduled = False
        self.hooked = False
        self.timeout_counter = 0

    # ------------------------------------------------------------ hooks
    def hook(self, on: bool) -> None:
        """Install (or remove) the keyspace hooks: every modified key and every
        flush reaches us while anything is tracked."""
        if on == self.hooked:
            return
        self.hooked = on
        ks = self.srv.ks
        ks.set_tracking(self.key_modified if on else None, self.flushed if on else None)

    def maybe_unhook(self) -> None:
        if not self.clients and not self.table and not self.prefixes:
            self.hook(False)

    # ------------------------------------------------------------ CLIENT TRACKING
    def enable(self, c, redirect: int, bcast: bool, optin: bool, optout: bool,
               noloop: bool, prefixes: list[bytes]) -> None:
        """enableTracking: options replace the previous ones, BCAST prefixes add up."""
        t = c.tracking
        if t is None or not t.on:
            if t is None:
                t = c.tracking = ClientTracking()
            t.on = True
            self.clients += 1
        t.broken = t.bcast = t.optin = t.optout = t.noloop = False
        t.redirect = redirect
        self.hook(True)
        if bcast:
            t.bcast = True
            for p in prefixes or [b""]:
                bs = self.prefixes.get(p)
                if bs is None:
                    bs = self.prefixes[p] = Bcast()
                bs.clients[c] = None
                t.prefixes.add(p)
        t.optin, t.optout, t.noloop = optin, optout, noloop

    def disable(self, c) -> None:
        """disableTracking: the client's ids stay in the table (dropped lazily)."""
        t = c.tracking
        if t is None or not t.on:
            return
        for p in t.prefixes:
            bs = self.prefixes.get(p)
            if bs is not None:
                bs.clients.pop(c, None)
                if not bs.clients:
                    del self.prefixes[p]
        t.prefixes = set()
        t.on = False
        t.redirect = 0
        t.bcast = t.optin = t.optout = t.noloop = t.caching = t.broken = False
        self.clients -= 1
        if not self.pending:
            c.tracking = None
        self.maybe_unhook()

    @staticmethod
    def prefix_overlap(t, prefixes: list[bytes]):
        """checkPrefixCollisionsOrReply: (error text or None, keep going).
        Like Redis 7.0, a clash between two new prefixes other than the first
        one replies the error and still enables tracking."""
        for i, p in enumerate(prefixes):
            for old in sorted(t.prefixes) if t is not None else ():
                if old.startswith(p) or p.startswith(old):
                    return ("ERR Prefix '%s' overlaps with an existing prefix '%s'. "
                            "Prefixes for a single client must not overlap."
                            % (_txt(p), _txt(old))), False
            for q in prefixes[i + 1:]:
                if q.startswith(p) or p.startswith(q):
                    return ("ERR Prefix '%s' overlaps with another provided prefix '%s'. "
                            "Prefixes for a single client must not overlap."
                            % (_txt(p), _txt(q))), i != 0
        return None, True

    # ------------------------------------------------------------ remembering
    def after_command(self, c, cmd, argv, r):
        """After a top-level command of a client with tracking state: remember
        the keys a read-only command read, forget CLIENT CACHING, keep the
        table in its bound, then append the invalidations owed to c."""
        t = c.tracking
        if t.on:
            if cmd.readonly and not t.bcast and cmd.name not in _SCRIPT_RO:
                self.remember(c, t, cmd, argv)
            if t.caching and not c.in_multi and not cmd.name.startswith("client|"):
                t.caching = False
            if self.max_keys and len(self.table) > self.max_keys:
                self.limit()
        if not self.pending:
            if not t.on:
                c.tracking = None
            return r
        out = self.drain(c)
        if not t.on:
            c.tracking = None
        if not out:
            return r
        if r is None or (c.special and c.reply_mode):
            c.write(out)            # the reply is dropped (CLIENT REPLY) or comes later
            return r
        return r + out

    def remember_queued(self, c, cmd, argv) -> None:
        """A read-only command run inside MULTI (c) or by a script (c is the
        script's client: the caller remembers the script's declared keys)."""
        if c.script:
            ctx = self.srv.scripting.ctx
            if ctx is None or not ctx.argv:
                return
            c = ctx.caller
            t = c.tracking
            if t is None or not t.on or t.bcast:
                return
            argv = ctx.argv
            cmd = self.srv.table.get(argv[0].lower())
            if cmd is None:
                return
        else:
            t = c.tracking
            if not t.on or t.bcast or cmd.name in _SCRIPT_RO:
                return
        self.remember(c, t, cmd, argv)

    def remember(self, c, t, cmd, argv) -> None:
        """trackingRememberKeys."""
        if (t.optin and not t.caching) or (t.optout and t.caching):
            return
        table = self.table
        cid = c.id
        for i, _flags in command_keys(cmd, argv):
            key = argv[i]
            ids = table.get(key)
            if ids is None:
                ids = table[key] = set()
                self.pos[key] = len(self.keys)
                self.keys.append(key)
            if cid not in ids:
                ids.add(cid)
                self.items += 1

    def _drop(self, key: bytes) -> set[int]:
        ids = self.table.pop(key)
        self.items -= len(ids)
        keys = self.keys
        i = self.pos.pop(key)
        last = keys.pop()
        if last is not key and i < len(keys):
            keys[i] = last
            self.pos[last] = i
        return ids

    def limit(self) -> None:
        """trackingLimitUsedSlots: evict random keys (each one invalidated for
        its clients) until the table is back within tracking-table-max-keys."""
        effort = 100 * (self.timeout_counter + 1)
        while effort > 0 and self.table:
            effort -= 1
            key = self.keys[random.randrange(len(self.keys))]
            self.invalidate(key, None, False)
            if len(self.table) <= self.max_keys:
                self.timeout_counter = 0
                return
        self.timeout_counter += 1

    # ------------------------------------------------------------ invalidation
    def key_modified(self, key: bytes, by_command: bool = True) -> None:
        """signalModifiedKey reached the tracking side (keyspace hook).
        by_command False: expiry (Redis passes no client)."""
        writer = None
        if by_command and self.srv.scripting.ctx is None:
            writer = True           # the running client (checked by `out` below)
        self.invalidate(key, writer, True)

    def invalidate(self, key: bytes, writer, bcast: bool) -> None:
        """trackingInvalidateKey(Raw). `writer`: not None when a client's
        command (not a script, not expiry) made the change; BCAST's NOLOOP
        looks at it, the default mode's NOLOOP at the running client (as
        Redis 7.0 compares with server.current_client)."""
        if bcast and self.prefixes:
            self.remember_bcast(key, writer)
        ids = self.table.get(key)
        if ids is None:
            return
        clients = self.srv.clients
        for cid in ids:
            target = clients.get(cid)
            if target is None:
                continue
            t = target.tracking
            if t is None or not t.on or t.bcast:
                continue
            running = target.out is not None
            if t.noloop and running:
                continue            # NOLOOP: changed while its own command ran
            if running:
                self.pending.append((target, key))
            else:
                self.send(target, key)
        self._drop(key)
        if not self.table:
            self.maybe_unhook()

    def flushed(self) -> None:
        """trackingInvalidateKeysOnFlush: every tracking client is told that
        all its keys are invalid (a null), and the table is emptied."""
        if self.clients:
            for c in list(self.srv.clients.values()):
                t = c.tracking
                if t is not None and t.on:
                    if c.out is not None:
                        self.pending.append((c, None))
                    else:
                        self.send(c, None)
        self.table = {}
        self.keys = []
        self.pos = {}
        self.items = 0
        self.maybe_unhook()

    def drain(self, c) -> bytes:
        """The invalidations owed to c (the client whose command just ran),
        as bytes to follow its reply; messages redirected elsewhere are sent."""
        pending, self.pending = self.pending, []
        out = []
        for target, key in pending:
            if target is not c:
                continue            # its client went away meanwhile
            msg = self.message(c, key)
            if msg is None:
                continue
            dest, data = msg
            if dest is c:
                out.append(data)
            else:
                dest.write(data)
        return b"".join(out)

    def send(self, c, key, proto: bytes | None = None) -> None:
        msg = self.message(c, key, proto)
        if msg is not None:
            msg[0].write(msg[1])

    def message(self, c, key, proto: bytes | None = None):
        """sendTrackingMessage: (client to write to, bytes) or None. `key`:
        one key, or None for a flush (a null as c's protocol writes it);
        `proto`: an already encoded array of keys (BCAST)."""
        t = c.tracking
        dest = c
        redirected = False
        if t is not None and t.redirect:
            dest = self.srv.clients.get(t.redirect)
            if dest is None:
                t.broken = True
                if c.resp > 2:
                    return c, b">2\r\n$21\r\ntracking-redir-broken\r\n:%d\r\n" % t.redirect
                return None
            redirected = True
        if dest.resp > 2:
            head = b">2\r\n$10\r\ninvalidate\r\n"
        elif redirected and (dest.subs or dest.psubs or getattr(dest, "ssubs", None)):
            head = b"*3\r\n$7\r\nmessage\r\n$20\r\n" + CHANNEL + b"\r\n"
        else:
            return None
        if proto is not None:
            body = proto
        elif key is None:
            body = b"_\r\n" if c.resp > 2 else b"$-1\r\n"
        else:
            body = b"*1\r\n" + _bulk(key)
        return dest, head + body

    # ------------------------------------------------------------ BCAST
    def remember_bcast(self, key: bytes, writer) -> None:
        """trackingRememberKeyToBroadcast: the key joins every matching prefix;
        the broadcast goes out once the loop has run what was ready."""
        for p, bs in self.prefixes.items():
            if key.startswith(p) and key not in bs.keys:
                bs.keys[key] = self.running(bs) if writer is not None else None
                if not self.bcast_scheduled:
                    self.bcast_scheduled = True
                    loop = self.srv.loop
                    if loop is not None:
                        loop.call_soon(self.broadcast)
                    else:                   # in-process use: no loop to wait for
                        self.broadcast()

    @staticmethod
    def running(bs: Bcast):
        """The prefix's NOLOOP client whose command is running (its `out` is
        being filled), if the change is its own; None otherwise."""
        for c in bs.clients:
            if c.out is not None and c.tracking.noloop:
                return c
        return None

    def broadcast(self) -> None:
        """trackingBroadcastInvalidationMessages (Redis's beforeSleep)."""
        self.bcast_scheduled = False
        if not self.clients:
            for bs in self.prefixes.values():
                bs.keys = {}
            return
        for p in sorted(self.prefixes):
            bs = self.prefixes[p]
            if not bs.keys:
                continue
            keys = sorted(bs.keys)
            proto = b"*%d\r\n" % len(keys) + b"".join(_bulk(k) for k in keys)
            for c in list(bs.clients):
                t = c.tracking
                if t is not None and t.noloop:
                    mine = [k for k in keys if bs.keys[k] is not c]
                    if not mine:
                        continue
                    self.send(c, None, b"*%d\r\n" % len(mine)
                              + b"".join(_bulk(k) for k in mine))
                else:
                    self.send(c, None, proto)
            bs.keys = {}

    # ------------------------------------------------------------ introspection
    def info_flags(self, c) -> str:
        """CLIENT LIST flags: t (tracking), R (broken redirect), B (BCAST)."""
        t = c.tracking
        if t is None or not t.on:
            return ""
        return "t" + ("R" if t.broken else "") + ("B" if t.bcast else "")


def _txt(b: bytes) -> str:
    """A prefix inside an error text (%s: stops at a NUL; CR/LF become spaces)."""
    return b.split(b"\0", 1)[0].decode("utf-8", "replace").replace("\r", " ").replace("\n", " ")
