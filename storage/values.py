"""Value-type helpers shared by the generic key commands (COPY, OBJECT) and
the encoding thresholds every collection type converts at.

The protocol a value type may follow (all optional):
- `__deepcopy__(memo)` -> a faster independent copy (COPY uses copy.deepcopy).
- `encoding` -> the OBJECT ENCODING name ("listpack", "hashtable", ...), either a
  str attribute or a zero-argument method.
Strings are plain immutable `bytes`, so they are shared, never copied.

LIMITS holds the *-max-listpack-* / set-max-intset-entries thresholds; the
server copies them from its config at start-up and on CONFIG SET, so value
types (which know nothing of the config) convert at the points Redis does.
"""

from __future__ import annotations

import copy as _copy

INT64_MIN = -9223372036854775808
INT64_MAX = 9223372036854775807
EMBSTR_SIZE_LIMIT = 44          # OBJ_ENCODING_EMBSTR_SIZE_LIMIT
SHARED_INTEGERS = 10000         # OBJ_SHARED_INTEGERS
SHARED_REFCOUNT = 2147483647    # OBJ_SHARED_REFCOUNT (INT_MAX)


class Limits:
    """Encoding thresholds, named as the redis.conf directives (dashes -> _)."""

    DIRECTIVES = ("hash-max-listpack-entries", "hash-max-listpack-value",
                  "zset-max-listpack-entries", "zset-max-listpack-value",
                  "set-max-intset-entries", "list-max-listpack-size",
                  "list-compress-depth", "stream-node-max-bytes",
                  "stream-node-max-entries")

    def __init__(self) -> None:
        self.hash_max_listpack_entries = 512
        self.hash_max_listpack_value = 64
        self.zset_max_listpack_entries = 128
        self.zset_max_listpack_value = 64
        self.set_max_intset_entries = 512
        self.list_max_listpack_size = -2
        self.list_compress_depth = 0
        self.stream_node_max_bytes = 4096
        self.stream_node_max_entries = 100

    def load(self, get) -> None:
        """get(directive) -> int, e.g. Config.int."""
        for d in self.DIRECTIVES:
            setattr(self, d.replace("-", "_"), get(d))


LIMITS = Limits()


def dup(value):
    """An independent copy of a stored value."""
    if type(value) is bytes:
        return value
    return _copy.deepcopy(value)


def string_int(b: bytes) -> int | None:
    """The int64 a string would be encoded as by Redis (string2l), or None."""
    n = len(b)
    if n == 0 or n > 20:
        return None
    if b == b"0":
        return 0
    neg = b[0] == 45  # '-'
    digits = b[1:] if neg else b
    if not digits or not digits.isdigit() or digits[0] == 48 or not digits.isascii():
        return None
    v = int(b)
    if INT64_MIN <= v <= INT64_MAX:
        return v
    return None


def encoding(value) -> str:
    """OBJECT ENCODING for a stored value."""
    if type(value) is bytes:
        if string_int(value) is not None:
            return "int"
        return "embstr" if len(value) <= EMBSTR_SIZE_LIMIT else "raw"
    enc = getattr(value, "encoding", None)
    if callable(enc):
        enc = enc()
    if isinstance(enc, bytes):
        enc = enc.decode()
    return enc if enc else "raw"


def refcount(value, shared_ints: bool = True) -> int:
    """OBJECT REFCOUNT: small integers are shared objects in Redis."""
    if shared_ints and type(value) is bytes:
        v = string_int(value)
        if v is not None and 0 <= v < SHARED_INTEGERS:
            return SHARED_REFCOUNT
    return 1
