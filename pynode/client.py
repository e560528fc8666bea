"""One client connection: parse what arrives, run it, write the replies once."""

from __future__ import annotations

import asyncio
import time

from pynode.resp import NIL2, NIL3, RequestParser

REPLY_ON, REPLY_OFF, REPLY_SKIP_NEXT, REPLY_SKIP = 0, 1, 2, 3


class Client(asyncio.Protocol):
    __slots__ = ("srv", "id", "transport", "parser", "db", "resp", "nil", "authed",
                 "name", "addr", "laddr", "fd", "created", "last_io", "last_cmd",
                 "special", "in_multi", "queued", "multi_error", "watched",
                 "watch_touched", "subs", "psubs", "ssubs", "monitor", "reply_mode", "closing",
                 "out", "wbuf", "close_queued", "asking",
                 "pending", "paused", "rewrite", "lib_name", "lib_ver", "flags_extra",
                 "readonly", "blocked", "script", "runs_scripts", "tracking", "user", "tls",
                 "__weakref__")

    def __init__(self, srv) -> None:
        self.srv = srv
        self.id = 0
        self.transport = None
        self.parser = RequestParser(srv.proto_max_bulk_len, srv.query_buffer_limit)
        self.db = srv.ks.db(0)
        self.resp = 2
        self.nil = NIL2
        self.user = srv.acl.default      # the ACL user (pynode/acl.py)
        self.authed = self.user.nopass and self.user.enabled
        self.name = b""
        self.addr = "?:0"
        self.laddr = "?:0"
        self.fd = -1
        self.created = time.time()
        self.last_io = self.created
        self.last_cmd = "NULL"
        # `special` is true when any slow-path state is on (not authenticated,
        # a user with ACL restrictions, MULTI, subscribed in RESP2, reply
        # off/skip, monitor); execute()
        # checks only this.
        self.special = False
        self.in_multi = False
        self.queued: list = []
        self.multi_error = False
        self.watched: list = []          # [(db, key, WatchedKey)] (commands/transactions.py)
        self.watch_touched = False
        self.subs: set[bytes] = set()
        self.psubs: set[bytes] = set()
        self.ssubs: set[bytes] = set()   # shard channels (SSUBSCRIBE)
        self.monitor = False
        self.reply_mode = REPLY_ON
        self.closing = False
        self.out = None
        self.wbuf: list | None = None    # replies waiting for Server.before_sleep
        self.close_queued = False
        self.pending: list = []          # parsed commands waiting (CLIENT PAUSE)
        self.paused = False
        self.rewrite = None              # what to propagate instead of argv
        self.lib_name = b""
        self.lib_ver = b""
        self.flags_extra = ""
        self.readonly = False
        self.asking = False
        self.blocked = None              # pynode.blocking.Blocked while parked on keys
        self.script = False              # a script's client (blocking commands answer at once)
        self.runs_scripts = False        # has sent EVAL/FCALL: batches run in the script worker
        self.tracking = None             # pynode.tracking.ClientTracking (CLIENT TRACKING)
        self.tls = False                 # connected over TLS (tls-port)
        self.update_special()

    # ------------------------------------------------------------ asyncio
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.tls = transport.get_extra_info("sslcontext") is not None
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.addr = _fmt_addr(peer)
        self.laddr = _fmt_addr(sock)
        s = transport.get_extra_info("socket")
        if s is not None:
            self.fd = s.fileno()
        self.srv.on_connect(self)

    def connection_lost(self, exc) -> None:
        self.closing = True
        self.srv.on_disconnect(self)

    def data_received(self, data: bytes) -> None:
        srv = self.srv
        parser = self.parser
        cmds = parser.feed(data)
        srv.stats.net_input_bytes += len(data)
        self.last_io = srv.ks.now_s = time.time()
        srv.ks.now = int(self.last_io * 1000)
        if self.pending or self.paused:
            self.pending.extend(cmds)
            cmds = []
        elif cmds:
            if self.runs_scripts:
                srv.scripting.run_batch(self, cmds)
            else:
                self.run(cmds)
        if parser.error is not None:
            err = parser.error
            if err == "query buffer limit":
                srv.log.warning("Closing client that reached max query buffer length "
                                "(qbuf initial bytes: ...)")
                self.transport.abort()
            else:
                # latin-1: "expected '$', got '\xff'" carries the raw byte, as in Redis
                self.write(b"-ERR " + err.encode("latin-1") + b"\r\n")
                srv.log.verbose("Protocol error (%s) from client: id=%d addr=%s"
                                % (err, self.id, self.addr))
                self.close_after_reply()
            self.closing = True

    def run(self, cmds: list) -> None:
        """Execute parsed commands; their replies leave together with one write
        when the loop has handled every ready connection (Server.before_sleep)."""
        srv = self.srv
        execute = srv.execute
        execute_fast = srv.execute_fast
        pause = srv.pause
        out = self.out = []     # write() appends here until the one write below
        i = 0
        n = len(cmds)
        while i < n:
            # pipelined hot commands run without execute()'s slow paths; it
            # stops at the first command that needs them (a read of one
            # command goes to execute(), whose setup is cheaper for one)
            if n > 1:
                i = execute_fast(self, cmds, i, out)
                if i == n:
                    break
            argv = cmds[i]
            if pause.end and srv.must_pause(self, argv):
                self.pending = cmds[i:]
                self.paused = True
                self.transport.pause_reading()
                srv.pause.clients.add(self)
                break
            r = execute(self, argv)
            if r is not None:
                if self.special:
                    r = self.filter_reply(r)
                if r is not None:
                    out.append(r)
            elif self.paused:       # parked by a blocking command (WAIT)
                self.pending = cmds[i + 1:]
                break
            if self.closing:
                break
            i += 1
        self.out = None
        if out:
            data = b"".join(out) if len(out) > 1 else out[0]
            srv.stats.net_output_bytes += len(data)
            srv.queue_write(self, data)
        if self.closing:
            self.close_after_reply()

    def resume(self) -> None:
        """Run the commands held while clients were paused."""
        self.paused = False
        cmds, self.pending = self.pending, []
        if not self.closing:
            self.transport.resume_reading()
            if cmds:
                if self.runs_scripts:
                    self.srv.scripting.run_batch(self, cmds)
                else:
                    self.run(cmds)

    def filter_reply(self, r: bytes):
        """CLIENT REPLY OFF/SKIP: drop the reply, but a RESP3 push (subscribe
        confirmations) is sent regardless, as Redis does."""
        mode = self.reply_mode
        if mode == REPLY_ON:
            return r
        keep = r if self.resp == 3 and r[:1] == b">" else None
        if mode == REPLY_SKIP_NEXT:
            self.reply_mode = REPLY_SKIP
            return keep
        if mode == REPLY_SKIP:
            self.reply_mode = REPLY_ON
            self.update_special()
            return keep
        return keep  # REPLY_OFF

    def write(self, data: bytes) -> None:
        """Send out-of-band data (pub/sub messages, MONITOR lines); while this
        client's own commands run, it joins their replies in order."""
        if self.out is not None:
            self.out.append(data)
        elif not self.closing and self.transport is not None:
            self.srv.stats.net_output_bytes += len(data)
            self.srv.queue_write(self, data)

    def close_after_reply(self) -> None:
        """Close once the replies queued so far are written."""
        self.closing = True
        if self.out is None and not self.close_queued:
            self.close_queued = True
            self.srv.queue_write(self, None)

    def set_resp(self, v: int) -> None:
        self.resp = v
        self.nil = NIL3 if v == 3 else NIL2
        self.update_special()

    def update_special(self) -> None:
        self.special = bool(self.in_multi or self.reply_mode != REPLY_ON or
                            ((self.subs or self.psubs or self.ssubs) and self.resp == 2)
                            or self.monitor or not self.authed or not self.user.unrestricted)

    def flags(self) -> str:
        f = ""
        if self.in_multi:
            f += "x"
        if self.subs or self.psubs or self.ssubs:
            f += "P"
        if self.monitor:
            f += "O"
        if self.readonly:
            f += "r"
        f += self.flags_extra
        return f or "N"


def _fmt_addr(a) -> str:
    if not a:
        return "?:0"
    if isinstance(a, str):
        return a + ":0"
    host, port = a[0], a[1]
    return "%s:%d" % (host, port)
