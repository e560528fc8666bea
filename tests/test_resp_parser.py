"""Sans-I/O tests of pynode/resp.py: RequestParser, split_args and encode.

The reference for parsing is Redis 7.0's own request reader (networking.c
processInlineBuffer / processMultibulkBuffer and sds.c sdssplitargs),
transliterated below into `RedisReader` / `sdssplitargs`.  Hypothesis checks
that pynode's parser gives the same commands and the same protocol error as
that reference for any stream cut into any chunks.

One deliberate difference is kept out of the generated input: Redis looks for
line ends with strchr(), which stops at a NUL byte, so a NUL inside a request
line makes Redis wait forever; pynode treats NUL as an ordinary byte.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from pynode import resp
from pynode.resp import (
    NULL_ARRAY, Double, Error, Map, Push, RequestParser, SetReply, Status, Verbatim,
    encode, format_double, split_args,
)

INLINE_MAX = 64 * 1024
INT_MAX = 2**31 - 1
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------- reference

def string2ll(s: bytes):
    """util.c string2ll: strict decimal, optional '-', no '+', no spaces,
    no leading zeros, fits in a signed 64-bit integer."""
    if not s or len(s) > 20:
        return None
    if s == b"0":
        return 0
    neg = s[:1] == b"-"
    digits = s[1:] if neg else s
    if not digits or not (49 <= digits[0] <= 57):
        return None
    if not all(48 <= c <= 57 for c in digits):
        return None
    v = -int(digits) if neg else int(digits)
    if not -(2**63) <= v <= 2**63 - 1:
        return None
    return v


_CSPACE = b" \t\n\v\f\r"


def sdssplitargs(line: bytes):
    """sds.c sdssplitargs, for a line without NUL bytes.  None = unbalanced."""
    p, n = 0, len(line)
    at = lambda i: line[i] if i < n else 0  # noqa: E731 - the C string's NUL
    out = []
    while True:
        while p < n and line[p] in _CSPACE:
            p += 1
        if p >= n:
            return out
        inq = insq = done = False
        cur = bytearray()
        while not done:
            c = at(p)
            if inq:
                if c == 92 and at(p + 1) == ord("x") and at(p + 2) in b"0123456789abcdefABCDEF" \
                        and at(p + 3) in b"0123456789abcdefABCDEF" and at(p + 2) and at(p + 3):
                    cur.append(int(line[p + 2:p + 4], 16))
                    p += 3
                elif c == 92 and at(p + 1):
                    p += 1
                    cur.append({ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8,
                                ord("a"): 7}.get(line[p], line[p]))
                elif c == 34:
                    if at(p + 1) and at(p + 1) not in _CSPACE:
                        return None
                    done = True
                elif c == 0:
                    return None
                else:
                    cur.append(c)
            elif insq:
                if c == 92 and at(p + 1) == 39:
                    p += 1
                    cur.append(39)
                elif c == 39:
                    if at(p + 1) and at(p + 1) not in _CSPACE:
                        return None
                    done = True
                elif c == 0:
                    return None
                else:
                    cur.append(c)
            else:
                if c in (32, 10, 13, 9, 0):
                    done = True
                elif c == 34:
                    inq = True
                elif c == 39:
                    insq = True
                else:
                    cur.append(c)
            if c:
                p += 1
        out.append(bytes(cur))


class RedisReader:
    """processInputBuffer() of Redis 7.0 for a normal (non-master, authenticated)
    client, one read at a time, as networking.c does it."""

    def __init__(self, max_bulk: int = 512 * 1024 * 1024) -> None:
        self.q = b""
        self.pos = 0
        self.reqtype = None
        self.multibulklen = 0
        self.bulklen = -1
        self.argv: list[bytes] = []
        self.error = None
        self.max_bulk = max_bulk

    def feed(self, data: bytes) -> list[list[bytes]]:
        self.q += data
        out = []
        while self.pos < len(self.q) and self.error is None:
            if self.reqtype is None:
                self.reqtype = "multi" if self.q[self.pos] == 42 else "inline"
            ok = self._inline() if self.reqtype == "inline" else self._multibulk()
            if not ok:
                break
            if self.argv:
                out.append(self.argv)
            self.argv = []
            self.reqtype = None
            self.multibulklen = 0
            self.bulklen = -1
        return out

    def _inline(self) -> bool:
        q, pos = self.q, self.pos
        nl = q.find(b"\n", pos)
        if nl < 0:
            if len(q) - pos > INLINE_MAX:
                self.error = "Protocol error: too big inline request"
            return False
        end = nl - 1 if nl != pos and q[nl - 1] == 13 else nl
        argv = sdssplitargs(q[pos:end])
        if argv is None:
            self.error = "Protocol error: unbalanced quotes in request"
            return False
        self.pos = nl + 1
        self.argv = argv
        return True

    def _multibulk(self) -> bool:
        q = self.q
        if self.multibulklen == 0:
            nl = q.find(b"\r", self.pos)
            if nl < 0:
                if len(q) - self.pos > INLINE_MAX:
                    self.error = "Protocol error: too big mbulk count string"
                return False
            if nl - self.pos > len(q) - self.pos - 2:
                return False
            ll = string2ll(q[self.pos + 1:nl])
            if ll is None or ll > INT_MAX:
                self.error = "Protocol error: invalid multibulk length"
                return False
            self.pos = nl + 2
            if ll <= 0:
                return True
            self.multibulklen = ll
        while self.multibulklen:
            if self.bulklen == -1:
                nl = q.find(b"\r", self.pos)
                if nl < 0:
                    if len(q) - self.pos > INLINE_MAX:
                        self.error = "Protocol error: too big bulk count string"
                        return False
                    break
                if nl - self.pos > len(q) - self.pos - 2:
                    break
                if q[self.pos] != 36:
                    c = q[self.pos]
                    self.error = "Protocol error: expected '$', got '%s'" % (
                        " " if c in (10, 13) else chr(c))
                    return False
                ll = string2ll(q[self.pos + 1:nl])
                if ll is None or ll < 0 or ll > self.max_bulk:
                    self.error = "Protocol error: invalid bulk length"
                    return False
                self.pos = nl + 2
                self.bulklen = ll
            if len(q) - self.pos < self.bulklen + 2:
                break
            self.argv.append(q[self.pos:self.pos + self.bulklen])
            self.pos += self.bulklen + 2
            self.bulklen = -1
            self.multibulklen -= 1
        return self.multibulklen == 0


# --------------------------------------------------------------- helpers

def mbulk(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def run(parser, chunks):
    """Feed chunks until an error; return (commands, error)."""
    out = []
    for ch in chunks:
        out.extend(parser.feed(ch))
        if parser.error is not None:
            break
    return out, parser.error


def split_at(data: bytes, cuts) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return [p for p in pieces if p]


def quote_inline(a: bytes) -> bytes:
    """Render one argument for an inline request so that sdssplitargs gives it back."""
    if a and all(c > 32 and c not in b"\"'\\" and c < 127 for c in a):
        return a
    out = b'"'
    for c in a:
        if c in b'"\\':
            out += b"\\" + bytes([c])
        elif 32 <= c < 127:
            out += bytes([c])
        else:
            out += b"\\x%02x" % c
    return out + b'"'


payload = st.binary(max_size=40)
nonul_payload = st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"0"))
argvs = st.lists(payload, min_size=1, max_size=6)


@st.composite
def valid_stream(draw, args=argvs, big=False):
    """A stream of multibulk and inline commands, and the commands it holds."""
    cmds = draw(st.lists(args, min_size=1, max_size=12))
    if big:
        cmds.insert(draw(st.integers(0, len(cmds))),
                    [b"SET", b"k", draw(st.sampled_from([b"v", b"x"])) * draw(
                        st.sampled_from([32 * 1024, 100_000, 300_000]))])
    data = b""
    for argv in cmds:
        # inline lines must stay short (Redis too refuses lines over 64 KB
        # without a newline yet) and cannot start with '*' or be empty
        if draw(st.booleans()) or len(argv[0]) == 0 or argv[0][:1] == b"*" or \
                sum(map(len, argv)) > 1000:
            data += mbulk(*argv)
        else:
            data += b" ".join(quote_inline(a) for a in argv)
            data += draw(st.sampled_from([b"\r\n", b"\n"]))
    return data, cmds


# --------------------------------------------------------------- properties

@SETTINGS
@given(valid_stream(), st.lists(st.integers(0, 10**6), max_size=30))
def test_any_split_of_a_valid_stream_parses_the_same(sc, cuts):
    data, cmds = sc
    whole, err = run(RequestParser(), [data])
    assert err is None and whole == cmds
    parts, err = run(RequestParser(), split_at(data, cuts))
    assert err is None and parts == cmds


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_stream(big=True), st.lists(st.integers(0, 10**6), max_size=40))
def test_big_arguments_in_any_split(sc, cuts):
    data, cmds = sc
    parts, err = run(RequestParser(), split_at(data, cuts))
    assert err is None and parts == cmds


@SETTINGS
@given(st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=8))
def test_random_bytes_never_raise(data, cuts):
    p = RequestParser()
    out, err = run(p, split_at(data, cuts))
    assert err is None or err.startswith("Protocol error: ")
    for argv in out:
        assert isinstance(argv, list) and all(type(a) is bytes for a in argv)


_MUTATIONS = st.sampled_from([
    b"*", b"$", b"\r", b"\n", b"\r\n", b"-", b"+", b"0", b"01", b" ", b"'", b'"', b"\\",
    b"x", b":", b"\t", b"\x0b", b"\xff", b"9999999999", b"-1", b"2147483648",
])


@SETTINGS
@given(valid_stream(args=st.lists(nonul_payload, min_size=1, max_size=4)),
       st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 3), _MUTATIONS), max_size=4),
       st.lists(st.integers(0, 10**6), max_size=10))
def test_damaged_streams_behave_like_redis(sc, muts, cuts):
    """Commands before the damage, then the same protocol error as Redis (or none)."""
    data, _ = sc
    for at, drop, ins in muts:
        at %= len(data) + 1
        data = data[:at] + ins + data[at + drop:]
    assume(b"\0" not in data)
    chunks = split_at(data, cuts)
    expect = run(RedisReader(), chunks)
    assert run(RequestParser(), chunks) == expect


@SETTINGS
@given(st.binary(max_size=60).map(lambda b: b.replace(b"\0", b"")))
def test_split_args_matches_sdssplitargs(line):
    assert split_args(line) == sdssplitargs(line)


@SETTINGS
@given(st.lists(st.sampled_from([b"a", b"b", b" ", b"\t", b"\x0b", b"\x0c", b"\r", b'"', b"'",
                                 b"\\", b"\\x41", b"\\n", b"x4", b"\\'"]), max_size=14))
def test_split_args_matches_sdssplitargs_on_quoting_soup(parts):
    line = b"".join(parts)
    assert split_args(line) == sdssplitargs(line)


@SETTINGS
@given(st.lists(payload, min_size=1, max_size=6))
def test_quoted_inline_round_trip(argv):
    line = b" ".join(quote_inline(a) for a in argv)
    assert split_args(line) == argv


# --------------------------------------------------------------- examples

@pytest.mark.parametrize("data,cmds,err", [
    (b"PING\r\n", [[b"PING"]], None),
    (b"SET a b\n", [[b"SET", b"a", b"b"]], None),
    (b"\r\n\n  \r\nPING\r\n", [[b"PING"]], None),
    (b"*0\r\n*-1\r\nPING\r\n", [[b"PING"]], None),
    (b"*1\r\n$4\r\nPINGxxPING\r\n", [[b"PING"], [b"PING"]], None),   # CRLF after a bulk unchecked
    (b"*1\rx$4\r\nPING\r\n", [[b"PING"]], None),                     # a line ends at its \r
    (b"PING\r\nPING\r\n*1\r\nx\r\n", [[b"PING"], [b"PING"]], "Protocol error: expected '$', got 'x'"),
    (b"*1\r\n$4\r\nPING\r\n*x\r\n", [[b"PING"]], "Protocol error: invalid multibulk length"),
    (b"* 1\r\n", [], "Protocol error: invalid multibulk length"),
    (b"*01\r\n", [], "Protocol error: invalid multibulk length"),
    (b"*+1\r\n", [], "Protocol error: invalid multibulk length"),
    (b"*-0\r\n", [], "Protocol error: invalid multibulk length"),
    (b"*\r\n", [], "Protocol error: invalid multibulk length"),
    (b"*2147483648\r\n", [], "Protocol error: invalid multibulk length"),
    (b"*3000000000\r\n", [], "Protocol error: invalid multibulk length"),
    (b"*1" + b"1" * 5000 + b"\r\n", [], "Protocol error: invalid multibulk length"),
    (b"*1\r\n$x\r\n", [], "Protocol error: invalid bulk length"),
    (b"*1\r\n$-1\r\n", [], "Protocol error: invalid bulk length"),
    (b"*1\r\n$-0\r\n", [], "Protocol error: invalid bulk length"),
    (b"*1\r\n$04\r\nPING\r\n", [], "Protocol error: invalid bulk length"),
    (b"*1\r\n$+4\r\nPING\r\n", [], "Protocol error: invalid bulk length"),
    (b"*1\r\n$ 4\r\nPING\r\n", [], "Protocol error: invalid bulk length"),
    (b"*1\r\n$4 \r\nPING\r\n", [], "Protocol error: invalid bulk length"),
    (b"*1\r\n$9999999999999\r\n", [], "Protocol error: invalid bulk length"),
    (b"*1\r\n$1" + b"1" * 5000 + b"\r\n", [], "Protocol error: invalid bulk length"),
    (b"*1\r\n\r\n", [], "Protocol error: expected '$', got ' '"),     # Redis blanks CR/LF
    (b"*1\r\n\n\r\n", [], "Protocol error: expected '$', got ' '"),
    (b"*1\r\n:1\r\n", [], "Protocol error: expected '$', got ':'"),
    (b"*1\r\n*1\r\n$1\r\na\r\n", [], "Protocol error: expected '$', got '*'"),
    (b"*2\r\n$1\r\na\r\n+OK\r\n", [], "Protocol error: expected '$', got '+'"),
    (b'SET a "b"c\r\n', [], "Protocol error: unbalanced quotes in request"),
    (b"SET a 'b\r\n", [], "Protocol error: unbalanced quotes in request"),
    (b'ECHO "a\\"\r\n', [], "Protocol error: unbalanced quotes in request"),
    (b"PING\r\n" + b"x" * (INLINE_MAX + 1), [[b"PING"]], "Protocol error: too big inline request"),
    (b"*" + b"1" * (INLINE_MAX + 1), [], "Protocol error: too big mbulk count string"),
    (b"*1\r\n$" + b"1" * (INLINE_MAX + 1), [], "Protocol error: too big bulk count string"),
])
def test_examples(data, cmds, err):
    assert run(RequestParser(), [data]) == (cmds, err)
    assert run(RedisReader(), [data]) == (cmds, err)     # the reference agrees
    # byte by byte for the short ones: errors do not depend on the split
    if len(data) < 200:
        assert run(RequestParser(), [data[i:i + 1] for i in range(len(data))]) == (cmds, err)


def test_expected_dollar_error_carries_the_raw_byte():
    p = RequestParser()
    assert p.feed(b"*1\r\n\xff\r\n") == []
    assert p.error == "Protocol error: expected '$', got '\xff'"
    assert p.error.encode("latin-1") == b"Protocol error: expected '$', got '\xff'"


def test_a_header_waits_for_its_line_end():
    """Like Redis: no error until the line with the bad header is complete."""
    p = RequestParser()
    assert p.feed(b"*1\r\n$4\r\nPING\r\n*1\r\nx") == [[b"PING"]]
    assert p.error is None
    assert p.feed(b"\r\n") == []
    assert p.error == "Protocol error: expected '$', got 'x'"


@pytest.mark.parametrize("line,args", [
    (b'ECHO "\\x41"', [b"ECHO", b"A"]),
    (b'ECHO "\\x4"', [b"ECHO", b"x4"]),
    (b'ECHO "\\xZZ"', [b"ECHO", b"xZZ"]),
    (b"ECHO '\\''", [b"ECHO", b"'"]),
    (b"ECHO '\\n'", [b"ECHO", b"\\n"]),
    (b'ECHO "\\n\\r\\t\\b\\a\\\\\\"\\q"', [b"ECHO", b"\n\r\t\b\a\\\"q"]),
    (b'ECHO ""', [b"ECHO", b""]),
    (b"ECHO ''", [b"ECHO", b""]),
    (b'ECHO a"b c"', [b"ECHO", b"ab c"]),
    (b"ECHO a\x0bb", [b"ECHO", b"a\x0bb"]),
    (b"ECHO \x0b a", [b"ECHO", b"a"]),
    (b'ECHO "a"\x0bb', [b"ECHO", b"a", b"b"]),
    (b"  a\tb\r c  ", [b"a", b"b", b"c"]),
    (b"", []),
    (b'"a"b', None),
    (b"'a'b", None),
    (b'"abc', None),
    (b"'abc", None),
    (b'"a\\"', None),
    (b'""""', None),
])
def test_split_args_examples(line, args):
    assert split_args(line) == args
    assert sdssplitargs(line) == args


# --------------------------------------------------------------- limits

MB = 1024 * 1024


def test_proto_max_bulk_len():
    p = RequestParser(max_bulk=MB)
    assert run(p, [mbulk(b"SET", b"k", b"x" * MB)]) == ([[b"SET", b"k", b"x" * MB]], None)
    big = mbulk(b"SET", b"k", b"x" * (MB + 1))
    for chunks in ([big], [big[:100], big[100:]], [big[:30]]):
        p = RequestParser(max_bulk=MB)
        assert run(p, chunks) == ([], "Protocol error: invalid bulk length")
    # commands before the oversized one are still returned
    p = RequestParser(max_bulk=MB)
    assert run(p, [mbulk(b"PING") + big]) == ([[b"PING"]], "Protocol error: invalid bulk length")


def test_query_buffer_limit():
    # an incomplete command bigger than the limit: "query buffer limit" (close)
    p = RequestParser(max_bulk=4 * MB, max_query=MB)
    head = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % (3 * MB)
    out = p.feed(head)
    assert out == [] and p.error is None
    for _ in range(20):
        p.feed(b"x" * (64 * 1024))
        if p.error:
            break
    assert p.error == "query buffer limit"
    # many small pipelined commands are fine: the limit is on what is pending
    p = RequestParser(max_query=MB)
    data = mbulk(b"SET", b"k", b"v" * 100) * 20000
    assert len(data) > 2 * MB
    assert len(p.feed(data)) == 20000 and p.error is None
    # an endless inline line hits the inline limit first
    p = RequestParser(max_query=MB)
    p.feed(b"x" * (INLINE_MAX + 10))
    assert p.error == "Protocol error: too big inline request"


def test_pending_counts_incomplete_bytes():
    p = RequestParser()
    assert p.pending() == 0
    p.feed(b"*2\r\n$3\r\nGET\r\n$1")
    assert p.pending() == len(b"*2\r\n$3\r\nGET\r\n$1")
    assert p.feed(b"\r\nk\r\n") == [[b"GET", b"k"]]
    assert p.pending() == 0
    p.feed(b"*1\r\n$100000\r\n" + b"a" * 50000)
    assert p.pending() == len(b"*1\r\n$100000\r\n") + 50000


def test_huge_announced_count_is_cheap():
    """A 13-byte request announcing 2**31-1 arguments must not allocate them."""
    import time
    t = time.monotonic()
    for head in (b"*2147483647\r\n", b"*99999999\r\n", mbulk(b"PING") + b"*99999999\r\n"):
        p = RequestParser()
        p.feed(head)
        assert p.error is None
        p.feed(b"$1\r\na\r\n" * 3)
        assert p.error is None
    assert time.monotonic() - t < 1.0


def test_many_commands_in_one_feed():
    data = b"".join(mbulk(b"SET", b"key:%d" % i, b"v%d" % i) for i in range(10000))
    out = RequestParser().feed(data)
    assert len(out) == 10000 and out[9999] == [b"SET", b"key:9999", b"v9999"]
    inline = b"".join(b"SET key:%d v%d\r\n" % (i, i) for i in range(5000))
    out = RequestParser().feed(inline)
    assert len(out) == 5000 and out[4321] == [b"SET", b"key:4321", b"v4321"]


@SETTINGS
@given(st.lists(st.lists(st.sampled_from([b"a", b"bc", b" ", b"\t", b"\x0b", b"\x0c", b"\r",
                                          b'"', b"'", b"*", b"$1", b"1"]), max_size=8),
                min_size=1, max_size=6),
       st.sampled_from([b"\n", b"\r\n"]))
def test_whole_inline_lines_in_one_read_parse_as_line_by_line(lines, end):
    """A read of whole inline lines (split at once when nothing in it needs
    split_args) gives what the lines give one by one."""
    data = b"".join(b"".join(parts) + end for parts in lines)
    ref = RequestParser()          # each line in two reads: the line-by-line loop
    expect = []
    for parts in lines:
        expect.extend(ref.feed(b"".join(parts)))
        expect.extend(ref.feed(end))
        if ref.error is not None:
            break
    p = RequestParser()
    assert p.feed(data) == expect
    assert p.error == ref.error


def test_mixed_inline_and_multibulk_in_one_feed():
    data = b"PING\r\n" + mbulk(b"ECHO", b"a b") + b"ECHO 'x y'\n" + mbulk(b"", b"\r\n")
    assert RequestParser().feed(data) == [[b"PING"], [b"ECHO", b"a b"], [b"ECHO", b"x y"],
                                          [b"", b"\r\n"]]


# --------------------------------------------------------------- encode

@pytest.mark.parametrize("obj,r2,r3", [
    (b"abc", b"$3\r\nabc\r\n", b"$3\r\nabc\r\n"),
    (b"", b"$0\r\n\r\n", b"$0\r\n\r\n"),
    ("é", b"$2\r\n\xc3\xa9\r\n", b"$2\r\n\xc3\xa9\r\n"),
    (bytearray(b"ab"), b"$2\r\nab\r\n", b"$2\r\nab\r\n"),
    (0, b":0\r\n", b":0\r\n"),
    (-5, b":-5\r\n", b":-5\r\n"),
    (2**63 - 1, b":9223372036854775807\r\n", b":9223372036854775807\r\n"),
    (None, b"$-1\r\n", b"_\r\n"),
    (NULL_ARRAY, b"*-1\r\n", b"_\r\n"),
    ([], b"*0\r\n", b"*0\r\n"),
    ([b"a", 1, None, [b"b"]], b"*4\r\n$1\r\na\r\n:1\r\n$-1\r\n*1\r\n$1\r\nb\r\n",
     b"*4\r\n$1\r\na\r\n:1\r\n_\r\n*1\r\n$1\r\nb\r\n"),
    ((b"x",), b"*1\r\n$1\r\nx\r\n", b"*1\r\n$1\r\nx\r\n"),
    (Status("OK"), b"+OK\r\n", b"+OK\r\n"),
    (Error("ERR boom"), b"-ERR boom\r\n", b"-ERR boom\r\n"),
    (True, b":1\r\n", b"#t\r\n"),
    (False, b":0\r\n", b"#f\r\n"),
    (Map({b"a": 1, b"b": b"x"}), b"*4\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n$1\r\nx\r\n",
     b"%2\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n$1\r\nx\r\n"),
    ({b"k": None}, b"*2\r\n$1\r\nk\r\n$-1\r\n", b"%1\r\n$1\r\nk\r\n_\r\n"),
    (SetReply([b"m"]), b"*1\r\n$1\r\nm\r\n", b"~1\r\n$1\r\nm\r\n"),
    (Push([b"message", b"ch", b"hi"]),
     b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
     b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"),
    (Double(1.5), b"$3\r\n1.5\r\n", b",1.5\r\n"),
    (3.0, b"$1\r\n3\r\n", b",3\r\n"),
    (float("inf"), b"$3\r\ninf\r\n", b",inf\r\n"),
    (float("-inf"), b"$4\r\n-inf\r\n", b",-inf\r\n"),
    (Verbatim(b"hello"), b"$5\r\nhello\r\n", b"=9\r\ntxt:hello\r\n"),
])
def test_encode(obj, r2, r3):
    assert encode(obj, 2) == r2
    assert encode(obj, 3) == r3


def test_encode_rejects_unknown_types():
    with pytest.raises(TypeError):
        encode(object())


@pytest.mark.parametrize("x,text", [
    (0.0, b"0"), (1.0, b"1"), (-2.0, b"-2"), (0.1, b"0.10000000000000001"),
    (1.5, b"1.5"), (1e17, b"1e+17"), (123456789.0, b"123456789"),
    (float("inf"), b"inf"), (float("-inf"), b"-inf"), (3.14, b"3.1400000000000001"),
])
def test_format_double(x, text):
    assert format_double(x) == text


def test_reply_helpers():
    assert resp.integer(5) == b":5\r\n"
    assert resp.integer(-1) == b":-1\r\n"
    assert resp.integer(1024) == b":1024\r\n"
    assert resp.integer(-7) == b":-7\r\n"
    assert resp.bulk(b"hi") == b"$2\r\nhi\r\n"
    assert resp.error("ERR x") == b"-ERR x\r\n"


@SETTINGS
@given(st.recursive(
    st.none() | st.integers(-2**63, 2**63 - 1) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=4), max_leaves=20))
def test_encode_round_trips_through_hiredis(obj):
    """A RESP2 encoding is read back by a real RESP reader as the same value."""
    import hiredis
    reader = hiredis.Reader()
    reader.feed(encode(obj, 2))
    assert reader.gets() == obj
    assert reader.gets() is False
