"""Running scripts: Redis 7.0's script.c (scriptPrepareForRun, scriptCall,
scriptInterrupt, scriptKill) on top of the two Lua states.

`srv.scripting` is a Scripting.  EVAL and FCALL hand it a compiled function
with its flags; it checks whether the script may run here (no-cluster,
allow-oom, allow-stale, write flag on a read-only replica or through *_RO),
runs it, and answers for every redis.call the script makes:

- the command is looked up, its arity, `noscript` flag, write permission,
  OOM state and cluster slot are checked exactly as scriptCall does, with
  Redis's error texts;
- it then runs through the server's own `run_queued` (stats, MONITOR,
  SLOWLOG, keyspace events, propagation) with a script client, like a
  command queued by MULTI;
- the writes it propagates are collected in `srv.also_propagate` and leave
  at the end wrapped in MULTI/EXEC (effects replication, Redis 7.0), never
  the script itself.

Long scripts.  A script runs inside a greenlet.  The Lua count hook (every
100k instructions) asks `hook()` whether the script has run past
busy-reply-threshold; from then on the greenlet hands control back to the
event loop at every hook, the loop serves other clients (who get -BUSY for
anything but SCRIPT KILL / FUNCTION KILL / SHUTDOWN NOSAVE and the other
allow-busy commands) and the script continues on the next loop iteration,
as Redis's processEventsWhileBlocked does.  SCRIPT KILL marks the run; the
next hook raises the kill error on every line, so pcall cannot swallow it.
Scripts run by EXEC, by the master link or while loading cannot leave the
loop half-way and simply run to the end.
"""

from __future__ import annotations

import random
import time
from time import monotonic

import greenlet

from pynode.commands.acl import check_user, script_denied
from pynode.commands import CommandError
from pynode.log import log
from pynode.routing import DOWN, DOWN_RO, route
from pynode.scripting.engine import ERROR, LuaEngine

BUSY_EVAL = ("BUSY Redis is busy running a script. You can only call SCRIPT KILL "
             "or SHUTDOWN NOSAVE.")
BUSY_FUNCTION = ("BUSY Redis is busy running a script. You can only call FUNCTION KILL "
                 "or SHUTDOWN NOSAVE.")
KILLED = b"ERR Script killed by user with SCRIPT KILL..."

# script flags (shebang / register_function), as Redis 7.0's scripts_flags_def
NO_WRITES, ALLOW_OOM, ALLOW_STALE, NO_CLUSTER, ALLOW_CROSS_SLOT = 1, 2, 4, 8, 16
EVAL_COMPAT = 32             # an EVAL script without a shebang
FLAG_NAMES = {b"no-writes": NO_WRITES, b"allow-oom": ALLOW_OOM,
              b"allow-stale": ALLOW_STALE, b"no-cluster": NO_CLUSTER,
              b"allow-cross-slot-keys": ALLOW_CROSS_SLOT}

REPL_AOF, REPL_REPLICA = 1, 2
LOG_LEVELS = ("debug", "verbose", "notice", "warning")


class RunCtx:
    """One script invocation (Redis's scriptRunCtx)."""

    __slots__ = ("caller", "sc", "funcname", "is_eval", "flags", "readonly", "oom",
                 "write_dirty", "killed", "timedout", "can_yield", "start", "now",
                 "now_s", "repl", "slot", "ops", "engine", "own_ops", "argv", "plain")

    def __init__(self, caller, sc, engine, funcname: str, is_eval: bool, flags: int,
                 readonly: bool, plain: bool, slot: int, argv) -> None:
        self.caller = caller
        self.sc = sc
        self.engine = engine
        self.funcname = funcname
        self.is_eval = is_eval
        self.flags = flags
        self.readonly = readonly
        self.plain = plain
        self.slot = slot
        self.argv = argv
        self.write_dirty = False
        self.killed = False
        self.timedout = False
        self.repl = REPL_AOF | REPL_REPLICA
        self.oom = False

    @property
    def allow_oom(self) -> bool:
        return not self.flags & EVAL_COMPAT and bool(self.flags & ALLOW_OOM)


class Scripting:
    """The scripting side of the server: both Lua states, the EVAL script
    cache, the function libraries, and the script running now."""

    def __init__(self, srv) -> None:
        from pynode.scripting.functions import Functions
        self.srv = srv
        self.ctx: RunCtx | None = None       # the script running now
        self.busy: RunCtx | None = None      # ... when it runs past the threshold
        self.eval_engine: LuaEngine | None = None
        self.scripts: dict[bytes, object] = {}   # sha -> eval.Script
        self.scripts_body_bytes = 0
        self.functions = Functions(self)
        self.main = greenlet.getcurrent()
        self.worker: greenlet.greenlet | None = None
        self.clients: dict[str, object] = {}    # engine kind -> script client
        self.busy_batch = False
        self.rand_state = 0
        self.srand(random.getrandbits(32))

    # ------------------------------------------------------------ states
    def eval_lua(self) -> LuaEngine:
        if self.eval_engine is None:
            self.eval_engine = LuaEngine(self, "eval")
        return self.eval_engine

    def flush_eval(self) -> None:
        """SCRIPT FLUSH: forget every script and start a new Lua state."""
        self.scripts.clear()
        self.scripts_body_bytes = 0
        self.eval_engine = None

    def script_client(self, kind: str):
        sc = self.clients.get(kind)
        if sc is None:
            from pynode.client import Client
            sc = Client(self.srv)
            sc.authed = True
            sc.script = True
            sc.update_special()
            sc.special = False
            self.clients[kind] = sc
        return sc

    # ------------------------------------------------------------ running
    def prepare(self, c, flags: int, ro: bool) -> str | None:
        """scriptPrepareForRun's refusals: the error text, or None."""
        srv = self.srv
        repl = srv.replication
        master = "M" in c.flags_extra
        stale = (repl.masterhost is not None and repl.state != "connected"
                 and not repl.serve_stale)
        if flags & EVAL_COMPAT:
            if stale:
                return ("MASTERDOWN Link with MASTER is down and replica-serve-stale-data "
                        "is set to 'no'.")
            return None
        if flags & NO_CLUSTER and srv.cluster is not None:
            return "ERR Can not run script on cluster, 'no-cluster' flag is set."
        if not flags & (ALLOW_OOM | NO_WRITES) and srv.maxmemory and self.out_of_memory():
            return ("OOM allow-oom flag is not set on the script, can not run it when "
                    "used memory > 'maxmemory'")
        if stale and not flags & ALLOW_STALE:
            return ("MASTERDOWN Link with MASTER is down, replica-serve-stale-data is set to "
                    "'no' and 'allow-stale' flag is not set on the script.")
        if not flags & NO_WRITES:
            if repl.masterhost is not None and repl.read_only and not master and \
                    not srv.loading:
                return "ERR Can not run script with write flag on readonly replica"
            if ro:
                return "ERR Can not execute a script with write flag using *_ro command."
        return None

    def out_of_memory(self) -> bool:
        from pynode.evict import FAIL
        ev = self.srv.evictor
        return ev.perform() == FAIL

    def run(self, c, engine: LuaEngine, fn, keys: list, args: list, funcname: str,
            flags: int, ro: bool, is_eval: bool, slot: int = -1, argv=()):
        """Run one script for client c; returns the reply bytes, or None when
        the script went past busy-reply-threshold (the reply follows)."""
        srv = self.srv
        plain = (srv.cluster is None and not srv.maxmemory
                 and srv.replication.masterhost is None)
        if not (plain and flags & EVAL_COMPAT):
            err = self.prepare(c, flags, ro)
            if err is not None:
                raise CommandError(err)
        sc = self.clients.get(engine.kind) or self.script_client(engine.kind)
        ctx = RunCtx(c, sc, engine, funcname, is_eval, flags,
                     ro or (not flags & EVAL_COMPAT and bool(flags & NO_WRITES)),
                     plain, slot, argv)
        if not plain:
            # server.script_oom: measured (evicting if it can) as the script starts
            ctx.oom = bool(srv.maxmemory) and not ctx.allow_oom and self.out_of_memory()
        ctx.start = monotonic()
        ks = srv.ks
        ctx.now = ks.now
        ctx.now_s = ks.now_s
        ctx.can_yield = (c.transport is not None and not c.in_multi and not srv.loading
                         and "M" not in c.flags_extra and srv.loop is not None)
        c.runs_scripts = True
        sc.db = c.db
        if sc.resp != 2:
            sc.set_resp(2)
        sc.readonly = c.readonly
        sc.asking = c.asking
        ops = srv.also_propagate
        ctx.own_ops = ops is None
        if ops is None and (srv.aof is not None or srv.repl_feed is not None
                            or srv.slot_feed is not None):
            # the script's writes are collected for the AOF, the replicas or
            # a slot migration; with none of them (they cannot start while
            # the script runs: their commands get -BUSY) they go nowhere, as
            # an expired key's DEL (on_key_expired)
            ops = []
        ctx.ops = ops
        self.ctx = ctx
        job = (engine.run, fn, c.resp, keys, args)
        # enter() without the call (the hot path of EVALSHA)
        saved = srv.collect_propagation(ops)
        try:
            if ctx.can_yield and greenlet.getcurrent() is not self.worker:
                w = self.worker
                if w is None or w.dead:
                    w = self.worker = greenlet.greenlet(self._worker_main)
                kind, res = w.switch(job)
            else:
                # in the worker already (run_batch), or a script that cannot yield
                kind, res = self._run_job(job)
        finally:
            srv.collect_propagation(saved)
        if kind != "done":
            if kind == "busy":
                return self.suspend(ctx)
            res = (False, None, str(res).encode("utf-8", "replace"), None, None)
        elif res[0] and not ops:        # a reply and nothing to propagate
            self.ctx = None
            engine.calls += 1
            if engine.calls % 50 == 0:
                engine.gc_step(50)
            return res[1]
        return self.finish(ctx, res)

    def _run_job(self, job):
        run, fn, resp, keys, args = job
        try:
            return "done", run(fn, resp, len(keys), *keys, *args)
        except Exception as e:      # a lupa error outside the script's own pcall
            return "exc", e

    def _worker_main(self, job):
        while True:
            if job[0] == "batch":
                try:
                    job[1].run(job[2])
                    result = ("done", None)
                except BaseException as e:  # noqa: BLE001 - raised again in the loop
                    result = ("exc", e)
            else:
                result = self._run_job(job)
            job = self.main.switch(result)

    def run_batch(self, c, cmds: list) -> None:
        """Client.run for a client that runs scripts: inside the worker
        greenlet, so its scripts need no switch of their own (one switch per
        read instead of one per script; a switch costs microseconds)."""
        if self.busy is not None or greenlet.getcurrent() is not self.main:
            c.run(cmds)
            return
        w = self.worker
        if w is None or w.dead:
            w = self.worker = greenlet.greenlet(self._worker_main)
        srv = self.srv
        saved = srv.also_propagate        # a yielding script leaves its own collector
        try:
            kind, value = w.switch(("batch", c, cmds))
        finally:
            srv.collect_propagation(saved)
        if kind == "busy":
            self.suspend(self.ctx, batch=True)
        elif kind == "exc":
            raise value

    def suspend(self, ctx: RunCtx, batch: bool = False):
        """The script is busy: park its client, serve others with -BUSY.
        `batch`: the script runs inside its client's batch (run_batch), which
        goes on by itself once the script is over."""
        srv = self.srv
        self.busy = ctx
        self.busy_batch = batch
        c = ctx.caller
        c.paused = True                  # its next commands wait for the reply
        srv.divert_commands(self.execute_busy)
        srv.loop.call_soon(self.resume)
        return None

    def resume(self) -> None:
        ctx = self.busy
        if ctx is None:
            return
        kind, res = self._resume_switch(ctx)
        if kind == "busy":
            self.srv.loop.call_soon(self.resume)
            return
        self.busy = None
        self.srv.restore_commands()
        c = ctx.caller
        if self.busy_batch:              # the batch answered the script itself
            c.paused = False
            if kind == "exc":
                log.warning("Error while running a client's commands: %r" % (res,))
                c.transport.abort()
            elif not c.closing and c.transport is not None:
                c.resume()
            return
        if kind == "exc":
            res = (False, None, str(res).encode("utf-8", "replace"), None, None)
        try:
            reply = self.finish(ctx, res)
        except CommandError as e:
            reply = self.srv.error_reply(e.msg)
        if not c.closing and c.transport is not None:
            c.write(reply)
        c.paused = False
        if not c.closing and c.transport is not None:
            c.resume()

    def _resume_switch(self, ctx: RunCtx):
        srv = self.srv
        saved = srv.collect_propagation(ctx.ops)
        ks = srv.ks
        now, now_s = ks.now, ks.now_s
        ks.now, ks.now_s = ctx.now, ctx.now_s
        try:
            return self.worker.switch(None)
        finally:
            srv.collect_propagation(saved)
            ks.now, ks.now_s = now, now_s

    def finish(self, ctx: RunCtx, res) -> bytes:
        """The script ended: propagate its writes, turn its result into the reply."""
        srv = self.srv
        self.ctx = None
        if ctx.own_ops:                   # the script owns its propagation
            ops = ctx.ops
            if ops:
                srv.propagate_ops(ops)
        engine = ctx.engine
        engine.calls += 1
        if engine.calls % 50 == 0:
            engine.gc_step(50)
        if res[0]:
            return res[1]
        msg, plain = res[1], res[2]
        if b"not enough memory" in (msg or plain or b""):
            # Lua 5.1 has no emergency collection: free what the failed
            # script left before the next one needs the room
            engine.full_gc()
        if msg is not None:
            text = msg
            src, line = res[3], res[4]
            if src is not None and line is not None:
                text += b" script: %s, on %s:%s." % (ctx.funcname.encode(), src, line)
        else:
            text = b"ERR Error running script %s, %.100s" % (
                ctx.funcname.encode(), plain if plain is not None else b"execution failure")
        text = text.replace(b"\r", b" ").replace(b"\n", b" ")
        raise CommandError(text.decode("utf-8", "replace"))

    # ------------------------------------------------------------ redis.call
    def call_command(self, argv: list[bytes]):
        """scriptCall: the reply bytes, or (ERROR, text) when refused."""
        ctx = self.ctx
        srv = self.srv
        cmd = srv.dispatch.get(argv[0])
        if cmd is None:
            cmd = srv.table.get(argv[0].lower())
        if cmd is not None and cmd.subs is not None and len(argv) > 1:
            cmd = cmd.subs.get(argv[1].lower())
        if cmd is None:
            return ERROR, b"ERR Unknown Redis command called from script"
        n = len(argv)
        arity = cmd.arity
        if (arity > 0 and arity != n) or n < -arity or cmd.handler is None:
            return ERROR, b"ERR Wrong number of args calling Redis command from script"
        if cmd.noscript and not self.srv.debug.script_disable_deny_script:
            return ERROR, b"ERR This Redis command is not allowed from script"
        if not ctx.caller.user.unrestricted:
            err = script_denied(srv, ctx.caller, cmd, argv,
                                ctx.argv[0].decode("utf-8", "replace").lower())
            if err is not None:
                return ERROR, err.encode()
        if ctx.plain:
            # a primary with no maxmemory, not in cluster mode: only the
            # read-only script rule applies
            if cmd.write:
                if ctx.readonly:
                    return ERROR, b"ERR Write commands are not allowed from read-only scripts."
                ctx.write_dirty = True
            if ctx.repl == 3:
                r = srv.run_queued(ctx.sc, cmd, argv)
                return r if r is not None else ctx.sc.nil
        repl = srv.replication
        caller = ctx.caller
        master = "M" in caller.flags_extra
        if repl.masterhost is not None and repl.state != "connected" and \
                not repl.serve_stale and not cmd.stale:
            return ERROR, b"ERR Can not execute the command on a stale replica"
        if cmd.write and not ctx.plain:
            if ctx.readonly:
                return ERROR, b"ERR Write commands are not allowed from read-only scripts."
            if repl.masterhost is not None and repl.read_only and not master and \
                    not srv.loading:
                return ERROR, b"READONLY You can't write against a read only replica."
            if (srv.maxmemory and not ctx.allow_oom and not master and not srv.loading
                    and repl.masterhost is None and not ctx.write_dirty and ctx.oom
                    and cmd.denyoom):
                return ERROR, b"OOM command not allowed when used memory > 'maxmemory'."
            ctx.write_dirty = True
        sc = ctx.sc
        if srv.cluster is not None and not master and not srv.loading:
            err = self.cluster_check(ctx, sc, cmd, argv)
            if err is not None:
                return ERROR, err
        if ctx.repl != REPL_AOF | REPL_REPLICA and srv.also_propagate is not None:
            ops = srv.also_propagate
            n0 = len(ops)
            r = srv.run_queued(sc, cmd, argv)
            self.target(ops, n0, ctx.repl)
        else:
            r = srv.run_queued(sc, cmd, argv)
        if r is None:
            r = sc.nil
        return r

    @staticmethod
    def target(ops: list, n0: int, repl: int) -> None:
        """redis.set_repl: what the last command propagated goes only where asked."""
        if repl == 0:
            del ops[n0:]
            return
        for i in range(n0, len(ops)):
            op = ops[i]
            ops[i] = (op[0], op[1], repl)

    def cluster_check(self, ctx: RunCtx, sc, cmd, argv) -> bytes | None:
        """scriptVerifyClusterState: the command's keys must be served here."""
        srv = self.srv
        sc.readonly = ctx.caller.readonly
        sc.asking = ctx.caller.asking
        err = route(srv, sc, cmd, argv)
        if err is not None:
            if err == DOWN_RO:
                return (b"ERR Script attempted to execute a write command while the cluster "
                        b"is down and readonly")
            if err == DOWN:
                return b"ERR Script attempted to execute a command while the cluster is down"
            return b"ERR Script attempted to access a non local key in a cluster node"
        # Redis 7.0 lets a script touch undeclared keys of several local
        # slots (the same-slot rule for them came later, with
        # allow-cross-slot-keys to lift it)
        return None

    # ------------------------------------------------------------ callbacks
    def hook(self):
        """The count hook: None to go on, or the kill error."""
        ctx = self.ctx
        if ctx is None:
            if self.functions.load_timed_out():
                return b"ERR FUNCTION LOAD timeout"
            return None
        if ctx.killed:
            return KILLED
        if not ctx.timedout:
            threshold = self.srv.cfg.int("busy-reply-threshold")
            if threshold <= 0:
                return None
            elapsed = (time.monotonic() - ctx.start) * 1000
            if elapsed < threshold:
                return None
            ctx.timedout = True
            log.warning("Slow script detected: still in execution after %d milliseconds. "
                        "You can try killing the script using the %s command."
                        % (int(elapsed), "SCRIPT KILL" if ctx.is_eval else "FUNCTION KILL"))
        if ctx.can_yield:
            self.main.switch(("busy", None))
            if ctx.killed:
                return KILLED
        return None

    def lua_log(self, level: int, msg: bytes) -> None:
        getattr(log, LOG_LEVELS[level])(msg.decode("utf-8", "replace"))

    def set_resp(self, v: int) -> None:
        self.ctx.sc.set_resp(int(v))

    def get_resp(self) -> int:
        ctx = self.ctx
        return ctx.sc.resp if ctx is not None else 2

    def set_repl(self, v: int) -> None:
        self.ctx.repl = int(v)

    def acl_check(self, argv: list[bytes]):
        """redis.acl_check_cmd: whether the calling user may run argv; None
        for an unknown command."""
        cmd = self.srv.table.get(argv[0].lower())
        if cmd is not None and cmd.subs is not None and len(argv) > 1:
            cmd = cmd.subs.get(argv[1].lower())
        if cmd is None:
            return None
        return check_user(self.ctx.caller.user, cmd, argv)[0] == 0

    # Redis's rand48 (redisLrand48/redisSrand48): one sequence for the whole
    # server, shared by EVAL scripts and functions, seeded at start-up and
    # by math.randomseed (Redis 7.0 does not reseed it per script)
    def srand(self, seed: int) -> None:
        self.rand_state = ((int(seed) & 0xFFFFFFFF) << 16 | 0x330E) & 0xFFFFFFFFFFFF

    def rand(self) -> float:
        x = (0x5DEECE66D * self.rand_state + 0xB) & 0xFFFFFFFFFFFF
        self.rand_state = x
        return ((x >> 17) % 0x7FFFFFFF) / 0x7FFFFFFF

    def load_functions(self, codes: list[bytes]) -> None:
        """The libraries of an RDB (full sync): they replace ours; one that
        cannot be created fails the load (RDBError), as in Redis."""
        from pynode.commands import CommandError as _CE
        from storage.rdb import RDBError
        try:
            self.functions.load_all(codes, "flush")
        except _CE as e:
            raise RDBError("failed loading the functions: %s" % e.msg) from None

    def register_function(self, *args):
        return self.functions.register_from_lua(*args)

    # ------------------------------------------------------------ busy
    def execute_busy(self, c, argv):
        """Server.execute while a script is busy: -BUSY for everything but
        the allow-busy commands."""
        srv = self.srv
        cmd = srv.dispatch.get(argv[0]) or srv.dispatch.get(argv[0].lower())
        if cmd is not None and cmd.subs is not None and len(argv) > 1:
            cmd = cmd.subs.get(argv[1].lower(), cmd)
        if cmd is None or "allow_busy" in cmd.flags:
            if cmd is None or cmd.name != "shutdown" or \
                    any(a.lower() == b"nosave" for a in argv[1:]):
                return type(srv).execute(srv, c, argv)     # the dispatcher itself
        ctx = self.busy
        msg = BUSY_EVAL if ctx is None or ctx.is_eval else BUSY_FUNCTION
        if c.in_multi:
            c.multi_error = True
        return srv.reject(c, cmd, msg)

    def kill(self, is_eval: bool) -> str | None:
        """SCRIPT KILL / FUNCTION KILL: None when killed, else the error."""
        ctx = self.busy
        if ctx is None:
            return "NOTBUSY No scripts in execution right now."
        if "M" in ctx.caller.flags_extra:
            return ("UNKILLABLE The busy script was sent by a master instance in the context "
                    "of replication and cannot be killed.")
        if ctx.write_dirty:
            return ("UNKILLABLE Sorry the script already executed write commands against the "
                    "dataset. You can either wait the script termination or kill the server "
                    "in a hard way using the SHUTDOWN NOSAVE command.")
        if is_eval and not ctx.is_eval:
            return BUSY_FUNCTION
        if not is_eval and ctx.is_eval:
            return BUSY_EVAL
        ctx.killed = True
        return None

    # ------------------------------------------------------------ INFO
    def info_memory(self) -> dict:
        ev = self.eval_engine
        vm_eval = ev.memory() if ev is not None else 37 * 1024
        fe = self.functions
        return {
            "used_memory_vm_eval": vm_eval,
            "used_memory_scripts_eval": self.scripts_body_bytes,
            "number_of_cached_scripts": len(self.scripts),
            "used_memory_vm_functions": fe.vm_memory(),
            "number_of_functions": fe.count_functions(),
            "number_of_libraries": len(fe.libraries),
            "used_memory_scripts": self.scripts_body_bytes + fe.code_bytes(),
        }
