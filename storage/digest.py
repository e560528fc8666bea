"""DEBUG DIGEST / DEBUG DIGEST-VALUE: Redis's SHA1 digests of values and datasets.

The same construction as Redis's debug.c, so a digest taken on pynode equals
the one redis-server gives for the same data (redis-cli --cluster fix compares
DEBUG DIGEST-VALUE across two nodes before it replaces a key that exists on
both):
- xor(d, data):  d ^= SHA1(data)
- mix(d, data):  d = SHA1(d ^ SHA1(data))
- a value: mix the big-endian 32-bit type number, then the type's elements
  (DIGESTERS: type -> fn(digest, value)), then xor "!!expire!!" if the key has
  a TTL;
- the dataset: for each non-empty database, mix its number, then xor into
  the total each key's own digest (mix(key) then its value), so the order of
  keys does not matter.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Callable

from storage.valuetypes import registered

OBJ_STRING, OBJ_LIST, OBJ_SET, OBJ_ZSET, OBJ_HASH, OBJ_STREAM = 0, 1, 2, 3, 4, 6
ZERO = bytes(20)


def _sha1(data) -> bytes:
    return hashlib.sha1(data).digest()


def xor_digest(digest: bytearray, data) -> None:
    h = _sha1(data)
    for i in range(20):
        digest[i] ^= h[i]


def mix_digest(digest: bytearray, data) -> None:
    xor_digest(digest, data)
    digest[:] = _sha1(bytes(digest))


def _string(digest: bytearray, value: bytes) -> None:
    mix_digest(digest, value)


# Python value type -> (Redis type number, fn(digest, value) adding the elements)
DIGESTERS: dict[type, tuple[int, Callable[[bytearray, object], None]]] = {
    bytes: (OBJ_STRING, _string),
}


def value_digest(value, has_expire: bool, into: bytearray | None = None) -> bytearray:
    """xorObjectDigest: the digest of one value (added to `into` if given)."""
    d = into if into is not None else bytearray(20)
    entry = registered(DIGESTERS, type(value))
    if entry is None:
        raise TypeError("no digest for %s values" % type(value).__name__)
    otype, fn = entry
    mix_digest(d, struct.pack(">I", otype))
    fn(d, value)
    if has_expire:
        xor_digest(d, b"!!expire!!")
    return d


def dataset_digest(ks) -> bytes:
    """computeDatasetDigest over every database (20 zero bytes when empty)."""
    final = bytearray(20)
    for db in ks.dbs:
        if db is None or not db.size():
            continue
        mix_digest(final, struct.pack(">I", db.id))
        expires = db.expires
        for key, value, _ in db.items():
            d = bytearray(20)
            mix_digest(d, key)
            value_digest(value, key in expires, d)
            xor_digest(final, d)
    return bytes(final)
