"""HyperLogLog, in Redis 7.0's exact representation (hyperloglog.c).

An HLL is a plain Redis string, so pynode stores it as `bytes` like any other
string; this module reads and writes that byte layout:

    "HYLL" | encoding (0 dense, 1 sparse) | 3 unused bytes | cardinality cache
    (8 bytes little endian; the top bit of the last byte set = stale) | registers

- dense: 16384 six-bit registers packed LSB first, 12288 bytes;
- sparse: run-length opcodes ZERO 00xxxxxx (1..64 zero registers), XZERO
  01xxxxxx yyyyyyyy (1..16384 zero registers), VAL 1vvvvvxx (1..4 registers
  of value 1..32).

Elements hash with MurmurHash64A (seed 0xadc83b19): the low 14 bits pick the
register, the position of the first 1 bit in the other 50 (plus one) is the
value. Updates of a sparse HLL follow Redis's algorithm step by step (split
the opcode that covers the register, then merge equal adjacent VAL opcodes
in a window of five starting at the previous opcode), so the bytes after any
sequence of PFADD/PFMERGE are the same as redis-server's; the sparse form is
promoted to dense when a value exceeds 32 or the string would grow past
hll-sparse-max-bytes. The cardinality is Ertl's improved estimator
(hllSigma/hllTau) that Redis 7.0 uses, in the same floating point order.

For speed the sparse opcodes are edited as a list (with the first register
each covers, found by bisection) rather than as bytes, and the dense
registers are unpacked/packed 4096 lanes at a time with big-integer masks.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from itertools import accumulate
from struct import unpack_from as _unpack

P = 14
Q = 64 - P
REGISTERS = 1 << P                  # 16384
P_MASK = REGISTERS - 1
BITS = 6
REGISTER_MAX = (1 << BITS) - 1
HDR_SIZE = 16
DENSE_BYTES = REGISTERS * BITS // 8  # 12288
DENSE_SIZE = HDR_SIZE + DENSE_BYTES
DENSE, SPARSE = 0, 1
MAX_ENCODING = 1
SPARSE_VAL_MAX_VALUE = 32
SPARSE_VAL_MAX_LEN = 4
SPARSE_ZERO_MAX_LEN = 64
SPARSE_XZERO_MAX_LEN = 16384
ALPHA_INF = 0.721347520444481703680  # 0.5 / ln(2)
SEED = 0xADC83B19

INVALID_ERR = "INVALIDOBJ Corrupted HLL object detected"
WRONGTYPE_ERR = "WRONGTYPE Key is not a valid HyperLogLog string value."

_M64 = (1 << 64) - 1
_MUR_M = 0xC6A4A7935BD1E995


class Corrupted(Exception):
    """The HLL's registers cannot be decoded (INVALIDOBJ)."""


# ------------------------------------------------------------------ hashing
def murmur64a(data: bytes, seed: int = SEED) -> int:
    """MurmurHash64A as Redis's hyperloglog.c (8-byte blocks little endian)."""
    m = _MUR_M
    n = len(data)
    h = (seed ^ (n * m)) & _M64
    nblocks = n >> 3
    if nblocks:
        for k in _unpack("<%dQ" % nblocks, data):
            k = (k * m) & _M64
            k ^= k >> 47
            k = (k * m) & _M64
            h ^= k
            h = (h * m) & _M64
    rest = n & 7
    if rest:
        h ^= int.from_bytes(data[n - rest:], "little")
        h = (h * m) & _M64
    h ^= h >> 47
    h = (h * m) & _M64
    h ^= h >> 47
    return h


def pat_len(ele: bytes) -> tuple[int, int]:
    """hllPatLen: (register index, length of the 000..1 pattern)."""
    h = murmur64a(ele)
    index = h & P_MASK
    h = (h >> P) | (1 << Q)
    # position of the lowest set bit, counted from 1
    return index, (h & -h).bit_length()


# ------------------------------------------------------------------ validity
def is_hll(v: bytes) -> bool:
    """isHLLObject: the magic, a known encoding, the dense length."""
    if len(v) < HDR_SIZE or v[:4] != b"HYLL":
        return False
    enc = v[4]
    if enc > MAX_ENCODING:
        return False
    if enc == DENSE and len(v) != DENSE_SIZE:
        return False
    return True


def encoding(v: bytes) -> int:
    return v[4]


def empty() -> bytes:
    """createHLLObject: a sparse HLL of one XZERO:16384, cached count 0."""
    return b"HYLL\x01\x00\x00\x00" + b"\x00" * 8 + b"\x7f\xff"


def cached_card(v: bytes) -> int | None:
    """The cached cardinality, or None if it is stale."""
    if v[15] & 0x80:
        return None
    return int.from_bytes(v[8:16], "little")


def with_card(v: bytes, card: int) -> bytes:
    """v with a valid cached cardinality (a parsed sparse form follows it)."""
    out = v[:8] + card.to_bytes(8, "little") + v[16:]
    hit = _CACHE.pop(id(v), None)
    if hit is not None and hit[0] is v:
        hit[1].header = out[:HDR_SIZE]
        _remember(out, hit[1])
    return out


def invalidate(v) -> bytes:
    """HLL_INVALIDATE_CACHE."""
    if v[15] & 0x80:
        return bytes(v)
    return bytes(v[:15]) + bytes((v[15] | 0x80,)) + bytes(v[16:])


# ------------------------------------------------------------------ dense
_LANES = DENSE_BYTES // 3            # 4096 groups of 3 bytes = 4 registers


def _rep(b: int) -> int:
    return int.from_bytes(bytes((b,)) * _LANES, "little")


_K3, _K15, _K63 = _rep(3), _rep(15), _rep(63)
_H80 = _rep(0x80)
_ALL = (1 << (8 * REGISTERS)) - 1


def dense_registers(regs) -> bytes:
    """The 12288 packed bytes -> 16384 register values (one byte each)."""
    x0 = int.from_bytes(regs[0::3], "little")
    x1 = int.from_bytes(regs[1::3], "little")
    x2 = int.from_bytes(regs[2::3], "little")
    out = bytearray(REGISTERS)
    out[0::4] = (x0 & _K63).to_bytes(_LANES, "little")
    out[1::4] = (((x0 >> 6) & _K3) | ((x1 & _K15) << 2)).to_bytes(_LANES, "little")
    out[2::4] = (((x1 >> 4) & _K15) | ((x2 & _K3) << 4)).to_bytes(_LANES, "little")
    out[3::4] = ((x2 >> 2) & _K63).to_bytes(_LANES, "little")
    return bytes(out)


def dense_pack(values) -> bytes:
    """16384 register values (each < 64) -> the 12288 packed bytes."""
    v0 = int.from_bytes(values[0::4], "little")
    v1 = int.from_bytes(values[1::4], "little")
    v2 = int.from_bytes(values[2::4], "little")
    v3 = int.from_bytes(values[3::4], "little")
    out = bytearray(DENSE_BYTES)
    out[0::3] = (v0 | ((v1 & _K3) << 6)).to_bytes(_LANES, "little")
    out[1::3] = (((v1 >> 2) & _K15) | ((v2 & _K15) << 4)).to_bytes(_LANES, "little")
    out[2::3] = (((v2 >> 4) & _K3) | (v3 << 2)).to_bytes(_LANES, "little")
    return bytes(out)


def dense_get(buf, index: int, base: int = HDR_SIZE) -> int:
    pos = base + index * BITS // 8
    fb = index * BITS & 7
    b1 = buf[pos + 1] if pos + 1 < len(buf) else 0
    return ((buf[pos] >> fb) | (b1 << (8 - fb))) & REGISTER_MAX


def dense_set(buf: bytearray, index: int, val: int, base: int = HDR_SIZE) -> None:
    pos = base + index * BITS // 8
    fb = index * BITS & 7
    fb8 = 8 - fb
    buf[pos] = (buf[pos] & ~(REGISTER_MAX << fb) & 0xFF) | ((val << fb) & 0xFF)
    if pos + 1 < len(buf):
        buf[pos + 1] = (buf[pos + 1] & ~(REGISTER_MAX >> fb8) & 0xFF) | (val >> fb8)


def reg_max(a: bytes, b: bytes) -> bytes:
    """Register-wise MAX of two 16384-byte register arrays (values < 128)."""
    x = int.from_bytes(a, "little")
    y = int.from_bytes(b, "little")
    ge = (((x | _HALL) - y) & _HALL) >> 7       # 1 in each lane where a >= b
    mask = ge * 0xFF
    return ((x & mask) | (y & ~mask & _ALL)).to_bytes(REGISTERS, "little")


_HALL = int.from_bytes(b"\x80" * REGISTERS, "little")


# ------------------------------------------------------------------ sparse
# A sparse body is cut into its opcodes (bytes of length 1 or 2) by one
# regular expression, so the Python-level work per update is a bisection
# and a list splice, not a walk over every opcode.
_OPCODE = re.compile(rb"[\x40-\x7f][\x00-\xff]|[\x00-\x3f\x80-\xff]|[\x40-\x7f]", re.S)
_SPAN: dict = {}
for _b in range(256):
    if _b & 0x80:
        _SPAN[bytes((_b,))] = (_b & 3) + 1
    elif _b & 0x40:
        _SPAN[bytes((_b,))] = ((_b & 0x3F) << 8) + 1      # cut short: Redis reads a 0
        for _b2 in range(256):
            _SPAN[bytes((_b, _b2))] = (((_b & 0x3F) << 8) | _b2) + 1
    else:
        _SPAN[bytes((_b,))] = _b + 1
del _b


def _zero_op(n: int) -> bytes:
    if n > SPARSE_ZERO_MAX_LEN:
        n -= 1
        return bytes((0x40 | (n >> 8), n & 0xFF))
    return bytes((n - 1,))


def _val_op(v: int, n: int) -> bytes:
    return bytes((0x80 | ((v - 1) << 2) | (n - 1),))


class Sparse:
    """A sparse HLL being updated: Redis's hllSparseSet on an opcode list.

    `ops` are the opcodes, `starts` the first register each covers (an
    update replaces one opcode by opcodes covering the same registers and a
    merge joins neighbours, so the other starts never move); `size` is the
    string length (header included) for the hll-sparse-max-bytes check."""

    __slots__ = ("header", "ops", "starts", "size", "complete", "max_bytes")

    def __init__(self, v, max_bytes: int) -> None:
        self.header = bytes(v[:HDR_SIZE])
        ops = self.ops = _OPCODE.findall(v, HDR_SIZE)
        self.starts = list(accumulate(map(_SPAN.__getitem__, ops), initial=0))
        self.starts.pop()
        self.complete = not ops or len(ops[-1]) == 2 or not 0x40 <= ops[-1][0] < 0x80
        self.size = len(v)
        self.max_bytes = max_bytes

    def to_bytes(self) -> bytes:
        return self.header + b"".join(self.ops)

    def set(self, index: int, count: int) -> int:
        """1 if the register was raised, 0 if not, -1 if the HLL is corrupt,
        2 if it must be promoted to dense first (the caller does that)."""
        if count > SPARSE_VAL_MAX_VALUE:
            return 2
        ops = self.ops
        starts = self.starts
        i = bisect_right(starts, index) - 1
        if i < 0:
            return -1
        op = ops[i]
        first = starts[i]
        last = first + _SPAN[op] - 1
        if index > last or (not self.complete and i == len(ops) - 1):
            return -1                     # past the last opcode: corrupt
        b = op[0]
        if b & 0x80:                      # VAL
            old = ((b >> 2) & 0x1F) + 1
            if old >= count:
                return 0
            if first == last:
                ops[i] = _val_op(count, 1)
                self._merge(i)
                return 1
            seq = []
            if index != first:
                seq.append((first, _val_op(old, index - first)))
            seq.append((index, _val_op(count, 1)))
            if index != last:
                seq.append((index + 1, _val_op(old, last - index)))
        else:                             # ZERO / XZERO
            if first == last and len(op) == 1:
                ops[i] = _val_op(count, 1)
                self._merge(i)
                return 1
            seq = []
            if index != first:
                seq.append((first, _zero_op(index - first)))
            seq.append((index, _val_op(count, 1)))
            if index != last:
                seq.append((index + 1, _zero_op(last - index)))
        delta = sum(len(o) for _, o in seq) - len(op)
        if delta > 0 and self.size + delta > self.max_bytes:
            return 2
        ops[i:i + 1] = [o for _, o in seq]
        starts[i:i + 1] = [s for s, _ in seq]
        self.size += delta
        self._merge(i)
        return 1

    def _merge(self, i: int) -> None:
        """Step 4 of hllSparseSet: merge equal adjacent VAL opcodes, scanning
        at most five opcodes from the one before the change."""
        ops = self.ops
        starts = self.starts
        j = i - 1 if i > 0 else 0
        scan = 5
        while j < len(ops) and scan:
            scan -= 1
            b = ops[j][0]
            if not b & 0x80:
                j += 1
                continue
            if j + 1 < len(ops):
                b2 = ops[j + 1][0]
                if b2 & 0x80 and (b >> 2) & 0x1F == (b2 >> 2) & 0x1F:
                    n = (b & 3) + (b2 & 3) + 2
                    if n <= SPARSE_VAL_MAX_LEN:
                        ops[j + 1] = _val_op(((b >> 2) & 0x1F) + 1, n)
                        starts[j + 1] = starts[j]
                        del ops[j]
                        del starts[j]
                        self.size -= 1
                        continue
            j += 1


def sparse_registers(v) -> bytes:
    """Register values of a sparse HLL; Corrupted if the runs do not cover
    exactly 16384 registers (VAL runs past the end stop the decoding, as
    hllSparseToDense)."""
    out = bytearray(REGISTERS)
    idx = 0
    n = len(v)
    p = HDR_SIZE
    while p < n:
        b = v[p]
        if b & 0x80:
            run = (b & 3) + 1
            if idx + run > REGISTERS:
                break
            out[idx:idx + run] = bytes((((b >> 2) & 0x1F) + 1,)) * run
            idx += run
            p += 1
        elif b & 0x40:
            b2 = v[p + 1] if p + 1 < n else 0
            idx += (((b & 0x3F) << 8) | b2) + 1
            p += 2
        else:
            idx += b + 1
            p += 1
    if idx != REGISTERS:
        raise Corrupted()
    return bytes(out)


_XZ_CANDIDATE = re.compile(rb"[\x40-\x7f]")
_ZERO_RUN = bytes(b + 1 if b < 0x40 else 0 for b in range(256))
_NOT_VAL = bytes(range(0x80))
_ONE_BYTE = [bytes((b,)) for b in range(256)]


def _sparse_histogram(v) -> tuple[list, bool]:
    """hllSparseRegHisto: (histogram, valid), without a Python-level walk:
    ZERO runs and VAL codes are counted over the whole body, then the two
    bytes of each XZERO (found from the bytes 0x40-0x7f in order) are taken
    back out and their run added."""
    body = bytes(v[HDR_SIZE:])
    n = len(body)
    zeros = sum(body.translate(_ZERO_RUN))
    vb = body.translate(None, _NOT_VAL)
    vals = [0] * 128
    for code in set(vb):
        vals[code - 0x80] = vb.count(_ONE_BYTE[code])
    nxt = -1
    for m in _XZ_CANDIDATE.finditer(body):
        p = m.start()
        if p == nxt:
            continue                       # the second byte of the XZERO at p-1
        nxt = p + 1
        lo = body[p + 1] if p + 1 < n else 0
        if p + 1 < n:
            if lo < 0x40:
                zeros -= lo + 1
            elif lo >= 0x80:
                vals[lo - 0x80] -= 1
        zeros += (((body[p] & 0x3F) << 8) | lo) + 1
    histo = [0] * 64
    histo[0] = zeros
    total = zeros
    for k, cnt in enumerate(vals):
        if cnt:
            run = cnt * ((k & 3) + 1)
            histo[(k >> 2) + 1] += run
            total += run
    return histo, total == REGISTERS


# The opcode lists of the sparse HLLs updated last, keyed by the identity of
# the bytes object they describe (held here, so the id stays unique): the
# next PFADD on the same stored value skips the parse. An entry is taken out
# while it is being changed, so a value shared by two keys (COPY) is never
# described by a modified list.
_CACHE: dict = {}
CACHE_SIZE = 16


def _parsed(v, max_bytes: int) -> Sparse:
    hit = _CACHE.pop(id(v), None)
    if hit is not None and hit[0] is v:
        sp = hit[1]
        sp.max_bytes = max_bytes
        return sp
    return Sparse(v, max_bytes)


def _remember(v: bytes, sp: Sparse) -> None:
    if len(_CACHE) >= CACHE_SIZE:
        del _CACHE[next(iter(_CACHE))]
    _CACHE[id(v)] = (v, sp)


def to_dense(v) -> bytes:
    """hllSparseToDense (header, with its cached cardinality, kept)."""
    if v[4] == DENSE:
        return bytes(v)
    regs = sparse_registers(v)
    return bytes(v[:4]) + b"\x00" + bytes(v[5:HDR_SIZE]) + dense_pack(regs)


def registers(v) -> bytes:
    """The 16384 register values of a valid HLL (Corrupted if sparse and bad)."""
    if v[4] == DENSE:
        return dense_registers(bytes(v[HDR_SIZE:]))
    return sparse_registers(v)


# ------------------------------------------------------------------ add / merge
def add(v: bytes, elements, max_bytes: int) -> tuple[bytes, int]:
    """PFADD's register updates: (new value, number of registers raised);
    raises Corrupted (after nothing was stored) if the sparse form is bad."""
    updated = 0
    if v[4] == SPARSE:
        sp = _parsed(v, max_bytes)
        it = iter(elements)
        for ele in it:
            index, count = pat_len(ele)
            r = sp.set(index, count)
            if r == 1:
                updated += 1
            elif r == -1:
                raise Corrupted()
            elif r == 2:
                # promote: the registers so far, then the dense path for the rest
                cur = sp.to_bytes()
                buf = bytearray(to_dense(cur))
                dense_set_max(buf, index, count)
                updated += 1
                for ele2 in it:
                    i2, c2 = pat_len(ele2)
                    if dense_set_max(buf, i2, c2):
                        updated += 1
                return bytes(buf), updated
        if not updated:
            _remember(v, sp)
            return v, 0
        sp.header = invalidate(sp.header)
        out = sp.to_bytes()
        _remember(out, sp)
        return out, updated
    buf = bytearray(v)
    for ele in elements:
        index, count = pat_len(ele)
        if dense_set_max(buf, index, count):
            updated += 1
    return (bytes(buf) if updated else v), updated


def dense_set_max(buf: bytearray, index: int, count: int) -> bool:
    """hllDenseSet: raise register index to count if it is lower."""
    if count > dense_get(buf, index):
        dense_set(buf, index, count)
        return True
    return False


def set_registers(v: bytes, regs: bytes, max_bytes: int, use_dense: bool) -> bytes:
    """PFMERGE's write of the merged registers into the destination value v:
    converted to dense if use_dense, then each non-zero register set (sparse
    updates in register order, promoting as Redis does)."""
    if use_dense:
        v = to_dense(v)
    if v[4] == DENSE:
        cur = dense_registers(bytes(v[HDR_SIZE:]))
        return bytes(v[:HDR_SIZE]) + dense_pack(reg_max(cur, regs))
    sp = Sparse(v, max_bytes)
    nz = [i for i in range(REGISTERS) if regs[i]] if regs.count(0) != REGISTERS else []
    for k, j in enumerate(nz):
        r = sp.set(j, regs[j])
        if r == 2:
            buf = bytearray(to_dense(sp.to_bytes()))
            for j2 in nz[k:]:
                dense_set_max(buf, j2, regs[j2])
            return bytes(buf)
    return sp.to_bytes()


# ------------------------------------------------------------------ counting
def _sigma(x: float) -> float:
    if x == 1.0:
        return math.inf
    y = 1.0
    z = x
    while True:
        x *= x
        zp = z
        z += x * y
        y += y
        if zp == z:
            return z


def _tau(x: float) -> float:
    if x == 0.0 or x == 1.0:
        return 0.0
    y = 1.0
    z = 1 - x
    while True:
        x = math.sqrt(x)
        zp = z
        y *= 0.5
        z -= (1 - x) ** 2 * y
        if zp == z:
            return z / 3


def count_histogram(histo) -> int:
    """hllCount's estimate from the register-value histogram."""
    m = float(REGISTERS)
    z = m * _tau((m - histo[Q + 1]) / m)
    for j in range(Q, 0, -1):
        z += histo[j]
        z *= 0.5
    z += m * _sigma(histo[0] / m)
    e = ALPHA_INF * m * m / z
    fl = math.floor(e)
    return int(fl) + (1 if e - fl >= 0.5 else 0)    # llroundl


def histogram(regs: bytes) -> list:
    return [regs.count(i) for i in range(64)]


def count(v) -> int:
    """hllCount of a stored HLL (Corrupted if a sparse one is invalid)."""
    if v[4] == DENSE:
        return count_histogram(histogram(dense_registers(bytes(v[HDR_SIZE:]))))
    histo, ok = _sparse_histogram(v)
    if not ok:
        raise Corrupted()
    return count_histogram(histo)


def decode_sparse(v) -> bytes:
    """PFDEBUG DECODE: "Z:16384 v:3,1 z:20 ..."."""
    out = []
    n = len(v)
    p = HDR_SIZE
    while p < n:
        b = v[p]
        if b & 0x80:
            out.append(b"v:%d,%d" % (((b >> 2) & 0x1F) + 1, (b & 3) + 1))
            p += 1
        elif b & 0x40:
            b2 = v[p + 1] if p + 1 < n else 0
            out.append(b"Z:%d" % ((((b & 0x3F) << 8) | b2) + 1))
            p += 2
        else:
            out.append(b"z:%d" % (b + 1))
            p += 1
    return b" ".join(out)
