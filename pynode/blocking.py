"""Clients blocked on keys: BLPOP and friends, BZPOPMIN/MAX, BZMPOP, XREAD and
XREADGROUP with BLOCK (Redis 7.0's blocked.c).

A blocking command first tries to serve itself at once, as in Redis. When it
cannot, its handler calls `srv.blocking.block(...)` and returns None: the
client is parked (`c.blocked`, `c.paused`: later commands of its pipeline
wait) and listed, in arrival order, under each of its keys in
`db.blocking_keys`. Nothing in the keyspace ever awaits.

When a key with waiters is created, overwritten or deleted (Database.set /
delete call `ks.on_key_ready`) or a command signals it (`db.signal_ready(key)`,
e.g. XADD on an existing stream), the key joins the ready list. Right after
the command that made it ready has been propagated (Server.execute, as
Redis's handleClientsBlockedOnKeys after call(); after EXEC for a MULTI),
every waiter of each ready key is offered the key in FIFO order:
`serve(c, key)` returns the reply (it has done the pop, propagated what it
did with srv.propagate and emitted its keyspace events) or None to keep
waiting (missing, wrong type, nothing new for it). Keys made ready while
serving (BLMOVE's push) are offered in a following round. A served client's
held commands run on the next loop iteration.

Unblocking otherwise: the timeout (`timeout_reply`; the event loop's timer,
and `check_timeouts()` from the cron or a test's clock), CLIENT UNBLOCK
(TIMEOUT or ERROR), a disconnect, a role change (-UNBLOCKED ... master ->
replica?, then the connection is closed, as disconnectAllBlockedClients)
and, in cluster mode, a cluster that fails (-CLUSTERDOWN) or a slot that is
no longer served here (-MOVED; checked by the cron as Redis's
clusterRedirectBlockedClientIfNeeded).

Inside MULTI/EXEC (and for the replication stream's master client) blocking
commands never block: their handlers see `may_block(c)` False and answer
at once (each command's null reply).

Timeouts are parsed as getTimeoutFromObjectOrReply: seconds as strtold
reads them (fractions rounded up to whole milliseconds), or integer
milliseconds for XREAD BLOCK (`parse_timeout(b, unit_seconds=False)`).
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from time import perf_counter
from typing import Callable

from pynode.commands import CommandError, parse_int
from storage.slots import keyslot

TIMEOUT_NOT_FLOAT = "ERR timeout is not a float or out of range"
TIMEOUT_NOT_INT = "ERR timeout is not an integer or out of range"
TIMEOUT_NEGATIVE = "ERR timeout is negative"
UNBLOCKED_BY_CLIENT = "UNBLOCKED client unblocked via CLIENT UNBLOCK"
UNBLOCKED_ROLE = ("UNBLOCKED force unblock from blocking operation, instance state "
                  "changed (master -> replica?)")
LLONG_MAX = 9223372036854775807
TIMER_MAX_MS = 1 << 40           # longer timeouts (35 years) arm no timer

# long double (x87, 64-bit mantissa) limits, for strtold's ERANGE rejections
_LDBL_MAX = Decimal("1.18973149535723176502e+4932")
_LDBL_TINY = Decimal("1.8225997659412373012e-4951")   # half the least subnormal

Serve = Callable[[object, bytes], "bytes | None"]


def _seconds(b: bytes):
    """string2ld as Redis's getLongDoubleFromObject uses it: the value (a
    Decimal, or a float for hex and infinities) or None when not a number."""
    if not b or len(b) >= 5120:
        return None
    try:
        s = b.decode("ascii")
    except UnicodeDecodeError:
        return None
    if "_" in s or any(ch.isspace() for ch in s):
        return None
    body = s.lstrip("+-")
    if body[:2] in ("0x", "0X"):
        try:
            return float.fromhex(s)
        except ValueError:
            return None
        except OverflowError:
            return -math.inf if s.startswith("-") else math.inf
    low = body.lower()
    if low in ("inf", "infinity"):
        return -math.inf if s.startswith("-") else math.inf
    if not body or body[0] not in "0123456789.":
        return None                   # nan, letters
    try:
        d = Decimal(s)
    except InvalidOperation:
        return None
    if not d.is_finite():
        return None
    a = abs(d)
    if a > _LDBL_MAX or (a and a < _LDBL_TINY):
        return None                   # strtold's ERANGE (overflow / underflow to 0)
    return d


def parse_timeout(b: bytes, unit_seconds: bool = True) -> int:
    """getTimeoutFromObjectOrReply: the timeout in ms (0 = forever).

    Seconds may be fractional (BLPOP k 0.1, rounded up to whole ms; hex and
    exponents as strtold takes them); milliseconds (XREAD BLOCK) are an
    integer.  Errors are Redis 7.0's texts; a value whose milliseconds do
    not fit in 64 bits is "negative", as the conversion makes it there."""
    if unit_seconds:
        if b.isdigit() and len(b) < 16:
            return int(b) * 1000
        v = _seconds(b)
        if v is None:
            raise CommandError(TIMEOUT_NOT_FLOAT)
        if isinstance(v, float):
            if math.isinf(v):
                raise CommandError(TIMEOUT_NEGATIVE)
            v = Decimal(v)
        ms = v * 1000
        if ms >= 1 << 63 or ms < -(1 << 63):
            raise CommandError(TIMEOUT_NEGATIVE)
        ms = int(ms.to_integral_value(rounding="ROUND_CEILING"))
    else:
        ms = parse_int(b, TIMEOUT_NOT_INT)
    if ms < 0:
        raise CommandError(TIMEOUT_NEGATIVE)
    return ms


class Blocked:
    """What a parked client waits for."""

    __slots__ = ("db", "keys", "serve", "timeout_reply", "timer", "cmd", "deadline", "write")

    def __init__(self, db, keys, serve, timeout_reply, cmd, deadline, write) -> None:
        self.write = write            # a write command (BLPOP) or a read (XREAD)
        self.db = db
        self.keys = keys
        self.serve = serve
        self.timeout_reply = timeout_reply
        self.timer = None
        self.cmd = cmd
        self.deadline = deadline      # absolute ms, 0 = forever


class Blocking:
    def __init__(self, srv) -> None:
        self.srv = srv
        self.ready: dict = {}          # (db, key) -> None, in signal order
        self.clients: set = set()      # every client blocked on keys
        srv.ks.on_key_ready = self.signal

    # ------------------------------------------------------------ blocking
    @staticmethod
    def may_block(c) -> bool:
        """False inside MULTI/EXEC and for the master client: answer at once."""
        return not c.in_multi and "M" not in c.flags_extra and not c.script

    def block(self, c, keys: list[bytes], timeout_ms: int, serve: Serve,
              timeout_reply: bytes, cmd: str = "", write: bool = True):
        """Park c until serve(c, key) answers for one of keys, or timeout_ms
        passes (0: forever); then c gets that answer or timeout_reply (already
        encoded for c's protocol). Returns None, the handler's reply.

        serve runs with c.db set to the database c blocked in; it returns the
        encoded reply (after doing the pop and propagating what it did with
        srv.propagate, and emitting its keyspace events) or None to keep
        waiting.  It is offered each of c's keys that a command created,
        replaced, deleted or signalled (db.signal_ready), in the order the
        clients blocked, right after that command."""
        db = c.db
        now = self.srv.ks.now
        deadline = now + timeout_ms if timeout_ms else 0
        uniq = list(dict.fromkeys(keys))
        b = Blocked(db, uniq, serve, timeout_reply, cmd, deadline, write)
        bk = db.blocking_keys
        for k in uniq:
            w = bk.get(k)
            if w is None:
                w = bk[k] = {}
            w[c] = None
        c.blocked = b
        c.paused = True
        self.clients.add(c)
        loop = self.srv.loop
        if deadline and loop is not None and timeout_ms < TIMER_MAX_MS:
            b.timer = loop.call_later(timeout_ms / 1000.0, self.timed_out, c)
        return None

    def signal(self, db, key: bytes) -> None:
        """key may now serve its waiters (storage calls this for keys in
        db.blocking_keys that are created, replaced or deleted)."""
        if key in db.blocking_keys:
            self.ready[(db, key)] = None

    # ------------------------------------------------------------ serving
    def handle_ready(self) -> None:
        """Offer each ready key to its waiters, in the order they blocked
        (handleClientsBlockedOnKeys).  Keys made ready while serving (the
        push side of BLMOVE) are handled in a following round."""
        srv = self.srv
        while self.ready:
            ready = self.ready
            self.ready = {}
            for db, key in ready:
                waiters = db.blocking_keys.get(key)
                if not waiters:
                    continue
                for c in list(waiters):
                    b = c.blocked
                    if b is None or c not in waiters:
                        continue            # served through another key meanwhile
                    if c.closing:           # killed, not yet gone: serve nobody
                        self.unblock(c, None)
                        continue
                    saved = c.db
                    c.db = b.db
                    t0 = perf_counter()
                    try:
                        r = b.serve(c, key)
                    except CommandError as e:
                        r = srv.error_reply(e.msg)
                    finally:
                        if c.db is b.db:
                            c.db = saved
                    if srv.slot_stats.counting:
                        srv.slot_stats.served(key, r, perf_counter() - t0)
                    if r is not None:
                        self.unblock(c, r)

    def unblock(self, c, reply: bytes | None) -> None:
        """Release c with reply (None: no reply, the client is gone)."""
        b = c.blocked
        if b is None:
            return
        c.blocked = None
        self.clients.discard(c)
        bk = b.db.blocking_keys
        for k in b.keys:
            w = bk.get(k)
            if w is not None:
                w.pop(c, None)
                if not w:
                    del bk[k]
        if b.timer is not None:
            b.timer.cancel()
        if reply is None or c.closing:
            c.paused = False
            return
        c.write(reply)
        loop = self.srv.loop
        if loop is None:
            c.paused = False
            c.pending = []
        else:
            loop.call_soon(self._resume, c)

    def _resume(self, c) -> None:
        """Run what the client pipelined after its blocking command."""
        if c.blocked is None and c.paused and not c.closing:
            c.resume()

    def timed_out(self, c) -> None:
        b = c.blocked
        if b is not None:
            self.unblock(c, b.timeout_reply)

    def check_timeouts(self, now: int | None = None) -> int:
        """Time out every client whose deadline is before now (ms; default
        the keyspace clock).  The event loop's timers normally do this; the
        cron calls it too, and in-process tests drive it with their clock."""
        if now is None:
            now = self.srv.ks.now
        due = [c for c in self.clients
               if c.blocked is not None and c.blocked.deadline and c.blocked.deadline < now]
        for c in due:
            self.timed_out(c)
        return len(due)

    # ------------------------------------------------------------ other exits
    def client_unblock(self, c, error: bool) -> bool:
        """CLIENT UNBLOCK: True if c was blocked on keys."""
        b = c.blocked
        if b is None:
            return False
        if error:
            self.unblock(c, self.srv.error_reply(UNBLOCKED_BY_CLIENT))
        else:
            self.timed_out(c)
        return True

    def on_disconnect(self, c) -> None:
        if c.blocked is not None:
            self.unblock(c, None)

    def unblock_all(self, msg: str = UNBLOCKED_ROLE) -> int:
        """disconnectAllBlockedClients: a primary turned replica; every
        blocked client gets msg and is closed after the reply."""
        n = 0
        for c in list(self.clients):
            self.unblock(c, self.srv.error_reply(msg))
            c.close_after_reply()
            n += 1
        return n

    def check_cluster(self) -> None:
        """clusterRedirectBlockedClientIfNeeded for every blocked client: the
        cluster is down (-CLUSTERDOWN), or the slot of its keys is served
        elsewhere (-MOVED) or nowhere, and is not being imported here."""
        cl = self.srv.cluster
        if cl is None or not self.clients:
            return
        from pynode.routing import DOWN, UNBOUND
        st = cl.state
        me = st.myself
        for c in list(self.clients):
            b = c.blocked
            if b is None or not b.keys:
                continue
            if st.state != "ok":
                self.unblock(c, self.srv.error_reply(DOWN))
                continue
            slot = keyslot(b.keys[0])
            owner = st.slot_owner[slot]
            if c.readonly and me.is_replica and me.primary_id == owner and not b.write:
                owner = me.id             # a READONLY reader of our primary's slot
            if owner != me.id and slot not in st.importing:
                if owner is None:
                    self.unblock(c, self.srv.error_reply(UNBOUND))
                else:
                    n = st.nodes[owner]
                    self.unblock(c, self.srv.error_reply(
                        "MOVED %d %s:%d" % (slot, self.srv.cluster.endpoint(n),
                                            self.srv.cluster.client_port(n, c))))

    def count(self) -> int:
        return len(self.clients)
