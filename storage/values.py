"""Value-type helpers shared by the generic key commands (COPY, OBJECT) and
the encoding thresholds every collection type converts at.

The protocol a value type may follow (all optional):
- `__deepcopy__(memo)` -> a faster independent copy (COPY uses copy.deepcopy).
- `encoding` -> the OBJECT ENCODING name ("listpack", "hashtable", ...), either a
  str attribute or a zero-argument method.
- `memory_usage(samples)` -> the bytes the value holds (its object and what it
  owns, not the key), estimating big collections from `samples` elements
  (0 = all), as MEMORY USAGE ... SAMPLES does. Without it, memory_usage()
  below walks the object generically (deep_size: sys.getsizeof of the object
  and what it references, containers sampled and extrapolated), which is
  slower and blind to shared or C-level storage. The same figure is what
  eviction counts as freed when it deletes the key, so a type with a compact
  or unusual layout should define it.
Strings are plain immutable `bytes`, so they are shared, never copied.

LIMITS holds the *-max-listpack-* / set-max-intset-entries thresholds; the
server copies them from its config at start-up and on CONFIG SET, so value
types (which know nothing of the config) convert at the points Redis does.
"""

from __future__ import annotations

import copy as _copy
import sys

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


# ------------------------------------------------------------------ memory
# What one key costs beyond its key and value objects: a slot-dict entry (24
# bytes plus its index share, at CPython's 2/3 load factor), measured; and
# for a key with a TTL, its expires entry, the deadline int and heap tuple.
DICT_ENTRY = 36
EXPIRE_ENTRY = DICT_ENTRY + 32 + 64 + 8


def alloc_size(n: int) -> int:
    """Bytes an object of n bytes takes from the allocator: pymalloc's
    16-byte size classes up to 512, a glibc malloc chunk (8-byte header,
    16-byte aligned) above."""
    if n <= 512:
        return (n + 15) & ~15
    return (n + 8 + 15) & ~15


def memory_usage(key: bytes, value, samples: int = 5) -> int:
    """MEMORY USAGE without the TTL: the key, its value, the dict entry."""
    n = alloc_size(sys.getsizeof(key)) + DICT_ENTRY
    if type(value) is bytes:
        return n + alloc_size(sys.getsizeof(value))
    mu = getattr(value, "memory_usage", None)
    if mu is not None:
        return n + mu(samples)
    return n + deep_size(value, samples)


_ATOMS = (bytes, str, int, float, bool, type(None))


def deep_size(obj, samples: int, depth: int = 0, seen=None) -> int:
    """Allocated size of obj and what it holds; containers are sampled
    (0 = all) and the sample average is extrapolated, as MEMORY USAGE does."""
    n = alloc_size(sys.getsizeof(obj))
    if isinstance(obj, _ATOMS) or depth > 4:
        return n
    if seen is None:
        seen = set()
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, dict):
        items = obj.items()
        total = len(obj)
        pair = True
    elif isinstance(obj, (list, tuple, set, frozenset)) or hasattr(obj, "__iter__") and \
            hasattr(obj, "__len__") and not hasattr(obj, "__dict__") and \
            not hasattr(obj, "__slots__"):
        items = obj
        try:
            total = len(obj)
        except TypeError:
            total = 0
        pair = False
    else:
        attrs = []
        if hasattr(obj, "__dict__"):
            attrs.extend(vars(obj).values())
        for cls in type(obj).__mro__:
            for s in getattr(cls, "__slots__", ()):
                if s in ("__weakref__", "__dict__"):
                    continue
                try:
                    attrs.append(getattr(obj, s))
                except AttributeError:
                    pass
        return n + sum(deep_size(a, samples, depth + 1, seen) for a in attrs)
    sampled = 0
    acc = 0
    for it in items:
        if pair:
            acc += deep_size(it[0], samples, depth + 1, seen) + \
                deep_size(it[1], samples, depth + 1, seen)
        else:
            acc += deep_size(it, samples, depth + 1, seen)
        sampled += 1
        if samples and sampled >= samples:
            break
    if sampled and total > sampled:
        acc = acc * total // sampled
    return n + acc
