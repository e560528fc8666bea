"""Key -> hash slot, as Redis Cluster computes it."""

from binascii import crc_hqx

SLOTS = 16384


def keyslot(key: bytes) -> int:
    """CRC16 (XMODEM) of the key, or of its hash tag, modulo 16384."""
    s = key.find(b"{")
    if s >= 0:
        e = key.find(b"}", s + 1)
        if e > s + 1:
            key = key[s + 1:e]
    return crc_hqx(key, 0) & 16383


def slot_ranges(slots) -> list[tuple[int, int]]:
    """Sorted slots as inclusive (start, end) runs: {1, 2, 3, 7} -> [(1, 3), (7, 7)]."""
    out: list[tuple[int, int]] = []
    for s in sorted(slots):
        if out and out[-1][1] == s - 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out
