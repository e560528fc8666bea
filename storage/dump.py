"""DUMP / RESTORE payloads: one serializer for every value type.

The payload is Redis's own: the RDB type byte and the RDB encoding of the
value (storage/rdb.py and each value module's registered codec), then the
RDB version as 2 bytes little-endian, then the CRC64 of all of that as 8
bytes little-endian.  So a payload from DUMP on redis-server 7.0 RESTOREs
here and the reverse; the value encodings are Redis 7.0's (listpack, intset,
...) and strings over 20 bytes are LZF-compressed when rdbcompression is on
(liblzf's output), so a DUMP is byte-identical to redis-server's for the
same value.
"""

from __future__ import annotations

import struct

from storage import rdb


class DumpError(Exception):
    """A payload RESTORE refuses: the message is the error reply's text."""


BAD_VERSION_OR_CRC = "ERR DUMP payload version or checksum are wrong"
BAD_FORMAT = "ERR Bad data format"


_VERSION = struct.pack("<H", rdb.RDB_VERSION)
_STRING = bytes((rdb.TYPE_STRING,))
_crc64 = rdb.crc64_of
_crc64_short = rdb.crc64_short_fn       # fn(data, 0, _TABLE)
_TABLE = rdb.SHORT_TABLE
_SHORT = rdb.SHORT_CRC
_pack_crc = struct.Struct("<Q").pack
_unpack_tail = struct.Struct("<HQ").unpack_from


def dumps(value) -> bytes:
    """The DUMP payload of a stored value."""
    return dumps_run((value,))[0]


def dumps_run(values) -> list:
    """The DUMP payload of each value (a MIGRATE's batch)."""
    out = []
    append = out.append
    crc = _crc64_short
    table = _TABLE
    for value in values:
        if type(value) is bytes:
            n = len(value)
            if n <= 20 and (n > 11 or not n or (value[0] != 45 and not 48 <= value[0] <= 57)):
                # a short string that cannot read as an integer (over 11 bytes,
                # or not starting with '-' or a digit) and is too short for
                # LZF: its length byte and itself, as encode_string writes it
                body = b"%s%c%s%s" % (_STRING, n, value, _VERSION)
                append(body + _pack_crc(crc(body, 0, table)))
                continue
            body = _STRING + rdb.encode_string(value) + _VERSION
        else:
            rtype, payload = rdb.encode_value(value)
            body = bytes((rtype,)) + payload + _VERSION
        append(body + _pack_crc(_crc64(body)))
    return out


def verify(payload: bytes, check_crc: bool | None = None) -> None:
    """verifyDumpPayload: a known RDB version and a matching CRC64 (unless
    checksums are off: DEBUG SET-SKIP-CHECKSUM-VALIDATION 1)."""
    if check_crc is None:
        check_crc = rdb.checksum_validation
    n = len(payload)
    if n < 10:
        raise DumpError(BAD_VERSION_OR_CRC)
    ver, stored = _unpack_tail(payload, n - 10)
    if ver > rdb.RDB_VERSION:
        raise DumpError(BAD_VERSION_OR_CRC)
    if check_crc and (_crc64_short(payload[:n - 8], 0, _TABLE) if n <= _SHORT + 8
                      else _crc64(payload[:n - 8])) != stored:
        raise DumpError(BAD_VERSION_OR_CRC)


def loads(payload: bytes, check_crc: bool | None = None):
    """The value of a DUMP payload; DumpError with Redis's text if it is not one."""
    verify(payload, check_crc)
    n = len(payload)
    if payload[0] == 0 and n > 11 and payload[1] < 64 and payload[1] == n - 12:
        return payload[2:n - 10]          # a short plain string: the common case
    body = memoryview(payload)[:n - 10]
    if not body:
        raise DumpError(BAD_FORMAT)
    r = rdb.Reader(body)
    rtype = r.byte()
    dec = rdb.decoder(rtype)
    if dec is None:
        raise DumpError(BAD_FORMAT)
    try:
        value = dec(r)
    except (rdb.RDBError, ValueError, IndexError, struct.error):
        raise DumpError(BAD_FORMAT) from None
    if value is None:
        raise DumpError(BAD_FORMAT)      # an empty collection (Redis's empty key)
    if r.pos != len(body):
        raise DumpError(BAD_FORMAT)      # trailing bytes inside a valid CRC
    return value


def loads_run(payloads: list) -> list:
    """loads() of each payload in order while they load: the values of the
    longest prefix that does (the caller leaves the payload that fails, if
    any, to loads() for its error).  A short plain string (what a slot's
    move mostly carries) is checked and sliced here without a call."""
    out = []
    append = out.append
    check_crc = rdb.checksum_validation
    crc = _crc64_short
    table = _TABLE
    version = rdb.RDB_VERSION
    unpack = _unpack_tail
    for payload in payloads:
        n = len(payload)
        if 11 < n <= _SHORT + 8 and payload[0] == 0 and payload[1] == n - 12:
            # (n - 12 < 53: the length byte of a string under 64 bytes)
            ver, stored = unpack(payload, n - 10)
            if ver > version or (check_crc and crc(payload[:n - 8], 0, table) != stored):
                break
            append(payload[2:n - 10])
        else:
            try:
                append(loads(payload, check_crc))
            except DumpError:
                break
    return out
