"""EVAL scripts: the script cache (sha1 -> compiled function) and the
shebang line, as Redis 7.0's eval.c.

A script without a shebang runs in "compatibility mode" (it may write, the
caller's flags decide where it runs).  `#!lua flags=no-writes,allow-oom`
declares its flags: a script with flags is checked before it runs
(Scripting.prepare) and an EVAL of a no-writes script is a read command
for routing, READONLY replicas and OOM.
"""

from __future__ import annotations

import hashlib

from pynode.commands import CommandError
from pynode.scripting.runner import EVAL_COMPAT, FLAG_NAMES
from storage.sdsargs import split_args


class Script:
    __slots__ = ("sha", "name", "body", "fn", "flags")

    def __init__(self, sha: bytes, body: bytes, fn, flags: int) -> None:
        self.sha = sha
        self.name = sha.decode()         # how errors and FUNCTION STATS name it
        self.body = body
        self.fn = fn
        self.flags = flags


def shebang_flags(body: bytes) -> tuple[int, int]:
    """evalExtractShebangFlags: (flags, length of the shebang line);
    raises CommandError with Redis's text for a bad shebang."""
    if not body.startswith(b"#!"):
        return EVAL_COMPAT, 0
    end = body.find(b"\n")
    if end < 0:
        raise CommandError("ERR Invalid script shebang")
    parts = split_args(body[:end])
    if not parts:
        raise CommandError("ERR Invalid engine in script shebang")
    if parts[0] != b"#!lua":
        raise CommandError("ERR Unexpected engine in script shebang: %s"
                           % parts[0].decode("utf-8", "replace"))
    flags = 0
    for p in parts[1:]:
        if p.startswith(b"flags="):
            for f in p[6:].split(b","):
                v = FLAG_NAMES.get(f)
                if v is None:
                    raise CommandError("ERR Unexpected flag in script shebang: %s"
                                       % f.decode("utf-8", "replace"))
                flags |= v
        else:
            raise CommandError("ERR Unknown lua shebang option: %s"
                               % p.decode("utf-8", "replace"))
    return flags, end


def sha_of(body: bytes) -> bytes:
    return hashlib.sha1(body).hexdigest().encode()


def create(scripting, body: bytes, sha: bytes | None = None) -> Script:
    """luaCreateFunction: compile and cache (or find) a script."""
    if sha is None:
        sha = sha_of(body)
    s = scripting.scripts.get(sha)
    if s is not None:
        return s
    flags, shebang_len = shebang_flags(body)
    engine = scripting.eval_lua()
    # the shebang line is skipped but its newline kept: line numbers stay
    fn, err = engine.compile(body[shebang_len:], b"@user_script")
    if fn is None:
        raise CommandError(("ERR Error compiling script (new function): %s"
                            % (err or b"").decode("utf-8", "replace"))
                           .replace("\r", " ").replace("\n", " "))
    s = Script(sha, body, fn, flags)
    scripting.scripts[sha] = s
    scripting.scripts_body_bytes += len(body)
    return s


def lookup(scripting, argv: list[bytes], evalsha: bool) -> Script | None:
    """The script of an EVAL/EVALSHA call, or None (EVALSHA of an unknown sha)."""
    if evalsha:
        sha = argv[1].lower()
        if len(sha) != 40:
            return None
        return scripting.scripts.get(sha)
    return create(scripting, argv[1])


def flags_of(scripting, argv: list[bytes], evalsha: bool) -> int:
    """The script's flags for routing/READONLY/OOM (evalGetCommandFlags):
    EVAL_COMPAT when unknown or invalid."""
    if len(argv) < 2:
        return EVAL_COMPAT
    if evalsha:
        s = scripting.scripts.get(argv[1].lower())
        return s.flags if s is not None else EVAL_COMPAT
    s = scripting.scripts.get(sha_of(argv[1]))
    if s is not None:
        return s.flags
    try:
        return shebang_flags(argv[1])[0]
    except CommandError:
        return EVAL_COMPAT
