"""The append-only file, Redis 7.0's multi-part layout.

<dir>/<appenddirname>/ holds:
  <appendfilename>.<seq>.base.aof   the snapshot written by the last rewrite
  <appendfilename>.<seq>.incr.aof   the writes since then (several while a
                                    rewrite runs or after one failed)
  <appendfilename>.manifest         which files, in order, e.g.
      file appendonly.aof.1.base.aof seq 1 type b
      file appendonly.aof.1.incr.aof seq 1 type i
Every file is a stream of RESP multibulk commands (plus `#...` annotation
lines, e.g. `#TS:<unix time>` with aof-timestamp-enabled).  The manifest is
replaced atomically (temp + fsync + rename + dir fsync).

Writes are buffered in `buf` by feed() and written by flush(), which the
server calls before it sends replies (with appendfsync always, flush()
fsyncs before returning, so no acknowledged write can be lost); with
everysec the fsync runs once a second in a background thread.

A rewrite (BGREWRITEAOF, auto-aof-rewrite-*, turning appendonly on) runs in
a child forked by the process owner the AOF is given (`children`:
pynode/children.py; storage forks nothing itself): the child serializes its copy-on-write snapshot of the keyspace into a
temporary file and _exit()s; the parent switches to a new incr file at once
and keeps appending; cron() reaps the child and, on success, installs the new
base in the manifest and deletes the files it replaces.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from typing import Callable

from pynode.resp import FileFormatError, Incomplete, RequestParser, file_offsets
from storage import durable
from storage.rewrite import encode_command, rewrite_keyspace
from storage.sdsargs import split_args

OFF, ON, WAIT_REWRITE = 0, 1, 2

BASE, HIST, INCR = "b", "h", "i"
TEMP_PREFIX = "temp-"


class AOFError(Exception):
    """A damaged or unreadable AOF: start-up must stop with this message."""


class _NoLog:
    def notice(self, msg: str) -> None:
        pass

    warning = verbose = debug = notice


# ----------------------------------------------------------------- manifest
def _needs_repr(s: str) -> bool:
    return any(c in '\\"\n\r\t\a\b' or not c.isprintable() or c.isspace() for c in s)


def _repr(s: str) -> str:
    out = ['"']
    for c in s:
        if c in '\\"':
            out.append("\\" + c)
        elif c in "\n\r\t\a\b":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\a": "\\a", "\b": "\\b"}[c])
        elif c.isprintable() and ord(c) < 128:
            out.append(c)
        else:
            out.extend("\\x%02x" % b for b in c.encode("utf-8", "surrogateescape"))
    out.append('"')
    return "".join(out)


class AofInfo:
    __slots__ = ("name", "seq", "type")

    def __init__(self, name: str, seq: int, type: str) -> None:
        self.name = name
        self.seq = seq
        self.type = type

    def line(self) -> str:
        name = _repr(self.name) if _needs_repr(self.name) else self.name
        return "file %s seq %d type %s\n" % (name, self.seq, self.type)

    def __repr__(self) -> str:
        return "AofInfo(%r, %d, %r)" % (self.name, self.seq, self.type)

    def __eq__(self, other) -> bool:
        return (isinstance(other, AofInfo) and self.name == other.name
                and self.seq == other.seq and self.type == other.type)


class Manifest:
    """The list of AOF files: one base, history files, incr files in order."""

    def __init__(self) -> None:
        self.base: AofInfo | None = None
        self.history: list[AofInfo] = []
        self.incr: list[AofInfo] = []
        self.base_seq = 0
        self.incr_seq = 0

    def copy(self) -> "Manifest":
        m = Manifest()
        m.base = AofInfo(self.base.name, self.base.seq, self.base.type) if self.base else None
        m.history = [AofInfo(a.name, a.seq, a.type) for a in self.history]
        m.incr = [AofInfo(a.name, a.seq, a.type) for a in self.incr]
        m.base_seq = self.base_seq
        m.incr_seq = self.incr_seq
        return m

    def format(self) -> str:
        out = []
        if self.base is not None:
            out.append(self.base.line())
        out.extend(a.line() for a in self.history)
        out.extend(a.line() for a in self.incr)
        return "".join(out)

    def files(self) -> list[AofInfo]:
        """Base then incr files: what loading replays, in order."""
        return ([self.base] if self.base else []) + list(self.incr)

    @classmethod
    def parse(cls, text: str, path: str = "manifest") -> "Manifest":
        """Parse a manifest as Redis 7.0 does; AOFError on anything invalid."""
        m = cls()
        maxseq = 0
        if not text:
            raise _manifest_error(path, 0, None, "Found an empty AOF manifest")
        lines = text.split("\n")
        # a final line without "\n" is what Redis reports as a too long line
        last_complete = text.endswith("\n")
        if last_complete:
            lines.pop()
        for i, raw in enumerate(lines, 1):
            if raw.startswith("#"):
                continue
            if i == len(lines) and not last_complete:
                raise _manifest_error(path, i, raw, "The AOF manifest file contains too "
                                      "long line (or its last line has no newline)")
            if len(raw) > 1024:
                raise _manifest_error(path, i, raw, "The AOF manifest file contains too "
                                      "long line")
            line = raw.strip(" \t\r\n")
            if not line:
                raise _manifest_error(path, i, raw, "Invalid AOF manifest file format")
            argv = split_args(line.encode("utf-8", "surrogateescape"))
            if argv is not None:
                argv = [a.decode("utf-8", "surrogateescape") for a in argv]
            if argv is None or len(argv) < 6 or len(argv) % 2:
                raise _manifest_error(path, i, line, "Invalid AOF manifest file format")
            name, seq, typ = None, 0, ""
            for k in range(0, len(argv), 2):
                key, val = argv[k].lower(), argv[k + 1]
                if key == "file":
                    name = val
                    if "/" in name or name in (".", ".."):
                        raise _manifest_error(path, i, line,
                                              "File can't be a path, just a filename")
                elif key == "seq":
                    seq = _atoll(val)
                elif key == "type":
                    typ = val[:1]
            if not name or not seq or not typ:
                raise _manifest_error(path, i, line, "Invalid AOF manifest file format")
            ai = AofInfo(name, seq, typ)
            if typ == BASE:
                if m.base is not None:
                    raise _manifest_error(path, i, line, "Found duplicate base file "
                                          "information")
                m.base = ai
                m.base_seq = seq
            elif typ == HIST:
                m.history.append(ai)
            elif typ == INCR:
                if seq <= maxseq:
                    raise _manifest_error(path, i, line, "Found a non-monotonic sequence "
                                          "number")
                m.incr.append(ai)
                m.incr_seq = maxseq = seq
            else:
                raise _manifest_error(path, i, line, "Unknown AOF file type")
        if m.base is None and not m.incr and not m.history and not any(
                not ln.startswith("#") for ln in lines):
            raise _manifest_error(path, 0, None, "Found an empty AOF manifest")
        return m


def _atoll(s: str) -> int:
    """atoll(): leading integer, 0 if none."""
    s = s.lstrip()
    j = 0
    if j < len(s) and s[j] in "+-":
        j += 1
    while j < len(s) and s[j].isdigit():
        j += 1
    try:
        return int(s[:j])
    except ValueError:
        return 0


def _manifest_error(path: str, lineno: int, line: str | None, err: str) -> AOFError:
    where = ""
    if line is not None:
        where = " at line %d: >>> '%s'" % (lineno, line)
    return AOFError("Fatal error in the AOF manifest file %s%s: %s. Fix or restore the "
                    "manifest (each line: file <name> seq <n> type b|h|i), then restart"
                    % (path, where, err))


# ----------------------------------------------------------------- loading
def replay(data: bytes, apply: Callable[[list], object], name: str = "aof",
           fast: bool = True) -> tuple[int, int, bool]:
    """Apply every command of one AOF file's bytes.

    Returns (commands applied, valid_up_to, complete). complete is False when
    the data ends inside a command or inside MULTI without EXEC: valid_up_to is
    then the offset to truncate to (after the last applied command, or before
    the open MULTI). Raises AOFError for a format error or a command apply()
    rejects (unknown command), naming `name` and the byte offset."""
    it = RequestParser.iter_file(data, fast=fast)
    k = 0              # commands read
    valid_k = 0        # commands read up to the last applied one (or EXEC)
    before_multi = 0
    count = 0
    multi: list | None = None
    q = 0
    complete = True
    try:
        for argv in it:
            k += 1
            a0 = argv[0]
            if 4 <= len(a0) <= 5:
                cmd = a0.lower()
                if multi is not None:
                    if cmd == b"exec":
                        for q, qargv in multi:
                            apply(qargv)
                            count += 1
                        multi = None
                        valid_k = k
                    elif cmd != b"multi":
                        multi.append((k, argv))
                    continue
                if cmd == b"multi":
                    multi = []
                    before_multi = valid_k
                    continue
                if cmd == b"exec":
                    valid_k = k
                    continue
            elif multi is not None:
                multi.append((k, argv))
                continue
            q = k
            apply(argv)
            count += 1
            valid_k = k
    except Incomplete:
        complete = False
    except FileFormatError as e:
        raise _format_error(name, e.offset, e.what) from None
    except AOFError:
        raise
    except Exception as e:  # apply() refused command number q
        msg = str(e) or e.__class__.__name__
        raise AOFError("%s%s reading the append only file %s at offset %d: the file is "
                       "damaged or was written by a server with commands this one lacks. "
                       "Make a backup of your AOF directory, then remove the command or use "
                       "`redis-check-aof --fix <manifest>` to truncate the file there"
                       % (msg[0].upper(), msg[1:], name, file_offsets(data, q - 1)[1]))
    if multi is not None:
        complete = False
        valid_k = before_multi
    if complete:
        return count, len(data), True
    return count, file_offsets(data, valid_k)[0], False


def _format_error(name: str, offset: int, what: str) -> AOFError:
    return AOFError("Bad file format reading the append only file %s at offset %d (%s): "
                    "make a backup of your AOF directory, then use `redis-check-aof --fix "
                    "<manifest>` (it truncates the file at the first invalid command)"
                    % (name, offset, what))


# ----------------------------------------------------------------- the AOF
class AOF:
    def __init__(self, dir: str, filename: str = "appendonly.aof",
                 dirname: str = "appendonlydir", fsync: str = "everysec", log=None,
                 use_rdb_preamble: bool = False, timestamps: bool = False,
                 auto_rewrite_perc: int = 100, auto_rewrite_min_size: int = 64 << 20,
                 disable_auto_gc: bool = False, preamble=None, children=None,
                 on_latency=None) -> None:
        self.dir = os.path.abspath(dir or ".")
        self.filename = filename
        self.dirname = dirname
        self.path = os.path.join(self.dir, dirname)
        self.manifest_name = filename + ".manifest"
        self.manifest_path = os.path.join(self.path, self.manifest_name)
        self.log = log or _NoLog()
        self.flush_sleep_us = 0          # DEBUG AOF-FLUSH-SLEEP
        self.fsync_policy = fsync
        self.use_rdb_preamble = use_rdb_preamble   # pynode always writes AOF format
        self.timestamps = timestamps
        self.auto_rewrite_perc = auto_rewrite_perc
        self.auto_rewrite_min_size = auto_rewrite_min_size
        self.disable_auto_gc = disable_auto_gc
        # what a rewrite writes before the keys: fn() -> list of argv (the
        # server's FUNCTION LOAD commands, as Redis's rewriteFunctions)
        self.preamble = preamble
        # the owner of child processes (pynode.children.Children): forks,
        # reaps and kills the rewrite child, knows whether another child runs
        self.children = children
        # fn(event, seconds): the latency monitor's aof-write* / aof-fsync-always
        self.on_latency = on_latency
        self.manifest = Manifest()
        self.state = OFF
        self.fd = -1
        self.buf = bytearray()
        self.seldb = -1
        self.last_ts = 0
        self.keyspace = None
        self.incr_name = ""
        self.written = 0            # bytes written to the current incr file
        self.synced = 0             # ... of which fsynced
        self.current_size = 0       # base + incr files
        self.base_size = 0          # size right after the last rewrite
        self.last_fsync = time.monotonic()
        self.executor = None
        self.pending_fsync = None
        self.delayed_fsync = 0
        self.last_write_ok = True
        self.last_write_error = ""
        # rewrite
        self.child_pid = 0
        self.child_tmp = ""
        self.child_start = 0.0
        self.rewrite_scheduled = False
        self.rewrites = 0
        self.consecutive_failures = 0
        self.last_rewrite_ok = True
        self.last_rewrite_time = -1
        self.last_fork_usec = 0
        self.next_auto_after = 0.0
        self.temp_incr = ""
        self.load_truncated = False
        self.manifest_read = False

    # ------------------------------------------------------------ helpers
    def file_path(self, name: str) -> str:
        return os.path.join(self.path, name)

    def _size(self, name: str) -> int:
        try:
            return os.stat(self.file_path(name)).st_size
        except OSError:
            return 0

    @property
    def rewrite_in_progress(self) -> bool:
        return self.child_pid != 0

    @property
    def enabled(self) -> bool:
        return self.state != OFF

    def configure(self, fsync: str | None = None, timestamps: bool | None = None,
                  auto_rewrite_perc: int | None = None,
                  auto_rewrite_min_size: int | None = None,
                  use_rdb_preamble: bool | None = None,
                  disable_auto_gc: bool | None = None, preamble=None,
                  children=None, on_latency=None) -> None:
        """Apply CONFIG SET changes (None = unchanged)."""
        if fsync is not None and fsync != self.fsync_policy:
            self.flush()
            self.fsync_policy = fsync
        if timestamps is not None:
            self.timestamps = timestamps
        if auto_rewrite_perc is not None:
            self.auto_rewrite_perc = auto_rewrite_perc
        if auto_rewrite_min_size is not None:
            self.auto_rewrite_min_size = auto_rewrite_min_size
        if use_rdb_preamble is not None:
            self.use_rdb_preamble = use_rdb_preamble
        if disable_auto_gc is not None:
            self.disable_auto_gc = disable_auto_gc
        if preamble is not None:
            self.preamble = preamble
        if children is not None:
            self.children = children
        if on_latency is not None:
            self.on_latency = on_latency

    def read_manifest(self) -> Manifest:
        """The manifest on disk, or an empty one if dir or manifest is missing."""
        if not os.path.isdir(self.path) or not os.path.exists(self.manifest_path):
            return Manifest()
        try:
            with open(self.manifest_path, "rb") as fh:
                raw = fh.read()
        except OSError as e:
            raise AOFError("Fatal error: can't open the AOF manifest file %s for reading: %s"
                           % (self.manifest_path, e.strerror))
        return Manifest.parse(raw.decode("utf-8", "surrogateescape"), self.manifest_path)

    def persist_manifest(self, m: Manifest) -> None:
        durable.atomic_write(self.manifest_path, m.format().encode("utf-8", "surrogateescape"),
                             tmp_name=TEMP_PREFIX + self.manifest_name)

    # ------------------------------------------------------------ loading
    def load(self, apply: Callable[[list], object], truncated_ok: bool = True) -> int:
        """Replay base then incr files; returns the number of commands applied."""
        self.manifest = m = self.read_manifest()
        self.manifest_read = True
        old = os.path.join(self.dir, self.filename)
        if os.path.isfile(old) and m.base is None and not m.incr:
            self._upgrade(m)
        files = m.files()
        if not files:
            return 0
        for ai in files:
            if not os.path.exists(self.file_path(ai.name)):
                raise AOFError("The AOF file %s listed in the manifest %s doesn't exist: "
                               "restore it from a backup, or remove its line from the "
                               "manifest to start without its data"
                               % (self.file_path(ai.name), self.manifest_path))
        total = sum(self._size(ai.name) for ai in files)
        total_cmds = 0
        for i, ai in enumerate(files):
            last = i == len(files) - 1
            t0 = time.time()
            n = self.load_file(ai.name, apply, truncated_ok, last)
            total_cmds += n
            self.log.notice("DB loaded from %s file %s: %.3f seconds"
                            % ("base" if ai.type == BASE else "incr", ai.name,
                               time.time() - t0))
        self.current_size = sum(self._size(ai.name) for ai in files) if total else 0
        self.base_size = self._size(m.base.name) if m.base else 0
        return total_cmds

    def load_file(self, name: str, apply, truncated_ok: bool, last_file: bool) -> int:
        path = self.file_path(name)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as e:
            raise AOFError("Fatal error: can't open the append log file %s for reading: %s"
                           % (path, e.strerror))
        if not data:
            return 0
        if data[:5] == b"REDIS":
            raise AOFError("The AOF file %s is in RDB format (written with "
                           "aof-use-rdb-preamble yes); pynode reads AOF-format files only: "
                           "start redis-server on this directory with "
                           "aof-use-rdb-preamble no, run BGREWRITEAOF, then restart pynode"
                           % path)
        count, valid, complete = replay(data, apply, path)
        if complete:
            return count
        if truncated_ok and last_file:
            self.log.warning("!!! Warning: short read while loading the AOF file %s!!!" % name)
            self.log.warning("!!! Truncating the AOF %s at offset %d !!!" % (name, valid))
            try:
                os.truncate(path, valid)
            except OSError as e:
                raise AOFError("Error truncating the AOF file %s: %s" % (path, e.strerror))
            self.log.warning("AOF %s loaded anyway because aof-load-truncated is enabled"
                             % name)
            self.load_truncated = True
            return count
        if not last_file:
            raise AOFError("Unexpected end of file reading the append only file %s at offset "
                           "%d, and it is not the last file of the manifest: make a backup "
                           "of your AOF directory, then use `redis-check-aof --fix %s`"
                           % (path, valid, self.manifest_path))
        raise AOFError("Unexpected end of file reading the append only file %s (last valid "
                       "command ends at offset %d). You can: 1) Make a backup of your AOF "
                       "directory, then use `redis-check-aof --fix %s`. 2) Alternatively "
                       "set the 'aof-load-truncated' configuration option to yes and "
                       "restart the server" % (path, valid, self.manifest_path))

    def _upgrade(self, m: Manifest) -> None:
        """Move an old-style <dir>/appendonly.aof into the AOF directory as its base."""
        os.makedirs(self.path, exist_ok=True)
        m.base = AofInfo(self.filename, 1, BASE)
        m.base_seq = 1
        self.persist_manifest(m)
        os.rename(os.path.join(self.dir, self.filename), self.file_path(self.filename))
        durable.fsync_dir(self.path)
        self.log.notice("Successfully migrated an old-style AOF file (%s) into the AOF "
                        "directory (%s)." % (self.filename, self.dirname))

    # ------------------------------------------------------------ opening
    def open(self, keyspace=None) -> None:
        """Start appending (after load): create the base if there is none, open
        the last incr file (or a new one) and persist the manifest."""
        if keyspace is not None:
            self.keyspace = keyspace
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as e:
            raise AOFError("Can't open or create append-only dir %s: %s"
                           % (self.path, e.strerror))
        m = self.manifest
        if m.base is None and not m.incr:
            name = self._new_base_name(m)
            data = bytearray()
            if self.keyspace is not None:
                rewrite_keyspace(self.keyspace, data.extend, _now_ms())
            durable.atomic_write(self.file_path(name), bytes(data),
                                 tmp_name="temp-rewriteaof-%d.aof" % os.getpid())
            self.log.notice("Creating AOF base file %s on server start" % name)
            self.base_size = self.current_size = len(data)
        existed = bool(m.incr)
        if not m.incr:
            self._new_incr_name(m)
        self.incr_name = m.incr[-1].name
        try:
            self.fd = os.open(self.file_path(self.incr_name),
                              os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise AOFError("Can't open the append-only file %s: %s"
                           % (self.incr_name, e.strerror))
        self.persist_manifest(m)
        self.written = self.synced = self._size(self.incr_name)
        self.log.notice("%s AOF incr file %s on server start"
                        % ("Opening" if existed else "Creating", self.incr_name))
        self.state = ON
        self.seldb = -1

    def check_invariants(self) -> None:
        """What holds between calls: appending means an open incr file, the
        last of the manifest, which is the one on disk; the byte counts
        match the file; a rewrite in progress is a running child."""
        assert self.synced <= self.written, "fsynced more bytes than written"
        if self.state == ON:
            assert self.fd >= 0 and self.manifest.incr, "appending without an incr file"
            assert self.manifest.incr[-1].name == self.incr_name, "appending to another file than the last incr"
            with open(self.manifest_path, "rb") as fh:
                assert fh.read() == self.manifest.format().encode("utf-8", "surrogateescape"), \
                    "manifest differs from its file"
            if self.last_write_ok:
                assert os.fstat(self.fd).st_size == self.written, "incr file size"
        if self.child_pid and self.children is not None:
            assert self.children.active.get(self.child_pid) == "aof", "rewrite child"

    def _new_base_name(self, m: Manifest) -> str:
        if m.base is not None:
            m.base.type = HIST
            m.history.insert(0, m.base)
        m.base_seq += 1
        name = "%s.%d.base.aof" % (self.filename, m.base_seq)
        m.base = AofInfo(name, m.base_seq, BASE)
        return name

    def _new_incr_name(self, m: Manifest) -> str:
        m.incr_seq += 1
        name = "%s.%d.incr.aof" % (self.filename, m.incr_seq)
        m.incr.append(AofInfo(name, m.incr_seq, INCR))
        return name

    # ------------------------------------------------------------ appending
    def feed(self, dbid: int, argv) -> None:
        """Buffer one write command (SELECT is added when the db changes).
        Waiting for the first rewrite, writes are kept only once its child
        runs: the snapshot it takes holds the earlier ones."""
        if self.state != ON and (self.state == OFF or not self.child_pid):
            return
        buf = self.buf
        if self.timestamps:
            now = int(time.time())
            if now != self.last_ts:
                self.last_ts = now
                buf += b"#TS:%d\r\n" % now
        if dbid != self.seldb:
            s = b"%d" % dbid
            buf += b"*2\r\n$6\r\nSELECT\r\n$%d\r\n%s\r\n" % (len(s), s)
            self.seldb = dbid
        n = len(argv)
        try:
            if n == 3:
                a, b, c = argv
                buf += b"*3\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
                    len(a), a, len(b), b, len(c), c)
            elif n == 2:
                a, b = argv
                buf += b"*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(a), a, len(b), b)
            else:
                buf += encode_command(argv)
        except TypeError:  # an argument that is not bytes (e.g. an int)
            buf += encode_command(argv)

    def flush(self) -> None:
        """Write the buffer to the incr file; with appendfsync always, fsync it."""
        buf = self.buf
        if not buf or self.fd < 0:
            return
        if self.flush_sleep_us:      # DEBUG AOF-FLUSH-SLEEP
            time.sleep(self.flush_sleep_us / 1e6)
        fd = self.fd
        done = 0
        total = len(buf)
        t0 = time.perf_counter()
        try:
            with memoryview(buf) as view:
                while done < total:
                    done += os.write(fd, view[done:])
        except OSError as e:
            self._write_failed(e, done)
            return
        if self.on_latency is not None:
            dt = time.perf_counter() - t0
            self.on_latency("aof-write-pending-fsync" if self.fsync_pending() else
                            "aof-write-active-child" if self.child_pid else
                            "aof-write-alone", dt)
            self.on_latency("aof-write", dt)
        buf.clear()
        self.written += total
        self.current_size += total
        if not self.last_write_ok:
            self.log.warning("AOF write error looks solved, Redis can write again.")
            self.last_write_ok = True
        if self.fsync_policy == "always":
            t0 = time.perf_counter()
            try:
                os.fdatasync(fd)
            except OSError as e:
                self._fatal_fsync(e)
            if self.on_latency is not None:
                self.on_latency("aof-fsync-always", time.perf_counter() - t0)
            self.synced = self.written
            self.last_fsync = time.monotonic()

    def _write_failed(self, e: OSError, done: int) -> None:
        if done:
            del self.buf[:done]
            self.written += done
            self.current_size += done
        if self.fsync_policy == "always":
            self.log.warning("Can't recover from AOF write error when the AOF fsync policy "
                             "is 'always'. Exiting...")
            os._exit(1)
        if self.last_write_ok:
            self.log.warning("Error writing to the AOF file: %s" % e.strerror)
        self.last_write_ok = False
        self.last_write_error = e.strerror or str(e)

    def _fatal_fsync(self, e: OSError) -> None:
        self.log.warning("Can't persist AOF for fsync error when the AOF fsync policy is "
                         "'always': %s. Exiting..." % e.strerror)
        os._exit(1)

    def _bg(self, fn, *args):
        if self.executor is None:
            from concurrent.futures import ThreadPoolExecutor
            self.executor = ThreadPoolExecutor(1, thread_name_prefix="aof-fsync")
        return self.executor.submit(fn, *args)

    def fsync_pending(self) -> bool:
        f = self.pending_fsync
        return f is not None and not f.done()

    # ------------------------------------------------------------ cron
    def cron(self) -> None:
        """Called hz times a second: flush, everysec fsync, reap a rewrite child,
        start automatic rewrites."""
        if self.buf:
            self.flush()
        if self.child_pid:
            self._reap()
        if (self.rewrite_scheduled and not self.child_pid and self.keyspace is not None
                and time.monotonic() >= self.next_auto_after
                and not (self.children is not None and self.children.busy())):
            self.rewrite_scheduled = False       # BGREWRITEAOF while another child ran
            self._try_rewrite()
        if self.state == OFF:
            return
        now = time.monotonic()
        if (self.fsync_policy == "everysec" and self.synced != self.written
                and now - self.last_fsync >= 1.0 and self.fd >= 0):
            if self.fsync_pending():
                self.delayed_fsync += 1
            else:
                self.pending_fsync = self._bg(os.fdatasync, self.fd)
                self.synced = self.written
                self.last_fsync = now
        if (self.child_pid or self.keyspace is None or now < self.next_auto_after
                or (self.children is not None and self.children.busy())):
            return
        if (self.state == ON and self.auto_rewrite_perc
                and self.current_size > self.auto_rewrite_min_size):
            base = self.base_size or 1
            growth = self.current_size * 100 // base - 100
            if growth >= self.auto_rewrite_perc:
                self.log.notice("Starting automatic rewriting of AOF on %d%% growth" % growth)
                self._try_rewrite()

    def _try_rewrite(self) -> None:
        try:
            self.rewrite()
        except OSError as e:
            self.log.warning("Can't rewrite append only file in background: %s" % e)
            self.next_auto_after = time.monotonic() + 5
            if self.state == WAIT_REWRITE:
                self.rewrite_scheduled = True

    # ------------------------------------------------------------ rewrite
    def rewrite(self, keyspace=None) -> bool:
        """Start a background rewrite; False if one is already running.
        Raises OSError if the new incr file or the fork fails."""
        if self.child_pid:
            return False
        if self.children is None:
            raise OSError(errno.ECHILD, "no process owner to fork the rewrite child")
        ks = keyspace if keyspace is not None else self.keyspace
        if ks is None:
            raise ValueError("no keyspace to rewrite")
        self.keyspace = ks
        os.makedirs(self.path, exist_ok=True)
        if self.state == OFF and not self.manifest_read:
            # appendonly no: continue the sequence numbers of what is on disk
            try:
                self.manifest = self.read_manifest()
            except AOFError as e:
                self.log.warning("Ignoring the unreadable AOF manifest: %s" % e)
            self.manifest_read = True
        self.flush()
        self._switch_incr()
        try:
            pid = self.children.fork("aof", self._child_body(ks),
                                     "rewriting the AOF in the background")
        except OSError as e:
            self.last_rewrite_ok = False
            self.consecutive_failures += 1
            self.log.warning("Can't rewrite append only file in background: fork: %s"
                             % e.strerror)
            raise
        self.last_fork_usec = self.children.last_fork_usec
        self.child_pid = pid
        self.child_tmp = self.file_path("temp-rewriteaof-bg-%d.aof" % pid)
        self.child_start = time.time()
        self.seldb = -1
        self.log.notice("Background append only file rewriting started by pid %d" % pid)
        return True

    def _switch_incr(self) -> None:
        """Before the fork: new writes go to a new incr file (ON) or to the temp
        incr file (WAIT_REWRITE)."""
        if self.state == OFF:
            return
        if self.state == WAIT_REWRITE:
            name = TEMP_PREFIX + self.filename + ".incr"
            newfd = os.open(self.file_path(name), os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o644)
            self.temp_incr = name
            temp_m = None
        else:
            temp_m = self.manifest.copy()
            name = self._new_incr_name(temp_m)
            newfd = os.open(self.file_path(name), os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o644)
            try:
                self.persist_manifest(temp_m)
            except OSError:
                os.close(newfd)
                raise
        self.log.notice("Creating AOF incr file %s on background rewrite" % name)
        old = self.fd
        if old >= 0:
            self.pending_fsync = self._bg(_fsync_and_close, old)
        self.fd = newfd
        self.incr_name = name
        self.written = self.synced = 0
        self.last_fsync = time.monotonic()
        if temp_m is not None:
            self.manifest = temp_m

    def _child_body(self, ks):
        """What the rewrite child runs: the keyspace into temp-rewriteaof-bg-<pid>.aof."""
        def body() -> None:
            tmp = self.file_path("temp-rewriteaof-bg-%d.aof" % os.getpid())
            with open(tmp, "wb", buffering=1 << 20) as fh:
                if self.preamble is not None:
                    for argv in self.preamble():
                        fh.write(encode_command(argv))
                nkeys = rewrite_keyspace(ks, fh.write, _now_ms())
                fh.flush()
                os.fsync(fh.fileno())
            self.log.notice("Successfully created the temporary AOF base file %s (%d keys)"
                            % (os.path.basename(tmp), nkeys))
        return body

    def _reap(self, block: bool = False) -> None:
        status = self.children.reap(self.child_pid, block)
        if status is None:
            return
        self.child_pid = 0
        elapsed = int(time.time() - self.child_start)
        ok = self.children.ok(status)
        if ok:
            self.log.notice("Background AOF rewrite terminated with success")
            try:
                self._install_rewrite()
            except OSError as e:
                self.log.warning("Error installing the rewritten AOF: %s" % e)
                ok = False
        else:
            if os.WIFSIGNALED(status):
                self.log.warning("Background AOF rewrite terminated by signal %d"
                                 % os.WTERMSIG(status))
            else:
                self.log.warning("Background AOF rewrite terminated with error")
            _unlink(self.child_tmp)
        self.last_rewrite_time = elapsed
        if ok:
            self.rewrites += 1
            self.consecutive_failures = 0
            self.last_rewrite_ok = True
            self.log.notice("Background AOF rewrite finished successfully")
        else:
            self.last_rewrite_ok = False
            self.consecutive_failures += 1
            if self.consecutive_failures >= 3:
                delay = min(60, 2 ** (self.consecutive_failures - 3)) * 60
                self.next_auto_after = time.monotonic() + delay
                self.log.warning("Background AOF rewrite has repeatedly failed and triggered "
                                 "the limit, will retry in %d minutes" % (delay // 60))
            if self.state == WAIT_REWRITE:
                _unlink(self.file_path(self.temp_incr))
                self.rewrite_scheduled = True
        self.child_tmp = ""

    def _install_rewrite(self) -> None:
        m = self.manifest.copy()
        new_base = self._new_base_name(m)
        os.rename(self.child_tmp, self.file_path(new_base))
        self.log.notice("Successfully renamed the temporary AOF base file %s into %s"
                        % (os.path.basename(self.child_tmp), new_base))
        renamed_incr = None
        if self.state == WAIT_REWRITE:
            # all older incr files are history; the temp incr becomes the new one
            m.history.extend(AofInfo(a.name, a.seq, HIST) for a in m.incr)
            m.incr = []
            name = self._new_incr_name(m)
            os.rename(self.file_path(self.temp_incr), self.file_path(name))
            renamed_incr = name
            self.log.notice("Successfully renamed the temporary AOF incr file %s into %s"
                            % (self.temp_incr, name))
        elif self.state == ON:
            keep = m.incr[-1:]
            m.history.extend(AofInfo(a.name, a.seq, HIST) for a in m.incr[:-1])
            m.incr = keep
        else:  # appendonly turned off meanwhile: the base alone
            m.history.extend(AofInfo(a.name, a.seq, HIST) for a in m.incr)
            m.incr = []
        history = m.history
        if not self.disable_auto_gc:
            m.history = []
        try:
            self.persist_manifest(m)
        except OSError:
            _unlink(self.file_path(new_base))
            if renamed_incr:
                os.rename(self.file_path(renamed_incr), self.file_path(self.temp_incr))
            raise
        self.manifest = m
        if renamed_incr:
            self.incr_name = renamed_incr
            self.state = ON
        if not self.disable_auto_gc:
            for a in history:
                self.log.notice("Removing the history file %s in the background" % a.name)
                self._bg(_unlink, self.file_path(a.name))  # unlinking a big file is slow
        self.current_size = self._size(new_base) + self.written + len(self.buf)
        self.base_size = self.current_size

    def kill_child(self) -> None:
        if not self.child_pid:
            return
        self.log.notice("Killing running AOF rewrite child: %d" % self.child_pid)
        self.children.kill(self.child_pid, signal.SIGUSR1)
        _unlink(self.child_tmp)
        self.child_pid = 0
        self.child_tmp = ""

    # ------------------------------------------------------------ on/off
    def start(self, keyspace) -> bool:
        """appendonly turned on at runtime: rewrite the dataset as the new base,
        buffering new writes in a temp incr file until the rewrite is done."""
        self.keyspace = keyspace
        if self.state != OFF:
            return True
        self.manifest = self.read_manifest()
        self.manifest_read = True
        os.makedirs(self.path, exist_ok=True)
        if self.child_pid:
            self.log.notice("AOF was enabled but there is already an AOF rewriting in "
                            "background. Stopping background AOF and starting a rewrite now.")
            self.kill_child()
        self.state = WAIT_REWRITE
        self.seldb = -1
        if self.children is not None and self.children.busy():
            self.log.notice("AOF was enabled but there is already another background "
                            "operation. An AOF background was scheduled to start when "
                            "possible.")
            self.rewrite_scheduled = True
            return True
        try:
            return self.rewrite(keyspace)
        except OSError:
            self.state = OFF
            raise

    def stop(self) -> None:
        """appendonly turned off at runtime."""
        self.kill_child()
        if self.fd >= 0:
            self.flush()
            try:
                os.fsync(self.fd)
            except OSError:
                pass
            os.close(self.fd)
            self.fd = -1
        if self.state == WAIT_REWRITE and self.temp_incr:
            _unlink(self.file_path(self.temp_incr))
        self.buf.clear()
        self.state = OFF
        self.rewrite_scheduled = False

    def shutdown(self) -> None:
        """Flush and fsync everything (raises OSError on failure)."""
        if self.child_pid:
            self.log.warning("There is a child rewriting the AOF. Killing it!")
            self.kill_child()
        if self.fd < 0:
            return
        if self.buf:
            self.flush()
            if self.buf:
                raise OSError(errno.EIO, "can't write the AOF buffer: %s"
                              % self.last_write_error)
        if self.pending_fsync is not None:
            self.pending_fsync.result()
        os.fsync(self.fd)
        self.synced = self.written
        if self.executor is not None:
            self.executor.shutdown(wait=True)
            self.executor = None

    # ------------------------------------------------------------ INFO
    def info(self) -> dict:
        on = self.state != OFF
        d = {
            "aof_enabled": 1 if on else 0,
            "aof_rewrite_in_progress": 1 if self.child_pid else 0,
            "aof_rewrite_scheduled": 1 if self.rewrite_scheduled else 0,
            "aof_last_rewrite_time_sec": self.last_rewrite_time,
            "aof_current_rewrite_time_sec": (int(time.time() - self.child_start)
                                             if self.child_pid else -1),
            "aof_last_bgrewrite_status": "ok" if self.last_rewrite_ok else "err",
            "aof_rewrites": self.rewrites,
            "aof_rewrites_consecutive_failures": self.consecutive_failures,
            "aof_last_write_status": "ok" if self.last_write_ok else "err",
            "aof_last_cow_size": getattr(self.children, "last_cow", {}).get("aof", 0),
            "module_fork_in_progress": 0,
            "module_fork_last_cow_size": 0,
        }
        if on:
            d.update({
                "aof_current_size": self.current_size,
                "aof_base_size": self.base_size,
                "aof_pending_rewrite": 1 if self.rewrite_scheduled else 0,
                "aof_buffer_length": len(self.buf),
                "aof_pending_bio_fsync": 1 if self.fsync_pending() else 0,
                "aof_delayed_fsync": self.delayed_fsync,
            })
        return d

    @staticmethod
    def info_off() -> dict:
        """The INFO persistence AOF fields when appendonly is no."""
        return AOF(".").info()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _unlink(path: str) -> None:
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


def _fsync_and_close(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
