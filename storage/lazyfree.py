"""Freeing big values in pieces (Redis's lazyfree, in one event loop).

Redis hands a deleted value whose free effort is above 64 (UNLINK, FLUSHALL
ASYNC, the lazyfree-lazy-* settings) to a background thread.  A Python
process frees an object when its last reference goes, all at once: a list
of a million elements takes tens of milliseconds, a sorted set of a million
members a few hundred, and the event loop serves nobody meanwhile.  So a
detached value goes to a `Freer` instead, which takes it apart a bounded
piece at a time (a quicklist's nodes, a dict's items by popitem, a sorted
list's sublists, a stream's nodes) whenever the server gives it a turn
(`step(deadline)`), until the time of that turn is spent.

The value must be detached already (no key refers to it) and, as Redis
checks refcount == 1, nobody else may hold it: a value still referenced
elsewhere (RENAME's source after the move, a migration iterator) is left
whole and goes when its last holder lets go.  The counters are Redis's:
`pending` (lazyfree_pending_objects) counts the values (or, for a flushed
database, the keys) waiting, `freed` (lazyfreed_objects) those done.
"""

from __future__ import annotations

import mmap
import sys
import time
from collections import deque

from sortedcontainers import SortedDict, SortedList

from storage.hashes import Hash
from storage.lists import QuickList
from storage.sets import Set
from storage.streams import Stream
from storage.zsets import ZSet

LAZYFREE_THRESHOLD = 64        # free effort above which Redis frees in the background
PIECE = 256                    # elements freed between two looks at the clock
# Python's own cost: a value with more elements than this is taken apart in
# pieces even when Redis would free it at once (a list of few big nodes)
SMALL = 1024

_getrefcount = sys.getrefcount
_popitem = dict.popitem

# A huge string is one allocation, but returning its pages to the kernel at
# free() took 108 ms for 500 MB: its pages are given back a piece at a time
# first (madvise MADV_DONTNEED on the detached value's own buffer, which
# nothing reads any more), then free() is quick. CPython on Linux only; over
# 32 MiB, glibc's malloc always gives a buffer a mapping of its own.
HUGE_STRING = 32 << 20
STRING_PIECE = 8 << 20
PAGE = mmap.PAGESIZE
MADV_DONTNEED = 4


def _libc_madvise():
    if sys.implementation.name != "cpython" or not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.madvise
        fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        fn.restype = ctypes.c_int
        return fn
    except (OSError, AttributeError):
        return None


_madvise = _libc_madvise()
_BYTES_DATA = bytes.__basicsize__ - 1      # offset of a bytes object's first byte


def free_effort(v) -> int:
    """lazyfreeGetFreeEffort: a list's node count, a hash table's or skip
    list's size, a stream's nodes plus its groups' pending entries; 1 for a
    string or a listpack/intset encoded value (one allocation in Redis)."""
    t = type(v)
    if t is bytes:
        return 1
    if t is QuickList:
        return len(v.nodes)
    if t is Hash or t is Set or t is ZSet:
        return len(v) if v.encoding in ("hashtable", "skiplist") else 1
    if t is Stream:
        n = len(v.nodes)
        if v.groups:
            first = next(iter(v.groups.values()))
            n += len(v.groups) * (1 + len(first.pel))
        return n
    return 1


def _units(v) -> int:
    """Roughly how many objects dropping v frees (0 for a string)."""
    if type(v) is bytes:
        return 0
    try:
        return len(v)
    except TypeError:
        return 0


def _big(v) -> bool:
    """Worth freeing in pieces: many elements, or a huge string's pages."""
    if type(v) is bytes:
        return len(v) > HUGE_STRING and _madvise is not None
    return _units(v) > SMALL


def _tear(v):
    """Take v apart, yielding after every piece (about PIECE elements)."""
    t = type(v)
    if t is bytes:
        yield from _release_pages(v)
    elif t is QuickList:
        yield from _pop_lists(v.nodes)
        v.sizes.clear()
        v.count = 0
    elif t is ZSet:
        yield from _tear_dict(v.scores)
        yield from _tear_sorted(v.sl)
    elif t is Stream:
        nodes = v.nodes
        while nodes:
            nodes.pop()
            yield
        v.masters.clear()
        v.length = 0
        if v.groups:
            for g in v.groups.values():
                for cons in g.consumers.values():
                    yield from _tear_dict(cons.pel)
                yield from _tear_dict(g.consumers)
                yield from _tear_dict(g.pel)
            v.groups.clear()
    elif isinstance(v, dict):
        yield from _tear_dict(v)
        if t is Set:
            arr = v.arr
            while arr:
                del arr[-PIECE:]
                yield
    elif isinstance(v, list):
        while v:
            for _ in range(min(PIECE, len(v))):
                x = v.pop()
                if _big(x) and _getrefcount(x) == 2:
                    yield from _tear(x)
            yield
    elif isinstance(v, SortedList):
        yield from _tear_sorted(v)


def _tear_dict(d):
    """popitem in pieces; a big value inside (a flushed database's slot
    dicts) is taken apart in pieces too, when nothing else holds it."""
    while d:
        for _ in range(min(PIECE, len(d))):
            _, x = _popitem(d)
            if _big(x) and _getrefcount(x) == 2:
                yield from _tear(x)
        yield
    if isinstance(d, SortedDict):
        yield from _tear_sorted(d._list)


def _tear_db(slots: list, expires: dict, heap: list):
    while slots:
        d = slots.pop()
        if d:
            yield from _tear_dict(d)
    yield from _tear_dict(expires)
    while heap:
        del heap[-PIECE:]
        yield


def _release_pages(v: bytes):
    """The whole pages inside a huge string's buffer back to the kernel, a
    piece at a time (the first and last page stay: malloc keeps its
    bookkeeping beside the buffer)."""
    addr = id(v) + _BYTES_DATA
    start = (addr + 2 * PAGE - 1) & ~(PAGE - 1)
    end = ((addr + len(v)) & ~(PAGE - 1)) - PAGE
    while start < end:
        n = min(STRING_PIECE, end - start)
        _madvise(start, n, MADV_DONTNEED)
        start += n
        yield


def _pop_lists(lists: list):
    """A list of lists (quicklist nodes, sorted sublists), the last first."""
    n = 0
    while lists:
        n += len(lists.pop())
        if n >= PIECE:
            n = 0
            yield


def _tear_sorted(sl):
    yield from _pop_lists(sl._lists)
    sl._maxes.clear()
    sl._index.clear()
    sl._len = 0


class Freer:
    """The values waiting to be freed, taken apart a piece per step."""

    def __init__(self) -> None:
        self.jobs: deque = deque()      # [generator, counted objects]
        self.pending = 0                # lazyfree_pending_objects
        self.freed = 0                  # lazyfreed_objects (CONFIG RESETSTAT zeroes it)
        self.errors = 0                 # values whose taking apart raised (freed whole)
        # called when work arrives and none was waiting (the server then
        # gives the freer loop turns); None: free at once (no event loop)
        self.on_work = None

    def free(self, v) -> bool:
        """Free the detached value v, in pieces if it is big, as Redis's
        freeObjAsync. The caller holds exactly one reference to v (its own
        name for it) and drops it after the call. True if v was queued."""
        if _getrefcount(v) != 3:   # the caller's name, this parameter, the call's argument
            return False        # held elsewhere too (or shared): it goes with its holder
        counted = free_effort(v) > LAZYFREE_THRESHOLD
        if not counted and not _big(v):
            return False
        self._queue(_tear(v), 1 if counted else 0)
        return True

    def free_all(self, slots: list, expires: dict, heap: list, keys: int) -> None:
        """Free a flushed database's slot dicts, expiry dict and heap,
        counted as its `keys` keys (emptyDbAsync)."""
        self._queue(_tear_db(slots, expires, heap), keys)

    def _queue(self, gen, counted: int) -> None:
        self.pending += counted
        self.jobs.append([gen, counted])
        if len(self.jobs) == 1:
            if self.on_work is None:
                self.drain()
            else:
                self.on_work()

    def step(self, deadline: float) -> bool:
        """Free pieces until perf_counter() passes deadline; True while
        more remains."""
        jobs = self.jobs
        clock = time.perf_counter
        while jobs:
            job = jobs[0]
            try:
                for _ in job[0]:
                    if clock() > deadline:
                        return True
            except Exception:       # noqa: BLE001 - a shape the pieces missed:
                self.errors += 1    # the rest goes whole with the job, the queue moves on
            jobs.popleft()
            self.pending -= job[1]
            self.freed += job[1]
        return False

    def drain(self) -> None:
        """Free everything now (shutdown, no event loop)."""
        self.step(float("inf"))

    def reset_stats(self) -> None:
        self.freed = 0
