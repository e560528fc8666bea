"""HyperLogLog commands: PFADD PFCOUNT PFMERGE PFDEBUG PFSELFTEST (Redis 7.0
hyperloglog.c). The value is a Redis string in Redis's HLL layout
(storage/hll.py), so GET, DUMP, SET and replication see the same bytes as
redis-server's.

Propagation as Redis: PFADD/PFMERGE/PFDEBUG as themselves; a PFCOUNT that
refreshed the cached cardinality is propagated too (it changed the string),
although it is flagged read-only.
"""

from __future__ import annotations

import random
import time

from pynode import notify
from pynode.commands import WRONGTYPE, CommandError, command
from pynode.commands import lookup_read
from pynode.resp import OK, ZERO, ONE, integer
from storage import hll


def _check(v) -> None:
    """isHLLObjectOrReply for a found value."""
    if type(v) is not bytes:
        raise CommandError(WRONGTYPE)
    if not hll.is_hll(v):
        raise CommandError(hll.WRONGTYPE_ERR)


def _store(c, key: bytes, value: bytes, created: bool) -> None:
    """Write the new string (dbAdd or an in-place change: TTL kept)."""
    db = c.db
    db.set(key, value, keepttl=not created)
    db.mark_raw(key)          # Redis works on an unshared raw string


@command("pfadd")
def pfadd(c, argv):
    key = argv[1]
    db = c.db
    v = db.get(key)
    created = v is None
    if created:
        v = hll.empty()
    else:
        _check(v)
        db.mark_raw(key)      # dbUnshareStringValue
    try:
        nv, updated = hll.add(v, argv[2:], c.srv.hll_sparse_max_bytes)
    except hll.Corrupted:
        raise CommandError(hll.INVALID_ERR) from None
    if created:
        updated += 1
    if not updated:
        return ZERO
    _store(c, key, hll.invalidate(nv), created)
    srv = c.srv
    if srv.notify_flags:
        notify.notify(srv, notify.STRING, b"pfadd", key, db.id)
    srv.dirty += updated
    return ONE


@command("pfcount")
def pfcount(c, argv):
    if len(argv) > 2:
        regs = bytes(hll.REGISTERS)
        for key in argv[1:]:
            v = lookup_read(c, key, bytes)
            if v is None:
                continue
            _check(v)
            try:
                regs = hll.reg_max(regs, hll.registers(v))
            except hll.Corrupted:
                raise CommandError(hll.INVALID_ERR) from None
        return integer(hll.count_histogram(hll.histogram(regs)))
    key = argv[1]
    v = lookup_read(c, key, bytes)
    if v is None:
        return ZERO
    _check(v)
    db = c.db
    db.mark_raw(key)
    card = hll.cached_card(v)
    if card is None:
        try:
            card = hll.count(v)
        except hll.Corrupted:
            raise CommandError(hll.INVALID_ERR) from None
        _store(c, key, hll.with_card(v, card), False)
        c.srv.dirty += 1
        c.rewrite = [argv]    # read-only command that changed the string
    return integer(card)


@command("pfmerge")
def pfmerge(c, argv):
    regs = bytes(hll.REGISTERS)
    use_dense = False
    for key in argv[1:]:
        v = lookup_read(c, key, bytes)
        if v is None:
            continue
        _check(v)
        if hll.encoding(v) == hll.DENSE:
            use_dense = True
        try:
            regs = hll.reg_max(regs, hll.registers(v))
        except hll.Corrupted:
            raise CommandError(hll.INVALID_ERR) from None
    dest = argv[1]
    db = c.db
    v = db.get(dest)
    created = v is None
    if created:
        v = hll.empty()
    srv = c.srv
    try:
        nv = hll.set_registers(v, regs, srv.hll_sparse_max_bytes, use_dense)
    except hll.Corrupted:
        raise CommandError(hll.INVALID_ERR) from None
    _store(c, dest, hll.invalidate(nv), created)
    if srv.notify_flags:
        notify.notify(srv, notify.STRING, b"pfadd", dest, db.id)
    srv.dirty += 1
    return OK


@command("pfdebug")
def pfdebug(c, argv):
    sub = argv[1]
    key = argv[2]
    db = c.db
    v = db.get(key)
    if v is None:
        raise CommandError("ERR The specified key does not exist")
    _check(v)
    db.mark_raw(key)
    name = sub.lower()
    if name == b"getreg":
        if hll.encoding(v) == hll.SPARSE:
            try:
                v = hll.to_dense(v)
            except hll.Corrupted:
                raise CommandError(hll.INVALID_ERR) from None
            _store(c, key, v, False)
            c.srv.dirty += 1
        regs = hll.registers(v)
        out = [b"*%d\r\n" % hll.REGISTERS]
        out.extend(b":%d\r\n" % r for r in regs)
        return b"".join(out)
    if name == b"decode":
        if hll.encoding(v) != hll.SPARSE:
            raise CommandError("ERR HLL encoding is not sparse")
        d = hll.decode_sparse(v)
        return b"$%d\r\n%s\r\n" % (len(d), d)
    if name == b"encoding":
        return b"+dense\r\n" if hll.encoding(v) == hll.DENSE else b"+sparse\r\n"
    if name == b"todense":
        if hll.encoding(v) == hll.SPARSE:
            try:
                v = hll.to_dense(v)
            except hll.Corrupted:
                raise CommandError(hll.INVALID_ERR) from None
            _store(c, key, v, False)
            c.srv.dirty += 1
            return ONE
        return ZERO
    raise CommandError("ERR Unknown PFDEBUG subcommand '%s'"
                       % sub.decode("utf-8", "replace"))


# PFSELFTEST: Redis's two checks at a scale that suits Python (Redis runs
# 1000 register rounds and 10M elements; here 20 rounds and 100k elements,
# checkpoints 1, 10, ... 100000, the same error bound).
SELFTEST_ROUNDS = 20
SELFTEST_ELEMENTS = 100000


@command("pfselftest")
def pfselftest(c, argv):
    rnd = random.Random(time.time_ns())
    buf = bytearray(hll.DENSE_SIZE)
    for _ in range(SELFTEST_ROUNDS):
        vals = bytes(rnd.getrandbits(6) for _ in range(hll.REGISTERS))
        for i, r in enumerate(vals):
            hll.dense_set(buf, i, r)
        for i, r in enumerate(vals):
            got = hll.dense_get(buf, i)
            if got != r:
                raise CommandError("TESTFAILED Register %d should be %d but is %d"
                                   % (i, r, got))
        if hll.dense_registers(bytes(buf[hll.HDR_SIZE:])) != vals or \
                hll.dense_pack(vals) != bytes(buf[hll.HDR_SIZE:]):
            raise CommandError("TESTFAILED packed register codec disagrees")
    dense = bytearray(b"HYLL" + bytes(hll.DENSE_SIZE - 4))
    sparse = hll.Sparse(hll.empty(), c.srv.hll_sparse_max_bytes)
    relerr = 1.04 / (hll.REGISTERS ** 0.5)
    seed = rnd.getrandbits(64)
    checkpoint = 1
    for j in range(1, SELFTEST_ELEMENTS + 1):
        ele = (j ^ seed).to_bytes(8, "little")
        index, count = hll.pat_len(ele)
        hll.dense_set_max(dense, index, count)
        if sparse is not None:
            r = sparse.set(index, count)
            if r == 2:
                if j < c.srv.hll_sparse_max_bytes // 2 and j == checkpoint:
                    raise CommandError("TESTFAILED sparse encoding not used")
                sparse = None
        if j == checkpoint:
            dcount = hll.count(bytes(dense))
            if sparse is not None and hll.count(sparse.to_bytes()) != dcount:
                raise CommandError("TESTFAILED dense/sparse disagree")
            maxerr = 1 if j == 10 else -(-relerr * 6 * checkpoint // 1)
            if abs(checkpoint - dcount) > maxerr:
                raise CommandError("TESTFAILED Too big error. card:%d abserr:%d"
                                   % (checkpoint, abs(checkpoint - dcount)))
            checkpoint *= 10
    return OK
