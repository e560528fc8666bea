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
