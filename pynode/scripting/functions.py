"""Redis Functions: libraries of Lua functions, as Redis 7.0's functions.c
and function_lua.c.

A library is its whole code (`#!lua name=<lib>` then Lua).  FUNCTION LOAD
runs the code once in the function engine's loading environment, where the
only global is a `redis` table with register_function, log and the
version/level constants; every function it registers is kept with its
flags and description.  Library names are case-sensitive, function names
are not (Redis's dicts), and a function name is unique across libraries.

Functions are part of the dataset: FUNCTION LOAD/DELETE/FLUSH/RESTORE
propagate like writes, the AOF rewrite starts with one FUNCTION LOAD per
library, RDB snapshots (and full syncs) carry each library as an
RDB_OPCODE_FUNCTION2 record, and FUNCTION DUMP/RESTORE use that record
plus the RDB version and CRC64, so payloads move between pynode and
redis-server 7.0 both ways.
"""

from __future__ import annotations

import re
import struct
import time

from pynode.commands import CommandError
from pynode.scripting.engine import LuaEngine
from pynode.scripting.runner import FLAG_NAMES
from storage import rdb
from storage.sdsargs import split_args

LOAD_TIMEOUT = 0.5                 # LOAD_TIMEOUT_MS
_NAME = re.compile(rb"[A-Za-z0-9_]+\Z")
BAD_NAME = ("ERR Library names can only contain letters, numbers, or underscores(_) and "
            "must be at least one character long")


class Function:
    __slots__ = ("name", "funcname", "fn", "desc", "flags", "flag_names", "library")

    def __init__(self, name: bytes, fn, desc, flag_names: list[bytes], library) -> None:
        self.name = name
        self.funcname = name.decode("utf-8", "replace")
        self.fn = fn
        self.desc = desc
        self.flag_names = flag_names
        self.flags = 0
        for f in flag_names:
            self.flags |= FLAG_NAMES[f]
        self.library = library


class Library:
    __slots__ = ("name", "code", "functions")

    def __init__(self, name: bytes, code: bytes) -> None:
        self.name = name
        self.code = code
        self.functions: dict[bytes, Function] = {}     # lower-case name -> Function


def parse_metadata(code: bytes) -> tuple[bytes, bytes, int]:
    """functionExtractLibMetaData: (engine, library name, end of the shebang)."""
    if not code.startswith(b"#!"):
        raise CommandError("ERR Missing library metadata")
    end = code.find(b"\n")
    if end < 0:
        raise CommandError("ERR Invalid library metadata")
    parts = split_args(code[:end])
    if not parts:
        raise CommandError("ERR Invalid library metadata")
    engine = parts[0][2:]
    name = None
    for p in parts[1:]:
        if p[:5].lower() == b"name=":
            if name is not None:
                raise CommandError("ERR Invalid metadata value, name argument was given "
                                   "multiple times")
            name = p[5:]
            continue
        raise CommandError("ERR Invalid metadata value given: %s" % p.decode("utf-8", "replace"))
    if name is None:
        raise CommandError("ERR Library name was not given")
    return engine, name, end


class Functions:
    """The function libraries of the server (functions_lib_ctx)."""

    def __init__(self, scripting) -> None:
        self.scripting = scripting
        self.libraries: dict[bytes, Library] = {}
        self.functions: dict[bytes, Function] = {}
        self.engine: LuaEngine | None = None
        self.loading: Library | None = None
        self.load_deadline = 0.0

    def lua(self) -> LuaEngine:
        if self.engine is None:
            self.engine = LuaEngine(self.scripting, "function")
        return self.engine

    # ------------------------------------------------------------ loading
    def create(self, code: bytes, replace: bool, timeout: bool = True,
               into: tuple | None = None) -> bytes:
        """functionsCreateWithLibraryCtx: load one library; returns its name.
        `into` is (libraries, functions) of a context being built (RESTORE)."""
        libraries, functions = into if into is not None else (self.libraries, self.functions)
        engine_name, name, end = parse_metadata(code)
        if engine_name.upper() != b"LUA":
            raise CommandError("ERR Engine '%s' not found" % engine_name.decode("utf-8", "replace"))
        if not _NAME.match(name):
            raise CommandError(BAD_NAME)
        old = libraries.get(name)
        if old is not None and not replace:
            raise CommandError("ERR Library '%s' already exists" % name.decode("utf-8", "replace"))
        lib = Library(name, code)
        engine = self.lua()
        self.loading = lib
        self.load_deadline = time.monotonic() + LOAD_TIMEOUT if timeout else 0.0
        try:
            res = engine.load(code[end:], b"@user_function")
        except Exception as e:          # lupa: a failure outside the library's own code
            res = (False, ("ERR Error registering functions: %s" % e).encode())
        finally:
            self.loading = None
            self.load_deadline = 0.0
        if not res[0]:
            msg = res[1].decode("utf-8", "replace").replace("\r", " ").replace("\n", " ")
            raise CommandError(msg)
        if not lib.functions:
            raise CommandError("ERR No functions registered")
        for lname, f in lib.functions.items():
            other = functions.get(lname)
            if other is not None and other.library is not old:
                raise CommandError("ERR Function %s already exists"
                                   % f.name.decode("utf-8", "replace"))
        if old is not None:
            self.unlink(old, libraries, functions)
        libraries[name] = lib
        for lname, f in lib.functions.items():
            functions[lname] = f
        return name

    @staticmethod
    def unlink(lib: Library, libraries: dict, functions: dict) -> None:
        libraries.pop(lib.name, None)
        for lname in lib.functions:
            if functions.get(lname) is not None and functions[lname].library is lib:
                del functions[lname]

    def register_from_lua(self, name: bytes, fn, desc, flags: bytes):
        """redis.register_function (arguments checked in sandbox.lua):
        None, or the error text to raise."""
        lib = self.loading
        if lib is None:
            return b"ERR redis.register_function can only be called on FUNCTION LOAD command"
        if not _NAME.match(name):
            return BAD_NAME.encode()
        lname = name.lower()
        if lname in lib.functions:
            return b"ERR Function already exists in the library"
        flag_names = [f for f in flags.split(b",") if f] if flags else []
        lib.functions[lname] = Function(name, fn, desc, flag_names, lib)
        return None

    def load_timed_out(self) -> bool:
        return bool(self.load_deadline) and time.monotonic() > self.load_deadline

    # ------------------------------------------------------------ admin
    def delete(self, name: bytes) -> None:
        lib = self.libraries.get(name)
        if lib is None:
            raise CommandError("ERR Library not found")
        self.unlink(lib, self.libraries, self.functions)

    def flush(self) -> None:
        self.libraries = {}
        self.functions = {}
        self.engine = None

    def find(self, name: bytes) -> Function | None:
        return self.functions.get(name.lower())

    def count_functions(self) -> int:
        return len(self.functions)

    def code_bytes(self) -> int:
        return sum(len(lib.code) for lib in self.libraries.values())

    def vm_memory(self) -> int:
        return self.engine.memory() if self.engine is not None else 32 * 1024

    def codes(self) -> list[bytes]:
        """Every library's code (RDB snapshots, full sync)."""
        return [lib.code for lib in self.libraries.values()]

    def rewrite_commands(self) -> list:
        """FUNCTION LOAD of every library: the head of an AOF rewrite."""
        return [[b"FUNCTION", b"LOAD", lib.code] for lib in self.libraries.values()]

    # ------------------------------------------------------------ DUMP / RESTORE
    def dump_records(self) -> bytes:
        """Every library as an RDB_OPCODE_FUNCTION2 record (rdbSaveFunctions)."""
        out = []
        for lib in self.libraries.values():
            out.append(bytes((rdb.OP_FUNCTION2,)) + rdb.encode_string(lib.code))
        return b"".join(out)

    def dump(self) -> bytes:
        body = self.dump_records() + struct.pack("<H", rdb.RDB_VERSION)
        return body + struct.pack("<Q", rdb.crc64(0, body))

    def restore(self, payload: bytes, policy: str) -> None:
        """FUNCTION RESTORE: all or nothing."""
        from storage.dump import DumpError, verify
        try:
            verify(payload)
        except DumpError as e:
            raise CommandError(str(e)) from None
        codes = []
        r = rdb.Reader(memoryview(payload)[:len(payload) - 10])
        try:
            while r.pos < len(r.data):
                t = r.byte()
                if t != rdb.OP_FUNCTION2 and t != rdb.OP_FUNCTION:
                    raise CommandError("ERR given type is not a function")
                if t == rdb.OP_FUNCTION:
                    raise CommandError("ERR Pre-GA function format not supported")
                codes.append(r.string())
        except rdb.RDBError:
            raise CommandError("ERR Failed loading library payload") from None
        self.load_all(codes, policy)

    def load_all(self, codes: list[bytes], policy: str) -> None:
        """Load libraries into a new context, then FLUSH (swap), APPEND or
        REPLACE (join) it with the current one; nothing changes on error."""
        libs: dict = {}
        funcs: dict = {}
        for code in codes:
            self.create(code, False, timeout=False, into=(libs, funcs))
        if policy == "flush":
            self.libraries, self.functions = libs, funcs
            return
        replace = policy == "replace"
        new_libs = dict(self.libraries)
        new_funcs = dict(self.functions)
        for name, lib in libs.items():
            old = new_libs.get(name)
            if old is not None:
                if not replace:
                    raise CommandError("ERR Library %s already exists"
                                       % name.decode("utf-8", "replace"))
                self.unlink(old, new_libs, new_funcs)
        for name, lib in libs.items():
            for lname, f in lib.functions.items():
                if lname in new_funcs:
                    raise CommandError("ERR Function %s already exists"
                                       % f.name.decode("utf-8", "replace"))
                new_funcs[lname] = f
            new_libs[name] = lib
        self.libraries, self.functions = new_libs, new_funcs
