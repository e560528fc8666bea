"""Replication commands: REPLCONF, PSYNC, SYNC, WAIT, ROLE, REPLICAOF / SLAVEOF,
FAILOVER.

The work is done by pynode/replication.py (srv.replication); these handlers
parse arguments and produce Redis 7.0's replies and errors.
"""

from __future__ import annotations

from pynode.commands import SYNTAX, CommandError, command, parse_int
from pynode.resp import OK, encode


@command("replconf")
def replconf(c, argv):
    return c.srv.replication.replconf(c, argv)


@command("psync")
def psync(c, argv):
    failover = len(argv) > 3 and argv[3].lower() == b"failover"
    return c.srv.replication.psync(c, argv[1], argv[2], failover)


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
    from pynode.commands.client import client_line
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


@command("failover")
def failover(c, argv):
    """FAILOVER [TO host port [FORCE]] [ABORT] [TIMEOUT ms]: checks and
    errors as Redis 7.0's failoverCommand; the work is Replication's."""
    srv = c.srv
    if srv.cluster is not None:
        raise CommandError("ERR FAILOVER not allowed in cluster mode.")
    repl = srv.replication
    from pynode.replication import NO_FAILOVER
    if len(argv) == 2 and argv[1].lower() == b"abort":
        if repl.failover_state == NO_FAILOVER:
            raise CommandError("ERR No failover in progress.")
        repl.abort_failover("Failover manually aborted")
        return OK
    timeout = 0
    force = False
    host = None
    port = 0
    j = 1
    n = len(argv)
    while j < n:
        opt = argv[j].lower()
        if opt == b"timeout" and j + 1 < n and timeout == 0:
            timeout = parse_int(argv[j + 1])
            if timeout <= 0:
                raise CommandError("ERR FAILOVER timeout must be greater than 0")
            j += 2
        elif opt == b"to" and j + 2 < n and host is None:
            port = parse_int(argv[j + 2])
            host = argv[j + 1].decode("utf-8", "replace")
            j += 3
        elif opt == b"force" and not force:
            force = True
            j += 1
        else:
            raise CommandError(SYNTAX)
    if repl.failover_state != NO_FAILOVER:
        raise CommandError("ERR FAILOVER already in progress.")
    if repl.masterhost is not None:
        raise CommandError("ERR FAILOVER is not valid when server is a replica.")
    if not repl.live_replicas():
        raise CommandError("ERR FAILOVER requires connected replicas.")
    if force and (not timeout or host is None):
        raise CommandError("ERR FAILOVER with force option requires both a timeout and "
                           "target HOST and IP.")
    if host is not None:
        r = repl.find_replica(host, port)
        if r is None:
            raise CommandError("ERR FAILOVER target HOST and PORT is not a replica.")
        from pynode.replication import ONLINE
        if r.state != ONLINE:
            raise CommandError("ERR FAILOVER target replica is not online.")
    repl.start_failover(host, port, timeout, force)
    return OK
