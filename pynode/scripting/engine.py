"""One Lua 5.1 state (lupa) with Redis 7.0's sandbox and `redis` API.

Redis keeps two Lua states: one for EVAL scripts, one for function libraries
(SCRIPT FLUSH resets the first, FUNCTION FLUSH the second).  A LuaEngine is
one of them.  The sandbox itself (read-only globals, the redis.* table, the
Lua -> RESP reply conversion, the error handler) is Lua code in
sandbox.lua; this module gives it its Python callbacks:

- `call` runs a command for redis.call / redis.pcall through the Scripting
  layer (pynode/scripting/runner.py) and converts the RESP reply into Lua
  values as Redis's redisProtocolToLuaType does;
- `hook` is the count hook: slow-script detection and SCRIPT KILL;
- rand48 for math.random, sha1hex, log, setresp, set_repl, acl_check_cmd.

No Python object is ever handed to a script: the callbacks are upvalues of
the sandbox chunk, and attribute access on Python objects is refused.
"""

from __future__ import annotations

import hashlib
import os

from lupa import lua51

from pynode.config import VERSION
from pynode.scripting import lualibs

# Lua's heap cap per state: a script that allocates without bound gets
# "not enough memory" instead of taking the process down
MAX_MEMORY = 1 << 30

_SANDBOX = None


def _sandbox_source() -> bytes:
    global _SANDBOX
    if _SANDBOX is None:
        with open(os.path.join(os.path.dirname(__file__), "sandbox.lua"), "rb") as fh:
            _SANDBOX = fh.read()
    return _SANDBOX


def _no_attributes(obj, name, is_setting):
    raise AttributeError("access to Python attributes is not allowed from scripts")


_NOVALUE = object()
_OK = {b"ok": b"OK"}


def _tonumber(v):
    """lua_tonumber: a number, or a string that reads as one, else None."""
    t = type(v)
    if t is int or t is float:
        return v
    if t is bytes:
        s = v.strip()
        try:
            if s[:2].lower() in (b"0x", b"-0x") or s[:3].lower() == b"+0x":
                return int(s, 16)
            return float(s)
        except ValueError:
            return None
    return None


def _tostring(v, default=b""):
    """lua_tolstring: strings, and numbers as Lua prints them (%.14g)."""
    t = type(v)
    if t is bytes:
        return v
    if t is int or t is float:
        if t is int and -10**14 < v < 10**14:
            return b"%d" % v
        return (b"%.14g" % v).replace(b"inf", b"inf")
    return default


def _typename(v) -> str:
    if v is None:
        return "nil"
    t = type(v)
    if t is bool:
        return "boolean"
    if t is bytes:
        return "string"
    if t is int or t is float:
        return "number"
    try:
        return lua51.lua_type(v) or "userdata"
    except Exception:
        return "userdata"


def version_num(version: str) -> int:
    parts = [int(p) for p in (version.split(".") + ["0", "0"])[:3]]
    return (parts[0] << 16) | (parts[1] << 8) | parts[2]


# a refusal before the command runs: (ERROR, text)
ERROR = 2


class CallError(Exception):
    """A failed redis.call: raised through Lua as a Lua error (the text
    waits in LuaEngine.pending_error for the error handler)."""


def error_text(s: bytes) -> bytes:
    """luaPushErrorBuff on "-CODE msg\\r\\n": "CODE msg" ("ERR msg" when the
    text has no code)."""
    s = s.rstrip(b"\r\n")
    if s[:1] == b"-":
        sp = s.find(b" ")
        if sp < 0:
            return b"ERR " + s[1:].strip(b"\r\n")
        return s[1:sp] + b" " + s[sp + 1:].strip(b"\r\n")
    return b"ERR " + s.strip(b"\r\n")


class _ReplyParser:
    """RESP2/RESP3 reply bytes -> Python values table_from() turns into Lua
    (redisProtocolToLuaType): status -> {ok=}, error -> {err=}, null bulk and
    null array -> false, RESP3 null -> nil, map -> {map={...}}, set ->
    {set={k=true}}, double -> {double=n}, big number -> {big_number=s},
    verbatim -> {verbatim_string={format=, string=}}, attributes dropped."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def line(self) -> bytes:
        d = self.data
        end = d.index(b"\r\n", self.pos)
        s = d[self.pos + 1:end]
        self.pos = end + 2
        return s

    def value(self):
        d = self.data
        t = d[self.pos]
        if t == 36:    # $
            n = int(self.line())
            if n < 0:
                return False
            s = d[self.pos:self.pos + n]
            self.pos += n + 2
            return s
        if t == 58:    # :
            return int(self.line())
        if t == 43:    # +
            return {b"ok": self.line()}
        if t == 45:    # -
            return {b"err": error_text(b"-" + self.line())}
        if t == 42:    # *
            n = int(self.line())
            if n < 0:
                return False
            return [self.value() for _ in range(n)]
        if t == 37:    # %
            n = int(self.line())
            m = {}
            for _ in range(n):
                k = self.value()
                m[_key(k)] = self.value()
            return {b"map": m}
        if t == 126:   # ~
            n = int(self.line())
            return {b"set": {_key(self.value()): True for _ in range(n)}}
        if t == 95:    # _
            self.line()
            return None
        if t == 35:    # #
            return self.line() == b"t"
        if t == 44:    # ,
            s = self.line()
            return {b"double": float(s)}
        if t == 40:    # (
            return {b"big_number": self.line()}
        if t == 61:    # =
            n = int(self.line())
            s = d[self.pos:self.pos + n]
            self.pos += n + 2
            return {b"verbatim_string": {b"format": s[:3], b"string": s[4:]}}
        if t == 124:   # | attribute: skipped
            n = int(self.line())
            for _ in range(2 * n):
                self.value()
            return self.value()
        if t == 62:    # > push
            n = int(self.line())
            return [self.value() for _ in range(n)]
        raise ValueError("unexpected reply byte %r" % chr(t))


class _Key:
    """A table key that is itself a table (a map key of array type): kept
    distinct by identity, as a fresh Lua table would be."""

    __slots__ = ("v",)

    def __init__(self, v) -> None:
        self.v = v


def _key(k):
    if isinstance(k, (list, dict)):
        return _Key(k)
    return k


class LuaEngine:
    """One Lua state: `kind` is "eval" (EVAL scripts) or "function"
    (function libraries).  `host` is the Scripting object: it runs the
    commands and knows the running script."""

    def __init__(self, host, kind: str) -> None:
        self.host = host
        self.kind = kind
        self.calls = 0                   # scripts run (a GC step every 50, as Redis)
        self.pending_error = None        # the text of the failed redis.call being raised
        lua = self.lua = lua51.LuaRuntime(
            encoding=None, unpack_returned_tuples=True, register_eval=False,
            register_builtins=False, max_memory=MAX_MEMORY, attribute_filter=_no_attributes)
        self.table_from = lua.table_from
        self.call_command = host.call_command
        lualibs.install(lua)         # cjson, cmsgpack, bit, struct, before the sandbox
        py = lua.table_from({
            b"kind": kind.encode(),
            b"call": self.call,
            b"pcall": self.pcall,
            b"take_error": self.take_error,
            b"hook": host.hook,
            b"sha1hex": self.sha1hex,
            b"log": self.log,
            b"setresp": self.setresp,
            b"getresp": host.get_resp,
            b"setrepl": self.set_repl,
            b"acl_check": self.acl_check,
            b"random": self.random,
            b"randomseed": self.randomseed,
            b"register": host.register_function,
            b"version": VERSION.encode(),
            b"version_num": version_num(VERSION),
        })
        loader = lua.eval("function(src) return loadstring(src, '=pynode') end")
        chunk = loader(_sandbox_source())
        self.api = chunk(py)
        self.where = self.api.where
        self.compile = self.api.compile
        self.run = self.api.run
        self.load = self.api.load if kind == "function" else None
        self.memory_fn = self.api.memory
        self.gc_step = self.api.gc_step
        self.full_gc = self.api.full_gc

    # ------------------------------------------------------------ redis.call
    def run_command(self, args):
        """The reply bytes of one redis.call, or the error text (bytes in a
        tuple) when it cannot run."""
        if not args:
            return (b"ERR Please specify at least one argument for this redis lib call",)
        for a in args:
            if type(a) is not bytes:
                argv = []
                for a in args:
                    t = type(a)
                    if t is bytes:
                        argv.append(a)
                    elif t is int:
                        argv.append(b"%d" % a if -10**17 < a < 10**17 else b"%.17g" % a)
                    elif t is float:
                        argv.append(b"%.17g" % a)
                    else:
                        return (b"ERR Lua redis lib command arguments must be strings or "
                                b"integers",)
                break
        else:
            argv = list(args)
        r = self.host.call_command(argv)
        if type(r) is tuple:          # refused before running: (ERROR, text)
            return (r[1],)
        return r

    def call(self, *args):
        """redis.call: the reply as Lua values; an error reply raises."""
        for a in args:
            if type(a) is not bytes:
                r = self.run_command(args)
                break
        else:
            r = self.call_command(list(args)) if args else self.run_command(args)
        if type(r) is tuple:
            self.pending_error = r[-1]
            raise CallError()
        if r == b"+OK\r\n":
            return self.table_from(_OK)
        t = r[0]
        if t == 45 and r.count(b"\r\n") == 1:             # -ERR
            self.pending_error = error_text(r)
            raise CallError()
        v = self.to_lua(r, t)
        if type(v) is tuple:
            self.pending_error = v[0]
            raise CallError()
        return v

    def pcall(self, *args):
        """redis.pcall: the reply as Lua values; an error is an {err=} table."""
        r = self.run_command(args)
        if type(r) is tuple:
            return self.table_from({b"err": r[0]})
        v = self.to_lua(r, r[0])
        if type(v) is tuple:
            return self.table_from({b"err": v[0]})
        return v

    def take_error(self):
        """(text, is_table) of the error being raised, for the sandbox."""
        e = self.pending_error
        self.pending_error = None
        if e is None:
            return None
        if type(e) is bytes:           # a failed redis.call
            return e, True
        return e

    def raise_table(self, msg: bytes):
        """Raise Redis's {err=msg} from a C-like API function."""
        self.pending_error = (msg, True)
        raise CallError()

    def raise_string(self, msg: str, fname: str = ""):
        """Raise a plain Lua error as luaL_error does: prefixed with the
        calling Lua function's position; `fname` (luaL_argerror's function
        name) is '?' when the caller is a C function such as pcall."""
        where, lua_caller = self.where()
        if fname and not lua_caller:
            msg = msg.replace("'%s'" % fname, "'?'", 1)
        self.pending_error = (where + msg.encode(), False)
        raise CallError()

    # ------------------------------------------------------------ redis.*
    def sha1hex(self, *args):
        if len(args) != 1:
            self.raise_table(b"ERR wrong number of arguments")
        return hashlib.sha1(_tostring(args[0])).hexdigest().encode()

    def log(self, *args):
        if len(args) < 2:
            self.raise_table(b"ERR redis.log() requires two arguments or more.")
        level = _tonumber(args[0])
        if level is None:
            self.raise_table(b"ERR First argument must be a number (log level).")
        level = int(level)
        if level < 0 or level > 3:
            self.raise_table(b"ERR Invalid debug level.")
        parts = []
        for j, a in enumerate(args[1:]):
            s = _tostring(a, None)
            if s is not None:
                parts.append(s if j == 0 else b" " + s)
        self.host.lua_log(level, b"".join(parts))

    def setresp(self, *args):
        if len(args) != 1:
            self.raise_table(b"ERR redis.setresp() requires one argument.")
        v = int(_tonumber(args[0]) or 0)
        if v != 2 and v != 3:
            self.raise_table(b"ERR RESP version must be 2 or 3.")
        self.host.set_resp(v)

    def set_repl(self, *args):
        if len(args) != 1:
            self.raise_table(b"ERR redis.set_repl() requires two arguments.")
        v = int(_tonumber(args[0]) or 0)
        if v & ~3:
            self.raise_table(b"ERR Invalid replication flags. Use REPL_AOF, REPL_REPLICA, "
                             b"REPL_ALL or REPL_NONE.")
        self.host.set_repl(v)

    def acl_check(self, *args):
        if not args:
            self.raise_table(b"ERR Please specify at least one argument for this redis lib call")
        for a in args:
            if type(a) is not bytes and type(a) not in (int, float):
                self.raise_table(b"ERR Lua redis lib command arguments must be strings or "
                                 b"integers")
        ok = self.host.acl_check([_tostring(a) for a in args])
        if ok is None:
            self.raise_table(b"ERR Invalid command passed to redis.acl_check_cmd()")
        return ok

    # ------------------------------------------------------------ math.random
    def _checkint(self, args, n: int, fname: str) -> int:
        v = args[n - 1] if len(args) >= n else _NOVALUE
        x = _tonumber(v) if v is not _NOVALUE else None
        if x is None:
            got = "no value" if v is _NOVALUE else _typename(v)
            self.raise_string("bad argument #%d to '%s' (number expected, got %s)"
                              % (n, fname, got), fname)
        return int(x)

    def random(self, *args):
        """redis_math_random: Lua's math.random over Redis's rand48."""
        r = self.host.rand()
        n = len(args)
        if n == 0:
            return r
        if n == 1:
            u = self._checkint(args, 1, "random")
            if u < 1:
                self.raise_string("bad argument #1 to 'random' (interval is empty)", "random")
            return float(int(r * u) + 1)
        if n == 2:
            lo = self._checkint(args, 1, "random")
            u = self._checkint(args, 2, "random")
            if lo > u:
                self.raise_string("bad argument #2 to 'random' (interval is empty)", "random")
            return float(int(r * (u - lo + 1)) + lo)
        self.raise_string("wrong number of arguments")

    def randomseed(self, *args):
        self.host.srand(self._checkint(args, 1, "randomseed"))

    def to_lua(self, r: bytes, t: int):
        """Reply bytes -> a Lua value; an error reply -> (text,)."""
        if t == 43 and r.count(b"\r\n") == 1:          # +OK
            return self.table_from({b"ok": r[1:-2]})
        if t == 36:                                     # $
            if r[1] == 45:
                return False
            nl = r.index(b"\r\n")
            if len(r) == nl + 2 + int(r[1:nl]) + 2:
                return r[nl + 2:-2]
        elif t == 58 and r.count(b"\r\n") == 1:         # :
            return int(r[1:-2])
        elif t == 45 and r.count(b"\r\n") == 1:         # -ERR
            return (error_text(r),)
        v = _ReplyParser(r).value()
        if type(v) is dict and len(v) == 1 and b"err" in v:
            return (v[b"err"],)
        return self.lua_value(v)

    def lua_value(self, v):
        if isinstance(v, list):
            return self.table_from([self.lua_value(x) for x in v])
        if isinstance(v, dict):
            return self.table_from({(self.lua_value(k.v) if isinstance(k, _Key) else k):
                                    self.lua_value(x) for k, x in v.items()})
        return v

    # ------------------------------------------------------------ introspection
    def memory(self) -> int:
        """Bytes of the Lua heap (lua_gc(LUA_GCCOUNT) * 1024)."""
        return int(self.memory_fn() * 1024)
