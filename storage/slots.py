"""Key -> hash slot, as Redis Cluster computes it."""

from binascii import crc_hqx

SLOTS = 16384


# Hot paths call keyslot only for a key with a '{' (`123 in key`: an int
# needle is one memchr, while `b"{" in key` goes through the buffer protocol
# and costs ~6x more) and hash the others inline with crc_hqx.  The slots of
# recent short keys are kept: a command's key is looked up by the cluster
# routing check and again by the keyspace, and finding the tag costs more
# than a dict lookup (the key's hash, computed once, serves the slot dict's
# lookup too).  The cache is emptied when full; long keys are not kept.
_recent: dict[bytes, int] = {}
RECENT_MAX = 1024
RECENT_KEY_MAX = 128


def keyslot(key: bytes) -> int:
    """CRC16 (XMODEM) of the key, or of its hash tag, modulo 16384."""
    slot = _recent.get(key)
    if slot is not None:
        return slot
    tagged = key
    s = key.find(b"{")
    if s >= 0:
        e = key.find(b"}", s + 1)
        if e > s + 1:
            tagged = key[s + 1:e]
    slot = crc_hqx(tagged, 0) & 16383
    if len(key) <= RECENT_KEY_MAX:
        if len(_recent) >= RECENT_MAX:
            _recent.clear()
        _recent[key] = slot
    return slot


def known_slot(keys: list) -> int | None:
    """The slot of all these keys when the cache holds every one of them in
    the same slot (a MIGRATE of the keys GETKEYSINSLOT listed), else None:
    one C-level pass instead of keyslot() a key."""
    slots = set(map(_recent.get, keys))
    if len(slots) == 1:
        slot = slots.pop()
        if slot is not None:
            return slot
    return None


def remember(keys: list, slot: int) -> None:
    """Keep that these keys are in slot (CLUSTER GETKEYSINSLOT's answer,
    which the MIGRATE that follows sends back: routing finds their slot
    without hashing them).  A batch larger than half the cache is not kept."""
    if len(keys) <= RECENT_MAX // 2:
        if len(_recent) + len(keys) > RECENT_MAX:
            _recent.clear()
        _recent.update(dict.fromkeys([k for k in keys if len(k) <= RECENT_KEY_MAX], slot))


def slot_ranges(slots) -> list[tuple[int, int]]:
    """Sorted slots as inclusive (start, end) runs: {1, 2, 3, 7} -> [(1, 3), (7, 7)]."""
    out: list[tuple[int, int]] = []
    for s in sorted(slots):
        if out and out[-1][1] == s - 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out
