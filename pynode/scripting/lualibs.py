"""The Lua libraries Redis 7.0 gives scripts: cjson, cmsgpack, bit, struct.

redis-server 7.0.15 builds lua-cjson 2.1.0, lua-cmsgpack 0.4.0, LuaBitOp
1.0.2 and Roberto Ierusalimschy's struct library into its Lua 5.1.  Here
they are written in Lua (lualibs.lua, beside this file) for a lupa runtime,
with the same results, error texts and limits; tests/test_lua_libs.py checks
them against a real redis-server.

    from lupa import lua51
    lua = lua51.LuaRuntime(encoding=None, unpack_returned_tuples=True,
                           register_eval=False, register_builtins=False)
    install(lua)          # globals cjson, cmsgpack, bit, struct

install() must run while the runtime still has its standard library
(loadstring, newproxy, ...): the libraries keep what they use as upvalues,
so the sandbox may remove globals afterwards.

Errors are raised as Lua strings, from the library function's own frame
with level 2 (so "user_script:1: " is prepended when a script calls the
function, nothing when pcall calls it) -- what luaL_error gives in a C
function.  The chunk is named CHUNK_NAME ("=lualibs"): an error handler
looking for the script's line skips frames whose source starts with "=".
"""

from __future__ import annotations

import os

CHUNK_NAME = b"=lualibs"
LIBRARIES = (b"cjson", b"cmsgpack", b"bit", b"struct")

_SOURCE: bytes | None = None

# loads the chunk under its name and sets the globals; returns the libraries
_BOOTSTRAP = b"""
local src, name, set_globals = ...
local chunk, err = loadstring(src, name)
if not chunk then error(err, 0) end
local libs = chunk()
if set_globals then
  local G = getfenv and getfenv(0) or _G
  for _, n in ipairs({"cjson", "cmsgpack", "bit", "struct"}) do rawset(G, n, libs[n]) end
end
return libs
"""


def source() -> bytes:
    """The Lua source of the libraries."""
    global _SOURCE
    if _SOURCE is None:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "lualibs.lua"),
                  "rb") as fh:
            _SOURCE = fh.read()
    return _SOURCE


def install(lua, set_globals: bool = True):
    """Define cjson, cmsgpack, bit and struct in `lua` (a lupa.lua51.LuaRuntime).

    Returns the Lua table {cjson=, cmsgpack=, bit=, struct=, null=} (null is
    the value of cjson.null).  With set_globals=False only returns it."""
    return lua.execute(_BOOTSTRAP, source(), CHUNK_NAME, set_globals)
