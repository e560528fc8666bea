"""Replication commands: REPLCONF, PSYNC, SYNC, WAIT, ROLE, REPLICAOF / SLAVEOF.

The work is done by pynode/replication.py (srv.replication); these handlers
parse arguments and produce Redis 7.0's replies and errors.
"""

from __future__ import annotations

from pynode.commands import CommandError, command, parse_int
from pynode.resp import OK, encode


@command("replconf")
def replconf(c, argv):
    return c.srv.replication.replconf(c, argv)


@command("psync")
def psync(c, argv):
    return c.srv.replication.psync(c, argv[1], argv[2])


@command("sync")
def sync(c, argv):
    return c.srv.replication.psync(c, None, None)


@command("wait")
def wait(c, argv):
    repl = c.srv.replication
    if repl.masterhost is not None:
        raise CommandError("ERR WAIT cannot be used with replica instances. Please also note "
                           "that since Redis 4.0 if a replica is configured to be writable "
                           "(which is not the default) writes to replicas are just local and "
                           "are not propagated.")
    numreplicas = parse_int(argv[1])
    timeout = parse_int(argv[2], "ERR timeout is not an integer or out of range")
    if timeout < 0:
        raise CommandError("ERR timeout is negative")
    return repl.wait(c, numreplicas, timeout)


@command("role")
def role(c, argv):
    return encode(c.srv.replication.role(), c.resp)


@command("replicaof", "slaveof")
def replicaof(c, argv):
    srv = c.srv
    if srv.cluster is not None:
        raise CommandError("ERR REPLICAOF not allowed in cluster mode.")
    repl = srv.replication
    from pynode.commands.server import client_line
    if argv[1].lower() == b"no" and argv[2].lower() == b"one":
        if repl.masterhost is not None:
            repl.become_primary()
            srv.log.notice("MASTER MODE enabled (user request from '%s')"
                           % client_line(c, c))
        return OK
    if "S" in c.flags_extra:
        raise CommandError("ERR Command is not valid when client is a replica.")
    try:
        port = parse_int(argv[2])
    except CommandError:
        port = -1
    if port < 0 or port > 65535:
        raise CommandError("ERR Invalid master port")
    host = argv[1].decode("utf-8", "replace")
    if not repl.become_replica(host, port):
        srv.log.notice("REPLICAOF would result into synchronization with the master we are "
                       "already connected with. No operation performed.")
        return b"+OK Already connected to specified master\r\n"
    srv.log.notice("REPLICAOF %s:%d enabled (user request from '%s')"
                   % (host, port, client_line(c, c)))
    return OK
