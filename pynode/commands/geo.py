"""Geo commands on sorted sets, as Redis 7.0's geo.c: GEOADD (a ZADD of
52-bit geohash scores, propagated as that ZADD), GEODIST, GEOHASH, GEOPOS,
GEOSEARCH / GEOSEARCHSTORE and the older GEORADIUS / GEORADIUSBYMEMBER
(+ _RO).  The geohash arithmetic is storage/geohash.py.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal

from pynode.commands import NOT_INT, SYNTAX, WRONGTYPE, CommandError, command, parse_int
from pynode.commands import lookup_read
from pynode.commands.zsets import (EMPTY, NOT_FLOAT, null_array, store_result,
                                   zadd_generic)
from storage import geohash
from storage.geohash import CIRCULAR, RECTANGLE, Shape
from storage.zsets import SKIPLIST, ZSet, string2d

RADIUS_COORDS = 1
RADIUS_MEMBER = 2
RADIUS_NOSTORE = 4
GEOSEARCH = 8
GEOSEARCHSTORE = 16

SORT_NONE, SORT_ASC, SORT_DESC = 0, 1, 2

UNITS = {b"m": 1.0, b"km": 1000.0, b"ft": 0.3048, b"mi": 1609.34}
BAD_UNIT = "ERR unsupported unit provided. please use M, KM, FT, MI"
NO_MEMBER = "ERR could not decode requested zset member"

_CTX = Context(prec=400)
_Q17 = Decimal(1).scaleb(-17)


def human_double(x: float) -> bytes:
    """ld2string(LD_STR_HUMAN): %.17Lf with the trailing zeros removed."""
    if x != x:
        return b"nan"
    if x == float("inf"):
        return b"inf"
    if x == float("-inf"):
        return b"-inf"
    s = format(Decimal(x).quantize(_Q17, ROUND_HALF_EVEN, _CTX), "f").encode()
    if b"." in s:
        s = s.rstrip(b"0").rstrip(b".")
    if s == b"-0":
        s = b"0"
    return s


def _coord(c, x: float) -> bytes:
    """addReplyHumanLongDouble."""
    s = human_double(x)
    if c.resp == 3:
        return b",%s\r\n" % s
    return b"$%d\r\n%s\r\n" % (len(s), s)


def _lonlat(argv, i: int) -> tuple[float, float]:
    """extractLongLatOrReply."""
    lon = string2d(argv[i])
    if lon is None:
        raise CommandError(NOT_FLOAT)
    lat = string2d(argv[i + 1])
    if lat is None:
        raise CommandError(NOT_FLOAT)
    if (lon < geohash.LONG_MIN or lon > geohash.LONG_MAX or lat < geohash.LAT_MIN
            or lat > geohash.LAT_MAX):
        raise CommandError("ERR invalid longitude,latitude pair %f,%f" % (lon, lat))
    return lon, lat


def _unit(b: bytes) -> float:
    u = UNITS.get(b.lower())
    if u is None:
        raise CommandError(BAD_UNIT)
    return u


def _distance_arg(argv, i: int) -> tuple[float, float]:
    """extractDistanceOrReply: (radius, meters per unit)."""
    d = string2d(argv[i])
    if d is None:
        raise CommandError("ERR need numeric radius")
    if d < 0:
        raise CommandError("ERR radius cannot be negative")
    return d, _unit(argv[i + 1])


def _box_arg(argv, i: int) -> tuple[float, float, float]:
    """extractBoxOrReply: (width, height, meters per unit)."""
    w = string2d(argv[i])
    if w is None:
        raise CommandError("ERR need numeric width")
    h = string2d(argv[i + 1])
    if h is None:
        raise CommandError("ERR need numeric height")
    if h < 0 or w < 0:
        raise CommandError("ERR height or width cannot be negative")
    return w, h, _unit(argv[i + 2])


def _member_pos(z: ZSet, member: bytes):
    s = z.scores.get(member)
    if s is None:
        return None
    return geohash.decode(s)


# ------------------------------------------------------------------ GEOADD
@command("geoadd")
def geoadd(c, argv):
    xx = nx = False
    i = 2
    n = len(argv)
    while i < n:
        o = argv[i].lower()
        if o == b"nx":
            nx = True
        elif o == b"xx":
            xx = True
        elif o == b"ch":
            pass
        else:
            break
        i += 1
    if (n - i) % 3 or (xx and nx):
        raise CommandError(SYNTAX)
    zargv = [b"zadd"] + argv[1:i]
    for j in range(i, n, 3):
        lon, lat = _lonlat(argv, j)
        zargv.append(b"%d" % geohash.score_of(lon, lat))
        zargv.append(argv[j + 2])
    dirty = c.srv.dirty
    r = zadd_generic(c, zargv)
    if c.srv.dirty != dirty:
        c.rewrite = [zargv]
    return r


# ------------------------------------------------------------------ GEODIST / GEOHASH / GEOPOS
@command("geodist")
def geodist(c, argv):
    to_meter = 1.0
    if len(argv) == 5:
        to_meter = _unit(argv[4])
    elif len(argv) > 5:
        raise CommandError(SYNTAX)
    z = lookup_read(c, argv[1], ZSet)
    if z is None:
        return c.nil
    a = _member_pos(z, argv[2])
    b = _member_pos(z, argv[3]) if a is not None else None
    if a is None or b is None:
        return c.nil
    s = b"%.4f" % (geohash.distance(a[0], a[1], b[0], b[1]) / to_meter)
    return b"$%d\r\n%s\r\n" % (len(s), s)


@command("geohash")
def geohash_(c, argv):
    z = lookup_read(c, argv[1], ZSet)
    out = [b"*%d\r\n" % (len(argv) - 2)]
    for m in argv[2:]:
        s = z.scores.get(m) if z is not None else None
        if s is None:
            out.append(c.nil)
        else:
            out.append(b"$11\r\n%s\r\n" % geohash.geohash_string(s))
    return b"".join(out)


@command("geopos")
def geopos(c, argv):
    z = lookup_read(c, argv[1], ZSet)
    out = [b"*%d\r\n" % (len(argv) - 2)]
    for m in argv[2:]:
        p = _member_pos(z, m) if z is not None else None
        if p is None:
            out.append(null_array(c))
        else:
            out.append(b"*2\r\n" + _coord(c, p[0]) + _coord(c, p[1]))
    return b"".join(out)


# ------------------------------------------------------------------ sorting
def pqsort(arr: list, cmp, lrange: int, rrange: int) -> None:
    """Redis's pqsort.c (NetBSD's quicksort, sorting only the parts that
    overlap [lrange, rrange]): GEO* with COUNT sorts this way, and its order
    for equal distances is what clients see."""
    _pqsort(arr, 0, len(arr), cmp, lrange, rrange)


def _med3(arr, a, b, c, cmp):
    x, y, z = arr[a], arr[b], arr[c]
    if cmp(x, y) < 0:
        return b if cmp(y, z) < 0 else (c if cmp(x, z) < 0 else a)
    return b if cmp(y, z) > 0 else (a if cmp(x, z) < 0 else c)


def _pqsort(arr, a, n, cmp, lo, hi):
    while True:
        if n < 7:
            for pm in range(a + 1, a + n):
                pl = pm
                while pl > a and cmp(arr[pl - 1], arr[pl]) > 0:
                    arr[pl], arr[pl - 1] = arr[pl - 1], arr[pl]
                    pl -= 1
            return
        pm = a + n // 2
        if n > 7:
            pl = a
            pn = a + n - 1
            if n > 40:
                d = n // 8
                pl = _med3(arr, pl, pl + d, pl + 2 * d, cmp)
                pm = _med3(arr, pm - d, pm, pm + d, cmp)
                pn = _med3(arr, pn - 2 * d, pn - d, pn, cmp)
            pm = _med3(arr, pl, pm, pn, cmp)
        arr[a], arr[pm] = arr[pm], arr[a]
        pa = pb = a + 1
        pc = pd = a + n - 1
        while True:
            while pb <= pc:
                r = cmp(arr[pb], arr[a])
                if r > 0:
                    break
                if r == 0:
                    arr[pa], arr[pb] = arr[pb], arr[pa]
                    pa += 1
                pb += 1
            while pb <= pc:
                r = cmp(arr[pc], arr[a])
                if r < 0:
                    break
                if r == 0:
                    arr[pc], arr[pd] = arr[pd], arr[pc]
                    pd -= 1
                pc -= 1
            if pb > pc:
                break
            arr[pb], arr[pc] = arr[pc], arr[pb]
            pb += 1
            pc -= 1
        pn = a + n
        r = min(pa - a, pb - pa)
        for i in range(r):
            x, y = a + i, pb - r + i
            arr[x], arr[y] = arr[y], arr[x]
        r = min(pd - pc, pn - pd - 1)
        for i in range(r):
            x, y = pb + i, pn - r + i
            arr[x], arr[y] = arr[y], arr[x]
        r = pb - pa
        if r > 1 and not ((lo < a and hi < a) or (lo > a + r - 1 and hi > a + r - 1)):
            _pqsort(arr, a, r, cmp, lo, hi)
        r = pd - pc
        if r > 1:
            a = pn - r
            n = r
            if not ((lo < a and hi < a) or (lo > a + r - 1 and hi > a + r - 1)):
                continue
        return


def _asc(p, q):
    return 1 if p[0] > q[0] else (0 if p[0] == q[0] else -1)


def _desc(p, q):
    return -_asc(p, q)


# ------------------------------------------------------------------ searches
def _points(z: ZSet, shape: Shape, limit: int) -> list:
    """membersOfAllNeighbors: [(dist, score, member, lon, lat)] in scan order."""
    out = []
    sl = z.sl
    decode = geohash.decode
    contains = shape.contains
    for lo, hi in geohash.search_boxes(shape):
        if out and limit and len(out) >= limit:
            break
        a = sl.bisect_left((lo,))
        b = sl.bisect_left((hi,))
        if a >= b:
            continue
        for score, member in sl.islice(a, b):
            lon, lat = decode(score)
            d = contains(lon, lat)
            if d is not None:
                out.append((d, score, member, lon, lat))
            if out and limit and len(out) >= limit:
                break
    return out


def georadius_generic(c, argv, src_idx: int, flags: int):
    storekey = None
    storedist = False
    z = lookup_read(c, argv[src_idx], ZSet)
    shape = Shape()
    if flags & RADIUS_COORDS:
        base = 6
        shape.type = CIRCULAR
        shape.lon, shape.lat = _lonlat(argv, 2)
        shape.radius, shape.conversion = _distance_arg(argv, base - 2)
    elif flags & RADIUS_MEMBER and z is None:
        base = 5
    elif flags & RADIUS_MEMBER:
        base = 5
        shape.type = CIRCULAR
        p = _member_pos(z, argv[2])
        if p is None:
            raise CommandError(NO_MEMBER)
        shape.lon, shape.lat = p
        shape.radius, shape.conversion = _distance_arg(argv, base - 2)
    else:
        base = 2
        if flags & GEOSEARCHSTORE:
            base = 3
            storekey = argv[1]
    withdist = withhash = withcoords = False
    frommember = fromloc = byradius = bybox = False
    sort = SORT_NONE
    any_ = False
    count = 0
    n = len(argv)
    remaining = n - base
    i = 0
    while i < remaining:
        arg = argv[base + i].lower()
        if arg == b"withdist":
            withdist = True
        elif arg == b"withhash":
            withhash = True
        elif arg == b"withcoord":
            withcoords = True
        elif arg == b"any":
            any_ = True
        elif arg == b"asc":
            sort = SORT_ASC
        elif arg == b"desc":
            sort = SORT_DESC
        elif arg == b"count" and i + 1 < remaining:
            count = parse_int(argv[base + i + 1], NOT_INT)
            if count <= 0:
                raise CommandError("ERR COUNT must be > 0")
            i += 1
        elif (arg == b"store" and i + 1 < remaining and not flags & RADIUS_NOSTORE
              and not flags & GEOSEARCH):
            storekey = argv[base + i + 1]
            storedist = False
            i += 1
        elif (arg == b"storedist" and i + 1 < remaining and not flags & RADIUS_NOSTORE
              and not flags & GEOSEARCH):
            storekey = argv[base + i + 1]
            storedist = True
            i += 1
        elif arg == b"storedist" and flags & GEOSEARCH and flags & GEOSEARCHSTORE:
            storedist = True
        elif arg == b"frommember" and i + 1 < remaining and flags & GEOSEARCH and not fromloc:
            if z is not None:
                p = _member_pos(z, argv[base + i + 1])
                if p is None:
                    raise CommandError(NO_MEMBER)
                shape.lon, shape.lat = p
            frommember = True
            i += 1
        elif arg == b"fromlonlat" and i + 2 < remaining and flags & GEOSEARCH and not frommember:
            shape.lon, shape.lat = _lonlat(argv, base + i + 1)
            fromloc = True
            i += 2
        elif arg == b"byradius" and i + 2 < remaining and flags & GEOSEARCH and not bybox:
            shape.radius, shape.conversion = _distance_arg(argv, base + i + 1)
            shape.type = CIRCULAR
            byradius = True
            i += 2
        elif arg == b"bybox" and i + 3 < remaining and flags & GEOSEARCH and not byradius:
            shape.width, shape.height, shape.conversion = _box_arg(argv, base + i + 1)
            shape.type = RECTANGLE
            bybox = True
            i += 3
        else:
            raise CommandError(SYNTAX)
        i += 1
    if storekey is not None and (withdist or withhash or withcoords):
        raise CommandError("ERR %s is not compatible with WITHDIST, WITHHASH and WITHCOORD "
                           "options" % ("GEOSEARCHSTORE" if flags & GEOSEARCHSTORE
                                        else "STORE option in GEORADIUS"))
    name = argv[0].decode("utf-8", "replace")
    if flags & GEOSEARCH and not (frommember or fromloc):
        raise CommandError("ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for %s"
                           % name)
    if flags & GEOSEARCH and not (byradius or bybox):
        raise CommandError("ERR exactly one of BYRADIUS and BYBOX can be specified for %s"
                           % name)
    if any_ and not count:
        raise CommandError("ERR the ANY argument requires COUNT argument")
    if z is None:
        if storekey is not None:
            return b":%d\r\n" % store_result(c, storekey, None, b"")
        return EMPTY
    if count and sort == SORT_NONE and not any_:
        sort = SORT_ASC
    points = _points(z, shape, count if any_ else 0)
    if not points and storekey is None:
        return EMPTY
    returned = len(points) if not count or len(points) < count else count
    if sort != SORT_NONE:
        if returned == len(points):
            # glibc's qsort: a merge sort, stable for equal distances
            points.sort(key=lambda p: p[0], reverse=sort == SORT_DESC)
        else:
            pqsort(points, _asc if sort == SORT_ASC else _desc, 0, returned - 1)
    conv = shape.conversion
    if storekey is None:
        opts = withdist + withhash + withcoords
        out = [b"*%d\r\n" % returned]
        for d, score, member, lon, lat in points[:returned]:
            if opts:
                out.append(b"*%d\r\n" % (opts + 1))
            out.append(b"$%d\r\n%s\r\n" % (len(member), member))
            if withdist:
                ds = b"%.4f" % (d / conv)
                out.append(b"$%d\r\n%s\r\n" % (len(ds), ds))
            if withhash:
                out.append(b":%d\r\n" % int(score))
            if withcoords:
                out.append(b"*2\r\n" + _coord(c, lon) + _coord(c, lat))
        return b"".join(out)
    dz = None
    if returned:
        dz = ZSet(SKIPLIST)
        scores = dz.scores
        for d, score, member, lon, lat in points[:returned]:
            scores[member] = d / conv if storedist else score
        dz.sl.update((s, m) for m, s in scores.items())
        dz.shrink_if_small(max(len(m) for m in scores))
    event = b"geosearchstore" if flags & GEOSEARCH else b"georadiusstore"
    srv = c.srv
    dirty = srv.dirty
    store_result(c, storekey, dz, event)
    if dz is not None:      # the store counts one change per member stored
        srv.dirty += returned - (srv.dirty - dirty)
    return b":%d\r\n" % returned


@command("georadius")
def georadius(c, argv):
    return georadius_generic(c, argv, 1, RADIUS_COORDS)


@command("georadiusbymember")
def georadiusbymember(c, argv):
    return georadius_generic(c, argv, 1, RADIUS_MEMBER)


@command("georadius_ro")
def georadius_ro(c, argv):
    return georadius_generic(c, argv, 1, RADIUS_COORDS | RADIUS_NOSTORE)


@command("georadiusbymember_ro")
def georadiusbymember_ro(c, argv):
    return georadius_generic(c, argv, 1, RADIUS_MEMBER | RADIUS_NOSTORE)


@command("geosearch")
def geosearch(c, argv):
    return georadius_generic(c, argv, 1, GEOSEARCH)


@command("geosearchstore")
def geosearchstore(c, argv):
    return georadius_generic(c, argv, 2, GEOSEARCH | GEOSEARCHSTORE)
