"""Redis's compact blobs, as they appear inside RDB files and DUMP payloads:
listpack (Redis 7 hashes, sorted sets, lists and streams), ziplist (the same
types written by Redis < 7) and intset (small integer sets).

Every decoder checks its bounds and raises ValueError naming what is wrong,
so a damaged payload is refused, never half-loaded.  Integers come back as
their decimal bytes (b"-12"), as Redis hands them to the value types.
"""

from __future__ import annotations

import struct

from storage.values import string_int

LP_HDR = 6
LP_EOF = 0xFF


# ------------------------------------------------------------------ listpack
def _backlen(n: int) -> bytes:
    if n <= 127:
        return bytes((n,))
    if n < 16383:
        return bytes((n >> 7, (n & 127) | 128))
    if n < 2097151:
        return bytes((n >> 14, ((n >> 7) & 127) | 128, (n & 127) | 128))
    if n < 268435455:
        return bytes((n >> 21, ((n >> 14) & 127) | 128, ((n >> 7) & 127) | 128,
                      (n & 127) | 128))
    return bytes((n >> 28, ((n >> 21) & 127) | 128, ((n >> 14) & 127) | 128,
                  ((n >> 7) & 127) | 128, (n & 127) | 128))


def lp_entry(item) -> bytes:
    """One listpack entry (encoding + data + backlen) for bytes or an int."""
    v = item if type(item) is int else string_int(item)
    if v is not None:
        if 0 <= v <= 127:
            enc = bytes((v,))
        elif -4096 <= v <= 4095:
            u = v + (1 << 13) if v < 0 else v
            enc = bytes(((u >> 8) | 0xC0, u & 0xFF))
        elif -32768 <= v <= 32767:
            enc = b"\xf1" + struct.pack("<h", v)
        elif -(1 << 23) <= v < 1 << 23:
            enc = b"\xf2" + struct.pack("<i", v)[:3]
        elif -(1 << 31) <= v < 1 << 31:
            enc = b"\xf3" + struct.pack("<i", v)
        else:
            enc = b"\xf4" + struct.pack("<q", v)
    else:
        s = item
        n = len(s)
        if n < 64:
            enc = bytes((0x80 | n,)) + s
        elif n < 4096:
            enc = bytes((0xE0 | (n >> 8), n & 0xFF)) + s
        else:
            enc = b"\xf0" + struct.pack("<I", n) + s
    return enc + _backlen(len(enc))


def lp_encode(items) -> bytes:
    """A listpack of items (bytes, or ints), as lpAppend builds it."""
    body = b"".join([lp_entry(i) for i in items])
    n = len(items) if hasattr(items, "__len__") else None
    if n is None:
        items = list(items)
        n = len(items)
    total = LP_HDR + len(body) + 1
    return struct.pack("<IH", total, n if n < 65535 else 65535) + body + b"\xff"


def lp_decode(blob) -> list:
    """The elements of a listpack: bytes for strings, bytes of the decimal
    form for integers (as lpGet hands them to Redis's loaders)."""
    return [b"%d" % v if type(v) is int else v for v in lp_decode_raw(blob)]


def lp_decode_raw(blob) -> list:
    """The elements of a listpack: bytes for strings, int for integers."""
    b = bytes(blob)
    if len(b) < LP_HDR + 1:
        raise ValueError("listpack shorter than its header")
    total, count = struct.unpack_from("<IH", b, 0)
    if total != len(b):
        raise ValueError("listpack size field %d != blob size %d" % (total, len(b)))
    if b[-1] != LP_EOF:
        raise ValueError("listpack does not end with 0xFF")
    out: list = []
    p = LP_HDR
    end = len(b) - 1
    while p < end:
        start = p
        e = b[p]
        if e < 0x80:                               # 7-bit uint
            out.append(e)
            p += 1
        elif e & 0xC0 == 0x80:                     # 6-bit string length
            n = e & 0x3F
            p += 1
            if p + n > end:
                raise ValueError("listpack string past the end")
            out.append(b[p:p + n])
            p += n
        elif e & 0xE0 == 0xC0:                     # 13-bit int
            if p + 2 > end:
                raise ValueError("listpack int past the end")
            u = ((e & 0x1F) << 8) | b[p + 1]
            out.append(u - (1 << 13) if u >= 1 << 12 else u)
            p += 2
        elif e & 0xF0 == 0xE0:                     # 12-bit string length
            if p + 2 > end:
                raise ValueError("listpack length past the end")
            n = ((e & 0x0F) << 8) | b[p + 1]
            p += 2
            if p + n > end:
                raise ValueError("listpack string past the end")
            out.append(b[p:p + n])
            p += n
        elif e == 0xF0:                            # 32-bit string length
            if p + 5 > end:
                raise ValueError("listpack length past the end")
            n = struct.unpack_from("<I", b, p + 1)[0]
            p += 5
            if p + n > end:
                raise ValueError("listpack string past the end")
            out.append(b[p:p + n])
            p += n
        elif e in (0xF1, 0xF2, 0xF3, 0xF4):
            size = {0xF1: 2, 0xF2: 3, 0xF3: 4, 0xF4: 8}[e]
            if p + 1 + size > end:
                raise ValueError("listpack int past the end")
            raw = b[p + 1:p + 1 + size]
            out.append(int.from_bytes(raw, "little", signed=True))
            p += 1 + size
        else:
            raise ValueError("bad listpack entry encoding 0x%02x at %d" % (e, p))
        # skip the backlen, checking it describes this entry
        elen = p - start
        bl = _backlen(elen)
        if b[p:p + len(bl)] != bl:
            raise ValueError("listpack back-length mismatch at %d" % p)
        p += len(bl)
    if p != end:
        raise ValueError("listpack entries overrun the end marker")
    if count != 65535 and count != len(out):
        raise ValueError("listpack count %d != %d entries" % (count, len(out)))
    return out


# ------------------------------------------------------------------ ziplist
def zl_decode(blob) -> list:
    """The elements of a ziplist (Redis < 7 encodings), integers as decimal bytes."""
    b = bytes(blob)
    if len(b) < 11:
        raise ValueError("ziplist shorter than its header")
    total, tail, count = struct.unpack_from("<IIH", b, 0)
    if total != len(b):
        raise ValueError("ziplist size field %d != blob size %d" % (total, len(b)))
    if b[-1] != 0xFF:
        raise ValueError("ziplist does not end with 0xFF")
    out: list = []
    p = 10
    end = len(b) - 1
    while p < end:
        if b[p] == 0xFE:                           # prevlen: 5 bytes
            p += 5
        else:
            p += 1
        if p >= end:
            raise ValueError("ziplist entry past the end")
        e = b[p]
        kind = e >> 6
        if kind == 0:
            n = e & 0x3F
            p += 1
        elif kind == 1:
            if p + 2 > end:
                raise ValueError("ziplist length past the end")
            n = ((e & 0x3F) << 8) | b[p + 1]
            p += 2
        elif e == 0x80:
            if p + 5 > end:
                raise ValueError("ziplist length past the end")
            n = struct.unpack_from(">I", b, p + 1)[0]
            p += 5
        else:
            n = -1
        if n >= 0:
            if p + n > end:
                raise ValueError("ziplist string past the end")
            out.append(b[p:p + n])
            p += n
            continue
        p += 1
        if e == 0xC0:
            size, fmt = 2, "<h"
        elif e == 0xD0:
            size, fmt = 4, "<i"
        elif e == 0xE0:
            size, fmt = 8, "<q"
        elif e == 0xF0:
            size, fmt = 3, None
        elif e == 0xFE:
            size, fmt = 1, "<b"
        elif 0xF1 <= e <= 0xFD:
            out.append(b"%d" % ((e & 0x0F) - 1))
            continue
        else:
            raise ValueError("bad ziplist entry encoding 0x%02x at %d" % (e, p - 1))
        if p + size > end:
            raise ValueError("ziplist int past the end")
        if fmt is None:
            v = int.from_bytes(b[p:p + 3], "little", signed=True)
        else:
            v = struct.unpack_from(fmt, b, p)[0]
        out.append(b"%d" % v)
        p += size
    if count != 65535 and count != len(out):
        raise ValueError("ziplist count %d != %d entries" % (count, len(out)))
    return out


# ------------------------------------------------------------------ intset
def intset_encode(values) -> bytes:
    """An intset of ints (sorted here), with the smallest width that fits."""
    vals = sorted(values)
    width = 2
    for v in (vals[0], vals[-1]) if vals else ():
        if not -(1 << 15) <= v < 1 << 15:
            width = max(width, 4)
        if not -(1 << 31) <= v < 1 << 31:
            width = 8
    fmt = {2: "h", 4: "i", 8: "q"}[width]
    return struct.pack("<II", width, len(vals)) + struct.pack("<%d%s" % (len(vals), fmt), *vals)


def intset_decode(blob) -> list[int]:
    b = bytes(blob)
    if len(b) < 8:
        raise ValueError("intset shorter than its header")
    width, n = struct.unpack_from("<II", b, 0)
    if width not in (2, 4, 8):
        raise ValueError("intset with element width %d" % width)
    if len(b) != 8 + width * n:
        raise ValueError("intset size %d does not match %d elements of %d bytes"
                         % (len(b), n, width))
    fmt = {2: "h", 4: "i", 8: "q"}[width]
    vals = list(struct.unpack_from("<%d%s" % (n, fmt), b, 8))
    for i in range(1, n):
        if vals[i - 1] >= vals[i]:
            raise ValueError("intset elements are not sorted and unique")
    return vals
