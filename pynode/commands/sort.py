"""SORT and SORT_RO (Redis 7.0 sort.c) on lists, sets and sorted sets.

BY <pattern> sorts by the string keys (or hash fields, "key->field") the
pattern names once its first '*' is replaced by an element; a BY pattern
without '*' means "do not sort" (lists and sorted sets keep their order, in
reverse with DESC).  GET <pattern> returns those values instead of (or, with
GET #, as well as) the elements.  STORE writes the result as a list.

Numbers are read with C's strtod as Redis does (leading blanks, hex, inf,
and "can't be converted" on trailing garbage, NaN or a value out of range);
ties are broken by comparing the elements, so numeric sorts are
deterministic.  ALPHA compares bytes (strcoll in the C/C.UTF-8 locales Redis
runs with), only up to a NUL byte unless STORE is given, as Redis does.  In
cluster mode Redis 7.0 refuses every BY pattern with '*' and every GET.
"""

from __future__ import annotations

import re
from fractions import Fraction

from pynode import notify
from pynode.commands import SYNTAX, WRONGTYPE, CommandError, command, lookup_read, parse_int
from storage import lists as _lists
from storage import zsets as _zsets
from storage.hashes import Hash
from storage.sets import Set

NOT_DOUBLE = "ERR One or more scores can't be converted into double"

_WS = b" \t\n\v\f\r"
_NUM = re.compile(
    rb"[+-]?(?:(?P<inf>inf(?:inity)?)|(?P<nan>nan(?:\([0-9a-z_]*\))?)"
    rb"|(?P<hex>0x(?:[0-9a-f]+\.?[0-9a-f]*|\.[0-9a-f]+)(?:p[+-]?[0-9]+)?)"
    rb"|(?P<dec>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?))", re.I)
_DBL_MIN = 2.2250738585072014e-308


def _cstr(b: bytes) -> bytes:
    """What C sees of b: the bytes before the first NUL."""
    z = b.find(b"\0")
    return b if z < 0 else b[:z]


def _exact(text: bytes, hexa: bool) -> Fraction:
    """The exact value of a decimal or hexadecimal float literal."""
    t = text.lower()
    neg = t[:1] == b"-"
    t = t.lstrip(b"+-")
    if not hexa:
        return -Fraction(t.decode()) if neg else Fraction(t.decode())
    t = t[2:]
    mant, _, exp = t.partition(b"p")
    ip, _, fp = mant.partition(b".")
    v = Fraction(int((ip + fp) or b"0", 16), 16 ** len(fp)) * Fraction(2) ** int(exp or b"0")
    return -v if neg else v


def sort_score(b: bytes) -> float | None:
    """strtod() as sortCommand uses it: the double, or None for "can't be
    converted" (not all of the C string consumed, NaN, or ERANGE: an
    overflow, or an underflow to zero or to an inexact subnormal)."""
    s = _cstr(b)
    if not s:
        return 0.0
    p = 0
    while p < len(s) and s[p] in _WS:
        p += 1
    m = _NUM.match(s, p)
    if m is None or m.end() != len(s):
        return None
    text = m.group(0)
    if m.group("nan") is not None:
        return None
    if m.group("inf") is not None:
        return float("-inf") if text[:1] == b"-" else float("inf")
    hexa = m.group("hex") is not None
    try:
        v = float.fromhex(text.decode()) if hexa else float(text)
    except OverflowError:
        return None
    if v in (float("inf"), float("-inf")):
        return None
    if abs(v) < _DBL_MIN:
        exact = _exact(text, hexa)
        if exact and (v == 0.0 or Fraction(v) != exact):
            return None
    return v


# ------------------------------------------------------------------ lookups
def lookup_by_pattern(c, pattern: bytes, subst: bytes):
    """lookupKeyByPattern: "#" is the element itself; the first '*' is
    replaced by the element; "key->field" reads a hash field.  None when the
    key, the field or the '*' is missing, or the key has another type."""
    cpat = _cstr(pattern)
    if cpat == b"#":
        return subst
    p = cpat.find(b"*")
    if p < 0:
        return None
    f = cpat.find(b"->", p + 1)
    if f >= 0 and f + 2 < len(cpat):
        key = pattern[:p] + subst + pattern[p + 1:f]
        field = pattern[f + 2:]
    else:
        key = pattern[:p] + subst + pattern[p + 1:]
        field = None
    v = lookup_read(c, key)
    if v is None:
        return None
    if field is not None:
        return v.get(field) if type(v) is Hash else None
    return v if type(v) is bytes else None


def _types():
    """The list and sorted-set classes (their modules may not define them)."""
    return getattr(_lists, "QuickList", None), getattr(_zsets, "ZSet", None)


# ------------------------------------------------------------------ SORT
@command("sort")
def sort(c, argv):
    return _sort(c, argv, False)


@command("sort_ro")
def sort_ro(c, argv):
    return _sort(c, argv, True)


def _sort(c, argv, readonly: bool):
    desc = alpha = dontsort = False
    limit_start, limit_count = 0, -1
    sortby = store = None
    gets: list[bytes] = []
    cluster = c.srv.cfg.bool("cluster-enabled")
    j = 2
    n = len(argv)
    while j < n:
        opt = argv[j].lower()
        left = n - j - 1
        if opt == b"asc":
            desc = False
        elif opt == b"desc":
            desc = True
        elif opt == b"alpha":
            alpha = True
        elif opt == b"limit" and left >= 2:
            limit_start = parse_int(argv[j + 1])
            limit_count = parse_int(argv[j + 2])
            j += 2
        elif not readonly and opt == b"store" and left >= 1:
            store = argv[j + 1]
            j += 1
        elif opt == b"by" and left >= 1:
            sortby = argv[j + 1]
            if b"*" not in _cstr(sortby):
                dontsort = True
            elif cluster:
                raise CommandError("ERR BY option of SORT denied in Cluster mode.")
            j += 1
        elif opt == b"get" and left >= 1:
            if cluster:
                raise CommandError("ERR GET option of SORT denied in Cluster mode.")
            gets.append(argv[j + 1])
            j += 1
        else:
            raise CommandError(SYNTAX)
        j += 1

    QuickList, ZSet = _types()
    val = lookup_read(c, argv[1])
    t = type(val)
    if val is not None and t is not Set and (QuickList is None or t is not QuickList) \
            and (ZSet is None or t is not ZSet):
        raise CommandError(WRONGTYPE)
    if dontsort and t is Set and store is not None:
        # a set has no order of its own: what is stored must be deterministic
        dontsort = False
        alpha = True
        sortby = None
    if ZSet is not None and t is ZSet and val.encoding != "skiplist":
        val.encoding = "skiplist"        # Redis converts the sorted set for SORT

    vectorlen = 0 if val is None else len(val)
    start = limit_start if limit_start > 0 else 0
    end = vectorlen - 1 if limit_count < 0 else start + limit_count - 1
    if start >= vectorlen:
        start = vectorlen - 1
        end = vectorlen - 2
    if end >= vectorlen:
        end = vectorlen - 1

    # the elements, in the order the sort starts from
    if val is None:
        elems = []
    elif dontsort and t is not Set:
        take = end - start + 1
        if take <= 0:
            elems = []
        elif t is ZSet:
            sl = val.sl
            if desc:
                hi = len(sl) - start
                elems = [m for _, m in sl.islice(hi - take, hi, reverse=True)]
            else:
                elems = [m for _, m in sl.islice(start, start + take)]
        else:
            items = val.to_list() if hasattr(val, "to_list") else list(val)
            if desc:
                hi = len(items) - start
                elems = items[hi - take:hi][::-1]
            else:
                elems = items[start:start + take]
        end -= start
        start = 0
    elif t is Set:
        elems = list(val.members())
    elif t is ZSet:
        elems = list(val.scores)
    else:
        elems = val.to_list() if hasattr(val, "to_list") else list(val)

    if not dontsort and elems:
        elems = _sorted(c, elems, sortby, alpha, desc, store is not None)

    window = elems[start:end + 1] if end >= start else []
    if store is None:
        head = b"*%d\r\n" % (len(window) * (len(gets) or 1))
        if not gets:
            return head + b"".join([b"$%d\r\n%s\r\n" % (len(e), e) for e in window])
        out = [head]
        append = out.append
        nil = c.nil
        for e in window:
            for g in gets:
                v = lookup_by_pattern(c, g, e)
                append(nil if v is None else b"$%d\r\n%s\r\n" % (len(v), v))
        return b"".join(out)

    if gets:
        values = []
        for e in window:
            for g in gets:
                v = lookup_by_pattern(c, g, e)
                values.append(b"" if v is None else v)
    else:
        values = window
    db = c.db
    srv = c.srv
    if values:
        if QuickList is None:
            raise CommandError("ERR SORT STORE needs the list type")
        q = QuickList(-2)               # createQuicklistObject: the default fill
        q.extend_tail(values)
        db.set(store, q)
        notify.notify(srv, notify.LIST, b"sortstore", store, db.id)
        srv.dirty += len(values)
    elif db.delete(store):
        notify.notify(srv, notify.GENERIC, b"del", store, db.id)
        srv.dirty += 1
    return b":%d\r\n" % len(values)


# bytes float() reads differently from strtod (digit separators, trailing
# blanks): values containing them always take sort_score's exact path
_FLOAT_DIFFERS = re.compile(rb"[_\s\x00]").search
_INF = float("inf")


def _scores(values: list) -> list:
    """sort_score of each value (None where Redis can't convert it), with
    float() doing the work where it agrees with strtod."""
    if _FLOAT_DIFFERS(b"\x01".join(values)) is None:
        try:
            out = list(map(float, values))
        except ValueError:
            return list(map(sort_score, values))
        for i, v in enumerate(out):
            if not _DBL_MIN <= abs(v) < _INF:      # zero, subnormal, inf or NaN
                out[i] = sort_score(values[i])
        return out
    return list(map(sort_score, values))


def _sorted(c, elems, sortby, alpha: bool, desc: bool, storing: bool) -> list:
    """sortCompare over elems (stable, as glibc's qsort)."""
    if alpha:
        if sortby is None:
            if storing or b"\0" not in b"".join(elems):
                return sorted(elems, reverse=desc)
            return sorted(elems, key=_cstr, reverse=desc)
        keys = []
        for e in elems:
            v = lookup_by_pattern(c, sortby, e)
            if v is None:
                keys.append((0, b""))
            else:
                keys.append((1, v if storing else _cstr(v)))
        order = sorted(range(len(elems)), key=keys.__getitem__, reverse=desc)
        return [elems[i] for i in order]
    if sortby is None:
        nums = _scores(elems)
    else:
        found = [lookup_by_pattern(c, sortby, e) for e in elems]
        nums = _scores([b"" if v is None else v for v in found])   # missing: 0
    if None in nums:
        raise CommandError(NOT_DOUBLE)
    return [e for _, e in sorted(zip(nums, elems), reverse=desc)]
