"""Which arguments of a command are keys: Redis 7.0's getKeysFromCommand.

Key specs from command_meta (begin_search + find_keys) where they describe the
command fully, and the getkeys_proc fallbacks Redis keeps for the rest (SORT,
MIGRATE, SET with GET, BITFIELD, and finders registered with @command(keys=)).
Used by COMMAND GETKEYS and by cluster routing.
"""

from __future__ import annotations

from pynode.commands import KEY_FINDERS, CommandError, parse_int


class _InvalidSpec(Exception):
    pass


def keys_by_specs(meta, argv: list[bytes]) -> list[tuple[int, tuple]]:
    """[(argv index, key-spec flags)]; raises _InvalidSpec as Redis's invalid_spec."""
    argc = len(argv)
    out = []
    for spec in meta.key_specs:
        if "not_key" in spec.flags:
            continue
        bs = spec.begin_search
        if bs[0] == "index":
            first = bs[1]
        elif bs[0] == "keyword":
            kw, startfrom = bs[1].encode().lower(), bs[2]
            kwlen = len(kw)
            start = startfrom if startfrom > 0 else argc + startfrom
            end = argc - 1 if startfrom > 0 else 1
            first = 0
            i = start
            while True:
                if i >= argc or i < 1:
                    break
                # (MIGRATE's KEYS is searched from the end, past every key)
                if len(argv[i]) == kwlen and argv[i].lower() == kw:
                    first = i + 1
                    break
                if i == end:
                    break
                i = i + 1 if start <= end else i - 1
            if not first:
                continue
        else:
            raise _InvalidSpec
        fk = spec.find_keys
        if fk[0] == "range":
            step = fk[2]
            if fk[1] >= 0:
                last = first + fk[1]
            elif not fk[3]:
                last = argc + fk[1]
            else:
                last = first + ((argc - first) // fk[3] + fk[1])
        elif fk[0] == "keynum":
            step = fk[3]
            if fk[1] >= argc - first:
                continue
            kn = argv[first + fk[1]]
            try:
                numkeys = parse_int(kn)
            except CommandError:
                raise _InvalidSpec from None
            if numkeys < 0:
                raise _InvalidSpec
            first += fk[2]
            last = first + numkeys - 1
        else:
            raise _InvalidSpec
        if last >= argc or last < first or first >= argc:
            raise _InvalidSpec
        for i in range(first, last + 1, step):
            out.append((i, spec.flags))
        if "incomplete" in spec.flags:
            raise _InvalidSpec
    return out


def _native_keys(cmd, argv: list[bytes]) -> list[tuple[int, tuple]]:
    """The getkeys_proc fallbacks of Redis 7.0 (positions with flags)."""
    name = cmd.name
    specs = cmd.meta.key_specs
    n = len(argv)
    if name in ("sort", "sort_ro"):
        out = [(1, specs[0].flags)]
        if name == "sort":
            i = 2
            while i < n:
                a = argv[i].lower()
                if a == b"limit":
                    i += 2
                elif a in (b"get", b"by"):
                    i += 1
                elif a == b"store" and i + 1 < n:
                    out.append((i + 1, specs[2].flags))
                    i += 1
                i += 1
        return out
    if name == "migrate":
        if n > 6:
            for i in range(6, n):
                if argv[i].lower() == b"keys":
                    if argv[3]:
                        return []
                    return [(j, specs[1].flags) for j in range(i + 1, n)]
        return [(3, specs[0].flags)] if argv[3] else []
    if name == "set":
        get = any(a.lower() == b"get" for a in argv[3:])
        return [(1, ("RW", "access", "update") if get else ("OW", "update"))]
    if name == "bitfield":
        ro = True
        i = 2
        while i < n:
            a = argv[i].lower()
            if a in (b"set", b"incrby"):
                ro = False
                break
            i += 1
        return [(1, ("RO", "access") if ro else ("RW", "access", "update"))]
    finder = KEY_FINDERS.get(name)
    if finder is not None:
        flags = specs[0].flags if specs else ()
        keys = finder(argv)
        pos = []
        used = set()
        for k in keys:
            for i in range(1, n):
                if i not in used and argv[i] == k:
                    used.add(i)
                    pos.append((i, flags))
                    break
        return pos
    return []


def command_keys(cmd, argv: list[bytes]) -> list[tuple[int, tuple]]:
    specs = cmd.meta.key_specs
    has_keyspec = any("not_key" not in s.flags for s in specs)
    has_varflags = any("variable_flags" in s.flags for s in specs)
    if has_keyspec and not has_varflags:
        try:
            return keys_by_specs(cmd.meta, argv)
        except _InvalidSpec:
            pass
    return _native_keys(cmd, argv)


_NATIVE = {"sort", "sort_ro", "migrate", "set", "bitfield", "eval", "evalsha", "eval_ro",
           "evalsha_ro", "fcall", "fcall_ro", "zunion", "zinter", "zdiff", "zunionstore",
           "zinterstore", "zdiffstore", "zintercard", "sintercard", "lmpop", "blmpop",
           "zmpop", "bzmpop", "georadius", "georadiusbymember", "xread", "xreadgroup"}


def has_keys(cmd) -> bool:
    return (cmd.name in _NATIVE or cmd.name in KEY_FINDERS
            or any("not_key" not in s.flags for s in cmd.meta.key_specs))
