"""Atomic slot migration commands (pynode/migration.py does the work).

Valkey 9.0: CLUSTER MIGRATESLOTS, GETSLOTMIGRATIONS, CANCELSLOTMIGRATIONS (on the
source). Redis 8.4: CLUSTER MIGRATION IMPORT|STATUS|CANCEL (on the target).
CLUSTER SYNCSLOTS is the link between the two nodes. Redis 7.0 has none of
them, so they are hidden subcommands: dispatched, never listed by COMMAND.
"""

from __future__ import annotations

import asyncio
import os

from pynode.commands import CommandError, hidden_command
from pynode.commands.cluster import _cl, _slot
from pynode.migration import (Job, MigrationError, _cmd, connect_peer, parse_ranges_text,
                              ranges_text)
from pynode.resp import OK, Map, bulk, encode, integer


def _range_args(args: list[bytes]) -> list[int]:
    """start end [start end ...] -> the slots, checked as ADDSLOTSRANGE does."""
    if not args or len(args) % 2:
        raise CommandError("ERR syntax error")
    slots: list[int] = []
    seen: set[int] = set()
    for i in range(0, len(args), 2):
        a, b = _slot(args[i]), _slot(args[i + 1])
        if a > b:
            raise CommandError("ERR start slot number %d is greater than end slot number %d"
                               % (a, b))
        for s in range(a, b + 1):
            if s in seen:
                raise CommandError("ERR Slot %d specified multiple times" % s)
            seen.add(s)
            slots.append(s)
    return slots


def _check_export(c, slots: list[int], target_id: str, taken: set[int]) -> None:
    cl = c.srv.cluster
    st = cl.state
    me = st.myself
    if me.is_replica:
        raise CommandError("ERR Slots can only be migrated from a primary")
    node = st.nodes.get(target_id)
    if node is None:
        raise CommandError("ERR Unknown node %s" % target_id)
    if node is me:
        raise CommandError("ERR Target node can not be this node")
    if node.is_replica:
        raise CommandError("ERR Target node is not a primary")
    busy = c.srv.migrations.busy_slots() | taken
    for s in slots:
        if st.slot_owner[s] != me.id:
            raise CommandError("ERR I'm not the owner of hash slot %d" % s)
        if s in me.migrating or s in me.importing:
            raise CommandError("ERR Slot %d is being migrated with SETSLOT" % s)
        if s in busy:
            raise CommandError("ERR Slot %d is already being migrated" % s)


@hidden_command("cluster|migrateslots", -5)
def cluster_migrateslots(c, argv):
    """SLOTSRANGE a b [a b ...] NODE id [SLOTSRANGE ... NODE id ...]: all
    checked first; either every job starts or none."""
    _cl(c)
    plans: list[tuple[list[int], str]] = []
    taken: set[int] = set()
    i = 2
    while i < len(argv):
        if argv[i].lower() != b"slotsrange":
            raise CommandError("ERR syntax error")
        j = i + 1
        while j < len(argv) and argv[j].lower() != b"node":
            j += 1
        if j + 1 >= len(argv):
            raise CommandError("ERR syntax error")
        slots = _range_args(argv[i + 1:j])
        target = argv[j + 1].decode("utf-8", "replace")
        _check_export(c, slots, target, taken)
        taken.update(slots)
        plans.append((slots, target))
        i = j + 2
    if not plans:
        raise CommandError("ERR syntax error")
    for slots, target in plans:
        c.srv.migrations.start_export(slots, target)
    return OK


@hidden_command("cluster|getslotmigrations", 2)
def cluster_getslotmigrations(c, argv):
    _cl(c)
    m = c.srv.migrations
    return encode([Map(m.valkey_entry(j)) for j in m.jobs], c.resp)


@hidden_command("cluster|cancelslotmigrations", 2)
def cluster_cancelslotmigrations(c, argv):
    _cl(c)
    m = c.srv.migrations
    for j in list(m.jobs):
        if j.active:
            m.cancel(j)
    return OK


# ---------------------------------------------------------------- Redis 8.4
@hidden_command("cluster|migration", -3)
def cluster_migration(c, argv):
    cl = _cl(c)
    m = c.srv.migrations
    sub = argv[2].lower()
    if sub == b"import":
        slots = _range_args(argv[3:])
        st = cl.state
        me = st.myself
        if me.is_replica:
            raise CommandError("ERR Slots can only be imported by a primary")
        owners = {st.slot_owner[s] for s in slots}
        if None in owners:
            raise CommandError("ERR Slot %d has no owner"
                               % next(s for s in slots if st.slot_owner[s] is None))
        if me.id in owners:
            raise CommandError("ERR I'm already the owner of hash slot %d"
                               % next(s for s in slots if st.slot_owner[s] == me.id))
        if len(owners) != 1:
            raise CommandError("ERR Slots belong to different source nodes")
        busy = m.busy_slots() & set(slots)
        if busy:
            raise CommandError("ERR Slot %d is already being migrated" % min(busy))
        source = st.nodes[owners.pop()]
        job = Job(os.urandom(20).hex(), "IMPORT", slots, source.id, me.id)
        m.add(job)
        job.task = asyncio.ensure_future(_ask_source(c.srv, job, source))
        return bulk(job.name.encode())
    if sub == b"status":
        rest = [a.lower() for a in argv[3:]]
        if not rest or rest == [b"all"]:
            jobs = m.jobs
        elif len(rest) == 2 and rest[0] == b"id":
            jobs = [j for j in m.jobs if j.name == argv[4].decode("utf-8", "replace")]
        else:
            raise CommandError("ERR syntax error")
        return encode([Map(m.redis_entry(j)) for j in jobs], c.resp)
    if sub == b"cancel":
        rest = [a.lower() for a in argv[3:]]
        if rest == [b"all"]:
            jobs = list(m.jobs)
        elif len(rest) == 2 and rest[0] == b"id":
            jobs = [j for j in m.jobs if j.name == argv[4].decode("utf-8", "replace")]
        else:
            raise CommandError("ERR syntax error")
        return integer(sum(1 for j in jobs if m.cancel(j)))
    raise CommandError("ERR unknown subcommand '%s'. Try CLUSTER HELP."
                       % argv[2].decode("utf-8", "replace")[:128])


async def _ask_source(srv, job: Job, source) -> None:
    """IMPORT on the target: ask the source to export to us under the job's
    name; the source then connects back with SYNCSLOTS START."""
    timeout = max(1.0, srv.cluster.node_timeout / 1000.0)
    try:
        reader, writer = await connect_peer(srv, source.ip, source.port, timeout)
        try:
            writer.write(_cmd(b"CLUSTER", b"SYNCSLOTS", b"EXPORT", job.name, job.target,
                              ranges_text(job.slots)))
            line = await asyncio.wait_for(reader.readline(), timeout)
        finally:
            writer.close()
        if not line.startswith(b"+"):
            raise MigrationError(line.decode("utf-8", "replace").strip())
    except (OSError, asyncio.TimeoutError, MigrationError) as e:
        if job.active and job.link is None:
            job.touch("failed", "Source refused the export: %s" % (e or "timeout"))


@hidden_command("cluster|syncslots", -3)
def cluster_syncslots(c, argv):
    """The link between source and target (not for clients)."""
    _cl(c)
    m = c.srv.migrations
    sub = argv[2].lower()
    try:
        if sub == b"start" and len(argv) == 6:
            m.sync_start(c, argv[3].decode(), argv[4].decode(),
                         parse_ranges_text(argv[5].decode()))
        elif sub == b"finish" and len(argv) == 4:
            return m.sync_finish(c, argv[3].decode())
        elif sub == b"ack" and len(argv) == 3:
            return m.sync_ack(c)       # everything before it on this link is applied
        elif sub == b"flush" and len(argv) == 3:
            m.sync_flush(c)
        elif sub == b"abort" and len(argv) == 4:
            job = m.links.get(c)
            if job is not None and job.name == argv[3].decode():
                m.cancel(job)
                job.message = "Cancelled by the source"
        elif sub in (b"replica-import", b"replica-done") and len(argv) == 5 - (
                sub == b"replica-done"):
            # from my primary's replication stream only
            if c is not c.srv.replication.master_client:
                raise CommandError("ERR SYNCSLOTS %s comes from the replication stream"
                                   % sub.decode().upper())
            m.replica_import(argv[3].decode(), parse_ranges_text(argv[4].decode())
                             if sub == b"replica-import" else None)
        elif sub == b"export" and len(argv) == 6:
            slots = parse_ranges_text(argv[5].decode())
            target = argv[4].decode()
            _check_export(c, slots, target, set())
            m.start_export(slots, target, name=argv[3].decode())
        else:
            raise CommandError("ERR syntax error")
    except (MigrationError, ValueError) as e:
        raise CommandError(str(e) if str(e).startswith("ERR") else "ERR %s" % e) from None
    return OK
