"""CONFIG GET / SET / REWRITE / RESETSTAT (config.c).

Reply shapes and error texts follow Redis 7.0.15 (checked side by side with a
real redis-server).
"""

from __future__ import annotations

import os

from pynode import info as infomod
from pynode.commands import SYNTAX, CommandError, command
from pynode.commands.server import _help, _s, _is_local
from pynode.config_table import (ALIASES, DIRECTIVES, FILE_ONLY, HIDDEN, PROTECTED,
                                 DENY_LOADING, merge_client_output_buffer_limit, normalize)
from pynode.resp import OK, Map, encode
from storage.durable import atomic_write
from storage.glob import match as glob_match
from storage.sdsargs import quote


CONFIG_HELP = [
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "REWRITE",
    "    Rewrite the configuration file.",
]


def _config_names():
    names = [n for n in DIRECTIVES if n not in FILE_ONLY]
    names.extend(a for a, n in ALIASES.items() if n not in FILE_ONLY)
    return names


_CONFIG_NAMES = _config_names()


def _canonical(name: str):
    n = name.lower()
    if n in FILE_ONLY:
        return None
    if n in DIRECTIVES:
        return n
    return ALIASES.get(n)


@command("config|help")
def config_help(c, argv):
    return _help("CONFIG", CONFIG_HELP)


@command("config|get")
def config_get(c, argv):
    values = c.srv.cfg.values
    out: dict[bytes, bytes] = {}
    seen: set[str] = set()
    for pat in argv[2:]:
        p = _s(pat)
        if not any(ch in p for ch in "[*?"):
            cname = _canonical(p)
            if cname is not None and p.lower() not in seen:
                seen.add(p.lower())
                out[pat] = values.get(cname, "").encode("utf-8", "surrogateescape")
            continue
        for name in _CONFIG_NAMES:
            cname = DIRECTIVES[name].name if name in DIRECTIVES else ALIASES[name]
            if cname in HIDDEN or name in seen:
                continue
            if glob_match(pat, name.encode(), nocase=True):
                seen.add(name)
                out[name.encode()] = values.get(cname, "").encode("utf-8", "surrogateescape")
    return encode(Map(out), c.resp)


def _allow_protected(c) -> bool:
    v = c.srv.cfg.get("enable-protected-configs")
    return v == "yes" or (v == "local" and _is_local(c))


@command("config|set")
def config_set(c, argv):
    if (len(argv) - 2) % 2:
        raise CommandError(SYNTAX)
    srv = c.srv
    cfg = srv.cfg
    pairs = []
    unknown = None
    err = None
    for i in range(2, len(argv), 2):
        name = _s(argv[i])
        cname = _canonical(name)
        if cname is None:
            if unknown is None and err is None:
                unknown = name
            continue
        if unknown is not None or err is not None:
            continue
        d = DIRECTIVES[cname]
        if d.immutable:
            err = (name, "can't set immutable config")
            continue
        if cname in PROTECTED and not _allow_protected(c):
            err = (name, "can't set protected config")
            continue
        if srv.loading and cname in DENY_LOADING:
            raise CommandError("LOADING Redis is loading the dataset in memory")
        if any(p[0] == cname for p in pairs):
            err = (name, "duplicate parameter")
            continue
        pairs.append((cname, name, _s(argv[i + 1])))
    if unknown is not None:
        raise CommandError("ERR Unknown option or number of arguments for CONFIG SET - '%s'"
                           % unknown)
    if err is not None:
        raise CommandError("ERR CONFIG SET failed (possibly related to argument '%s') - %s"
                           % err)
    # validate everything first, then apply (all or nothing, as Redis)
    new = {}
    for cname, name, value in pairs:
        d = DIRECTIVES[cname]
        try:
            if cname == "client-output-buffer-limit":
                v = merge_client_output_buffer_limit(cfg.values[cname], [value])
            elif cname == "dir":
                v = normalize(d, [value])
                if not os.path.isdir(v):
                    raise ValueError("No such file or directory")
                v = os.path.abspath(v)
            else:
                v = normalize(d, [value])
        except ValueError as e:
            raise CommandError("ERR CONFIG SET failed (possibly related to argument '%s') - %s"
                               % (name, e)) from None
        new[cname] = (name, v)
    old = {cname: cfg.values[cname] for cname in new}
    if "notify-keyspace-events" in new:
        from pynode.config import NOTIFY_NEW, keyspace_new
        old[NOTIFY_NEW] = cfg.values.get(NOTIFY_NEW, "")
        new[NOTIFY_NEW] = (NOTIFY_NEW, keyspace_new(
            [v for c2, _, v in pairs if c2 == "notify-keyspace-events"]))
    for cname, (name, v) in new.items():
        cfg.values[cname] = v
    try:
        _apply_live(c, old, new)
    except _ApplyError as e:
        srv.log.warning("Failed applying new configuration. Possibly related to new %s "
                        "setting. Restoring previous settings." % e.name)
        for cname, v in old.items():
            cfg.values[cname] = v
        try:
            srv.apply_config()
        except Exception:  # noqa: BLE001 - restoring the previous values
            pass
        raise CommandError("ERR CONFIG SET failed (possibly related to argument '%s') - %s"
                           % (e.name, e.msg)) from None
    return OK


class _ApplyError(Exception):
    def __init__(self, name: str, msg: str) -> None:
        super().__init__(msg)
        self.name = name
        self.msg = msg


def _apply_live(c, old: dict, new: dict) -> None:
    """Make changed values take effect (raises _ApplyError to roll back)."""
    srv = c.srv
    cfg = srv.cfg
    changed = {k for k in new if old[k] != cfg.values[k]}
    if "dir" in changed:
        try:
            os.chdir(cfg.values["dir"])
        except OSError as e:
            raise _ApplyError(new["dir"][0], e.strerror or str(e))
    if "maxclients" in changed:
        fits = srv.adjust_open_files_limit()
        if fits != cfg.int("maxclients"):
            if "dir" in changed:
                os.chdir(old["dir"])
            raise _ApplyError(new["maxclients"][0], "The operating system is not able to "
                              "handle the specified number of clients, try with %d" % fits)
    if any(k.startswith("tls-") for k in changed):
        _reconfigure_tls(srv, new, changed)
    if changed & {"port", "bind", "tls-port"}:
        key = next(k for k in ("port", "tls-port", "bind") if k in changed)
        name = new[key][0]
        msg = ("Failed to bind to specified addresses." if key == "bind"
               else "Unable to listen on this port")
        try:
            srv.rebind(plain=bool(changed & {"port", "bind"}),
                    tls=bool(changed & {"tls-port", "bind"}))
        except OSError:
            if "dir" in changed:
                os.chdir(old["dir"])
            raise _ApplyError(name, msg)
    if changed & {"metrics-port", "bind"}:
        try:
            srv.metrics.listen(rebind="bind" in changed)
        except OSError:
            raise _ApplyError(new.get("metrics-port", new.get("bind"))[0],
                              "Unable to listen on this port")
    srv.apply_config()
    if "appendonly" in changed:
        _set_appendonly(srv, cfg.bool("appendonly"))


def _reconfigure_tls(srv, new: dict, changed: set) -> None:
    """applyTlsCfg / applyTLSPort: a tls-* change rebuilds the contexts when
    TLS is in use (or is being turned on); a failure refuses the change."""
    from pynode import tls
    try:
        srv.reload_tls()
    except tls.TLSConfigError as e:
        srv.log.warning(str(e))
        name = new[sorted(k for k in changed if k.startswith("tls-"))[0]][0]
        raise _ApplyError(name, "Unable to update TLS configuration. Check server logs.")


def _set_appendonly(srv, on: bool) -> None:
    if on:
        srv.make_aof()
        if not srv.aof.enabled:
            try:
                srv.aof.start(srv.ks)
            except OSError as e:
                srv.cfg.values["appendonly"] = "no"
                raise _ApplyError("appendonly", "Unable to turn on AOF. Check server logs.") \
                    from e
    elif srv.aof is not None and srv.aof.enabled:
        srv.aof.stop()


@command("config|resetstat")
def config_resetstat(c, argv):
    srv = c.srv
    srv.reset_stats()
    infomod.reset_stats(srv)
    return OK


SIGNATURE = "# Generated by CONFIG REWRITE"


def _repr(s: str) -> str:
    return quote(s.encode("utf-8", "surrogateescape"))


def _fmt_memory(n: int) -> str:
    gb, mb, kb = 1024 ** 3, 1024 ** 2, 1024
    if n and n % gb == 0:
        return "%dgb" % (n // gb)
    if n and n % mb == 0:
        return "%dmb" % (n // mb)
    if n and n % kb == 0:
        return "%dkb" % (n // kb)
    return "%d" % n


def _rewrite_lines(srv, name: str) -> tuple[list[str], bool]:
    """(lines for this directive, force) as rewriteConfig* would produce them."""
    cfg = srv.cfg
    d = DIRECTIVES[name]
    v = cfg.values.get(name, d.default)
    force = v != d.default
    kind = d.kind
    if name == "save":
        if not v:
            return ['save ""'], True
        p = v.split()
        return ["save %s %s" % (p[i], p[i + 1]) for i in range(0, len(p), 2)], True
    if name == "dir":
        return ["dir %s" % _repr(os.getcwd())], True
    if name == "requirepass":
        return (["requirepass %s" % _repr(v)] if v else []), bool(v)
    if name == "replicaof":
        return (["replicaof %s" % v] if v else []), bool(v)
    if name == "client-output-buffer-limit":
        p = v.split()
        dp = d.default.split()
        lines = []
        f = False
        for i in range(0, len(p), 4):
            cls = p[i]
            vals = [int(x) for x in p[i + 1:i + 4]]
            j = dp.index(cls) if cls in dp else -1
            cf = j < 0 or dp[j + 1:j + 4] != p[i + 1:i + 4]
            f = f or cf
            if cf:
                lines.append("client-output-buffer-limit %s %s %s %d"
                             % (cls, _fmt_memory(vals[0]), _fmt_memory(vals[1]), vals[2]))
        return lines, f
    if name == "latency-tracking-info-percentiles":
        return ["%s %s" % (name, v)], True  # Redis always writes it
    if name == "notify-keyspace-events":
        return ["%s %s" % (name, _repr(v))], force
    if kind in ("string", "sds"):
        return (["%s %s" % (name, _repr(v))] if (v or force) else []), force
    if kind == "memory":
        return ["%s %s" % (name, _fmt_memory(int(v)))], force
    if kind == "special" and name == "bind":
        return ["bind %s" % v], force
    return ["%s %s" % (name, v)], force


def _directive_of_line(line: str):
    from pynode.resp import split_args
    parts = split_args(line.encode("utf-8", "surrogateescape"))
    if not parts:
        return None
    n = parts[0].decode("utf-8", "surrogateescape").lower()
    if n in ALIASES:
        n = ALIASES[n]
    return n


def rewrite_config(srv, path: str, force_all: bool = False) -> None:
    """CONFIG REWRITE; force_all (DEBUG CONFIG-REWRITE-FORCE-ALL) writes every
    directive, defaults included."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            old = fh.read().split("\n")
    except FileNotFoundError:
        old = []
    if old and old[-1] == "":
        old.pop()
    lines: list[str] = []
    where: dict[str, list[int]] = {}
    has_tail = False
    for raw in old:
        line = raw.strip()
        if not line or line.startswith("#"):
            if line == SIGNATURE:
                has_tail = True
            lines.append(line)
            continue
        name = _directive_of_line(line)
        if name is None:
            lines.append(line)
            continue
        where.setdefault(name, []).append(len(lines))
        lines.append(line)
    processed = set()
    appended: list[str] = []

    def put(name: str, newlines: list[str], force: bool) -> None:
        processed.add(name)
        slots = where.get(name, [])
        for nl in newlines:
            if slots:
                lines[slots.pop(0)] = nl
            elif force:
                appended.append(nl)

    for name, d in DIRECTIVES.items():
        if name in FILE_ONLY:
            continue
        nl, force = _rewrite_lines(srv, name)
        put(name, nl, force or force_all)
    # the ACL users, as Redis writes them (none with an aclfile: it holds them)
    if srv.cfg.get("aclfile"):
        put("user", [], False)
    else:
        put("user", ["user %s %s" % (u.name.decode("utf-8", "surrogateescape"), u.describe())
                     for u in srv.acl.sorted_users()], True)
    # lines of processed directives not reused become empty
    for name in processed:
        for i in where.get(name, []):
            lines[i] = ""
    if appended:
        if not has_tail:
            lines.append(SIGNATURE)
        lines.extend(appended)
    out = []
    was_empty = False
    for ln in lines:
        if not ln:
            if was_empty:
                continue
            was_empty = True
        else:
            was_empty = False
        out.append(ln + "\n")
    data = "".join(out).encode("utf-8", "surrogateescape")
    try:
        mode = os.stat(path).st_mode & 0o7777
    except OSError:
        mode = 0o644
    atomic_write(path, data, mode, tmp_name="%s.tmp-%d" % (os.path.basename(path), os.getpid()))


@command("config|rewrite")
def config_rewrite(c, argv):
    srv = c.srv
    path = srv.cfg.config_file
    if not path:
        raise CommandError("ERR The server is running without a config file")
    try:
        rewrite_config(srv, path)
    except OSError as e:
        srv.log.warning("CONFIG REWRITE failed: %s" % (e.strerror or e))
        raise CommandError("ERR Rewriting config file: %s" % (e.strerror or e)) from None
    srv.log.notice("CONFIG REWRITE executed with success.")
    return OK
