"""Secrets kept out of SLOWLOG and MONITOR, as Redis's redactClientCommandArgument:
AUTH's arguments, HELLO's AUTH user and password, MIGRATE's AUTH/AUTH2
credentials, every ACL SETUSER argument after the subcommand, and the values of
sensitive directives in CONFIG SET."""

from __future__ import annotations

REDACTED = b"(redacted)"
# CONFIG SET values Redis 7.0.15 hides (SENSITIVE_CONFIG)
SENSITIVE = frozenset((b"requirepass", b"masterauth", b"masteruser"))


def _hidden(argv: list[bytes]) -> set[int]:
    name = argv[0].lower()
    n = len(argv)
    if name == b"auth":
        return set(range(1, n))
    if name == b"hello":
        for i in range(2, n):
            if argv[i].lower() == b"auth":
                return {i + 1, i + 2} & set(range(n))
        return set()
    if name == b"migrate":
        out: set[int] = set()
        for i in range(6, n):
            opt = argv[i].lower()
            if opt == b"auth":
                out |= {i + 1}
            elif opt == b"auth2":
                out |= {i + 1, i + 2}
        return out & set(range(n))
    if n > 2 and name == b"acl" and argv[1].lower() == b"setuser":
        return set(range(2, n))
    if n > 3 and name == b"config" and argv[1].lower() == b"set":
        return {i + 1 for i in range(2, n - 1, 2) if argv[i].lower() in SENSITIVE}
    return set()


def redacted(argv: list[bytes]) -> list[bytes]:
    """argv with its secrets replaced (the same list when it has none)."""
    if not argv or argv[0].lower() not in (b"auth", b"hello", b"migrate", b"acl", b"config"):
        return argv
    hide = _hidden(argv)
    if not hide:
        return argv
    return [REDACTED if i in hide else a for i, a in enumerate(argv)]
