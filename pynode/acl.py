"""Access control lists: Redis 7.0's acl.c without the I/O.

Users with flags, SHA-256 password hashes and selectors (the root selector
plus any `(...)` ones); a selector has a command bitmap (a Python int, one bit
per command id, the top bit meaning "future commands" as +@all sets it),
allowed first arguments, key patterns with read/write permissions and channel
patterns.  `Acl` holds the users and the ACL LOG.  Rules are parsed and
described exactly as Redis 7.0 does (ACLSetUser, ACLDescribeUser with its
best-fit category approximation); checks follow ACLCheckAllUserCommandPerm.
The caller supplies keys (by key specs) and client-info strings.
"""

from __future__ import annotations

import hashlib
import hmac

from pynode.command_meta import COMMANDS as META
from storage.glob import match as glob_match

CATEGORIES = ("keyspace", "read", "write", "set", "sortedset", "list", "hash", "string",
              "bitmap", "hyperloglog", "geo", "stream", "pubsub", "admin", "fast", "slow",
              "blocking", "dangerous", "connection", "transaction", "scripting")

# selector flags
ROOT, ALLKEYS, ALLCHANNELS, ALLCOMMANDS = 1, 2, 4, 8
# key pattern permissions
READ, WRITE = 1, 2
ALL_PERM = READ | WRITE
# user flags, in the order ACLDescribeUser prints them
ENABLED, DISABLED, NOPASS, SKIP_SANITIZE, SANITIZE = 1, 2, 4, 8, 16
USER_FLAGS = ((ENABLED, "on"), (DISABLED, "off"), (NOPASS, "nopass"),
              (SKIP_SANITIZE, "skip-sanitize-payload"), (SANITIZE, "sanitize-payload"))
# check results (ACL_DENIED_*), ordered as Redis picks the error to report
OK, DENIED_CMD, DENIED_KEY, DENIED_AUTH, DENIED_CHANNEL = 0, 1, 2, 3, 4
REASONS = {DENIED_CMD: "command", DENIED_KEY: "key", DENIED_CHANNEL: "channel",
           DENIED_AUTH: "auth"}
LOG_GROUPING_MS = 60000

# errors of ACLSetUser (ACLSetUserStringError)
E_NOENT = "Unknown command or category name in ACL"
E_INVAL = "Syntax error"
E_EXIST = ("Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and "
           "does not have any effect. Try 'resetkeys' to start with an empty list of patterns")
E_ISDIR = ("Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid "
           "and does not have any effect. Try 'resetchannels' to start with an empty list of "
           "channels")
E_NODEV = "The password you are trying to remove from the user does not exist"
E_BADMSG = ("The password hash must be exactly 64 characters and contain only lowercase "
            "hexadecimal characters")
E_ALREADY = "Duplicate user found. A user can only be defined once in config files"
E_CHILD = "Allowing first-arg of a subcommand is not supported"

# commands whose arguments are channels: name -> (first, literal) (count: 1 or the rest)
CHANNEL_CMDS = {"publish": (True, False), "spublish": (True, False),
                "subscribe": (False, False), "ssubscribe": (False, False),
                "psubscribe": (False, True)}


class AclError(Exception):
    """A rule that ACLSetUser refuses; msg is ACLSetUserStringError's text."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg


def hash_password(p: bytes) -> str:
    return hashlib.sha256(p).hexdigest()


def _valid_hash(h: bytes) -> bool:
    return len(h) == 64 and all(48 <= c <= 57 or 97 <= c <= 102 for c in h)


def _hash_of(op: bytes, clear: bytes) -> str:
    """The hash a password rule names: `clear`-prefixed cleartext, or a hash."""
    if op[:1] == clear:
        return hash_password(op[1:])
    if not _valid_hash(op[1:]):
        raise AclError(E_BADMSG)
    return op[1:].decode()


def has_spaces(s: bytes) -> bool:
    """ACLStringHasSpaces: isspace() or NUL anywhere."""
    return any(c in b" \t\n\r\x0b\x0c\x00" for c in s)


class Catalog:
    """Every Redis 7.0 command (and subcommand) with an id, its categories and
    what +cmd / +@category set (a container's rule covers its subcommands)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.ids: dict[str, int] = {}
        for name, meta in META.items():
            if "|" in name:
                continue
            self._add(name)
            for sub in sorted(meta.subcommands):
                self._add(sub)
        n = len(self.names)
        self.future = n                         # the "future commands" bit
        self.all_mask = (1 << (n + 1)) - 1
        self.subs: dict[int, list[int]] = {}
        self.parent: dict[int, int] = {}
        self.family: list[int] = []             # id -> its bit | its subcommands' bits
        for i, name in enumerate(self.names):
            mask = 1 << i
            for sub in META[name].subcommands:
                sid = self.ids[sub]
                self.subs.setdefault(i, []).append(sid)
                self.parent[sid] = i
                mask |= 1 << sid
            self.family.append(mask)
        self.cat_cmds: dict[str, list[int]] = {}
        self.cat_direct: dict[str, int] = {}    # commands flagged with the category
        self.cat_mask: dict[str, int] = {}      # what +@category sets
        for cat in CATEGORIES:
            tag = "@" + cat
            ids = [i for i, nm in enumerate(self.names) if tag in META[nm].acl_categories]
            self.cat_cmds[cat] = ids
            d = m = 0
            for i in ids:
                d |= 1 << i
                m |= self.family[i]
            self.cat_direct[cat] = d
            self.cat_mask[cat] = m

    def _add(self, name: str) -> None:
        self.ids[name] = len(self.names)
        self.names.append(name)

    def lookup(self, name: bytes) -> int | None:
        """lookupCommandBySdsLogic: "cmd" or "container|sub", any case."""
        try:
            parts = name.decode("utf-8").lower().split("|")
        except UnicodeDecodeError:
            return None
        if len(parts) > 2:
            return None
        base = self.ids.get(parts[0])
        if base is None or "|" in parts[0] or self.names[base] != parts[0]:
            return None
        if len(parts) == 1:
            return base
        if base not in self.subs:
            return None
        sub = self.ids.get(parts[0] + "|" + parts[1])
        return sub


CATALOG = Catalog()


def _category(name: bytes) -> str | None:
    try:
        n = name.decode("ascii").lower()
    except UnicodeDecodeError:
        return None
    return n if n in CATALOG.cat_cmds else None


class Selector:
    __slots__ = ("flags", "allowed", "firstargs", "patterns", "channels")

    def __init__(self, flags: int = 0) -> None:
        self.flags = flags
        self.allowed = 0
        self.firstargs: dict[int, list[bytes]] = {}
        self.patterns: list[list] = []          # [pattern, READ|WRITE]
        self.channels: list[bytes] = []

    def copy(self) -> "Selector":
        s = Selector(self.flags)
        s.allowed = self.allowed
        s.firstargs = {k: list(v) for k, v in self.firstargs.items()}
        s.patterns = [list(p) for p in self.patterns]
        s.channels = list(self.channels)
        return s

    # ------------------------------------------------------------ rules
    def change_perm(self, cid: int, allow: bool) -> None:
        """ACLChangeSelectorPerm: a command and its subcommands."""
        mask = CATALOG.family[cid]
        if allow:
            self.allowed |= mask
        else:
            self.allowed &= ~mask
            self.flags &= ~ALLCOMMANDS
        self.firstargs.pop(cid, None)

    def set_category(self, cat: str, allow: bool) -> None:
        if allow:
            self.allowed |= CATALOG.cat_mask[cat]
        else:
            self.allowed &= ~CATALOG.cat_mask[cat]
            self.flags &= ~ALLCOMMANDS
        if self.firstargs:
            for cid in CATALOG.cat_cmds[cat]:
                self.firstargs.pop(cid, None)

    def apply(self, op: bytes) -> None:
        """ACLSetSelector; raises AclError."""
        low = op.lower()
        if low in (b"allkeys", b"~*"):
            self.flags |= ALLKEYS
            self.patterns = []
        elif low == b"resetkeys":
            self.flags &= ~ALLKEYS
            self.patterns = []
        elif low in (b"allchannels", b"&*"):
            self.flags |= ALLCHANNELS
            self.channels = []
        elif low == b"resetchannels":
            self.flags &= ~ALLCHANNELS
            self.channels = []
        elif low in (b"allcommands", b"+@all"):
            self.allowed = CATALOG.all_mask
            self.flags |= ALLCOMMANDS
            self.firstargs = {}
        elif low in (b"nocommands", b"-@all"):
            self.allowed = 0
            self.flags &= ~ALLCOMMANDS
            self.firstargs = {}
        elif op[:1] in (b"~", b"%"):
            self._key_pattern(op)
        elif op[:1] == b"&":
            if self.flags & ALLCHANNELS:
                raise AclError(E_ISDIR)
            pat = op[1:]
            if has_spaces(pat):
                raise AclError(E_INVAL)
            if pat not in self.channels:
                self.channels.append(pat)
            self.flags &= ~ALLCHANNELS
        elif op[:1] == b"+" and op[1:2] != b"@":
            self._allow(op[1:])
        elif op[:1] == b"-" and op[1:2] != b"@":
            cid = CATALOG.lookup(op[1:])
            if cid is None:
                raise AclError(E_NOENT)
            self.change_perm(cid, False)
        elif op[:2] in (b"+@", b"-@"):
            cat = _category(op[2:])
            if cat is None:
                raise AclError(E_NOENT)
            self.set_category(cat, op[:1] == b"+")
        else:
            raise AclError(E_INVAL)

    def _key_pattern(self, op: bytes) -> None:
        if self.flags & ALLKEYS:
            raise AclError(E_EXIST)
        flags = 0
        offset = 1
        if op[:1] == b"%":
            n = len(op)
            while offset < n:
                ch = op[offset:offset + 1].upper()
                if ch == b"R" and not flags & READ:
                    flags |= READ
                elif ch == b"W" and not flags & WRITE:
                    flags |= WRITE
                elif ch == b"~":
                    offset += 1
                    break
                else:
                    raise AclError(E_INVAL)
                offset += 1
            if not flags:
                raise AclError(E_INVAL)
        else:
            flags = ALL_PERM
        pat = op[offset:]
        if has_spaces(pat):
            raise AclError(E_INVAL)
        for p in self.patterns:
            if p[0] == pat:
                p[1] |= flags
                break
        else:
            self.patterns.append([pat, flags])
        self.flags &= ~ALLKEYS

    def _allow(self, name: bytes) -> None:
        bar = name.rfind(b"|")
        if bar < 0:
            cid = CATALOG.lookup(name)
            if cid is None:
                raise AclError(E_NOENT)
            self.change_perm(cid, True)
            return
        head, sub = name[:bar], name[bar + 1:]
        cid = CATALOG.lookup(head)
        if cid is None:
            raise AclError(E_NOENT)
        if cid in CATALOG.parent:
            raise AclError(E_CHILD)
        if not sub:
            raise AclError(E_INVAL)
        if cid in CATALOG.subs:
            sid = CATALOG.lookup(name)
            if sid is None:
                raise AclError(E_NOENT)
            self.change_perm(sid, True)
            return
        args = self.firstargs.setdefault(cid, [])
        if sub.lower() not in (a.lower() for a in args):
            args.append(sub)

    # ------------------------------------------------------------ description
    def command_rules(self) -> str:
        """ACLDescribeSelectorCommandRules: +@all/-@all, best-fit categories,
        then the single commands that still differ."""
        cat = CATALOG
        rules = []
        fake = Selector()
        additive = not (self.allowed >> cat.future) & 1
        if additive:
            rules.append("-@all")
        else:
            rules.append("+@all")
            fake.allowed = cat.all_mask
        temp = self.allowed
        applied = set()
        while True:
            best = None
            mindiff, maxsame = 1 << 62, 0
            for c in CATEGORIES:
                if c in applied:
                    continue
                direct = cat.cat_direct[c]
                on = (temp & direct).bit_count()
                off = direct.bit_count() - on
                diff, same = (off, on) if additive else (on, off)
                if same > diff and (diff < mindiff or (diff == mindiff and same > maxsame)):
                    best, mindiff, maxsame = c, diff, same
            if best is None:
                break
            fake.set_category(best, additive)
            temp = (temp & ~cat.cat_mask[best]) if additive else (temp | cat.cat_mask[best])
            rules.append(("+@" if additive else "-@") + best)
            applied.add(best)
        mine = self.allowed
        for cid in range(len(cat.names)):
            if cid in cat.parent:
                continue
            self._single(cid, fake, rules)
            for sid in cat.subs.get(cid, ()):
                self._single(sid, fake, rules)
            if not (mine >> cid) & 1 and cid in self.firstargs:
                for a in self.firstargs[cid]:
                    rules.append("+%s|%s" % (cat.names[cid], a.decode("utf-8", "replace")))
        assert fake.allowed & ~(1 << cat.future) == mine & ~(1 << cat.future), rules
        return " ".join(rules)

    def _single(self, cid: int, fake: "Selector", rules: list) -> None:
        userbit = (self.allowed >> cid) & 1
        if userbit != (fake.allowed >> cid) & 1:
            rules.append(("+" if userbit else "-") + CATALOG.names[cid])
            fake.change_perm(cid, bool(userbit))

    def key_patterns(self) -> list[str]:
        out = []
        for pat, flags in self.patterns:
            prefix = "~" if flags == ALL_PERM else ("%R~" if flags == READ else "%W~")
            out.append(prefix + pat.decode("utf-8", "surrogateescape"))
        return out

    def describe(self) -> str:
        parts = ["~*"] if self.flags & ALLKEYS else self.key_patterns()
        if self.flags & ALLCHANNELS:
            parts.append("&*")
        else:
            parts.append("resetchannels")
            parts.extend("&" + c.decode("utf-8", "surrogateescape") for c in self.channels)
        parts.append(self.command_rules())
        return " ".join(parts)

    # ------------------------------------------------------------ checks
    def check_cmd(self, cid: int, noauth: bool, argv: list[bytes], get_keys,
                  channels) -> tuple[int, int]:
        """ACLSelectorCheckCmd: (result, index of the denied argument)."""
        if not self.flags & ALLCOMMANDS and not noauth:
            if not (self.allowed >> cid) & 1:
                args = self.firstargs.get(cid)
                if len(argv) < 2 or not args:
                    return DENIED_CMD, 0
                idx = 2 if cid in CATALOG.parent else 1
                if idx >= len(argv):
                    return DENIED_CMD, 0
                a = argv[idx].lower()
                if not any(x.lower() == a for x in args):
                    return DENIED_CMD, 0
        if not self.flags & ALLKEYS and get_keys is not None:
            for idx, kflags in get_keys():
                if not self.check_key(argv[idx], kflags):
                    return DENIED_KEY, idx
        if not self.flags & ALLCHANNELS and channels is not None:
            single, literal = channels
            end = 2 if single else len(argv)
            for j in range(1, end):
                if not self.check_channel(argv[j], literal):
                    return DENIED_CHANNEL, j
        return OK, 0

    def check_key(self, key: bytes, kflags) -> bool:
        if self.flags & ALLKEYS:
            return True
        need = 0
        for f in kflags:
            if f == "access":
                need |= READ
            elif f in ("insert", "delete", "update"):
                need |= WRITE
        for pat, flags in self.patterns:
            if flags & need == need and glob_match(pat, key):
                return True
        return False

    def check_channel(self, channel: bytes, literal: bool) -> bool:
        if self.flags & ALLCHANNELS:
            return True
        for pat in self.channels:
            if (pat == channel) if literal else glob_match(pat, channel):
                return True
        return False


class User:
    __slots__ = ("name", "flags", "passwords", "selectors", "unrestricted")

    def __init__(self, name: bytes, pubsub_default: int = 0) -> None:
        self.name = name
        self.flags = DISABLED
        self.passwords: list[str] = []
        self.selectors = [Selector(ROOT | pubsub_default)]
        self.unrestricted = False

    @property
    def root(self) -> Selector:
        return self.selectors[0]

    @property
    def enabled(self) -> bool:
        return not self.flags & DISABLED

    @property
    def nopass(self) -> bool:
        return bool(self.flags & NOPASS)

    def copy(self, name: bytes | None = None) -> "User":
        u = User(self.name if name is None else name)
        u.copy_from(self)
        return u

    def copy_from(self, src: "User") -> None:
        """ACLCopyUser: the rules, not the name."""
        self.flags = src.flags
        self.passwords = list(src.passwords)
        self.selectors = [s.copy() for s in src.selectors]
        self.refresh()

    def refresh(self) -> None:
        need = ALLKEYS | ALLCHANNELS | ALLCOMMANDS
        self.unrestricted = self.root.flags & need == need

    def apply(self, op: bytes, pubsub_default: int = 0) -> None:
        """ACLSetUser; raises AclError (nothing is partially applied by one op)."""
        try:
            self._apply(op, pubsub_default)
        finally:
            self.refresh()

    def _apply(self, op: bytes, pubsub_default: int) -> None:
        if not op:
            return
        low = op.lower()
        if low == b"on":
            self.flags = (self.flags | ENABLED) & ~DISABLED
        elif low == b"off":
            self.flags = (self.flags | DISABLED) & ~ENABLED
        elif low == b"skip-sanitize-payload":
            self.flags = (self.flags | SKIP_SANITIZE) & ~SANITIZE
        elif low == b"sanitize-payload":
            self.flags = (self.flags | SANITIZE) & ~SKIP_SANITIZE
        elif low == b"nopass":
            self.flags |= NOPASS
            self.passwords = []
        elif low == b"resetpass":
            self.flags &= ~NOPASS
            self.passwords = []
        elif op[:1] in (b">", b"#"):
            h = _hash_of(op, b">")
            if h not in self.passwords:
                self.passwords.append(h)
            self.flags &= ~NOPASS
        elif op[:1] in (b"<", b"!"):
            h = _hash_of(op, b"<")
            if h not in self.passwords:
                raise AclError(E_NODEV)
            self.passwords.remove(h)
        elif op[:1] == b"(" and op[-1:] == b")":
            s = Selector(pubsub_default)
            from storage.sdsargs import split_args
            for a in split_args(op[1:-1]) or ():
                s.apply(a)
            self.selectors.append(s)
        elif low == b"clearselectors":
            del self.selectors[1:]
        elif low == b"reset":
            self._apply(b"resetpass", pubsub_default)
            self.root.apply(b"resetkeys")
            self.root.apply(b"resetchannels")
            if pubsub_default & ALLCHANNELS:
                self.root.apply(b"allchannels")
            self._apply(b"off", pubsub_default)
            self._apply(b"sanitize-payload", pubsub_default)
            del self.selectors[1:]
            self.root.apply(b"-@all")
        else:
            self.root.apply(op)

    def describe(self) -> str:
        """ACLDescribeUser (ACL LIST and the ACL file, after "user <name> ")."""
        parts = [n for f, n in USER_FLAGS if self.flags & f]
        parts.extend("#" + p for p in self.passwords)
        out = " ".join(parts)
        for s in self.selectors:
            d = s.describe()
            if s.flags & ROOT:
                out = out + " " + d if out else d
            else:
                out += " (" + d + ")"
        return out

    def check_password(self, password: bytes) -> bool:
        if self.flags & DISABLED:
            return False
        if self.flags & NOPASS:
            return True
        h = hash_password(password)
        ok = False
        for p in self.passwords:
            ok |= hmac.compare_digest(h, p)
        return ok

    def check(self, cid: int, noauth: bool, argv: list[bytes], find_keys,
              channels) -> tuple[int, int]:
        """ACLCheckAllUserCommandPerm: (result, argv index to log).
        find_keys() -> [(index, key-spec flags)] or None when the command has
        no keys; channels: CHANNEL_CMDS's entry or None."""
        relevant, last_idx = DENIED_CMD, 0
        cache = []

        def get_keys():
            if not cache:
                cache.append(find_keys())
            return cache[0]

        gk = get_keys if find_keys is not None else None
        for s in self.selectors:
            r, idx = s.check_cmd(cid, noauth, argv, gk, channels)
            if r == OK:
                return OK, 0
            if r > relevant or (r == relevant and idx > last_idx):
                relevant, last_idx = r, idx
        return relevant, last_idx

    def check_key(self, key: bytes, kflags) -> bool:
        return any(s.check_key(key, kflags) for s in self.selectors)

    def check_channel(self, channel: bytes, literal: bool) -> bool:
        return any(s.check_channel(channel, literal) for s in self.selectors)


def merge_selector_args(args: list[bytes]) -> tuple[list[bytes] | None, int]:
    """ACLMergeSelectorArguments: a selector split over several arguments is
    joined with spaces; (None, index of the unmatched "(") when unbalanced."""
    out: list[bytes] = []
    sel = None
    start = -1
    for j, op in enumerate(args):
        if op[:1] == b"(" and op[-1:] != b")":
            sel = op
            start = j
            continue
        if start != -1:
            sel += b" " + op
            if op[-1:] == b")":
                start = -1
                out.append(sel)
            continue
        out.append(op)
    if start != -1:
        return None, start
    return out, 0


def check_user_line(users: list[list[bytes]], argv: list[bytes]) -> str:
    """ACLAppendUserForLoading: a `user <name> <rules>` config line is tried
    on a scratch user (unknown commands are only refused when loaded) and
    appended to `users`; returns the config error text or "".  The argument
    named in the error is argv[rule index], as Redis 7.0 reports it."""
    name = argv[1]
    if any(u[0] == name for u in users):
        return "Error in user declaration '%s': %s" % (argv[1].decode("utf-8", "replace"),
                                                        E_ALREADY)
    merged, bad = merge_selector_args(argv[2:])
    if merged is None:
        return "Error in user declaration '%s': %s" % (
            argv[bad].decode("utf-8", "replace"), E_NOENT)
    fake = User(b"__fakeuser:0__")
    for j, op in enumerate(merged):
        try:
            fake.apply(op)
        except AclError as e:
            if e.msg != E_NOENT:
                return "Error in user declaration '%s': %s" % (
                    argv[j].decode("utf-8", "replace"), e.msg)
    users.append([name] + merged)
    return ""


class LogEntry:
    __slots__ = ("count", "reason", "context", "object", "username", "ctime", "cinfo")

    def __init__(self, reason, context, obj, username, ctime, cinfo) -> None:
        self.count = 1
        self.reason = reason
        self.context = context
        self.object = obj
        self.username = username
        self.ctime = ctime
        self.cinfo = cinfo


class Acl:
    """The users (`users`: name -> User, `default`) and the ACL LOG."""

    def __init__(self, pubsub_default: int = 0) -> None:
        self.pubsub_default = pubsub_default
        self.users: dict[bytes, User] = {}
        self.default = self.create_default()
        self.users[b"default"] = self.default
        self.log: list[LogEntry] = []        # newest first
        self.log_max = 128

    def create_default(self) -> User:
        u = User(b"default", self.pubsub_default)
        for op in (b"+@all", b"~*", b"&*", b"on", b"nopass"):
            u.apply(op)
        return u

    def new_user(self, name: bytes) -> User:
        return User(name, self.pubsub_default)

    def get(self, name: bytes) -> User | None:
        return self.users.get(name)

    def sorted_users(self) -> list[User]:
        return [self.users[n] for n in sorted(self.users)]

    def authenticate(self, name: bytes, password: bytes) -> User | None:
        u = self.users.get(name)
        if u is None or not u.check_password(password):
            return None
        return u

    def auth_required(self) -> bool:
        d = self.default
        return not d.flags & NOPASS or bool(d.flags & DISABLED)

    def set_default_password(self, password: bytes | None) -> None:
        """requirepass: ACLUpdateDefaultUserPassword."""
        self.default.apply(b"resetpass")
        self.default.apply(b">" + password if password else b"nopass")

    def setuser(self, name: bytes, ops: list[bytes]) -> tuple[User | None, User]:
        """Apply rules on a copy: (the existing user or None, the new rules);
        raises AclError(msg, op) for the first refused rule."""
        old = self.users.get(name)
        temp = old.copy() if old is not None else self.new_user(name)
        for op in ops:
            try:
                temp.apply(op, self.pubsub_default)
            except AclError as e:
                e.op = op
                raise
        return old, temp

    def commit(self, name: bytes, old: User | None, temp: User) -> User:
        if old is None:
            old = self.users[name] = self.new_user(name)
        old.copy_from(temp)
        return old

    # ------------------------------------------------------------ file format
    def render(self) -> str:
        """The ACL file: one "user <name> <rules>" line per user."""
        return "".join("user %s %s\n" % (u.name.decode("utf-8", "surrogateescape"),
                                          u.describe()) for u in self.sorted_users())

    def parse_file(self, text: bytes, filename: str) -> tuple[dict[bytes, User] | None, str]:
        """ACLLoadFromFile without touching the live users: (users, "") or
        (None, the errors as Redis reports them)."""
        errors = ""
        users: dict[bytes, User] = {}
        for i, raw in enumerate(text.split(b"\n")):
            line = raw.strip(b" \t\r\n")
            linenum = i + 1
            if not line:
                continue
            argv = [a for a in line.split(b" ") if a]
            if not argv:
                continue
            if argv[0] != b"user" or len(argv) < 2:
                errors += ("%s:%d should start with user keyword followed by the username. "
                           % (filename, linenum))
                continue
            name = argv[1]
            if has_spaces(name):
                errors += ("'%s:%d: username '%s' contains invalid characters. "
                           % (filename, linenum, name.decode("utf-8", "replace")))
                continue
            if name in users:
                errors += ("WARNING: Duplicate user '%s' found on line %d. "
                           % (name.decode("utf-8", "replace"), linenum))
                continue
            u = users[name] = self.new_user(name)
            merged, _ = merge_selector_args(argv[2:])
            if merged is None:
                errors += ("%s:%d: Unmatched parenthesis in selector definition."
                           % (filename, linenum))
                merged = []
            for op in merged:
                try:
                    u.apply(op.strip(b"\t\r\n"), self.pubsub_default)
                except AclError as e:
                    errors += "%s:%d: %s. " % (filename, linenum, e.msg)
        if errors:
            return None, (errors + "WARNING: ACL errors detected, no change to the "
                          "previously active ACL rules was performed")
        return users, ""

    def install(self, users: dict[bytes, User]) -> list[User]:
        """Replace every user (ACL LOAD): the default user object is kept with
        the new rules; returns the users that are gone (their clients go)."""
        new_default = users.pop(b"default", None) or self.create_default()
        gone = [u for n, u in self.users.items() if n != b"default"]
        self.default.copy_from(new_default)
        users[b"default"] = self.default
        self.users = users
        return gone

    # ------------------------------------------------------------ log
    def add_log(self, reason: int, context: str, obj: bytes, username: bytes,
                now_ms: int, cinfo: str) -> None:
        """addACLLogEntry: similar recent entries are grouped (count += 1)."""
        le = LogEntry(reason, context, obj, username, now_ms, cinfo)
        for i, cur in enumerate(self.log[:10]):
            if (cur.reason == reason and cur.context == context
                    and abs(cur.ctime - now_ms) <= LOG_GROUPING_MS
                    and cur.object == obj and cur.username == username):
                cur.cinfo = cinfo
                cur.ctime = now_ms
                cur.count += 1
                del self.log[i]
                self.log.insert(0, cur)
                return
        self.log.insert(0, le)
        del self.log[self.log_max:]
