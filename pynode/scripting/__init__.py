"""Lua scripting and Redis Functions (Redis 7.0's eval.c, function_lua.c,
script.c and script_lua.c).

  engine.py     one Lua 5.1 state (lupa): the Python side of the redis.*
                API, reply conversion, rand48
  sandbox.lua   what a script sees: read-only globals, redis.*, the error
                handler, Lua -> RESP conversion
  lualibs.py    cjson, cmsgpack, bit, struct as Redis ships them
  runner.py     Scripting (srv.scripting): running a script, redis.call's
                checks, propagation, busy scripts and SCRIPT/FUNCTION KILL
  eval.py       EVAL's script cache and shebang flags
  functions.py  function libraries: FUNCTION LOAD, register_function,
                DUMP/RESTORE
The commands are in pynode/commands/scripting.py.
"""
