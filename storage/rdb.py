"""Redis's RDB snapshot format (version 10, as written by Redis 7.0).

Used by replication: the full-sync payload a primary sends is an RDB file, so
a real redis-server replica can sync from pynode and the reverse.

Layout: "REDIS0010", aux fields (0xFA key value), then per non-empty database
SELECTDB (0xFE dbid) and RESIZEDB (0xFB size expires), then per key an
optional EXPIRETIME_MS (0xFC 8-byte LE ms), a value type byte, the key string
and the value; EOF (0xFF) and the CRC64 (Jones polynomial, reflected, 8 bytes
little-endian) of everything before it.  A stored checksum of 0 means
"rdbchecksum no" and is not verified.

Value types are a registry: ENCODERS maps a Python value type to
fn(value) -> (RDB type byte, payload bytes) (the type byte may depend on the
value's encoding, e.g. a small hash is written as a listpack); DECODERS maps an
RDB type byte to fn(reader) -> value, or None for an empty collection (Redis
skips such keys).  Blobs inside values (listpacks, intsets) are written with
encode_blob(); every string is written as rdbSaveRawString does (int forms,
LZF when COMPRESSION, rdbcompression, is on), so DUMP payloads match Redis's
bytes.
Each value module of storage/ registers its own (storage/valuetypes.py
imports them all); the loader stops with a clear RDBError on a type nobody
registered.  The same per-value encoding is DUMP's payload (storage/dump.py).
Strings are loaded in every encoding Redis writes (plain, int8/16/32,
LZF-compressed).  load() reports its progress (the offset reached) every
`progress_every` bytes, so a caller can serve clients while a big file loads.
"""

from __future__ import annotations

import struct
from typing import Callable

RDB_VERSION = 10

# False after DEBUG SET-SKIP-CHECKSUM-VALIDATION 1: RDB files and DUMP payloads
# load without their CRC64 being checked.
checksum_validation = True
MAGIC = b"REDIS%04d" % RDB_VERSION

# opcodes
OP_FUNCTION2 = 0xF5
OP_FUNCTION = 0xF6
OP_MODULE_AUX = 0xF7
OP_IDLE = 0xF8
OP_FREQ = 0xF9
OP_AUX = 0xFA
OP_RESIZEDB = 0xFB
OP_EXPIRETIME_MS = 0xFC
OP_EXPIRETIME = 0xFD
OP_SELECTDB = 0xFE
OP_EOF = 0xFF

TYPE_STRING = 0
# RDB type byte -> name, for error messages about types not loadable yet
TYPE_NAMES = {
    0: "string", 1: "list", 2: "set", 3: "zset", 4: "hash", 5: "zset (zset2)",
    6: "module (pre-GA)", 7: "module", 9: "hash (zipmap)", 10: "list (ziplist)",
    11: "set (intset)", 12: "zset (ziplist)", 13: "hash (ziplist)", 14: "list (quicklist)",
    15: "stream (listpacks)", 16: "hash (listpack)", 17: "zset (listpack)",
    18: "list (quicklist2)", 19: "stream (listpacks2)",
}

ENC_INT8, ENC_INT16, ENC_INT32, ENC_LZF = 0, 1, 2, 3


class RDBError(Exception):
    """A file or payload that cannot be loaded: the message says where and why."""


# ------------------------------------------------------------------ CRC64
# Redis's crc64: Jones polynomial 0xad93d23594c935a9, reflected in and out,
# init 0, no final xor.  crc64(0, b"123456789") == 0xe9c6d914c4b8d9ca.
# anycrc (a compiled wheel) computes it ~2000x faster than the table loop
# below, which stays as the fallback where the wheel cannot be installed.
_POLY_REFLECTED = int("{:064b}".format(0xAD93D23594C935A9)[::-1], 2)


def _make_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY_REFLECTED if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _make_table()


def crc64_python(crc: int, data) -> int:
    table = _TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


try:
    import anycrc as _anycrc
    _MODEL = _anycrc.Model("CRC64-REDIS")

    def crc64(crc: int, data) -> int:
        return _MODEL.calc(data, crc) if crc else _MODEL.calc(data)
    # crc64(0, data) in one call (a DUMP payload's: one a key moved)
    crc64_of = _MODEL.calc
except ImportError:  # pragma: no cover - the pure-Python path
    crc64 = crc64_python

    def crc64_of(data) -> int:
        return crc64_python(0, data)

# crc64_of for a short payload (a small string's DUMP, up to SHORT_CRC bytes).
# anycrc's call costs ~0.45 us at any size (it builds a typed memoryview);
# crcmod's compiled function (the `fast` extra, like python-lzf) ~0.2 us up
# to ~64 bytes, growing with the length past that, where anycrc wins.
SHORT_CRC = 64
try:
    import crcmod
    import crcmod._crcfunext  # noqa: F401 - only the compiled form is faster
    crc64_short = crcmod.mkCrcFun(0x1AD93D23594C935A9, initCrc=0, rev=True, xorOut=0)
    # the compiled function itself, fn(data, crc, table), for loops over many
    # short payloads (a run of RESTOREs): crcmod's wrapper adds ~50 ns a call
    from crcmod._crcfunext import _crc64r as crc64_short_fn
    SHORT_TABLE = struct.pack("256Q", *_TABLE)
except ImportError:  # pragma: no cover - without the `fast` extra
    crc64_short = crc64_of
    SHORT_TABLE = b""

    def crc64_short_fn(data, crc: int, table) -> int:
        return crc64(crc, data)


# ------------------------------------------------------------------ LZF
def lzf_decompress(data, ulen: int) -> bytes:
    """liblzf's lzf_decompress (what Redis uses for rdbcompression)."""
    out = bytearray()
    ip = 0
    n = len(data)
    while ip < n:
        ctrl = data[ip]
        ip += 1
        if ctrl < 32:                       # literal run of ctrl + 1 bytes
            ctrl += 1
            if ip + ctrl > n:
                raise RDBError("LZF: literal run past the end of the input")
            out += data[ip:ip + ctrl]
            ip += ctrl
        else:                               # back reference
            length = ctrl >> 5
            if length == 7:
                if ip >= n:
                    raise RDBError("LZF: truncated back reference")
                length += data[ip]
                ip += 1
            if ip >= n:
                raise RDBError("LZF: truncated back reference")
            ref = len(out) - ((ctrl & 0x1F) << 8) - data[ip] - 1
            ip += 1
            if ref < 0:
                raise RDBError("LZF: back reference before the start of the output")
            length += 2
            if ref + length <= len(out):
                out += out[ref:ref + length]
            else:                           # overlapping copy, byte by byte
                for i in range(length):
                    out.append(out[ref + i])
    if len(out) != ulen:
        raise RDBError("LZF: decompressed %d bytes, expected %d" % (len(out), ulen))
    return bytes(out)


# LZF compression of strings longer than 20 bytes, as rdbcompression yes,
# and the CRC64 at the end of a file, as rdbchecksum yes (0 written when off,
# as Redis; DUMP payloads always carry theirs).  The server sets both from
# its config.
COMPRESSION = True
CHECKSUM = True

_LZF_HSIZE = 1 << 16
_LZF_MAX_LIT = 32
_LZF_MAX_OFF = 1 << 13
_LZF_MAX_REF = (1 << 8) + (1 << 3)


def lzf_compress_python(data, out_len: int) -> bytes | None:
    """liblzf's lzf_compress as Redis builds it (HLOG 16, VERY_FAST): the same
    output bytes for the same input, or None when the result would not fit
    in out_len bytes.  The hash table starts empty (liblzf leaves it
    uninitialized; a stale entry can only ever turn a literal into an
    equally valid back reference).  ~1 ms per KB: python-lzf (the same
    liblzf 3.6 with the same settings, compiled) is used when installed."""
    in_len = len(data)
    if not in_len or not out_len:
        return None
    htab = [0] * _LZF_HSIZE          # 0: no entry (position 0 is never referenced)
    out = bytearray(b"\0")           # the first literal run's length byte
    lit = 0
    ip = 0
    end2 = in_len - 2
    hval = (data[0] << 8) | data[1] if in_len > 1 else data[0] << 8
    while ip < end2:
        hval = ((hval << 8) | data[ip + 2]) & 0xFFFFFF
        slot = ((hval >> 8) - hval * 5) & 0xFFFF
        ref = htab[slot]
        htab[slot] = ip
        off = ip - ref - 1
        if (ref > 0 and off < _LZF_MAX_OFF and data[ref + 2] == data[ip + 2]
                and data[ref] == data[ip] and data[ref + 1] == data[ip + 1]):
            maxlen = in_len - ip - 2
            if maxlen > _LZF_MAX_REF:
                maxlen = _LZF_MAX_REF
            op = len(out)
            if op + 4 >= out_len and op - (lit == 0) + 4 >= out_len:
                return None
            if lit:
                out[-lit - 1] = lit - 1          # stop the literal run
            else:
                del out[-1]                      # undo an empty run
            ln = 2
            done = False
            if maxlen > 16:
                for _ in range(16):
                    ln += 1
                    if data[ref + ln] != data[ip + ln]:
                        done = True
                        break
            if not done:
                ln += 1
                while ln < maxlen and data[ref + ln] == data[ip + ln]:
                    ln += 1
            ln -= 2
            ip += 1
            if ln < 7:
                out.append((off >> 8) + (ln << 5))
            else:
                out.append((off >> 8) + (7 << 5))
                out.append(ln - 7)
            out.append(off & 0xFF)
            lit = 0
            out.append(0)                        # start a run
            ip += ln + 1
            if ip >= end2:
                break
            ip -= 2
            hval = (data[ip] << 8) | data[ip + 1]
            hval = ((hval << 8) | data[ip + 2]) & 0xFFFFFF
            htab[((hval >> 8) - hval * 5) & 0xFFFF] = ip
            ip += 1
            hval = ((hval << 8) | data[ip + 2]) & 0xFFFFFF
            htab[((hval >> 8) - hval * 5) & 0xFFFF] = ip
            ip += 1
        else:
            if len(out) >= out_len:
                return None
            lit += 1
            out.append(data[ip])
            ip += 1
            if lit == _LZF_MAX_LIT:
                out[-lit - 1] = lit - 1
                lit = 0
                out.append(0)
    if len(out) + 3 > out_len:
        return None
    while ip < in_len:
        lit += 1
        out.append(data[ip])
        ip += 1
        if lit == _LZF_MAX_LIT:
            out[-lit - 1] = lit - 1
            lit = 0
            out.append(0)
    if lit:
        out[-lit - 1] = lit - 1
    else:
        del out[-1]
    return bytes(out)


try:
    import lzf as _lzf

    def lzf_compress(data, out_len: int) -> bytes | None:
        if out_len < 2:
            return lzf_compress_python(data, out_len)
        # python-lzf passes max_length + 1 to lzf_compress as the output size
        return _lzf.compress(bytes(data), out_len - 1)
    LZF_PLAIN_ABOVE = 1 << 62
except ImportError:  # pragma: no cover - the pure-Python path
    lzf_compress = lzf_compress_python
    LZF_PLAIN_ABOVE = 1 << 16


# ------------------------------------------------------------------ writing
def encode_length(n: int) -> bytes:
    if n < 1 << 6:
        return bytes((n,))
    if n < 1 << 14:
        return bytes((0x40 | (n >> 8), n & 0xFF))
    if n <= 0xFFFFFFFF:
        return b"\x80" + struct.pack(">I", n)
    return b"\x81" + struct.pack(">Q", n)


def _int_encoding(s: bytes) -> bytes | None:
    """rdbTryIntegerEncoding: the int form if s is a canonical int32 (len <= 11)."""
    if not s or len(s) > 11:
        return None
    try:
        v = int(s)
    except ValueError:
        return None
    if b"%d" % v != s:
        return None
    if -(1 << 7) <= v < 1 << 7:
        return bytes((0xC0 | ENC_INT8,)) + struct.pack("<b", v)
    if -(1 << 15) <= v < 1 << 15:
        return bytes((0xC0 | ENC_INT16,)) + struct.pack("<h", v)
    if -(1 << 31) <= v < 1 << 31:
        return bytes((0xC0 | ENC_INT32,)) + struct.pack("<i", v)
    return None


def encode_string(s: bytes) -> bytes:
    """rdbSaveRawString: integer-encoded if it reads as one, else
    LZF-compressed when COMPRESSION (rdbcompression) is on, it is longer than
    20 bytes and it shrinks by 4 bytes or more, else plain.  Every string
    Redis writes goes this way: keys, values, aux fields, elements, blobs
    (listpacks, intsets), so DUMP payloads match Redis's bytes.  With only
    the pure-Python compressor, strings over LZF_PLAIN_ABOVE are written
    plain (valid, loads everywhere; too slow to compress)."""
    n = len(s)
    if n <= 11 and n and (s[0] == 45 or 48 <= s[0] <= 57):   # '-' or a digit
        e = _int_encoding(s)
        if e is not None:
            return e
    if n > 20 and COMPRESSION and n <= LZF_PLAIN_ABOVE:
        c = lzf_compress(s, n - 4)
        if c is not None:
            return b"\xc3" + encode_length(len(c)) + encode_length(n) + c
    if n < 64:
        return bytes((n,)) + s
    return encode_length(n) + s


def encode_blob(s: bytes) -> bytes:
    """A blob (a listpack, an intset...): rdbSaveRawString, compressed
    whatever its size."""
    n = len(s)
    if n <= 11:
        e = _int_encoding(s)
        if e is not None:
            return e
    if COMPRESSION and n > 20:
        c = lzf_compress(s, n - 4)
        if c is not None:
            return b"\xc3" + encode_length(len(c)) + encode_length(n) + c
    return encode_length(n) + s


def _encode_string_value(s: bytes) -> tuple[int, bytes]:
    return TYPE_STRING, encode_string(s)


# Python value type -> fn(value) -> (RDB type byte, payload)
ENCODERS: dict[type, Callable[[object], tuple[int, bytes]]] = {
    bytes: _encode_string_value,
}


def encode_value(value) -> tuple[int, bytes]:
    """(RDB type byte, payload) of one stored value."""
    from storage.valuetypes import registered
    enc = registered(ENCODERS, type(value))
    if enc is None:
        raise RDBError("no RDB encoder for %s values" % type(value).__name__)
    return enc(value)


def _aux(key: str, value) -> bytes:
    if isinstance(value, int):
        value = b"%d" % value
    elif isinstance(value, str):
        value = value.encode()
    return bytes((OP_AUX,)) + encode_string(key.encode()) + encode_string(value)


class _Writer:
    """Buffers output, keeps the running CRC, hands chunks to write()."""

    def __init__(self, write: Callable[[bytes], object], checksum: bool = True) -> None:
        self.write = write
        self.buf = bytearray()
        self.crc = 0
        self.checksum = checksum

    def add(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) >= 1 << 16:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            data = bytes(self.buf)
            self.buf.clear()
            if self.checksum:
                self.crc = crc64(self.crc, data)
            self.write(data)


def function_record(code: bytes) -> bytes:
    """One function library as RDB_OPCODE_FUNCTION2 + its code (rdbSaveFunctions)."""
    return bytes((OP_FUNCTION2,)) + encode_string(code)


def clock_record(idle_s: int, freq: int) -> bytes:
    """RDB_OPCODE_IDLE <seconds> and/or RDB_OPCODE_FREQ <counter> before a
    key (-1: not written), as Redis writes them under an LRU / LFU policy."""
    out = b""
    if idle_s >= 0:
        out += bytes((OP_IDLE,)) + encode_length(idle_s)
    if freq >= 0:
        out += bytes((OP_FREQ, freq))
    return out


def dump(dbs, write: Callable[[bytes], object], aux: dict | None = None,
         functions: list[bytes] | None = None,
         after_key: Callable[[], object] | None = None,
         key_clock: Callable[[object, bytes], bytes] | None = None) -> int:
    """Write an RDB of `dbs` (a sequence of Database or None, indexed by db
    number, whose .items() yields (key, value, expire_ms or -1)) through
    write(bytes).  `aux` fields are written in order after the header, then
    the code of each function library in `functions`, then the keys;
    key_clock(db, key) gives the bytes written after a key's expiry (its
    clock_record); after_key() is called after each (rdb-key-save-delay).
    Returns the number of keys written."""
    w = _Writer(write, CHECKSUM)
    w.add(MAGIC)
    for k, v in (aux or {}).items():
        w.add(_aux(k, v))
    for code in functions or ():
        w.add(function_record(code))
    nkeys = 0
    for dbid, db in enumerate(dbs):
        if db is None:
            continue
        size = db.size()
        if not size:
            continue
        w.add(bytes((OP_SELECTDB,)) + encode_length(dbid))
        w.add(bytes((OP_RESIZEDB,)) + encode_length(size) + encode_length(len(db.expires)))
        for key, value, expire in db.items():
            if type(value) is bytes:
                rtype, payload = TYPE_STRING, encode_string(value)
            else:
                try:
                    rtype, payload = encode_value(value)
                except RDBError as e:
                    raise RDBError("cannot write key %r: %s" % (key, e)) from None
            if expire != -1:
                w.add(bytes((OP_EXPIRETIME_MS,)) + struct.pack("<q", expire))
            if key_clock is not None:
                w.add(key_clock(db, key))
            w.add(bytes((rtype,)) + encode_string(key) + payload)
            nkeys += 1
            if after_key is not None:
                after_key()
    w.add(bytes((OP_EOF,)))
    w.flush()
    write(struct.pack("<Q", w.crc))
    return nkeys


def dumps(dbs, aux: dict | None = None) -> bytes:
    out: list[bytes] = []
    dump(dbs, out.append, aux)
    return b"".join(out)


# ------------------------------------------------------------------ reading
class Reader:
    """A cursor over an RDB payload; every read checks the bounds."""

    __slots__ = ("data", "pos")

    def __init__(self, data) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int):
        p = self.pos
        if p + n > len(self.data):
            raise RDBError("unexpected end of the RDB at offset %d (wanted %d bytes)" % (p, n))
        self.pos = p + n
        return self.data[p:p + n]

    def byte(self) -> int:
        p = self.pos
        if p >= len(self.data):
            raise RDBError("unexpected end of the RDB at offset %d" % p)
        self.pos = p + 1
        return self.data[p]

    def length(self) -> tuple[int, bool]:
        """(length, is_encoded): is_encoded means a special string encoding."""
        b = self.byte()
        kind = b >> 6
        if kind == 0:
            return b & 0x3F, False
        if kind == 1:
            return ((b & 0x3F) << 8) | self.byte(), False
        if kind == 3:
            return b & 0x3F, True
        if b == 0x80:
            return struct.unpack(">I", self.take(4))[0], False
        if b == 0x81:
            return struct.unpack(">Q", self.take(8))[0], False
        raise RDBError("unknown length encoding 0x%02x at offset %d" % (b, self.pos - 1))

    def plain_length(self) -> int:
        n, enc = self.length()
        if enc:
            raise RDBError("unexpected string encoding at offset %d" % (self.pos - 1))
        return n

    def string(self) -> bytes:
        n, enc = self.length()
        if not enc:
            return bytes(self.take(n))
        if n == ENC_INT8:
            return b"%d" % struct.unpack("<b", self.take(1))[0]
        if n == ENC_INT16:
            return b"%d" % struct.unpack("<h", self.take(2))[0]
        if n == ENC_INT32:
            return b"%d" % struct.unpack("<i", self.take(4))[0]
        if n == ENC_LZF:
            clen = self.plain_length()
            ulen = self.plain_length()
            return lzf_decompress(self.take(clen), ulen)
        raise RDBError("unknown string encoding %d at offset %d" % (n, self.pos - 1))


def _decode_string(r: Reader) -> bytes:
    return r.string()


def decoder(rtype: int) -> Callable[[Reader], object] | None:
    """The loader of one RDB value type, or None if no value module has it."""
    from storage.valuetypes import registered
    return registered(DECODERS, rtype)


# RDB type byte -> fn(reader) -> value
DECODERS: dict[int, Callable[[Reader], object]] = {
    TYPE_STRING: _decode_string,
}


def load(data, on_key: Callable[[int, bytes, object, int], object],
         on_aux: Callable[[bytes, bytes], object] | None = None,
         name: str = "RDB", on_function: Callable[[bytes], object] | None = None,
         progress: Callable[[int], object] | None = None,
         progress_every: int = 2 << 20,
         on_clock: Callable[[int, bytes, int, int], object] | None = None) -> int:
    """Parse an RDB payload; on_key(dbid, key, value, expire_ms or -1) for each
    key, then on_clock(dbid, key, idle seconds or -1, LFU counter or -1) for a
    key saved with its LRU/LFU info (RDB_OPCODE_IDLE / RDB_OPCODE_FREQ),
    on_function(code) for each function library, progress(offset) after
    a key each time `progress_every` more bytes were read.  Raises RDBError (with
    the offset and the reason) on anything it cannot load: bad magic, unknown
    version, value types without a decoder, functions without on_function,
    truncation, checksum mismatch.  Returns the number of keys."""
    r = Reader(memoryview(data) if not isinstance(data, memoryview) else data)
    magic = bytes(r.take(9)) if len(data) >= 9 else b""
    if magic[:5] != b"REDIS":
        raise RDBError("%s: wrong signature trying to load the DB (not an RDB file)" % name)
    try:
        ver = int(magic[5:])
    except ValueError:
        raise RDBError("%s: bad RDB version field %r" % (name, magic[5:])) from None
    if ver < 1 or ver > RDB_VERSION:
        raise RDBError("%s: can't handle RDB format version %d" % (name, ver))
    dbid = 0
    expire = idle = freq = -1
    nkeys = 0
    next_progress = progress_every if progress is not None else 1 << 62
    try:
        while True:
            t = r.byte()
            if t == OP_EXPIRETIME_MS:
                expire = struct.unpack("<q", r.take(8))[0]
                continue
            if t == OP_EXPIRETIME:
                expire = struct.unpack("<i", r.take(4))[0] * 1000
                continue
            if t == OP_IDLE:
                idle = r.plain_length()
                continue
            if t == OP_FREQ:
                freq = r.byte()
                continue
            if t == OP_SELECTDB:
                dbid = r.plain_length()
                continue
            if t == OP_RESIZEDB:
                r.plain_length()
                r.plain_length()
                continue
            if t == OP_AUX:
                k = r.string()
                v = r.string()
                if on_aux is not None:
                    on_aux(k, v)
                continue
            if t == OP_EOF:
                break
            if t == OP_FUNCTION2 and on_function is not None:
                on_function(r.string())
                continue
            if t in (OP_FUNCTION, OP_FUNCTION2, OP_MODULE_AUX):
                raise RDBError("%s: opcode 0x%02x (%s) at offset %d is not supported here"
                               % (name, t, "module aux data" if t == OP_MODULE_AUX else
                                  "pre-GA function format" if t == OP_FUNCTION else
                                  "functions", r.pos - 1))
            dec = decoder(t)
            if dec is None:
                raise RDBError("%s: value type %d (%s) at offset %d is not supported by pynode"
                               % (name, t, TYPE_NAMES.get(t, "unknown"), r.pos - 1))
            key = r.string()
            value = dec(r)
            if value is None:        # an empty collection: Redis skips the key
                expire = idle = freq = -1
                continue
            on_key(dbid, key, value, expire)
            if (idle != -1 or freq != -1) and on_clock is not None:
                on_clock(dbid, key, idle, freq)
            expire = idle = freq = -1
            nkeys += 1
            if r.pos >= next_progress:
                progress(r.pos)
                next_progress = r.pos + progress_every
        end = r.pos
        if ver >= 5:
            stored = struct.unpack("<Q", r.take(8))[0]
            if stored and checksum_validation:
                actual = crc64(0, data[:end])
                if actual != stored:
                    raise RDBError("%s: RDB CRC64 checksum mismatch (stored %016x, computed "
                                   "%016x)" % (name, stored, actual))
    except RDBError as e:
        if str(e).startswith(name):
            raise
        raise RDBError("%s: %s" % (name, e)) from None
    return nkeys
