"""Key -> hash slot, as Redis Cluster computes it."""

from binascii import crc_hqx

SLOTS = 16384


# Hot paths call keyslot only for a key with a '{' (`123 in key`: an int
# needle is one memchr, while `b"{" in key` goes through the buffer protocol
# and costs ~6x more) and hash the others inline with crc_hqx.  The slot of
# the last key object asked is kept: a command's key is looked up by the
# cluster routing check and again by the keyspace, the same bytes object.
_last = (b"", 0)


def keyslot(key: bytes) -> int:
    """CRC16 (XMODEM) of the key, or of its hash tag, modulo 16384."""
    global _last
    last = _last
    if last[0] is key:
        return last[1]
    tagged = key
    s = key.find(b"{")
    if s >= 0:
        e = key.find(b"}", s + 1)
        if e > s + 1:
            tagged = key[s + 1:e]
    slot = crc_hqx(tagged, 0) & 16383
    _last = (key, slot)
    return slot


def slot_ranges(slots) -> list[tuple[int, int]]:
    """Sorted slots as inclusive (start, end) runs: {1, 2, 3, 7} -> [(1, 3), (7, 7)]."""
    out: list[tuple[int, int]] = []
    for s in sorted(slots):
        if out and out[-1][1] == s - 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out
