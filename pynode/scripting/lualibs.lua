-- The Lua libraries Redis 7.0 embeds for scripts -- cjson (lua-cjson 2.1.0),
-- cmsgpack (lua-cmsgpack 0.4.0), bit (LuaBitOp 1.0.2) and struct (Roberto
-- Ierusalimschy's struct, with Redis's fixes) -- written in Lua 5.1 for a
-- lupa runtime, to give the same results, the same error texts and the same
-- limits as the C code built into redis-server 7.0.15 on x86-64.
--
-- pynode/scripting/lualibs.py loads this chunk (named "=lualibs") once per
-- Lua state, before the sandbox removes anything; it returns the four
-- library tables.  Everything it uses is captured here as an upvalue, so
-- later changes to the globals do not reach it.
--
-- Errors.  The C functions raise with luaL_error/luaL_argerror, so a
-- message carries the position of the Lua code that called the library
-- function ("user_script:1: ...") or nothing when a C function (pcall)
-- called it.  Every library function below is a Lua function that reports
-- its errors from its own frame with error(msg, 2): the same text, with the
-- position of its caller.  Inside, the implementations raise the bare text
-- with error(msg, 0) and the wrappers catch it with pcall.  Two things a Lua
-- function cannot do as a C function does: keep its caller's frame when it
-- is tail-called (`return cjson.decode(s)` loses the "user_script:1: "
-- prefix), and see the name its caller used ("bad argument #1 to 'f'" for
-- `local f = bit.band`): it names itself, or '?' when a C function called it.
--
-- Limits.  The C code fails on the Lua stack limit (LUAI_MAXCSTACK, 8000
-- slots per C call) in a few places: cjson's nesting, cmsgpack's and
-- struct's number of results.  The slots those C functions would hold are
-- counted here so that the same inputs fail with the same messages.

local type, tostring, tonumber, select, next, rawget, rawequal, pcall, error =
      type, tostring, tonumber, select, next, rawget, rawequal, pcall, error
local setmetatable, unpack, newproxy = setmetatable, unpack, newproxy
local sbyte, schar, ssub, sfind, sformat, sgsub, srep, slower, sreverse =
      string.byte, string.char, string.sub, string.find, string.format,
      string.gsub, string.rep, string.lower, string.reverse
local floor, frexp, ldexp, huge = math.floor, math.frexp, math.ldexp, math.huge
local tconcat = table.concat

local MAXCSTACK = 8000            -- LUAI_MAXCSTACK
local INT_MAX = 2147483647
local TWO32 = 4294967296
local TWO31 = 2147483648
local TWO63 = 9223372036854775808
local TWO64 = 18446744073709551616

-- NaN of either sign (0/0 is not folded by the compiler: computed here)
local NAN0 = 0 / 0
local NEG_NAN, POS_NAN
if sbyte(tostring(NAN0), 1) == 45 then NEG_NAN, POS_NAN = NAN0, -NAN0
else POS_NAN, NEG_NAN = NAN0, -NAN0 end

------------------------------------------------------------------ helpers

local function argmsg(fname, i, extra)
  return sformat("bad argument #%d to '%s' (%s)", i, fname, extra)
end

-- luaL_typerror's text for argument i of n
local function typemsg(fname, i, n, v, expected)
  return argmsg(fname, i, expected .. " expected, got " .. (i > n and "no value" or type(v)))
end

-- lua_tonumber: a number, a string that converts, else nil
local function tonum(v)
  local t = type(v)
  if t == "number" then return v end
  if t == "string" then return tonumber(v) end
  return nil
end

-- lua_tolstring: a string, a number formatted as Lua does, else nil
local function tostr(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return tostring(v) end
  return nil
end

-- (lua_Integer)n on x86-64: truncation; out of range and NaN give INT64_MIN
local function to_integer(n)
  if n >= -TWO63 and n < TWO63 then
    if n >= 0 then return floor(n) end
    return -floor(-n)
  end
  return -TWO63
end

-- (int)i of an integer-valued number: its low 32 bits, signed
local function wrap32(i)
  i = i % TWO32
  if i >= TWO31 then i = i - TWO32 end
  return i
end

-- luaL_checkinteger / luaL_checknumber / luaL_checklstring on argument i of n
local function check_integer(fname, i, n, v)
  local x = tonum(v)
  if x == nil then error(typemsg(fname, i, n, v, "number"), 0) end
  return to_integer(x)
end
local function check_number(fname, i, n, v)
  local x = tonum(v)
  if x == nil then error(typemsg(fname, i, n, v, "number"), 0) end
  return x
end
local function check_string(fname, i, n, v)
  local s = tostr(v)
  if s == nil then error(typemsg(fname, i, n, v, "string"), 0) end
  return s
end

-- the part of s a C function sees through a char* (up to the first NUL)
local function cstring(s)
  local z = sfind(s, "\0", 1, true)
  if z then return ssub(s, 1, z - 1) end
  return s
end

-- unpack(t, 1, n) for up to 7999 values (unpack itself stops at 7997)
local function unpack_n(t, n)
  if n <= 7990 then return unpack(t, 1, n) end
  return t[1], t[2], t[3], unpack(t, 4, n)
end

-- luaL_argerror names the function as its caller's call instruction does:
-- "decode" for cjson.decode(...), "?" when a C function (pcall) called it.
-- A Lua function cannot see the calling instruction; it tells a C caller
-- by the position luaL_where gives for the caller's level (none) and for
-- the level below (a script's line: pcall(cjson.decode, ...) in a script).
-- level: the caller's level as error() counts it from here (1 = here).
local function caller_is_c(level)
  -- inside error, called by pcall: that level is one further
  local _, w = pcall(error, "", level + 1)
  if w ~= "" then return false end
  local _, w2 = pcall(error, "", level + 2)
  return w2 ~= ""
end

-- msg as raised at `level` by the function calling fix_argerror
local function fix_argerror(msg, level)
  if sfind(msg, "^bad argument #") and caller_is_c(level + 2) then
    msg = sgsub(msg, "^(bad argument #%-?%d+ to )'[^']*'", "%1'?'", 1)
  end
  return msg
end

-- library functions: impl raises bare messages (error(msg, 0)); the
-- function a script calls re-raises them from its own frame with the
-- caller's position, as luaL_error does for a C function
local function wrap1(impl)
  return function(...)
    local ok, r = pcall(impl, ...)
    if ok then return r end
    if type(r) == "string" then r = fix_argerror(r, 2) end
    error(r, 2)
  end
end
-- impl returns (count, table of results)
local function wrapn(impl)
  return function(...)
    local ok, n, t = pcall(impl, ...)
    if ok then return unpack_n(t, n) end
    if type(n) == "string" then n = fix_argerror(n, 2) end
    error(n, 2)
  end
end

------------------------------------------------------- IEEE 754 bit patterns

local function round_even(q)           -- q >= 0
  local f = floor(q)
  local d = q - f
  if d > 0.5 or (d == 0.5 and f % 2 == 1) then return f + 1 end
  return f
end

local function is_negative(x)          -- the sign bit, also of -0 and NaN
  if x ~= x then return sbyte(tostring(x), 1) == 45 end
  return x < 0 or (x == 0 and 1 / x < 0)
end

-- (float)x: its value as a double and its 32 bits
local function to_float32(x)
  local sign = is_negative(x) and TWO31 or 0
  if x ~= x then return x, sign + 0x7FC00000 end
  local a = x < 0 and -x or x
  if a == huge then return x, sign + 0x7F800000 end
  if a == 0 then return x, sign end
  local m, e = frexp(a)                -- a = m * 2^e, 0.5 <= m < 1
  local v, bits
  if e - 1 >= -126 then
    local r = round_even(m * 16777216)
    if r == 16777216 then r = 8388608; e = e + 1 end
    if e - 1 > 127 then
      v, bits = huge, 0x7F800000
    else
      v, bits = ldexp(r, e - 24), (e + 126) * 8388608 + (r - 8388608)
    end
  else
    local r = round_even(ldexp(a, 149))
    v, bits = ldexp(r, -149), r
  end
  if sign ~= 0 then v = -v end
  return v, sign + bits
end

-- the 64 bits of a double as (high 32, low 32)
local function double_bits(x)
  local sign = is_negative(x) and TWO31 or 0
  if x ~= x then return sign + 0x7FF80000, 0 end
  local a = x < 0 and -x or x
  if a == huge then return sign + 0x7FF00000, 0 end
  if a == 0 then return sign, 0 end
  local m, e = frexp(a)
  local mant, hi
  if e - 1 >= -1022 then
    mant = (m * 2 - 1) * 4503599627370496
    hi = sign + (e + 1022) * 1048576
  else
    mant = ldexp(a, 1074)
    hi = sign
  end
  local mh = floor(mant / TWO32)
  return hi + mh, mant - mh * TWO32
end

local function float_from_bits(b)
  local neg = b >= TWO31
  if neg then b = b - TWO31 end
  local e = floor(b / 8388608)
  local m = b - e * 8388608
  local v
  if e == 255 then
    if m == 0 then v = huge else return neg and NEG_NAN or POS_NAN end
  elseif e == 0 then
    v = ldexp(m, -149)
  else
    v = ldexp(m + 8388608, e - 150)
  end
  if neg then return -v end
  return v
end

local function double_from_bits(hi, lo)
  local neg = hi >= TWO31
  if neg then hi = hi - TWO31 end
  local e = floor(hi / 1048576)
  local mh = hi - e * 1048576
  local v
  if e == 2047 then
    if mh == 0 and lo == 0 then v = huge else return neg and NEG_NAN or POS_NAN end
  elseif e == 0 then
    v = ldexp(mh * TWO32 + lo, -1074)
  else
    v = ldexp(4503599627370496 + mh * TWO32 + lo, e - 1075)
  end
  if neg then return -v end
  return v
end

-- big-endian bytes of a 32-bit unsigned value
local function be32(u)
  local b3 = u % 256; u = (u - b3) / 256
  local b2 = u % 256; u = (u - b2) / 256
  local b1 = u % 256
  return schar((u - b1) / 256, b1, b2, b3)
end

local function be16(u)
  local lo = u % 256
  return schar((u - lo) / 256, lo)
end

-- 32-bit unsigned value of 4 big-endian bytes at i
local function get_be32(s, i)
  local a, b, c, d = sbyte(s, i, i + 3)
  return ((a * 256 + b) * 256 + c) * 256 + d
end

------------------------------------------------------------------- cjson

-- cjson.null is a NULL light userdata in Redis; a userdata that prints the
-- same stands in for it (shared by every cjson instance, as NULL is)
local NULL
if newproxy then
  NULL = newproxy(true)
  getmetatable(NULL).__tostring = function() return "userdata: (nil)" end
else
  NULL = setmetatable({}, {__tostring = function() return "userdata: (nil)" end})
end

local ESCAPES = {}
for i = 0, 31 do ESCAPES[schar(i)] = sformat("\\u%04x", i) end
ESCAPES["\b"], ESCAPES["\t"], ESCAPES["\n"], ESCAPES["\f"], ESCAPES["\r"] =
  "\\b", "\\t", "\\n", "\\f", "\\r"
ESCAPES['"'], ESCAPES["\\"], ESCAPES["/"], ESCAPES["\127"] = '\\"', "\\\\", "\\/", "\\u007f"
local ESC_PAT = '[%z\1-\31"\\/\127]'

local function json_string(s)
  if sfind(s, ESC_PAT) then s = sgsub(s, ESC_PAT, ESCAPES) end
  return '"' .. s .. '"'
end

-- encoder state (an encode never runs inside another: no callbacks)
local CFG, BUF, BN

local function json_number(n)
  if n ~= n or n == huge or n == -huge then
    local mode = CFG.encode_invalid_numbers
    if mode == 0 then
      error("Cannot serialise number: must not be NaN or Inf", 0)
    elseif mode == 1 then
      if n ~= n then return "nan" end
    else
      return "null"
    end
  end
  return sformat(CFG.number_fmt, n)
end

-- lua_array_length: the array size, or -1 for an object
local function array_length(t)
  local max, items = 0, 0
  for k in next, t do
    if type(k) == "number" and k >= 1 and (k % 1 == 0 or k == huge) then
      if k > max then
        if k < TWO31 then max = k else max = -TWO31 end     -- (int)k
      end
      items = items + 1
    else
      return -1
    end
  end
  local ratio = CFG.encode_sparse_ratio
  if ratio > 0 and max > wrap32(items * ratio) and max > CFG.encode_sparse_safe then
    if not CFG.encode_sparse_convert then
      error("Cannot serialise table: excessively sparse array", 0)
    end
    return -1
  end
  return max
end

-- top: the Lua stack slots json_encode would hold at this point
local function encode_value(v, depth, top)
  local tv = type(v)
  if tv == "string" then
    BN = BN + 1
    if sfind(v, ESC_PAT) then v = sgsub(v, ESC_PAT, ESCAPES) end
    BUF[BN] = '"' .. v .. '"'
  elseif tv == "number" then
    BN = BN + 1
    BUF[BN] = json_number(v)
  elseif tv == "boolean" then
    BN = BN + 1
    BUF[BN] = v and "true" or "false"
  elseif tv == "table" and not rawequal(v, NULL) then
    depth = depth + 1
    if depth > CFG.encode_max_depth or top + 3 > MAXCSTACK then
      error(sformat("Cannot serialise, excessive nesting (%d)", depth), 0)
    end
    local len = array_length(v)
    if len > 0 then
      BN = BN + 1
      BUF[BN] = "["
      for i = 1, len do
        if i > 1 then BN = BN + 1; BUF[BN] = "," end
        encode_value(rawget(v, i), depth, top + 1)
      end
      BN = BN + 1
      BUF[BN] = "]"
    else
      BN = BN + 1
      BUF[BN] = "{"
      local comma = false
      for k, val in next, v do
        if comma then BN = BN + 1; BUF[BN] = "," else comma = true end
        local tk = type(k)
        BN = BN + 1
        if tk == "string" then
          if sfind(k, ESC_PAT) then k = sgsub(k, ESC_PAT, ESCAPES) end
          BUF[BN] = '"' .. k .. '":'
        elseif tk == "number" then
          BUF[BN] = '"' .. json_number(k) .. '":'
        else
          error("Cannot serialise " .. tk .. ": table key must be a number or string", 0)
        end
        encode_value(val, depth, top + 2)
      end
      BN = BN + 1
      BUF[BN] = "}"
    end
  elseif v == nil or rawequal(v, NULL) then
    BN = BN + 1
    BUF[BN] = "null"
  else
    error("Cannot serialise " .. tv .. ": type not supported", 0)
  end
end

local function json_encode(cfg, ...)
  if select("#", ...) ~= 1 then error(argmsg("encode", 1, "expected 1 argument"), 0) end
  local v = ...
  local tv = type(v)
  if tv == "string" then return json_string(v) end
  CFG, BUF, BN = cfg, {}, 0
  encode_value(v, 0, 1)
  local s = tconcat(BUF, "", 1, BN)
  BUF = nil
  return s
end

-- decoder: token types and their names in error messages
local T_OBJ_BEGIN, T_OBJ_END, T_ARR_BEGIN, T_ARR_END, T_STRING, T_NUMBER,
      T_BOOLEAN, T_NULL, T_COLON, T_COMMA, T_END, T_ERROR = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13
local TOKEN_NAME = {"T_OBJ_BEGIN", "T_OBJ_END", "T_ARR_BEGIN", "T_ARR_END", "T_STRING",
                    "T_NUMBER", "T_BOOLEAN", "T_NULL", "T_COLON", "T_COMMA", "T_END",
                    "T_WHITESPACE", "T_ERROR", "T_UNKNOWN"}
local SINGLE = {[123] = T_OBJ_BEGIN, [125] = T_OBJ_END, [91] = T_ARR_BEGIN,
                [93] = T_ARR_END, [44] = T_COMMA, [58] = T_COLON}
local ESCAPE_CHAR = {[34] = '"', [92] = "\\", [47] = "/", [98] = "\b", [116] = "\t",
                     [110] = "\n", [102] = "\f", [114] = "\r"}

-- decoder state: the text (cut at its first NUL), its length, the next
-- position, the nesting depth
local S, SLEN, POS, DEPTH, DCFG

-- strtod's longest number at p: the number and the position after it, or nil
local function span(pat, i)          -- end of the match of pat at i, or i - 1
  if i > SLEN then return i - 1 end
  local _, e = sfind(S, pat, i)
  return e or i - 1
end
local function strtod(p)
  local i = p
  local c = sbyte(S, i)
  if c == 45 or c == 43 then i = i + 1; c = sbyte(S, i) end
  if c == nil then return nil end
  local e
  if c == 48 and (sbyte(S, i + 1) == 120 or sbyte(S, i + 1) == 88) then
    local e1 = span("^%x+", i + 2)
    local nd = e1 - (i + 1)
    e = e1
    if sbyte(S, e + 1) == 46 then
      local e2 = span("^%x+", e + 2)
      if nd + e2 - (e + 1) > 0 then nd = nd + e2 - (e + 1); e = e2 end
    end
    if nd == 0 then
      e = i                        -- "0x" without digits: just the 0
    else
      local c3 = sbyte(S, e + 1)
      if c3 == 112 or c3 == 80 then
        local e3 = span("^[+-]?%d+", e + 2)
        if e3 > e + 1 then e = e3 end
      end
    end
  elseif (c >= 48 and c <= 57) or c == 46 then
    local e1 = span("^%d+", i)
    local nd = e1 - i + 1
    e = e1
    if sbyte(S, e + 1) == 46 then
      local e2 = span("^%d+", e + 2)
      if nd + e2 - (e + 1) > 0 then nd = nd + e2 - (e + 1); e = e2 end
    end
    if nd == 0 then return nil end
    local c3 = sbyte(S, e + 1)
    if c3 == 101 or c3 == 69 then
      local e3 = span("^[+-]?%d+", e + 2)
      if e3 > e + 1 then e = e3 end
    end
  else
    local w = slower(ssub(S, i, i + 7))
    if w == "infinity" then
      e = i + 7
    elseif ssub(w, 1, 3) == "inf" then
      e = i + 2
    elseif ssub(w, 1, 3) == "nan" then
      e = i + 2
      if sbyte(S, e + 1) == 40 then
        local e4 = span("^[%w_]*%)", e + 2)
        if e4 > e + 1 then e = e4 end
      end
    else
      return nil
    end
  end
  return tonumber(ssub(S, p, e)), e + 1
end

-- what may continue a number after its digits: . e E x X
local NUMBER_MORE = {[46] = true, [101] = true, [69] = true, [120] = true, [88] = true}

-- json_is_invalid_number at p
local function invalid_number(p)
  local c = sbyte(S, p)
  if c == 43 then return true end
  if c == 45 then p = p + 1; c = sbyte(S, p) end
  if c == 48 then
    local c2 = sbyte(S, p + 1)
    return c2 == 120 or c2 == 88 or (c2 ~= nil and c2 >= 48 and c2 <= 57)
  elseif c == nil or c <= 57 or c >= 128 then
    return false
  end
  local w = slower(ssub(S, p, p + 2))
  return w == "inf" or w == "nan"
end

-- a string token starting at the quote at p: value, or nil, error, position
local function string_token(p)
  local q = sfind(S, '["\\]', p + 1)
  if q == nil then return nil, "unexpected end of string", SLEN + 1 end
  if sbyte(S, q) == 34 then
    POS = q + 1
    return ssub(S, p + 1, q - 1)
  end
  local parts, np, start = {}, 0, p + 1
  while true do
    if sbyte(S, q) == 34 then
      np = np + 1
      parts[np] = ssub(S, start, q - 1)
      POS = q + 1
      return tconcat(parts, "", 1, np)
    end
    -- a backslash at q
    np = np + 1
    parts[np] = ssub(S, start, q - 1)
    local e = sbyte(S, q + 1)
    if e == 117 then                                    -- \uXXXX
      local h = ssub(S, q + 2, q + 5)
      local cp = #h == 4 and not sfind(h, "%X") and tonumber(h, 16)
      if not cp then return nil, "invalid unicode escape code", q end
      local elen = 6
      if cp >= 0xD800 and cp <= 0xDFFF then
        if cp >= 0xDC00 then return nil, "invalid unicode escape code", q end
        if ssub(S, q + 6, q + 7) ~= "\\u" then return nil, "invalid unicode escape code", q end
        local h2 = ssub(S, q + 8, q + 11)
        local lo = #h2 == 4 and not sfind(h2, "%X") and tonumber(h2, 16)
        if not lo or lo < 0xDC00 or lo > 0xDFFF then
          return nil, "invalid unicode escape code", q
        end
        cp = (cp - 0xD800) * 1024 + (lo - 0xDC00) + 0x10000
        elen = 12
      end
      np = np + 1
      if cp <= 0x7F then
        parts[np] = schar(cp)
      elseif cp <= 0x7FF then
        parts[np] = schar(0xC0 + floor(cp / 64), 0x80 + cp % 64)
      elseif cp <= 0xFFFF then
        parts[np] = schar(0xE0 + floor(cp / 4096), 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
      else
        parts[np] = schar(0xF0 + floor(cp / 262144), 0x80 + floor(cp / 4096) % 64,
                          0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
      end
      start = q + elen
    else
      local ch = e and ESCAPE_CHAR[e]
      if not ch then return nil, "invalid escape code", q end
      np = np + 1
      parts[np] = ch
      start = q + 2
    end
    q = sfind(S, '["\\]', start)
    if q == nil then return nil, "unexpected end of string", SLEN + 1 end
  end
end

-- the next token: type, value, position (1-based, as in the messages)
local WHITESPACE = {[32] = true, [9] = true, [10] = true, [13] = true}
local function next_token()
  local p = POS
  local c = sbyte(S, p)
  if WHITESPACE[c] then
    p = sfind(S, "[^ \t\n\r]", p)
    if p == nil then
      POS = SLEN + 1
      return T_END, nil, SLEN + 1
    end
    c = sbyte(S, p)
  elseif c == nil then
    return T_END, nil, SLEN + 1
  end
  local single = SINGLE[c]
  if single then
    POS = p + 1
    return single, nil, p
  end
  if c == 34 then
    local v, err, at = string_token(p)
    if v == nil then return T_ERROR, err, at end
    return T_STRING, v, p
  end
  if c == 45 or (c >= 48 and c <= 57) then
    if not DCFG.decode_invalid_numbers and invalid_number(p) then
      return T_ERROR, "invalid number", p
    end
    -- plain decimals first: digits (and a fraction) that strtod takes whole
    local _, e = sfind(S, "^-?%d+", p)
    if e then
      local c2 = sbyte(S, e + 1)
      if c2 == 46 then
        local _, e2 = sfind(S, "^%.%d+", e + 1)
        if e2 then e = e2; c2 = sbyte(S, e + 1) end
      end
      if c2 == nil or not NUMBER_MORE[c2] then
        POS = e + 1
        return T_NUMBER, tonumber(ssub(S, p, e)), p
      end
    end
    local n, e = strtod(p)
    if n == nil then return T_ERROR, "invalid number", p end
    POS = e
    return T_NUMBER, n, p
  end
  if c == 116 and ssub(S, p, p + 3) == "true" then
    POS = p + 4
    return T_BOOLEAN, true, p
  elseif c == 102 and ssub(S, p, p + 4) == "false" then
    POS = p + 5
    return T_BOOLEAN, false, p
  elseif c == 110 and ssub(S, p, p + 3) == "null" then
    POS = p + 4
    return T_NULL, nil, p
  end
  if (c == 43 or c == 105 or c == 73 or c == 110 or c == 78)
     and DCFG.decode_invalid_numbers and invalid_number(p) then
    local n, e = strtod(p)
    if n == nil then return T_ERROR, "invalid number", p end
    POS = e
    return T_NUMBER, n, p
  end
  return T_ERROR, "invalid token", p
end

local function parse_error(expected, tt, tv, at)
  error(sformat("Expected %s but found %s at character %d", expected,
                tt == T_ERROR and tv or TOKEN_NAME[tt], at), 0)
end

local parse_object, parse_array

-- json_process_value; top: the stack slots json_decode holds below it
local function process_value(tt, tv, at, top)
  if tt == T_STRING or tt == T_NUMBER or tt == T_BOOLEAN then return tv end
  if tt == T_OBJ_BEGIN then return parse_object(top) end
  if tt == T_ARR_BEGIN then return parse_array(top) end
  if tt == T_NULL then return NULL end
  parse_error("value", tt, tv, at)
end

local function descend(top, slots)
  DEPTH = DEPTH + 1
  if DEPTH > DCFG.decode_max_depth or top + slots > MAXCSTACK then
    error(sformat("Found too many nested data structures (%d) at character %d", DEPTH, POS - 1), 0)
  end
end

parse_object = function(top)
  descend(top, 3)
  local t = {}
  local tt, tv, at = next_token()
  if tt == T_OBJ_END then DEPTH = DEPTH - 1; return t end
  while true do
    if tt ~= T_STRING then parse_error("object key string", tt, tv, at) end
    local key = tv
    if sbyte(S, POS) == 58 then           -- ':' right after the key
      POS = POS + 1
    else
      tt, tv, at = next_token()
      if tt ~= T_COLON then parse_error("colon", tt, tv, at) end
    end
    tt, tv, at = next_token()
    if tt == T_STRING or tt == T_NUMBER or tt == T_BOOLEAN then
      t[key] = tv
    else
      t[key] = process_value(tt, tv, at, top + 2)
    end
    local c = sbyte(S, POS)
    if c == 44 then                        -- ',' right after the value
      POS = POS + 1
    elseif c == 125 then                   -- '}'
      POS = POS + 1
      DEPTH = DEPTH - 1
      return t
    else
      tt, tv, at = next_token()
      if tt == T_OBJ_END then DEPTH = DEPTH - 1; return t end
      if tt ~= T_COMMA then parse_error("comma or object end", tt, tv, at) end
    end
    tt, tv, at = next_token()
  end
end

parse_array = function(top)
  descend(top, 2)
  local t = {}
  local tt, tv, at = next_token()
  if tt == T_ARR_END then DEPTH = DEPTH - 1; return t end
  local i = 1
  while true do
    if tt == T_STRING or tt == T_NUMBER or tt == T_BOOLEAN then
      t[i] = tv
    else
      t[i] = process_value(tt, tv, at, top + 1)
    end
    local c = sbyte(S, POS)
    if c == 44 then                        -- ',' right after the value
      POS = POS + 1
    elseif c == 93 then                    -- ']'
      POS = POS + 1
      DEPTH = DEPTH - 1
      return t
    else
      tt, tv, at = next_token()
      if tt == T_ARR_END then DEPTH = DEPTH - 1; return t end
      if tt ~= T_COMMA then parse_error("comma or array end", tt, tv, at) end
    end
    tt, tv, at = next_token()
    i = i + 1
  end
end

local function json_decode(cfg, ...)
  local n = select("#", ...)
  if n ~= 1 then error(argmsg("decode", 1, "expected 1 argument"), 0) end
  local s = check_string("decode", 1, n, (...))
  if #s >= 2 and (sbyte(s, 1) == 0 or sbyte(s, 2) == 0) then
    error("JSON parser does not support UTF-16 or UTF-32", 0)
  end
  S = cstring(s)
  SLEN, POS, DEPTH, DCFG = #S, 1, 0, cfg
  local tt, tv, at = next_token()
  local v = process_value(tt, tv, at, 1)
  tt, tv, at = next_token()
  if tt ~= T_END then parse_error("the end", tt, tv, at) end
  S = nil
  return v
end

-- configuration functions (json_arg_init, json_integer_option, json_enum_option)
local function arg_init(fname, n, max)
  if n > max then error(argmsg(fname, max + 1, "found too many arguments"), 0) end
end

local function integer_option(fname, n, i, v, cur, min, max)
  if v ~= nil then
    local x = wrap32(check_integer(fname, i, n, v))
    if x < min or x > max then
      error(argmsg(fname, 1, sformat("expected integer between %d and %d", min, max)), 0)
    end
    return x
  end
  return cur
end

local BOOL_OPTIONS = {[0] = "off", "on"}
-- returns the new setting (0, 1, 2 ...)
local function enum_option(fname, n, i, v, cur, options)
  if v ~= nil then
    if type(v) == "boolean" then return v and 1 or 0 end
    local s = check_string(fname, i, n, v)
    for k = 0, #options do
      if options[k] == s then return k end
    end
    error(argmsg(fname, i, "invalid option '" .. cstring(s) .. "'"), 0)
  end
  return cur
end
local function enum_result(setting, options)
  if setting == 0 or setting == 1 then return setting == 1 end
  return options[setting]
end

local INVALID_OPTIONS = {[0] = "off", "on", "null"}

local new_cjson
new_cjson = function()
  local cfg = {
    encode_sparse_convert = false, encode_sparse_ratio = 2, encode_sparse_safe = 10,
    encode_max_depth = 1000, decode_max_depth = 1000,
    encode_invalid_numbers = 0, decode_invalid_numbers = true,
    encode_keep_buffer = true, encode_number_precision = 14, number_fmt = "%.14g",
  }
  local M = {}
  M.encode = wrap1(function(...) return json_encode(cfg, ...) end)
  M.decode = wrap1(function(...) return json_decode(cfg, ...) end)
  M.encode_sparse_array = wrapn(function(...)
    local n = select("#", ...)
    local a, b, c = ...
    local f = "encode_sparse_array"
    arg_init(f, n, 3)
    cfg.encode_sparse_convert =
      enum_option(f, n, 1, a, cfg.encode_sparse_convert and 1 or 0, BOOL_OPTIONS) == 1
    cfg.encode_sparse_ratio = integer_option(f, n, 2, b, cfg.encode_sparse_ratio, 0, INT_MAX)
    cfg.encode_sparse_safe = integer_option(f, n, 3, c, cfg.encode_sparse_safe, 0, INT_MAX)
    return 3, {cfg.encode_sparse_convert, cfg.encode_sparse_ratio, cfg.encode_sparse_safe}
  end)
  M.encode_max_depth = wrap1(function(...)
    local n = select("#", ...)
    arg_init("encode_max_depth", n, 1)
    cfg.encode_max_depth = integer_option("encode_max_depth", n, 1, (...),
                                          cfg.encode_max_depth, 1, INT_MAX)
    return cfg.encode_max_depth
  end)
  M.decode_max_depth = wrap1(function(...)
    local n = select("#", ...)
    arg_init("decode_max_depth", n, 1)
    cfg.decode_max_depth = integer_option("decode_max_depth", n, 1, (...),
                                          cfg.decode_max_depth, 1, INT_MAX)
    return cfg.decode_max_depth
  end)
  M.encode_number_precision = wrap1(function(...)
    local n = select("#", ...)
    arg_init("encode_number_precision", n, 1)
    local p = integer_option("encode_number_precision", n, 1, (...),
                             cfg.encode_number_precision, 1, 14)
    cfg.encode_number_precision = p
    cfg.number_fmt = "%." .. p .. "g"
    return p
  end)
  M.encode_keep_buffer = wrap1(function(...)
    local n = select("#", ...)
    arg_init("encode_keep_buffer", n, 1)
    local s = enum_option("encode_keep_buffer", n, 1, (...),
                          cfg.encode_keep_buffer and 1 or 0, BOOL_OPTIONS)
    cfg.encode_keep_buffer = s == 1
    return cfg.encode_keep_buffer
  end)
  M.encode_invalid_numbers = wrap1(function(...)
    local n = select("#", ...)
    arg_init("encode_invalid_numbers", n, 1)
    local s = enum_option("encode_invalid_numbers", n, 1, (...),
                          cfg.encode_invalid_numbers, INVALID_OPTIONS)
    cfg.encode_invalid_numbers = s
    return enum_result(s, INVALID_OPTIONS)
  end)
  M.decode_invalid_numbers = wrap1(function(...)
    local n = select("#", ...)
    arg_init("decode_invalid_numbers", n, 1)
    local s = enum_option("decode_invalid_numbers", n, 1, (...),
                          cfg.decode_invalid_numbers and 1 or 0, BOOL_OPTIONS)
    cfg.decode_invalid_numbers = s == 1
    return cfg.decode_invalid_numbers
  end)
  M.new = wrap1(function() return new_cjson() end)
  M.null = NULL
  M._NAME = "cjson"
  M._VERSION = "2.1.0"
  return M
end

---------------------------------------------------------------- cmsgpack

local MP_MAX_NESTING = 16
local MISSING = "Missing bytes in input."
local BADFMT = "Bad data format in input."

local PB, PN                     -- pack output buffer

local function mp_encode_int(n)   -- n integral, -2^63 <= n < 2^63
  if n >= 0 then
    if n <= 127 then return schar(n) end
    if n <= 255 then return schar(0xcc, n) end
    if n <= 65535 then return "\205" .. be16(n) end
    if n < TWO32 then return "\206" .. be32(n) end
    local hi = floor(n / TWO32)
    return "\207" .. be32(hi) .. be32(n - hi * TWO32)
  end
  if n >= -32 then return schar(n + 256) end
  if n >= -128 then return schar(0xd0, n + 256) end
  if n >= -32768 then return "\209" .. be16(n + 65536) end
  if n >= -TWO31 then return "\210" .. be32(n + TWO32) end
  local hi = floor(n / TWO32)
  return "\211" .. be32(hi + TWO32) .. be32(n - hi * TWO32)
end

local function mp_encode_double(d)
  local f, bits = to_float32(d)
  if f == d then return "\202" .. be32(bits) end
  local hi, lo = double_bits(d)
  return "\203" .. be32(hi) .. be32(lo)
end

local function mp_encode(v, level)
  local t = type(v)
  if t == "table" and level == MP_MAX_NESTING then t = "nil" end
  PN = PN + 1
  if t == "string" then
    local len = #v
    if len < 32 then PB[PN] = schar(0xa0 + len) .. v
    elseif len <= 255 then PB[PN] = schar(0xd9, len) .. v
    elseif len <= 65535 then PB[PN] = "\218" .. be16(len) .. v
    else PB[PN] = "\219" .. be32(len) .. v end
  elseif t == "boolean" then
    PB[PN] = v and "\195" or "\194"
  elseif t == "number" then
    if v % 1 == 0 and v >= -TWO63 and v < TWO63 then
      PB[PN] = mp_encode_int(v)
    else
      PB[PN] = mp_encode_double(v)
    end
  elseif t == "table" then
    -- table_is_an_array: keys exactly 1..n
    local count, max, is_array = 0, 0, true
    for k in next, v do
      if type(k) ~= "number" or k <= 0 or k % 1 ~= 0 or k >= TWO31 then
        is_array = false
        break
      end
      if k > max then max = k end
      count = count + 1
    end
    if is_array and max == count then
      if count <= 15 then PB[PN] = schar(0x90 + count)
      elseif count <= 65535 then PB[PN] = "\220" .. be16(count)
      else PB[PN] = "\221" .. be32(count) end
      for j = 1, count do mp_encode(v[j], level + 1) end
    else
      count = 0
      for _ in next, v do count = count + 1 end
      if count <= 15 then PB[PN] = schar(0x80 + count)
      elseif count <= 65535 then PB[PN] = "\222" .. be16(count)
      else PB[PN] = "\223" .. be32(count) end
      for k, val in next, v do
        mp_encode(k, level + 1)
        mp_encode(val, level + 1)
      end
    end
  else
    PB[PN] = "\192"
  end
end

local function mp_pack(...)
  local nargs = select("#", ...)
  if nargs == 0 then error(argmsg("pack", 0, "MessagePack pack needs input."), 0) end
  if nargs * 2 > MAXCSTACK then
    error(argmsg("pack", 0, "Too many arguments for MessagePack pack."), 0)
  end
  PB, PN = {}, 0
  if nargs == 1 then
    mp_encode((...), 0)
  else
    local args = {...}
    for i = 1, nargs do mp_encode(args[i], 0) end
  end
  local s = tconcat(PB, "", 1, PN)
  PB = nil
  return s
end

-- decoder state: the data, its length, the next position
local US, UL, UP

local decode_value

local function decode_array(len, top)
  local t = {}
  if top + 2 > MAXCSTACK then error("stack overflow (in function mp_decode_to_lua_array)", 0) end
  for i = 1, len do
    t[i] = decode_value(top + 2)
  end
  return t
end

local function decode_map(len, top)
  local t = {}
  for _ = 1, len do
    local k = decode_value(top + 1)
    local v = decode_value(top + 2)
    if k == nil then error("table index is nil", 0) end
    if k ~= k then error("table index is NaN", 0) end
    t[k] = v
  end
  return t
end

local function need(n)
  if UL - UP + 1 < n then error(MISSING, 0) end
end

-- one value at UP; top: the stack slots mp_unpack holds below it
decode_value = function(top)
  if UP > UL then error(MISSING, 0) end
  if top + 1 > MAXCSTACK then
    error("stack overflow (too many return values at once; use unpack_one or unpack_limit instead.)", 0)
  end
  local p = UP
  local b = sbyte(US, p)
  if b < 0x80 then UP = p + 1; return b end
  if b >= 0xe0 then UP = p + 1; return b - 256 end
  if b < 0x90 then UP = p + 1; return decode_map(b - 0x80, top) end
  if b < 0xa0 then UP = p + 1; return decode_array(b - 0x90, top) end
  if b < 0xc0 then
    local l = b - 0xa0
    need(1 + l)
    UP = p + 1 + l
    return ssub(US, p + 1, p + l)
  end
  if b == 0xc0 then UP = p + 1; return nil end
  if b == 0xc2 then UP = p + 1; return false end
  if b == 0xc3 then UP = p + 1; return true end
  if b == 0xcc then need(2); UP = p + 2; return sbyte(US, p + 1) end
  if b == 0xcd then
    need(3); UP = p + 3
    local x, y = sbyte(US, p + 1, p + 2)
    return x * 256 + y
  end
  if b == 0xce then need(5); UP = p + 5; return get_be32(US, p + 1) end
  if b == 0xcf or b == 0xd3 then     -- both land in Lua as a signed 64-bit integer
    need(9); UP = p + 9
    local hi, lo = get_be32(US, p + 1), get_be32(US, p + 5)
    if hi >= TWO31 then hi = hi - TWO32 end
    return hi * TWO32 + lo
  end
  if b == 0xd0 then
    need(2); UP = p + 2
    local x = sbyte(US, p + 1)
    if x >= 128 then return x - 256 end
    return x
  end
  if b == 0xd1 then
    need(3); UP = p + 3
    local x, y = sbyte(US, p + 1, p + 2)
    x = x * 256 + y
    if x >= 32768 then return x - 65536 end
    return x
  end
  if b == 0xd2 then
    need(5); UP = p + 5
    local x = get_be32(US, p + 1)
    if x >= TWO31 then return x - TWO32 end
    return x
  end
  if b == 0xca then need(5); UP = p + 5; return float_from_bits(get_be32(US, p + 1)) end
  if b == 0xcb then
    need(9); UP = p + 9
    return double_from_bits(get_be32(US, p + 1), get_be32(US, p + 5))
  end
  if b == 0xd9 then
    need(2)
    local l = sbyte(US, p + 1)
    need(2 + l)
    UP = p + 2 + l
    return ssub(US, p + 2, p + 1 + l)
  end
  if b == 0xda then
    need(3)
    local x, y = sbyte(US, p + 1, p + 2)
    local l = x * 256 + y
    need(3 + l)
    UP = p + 3 + l
    return ssub(US, p + 3, p + 2 + l)
  end
  if b == 0xdb then
    need(5)
    local l = get_be32(US, p + 1)
    UP = p + 5
    need(l)
    UP = p + 5 + l
    return ssub(US, p + 5, p + 4 + l)
  end
  if b == 0xdc or b == 0xde then
    need(3)
    local x, y = sbyte(US, p + 1, p + 2)
    UP = p + 3
    if b == 0xdc then return decode_array(x * 256 + y, top) end
    return decode_map(x * 256 + y, top)
  end
  if b == 0xdd or b == 0xdf then
    need(5)
    local l = get_be32(US, p + 1)
    UP = p + 5
    if b == 0xdd then return decode_array(l, top) end
    return decode_map(l, top)
  end
  error(BADFMT, 0)
end

-- mp_unpack_full; top: the stack slots below the results
local function unpack_full(fname, n, sv, limit, offset, top)
  local s = check_string(fname, 1, n, sv)
  local len = #s
  if offset < 0 or limit < 0 then
    error(sformat("Invalid request to unpack with offset of %d and limit of %d.",
                  wrap32(offset), wrap32(len)), 0)
  elseif offset > len then
    error(sformat("Start offset %d greater than input length %d.", wrap32(offset), wrap32(len)), 0)
  end
  local decode_all = limit == 0 and offset == 0
  if decode_all then limit = INT_MAX end
  US, UL, UP = s, len, offset + 1
  local res, cnt = {}, 0
  while UP <= UL and cnt < limit do
    cnt = cnt + 1
    res[cnt] = decode_value(top)
    top = top + 1
  end
  US = nil
  if decode_all then return cnt, res end
  if top + 1 > MAXCSTACK then error("stack overflow (in function mp_unpack_full)", 0) end
  local out = {UP > UL and -1 or UP - 1}
  for i = 1, cnt do out[i + 1] = res[i] end
  return cnt + 1, out
end

local function mp_unpack(...)
  local n = select("#", ...)
  return unpack_full("unpack", n, (...), 0, 0, n)
end

local function mp_unpack_one(...)
  local n = select("#", ...)
  local s, o = ...
  local offset = 0
  if o ~= nil then offset = check_integer("unpack_one", 2, n, o) end
  return unpack_full("unpack_one", n, s, 1, offset, 1)
end

local function mp_unpack_limit(...)
  local n = select("#", ...)
  local s, l, o = ...
  local limit = check_integer("unpack_limit", 2, n, l)
  local offset = 0
  if o ~= nil then offset = check_integer("unpack_limit", 3, n, o) end
  return unpack_full("unpack_limit", n, s, limit, offset, 1)
end

--------------------------------------------------------------------- bit

-- a & b of two nibbles: AND4[a * 16 + b + 1]
local AND4 = {}
for x = 0, 15 do
  for y = 0, 15 do
    local r, p, a, b = 0, 1, x, y
    for _ = 1, 4 do
      if a % 2 == 1 and b % 2 == 1 then r = r + p end
      a, b, p = floor(a / 2), floor(b / 2), p * 2
    end
    AND4[x * 16 + y + 1] = r
  end
end

-- a & b for 32-bit unsigned values
local function band32(a, b)
  local x, y = a % 16, b % 16
  local r = AND4[x * 16 + y + 1]
  a, b = (a - x) / 16, (b - y) / 16; x, y = a % 16, b % 16
  r = r + AND4[x * 16 + y + 1] * 16
  a, b = (a - x) / 16, (b - y) / 16; x, y = a % 16, b % 16
  r = r + AND4[x * 16 + y + 1] * 256
  a, b = (a - x) / 16, (b - y) / 16; x, y = a % 16, b % 16
  r = r + AND4[x * 16 + y + 1] * 4096
  a, b = (a - x) / 16, (b - y) / 16; x, y = a % 16, b % 16
  r = r + AND4[x * 16 + y + 1] * 65536
  a, b = (a - x) / 16, (b - y) / 16; x, y = a % 16, b % 16
  r = r + AND4[x * 16 + y + 1] * 1048576
  a, b = (a - x) / 16, (b - y) / 16; x, y = a % 16, b % 16
  r = r + AND4[x * 16 + y + 1] * 16777216
  a, b = (a - x) / 16, (b - y) / 16
  return r + AND4[a * 16 + b + 1] * 268435456
end

local POW2 = {}
for i = 0, 32 do POW2[i] = 2 ^ i end

-- barg: the low 32 bits of n + 2^52 + 2^51 (a double), as LuaBitOp takes them
local function tobit_slow(n)
  local t = n + 6755399441055744
  if t ~= t or t == huge or t == -huge or t == 0 then return 0 end
  if t >= 4503599627370496 and t < 9007199254740992 then
    return (t - 6755399441055744) % TWO32
  end
  local m = frexp(t < 0 and -t or t)
  return (m * 9007199254740992) % TWO32
end

-- argument i of n as a 32-bit unsigned value; a bad one raises from the
-- caller of the bit function (level 3: barg -> bit.xxx -> caller)
local function barg(v, i, n, fname)
  local x = v
  if type(x) ~= "number" then
    x = tonum(v)
    if x == nil then error(fix_argerror(typemsg(fname, i, n, v, "number"), 3), 3) end
  end
  if x % 1 == 0 and x >= -2251799813685248 and x <= 2251799813685248 then
    return x % TWO32
  end
  return tobit_slow(x)
end

local function bit_tobit(...)
  local r = barg((...), 1, select("#", ...), "tobit")
  if r >= TWO31 then return r - TWO32 end
  return r
end

local function bit_bnot(...)
  local r = 4294967295 - barg((...), 1, select("#", ...), "bnot")
  if r >= TWO31 then return r - TWO32 end
  return r
end

-- band/bor/bxor: argument 1 first, then the others from the last one down
local function bit_band(...)
  local n = select("#", ...)
  local a, b = ...
  local r = barg(a, 1, n, "band")
  if n == 2 then
    r = band32(r, barg(b, 2, n, "band"))
  else
    for i = n, 2, -1 do r = band32(r, barg((select(i, ...)), i, n, "band")) end
  end
  if r >= TWO31 then return r - TWO32 end
  return r
end

local function bit_bor(...)
  local n = select("#", ...)
  local a, b = ...
  local r = barg(a, 1, n, "bor")
  if n == 2 then
    local y = barg(b, 2, n, "bor")
    r = r + y - band32(r, y)
  else
    for i = n, 2, -1 do
      local y = barg((select(i, ...)), i, n, "bor")
      r = r + y - band32(r, y)
    end
  end
  if r >= TWO31 then return r - TWO32 end
  return r
end

local function bit_bxor(...)
  local n = select("#", ...)
  local a, b = ...
  local r = barg(a, 1, n, "bxor")
  if n == 2 then
    local y = barg(b, 2, n, "bxor")
    r = r + y - 2 * band32(r, y)
  else
    for i = n, 2, -1 do
      local y = barg((select(i, ...)), i, n, "bxor")
      r = r + y - 2 * band32(r, y)
    end
  end
  if r >= TWO31 then return r - TWO32 end
  return r
end

local function bit_lshift(...)
  local n = select("#", ...)
  local a, b = ...
  local x = barg(a, 1, n, "lshift")
  local r = (x * POW2[barg(b, 2, n, "lshift") % 32]) % TWO32
  if r >= TWO31 then return r - TWO32 end
  return r
end

local function bit_rshift(...)
  local n = select("#", ...)
  local a, b = ...
  local x = barg(a, 1, n, "rshift")
  local r = floor(x / POW2[barg(b, 2, n, "rshift") % 32])
  if r >= TWO31 then return r - TWO32 end
  return r
end

local function bit_arshift(...)
  local n = select("#", ...)
  local a, b = ...
  local x = barg(a, 1, n, "arshift")
  local s = barg(b, 2, n, "arshift") % 32
  if x >= TWO31 then x = x - TWO32 end
  return floor(x / POW2[s])
end

local function bit_rol(...)
  local n = select("#", ...)
  local a, b = ...
  local x = barg(a, 1, n, "rol")
  local s = barg(b, 2, n, "rol") % 32
  local r = (x * POW2[s]) % TWO32 + floor(x / POW2[32 - s])
  if r >= TWO31 then return r - TWO32 end
  return r
end

local function bit_ror(...)
  local n = select("#", ...)
  local a, b = ...
  local x = barg(a, 1, n, "ror")
  local s = barg(b, 2, n, "ror") % 32
  local r = floor(x / POW2[s]) + (x * POW2[32 - s]) % TWO32
  if r >= TWO31 then return r - TWO32 end
  return r
end

local function bit_bswap(...)
  local x = barg((...), 1, select("#", ...), "bswap")
  local b0 = x % 256; x = (x - b0) / 256
  local b1 = x % 256; x = (x - b1) / 256
  local b2 = x % 256
  local b3 = (x - b2) / 256
  local r = ((b0 * 256 + b1) * 256 + b2) * 256 + b3
  if r >= TWO31 then return r - TWO32 end
  return r
end

local function bit_tohex(...)
  local n = select("#", ...)
  local a, b = ...
  local x = barg(a, 1, n, "tohex")
  local digits = 8
  if n >= 2 then
    digits = barg(b, 2, n, "tohex")
    if digits >= TWO31 then digits = digits - TWO32 end
  end
  local fmt = "%08x"
  if digits < 0 then
    digits = digits == -TWO31 and INT_MAX or -digits
    fmt = "%08X"
  end
  if digits > 8 then digits = 8 end
  return ssub(sformat(fmt, x), 9 - digits)
end

------------------------------------------------------------------ struct

local BIG, LITTLE = 0, 1
local NATIVE = LITTLE
local MAXINTSIZE = 32
local MAXALIGN = 8

-- getnum: digits at i in fmt (or df); returns value, next index
local function getnum(fmt, i, df)
  local c = sbyte(fmt, i)
  if c == nil or c < 48 or c > 57 then return df, i end
  local a = 0
  repeat
    local d = c - 48
    if a > 214748364 or a * 10 > INT_MAX - d then error("integral size overflow", 0) end
    a = a * 10 + d
    i = i + 1
    c = sbyte(fmt, i)
  until c == nil or c < 48 or c > 57
  return a, i
end

-- optsize: the size of option opt; returns size, next index
local OPT_SIZE = {[98] = 1, [66] = 1, [104] = 2, [72] = 2, [108] = 8, [76] = 8,
                  [84] = 8, [102] = 4, [100] = 8, [120] = 1}
local function optsize(opt, fmt, i)
  local sz = OPT_SIZE[opt]
  if sz then return sz, i end
  if opt == 99 then return getnum(fmt, i, 1) end              -- c
  if opt == 105 or opt == 73 then                             -- i, I
    sz, i = getnum(fmt, i, 4)
    if sz > MAXINTSIZE then
      error(sformat("integral size %d is larger than limit of %d", sz, MAXINTSIZE), 0)
    end
    return sz, i
  end
  return 0, i
end

-- x & m for a mask m < 64 (alignments of sizes up to 32), two's
-- complement for negative x
local function small_and(x, m)
  x = x % 64
  local r, p = 0, 1
  while m > 0 do
    if m % 2 == 1 and x % 2 == 1 then r = r + p end
    m, x, p = floor(m / 2), floor(x / 2), p * 2
  end
  return r
end

local function gettoalign(len, align, opt, size)
  if size == 0 or opt == 99 then return 0 end
  if size > align then size = align end
  return small_and(size - small_and(len, size - 1), size - 1)
end

-- controloptions; returns endian, align, next index
local function controloptions(fname, opt, fmt, i, endian, align)
  if opt == 32 then return endian, align, i end
  if opt == 62 then return BIG, align, i end
  if opt == 60 then return LITTLE, align, i end
  if opt == 33 then
    local a
    a, i = getnum(fmt, i, MAXALIGN)
    local p = a
    while p > 1 and p % 2 == 0 do p = p / 2 end
    if p ~= 1 then                                          -- isp2(a)
      error(sformat("alignment %d is not a power of 2", a), 0)
    end
    return endian, a, i
  end
  error(argmsg(fname, 1, "invalid format option '" .. schar(opt) .. "'"), 0)
end

-- 8 bytes (hi, lo) of what putinteger stores for number v
local function integer_bits(v)
  local hi, lo
  if v < 0 then
    if v >= -TWO63 then v = -floor(-v) else v = -TWO63 end   -- (long)v
    hi = floor(v / TWO32)
    lo = v - hi * TWO32
    if hi < 0 then hi = hi + TWO32 end
  elseif v ~= v then
    hi, lo = TWO31, 0                                        -- (unsigned long)NaN
  elseif v >= TWO64 then
    hi, lo = 0, 0                                            -- includes inf
  else
    v = floor(v)
    hi = floor(v / TWO32)
    lo = v - hi * TWO32
  end
  return hi, lo
end

-- size bytes of (hi, lo), zero above the 8th, in the given byte order
local function int_bytes(hi, lo, size, endian)
  local b = {}
  for k = 1, size do
    local byte
    if k <= 4 then byte = lo % 256; lo = (lo - byte) / 256
    elseif k <= 8 then byte = hi % 256; hi = (hi - byte) / 256
    else byte = 0 end
    b[k] = byte
  end
  local out = {}
  if endian == LITTLE then
    for k = 1, size do out[k] = schar(b[k]) end
  else
    for k = 1, size do out[k] = schar(b[size - k + 1]) end
  end
  return tconcat(out)
end

local function be_to_endian(s, endian)   -- s in big-endian order
  if endian == BIG then return s end
  return sreverse(s)
end

local function struct_pack(...)
  local nargs = select("#", ...)
  local args = {...}
  local fmt = cstring(check_string("pack", 1, nargs, args[1]))
  -- b_pack pushes a nil after its arguments: one argument too few is "nil"
  local nargs1 = nargs + 1
  local endian, align = NATIVE, 1
  local out, no = {}, 0
  local totalsize = 0
  local arg = 2
  local i, flen = 1, #fmt
  while i <= flen do
    local opt = sbyte(fmt, i)
    i = i + 1
    local size
    size, i = optsize(opt, fmt, i)
    local toalign = gettoalign(totalsize, align, opt, size)
    totalsize = totalsize + toalign
    if toalign > 0 then no = no + 1; out[no] = srep("\0", toalign) end
    if opt == 98 or opt == 66 or opt == 104 or opt == 72 or opt == 108 or opt == 76
       or opt == 84 or opt == 105 or opt == 73 then
      local v = check_number("pack", arg, nargs1, args[arg])
      arg = arg + 1
      local hi, lo = integer_bits(v)
      no = no + 1
      out[no] = int_bytes(hi, lo, size, endian)
    elseif opt == 120 then
      no = no + 1
      out[no] = "\0"
    elseif opt == 102 then
      local v = check_number("pack", arg, nargs1, args[arg])
      arg = arg + 1
      local _, bits = to_float32(v)
      no = no + 1
      out[no] = be_to_endian(be32(bits), endian)
    elseif opt == 100 then
      local v = check_number("pack", arg, nargs1, args[arg])
      arg = arg + 1
      local hi, lo = double_bits(v)
      no = no + 1
      out[no] = be_to_endian(be32(hi) .. be32(lo), endian)
    elseif opt == 99 or opt == 115 then
      local s = check_string("pack", arg, nargs1, args[arg])
      arg = arg + 1
      local l = #s
      if size == 0 then size = l end
      if l < size then error(argmsg("pack", arg, "string too short"), 0) end
      no = no + 1
      out[no] = ssub(s, 1, size)
      if opt == 115 then
        no = no + 1
        out[no] = "\0"
        size = size + 1
      end
    else
      endian, align, i = controloptions("pack", opt, fmt, i, endian, align)
    end
    totalsize = totalsize + size
  end
  return tconcat(out, "", 1, no)
end

-- the number getinteger reads from size bytes at pos (0-based) of data
local function read_integer(data, pos, endian, signed, size)
  -- only the 8 bytes that stay in the unsigned long matter
  local n = size < 8 and size or 8
  local s
  if endian == BIG then s = ssub(data, pos + size - n + 1, pos + size)
  else s = sreverse(ssub(data, pos + 1, pos + n)) end
  -- s: n bytes, most significant first
  local hi, lo = 0, 0
  for k = 1, n do
    local byte = sbyte(s, k)
    local h = floor(lo / 16777216)
    lo = (lo - h * 16777216) * 256 + byte
    hi = (hi * 256 + h) % TWO32
  end
  if not signed then return hi * TWO32 + lo end
  local p = (size * 8 - 1) % 64          -- the shift count x86-64 uses
  if p >= 32 then
    local unit = POW2[p - 32]
    if hi >= unit then hi = hi % unit + (TWO32 - unit) end
  else
    local unit = POW2[p]
    if hi > 0 or lo >= unit then
      hi = TWO32 - 1
      lo = lo % unit + (TWO32 - unit)
    end
  end
  if hi >= TWO31 then hi = hi - TWO32 end
  return hi * TWO32 + lo
end

local INTEGER_OPT = {[98] = true, [66] = true, [104] = true, [72] = true, [108] = true,
                     [76] = true, [84] = true, [105] = true, [73] = true}

local function struct_unpack(...)
  local nargs = select("#", ...)
  local fv, dv, pv = ...
  local fmt = cstring(check_string("unpack", 1, nargs, fv))
  local data = check_string("unpack", 2, nargs, dv)
  local pos = 1
  if pv ~= nil then pos = check_integer("unpack", 3, nargs, pv) end
  if pos == 0 then error(argmsg("unpack", 3, "offset must be 1 or greater"), 0) end
  pos = pos - 1                  -- negative: a size_t past any string
  local ld = #data
  local res, n = {}, 0
  local endian, align = NATIVE, 1
  local i, flen = 1, #fmt
  while i <= flen do
    local opt = sbyte(fmt, i)
    i = i + 1
    local size
    size, i = optsize(opt, fmt, i)
    pos = pos + gettoalign(pos, align, opt, size)
    if not (size <= ld and pos >= 0 and pos <= ld - size) then
      error(argmsg("unpack", 2, "data string too short"), 0)
    end
    if nargs + n + 2 > MAXCSTACK then error("stack overflow (too many results)", 0) end
    if INTEGER_OPT[opt] then
      n = n + 1
      res[n] = read_integer(data, pos, endian, opt >= 97, size)
    elseif opt == 120 then
      -- padding
    elseif opt == 102 then
      n = n + 1
      res[n] = float_from_bits(get_be32(be_to_endian(ssub(data, pos + 1, pos + 4), endian), 1))
    elseif opt == 100 then
      local s = be_to_endian(ssub(data, pos + 1, pos + 8), endian)
      n = n + 1
      res[n] = double_from_bits(get_be32(s, 1), get_be32(s, 5))
    elseif opt == 99 then
      if size == 0 then
        local prev = n > 0 and tonum(res[n])
        if not prev then error("format 'c0' needs a previous size", 0) end
        n = n - 1
        -- (size_t)prev as x86-64 converts it: 2^64 and above wrap to 0,
        -- NaN and -1 and below are past any string
        if prev >= TWO64 then size = 0
        elseif prev >= 0 then size = floor(prev)
        elseif prev > -1 then size = 0
        else size = huge end
        if not (size <= ld and pos <= ld - size) then
          error(argmsg("unpack", 2, "data string too short"), 0)
        end
      end
      n = n + 1
      res[n] = ssub(data, pos + 1, pos + size)
    elseif opt == 115 then
      local e = sfind(data, "\0", pos + 1, true)
      if e == nil then error("unfinished string in data", 0) end
      size = e - pos
      n = n + 1
      res[n] = ssub(data, pos + 1, e - 1)
    else
      endian, align, i = controloptions("unpack", opt, fmt, i, endian, align)
    end
    pos = pos + size
  end
  n = n + 1
  res[n] = pos + 1
  return n, res
end

local function struct_size(...)
  local nargs = select("#", ...)
  local fmt = cstring(check_string("size", 1, nargs, (...)))
  local endian, align = NATIVE, 1
  local pos = 0
  local i, flen = 1, #fmt
  while i <= flen do
    local opt = sbyte(fmt, i)
    i = i + 1
    local size
    size, i = optsize(opt, fmt, i)
    pos = pos + gettoalign(pos, align, opt, size)
    if opt == 115 then
      error(argmsg("size", 1, "option 's' has no fixed size"), 0)
    elseif opt == 99 and size == 0 then
      error(argmsg("size", 1, "option 'c0' has no fixed size"), 0)
    end
    local alnum = (opt >= 48 and opt <= 57) or (opt >= 65 and opt <= 90) or (opt >= 97 and opt <= 122)
    if not alnum then
      endian, align, i = controloptions("size", opt, fmt, i, endian, align)
    end
    pos = pos + size
  end
  return pos
end

---------------------------------------------------------------- the tables

-- built as the C code builds them (the same sizes and insertion order), so
-- pairs() walks them in the same order as in Redis
local cjson = new_cjson()

local cmsgpack = {}
cmsgpack.pack = wrap1(mp_pack)
cmsgpack.unpack = wrapn(mp_unpack)
cmsgpack.unpack_one = wrapn(mp_unpack_one)
cmsgpack.unpack_limit = wrapn(mp_unpack_limit)
cmsgpack._NAME = "cmsgpack"
cmsgpack._VERSION = "lua-cmsgpack 0.4.0"
cmsgpack._COPYRIGHT = "Copyright (C) 2012, Salvatore Sanfilippo"
cmsgpack._DESCRIPTION = "MessagePack C implementation for Lua"

local bit = {tobit = bit_tobit, bnot = bit_bnot, band = bit_band, bor = bit_bor,
             bxor = bit_bxor, lshift = bit_lshift, rshift = bit_rshift,
             arshift = bit_arshift, rol = bit_rol, ror = bit_ror, bswap = bit_bswap,
             tohex = bit_tohex}

local struct = {pack = wrap1(struct_pack), unpack = wrapn(struct_unpack),
                size = wrap1(struct_size)}

return {cjson = cjson, cmsgpack = cmsgpack, bit = bit, struct = struct, null = NULL}
