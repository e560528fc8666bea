"""Server commands: TIME, LASTSAVE, SAVE, BGSAVE, BGREWRITEAOF, SHUTDOWN, and the
helpers every server command module shares (CLIENT: client.py; CONFIG:
config.py; INFO, COMMAND, SLOWLOG, MONITOR, MEMORY: introspection.py; DEBUG:
debug.py).

Reply shapes and error texts follow Redis 7.0.15 (checked side by side with a
real redis-server).
"""

from __future__ import annotations

import time

from pynode.commands import SYNTAX, CommandError, command
from pynode.resp import OK, Verbatim, bulk, encode, integer


def _help(name: str, lines: list[str]) -> bytes:
    out = ["%s <subcommand> [<arg> [value] [opt] ...]. Subcommands are:" % name]
    out.extend(lines)
    out.extend(["HELP", "    Prints this help."])
    return b"*%d\r\n" % len(out) + b"".join(b"+" + s.encode() + b"\r\n" for s in out)


def _s(b: bytes) -> str:
    return b.decode("utf-8", "replace")


def _verbatim(c, text: str) -> bytes:
    return encode(Verbatim(text.encode("utf-8", "replace")), c.resp)


def _is_local(c) -> bool:
    a = c.addr
    return (a.startswith("127.") or a.startswith("::1") or a.startswith("[::1]")
            or a.startswith("/") or a.startswith("?"))


@command("time")
def time_cmd(c, argv):
    t = time.time()
    s = int(t)
    return b"*2\r\n" + bulk(b"%d" % s) + bulk(b"%d" % int((t - s) * 1e6))


@command("lastsave")
def lastsave(c, argv):
    return integer(c.srv.snapshots.lastsave)


@command("save")
def save(c, argv):
    snap = c.srv.snapshots
    if c.srv.children.kind_is_rdb():
        raise CommandError("ERR Background save already in progress")
    if not snap.save():
        raise CommandError("ERR")
    return OK


@command("bgsave")
def bgsave(c, argv):
    schedule = False
    if len(argv) > 2 or (len(argv) == 2 and argv[1].lower() != b"schedule"):
        raise CommandError(SYNTAX)
    if len(argv) == 2:
        schedule = True
    srv = c.srv
    snap = srv.snapshots
    if srv.children.kind_is_rdb():          # a BGSAVE or a full sync's child
        raise CommandError("ERR Background save already in progress")
    if srv.children.busy() or c.in_multi:
        if schedule or c.in_multi:
            snap.scheduled = True
            return b"+Background saving scheduled\r\n"
        raise CommandError("ERR Another child process is active (AOF?): can't BGSAVE right "
                           "now. Use BGSAVE SCHEDULE in order to schedule a BGSAVE whenever "
                           "possible.")
    if not snap.bgsave():
        raise CommandError("ERR")
    return b"+Background saving started\r\n"


@command("bgrewriteaof")
def bgrewriteaof(c, argv):
    srv = c.srv
    if srv.aof is None:
        srv.make_aof()                # AOF off: the rewrite still writes a base file
    aof = srv.aof
    if aof.rewrite_in_progress:
        raise CommandError("ERR Background append only file rewriting already in progress")
    if srv.children.busy() or c.in_multi:   # runs from the cron when the child is done
        aof.keyspace = srv.ks
        aof.rewrite_scheduled = True
        aof.consecutive_failures = 0
        return b"+Background append only file rewriting scheduled\r\n"
    try:
        started = aof.rewrite(srv.ks)
    except (OSError, ValueError) as e:
        srv.log.warning("Can't rewrite append only file in background: %s" % e)
        raise CommandError("ERR Can't execute an AOF background rewriting. Please check the "
                           "server logs for more information.") from None
    if not started:
        raise CommandError("ERR Background append only file rewriting already in progress")
    return b"+Background append only file rewriting started\r\n"


@command("shutdown")
def shutdown(c, argv):
    nosave = save_ = now = force = abort = failover = False
    for a in argv[1:]:
        a = a.lower()
        if a == b"failover":             # Valkey 9: hand the slots over first
            failover = True
        elif a == b"nosave":
            nosave = True
        elif a == b"save":
            save_ = True
        elif a == b"now":
            now = True
        elif a == b"force":
            force = True
        elif a == b"abort":
            abort = True
        else:
            raise CommandError(SYNTAX)
    if (abort and (nosave or save_ or now or force or failover)) or (nosave and save_):
        raise CommandError(SYNTAX)
    srv = c.srv
    if abort:
        if srv.cluster is not None and srv.cluster.abort_handover():
            for w in srv.shutdown_waiters:
                w.write(b"-ERR Errors trying to SHUTDOWN. Check logs.\r\n")
                w.resume()
            srv.shutdown_waiters.clear()
            return b"+OK\r\n"
        raise CommandError("ERR No shutdown in progress.")

    def failed():
        for w in srv.shutdown_waiters:
            w.write(b"-ERR Errors trying to SHUTDOWN. Check logs.\r\n")
            w.resume()
        srv.shutdown_waiters.clear()
    done = srv.shutdown(force, save=save_, nosave=nosave, failover=failover, on_error=failed)
    if done is None:                     # handing over first: the client waits
        srv.shutdown_waiters.append(c)
        c.paused = True
        return None
    if not done:
        raise CommandError("ERR Errors trying to SHUTDOWN. Check logs.")
    return None
