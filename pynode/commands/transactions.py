"""Transactions: MULTI EXEC DISCARD WATCH UNWATCH, as Redis 7.0's multi.c.

Queuing happens in Server.special_checks: while `c.in_multi`, every command
but EXEC/DISCARD/MULTI/WATCH/QUIT/RESET is appended to `c.queued` as
(Command, argv) and answered +QUEUED; a rejected one (unknown command, arity,
no_multi) sets `c.multi_error`, and EXEC then fails with EXECABORT.

While EXEC runs the queued commands `c.in_multi` is still True (Redis keeps
CLIENT_MULTI, plus DENY_BLOCKING, until the end): a handler that sees
`c.in_multi` is running inside EXEC and must reply at once (never block,
never return None).

WATCH: each watched key is a WatchedKey registered in `db.watched[key]`
(the keyspace sets its `watch_touched` when the key changes) and listed in
`c.watched` as (db, key, WatchedKey).  A key already logically expired when
WATCHed is remembered as such: deleting it is no change (Redis 7.0).

Propagation: the writes of an EXEC are collected in `srv.also_propagate` and
sent to the AOF at the end, wrapped in MULTI ... EXEC when there is more
than one (Redis 7.0's propagatePendingCommands: a single write is atomic).
"""

from __future__ import annotations

from pynode.commands.acl import exec_denied
from pynode.commands import CommandError, command
from pynode.resp import NIL3, NILARR2, OK
from storage.slots import keyslot

EXECABORT = "EXECABORT Transaction discarded because of previous errors."


class WatchedKey:
    """One key WATCHed by one client (Redis's watchedKey)."""

    __slots__ = ("client", "db", "key", "expired")

    def __init__(self, client, db, key: bytes) -> None:
        self.client = client
        self.db = db
        self.key = key
        # already logically expired when WATCHed (keyIsExpired)
        self.expired = db.is_expired(key)

    @property
    def watch_touched(self) -> bool:
        return self.client.watch_touched

    @watch_touched.setter
    def watch_touched(self, value: bool) -> None:
        """The keyspace signals a change of the key (touchWatchedKey)."""
        if not value:
            return
        if self.expired:
            db, key = self.db, self.key
            if key not in db.slots[keyslot(key)]:
                # the stale key was deleted (lazily or actively): no logical change
                self.expired = False
                return
            if db.is_expired(key):
                return
            self.expired = False
        self.client.watch_touched = True

    def __repr__(self) -> str:
        return "WatchedKey(%r, db=%d, expired=%s)" % (self.key, self.db.id, self.expired)


def _watched_key_expired(c) -> bool:
    """isWatchedKeyExpired(): a key live at WATCH time is expired now."""
    for db, key, wk in c.watched:
        if not wk.expired and db.is_expired(key):
            return True
    return False


@command("multi")
def multi(c, argv):
    if c.in_multi:
        raise CommandError("ERR MULTI calls can not be nested")
    c.in_multi = True
    c.queued = []
    c.multi_error = False
    c.update_special()
    return OK


@command("discard")
def discard(c, argv):
    if not c.in_multi:
        raise CommandError("ERR DISCARD without MULTI")
    c.srv.discard_transaction(c)
    return OK


@command("exec")
def exec_(c, argv):
    if not c.in_multi:
        raise CommandError("ERR EXEC without MULTI")
    if c.multi_error:
        c.srv.discard_transaction(c)
        raise CommandError(EXECABORT)
    if c.watch_touched or (c.watched and _watched_key_expired(c)):
        c.srv.discard_transaction(c)
        return NIL3 if c.resp == 3 else NILARR2
    srv = c.srv
    queued = c.queued
    if c.watched:
        srv.unwatch(c)          # unwatch ASAP: our own writes must not touch us
    replies = []
    ops = []
    srv.collect_propagation(ops)
    run = srv.run_queued
    try:
        for cmd, qargv in queued:
            err = exec_denied(srv, c, cmd, qargv)
            r = run(c, cmd, qargv) if err is None else srv.error_reply(err)
            # every command inside EXEC must reply; keep the array well formed
            replies.append(r if r is not None else c.nil)
    finally:
        srv.collect_propagation(None)
        c.srv.discard_transaction(c)
    if ops:
        srv.propagate_ops(ops)
    return b"*%d\r\n" % len(queued) + b"".join(replies)


@command("watch")
def watch(c, argv):
    if c.in_multi:
        raise CommandError("ERR WATCH inside MULTI is not allowed")
    if c.watch_touched:
        return OK               # already dirty: no point in watching more
    db = c.db
    watched = c.watched
    seen = {(d.id, k) for d, k, _ in watched}
    for key in argv[1:]:
        if (db.id, key) in seen:
            continue
        seen.add((db.id, key))
        wk = WatchedKey(c, db, key)
        ws = db.watched.get(key)
        if ws is None:
            ws = db.watched[key] = set()
        ws.add(wk)
        watched.append((db, key, wk))
    return OK


@command("unwatch")
def unwatch(c, argv):
    c.srv.unwatch(c)
    return OK
