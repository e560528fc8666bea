"""Imports every value module of storage/ so their registrations are in place.

A value module (hashes, lists, sets, zsets, streams) defines its value class
and registers it, at import time, with:
- storage.keyspace.TYPE_NAMES   (TYPE, SCAN TYPE: "hash", "list", ...)
- storage.rdb.ENCODERS/DECODERS (RDB snapshots, full sync, DUMP/RESTORE)
- storage.rewrite.register      (AOF rewrite)
The RDB and rewrite code call import_all() before they give up on a value
type, so a snapshot or rewrite works whichever modules were imported first.
"""

from __future__ import annotations

import importlib

VALUE_MODULES = ("hashes", "lists", "sets", "zsets", "streams")

_done = False


def import_all() -> None:
    global _done
    if _done:
        return
    _done = True
    for m in VALUE_MODULES:
        importlib.import_module("storage." + m)


def registered(registry: dict, key):
    """registry[key] from a value module's registry (rdb.ENCODERS, DECODERS,
    rewrite.REWRITERS, digest.DIGESTERS), importing the value modules first
    if key is not there yet; None if no module registers it."""
    entry = registry.get(key)
    if entry is None and not _done:
        import_all()
        entry = registry.get(key)
    return entry
