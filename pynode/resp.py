"""RESP request parsing and reply encoding, without any I/O.

`RequestParser.feed(data)` takes whatever bytes arrived and returns the list of
complete commands (each a list of bytes arguments).  A protocol error is not
raised: the commands parsed before it are returned and `parser.error` holds the
message Redis would send before closing the connection.
"""

from __future__ import annotations

import re

try:  # hiredis parses well-formed multibulk requests in C; optional
    from hiredis import ProtocolError as _HiredisError, Reader as _HiredisReader
except ImportError:  # pragma: no cover - the pure-Python parser does everything
    _HiredisReader = None

from storage.sdsargs import split_args

INLINE_MAX = 64 * 1024          # PROTO_INLINE_MAX_SIZE
BIG_ARG = 32 * 1024             # above this, wait for the whole bulk before re-parsing
# hiredis allocates a list of the announced size at once ("*2147483647\r\n" costs
# seconds and gigabytes): counts of 100000 and more go to the Python parser.
# hiredis also takes +simple and =verbatim strings as bytes where Redis wants
# '$': any "\n+" or "\n=" (even inside a value) takes the Python path too.
# (`43 in data` is a memchr; a regex or a substring test costs ten times more.)
_BIG_COUNT = re.compile(rb"\*[0-9]{6}").search
_SIMPLE = re.compile(rb"\n[+=]").search
_join = b"".join
# what keeps inline lines off the whole-read split: a multibulk ('*'), quotes,
# \v and \f (sdssplitargs splits on them only between arguments)
_NOT_PLAIN_INLINE = re.compile(rb"[*\"'\x0b\x0c]").search


def encoded_len(cmd: list[bytes]) -> int:
    """Bytes of the canonical multibulk encoding of a command (the request's
    size for CLUSTER SLOT-STATS network-bytes-in: short cases first)."""
    n = len(cmd)
    total = 3 + (1 if n < 10 else len(str(n)))
    for a in cmd:
        la = len(a)
        total += la + (6 if la < 10 else 7 if la < 100 else 5 + len(str(la)))
    return total


class RequestParser:
    """Bytes in, commands out.

    Well-formed multibulk input goes through hiredis (when installed) in C;
    everything else (inline commands, partial or damaged input, oversized
    bulks) through the pure-Python parser below, which is the reference and
    produces Redis's exact protocol errors."""

    __slots__ = ("buf", "need", "chunks", "have", "error", "max_bulk", "max_query",
                 "multibulk_max", "fast", "units")

    def __init__(self, max_bulk: int = 512 * 1024 * 1024,
                 max_query: int = 1024 * 1024 * 1024) -> None:
        self.buf = b""
        self.need = 0          # bytes the buffer must hold before parsing again
        self.chunks: list[bytes] = []
        self.have = 0
        self.error: str | None = None
        self.max_bulk = max_bulk
        self.max_query = max_query
        self.multibulk_max = 2147483647
        self.fast = _HiredisReader() if _HiredisReader is not None else None
        self.units: list | None = None     # feed_units(): every unit read, with its size

    def pending(self) -> int:
        """Bytes of an incomplete command held in the query buffer."""
        return len(self.buf) + self.have

    @staticmethod
    def iter_file(data: bytes, pos: int = 0, ends: list | None = None, fast: bool = True):
        """The mode for a file of commands (the AOF loader), whole in memory:
        yields each command of ``data`` from ``pos``. Stricter than a client's
        stream, as Redis's loadSingleAppendOnlyFile: multibulk only, lines
        starting with '#' are annotations and skipped (the strict parser also
        wants the CRLF after each bulk, which hiredis, as Redis, does not check).
        Raises FileFormatError(offset, what) at the first damaged byte and
        Incomplete when the data ends inside a command. ``ends`` (the slow
        path, from ``pos``) gets each command's end offset. ``fast``: hiredis
        parses well-formed files (~10x faster), the strict parser takes over
        from the first thing it does not handle."""
        return _file_commands(data, pos, ends, fast)

    def feed(self, data: bytes) -> list[list[bytes]]:
        if self.fast is None or self.need or self.buf or not data or data[0] != 42 \
                or len(data) > self.max_bulk or _BIG_COUNT(data) is not None \
                or ((43 in data or 61 in data) and _SIMPLE(data) is not None):
            return self.feed_python(data)
        reader = self.fast
        reader.feed(data)
        out = []
        gets = reader.gets
        try:
            cmd = gets()
            while cmd is not False:
                if type(cmd) is not list:
                    raise _HiredisError
                # every argument a bulk string: join raises TypeError for
                # anything else hiredis gives (int, None, list, error, ...)
                _join(cmd)
                if cmd:
                    out.append(cmd)
                cmd = gets()
        except (_HiredisError, TypeError):
            # let the reference parser find the exact error from the start
            self.fast = _HiredisReader()
            return self.feed_python(data)
        # Is the reader idle, or in the middle of a command?  An empty
        # multibulk comes back as [] only from an idle reader.
        reader.feed(b"*0\r\n")
        try:
            idle = reader.gets() == []
        except _HiredisError:
            idle = False
        if idle:
            return out
        # a partial command is left: hand it to the Python parser, which
        # checks its header at once and waits efficiently for big bulks
        self.fast = _HiredisReader()
        off = sum(map(encoded_len, out))
        if off and data[off - 2:off] != b"\r\n":
            return self.feed_python(data)
        out.extend(self.feed_python(data[off:]))
        return out

    def feed_units(self, data: bytes) -> list[tuple[list[bytes], int]]:
        """feed() for a stream whose byte offsets count (a replica's link to
        its master, as Redis's master client): every unit read, in order, as
        (argv, its size in bytes); argv is [] for an empty line or "*0"."""
        self.units = units = []
        try:
            self.feed_python(data)
        finally:
            self.units = None
        return units

    def feed_python(self, data: bytes) -> list[list[bytes]]:
        if not self.need and not self.buf and self.units is None and data[-1:] == b"\n" \
                and len(data) <= INLINE_MAX and _NOT_PLAIN_INLINE(data) is None:
            # whole inline lines, no multibulk, nothing split_args treats
            # specially: each line splits on whitespace (\r included) at C speed
            return [args for args in map(bytes.split, data.split(b"\n")) if args]
        if self.need:
            self.chunks.append(data)
            self.have += len(data)
            if len(self.buf) + self.have < self.need:
                if len(self.buf) + self.have > self.max_query:
                    self.error = "query buffer limit"
                return []
            data = self.buf + b"".join(self.chunks)
            self.chunks = []
            self.have = 0
            self.need = 0
        elif self.buf:
            data = self.buf + data
        out: list[list[bytes]] = []
        units = self.units
        pos = 0
        n = len(data)
        find = data.find
        while pos < n:
            if data[pos] == 42:  # '*'
                # like Redis: the line ends at the first \r, whatever follows it
                nl = find(b"\r", pos)
                if nl < 0 or nl + 1 >= n:
                    if nl < 0 and n - pos > INLINE_MAX:
                        self.error = "Protocol error: too big mbulk count string"
                    break
                s = data[pos + 1:nl]
                try:
                    count = int(s)
                except ValueError:
                    count = self.multibulk_max + 1
                # int() also takes " 1", "+1", "01", "-0": string2ll does not
                if count > self.multibulk_max or \
                        (s[0] == 48 or not s.isdigit()) and b"%d" % count != s:
                    self.error = "Protocol error: invalid multibulk length"
                    break
                p = nl + 2
                if count <= 0:
                    if units is not None:
                        units.append(([], p - pos))
                    pos = p
                    continue
                args = []
                append = args.append
                complete = True
                for _ in range(count):
                    if p >= n:
                        complete = False
                        break
                    nl = find(b"\r", p)
                    if nl < 0 or nl + 1 >= n:
                        if nl < 0 and n - p > INLINE_MAX:
                            self.error = "Protocol error: too big bulk count string"
                        complete = False
                        break
                    if data[p] != 36:  # '$', checked once the line is complete
                        ch = data[p]
                        self.error = "Protocol error: expected '$', got '%s'" % (
                            " " if ch == 10 or ch == 13 else chr(ch))
                        break
                    s = data[p + 1:nl]
                    try:
                        ln = int(s) if s.isdigit() else -1
                    except ValueError:  # more digits than int() converts
                        ln = -1
                    if ln < 0 or ln > self.max_bulk or (s[0] == 48 and nl - p > 2):
                        self.error = "Protocol error: invalid bulk length"
                        break
                    end = nl + 2 + ln
                    if end + 2 > n:
                        if ln >= BIG_ARG:
                            self.need = end + 2 - pos
                        complete = False
                        break
                    append(data[nl + 2:end])
                    p = end + 2
                if self.error is not None:
                    break
                if not complete:
                    break
                out.append(args)
                if units is not None:
                    units.append((args, p - pos))
                pos = p
            else:
                nl = find(b"\n", pos)
                if nl < 0:
                    if n - pos > INLINE_MAX:
                        self.error = "Protocol error: too big inline request"
                    break
                line = data[pos:nl]
                if line.endswith(b"\r"):
                    line = line[:-1]
                args = split_args(line)
                if args is None:
                    self.error = "Protocol error: unbalanced quotes in request"
                    break
                if units is not None:
                    units.append((args, nl + 1 - pos))
                pos = nl + 1
                if args:
                    out.append(args)
        if self.error is not None:
            self.buf = b""
            return out
        self.buf = data[pos:] if pos < n else b""
        if len(self.buf) > self.max_query:
            self.error = "query buffer limit"
        return out


# ---------------------------------------------------------------- replies

class Status(str):
    """A simple-string reply (+OK)."""


class Error(str):
    """An error reply; the text starts with its code (ERR, WRONGTYPE, ...)."""


class Map(dict):
    """A map reply: RESP3 %, a flat array in RESP2."""


class SetReply(list):
    """A set reply: RESP3 ~, an array in RESP2."""


class Push(list):
    """An out-of-band push: RESP3 >, an array in RESP2."""


class Verbatim(bytes):
    """Verbatim text: RESP3 =txt:, a bulk string in RESP2."""


class Double(float):
    """A double: RESP3 ',', a bulk string in RESP2."""


class NullArray:
    """The null array (*-1 in RESP2, _ in RESP3)."""


NULL_ARRAY = NullArray()
OK = b"+OK\r\n"
QUEUED = b"+QUEUED\r\n"
PONG = b"+PONG\r\n"
NIL2 = b"$-1\r\n"
NIL3 = b"_\r\n"
NILARR2 = b"*-1\r\n"
EMPTY_ARRAY = b"*0\r\n"
ZERO = b":0\r\n"
ONE = b":1\r\n"
_SMALL_INTS = [b":%d\r\n" % i for i in range(-1, 1025)]


def integer(n: int) -> bytes:
    if -1 <= n <= 1023:
        return _SMALL_INTS[n + 1]
    return b":%d\r\n" % n


def bulk(b: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(b), b)


def error(msg: str) -> bytes:
    return b"-" + msg.encode() + b"\r\n"


def sanitize(msg: str) -> str:
    """An error text on one line."""
    return msg.replace("\r", " ").replace("\n", " ")


def unknown_command(argv: list[bytes]) -> str:
    """Redis's error text for a command it does not know."""
    args = ""
    for a in argv[1:]:
        if len(args) >= 128:
            break
        args += "'%s' " % a.decode("utf-8", "replace")[:128 - len(args)]
    return sanitize("ERR unknown command '%s', with args beginning with: %s"
                    % (argv[0].decode("utf-8", "replace")[:128], args))


def unknown_subcommand(argv: list[bytes]) -> str:
    return ("ERR unknown subcommand '%s'. Try %s HELP."
            % (sanitize(argv[1].decode("utf-8", "replace")[:128]),
               argv[0].decode("utf-8", "replace").upper()))


def format_double(x: float) -> bytes:
    """Format a double the way Redis replies with it (%.17g, inf, -inf)."""
    if x != x:
        return b"nan"
    if x == float("inf"):
        return b"inf"
    if x == float("-inf"):
        return b"-inf"
    if x == int(x) and abs(x) < 1e17:
        return b"%d" % int(x)
    return (b"%.17g" % x)


def encode(obj, resp: int = 2) -> bytes:
    """Encode a Python value as a RESP reply (protocol version `resp`)."""
    out: list[bytes] = []
    _enc(obj, resp, out)
    return b"".join(out)


def _enc(obj, resp: int, out: list) -> None:
    t = type(obj)
    if t is bytes:
        out.append(b"$%d\r\n%s\r\n" % (len(obj), obj))
    elif t is int:
        out.append(b":%d\r\n" % obj)
    elif obj is None:
        out.append(NIL3 if resp == 3 else NIL2)
    elif t is list or t is tuple:
        out.append(b"*%d\r\n" % len(obj))
        for x in obj:
            _enc(x, resp, out)
    elif t is Status:
        out.append(b"+" + obj.encode() + b"\r\n")
    elif t is Error:
        out.append(b"-" + obj.encode() + b"\r\n")
    elif t is str:
        b = obj.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    elif t is bool:
        if resp == 3:
            out.append(b"#t\r\n" if obj else b"#f\r\n")
        else:
            out.append(b":1\r\n" if obj else b":0\r\n")
    elif t is Map or t is dict:
        if resp == 3:
            out.append(b"%%%d\r\n" % len(obj))
        else:
            out.append(b"*%d\r\n" % (2 * len(obj)))
        for k, v in obj.items():
            _enc(k, resp, out)
            _enc(v, resp, out)
    elif t is SetReply:
        out.append((b"~%d\r\n" if resp == 3 else b"*%d\r\n") % len(obj))
        for x in obj:
            _enc(x, resp, out)
    elif t is Push:
        out.append((b">%d\r\n" if resp == 3 else b"*%d\r\n") % len(obj))
        for x in obj:
            _enc(x, resp, out)
    elif t is Double or t is float:
        s = format_double(obj)
        if resp == 3:
            out.append(b"," + s + b"\r\n")
        else:
            out.append(b"$%d\r\n%s\r\n" % (len(s), s))
    elif t is Verbatim:
        if resp == 3:
            body = b"txt:" + bytes(obj)
            out.append(b"=%d\r\n%s\r\n" % (len(body), body))
        else:
            out.append(b"$%d\r\n%s\r\n" % (len(obj), bytes(obj)))
    elif t is NullArray:
        out.append(NIL3 if resp == 3 else NILARR2)
    elif t is bytearray or t is memoryview:
        b = bytes(obj)
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    else:
        raise TypeError("cannot encode %r" % (obj,))


# ---------------------------------------------------------------- command files

class FileFormatError(ValueError):
    """A command file is damaged at byte ``offset``; ``what`` says how."""

    def __init__(self, offset: int, what: str) -> None:
        super().__init__("offset %d: %s" % (offset, what))
        self.offset = offset
        self.what = what


class Incomplete(Exception):
    """The data ends inside a command (a short read: a truncated file)."""


class _NotForHiredis(Exception):
    pass


_FILE_CHUNK = 1 << 16
_END_ARGV = [b"\x00pynode-end-of-data\x00"]
_END = b"*1\r\n$%d\r\n%s\r\n" % (len(_END_ARGV[0]), _END_ARGV[0])


def _file_commands(data: bytes, pos: int, ends: list | None, fast: bool):
    if (fast and ends is None and pos == 0 and _HiredisReader is not None
            and data[:1] != b"#" and b"\n#" not in data):
        k = 0
        try:
            for argv in _file_hiredis(data):
                k += 1
                yield argv
            return
        except _NotForHiredis:
            pos = file_offsets(data, k)[1]  # the strict parser goes on after command k
    yield from _file_strict(data, pos, ends)


def _file_hiredis(data: bytes):
    """Commands parsed by hiredis; like Redis's loader it does not check the two
    bytes after a bulk. _NotForHiredis before any item that is not a command,
    and at an end that is not a command boundary (the strict parser decides)."""
    reader = _HiredisReader()
    gets = reader.gets
    mv = memoryview(data)
    for off in range(0, len(data), _FILE_CHUNK):
        reader.feed(mv[off:off + _FILE_CHUNK])
        while True:
            try:
                x = gets()
            except _HiredisError:
                raise _NotForHiredis
            if x is False:
                break
            if type(x) is not list or not x:
                raise _NotForHiredis
            for a in x:
                if type(a) is not bytes:
                    raise _NotForHiredis
            yield x
    # at a command boundary the marker comes back alone
    reader.feed(_END)
    try:
        x = gets()
        if x == _END_ARGV and gets() is False and not reader.has_data():
            return
    except _HiredisError:
        pass
    raise _NotForHiredis


# the two header lines of a command file: (what is expected, what is wrong, least value)
_FILE_LINES = {42: ("expected '*' at the start of a command", "invalid argument count", 1),
               36: ("expected '$' (bulk length)", "invalid bulk length", 0)}


def _file_number(data: bytes, pos: int, mark: int) -> tuple[int, int]:
    """The count on the '*' or '$' line at ``pos``, and the offset after it."""
    expected, invalid, least = _FILE_LINES[mark]
    if data[pos] != mark:
        raise FileFormatError(pos, "%s, found %r" % (expected, data[pos:pos + 16]))
    nl = data.find(b"\n", pos)
    if nl < 0:
        raise Incomplete
    try:
        v = int(data[pos + 1:nl])
    except ValueError:
        v = -1
    if v < least:
        raise FileFormatError(pos, "%s %r" % (invalid, data[pos:nl + 1]))
    return v, nl + 1


def _file_strict(data: bytes, pos: int, ends: list | None):
    n = len(data)
    while pos < n:
        if data[pos] == 35:  # '#': an annotation line
            nl = data.find(b"\n", pos)
            if nl < 0:
                raise Incomplete
            pos = nl + 1
            continue
        argc, pos = _file_number(data, pos, 42)
        argv = []
        for _ in range(argc):
            if pos >= n:
                raise Incomplete
            ln, s = _file_number(data, pos, 36)
            e = s + ln
            if e + 2 > n:
                raise Incomplete
            if data[e:e + 2] != b"\r\n":
                raise FileFormatError(e, "expected CRLF after a %d bytes argument" % ln)
            argv.append(data[s:e])
            pos = e + 2
        if ends is not None:
            ends.append(pos)
        yield argv


def file_offsets(data: bytes, k: int) -> tuple[int, int]:
    """(end of the k-th command of a command file, start of the next one past
    any annotations), k counted from 1; k == 0 is the file's start. For the
    loader's truncation and error messages (an offset Redis's would name)."""
    if k == 0:
        start = 0
    else:
        ends: list = []
        try:
            for _ in _file_strict(data, 0, ends):
                if len(ends) == k:
                    break
        except (Incomplete, FileFormatError):
            pass
        start = ends[-1] if ends else 0
    end = start
    n = len(data)
    while start < n and data[start] == 35:  # annotations up to the next command
        nl = data.find(b"\n", start)
        if nl < 0:
            break
        start = nl + 1
    return end, start
