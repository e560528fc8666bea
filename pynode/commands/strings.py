"""String commands."""

from __future__ import annotations

from pynode.commands import WRONGTYPE, CommandError, command
from pynode.resp import OK


@command("get")
def get(c, argv):
    v = c.db.get(argv[1])
    if v is None:
        c.srv.stat_keyspace_misses += 1
        return c.nil
    if type(v) is not bytes:
        raise CommandError(WRONGTYPE)
    c.srv.stat_keyspace_hits += 1
    return b"$%d\r\n%s\r\n" % (len(v), v)


@command("set")
def set_(c, argv):
    if len(argv) == 3:
        c.db.set(argv[1], argv[2])
        c.srv.dirty += 1
        return OK
    raise CommandError("ERR syntax error")
