"""Slot bitmaps: the compact form of a set of hash slots carried on the bus.

A bitmap is 2048 bytes, bit ``slot`` set when the slot is in the set. Bit order
is Redis's ``bitmapTestBit``: byte ``slot // 8``, bit ``slot % 8`` counted from the
least significant bit.
"""

from __future__ import annotations

from typing import Iterable

CLUSTER_SLOTS = 16384
BITMAP_BYTES = CLUSTER_SLOTS // 8

EMPTY_BITMAP = bytes(BITMAP_BYTES)

# For each byte value, the bit positions that are set (0..7).
_BITS = tuple(tuple(k for k in range(8) if v >> k & 1) for v in range(256))

# One int object per slot number, shared by every slot list and set made from
# a bitmap: numbers above 256 are otherwise a fresh 28-byte object each time,
# and a simulated cluster holds a slot set per primary in every node's table.
SLOT_INTS = tuple(range(CLUSTER_SLOTS))


def bitmap_from_slots(slots: Iterable[int]) -> bytes:
    b = bytearray(BITMAP_BYTES)
    for s in slots:
        b[s >> 3] |= 1 << (s & 7)
    return bytes(b)


def slots_from_bitmap(bitmap: bytes) -> list[int]:
    """The slots set in ``bitmap``, ascending."""
    assert len(bitmap) == BITMAP_BYTES
    out: list[int] = []
    if bitmap == EMPTY_BITMAP:
        return out
    # only the span between the first and the last non-zero byte (a node's
    # slots are usually a few ranges)
    first = BITMAP_BYTES - len(bitmap.lstrip(b"\0"))
    last = len(bitmap.rstrip(b"\0"))
    ints = SLOT_INTS
    for i in range(first, last):
        byte = bitmap[i]
        if byte:
            base = i << 3
            if byte == 0xFF:
                out.extend(ints[base:base + 8])
            else:
                out.extend(ints[base + k] for k in _BITS[byte])
    return out


def slots_added(bitmap: bytes, known: bytes) -> list[int]:
    """The slots set in ``bitmap`` but not in ``known``, ascending (what a
    node claims beyond what we know it owns)."""
    diff = int.from_bytes(bitmap, "little") & ~int.from_bytes(known, "little")
    if not diff:
        return []
    return slots_from_bitmap(diff.to_bytes(BITMAP_BYTES, "little"))


def ranges_from_bitmap(bitmap: bytes) -> list[tuple[int, int]]:
    """The slots set in ``bitmap`` as ascending inclusive (start, end) ranges.
    str.find jumps from run edge to run edge at C speed: a Python loop over
    thousands of slots, or a regex trying a match at every "0", costs 3-10x more
    on the fragmented maps a rebalance leaves, and this runs on every SETSLOT."""
    v = int.from_bytes(bitmap, "little")
    if not v:
        return []
    bits = format(v, "b")[::-1]            # bits[i] == "1" iff slot i is set
    find = bits.find
    out = []
    start = find("1")
    while start != -1:
        end = find("0", start)
        if end == -1:                      # the run reaches the highest set bit
            out.append((start, len(bits) - 1))
            break
        out.append((start, end - 1))
        start = find("1", end)
    return out


def slot_count(bitmap: bytes) -> int:
    return int.from_bytes(bitmap, "little").bit_count()


def slot_ranges(slots: Iterable[int]) -> list[tuple[int, int]]:
    """Merge slots into inclusive ``(start, end)`` ranges, ascending."""
    ranges: list[tuple[int, int]] = []
    start = end = -2
    for s in sorted(slots):
        if s == end + 1:
            end = s
            continue
        if start >= 0:
            ranges.append((start, end))
        start = end = s
    if start >= 0:
        ranges.append((start, end))
    return ranges


