"""Bit commands: SETBIT GETBIT BITCOUNT BITPOS BITOP BITFIELD BITFIELD_RO (Redis 7.0 bitops.c).

Bits are numbered from the most significant bit of the first byte, as Redis does.
"""

from __future__ import annotations

from pynode import notify
from pynode.commands import SYNTAX, CommandError, command, parse_int
from pynode.commands import lookup_read, lookup_write
from pynode.resp import ZERO, ONE, integer

BIT_OFFSET_ERR = "ERR bit offset is not an integer or out of range"
BITFIELD_TYPE_ERR = ("ERR Invalid bitfield type. Use something like i16 u8. "
                     "Note that u64 is not supported but i64 is.")
_NOT_TABLE = bytes(255 - i for i in range(256))
_POP = bytes(bin(i).count("1") for i in range(256))


def _bit_offset(c, arg: bytes, hash_ok: bool = False, bits: int = 0) -> int:
    """getBitOffsetFromArgument."""
    usehash = hash_ok and bits > 0 and len(arg) > 1 and arg[0] == 35  # '#'
    try:
        off = parse_int(arg[1:] if usehash else arg, BIT_OFFSET_ERR)
    except CommandError:
        raise CommandError(BIT_OFFSET_ERR) from None
    if usehash:
        off *= bits
    if off < 0 or (off >> 3) >= c.srv.proto_max_bulk_len:
        raise CommandError(BIT_OFFSET_ERR)
    return off


# ------------------------------------------------------------------ SETBIT / GETBIT

@command("setbit")
def setbit(c, argv):
    key = argv[1]
    off = _bit_offset(c, argv[2])
    err = "ERR bit is not an integer or out of range"
    on = parse_int(argv[3], err)
    if on & ~1:
        raise CommandError(err)
    v = lookup_write(c, key, bytes)
    byte = off >> 3
    buf = bytearray(v) if v is not None else bytearray()
    grown = v is None or len(buf) <= byte
    if len(buf) <= byte:
        buf.extend(bytes(byte + 1 - len(buf)))
    mask = 1 << (7 - (off & 7))
    old = 1 if buf[byte] & mask else 0
    if not grown and old == on:
        c.db.mark_raw(key)              # Redis unshares it anyway
        return ONE if old else ZERO     # nothing changes: no event, not propagated
    if on:
        buf[byte] |= mask
    else:
        buf[byte] &= ~mask & 0xFF
    c.db.set(key, bytes(buf), keepttl=True)
    c.db.mark_raw(key)
    c.srv.dirty += 1
    if c.srv.notify_flags:
        notify.notify(c.srv, notify.STRING, b"setbit", key, c.db.id)
    return ONE if old else ZERO


@command("getbit")
def getbit(c, argv):
    off = _bit_offset(c, argv[2])
    v = lookup_read(c, argv[1], bytes)
    if v is None:
        return ZERO
    byte = off >> 3
    if byte >= len(v):
        return ZERO
    return ONE if v[byte] & (1 << (7 - (off & 7))) else ZERO


# ------------------------------------------------------------------ BITCOUNT / BITPOS

def _popcount(b: bytes) -> int:
    return int.from_bytes(b, "big").bit_count()


def _range(start, end, totlen, isbit):
    """Normalize a start/end range (bytes or bits) to inclusive bit indexes."""
    if isbit:
        totlen <<= 3
    if start < 0:
        start += totlen
    if end < 0:
        end += totlen
    if start < 0:
        start = 0
    if end < 0:
        end = 0
    if end >= totlen:
        end = totlen - 1
    if not isbit:
        return start * 8, end * 8 + 7, start > end
    return start, end, start > end


@command("bitcount")
def bitcount(c, argv):
    v = lookup_read(c, argv[1], bytes)
    if v is None:
        return ZERO
    n = len(argv)
    if n == 2:
        return integer(_popcount(v))
    if n not in (4, 5):
        raise CommandError(SYNTAX)
    start = parse_int(argv[2])
    end = parse_int(argv[3])
    if start < 0 and end < 0 and start > end:
        return ZERO
    isbit = False
    if n == 5:
        unit = argv[4].upper()
        if unit == b"BIT":
            isbit = True
        elif unit != b"BYTE":
            raise CommandError(SYNTAX)
    sbit, ebit, empty = _range(start, end, len(v), isbit)
    if empty:
        return ZERO
    sb, eb = sbit >> 3, ebit >> 3
    seg = v[sb:eb + 1]
    if not seg:
        return ZERO
    cnt = _popcount(seg)
    cnt -= _POP[seg[0] & (0xFF00 >> (sbit & 7)) & 0xFF]
    cnt -= _POP[seg[-1] & ((1 << (7 - (ebit & 7))) - 1)]
    return integer(cnt)


@command("bitpos")
def bitpos(c, argv):
    bit = parse_int(argv[2])
    if bit != 0 and bit != 1:
        raise CommandError("ERR The bit argument must be 1 or 0.")
    v = lookup_read(c, argv[1], bytes)
    if v is None:
        return integer(-1 if bit else 0)
    n = len(argv)
    end_given = False
    if n == 3:
        sbit, ebit, empty = 0, len(v) * 8 - 1, not v
    elif n in (4, 5, 6):
        start = parse_int(argv[3])
        isbit = False
        if n == 6:
            unit = argv[5].upper()
            if unit == b"BIT":
                isbit = True
            elif unit != b"BYTE":
                raise CommandError(SYNTAX)
        if n >= 5:
            end = parse_int(argv[4])
            end_given = True
        else:
            end = len(v) * 8 + 7 if isbit else len(v) - 1
        sbit, ebit, empty = _range(start, end, len(v), isbit)
    else:
        raise CommandError(SYNTAX)
    if empty:
        return integer(-1)
    sb, eb = sbit >> 3, ebit >> 3
    seg = bytearray(v[sb:eb + 1])
    if not seg:
        return integer(-1)
    fmask = (0xFF00 >> (sbit & 7)) & 0xFF          # bits before the range
    lmask = (1 << (7 - (ebit & 7))) - 1             # bits after the range
    if bit:
        seg[0] &= ~fmask & 0xFF
        seg[-1] &= ~lmask & 0xFF
        skip = len(seg) - len(seg.lstrip(b"\x00"))
        if skip == len(seg):
            return integer(-1)
        byte = seg[skip]
        pos = 8 - byte.bit_length()
    else:
        seg[0] |= fmask
        seg[-1] |= lmask
        skip = len(seg) - len(seg.lstrip(b"\xff"))
        if skip == len(seg):
            if end_given:
                return integer(-1)
            return integer((eb + 1) * 8)
        byte = seg[skip] ^ 0xFF
        pos = 8 - byte.bit_length()
    return integer((sb + skip) * 8 + pos)


# ------------------------------------------------------------------ BITOP

@command("bitop")
def bitop(c, argv):
    op = argv[1].upper()
    if op not in (b"AND", b"OR", b"XOR", b"NOT"):
        raise CommandError(SYNTAX)
    if op == b"NOT" and len(argv) != 4:
        raise CommandError("ERR BITOP NOT must be called with a single source key.")
    srcs = []
    for k in argv[3:]:
        v = lookup_read(c, k, bytes)
        srcs.append(v if v is not None else b"")
    dest = argv[2]
    maxlen = max(len(s) for s in srcs)
    if maxlen:
        if op == b"NOT":
            res = srcs[0].translate(_NOT_TABLE)
        else:
            acc = int.from_bytes(srcs[0].ljust(maxlen, b"\x00"), "big")
            for s in srcs[1:]:
                x = int.from_bytes(s.ljust(maxlen, b"\x00"), "big")
                if op == b"AND":
                    acc &= x
                elif op == b"OR":
                    acc |= x
                else:
                    acc ^= x
            res = acc.to_bytes(maxlen, "big")
        c.db.set(dest, res)
        c.db.mark_raw(dest)
        c.srv.dirty += 1
        if c.srv.notify_flags:
            notify.notify(c.srv, notify.STRING, b"set", dest, c.db.id)
    elif c.db.delete(dest):
        c.srv.dirty += 1
        if c.srv.notify_flags:
            notify.notify(c.srv, notify.GENERIC, b"del", dest, c.db.id)
    return integer(maxlen)


# ------------------------------------------------------------------ BITFIELD

def _bf_type(arg: bytes):
    if not arg or arg[0] not in b"iu":
        raise CommandError(BITFIELD_TYPE_ERR)
    sign = arg[0] == 105  # 'i'
    try:
        bits = parse_int(arg[1:])
    except CommandError:
        raise CommandError(BITFIELD_TYPE_ERR) from None
    if bits < 1 or (sign and bits > 64) or (not sign and bits > 63):
        raise CommandError(BITFIELD_TYPE_ERR)
    return sign, bits


def _bf_get(buf, off: int, bits: int, sign: bool) -> int:
    sb = off >> 3
    eb = (off + bits - 1) >> 3
    chunk = buf[sb:eb + 1]
    nbytes = eb - sb + 1
    if len(chunk) < nbytes:
        chunk = bytes(chunk) + bytes(nbytes - len(chunk))
    x = int.from_bytes(chunk, "big")
    x >>= nbytes * 8 - (off & 7) - bits
    x &= (1 << bits) - 1
    if sign and x >> (bits - 1):
        x -= 1 << bits
    return x


def _bf_set(buf: bytearray, off: int, bits: int, value: int) -> None:
    sb = off >> 3
    eb = (off + bits - 1) >> 3
    nbytes = eb - sb + 1
    x = int.from_bytes(buf[sb:eb + 1], "big")
    shift = nbytes * 8 - (off & 7) - bits
    mask = ((1 << bits) - 1) << shift
    x = (x & ~mask) | ((value & ((1 << bits) - 1)) << shift)
    buf[sb:eb + 1] = x.to_bytes(nbytes, "big")


def _bitfield(c, argv, ro: bool):
    ops = []
    ow = 0  # 0 wrap, 1 sat, 2 fail
    readonly = True
    highest = 0
    j = 2
    n = len(argv)
    while j < n:
        rem = n - j - 1
        sub = argv[j].upper()
        if sub == b"GET" and rem >= 2:
            opcode = 0
        elif sub == b"SET" and rem >= 3:
            opcode = 1
        elif sub == b"INCRBY" and rem >= 3:
            opcode = 2
        elif sub == b"OVERFLOW" and rem >= 1:
            t = argv[j + 1].upper()
            j += 2
            if t == b"WRAP":
                ow = 0
            elif t == b"SAT":
                ow = 1
            elif t == b"FAIL":
                ow = 2
            else:
                raise CommandError("ERR Invalid OVERFLOW type specified")
            continue
        else:
            raise CommandError(SYNTAX)
        sign, bits = _bf_type(argv[j + 1])
        off = _bit_offset(c, argv[j + 2], True, bits)
        val = 0
        if opcode:
            readonly = False
            if highest < off + bits - 1:
                highest = off + bits - 1
            val = parse_int(argv[j + 3])
        ops.append((opcode, sign, bits, off, val, ow))
        j += 3 if opcode == 0 else 4
    key = argv[1]
    if readonly:
        v = lookup_read(c, key, bytes)
        src = v if v is not None else b""
        out = [b"*%d\r\n" % len(ops)]
        for opcode, sign, bits, off, val, o in ops:
            out.append(b":%d\r\n" % _bf_get(src, off, bits, sign))
        return b"".join(out)
    if ro:
        raise CommandError("ERR BITFIELD_RO only supports the GET subcommand")
    v = lookup_write(c, key, bytes)
    buf = bytearray(v) if v is not None else bytearray()
    need = (highest >> 3) + 1
    grown = v is None or len(buf) < need     # lookupStringForBitCommand's dirty
    if len(buf) < need:
        buf.extend(bytes(need - len(buf)))
    out = [b"*%d\r\n" % len(ops)]
    changes = 0
    nil = c.nil
    for opcode, sign, bits, off, val, o in ops:
        if opcode == 0:
            out.append(b":%d\r\n" % _bf_get(buf, off, bits, sign))
            continue
        old = _bf_get(buf, off, bits, sign)
        if sign:
            mx = (1 << (bits - 1)) - 1
            mn = -mx - 1
        else:
            mx = (1 << bits) - 1
            mn = 0
        if opcode == 2:
            total = old + val
        else:
            total = val if sign else val & 0xFFFFFFFFFFFFFFFF
        overflow = total > mx or total < mn
        if overflow:
            if o == 0:
                newval = total & ((1 << bits) - 1)
                if sign and newval >> (bits - 1):
                    newval -= 1 << bits
            elif o == 1:
                newval = mx if total > mx else mn
            else:
                newval = None
        else:
            newval = total
        if newval is None:
            out.append(nil)
            continue
        if grown or newval != old:
            changes += 1
        out.append(b":%d\r\n" % (newval if opcode == 2 else old))
        _bf_set(buf, off, bits, newval)
    c.db.set(key, bytes(buf), keepttl=True)
    c.db.mark_raw(key)
    if changes:
        c.srv.dirty += changes
        if c.srv.notify_flags:
            notify.notify(c.srv, notify.STRING, b"setbit", key, c.db.id)
    return b"".join(out)


@command("bitfield")
def bitfield(c, argv):
    return _bitfield(c, argv, False)


@command("bitfield_ro")
def bitfield_ro(c, argv):
    return _bitfield(c, argv, True)
