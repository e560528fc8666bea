"""Streams: the value type, its RDB encoding and its AOF rewrite (Redis 7.0 t_stream.c).

Layout as Redis keeps it, so that DUMP, full syncs and XINFO agree with
redis-server byte for byte: a stream is a sequence of *nodes*, each one what
Redis stores as a listpack under a radix-tree key.  A node has a master id
(the id of the first entry ever added to it, the rax key), the master fields
(the field names of that first entry) and its entries in id order, including
the ones deleted by XDEL/XTRIM: Redis only flags them (tombstones) and keeps
them until the whole node goes.  A new node starts when the tail node holds
stream-node-max-entries entries (live + deleted) or when appending would take
its listpack to stream-node-max-bytes; the listpack size is tracked exactly
(`Node.body`), so node boundaries fall where Redis puts them.

An id is one int, ms << 64 | seq: comparisons, bisect and sorting are native.
Node lookups bisect the list of master ids, entries bisect the node's id
list: O(log n) range access.  Nodes are only created at the tail and removed
(XTRIM from the head, XDEL when a node empties), so plain lists suffice.

Consumer groups: name -> Group (last delivered id, entries_read - the logical
read counter, -1 when unknown -, the PEL: a SortedDict id -> Nack, and the
consumers).  A Nack (delivery time, delivery count, owner) is shared by the
group PEL and its consumer's PEL, as in Redis.  Names are kept in dicts and
sorted when listed: Redis's rax order is plain byte order.
"""

from __future__ import annotations

import struct
from bisect import bisect_left, bisect_right

from sortedcontainers import SortedDict

from storage import rdb, rewrite
from storage.keyspace import TYPE_NAMES
from storage.listpack import lp_decode_raw, lp_encode
from storage.values import LIMITS, string_int

MASK = 0xFFFFFFFFFFFFFFFF
MAX_ID = (1 << 128) - 1
INT64_MIN = -(1 << 63)
_HALF = 1 << 63
LISTPACK_MAX_SIZE = 1 << 30          # STREAM_LISTPACK_MAX_SIZE
INVALID = -1                          # SCG_INVALID_ENTRIES_READ

F_DELETED = 1
F_SAMEFIELDS = 2

RDB_TYPE_STREAM_LISTPACKS = 15
RDB_TYPE_STREAM_LISTPACKS_2 = 19


def fmt_id(i: int) -> bytes:
    return b"%d-%d" % (i >> 64, i & MASK)


def make_id(ms: int, seq: int) -> int:
    return (ms << 64) | seq


def _delta(a: int, b: int) -> int:
    """a - b as Redis stores an id part delta: uint64 arithmetic read back as int64."""
    d = (a - b) & MASK
    return d - (1 << 64) if d >> 63 else d


# ------------------------------------------------------------------ listpack sizes
def isz(v: int) -> int:
    """Bytes of a listpack integer entry (encoding + backlen)."""
    if 0 <= v <= 127:
        return 2
    if -4096 <= v <= 4095:
        return 3
    if -32768 <= v <= 32767:
        return 4
    if -8388608 <= v <= 8388607:
        return 5
    if -2147483648 <= v <= 2147483647:
        return 6
    return 10


def _blsz(n: int) -> int:
    if n <= 127:
        return 1
    if n < 16383:
        return 2
    if n < 2097151:
        return 3
    if n < 268435455:
        return 4
    return 5


def esz(b: bytes) -> int:
    """Bytes of a listpack entry holding the string b (integers are stored as such)."""
    n = len(b)
    if n <= 20:
        v = string_int(b)
        if v is not None:
            return isz(v)
        return n + 2
    if n < 64:
        return n + 2
    if n < 4096:
        return n + 2 + _blsz(n + 2)
    return n + 5 + _blsz(n + 5)


# ------------------------------------------------------------------ structures
class Node:
    """One listpack of Redis's stream rax: master id/fields, entries and tombstones."""

    __slots__ = ("master", "mms", "mseq", "mfields", "ids", "fvs", "dead", "count", "body")

    def __init__(self, master: int, mfields: list) -> None:
        self.master = master
        self.mms = master >> 64             # the master id's parts, for the deltas
        self.mseq = master & MASK
        self.mfields = mfields if type(mfields) is list else list(mfields)
        self.ids: list[int] = []
        self.fvs: list[tuple] = []        # field, value, ... of each entry
        self.dead: set | None = None      # ids flagged deleted
        self.count = 0                    # live entries
        # listpack bytes without the header, the count/deleted fields and the
        # end byte: master num-fields, master fields, terminator, entries
        self.body = isz(len(mfields)) + sum(map(esz, mfields)) + 2

    def lp_bytes(self) -> int:
        c = self.count
        return (self.body + (9 if c <= 127 else 7 + isz(c))
                + (2 if not self.dead else isz(len(self.dead))))

    def same_fields(self, fv) -> bool:
        mf = self.mfields
        return len(fv) == 2 * len(mf) and list(fv[0::2]) == mf

    def append(self, id_: int, ms: int, seq: int, fv: list) -> None:
        """Add an entry after the last one (id_, its parts ms and seq); the
        body grows by its listpack bytes: flags, id deltas, [count, fields],
        values, lp-count.

        The entry is kept as a tuple: a tuple of strings leaves the cyclic
        garbage collector's lists at its first collection, a list would be
        traversed by every full collection (one per entry: a stream of
        millions made each full collection last a sizeable fraction of a
        second, and XADD ~20% slower on average)."""
        mf = self.mfields
        dms = ms - self.mms
        dseq = seq - self.mseq
        n = 6                               # flags and two small deltas: 2 bytes each
        if not 0 <= dms <= 127:
            if not -_HALF <= dms < _HALF:   # stored as uint64 differences read as int64
                dms = _delta(ms, self.mms)
            n += 1 if -4096 <= dms <= 4095 else isz(dms) - 2
        if not 0 <= dseq <= 127:
            if not -_HALF <= dseq < _HALF:
                dseq = _delta(seq, self.mseq)
            n += 1 if -4096 <= dseq <= 4095 else isz(dseq) - 2
        if len(fv) == 2:                    # one field, the common case: no slices, no loop
            f, x = fv
            if len(mf) == 1 and f == mf[0]:
                fv = (mf[0], x)             # the field name shared with the master
                n += 2                      # the lp-count (nf + 3)
            else:
                fv = (f, x)
                n += 4 + esz(f)             # field count, lp-count, the field
            k = len(x)
            # a short string that cannot be an integer, or esz()
            n += (k + 2 if k < 64 and (not k or x[0] > 57 or x[0] < 45 or x[0] == 47
                                       or x[0] == 46) else esz(x))
        else:
            nf = len(fv) >> 1
            if nf == len(mf) and fv[0::2] == mf:
                fv = list(fv)
                fv[0::2] = mf               # the field names shared with the master
                fv = tuple(fv)
                n += 2 if nf < 125 else isz(nf + 3)
                values = fv[1::2]
            else:
                fv = tuple(fv)
                n += isz(nf) + isz(2 * nf + 4)
                values = fv
            for x in values:
                k = len(x)
                if k < 64 and (not k or x[0] > 57 or x[0] < 45 or x[0] == 47 or x[0] == 46):
                    n += k + 2
                else:
                    n += esz(x)
        self.body += n
        self.ids.append(id_)
        self.fvs.append(fv)
        self.count += 1

    def last_edge(self) -> int:
        """Id of the last entry in the listpack, tombstone or not (lpGetEdgeStreamID)."""
        return self.ids[-1]

    def items(self) -> list:
        """The listpack elements, as Redis lays them out."""
        mf = self.mfields
        dead = self.dead
        out: list = [self.count, len(dead) if dead else 0, len(mf)]
        out.extend(mf)
        out.append(0)
        mms, mseq = self.master >> 64, self.master & MASK
        for id_, fv in zip(self.ids, self.fvs):
            same = self.same_fields(fv)
            flags = F_SAMEFIELDS if same else 0
            if dead and id_ in dead:
                flags |= F_DELETED
            out.append(flags)
            out.append(_delta(id_ >> 64, mms))
            out.append(_delta(id_ & MASK, mseq))
            nf = len(fv) >> 1
            if same:
                out.extend(fv[1::2])
                out.append(nf + 3)
            else:
                out.append(nf)
                out.extend(fv)
                out.append(2 * nf + 4)
        return out

    def listpack(self) -> bytes:
        return lp_encode(self.items())

    def copy(self) -> "Node":
        n = Node.__new__(Node)
        n.master = self.master
        n.mms = self.mms
        n.mseq = self.mseq
        n.mfields = self.mfields
        n.ids = self.ids[:]
        n.fvs = [fv[:] for fv in self.fvs]
        n.dead = set(self.dead) if self.dead else None
        n.count = self.count
        n.body = self.body
        return n


class Nack:
    """A pending entry: last delivery time (ms), delivery count, owner."""

    __slots__ = ("delivery_time", "delivery_count", "consumer")

    def __init__(self, delivery_time: int, consumer) -> None:
        self.delivery_time = delivery_time
        self.delivery_count = 1
        self.consumer = consumer


class Consumer:
    __slots__ = ("name", "seen_time", "pel")

    def __init__(self, name: bytes, seen_time: int) -> None:
        self.name = name
        self.seen_time = seen_time
        self.pel: SortedDict = SortedDict()       # id -> Nack (shared with the group)


class Group:
    __slots__ = ("last_id", "entries_read", "pel", "consumers")

    def __init__(self, last_id: int, entries_read: int) -> None:
        self.last_id = last_id
        self.entries_read = entries_read
        self.pel: SortedDict = SortedDict()       # id -> Nack
        self.consumers: dict[bytes, Consumer] = {}

    def create_consumer(self, name: bytes, now: int) -> Consumer | None:
        if name in self.consumers:
            return None
        c = self.consumers[name] = Consumer(name, now)
        return c

    def delete_consumer(self, consumer: Consumer) -> int:
        """streamDelConsumer: its pending entries leave the group PEL too."""
        pel = self.pel
        for id_ in consumer.pel:
            del pel[id_]
        del self.consumers[consumer.name]
        return len(consumer.pel)


class Stream:
    """A Redis stream (OBJ_ENCODING_STREAM)."""

    __slots__ = ("nodes", "masters", "length", "last_id", "first_id", "max_deleted",
                 "entries_added", "groups")

    encoding = "stream"

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.masters: list[int] = []      # node master ids, for bisect
        self.length = 0
        self.last_id = 0
        self.first_id = 0
        self.max_deleted = 0
        self.entries_added = 0
        self.groups: dict[bytes, Group] | None = None

    def __len__(self) -> int:
        return self.length

    # ------------------------------------------------------------ adding
    def add(self, id_: int, fv: list) -> None:
        """streamAppendItem with an id already checked to be > last_id."""
        self.add_parts(id_, id_ >> 64, id_ & MASK, fv)

    def add_parts(self, id_: int, ms: int, seq: int, fv: list) -> None:
        """add() with the id's parts (id_ >> 64, id_ & MASK) known."""
        nodes = self.nodes
        if nodes:
            tail = nodes[-1]
            limits = LIMITS
            maxb = limits.stream_node_max_bytes
            if maxb <= 0 or maxb > LISTPACK_MAX_SIZE:
                maxb = LISTPACK_MAX_SIZE
            maxe = limits.stream_node_max_entries
            dead = tail.dead
            c = tail.count
            # tail.lp_bytes() written out
            if (tail.body + (9 if c <= 127 else 7 + isz(c)) + (isz(len(dead)) if dead else 2)
                    + (len(fv[0]) + len(fv[1]) if len(fv) == 2 else sum(map(len, fv)))
                    >= maxb or (maxe and c + (len(dead) if dead else 0) >= maxe)):
                tail = None
        else:
            tail = None
        if tail is None:
            tail = Node(id_, fv[0::2])
            nodes.append(tail)
            self.masters.append(id_)
        tail.append(id_, ms, seq, fv)
        self.length += 1
        self.entries_added += 1
        self.last_id = id_
        if self.length == 1:
            self.first_id = id_

    def next_id(self, now_ms: int) -> int | None:
        """streamNextID: now-0, or last_id + 1 when the clock did not move on
        (None when the last id is the largest possible)."""
        last = self.last_id
        if now_ms > last >> 64:
            return now_ms << 64
        if last == MAX_ID:
            return None
        return last + 1

    # ------------------------------------------------------------ reading
    def range(self, start: int, end: int, count: int = 0, rev: bool = False) -> list:
        """[(id, fv)] of live entries with start <= id <= end, at most count
        (0: all), in id order or reversed."""
        out = []
        if start > end or not self.length:
            return out
        nodes = self.nodes
        if not rev:
            ni = bisect_right(self.masters, start) - 1
            if ni < 0:
                ni = 0
            for k in range(ni, len(nodes)):
                node = nodes[k]
                if node.master > end:
                    break
                ids = node.ids
                fvs = node.fvs
                dead = node.dead
                for j in range(bisect_left(ids, start) if k == ni else 0, len(ids)):
                    i = ids[j]
                    if i > end:
                        return out
                    if dead and i in dead:
                        continue
                    out.append((i, fvs[j]))
                    if len(out) == count:
                        return out
        else:
            ni = bisect_right(self.masters, end) - 1
            for k in range(ni, -1, -1):
                node = nodes[k]
                ids = node.ids
                fvs = node.fvs
                dead = node.dead
                for j in range(bisect_right(ids, end) - 1 if k == ni else len(ids) - 1, -1, -1):
                    i = ids[j]
                    if i < start:
                        return out
                    if dead and i in dead:
                        continue
                    out.append((i, fvs[j]))
                    if len(out) == count:
                        return out
        return out

    def locate(self, id_: int):
        """(node index, entry index) of id (live or tombstone), or None."""
        ni = bisect_right(self.masters, id_) - 1
        if ni < 0:
            return None
        ids = self.nodes[ni].ids
        j = bisect_left(ids, id_)
        if j < len(ids) and ids[j] == id_:
            return ni, j
        return None

    def get(self, id_: int):
        """The field/value list of the live entry id, or None."""
        loc = self.locate(id_)
        if loc is None:
            return None
        node = self.nodes[loc[0]]
        if node.dead and id_ in node.dead:
            return None
        return node.fvs[loc[1]]

    def exists(self, id_: int) -> bool:
        return self.get(id_) is not None

    def last_valid(self) -> int:
        """streamLastValidID: the last live id (0 when empty)."""
        for node in reversed(self.nodes):
            if not node.count:
                continue
            dead = node.dead
            if not dead:
                return node.ids[-1]
            for i in reversed(node.ids):
                if i not in dead:
                    return i
        return 0

    def first_edge(self, skip_tombstones: bool) -> int:
        """streamGetEdgeID(first): the first id, MAX_ID when there is none."""
        for node in self.nodes:
            if not skip_tombstones:
                return node.ids[0]
            if not node.count:
                continue
            dead = node.dead
            if not dead:
                return node.ids[0]
            for i in node.ids:
                if i not in dead:
                    return i
        return MAX_ID

    # ------------------------------------------------------------ deleting
    def delete(self, id_: int) -> bool:
        """streamDeleteItem: flag a live entry deleted; a node left without
        live entries goes (tombstones and all)."""
        loc = self.locate(id_)
        if loc is None:
            return False
        ni, _ = loc
        node = self.nodes[ni]
        dead = node.dead
        if dead and id_ in dead:
            return False
        if node.count == 1:
            del self.nodes[ni]
            del self.masters[ni]
        else:
            if dead is None:
                dead = node.dead = set()
            dead.add(id_)
            node.count -= 1
        self.length -= 1
        return True

    def xdel(self, ids) -> int:
        """XDEL: delete ids, keep first_id and max_deleted current."""
        deleted = 0
        first_gone = False
        for i in ids:
            if self.delete(i):
                if i == self.first_id:
                    first_gone = True
                if i > self.max_deleted:
                    self.max_deleted = i
                deleted += 1
        if deleted:
            if not self.length:
                self.first_id = 0
            elif first_gone:
                self.first_id = self.first_edge(True)
        return deleted

    def trim(self, maxlen: int | None, minid: int | None, approx: bool, limit: int) -> int:
        """streamTrim by MAXLEN (maxlen) or MINID (minid); limit 0 = no limit."""
        nodes = self.nodes
        deleted = 0
        while nodes:
            if maxlen is not None and self.length <= maxlen:
                break
            node = nodes[0]
            entries = node.count
            if limit and deleted + entries > limit:
                break
            if maxlen is not None:
                remove = self.length - entries >= maxlen
            else:
                remove = node.last_edge() < minid
            if remove:
                del nodes[0]
                del self.masters[0]
                self.length -= entries
                deleted += entries
                continue
            if approx:
                break
            dead = node.dead
            if dead is None:
                dead = node.dead = set()
            n = 0
            for i in node.ids:
                if maxlen is not None:
                    if self.length <= maxlen:
                        break
                elif i >= minid:
                    break
                if i not in dead:
                    dead.add(i)
                    n += 1
                    self.length -= 1
            node.count -= n
            if not dead:
                node.dead = None
            deleted += n
            break
        if not self.length:
            self.first_id = 0
        elif deleted:
            self.first_id = self.first_edge(True)
        return deleted

    # ------------------------------------------------------------ consumer groups
    def has_tombstones(self, start: int, end: int = MAX_ID) -> bool:
        """streamRangeHasTombstones (7.0)."""
        md = self.max_deleted
        if not self.length or not md:
            return False
        if self.first_id > md:
            return False
        return start <= md <= end

    def estimate_distance(self, id_: int) -> int:
        """streamEstimateDistanceFromFirstEverEntry: the logical read counter
        of id, or INVALID."""
        added = self.entries_added
        if not added:
            return 0
        if not self.length and id_ <= self.last_id:
            return added
        if id_ == self.last_id:
            return added
        if id_ > self.last_id:
            return INVALID
        md = self.max_deleted
        if not md or md < self.first_id:
            if id_ < self.first_id:
                return added - self.length
            if id_ == self.first_id:
                return added - self.length + 1
        return INVALID

    def lag(self, g: Group) -> int | None:
        """streamReplyWithCGLag's value, None when unknown."""
        if not self.entries_added:
            return 0
        if g.entries_read != INVALID and not self.has_tombstones(g.last_id):
            return self.entries_added - g.entries_read
        er = self.estimate_distance(g.last_id)
        if er != INVALID:
            return self.entries_added - er
        return None

    def advance_group(self, g: Group, id_: int) -> None:
        """A group delivers id beyond its last id: move its read counter."""
        if g.entries_read != INVALID and not self.has_tombstones(id_):
            g.entries_read += 1
        elif self.entries_added:
            g.entries_read = self.estimate_distance(id_)
        g.last_id = id_

    # ------------------------------------------------------------ introspection
    def rax_nodes(self) -> int:
        """raxSize's sibling numnodes: nodes of Redis's radix tree holding the
        listpacks under 16-byte big-endian keys (the tree is kept maximally
        compressed, so its shape depends only on the set of keys)."""
        keys = [m.to_bytes(16, "big") for m in self.masters]
        if not keys:
            return 1
        return _trie_nodes(keys, 0, len(keys), 0)

    def memory_usage(self) -> int:
        n = 200
        for node in self.nodes:
            n += node.lp_bytes() + 64
        if self.groups:
            for name, g in self.groups.items():
                n += 100 + len(name) + 80 * len(g.pel)
                for cname, c in g.consumers.items():
                    n += 100 + len(cname) + 40 * len(c.pel)
        return n

    def __deepcopy__(self, memo) -> "Stream":
        s = Stream()
        s.nodes = [n.copy() for n in self.nodes]
        s.masters = self.masters[:]
        s.length = self.length
        s.last_id = self.last_id
        s.first_id = self.first_id
        s.max_deleted = self.max_deleted
        s.entries_added = self.entries_added
        if self.groups is not None:
            s.groups = {}
            for name, g in self.groups.items():
                ng = s.groups[name] = Group(g.last_id, g.entries_read)
                for cname, c in g.consumers.items():
                    nc = ng.consumers[cname] = Consumer(cname, c.seen_time)
                    for id_, nack in c.pel.items():
                        nn = Nack(nack.delivery_time, nc)
                        nn.delivery_count = nack.delivery_count
                        nc.pel[id_] = nn
                        ng.pel[id_] = nn
        return s


def _trie_nodes(keys: list, lo: int, hi: int, depth: int) -> int:
    """Nodes of a compressed radix tree over keys[lo:hi] (sorted, equal length,
    sharing keys[lo][:depth]), counting the node that starts at depth."""
    n = 0
    while True:
        if hi - lo == 1:
            # a (compressed) node for the rest of the key, then the key's leaf
            return n + (2 if depth < len(keys[lo]) else 1)
        a, b = keys[lo], keys[hi - 1]
        d = depth
        while a[d] == b[d]:
            d += 1
        if d > depth:
            n += 1                       # compressed node up to the branching point
        n += 1                           # the branching node
        i = lo
        total = 0
        while i < hi:
            c = keys[i][d]
            j = i + 1
            while j < hi and keys[j][d] == c:
                j += 1
            total += _trie_nodes(keys, i, j, d + 1)
            i = j
        return n + total


# ------------------------------------------------------------------ RDB
_enc_len = rdb.encode_length
_enc_str = rdb.encode_string


def _len64(v: int) -> bytes:
    """rdbSaveLen of a uint64 (a -1 long long is written as 2^64 - 1)."""
    return _enc_len(v & MASK)


def encode_rdb(s: Stream) -> tuple[int, bytes]:
    out = [_enc_len(len(s.nodes))]
    for node in s.nodes:
        out.append(_enc_str(node.master.to_bytes(16, "big")))
        out.append(_enc_str(node.listpack()))
    out.append(_len64(s.length))
    for i in (s.last_id, s.first_id, s.max_deleted):
        out.append(_len64(i >> 64))
        out.append(_len64(i & MASK))
    out.append(_len64(s.entries_added))
    groups = s.groups or {}
    out.append(_enc_len(len(groups)))
    for name in sorted(groups):
        g = groups[name]
        out.append(_enc_str(name))
        out.append(_len64(g.last_id >> 64))
        out.append(_len64(g.last_id & MASK))
        out.append(_len64(g.entries_read))
        out.append(_enc_len(len(g.pel)))
        for id_, nack in g.pel.items():
            out.append(id_.to_bytes(16, "big"))
            out.append(struct.pack("<q", nack.delivery_time))
            out.append(_len64(nack.delivery_count))
        cons = g.consumers
        out.append(_enc_len(len(cons)))
        for cname in sorted(cons):
            c = cons[cname]
            out.append(_enc_str(cname))
            out.append(struct.pack("<q", c.seen_time))
            out.append(_enc_len(len(c.pel)))
            for id_ in c.pel:
                out.append(id_.to_bytes(16, "big"))
    return RDB_TYPE_STREAM_LISTPACKS_2, b"".join(out)


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def _node_from_listpack(key: bytes, blob) -> Node:
    """A Node from a rax key and its listpack, checked as
    streamValidateListpackIntegrity(deep) does."""
    if len(key) != 16:
        raise rdb.RDBError("stream node key entry is not the size of a stream ID")
    try:
        items = lp_decode_raw(blob)
    except ValueError as e:
        raise rdb.RDBError("stream listpack: %s" % e) from None
    if not items:
        raise rdb.RDBError("empty listpack inside stream")
    master = int.from_bytes(key, "big")
    mms, mseq = master >> 64, master & MASK

    def num(p: int) -> int:
        if p >= len(items):
            raise rdb.RDBError("stream listpack truncated")
        v = items[p]
        if type(v) is not int:
            iv = string_int(v)
            if iv is None:
                raise rdb.RDBError("stream listpack: integer field holds a string")
            return iv
        return v

    def elem(p: int) -> bytes:
        if p >= len(items):
            raise rdb.RDBError("stream listpack truncated")
        v = items[p]
        return b"%d" % v if type(v) is int else bytes(v)

    count, ndel, nmf = num(0), num(1), num(2)
    if count < 0 or ndel < 0 or nmf < 0:
        raise rdb.RDBError("stream listpack: negative counter")
    mfields = [elem(3 + k) for k in range(nmf)]
    p = 3 + nmf
    if num(p) != 0:
        raise rdb.RDBError("stream listpack: bad master entry terminator")
    p += 1
    node = Node(master, mfields)
    dead = set()
    prev = -1
    for _ in range(count + ndel):
        flags = num(p)
        ms = (mms + num(p + 1)) & MASK
        seq = (mseq + num(p + 2)) & MASK
        p += 3
        if flags & F_SAMEFIELDS:
            nf = nmf
            fv = []
            for k in range(nf):
                fv.append(mfields[k])
                fv.append(elem(p + k))
            p += nf
            extra = 3
        else:
            nf = num(p)
            if nf < 0:
                raise rdb.RDBError("stream listpack: negative field count")
            p += 1
            fv = [elem(p + k) for k in range(2 * nf)]
            p += 2 * nf
            extra = nf + 4
        if num(p) != nf + extra:
            raise rdb.RDBError("stream listpack: bad entry lp-count")
        p += 1
        id_ = (ms << 64) | seq
        if id_ <= prev or id_ < master:
            raise rdb.RDBError("stream listpack: entry ids out of order")
        prev = id_
        if flags & F_DELETED:
            dead.add(id_)
        node.append(id_, ms, seq, fv)
    if p != len(items):
        raise rdb.RDBError("stream listpack: trailing elements")
    if len(dead) != ndel:
        raise rdb.RDBError("stream listpack: deleted count does not match the entries")
    node.count = count
    node.dead = dead or None
    return node


def _decode(r: rdb.Reader, rtype: int) -> Stream:
    s = Stream()
    n = r.plain_length()
    prev_last = -1
    for _ in range(n):
        key = r.string()
        node = _node_from_listpack(key, r.string())
        if node.master <= prev_last:
            raise rdb.RDBError("stream listpack re-added with an existing or smaller key")
        prev_last = node.ids[-1] if node.ids else node.master
        s.nodes.append(node)
        s.masters.append(node.master)
    s.length = r.plain_length()
    if s.length != sum(node.count for node in s.nodes):
        raise rdb.RDBError("stream length %d inconsistent with its listpacks" % s.length)
    s.last_id = make_id(r.plain_length(), r.plain_length())
    if s.length and s.last_valid() > s.last_id:
        raise rdb.RDBError("stream last id is smaller than its last entry")
    if rtype >= RDB_TYPE_STREAM_LISTPACKS_2:
        s.first_id = make_id(r.plain_length(), r.plain_length())
        s.max_deleted = make_id(r.plain_length(), r.plain_length())
        s.entries_added = r.plain_length()
    else:
        s.entries_added = s.length
        s.first_id = s.first_edge(True) if s.length else MAX_ID
    ngroups = r.plain_length()
    if ngroups:
        s.groups = {}
    for _ in range(ngroups):
        name = r.string()
        last = make_id(r.plain_length(), r.plain_length())
        if rtype >= RDB_TYPE_STREAM_LISTPACKS_2:
            er = _signed64(r.plain_length())
        else:
            er = s.estimate_distance(last)
        if name in s.groups:
            raise rdb.RDBError("duplicated consumer group name %r" % name)
        g = s.groups[name] = Group(last, er)
        for _ in range(r.plain_length()):
            id_ = int.from_bytes(r.take(16), "big")
            t = struct.unpack("<q", r.take(8))[0]
            nack = Nack(t, None)
            nack.delivery_count = r.plain_length()
            if id_ in g.pel:
                raise rdb.RDBError("duplicated global PEL entry loading a stream consumer group")
            g.pel[id_] = nack
        for _ in range(r.plain_length()):
            cname = r.string()
            if cname in g.consumers:
                raise rdb.RDBError("duplicate stream consumer %r" % cname)
            c = g.consumers[cname] = Consumer(cname, struct.unpack("<q", r.take(8))[0])
            for _ in range(r.plain_length()):
                id_ = int.from_bytes(r.take(16), "big")
                nack = g.pel.get(id_)
                if nack is None:
                    raise rdb.RDBError("consumer entry not found in the group's global PEL")
                if nack.consumer is not None:
                    raise rdb.RDBError("PEL entry owned by two consumers")
                nack.consumer = c
                c.pel[id_] = nack
        for nack in g.pel.values():
            if nack.consumer is None:
                raise rdb.RDBError("stream group PEL entry without a consumer")
    return s


def _decode_v1(r: rdb.Reader) -> Stream:
    return _decode(r, RDB_TYPE_STREAM_LISTPACKS)


def _decode_v2(r: rdb.Reader) -> Stream:
    return _decode(r, RDB_TYPE_STREAM_LISTPACKS_2)


# ------------------------------------------------------------------ AOF rewrite
def rewrite_stream(key: bytes, s: Stream) -> list:
    """rewriteStreamObject: XADD per entry (or the XADD MAXLEN 0 trick for an
    empty stream), XSETID, then per group XGROUP CREATE ... ENTRIESREAD and an
    XCLAIM per pending entry (XGROUP CREATECONSUMER for idle consumers)."""
    out = []
    if s.length:
        for id_, fv in s.range(0, MAX_ID):
            out.append([b"XADD", key, fmt_id(id_), *fv])
    else:
        out.append([b"XADD", key, b"MAXLEN", b"0", b"0-1", b"x", b"y"])
    out.extend(stream_meta_commands(key, s))
    return out


def stream_meta_commands(key: bytes, s: Stream):
    """What rebuilds a stream once its entries are in (lazily): XSETID, then per
    group XGROUP CREATE ... ENTRIESREAD and its consumers' pending entries."""
    yield [b"XSETID", key, fmt_id(s.last_id), b"ENTRIESADDED", b"%d" % s.entries_added,
           b"MAXDELETEDID", fmt_id(s.max_deleted)]
    if s.groups:
        for name in sorted(s.groups):
            g = s.groups[name]
            yield [b"XGROUP", b"CREATE", key, name, fmt_id(g.last_id), b"ENTRIESREAD",
                   b"%d" % g.entries_read]
            for cname in sorted(g.consumers):
                c = g.consumers[cname]
                if not c.pel:
                    yield [b"XGROUP", b"CREATECONSUMER", key, name, cname]
                    continue
                for id_, nack in c.pel.items():
                    yield [b"XCLAIM", key, name, cname, b"0", fmt_id(id_), b"TIME",
                           b"%d" % nack.delivery_time, b"RETRYCOUNT",
                           b"%d" % nack.delivery_count, b"JUSTID", b"FORCE"]


def digest_stream(d: bytearray, s: Stream) -> None:
    """xorObjectDigest for a stream: each live entry's "ms.seq", then its
    fields and values (consumer groups are not part of it)."""
    from storage.digest import mix_digest
    for id_, fv in s.range(0, MAX_ID):
        mix_digest(d, b"%d.%d" % (id_ >> 64, id_ & MASK))
        for x in fv:
            mix_digest(d, x)


TYPE_NAMES[Stream] = "stream"
rdb.ENCODERS[Stream] = encode_rdb
rdb.DECODERS[RDB_TYPE_STREAM_LISTPACKS] = _decode_v1
rdb.DECODERS[RDB_TYPE_STREAM_LISTPACKS_2] = _decode_v2
rewrite.register(Stream, rewrite_stream)


def _register_digest() -> None:
    from storage import digest
    digest.DIGESTERS[Stream] = (digest.OBJ_STREAM, digest_stream)


_register_digest()
