-- The sandbox of one Lua state (pynode/scripting/engine.py runs this chunk
-- once, right after the libraries are installed, with the Python callbacks
-- as arguments).  What a script sees is Redis 7.0's environment:
--
--   * the globals are read-only (writing any of them: "Attempt to modify a
--     readonly table") and reading a missing one is an error ("Script
--     attempted to access nonexistent global variable 'x'");
--   * library tables (string, math, table, redis, cjson, ...) are read-only
--     too, recursively, and so are the metatables reachable from a script;
--   * os, io, debug, require, loadfile, dofile, print, getfenv, setfenv,
--     newproxy and module are gone.
--
-- Stock Lua 5.1 has no read-only tables (Redis patches its VM), so each
-- protected table is an empty proxy whose metatable reads through to the
-- real table (__index as a table: the VM follows it without a function
-- call) and refuses writes (__newindex).  The builtins that bypass
-- metamethods (rawset, rawget, next, pairs, ipairs, setmetatable,
-- getmetatable, table.insert ...) are wrapped to see through the proxies and
-- refuse to write into them.  The Python callbacks stay upvalues of this
-- chunk: no script can reach them.

local py = ...
local ENV0 = _G
local debug, rawget, rawset, rawequal, setmetatable, getmetatable =
      debug, rawget, rawset, rawequal, setmetatable, getmetatable
local type, error, tostring, select, next, pairs, ipairs, pcall, xpcall =
      type, error, tostring, select, next, pairs, ipairs, pcall, xpcall
local loadstring, setfenv, unpack, tinsert, tremove, tsort, tconcat =
      loadstring, setfenv, unpack, table.insert, table.remove, table.sort, table.concat
local sformat, floor, huge = string.format, math.floor, math.huge
local co_create, co_wrap = coroutine.create, coroutine.wrap

local real_of = setmetatable({}, {__mode = "k"})   -- proxy -> real table
local view_of = setmetatable({}, {__mode = "k"})   -- real table -> proxy
local meta_of = setmetatable({}, {__mode = "k"})   -- proxy -> what getmetatable shows

local READONLY = "Attempt to modify a readonly table"
local function refuse() error(READONLY, 2) end

local protect
local function protect_value(v)
  if type(v) == "table" then return protect(v) end
  return v
end

-- A read-only view of `real`.  Nested tables are replaced by their views
-- in `real` itself, so a read through the chain never yields a writable
-- table.  `missing` (optional) is called for a key that is not there.
protect = function(real, missing)
  if real_of[real] then return real end
  local p = view_of[real]
  if p then return p end
  p = {}
  view_of[real] = p
  real_of[p] = real
  for k, v in next, real do
    if type(v) == "table" and not real_of[v] then rawset(real, k, protect(v)) end
  end
  if missing then
    setmetatable(real, {__index = missing})
  end
  setmetatable(p, {__index = real, __newindex = refuse, __metatable = false})
  return p
end

local function see(t) return real_of[t] or t end

-- ---------------------------------------------------------------- builtins
local B = {}
B.rawset = function(t, k, v)
  if real_of[t] then error(READONLY, 0) end
  return rawset(t, k, v)
end
B.rawget = function(t, k) return rawget(see(t), k) end
B.rawequal = rawequal
B.next = function(t, k) return next(see(t), k) end
B.pairs = function(t)
  if type(t) ~= "table" then return pairs(t) end
  return B.next, t, nil
end
B.ipairs = function(t)
  if type(t) == "table" and real_of[t] then return ipairs(real_of[t]) end
  return ipairs(t)
end
B.setmetatable = function(t, mt)
  if real_of[t] then error(READONLY, 0) end
  return setmetatable(t, mt)
end
-- cjson.null is a full userdata here (Redis's is a light userdata): no metatable shows
local cjson_null = type(ENV0.cjson) == "table" and ENV0.cjson.null or nil
B.getmetatable = function(t)
  if cjson_null ~= nil and rawequal(t, cjson_null) then return nil end
  local shown = meta_of[t]
  if shown ~= nil then return shown end
  if real_of[t] then return nil end
  local mt = getmetatable(t)
  if type(mt) == "table" and view_of[mt] then return view_of[mt] end
  return mt
end

local function guard_table_fn(f)
  return function(t, ...)
    if real_of[t] then error(READONLY, 0) end
    return f(t, ...)
  end
end
local table_fns = {insert = guard_table_fn(tinsert), remove = guard_table_fn(tremove),
                   sort = guard_table_fn(tsort),
                   concat = function(t, ...) return tconcat(see(t), ...) end}

-- the count hook: slow-script detection, SCRIPT KILL / FUNCTION KILL
local hook
local getinfo = debug.getinfo
local killed_mode = false
hook = function()
  local killed = py.hook()
  if killed then
    -- only the script's own code fails: the sandbox's frames (the error
    -- handler, the runner) must finish
    local i = getinfo(2, "S")
    if i and i.source:sub(1, 1) == "=" then return end
    -- from now on every line fails, so a pcall cannot swallow the kill
    -- (until the run ends: outcome() puts the count hook back)
    killed_mode = true
    debug.sethook(hook, "l")
    error({err = killed}, 0)
  end
end
local HOOK_COUNT = 100000
local function set_hook(co)
  if co then debug.sethook(co, hook, "", HOOK_COUNT) else debug.sethook(hook, "", HOOK_COUNT) end
end

-- ---------------------------------------------------------------- redis.*
-- redis.call and redis.pcall are the Python callables themselves: called
-- from Lua they are C functions, so `return redis.call(...)` keeps the
-- script's frame (a Lua wrapper would be tail-called away) and the error
-- handler finds the script's line, as in Redis.  A failed redis.call raises
-- a Python exception; its Redis error text waits in py.take_error() and the
-- error handler and pcall turn it into Redis's {err=...} table / message.
local call, rpcall, take_error = py.call, py.pcall, py.take_error
local function raise_err(msg) error({err = msg}, 0) end

-- a userdata error is a failed redis.call: its {err=...} table
local function err_table(e)
  if type(e) == "userdata" then
    local m, is_table = take_error()
    if m then
      if is_table then return {err = m} end
      return m
    end
  end
  return e
end

-- luaPushErrorBuff: "-CODE msg" or "msg" -> "CODE msg"
local function error_table(s)
  local code, msg = "ERR", s
  if s:sub(1, 1) == "-" then
    local sp = s:find(" ", 1, true)
    if sp then code, msg = s:sub(2, sp - 1), s:sub(sp + 1) else msg = s:sub(2) end
  end
  msg = msg:gsub("^[\r\n]+", ""):gsub("[\r\n]+$", "")
  return {err = code .. " " .. msg}
end

local function single(field)
  return function(...)
    local n = select("#", ...)
    local v = ...
    if n ~= 1 or type(v) ~= "string" then
      return {err = "ERR wrong number or type of arguments"}
    end
    return {[field] = v}
  end
end

local R = {}
R.call = call
R.pcall = rpcall
R.sha1hex = py.sha1hex
R.error_reply = function(...)
  local n = select("#", ...)
  local v = ...
  if n ~= 1 or type(v) ~= "string" then
    return {err = "ERR wrong number or type of arguments"}
  end
  if v:sub(1, 1) ~= "-" then v = "-" .. v end
  return error_table(v)
end
R.status_reply = single("ok")
R.log = py.log
R.LOG_DEBUG, R.LOG_VERBOSE, R.LOG_NOTICE, R.LOG_WARNING = 0, 1, 2, 3
R.setresp = py.setresp
R.set_repl = py.setrepl
R.REPL_NONE, R.REPL_AOF, R.REPL_SLAVE, R.REPL_REPLICA, R.REPL_ALL = 0, 1, 2, 2, 3
R.replicate_commands = function() return true end
R.breakpoint = function() return false end
R.debug = function() end
R.acl_check_cmd = py.acl_check
R.REDIS_VERSION = py.version
R.REDIS_VERSION_NUM = py.version_num

-- math.random / math.randomseed: Redis's rand48 (engine.py), shared by both states
local random, randomseed = py.random, py.randomseed

-- ---------------------------------------------------------------- replies
-- Lua value -> RESP bytes for the caller (luaReplyToRedisReply); `cresp` is
-- the caller's protocol, `sresp` the script's (redis.setresp).
local to_resp
local function dbl(d, cresp)
  local s
  if d == huge then s = "inf"
  elseif d == -huge then s = "-inf"
  else s = sformat("%.17g", d) end
  if cresp == 3 then return "," .. s .. "\r\n" end
  return "$" .. #s .. "\r\n" .. s .. "\r\n"
end
local function clean(s) return (s:gsub("[\r\n]", " ")) end
to_resp = function(v, cresp, sresp, out, depth)
  local t = type(v)
  if t == "string" then
    out[#out + 1] = "$" .. #v .. "\r\n" .. v .. "\r\n"
  elseif t == "number" then
    out[#out + 1] = sformat(":%d\r\n", v)
  elseif t == "boolean" then
    if sresp == 2 then
      if v then out[#out + 1] = ":1\r\n"
      else out[#out + 1] = cresp == 3 and "_\r\n" or "$-1\r\n" end
    else
      if cresp == 3 then out[#out + 1] = v and "#t\r\n" or "#f\r\n"
      else out[#out + 1] = v and ":1\r\n" or ":0\r\n" end
    end
  elseif t == "table" then
    if depth > 1000 then error("reached lua stack limit", 0) end
    v = see(v)
    local e = rawget(v, "err")
    if type(e) == "string" then
      out[#out + 1] = "-" .. clean(e) .. "\r\n"
      return
    end
    local ok = rawget(v, "ok")
    if type(ok) == "string" then
      out[#out + 1] = "+" .. clean(ok) .. "\r\n"
      return
    end
    local d = rawget(v, "double")
    if type(d) == "number" then out[#out + 1] = dbl(d, cresp) return end
    local big = rawget(v, "big_number")
    if type(big) == "string" then
      big = clean(big)
      if cresp == 3 then out[#out + 1] = "(" .. big .. "\r\n"
      else out[#out + 1] = "$" .. #big .. "\r\n" .. big .. "\r\n" end
      return
    end
    local vs = rawget(v, "verbatim_string")
    if type(vs) == "table" then
      vs = see(vs)
      local fmt, str = rawget(vs, "format"), rawget(vs, "string")
      if type(fmt) == "string" and type(str) == "string" then
        if cresp == 3 then
          out[#out + 1] = "=" .. (#str + 4) .. "\r\n" .. fmt:sub(1, 3) .. ":" .. str .. "\r\n"
        else
          out[#out + 1] = "$" .. #str .. "\r\n" .. str .. "\r\n"
        end
        return
      end
    end
    local m = rawget(v, "map")
    if type(m) == "table" then
      m = see(m)
      local at = #out + 1
      out[at] = ""
      local n = 0
      for k, val in next, m do
        to_resp(k, cresp, sresp, out, depth + 1)
        to_resp(val, cresp, sresp, out, depth + 1)
        n = n + 1
      end
      out[at] = cresp == 3 and ("%" .. n .. "\r\n") or ("*" .. (2 * n) .. "\r\n")
      return
    end
    local s = rawget(v, "set")
    if type(s) == "table" then
      s = see(s)
      local at = #out + 1
      out[at] = ""
      local n = 0
      for k in next, s do
        to_resp(k, cresp, sresp, out, depth + 1)
        n = n + 1
      end
      out[at] = cresp == 3 and ("~" .. n .. "\r\n") or ("*" .. n .. "\r\n")
      return
    end
    local at = #out + 1
    out[at] = ""
    local j = 1
    while true do
      local item = rawget(v, j)
      if item == nil then break end
      to_resp(item, cresp, sresp, out, depth + 1)
      j = j + 1
    end
    out[at] = "*" .. (j - 1) .. "\r\n"
  else
    out[#out + 1] = cresp == 3 and "_\r\n" or "$-1\r\n"
  end
end

local function reply_of(v, cresp, sresp)
  local out = {}
  to_resp(v, cresp, sresp, out, 0)
  return tconcat(out)
end

-- ---------------------------------------------------------------- errors
-- __redis__err__handler: an error becomes {err=..., source=..., line=...};
-- frames of this chunk (and C frames) are skipped to find the script's line
local INTERNAL = "=pynode"
local function err_handler(err)
  local level, info = 2, nil
  while level < 50 do
    info = debug.getinfo(level, "Sl")
    if info == nil then break end
    if info.what ~= "C" and info.source ~= INTERNAL and info.source:sub(1, 1) ~= "=" then break end
    level = level + 1
  end
  err = err_table(err)
  if type(err) ~= "table" then
    err = {err = "ERR " .. tostring(err)}
  end
  if info then
    err.source = info.source
    err.line = info.currentline
  end
  return err
end

-- error object of a failed run -> (message, source, line)
local function error_parts(e)
  if type(e) ~= "table" then
    return nil, type(e) == "string" and e or nil
  end
  local msg = e.err
  if type(msg) ~= "string" and type(msg) ~= "number" then msg = nil end
  local src, line = e.source, e.line
  return msg and tostring(msg), nil, type(src) == "string" and src or nil,
         line ~= nil and tostring(line) or nil
end

-- ---------------------------------------------------------------- environment
-- compile text only: a precompiled (binary) chunk is refused the way
-- Redis's Lua refuses it, as a syntax error at its first byte
local function text_load(s, name)
  if s:byte(1) == 27 then return loadstring(" " .. s, name) end
  return loadstring(s, name)
end

local function missing_global(_, k)
  error(sformat("Script attempted to access nonexistent global variable '%s'", tostring(k)), 2)
end

-- redis.pcall-compatible pcall (Redis 7: an error table becomes its message)
local function fix_pcall(ok, ...)
  if ok then return ok, ... end
  local e = err_table((...))
  if type(e) == "table" then
    local m = e.err
    if type(m) == "string" or type(m) == "number" then return false, m end
  end
  return false, e
end
local function spcall(...) return fix_pcall(pcall(...)) end

local M = {}
for k, v in next, ENV0.math do M[k] = v end
M.random, M.randomseed = random, randomseed
local T = {}
for k, v in next, ENV0.table do T[k] = v end
for k, v in next, table_fns do T[k] = v end
local CO = {}
for k, v in next, ENV0.coroutine do CO[k] = v end
-- coroutines get the count hook too, so SCRIPT KILL reaches them
CO.create = function(f) local co = co_create(f) set_hook(co) return co end
CO.wrap = function(f)
  local co = co_create(f)
  set_hook(co)
  return function(...)
    local r = {coroutine.resume(co, ...)}
    if not r[1] then error(r[2], 2) end
    return unpack(r, 2, table.maxn(r))
  end
end
local S = {}
for k, v in next, ENV0.string do S[k] = v end

local lib_names = {"bit", "cjson", "cmsgpack", "struct"}

-- the globals every script sees (EVAL adds KEYS, ARGV, the error handler)
local function base_globals(redis_api)
  local G = {}
  G.assert, G.collectgarbage, G.error, G.gcinfo = assert, collectgarbage, error, gcinfo
  G.getmetatable, G.setmetatable = B.getmetatable, B.setmetatable
  G.ipairs, G.pairs, G.next = B.ipairs, B.pairs, B.next
  G.rawequal, G.rawget, G.rawset = B.rawequal, B.rawget, B.rawset
  G.select, G.tonumber, G.tostring, G.type, G.unpack = select, tonumber, tostring, type, unpack
  G.pcall = spcall
  G.xpcall = function(f, h)
    return xpcall(f, function(e) return h(err_table(e)) end)
  end
  -- redis.call / redis.pcall are Python callables (userdata): a script
  -- asking their type sees "function", as in Redis
  G.type = function(v)
    if v == call or v == rpcall then return "function" end
    return type(v)
  end
  G._VERSION = _VERSION
  G.string, G.math, G.table, G.coroutine = S, M, T, CO
  for _, n in ipairs(lib_names) do
    if ENV0[n] ~= nil then G[n] = ENV0[n] end
  end
  G.redis = redis_api
  return G
end

-- make the environment: the user-visible globals table is an empty proxy
local function environment(G)
  local view = protect(G, missing_global)
  rawset(G, "_G", view)
  meta_of[view] = protect({__index = missing_global})
  G.loadstring = function(s, name)
    if type(s) ~= "string" then s = tostring(s) end
    local f, e = text_load(s, name or s)
    if f then setfenv(f, view) end
    return f, e
  end
  -- Redis 7.0's load() gives nothing back (no chunks from reader functions)
  G.load = function() return nil end
  rawset(G, "loadstring", G.loadstring)
  rawset(G, "load", G.load)
  return view
end

-- strings: the string metatable's __index is the protected string table
local smt = getmetatable("")
local string_view = protect(S)
smt.__index = string_view
local smt_view = protect(smt)

B.getmetatable_string = smt_view
local plain_getmetatable = B.getmetatable
B.getmetatable = function(t)
  if type(t) == "string" then return smt_view end
  return plain_getmetatable(t)
end

local api = {}
-- the count hook stays on for the life of the state (it costs one Python
-- call per 100k instructions); after a kill it fails every line until the
-- run ends
set_hook()

-- what a run gives back to Python: true, reply bytes | false, message (or
-- nil), plain message, source, line
local function outcome(cresp, ok, r)
  if killed_mode then
    killed_mode = false
    set_hook()
  end
  if not ok then
    local msg, plain, src, line = error_parts(r)
    return false, msg, plain, src, line
  end
  local t = type(r)
  if t == "string" then return true, "$" .. #r .. "\r\n" .. r .. "\r\n" end
  if t == "number" then return true, sformat(":%d\r\n", r) end
  if t == "table" and rawget(r, "err") == nil then     -- a status reply
    local s = rawget(r, "ok")
    if type(s) == "string" then return true, "+" .. clean(s) .. "\r\n" end
  end
  local okr, bytes = pcall(reply_of, r, cresp, py.getresp())
  if not okr then return false, nil, tostring(bytes) end
  return true, bytes
end

-- KEYS and ARGV from the call's arguments (built here: cheaper than two
-- tables made from Python)
local function split_args(nkeys, ...)
  local all = {...}
  if nkeys == 0 then return {}, all end
  local keys, argv = {}, {}
  for i = 1, nkeys do keys[i] = all[i] end
  for i = nkeys + 1, #all do argv[i - nkeys] = all[i] end
  return keys, argv
end

if py.kind == "eval" then
  local redis_api = {}
  for k, v in next, R do redis_api[k] = v end
  local G = base_globals(redis_api)
  G.getmetatable = B.getmetatable
  G.__redis__err__handler = err_handler
  local view = environment(G)
  local KEYS_ARGV = G

  -- compile a script body: a function of no arguments, or nil, message
  function api.compile(body, name)
    local f, e = text_load(body, name or "@user_script")
    if not f then return nil, e end
    setfenv(f, view)
    return f, nil
  end

  -- run one script: returns true, reply bytes | false, msg, source, line
  function api.run(f, cresp, nkeys, ...)
    local keys, argv = split_args(nkeys, ...)
    rawset(KEYS_ARGV, "KEYS", keys)
    rawset(KEYS_ARGV, "ARGV", argv)
    return outcome(cresp, xpcall(f, err_handler))
  end
else
  -- functions: one globals proxy whose reads go to the runtime globals, or
  -- (while a library loads) to the loading API only
  local redis_api = {}
  for k, v in next, R do redis_api[k] = v end
  redis_api.replicate_commands, redis_api.breakpoint, redis_api.debug = nil, nil, nil
  local G = base_globals(redis_api)
  G.getmetatable = B.getmetatable
  local view = environment(G)

  local FLAGS = {["no-writes"] = true, ["allow-oom"] = true, ["allow-stale"] = true,
                 ["no-cluster"] = true, ["allow-cross-slot-keys"] = true}
  local function strarg(v)
    if type(v) == "string" or type(v) == "number" then return tostring(v) end
    return nil
  end
  -- redis.register_function(name, callback) or {function_name=, callback=,
  -- flags=, description=}, with function_lua.c's checks and texts
  local function register_function(...)
    local n = select("#", ...)
    if n < 1 or n > 2 then raise_err("ERR wrong number of arguments to redis.register_function") end
    local name, cb, desc, flags
    if n == 1 then
      local t = ...
      if type(t) ~= "table" then
        raise_err("ERR calling redis.register_function with a single argument is only " ..
                  "applicable to Lua table (representing named arguments).")
      end
      for k, v in next, see(t) do
        if strarg(k) == nil then
          raise_err("ERR named argument key given to redis.register_function is not a string")
        end
        local key = tostring(k):lower()
        if key == "function_name" then
          name = strarg(v)
          if not name then
            raise_err("ERR function_name argument given to redis.register_function must be a string")
          end
        elseif key == "description" then
          desc = strarg(v)
          if not desc then
            raise_err("ERR description argument given to redis.register_function must be a string")
          end
        elseif key == "callback" then
          if type(v) ~= "function" then
            raise_err("ERR callback argument given to redis.register_function must be a function")
          end
          cb = v
        elseif key == "flags" then
          if type(v) ~= "table" then
            raise_err("ERR flags argument to redis.register_function must be a table " ..
                      "representing function flags")
          end
          flags = {}
          local j = 1
          while true do
            local f = v[j]
            if f == nil then break end
            f = strarg(f)
            if not f or not FLAGS[f] then raise_err("ERR unknown flag given") end
            flags[#flags + 1] = f
            j = j + 1
          end
        else
          raise_err("ERR unknown argument given to redis.register_function")
        end
      end
      if not name then raise_err("ERR redis.register_function must get a function name argument") end
      if not cb then raise_err("ERR redis.register_function must get a callback argument") end
    else
      local a, b = ...
      name = strarg(a)
      if not name then raise_err("ERR first argument to redis.register_function must be a string") end
      if type(b) ~= "function" then
        raise_err("ERR second argument to redis.register_function must be a function")
      end
      cb = b
    end
    local err = py.register(name, cb, desc, flags and tconcat(flags, ",") or "")
    if err then raise_err(err) end
  end
  local load_redis = {
    register_function = register_function,
    log = R.log,
    LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3,
    REDIS_VERSION = R.REDIS_VERSION, REDIS_VERSION_NUM = R.REDIS_VERSION_NUM,
  }
  local LOAD = {redis = protect(load_redis, missing_global)}
  local load_view = protect(LOAD, missing_global)

  -- run a library's code in the loading environment; true | false, msg
  function api.load(body, name)
    local f, e = text_load(body, name or "@user_function")
    if not f then return false, "ERR Error compiling function: " .. tostring(e) end
    -- the library and every closure it creates share one environment
    -- table; its reads go to the loading API now and to the runtime
    -- globals once the library is loaded
    local env = {}
    local env_mt = {__index = LOAD, __newindex = refuse, __metatable = false}
    setmetatable(env, env_mt)
    setfenv(f, env)
    local ok, r = xpcall(f, err_handler)
    if killed_mode then
      killed_mode = false
      set_hook()
    end
    env_mt.__index = G
    real_of[env] = G
    meta_of[env] = meta_of[view]
    if not ok then
      local msg, plain = error_parts(r)
      return false, "ERR Error registering functions: " .. (msg or plain or "execution failure")
    end
    return true, nil
  end

  function api.run(f, cresp, nkeys, ...)
    local keys, argv = split_args(nkeys, ...)
    return outcome(cresp, xpcall(function() return f(keys, argv) end, err_handler))
  end
end

api.reply_of = reply_of
-- luaL_where(L, 1) seen from a Python callback: the position of the Lua
-- function that called it ("" when that is a C function)
api.where = function()
  local i = debug.getinfo(3, "Sl")
  if i and i.currentline and i.currentline > 0 then
    return i.short_src .. ":" .. i.currentline .. ": ", true
  end
  return "", i ~= nil and i.what ~= "C"
end
api.memory = function() return collectgarbage("count") end
api.gc_step = function(n) collectgarbage("step", n) end
api.full_gc = function() collectgarbage("collect") end
api.is_function = function(f) return type(f) == "function" end

-- nothing of the full environment stays reachable by name
for _, n in ipairs({"os", "io", "debug", "require", "loadfile", "dofile", "print",
                    "getfenv", "setfenv", "newproxy", "module", "package"}) do
  ENV0[n] = nil
end
return api
