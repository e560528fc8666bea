"""The list value type: Redis 7.0's quicklist, node for node.

A QuickList is a sequence of nodes, each a Python list of elements (bytes),
with the byte size the node's listpack would have in Redis (`sizes`).  The
nodes split and merge exactly where Redis's quicklist.c splits and merges
them (list-max-listpack-size as `fill`, fixed when the list is created, as
in Redis), so an RDB/DUMP payload lists the same nodes with the same bytes
as redis-server's for a list built by the same commands.  This also gives
the costs wanted: push/pop at either end touch one node, an index walks
nodes from the nearer end and then indexes one node, a range is a few
slices.

Pushes at the head go to `front`, the head node's first elements in
reverse order (the last pushed is the list's first element), so that a
run of LPUSHes appends instead of inserting at the start of a Python list
of up to a few thousand elements (a memmove of the whole node each time);
LPOP takes from it too.  Every other operation first moves `front` into
the head node (`settle`, one insert for the whole run).  `sizes` and
`count` include `front` at all times, so the split decisions and DEBUG
OBJECT see the node Redis would have.

Redis 7.0 reports every list as "quicklist" (OBJECT ENCODING).  RDB: written
as RDB_TYPE_LIST_QUICKLIST_2 (18), one listpack per node; loaded from 18, 14
(quicklist of ziplists), 10 (one ziplist) and 1 (plain list).  Nodes Redis
keeps LZF-compressed (list-compress-depth) are written uncompressed here:
with rdbcompression yes the bytes are the same anyway (a compressed node is
one that LZF shrinks, and rdbSaveRawString then compresses it the same way).
"""

from __future__ import annotations

from storage import digest, rdb, rewrite
from storage.keyspace import TYPE_NAMES
from storage.listpack import lp_decode, lp_encode, zl_decode
from storage.values import LIMITS, string_int

TYPE_LIST = 1
TYPE_LIST_ZIPLIST = 10
TYPE_LIST_QUICKLIST = 14
TYPE_LIST_QUICKLIST_2 = 18
CONTAINER_PLAIN = 1
CONTAINER_PACKED = 2

# quicklist.c: the node size limits for fill -1..-5, the byte limit of a node
# limited by count, and the over-estimate of one new entry's overhead
OPTIMIZATION_LEVEL = (4096, 8192, 16384, 32768, 65536)
SIZE_SAFETY_LIMIT = 8192
SIZE_ESTIMATE_OVERHEAD = 8
LP_EMPTY = 7                     # listpack header (6) + end byte
MERGE_OVERHEAD = 11              # what _quicklistNodeAllowMerge subtracts
FILL_MAX = (1 << 15) - 1

_INT_START = frozenset(b"-0123456789")


def entry_size(v: bytes) -> int:
    """Bytes of v as one listpack entry (encoding, data, back-length)."""
    n = len(v)
    if n < 21 and n and v[0] in _INT_START:
        i = string_int(v)
        if i is not None:
            if 0 <= i <= 127:
                return 2
            if -4096 <= i <= 4095:
                return 3
            if -32768 <= i <= 32767:
                return 4
            if -8388608 <= i <= 8388607:
                return 5
            if -2147483648 <= i <= 2147483647:
                return 6
            return 10
    if n < 64:
        return n + 2
    if n < 4096:
        n += 2
        return n + (1 if n <= 127 else 2)
    n += 5
    if n < 16383:
        return n + 2
    if n < 2097151:
        return n + 3
    if n < 268435455:
        return n + 4
    return n + 5


def _node_size(node) -> int:
    return LP_EMPTY + sum(map(entry_size, node))


def clamp_fill(fill: int) -> int:
    return -5 if fill < -5 else (FILL_MAX if fill > FILL_MAX else fill)


class QuickList:
    """A Redis list.  Elements are bytes; indexes are 0-based from the head."""

    __slots__ = ("nodes", "sizes", "count", "fill", "front")

    encoding = "quicklist"

    def __init__(self, fill: int | None = None) -> None:
        self.nodes: list[list] = []
        self.sizes: list[int] = []
        self.count = 0
        self.fill = clamp_fill(LIMITS.list_max_listpack_size if fill is None else fill)
        # the head node's first elements, pushed at the head and not yet
        # moved into nodes[0], in reverse order; None when there are none
        self.front: list | None = None

    def settle(self) -> None:
        """Move the elements pushed at the head into the head node: after
        this, `nodes` alone holds the list (every reader but LPOP calls it)."""
        front = self.front
        if front:
            front.reverse()
            self.nodes[0][:0] = front
        self.front = None

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        if self.front:
            self.settle()
        for node in self.nodes:
            yield from node

    def __reversed__(self):
        if self.front:
            self.settle()
        for node in reversed(self.nodes):
            yield from reversed(node)

    def __eq__(self, other) -> bool:
        return isinstance(other, QuickList) and list(self) == list(other)

    __hash__ = None

    def __repr__(self) -> str:
        return "QuickList(%r)" % [len(n) for n in self.nodes]

    def __deepcopy__(self, memo) -> "QuickList":
        if self.front:
            self.settle()
        q = QuickList.__new__(QuickList)
        q.front = None
        q.nodes = [n[:] for n in self.nodes]        # elements are immutable bytes
        q.sizes = self.sizes[:]
        q.count = self.count
        q.fill = self.fill
        return q

    def to_list(self) -> list:
        if self.front:
            self.settle()
        out = []
        for node in self.nodes:
            out.extend(node)
        return out

    # -------------------------------------------------------------- fill rules
    def _allow_insert(self, i: int, sz: int) -> bool:
        """_quicklistNodeAllowInsert for node i and an element of sz bytes."""
        new_sz = self.sizes[i] + sz + SIZE_ESTIMATE_OVERHEAD
        fill = self.fill
        if fill < 0:
            return new_sz <= OPTIMIZATION_LEVEL[-fill - 1]
        return new_sz <= SIZE_SAFETY_LIMIT and len(self.nodes[i]) < fill

    def _allow_merge(self, a: int, b: int) -> bool:
        """_quicklistNodeAllowMerge for nodes a and b."""
        merge_sz = self.sizes[a] + self.sizes[b] - MERGE_OVERHEAD
        fill = self.fill
        if fill < 0:
            return merge_sz <= OPTIMIZATION_LEVEL[-fill - 1]
        return merge_sz <= SIZE_SAFETY_LIMIT and len(self.nodes[a]) + len(self.nodes[b]) <= fill

    # -------------------------------------------------------------- push / pop
    def push_tail(self, v: bytes) -> None:
        nodes = self.nodes
        if self.front and len(nodes) == 1:     # the head node is the tail node
            self.settle()
        if nodes:
            i = len(nodes) - 1
            n = len(v)
            new_sz = self.sizes[i] + n + SIZE_ESTIMATE_OVERHEAD
            fill = self.fill
            if (new_sz <= OPTIMIZATION_LEVEL[-fill - 1] if fill < 0 else
                    new_sz <= SIZE_SAFETY_LIMIT and len(nodes[i]) < fill):
                nodes[i].append(v)
                # entry_size's answer for a short string that cannot be an
                # integer (it starts with no digit or '-'), without the call
                self.sizes[i] += (n + 2 if n < 64 and (not n or v[0] > 57 or v[0] < 45) else
                                   entry_size(v))
                self.count += 1
                return
        nodes.append([v])
        self.sizes.append(LP_EMPTY + entry_size(v))
        self.count += 1

    def push_head(self, v: bytes) -> None:
        nodes = self.nodes
        if nodes:
            n = len(v)
            new_sz = self.sizes[0] + n + SIZE_ESTIMATE_OVERHEAD
            fill = self.fill
            front = self.front
            if (new_sz <= OPTIMIZATION_LEVEL[-fill - 1] if fill < 0 else
                    new_sz <= SIZE_SAFETY_LIMIT
                    and len(nodes[0]) + (len(front) if front else 0) < fill):
                if front is None:
                    self.front = [v]
                else:
                    front.append(v)
                self.sizes[0] += (n + 2 if n < 64 and (not n or v[0] > 57 or v[0] < 45) else
                                   entry_size(v))
                self.count += 1
                return
            if front:
                self.settle()
        nodes.insert(0, [v])
        self.sizes.insert(0, LP_EMPTY + entry_size(v))
        self.count += 1

    def extend_tail(self, values) -> None:
        push = self.push_tail
        for v in values:
            push(v)

    def pop_head(self) -> bytes:
        front = self.front
        if front:
            # the head node keeps its own elements: it does not empty here
            v = front.pop()
            self.count -= 1
            n = len(v)
            self.sizes[0] -= (n + 2 if n < 64 and (not n or v[0] > 57 or v[0] < 45) else
                              entry_size(v))
            return v
        node = self.nodes[0]
        v = node.pop(0)
        self.count -= 1
        if node:
            n = len(v)
            self.sizes[0] -= (n + 2 if n < 64 and (not n or v[0] > 57 or v[0] < 45) else
                              entry_size(v))
        else:
            del self.nodes[0]
            del self.sizes[0]
        return v

    def pop_tail(self) -> bytes:
        if self.front and len(self.nodes) == 1:    # the head node is the tail node
            self.settle()
        node = self.nodes[-1]
        v = node.pop()
        self.count -= 1
        if node:
            n = len(v)
            self.sizes[-1] -= (n + 2 if n < 64 and (not n or v[0] > 57 or v[0] < 45) else
                               entry_size(v))
        else:
            self.nodes.pop()
            self.sizes.pop()
        return v

    def pop_head_n(self, n: int) -> list:
        """Remove and return the first n elements (n <= len), head first."""
        if self.front:
            self.settle()
        out: list = []
        nodes = self.nodes
        sizes = self.sizes
        self.count -= n
        while n:
            node = nodes[0]
            if n >= len(node):
                out.extend(node)
                n -= len(node)
                del nodes[0]
                del sizes[0]
            else:
                part = node[:n]
                del node[:n]
                sizes[0] -= sum(map(entry_size, part))
                out.extend(part)
                n = 0
        return out

    def pop_tail_n(self, n: int) -> list:
        """Remove and return the last n elements (n <= len), tail first."""
        if self.front:
            self.settle()
        out: list = []
        nodes = self.nodes
        sizes = self.sizes
        self.count -= n
        while n:
            node = nodes[-1]
            if n >= len(node):
                out.extend(reversed(node))
                n -= len(node)
                nodes.pop()
                sizes.pop()
            else:
                part = node[-n:]
                del node[-n:]
                sizes[-1] -= sum(map(entry_size, part))
                part.reverse()
                out.extend(part)
                n = 0
        return out

    # -------------------------------------------------------------- indexes
    def _locate(self, index: int) -> tuple[int, int]:
        """(node, offset) of a valid non-negative index, walking from the
        nearer end."""
        nodes = self.nodes
        if index <= self.count >> 1:
            for i, node in enumerate(nodes):
                n = len(node)
                if index < n:
                    return i, index
                index -= n
        else:
            back = self.count - 1 - index
            for i in range(len(nodes) - 1, -1, -1):
                n = len(nodes[i])
                if back < n:
                    return i, n - 1 - back
                back -= n
        raise IndexError(index)

    def get(self, index: int):
        """LINDEX: the element at index (negative from the tail), or None."""
        if self.front:
            self.settle()
        if index < 0:
            index += self.count
            if index < 0:
                return None
        elif index >= self.count:
            return None
        nodes = self.nodes
        if len(nodes) == 1:
            return nodes[0][index]
        i, off = self._locate(index)
        return nodes[i][off]

    def replace(self, index: int, v: bytes) -> bool:
        """LSET (quicklistReplaceAtIndex): the node keeps its place whatever
        the new size, as in Redis 7.0."""
        if self.front:
            self.settle()
        if index < 0:
            index += self.count
            if index < 0:
                return False
        elif index >= self.count:
            return False
        i, off = self._locate(index)
        node = self.nodes[i]
        self.sizes[i] += entry_size(v) - entry_size(node[off])
        node[off] = v
        return True

    def range(self, start: int, end: int) -> list:
        """Elements start..end inclusive (0 <= start <= end < len)."""
        if self.front:
            self.settle()
        nodes = self.nodes
        if len(nodes) == 1:
            return nodes[0][start:end + 1]
        i, off = self._locate(start)
        want = end - start + 1
        node = nodes[i]
        out = node[off:off + want]
        want -= len(out)
        while want > 0:
            i += 1
            node = nodes[i]
            if want >= len(node):
                out.extend(node)
                want -= len(node)
            else:
                out.extend(node[:want])
                break
        return out

    # -------------------------------------------------------------- deletions
    def trim(self, left: int, right: int) -> None:
        """LTRIM: drop `left` elements from the head and `right` from the tail."""
        if left:
            self.pop_head_n(left)
        if right:
            self.pop_tail_n(right)

    def remove(self, value: bytes, count: int) -> int:
        """LREM: remove up to count occurrences (0: all) from the head, or
        from the tail when count < 0; returns how many went."""
        if self.front:
            self.settle()
        nodes = self.nodes
        sizes = self.sizes
        limit = -count if count < 0 else count
        removed = 0
        empty = []
        order = range(len(nodes) - 1, -1, -1) if count < 0 else range(len(nodes))
        for i in order:
            node = nodes[i]
            if value not in node:
                continue
            before = len(node)
            if not limit:
                node[:] = [x for x in node if x != value]
            elif count > 0:
                left = limit - removed
                k = node.index(value)
                while left:
                    del node[k]
                    left -= 1
                    try:
                        k = node.index(value, k)
                    except ValueError:
                        break
            else:
                left = limit - removed
                k = len(node)
                while left and k:
                    k -= 1
                    if node[k] == value:
                        del node[k]
                        left -= 1
            gone = before - len(node)
            removed += gone
            if node:
                sizes[i] -= entry_size(value) * gone
            else:
                empty.append(i)
            if limit and removed == limit:
                break
        if empty:
            for i in sorted(empty, reverse=True):
                del nodes[i]
                del sizes[i]
        self.count -= removed
        return removed

    # -------------------------------------------------------------- insert
    def insert(self, pivot: bytes, v: bytes, after: bool) -> bool:
        """LINSERT: put v before/after the first pivot from the head (False
        if there is none), splitting and merging nodes as _quicklistInsert."""
        if self.front:
            self.settle()
        nodes = self.nodes
        for i, node in enumerate(nodes):
            if pivot in node:
                break
        else:
            return False
        off = node.index(pivot)
        sizes = self.sizes
        sz = len(v)
        es = entry_size(v)
        full = not self._allow_insert(i, sz)
        at_tail = after and off == len(node) - 1
        at_head = not after and off == 0
        if not full:
            node.insert(off + 1 if after else off, v)
            sizes[i] += es
        elif at_tail and i + 1 < len(nodes) and self._allow_insert(i + 1, sz):
            nodes[i + 1].insert(0, v)
            sizes[i + 1] += es
        elif at_head and i > 0 and self._allow_insert(i - 1, sz):
            nodes[i - 1].append(v)
            sizes[i - 1] += es
        elif at_tail or at_head:
            at = i + 1 if after else i
            nodes.insert(at, [v])
            sizes.insert(at, LP_EMPTY + es)
        else:
            # split the full node at the pivot; v joins the new half
            if after:
                new = node[off + 1:]
                del node[off + 1:]
                new.insert(0, v)
                at = i + 1
            else:
                new = node[:off]
                del node[:off]
                new.append(v)
                at = i
            sizes[i] = _node_size(node)
            nodes.insert(at, new)
            sizes.insert(at, _node_size(new))
            self._merge_around(i if after else i + 1)
        self.count += 1
        return True

    def _merge(self, a: int) -> None:
        """Merge node a+1 into node a (lpMerge)."""
        nodes = self.nodes
        nodes[a].extend(nodes[a + 1])
        self.sizes[a] += self.sizes[a + 1] - LP_EMPTY
        del nodes[a + 1]
        del self.sizes[a + 1]

    def _merge_around(self, c: int) -> None:
        """_quicklistMergeNodes around node c: (c-2, c-1), (c+1, c+2),
        (c-1, c), then the result with its next node."""
        if c >= 2 and self._allow_merge(c - 1, c - 2):
            self._merge(c - 2)
            c -= 1
        if c + 2 < len(self.nodes) and self._allow_merge(c + 1, c + 2):
            self._merge(c + 1)
        if c >= 1 and self._allow_merge(c, c - 1):
            self._merge(c - 1)
            c -= 1
        if c + 1 < len(self.nodes) and self._allow_merge(c, c + 1):
            self._merge(c)

    # -------------------------------------------------------------- search
    def positions(self, value: bytes, rank: int, count: int, maxlen: int) -> list[int]:
        """LPOS: indexes of the matches of value, skipping the first
        rank-1 (from the tail if rank < 0), at most count (0: all) of them,
        scanning at most maxlen elements (0: all)."""
        if self.front:
            self.settle()
        out: list[int] = []
        n = self.count
        limit = maxlen if maxlen and maxlen < n else n
        skip = (-rank if rank < 0 else rank) - 1
        if rank > 0:
            base = 0
            for node in self.nodes:
                if base >= limit:
                    break
                if value in node:
                    stop = min(len(node), limit - base)
                    k = -1
                    while True:
                        try:
                            k = node.index(value, k + 1, stop)
                        except ValueError:
                            break
                        if skip:
                            skip -= 1
                            continue
                        out.append(base + k)
                        if len(out) == count:
                            return out
                base += len(node)
        else:
            seen = 0                   # elements scanned from the tail
            for node in reversed(self.nodes):
                if seen >= limit:
                    break
                ln = len(node)
                if value in node:
                    lo = ln - min(ln, limit - seen)
                    for k in range(ln - 1, lo - 1, -1):
                        if node[k] == value:
                            if skip:
                                skip -= 1
                                continue
                            out.append(n - 1 - (seen + ln - 1 - k))
                            if len(out) == count:
                                return out
                seen += ln
        return out

    # -------------------------------------------------------------- RDB
    @classmethod
    def from_nodes(cls, nodes) -> "QuickList":
        """A list made of these nodes as they are (RDB quicklist)."""
        q = cls()
        for node in nodes:
            if node:
                q.nodes.append(node)
                q.sizes.append(_node_size(node))
                q.count += len(node)
        return q


def _encode(q: QuickList) -> tuple[int, bytes]:
    """RDB_TYPE_LIST_QUICKLIST_2: node count, then per node the container
    (packed) and its listpack, as rdbSaveObject writes them."""
    q.settle()
    parts = [rdb.encode_length(len(q.nodes))]
    packed = rdb.encode_length(CONTAINER_PACKED)
    blob = rdb.encode_blob
    for node in q.nodes:
        parts.append(packed)
        parts.append(blob(lp_encode(node)))
    return TYPE_LIST_QUICKLIST_2, b"".join(parts)


def _decode_quicklist2(r: "rdb.Reader"):
    n = r.plain_length()
    nodes = []
    for i in range(n):
        container = r.plain_length()
        data = r.string()
        if container == CONTAINER_PLAIN:
            nodes.append([bytes(data)])
            continue
        if container != CONTAINER_PACKED:
            raise rdb.RDBError("quicklist node %d: unknown container %d" % (i, container))
        if not data:
            raise rdb.RDBError("quicklist node %d: empty listpack" % i)
        try:
            nodes.append(lp_decode(data))
        except ValueError as e:
            raise rdb.RDBError("quicklist node %d: damaged listpack (%s)" % (i, e)) from None
    q = QuickList.from_nodes(nodes)
    return q if q.count else None


def _decode_quicklist(r: "rdb.Reader"):
    n = r.plain_length()
    nodes = []
    for i in range(n):
        data = r.string()
        if not data:
            raise rdb.RDBError("quicklist node %d: empty ziplist" % i)
        try:
            nodes.append(zl_decode(data))
        except ValueError as e:
            raise rdb.RDBError("quicklist node %d: damaged ziplist (%s)" % (i, e)) from None
    q = QuickList.from_nodes(nodes)
    return q if q.count else None


def _decode_ziplist(r: "rdb.Reader"):
    data = r.string()
    try:
        items = zl_decode(data)
    except ValueError as e:
        raise rdb.RDBError("list ziplist: %s" % e) from None
    if not items:
        return None
    q = QuickList()
    q.extend_tail(items)
    return q


def _decode_plain(r: "rdb.Reader"):
    n = r.plain_length()
    q = QuickList()
    push = q.push_tail
    for _ in range(n):
        push(r.string())
    return q if q.count else None


def _digest(d: bytearray, q: QuickList) -> None:
    """xorObjectDigest of a list: each element mixed in, head to tail."""
    mix = digest.mix_digest
    for v in q:
        mix(d, v)


def _rewrite(key: bytes, q: QuickList) -> list:
    return rewrite.chunked(b"RPUSH", key, ((v,) for v in q))


TYPE_NAMES[QuickList] = "list"
rdb.ENCODERS[QuickList] = _encode
rdb.DECODERS[TYPE_LIST] = _decode_plain
rdb.DECODERS[TYPE_LIST_ZIPLIST] = _decode_ziplist
rdb.DECODERS[TYPE_LIST_QUICKLIST] = _decode_quicklist
rdb.DECODERS[TYPE_LIST_QUICKLIST_2] = _decode_quicklist2
rewrite.register(QuickList, _rewrite)
digest.DIGESTERS[QuickList] = (digest.OBJ_LIST, _digest)
