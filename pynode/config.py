"""redis.conf parsing, command-line overrides and the live configuration.

`load_config(argv)` takes what `redis-server` takes: an optional config file
(or "-" for stdin) followed by `--directive value ...` overrides.  Every
directive of Redis 7.0 is accepted; an unknown one stops start-up with the
same message redis-server prints.
"""

from __future__ import annotations

import os
import sys

from pynode.config_table import (ALIASES, DEPRECATED_IGNORED, DIRECTIVES, FILE_ONLY, Directive,
                                 normalize, parse_memory)
from pynode.resp import split_args

VERSION = "7.0.15"

# Directives pynode acts on; CONFIG GET shows the rest, which have no effect yet.
ACTIVE = {
    "port", "bind", "dir", "logfile", "loglevel", "daemonize", "pidfile", "databases",
    "requirepass", "maxclients", "timeout", "appendonly", "appendfsync",
    "appendfilename", "appenddirname", "auto-aof-rewrite-percentage",
    "auto-aof-rewrite-min-size", "aof-load-truncated", "proto-max-bulk-len",
    "client-query-buffer-limit", "enable-debug-command", "hz", "slowlog-log-slower-than",
    "slowlog-max-len", "save", "protected-mode", "tcp-backlog", "aof-use-rdb-preamble",
    "aof-timestamp-enabled", "tcp-keepalive", "unixsocket", "unixsocketperm",
    "dynamic-hz", "latency-tracking", "cluster-enabled", "cluster-config-file",
    "cluster-node-timeout", "cluster-port", "lazyfree-lazy-user-del",
    "lazyfree-lazy-user-flush", "io-threads", "io-threads-do-reads", "syslog-enabled",
    "always-show-logo", "set-proc-title", "crash-log-enabled", "crash-memcheck-enabled",
    "supervised", "enable-protected-configs", "enable-module-command", "rename-command",
    "rdbcompression", "dbfilename", "stop-writes-on-bgsave-error", "bind-source-addr",
    # encoding thresholds (storage.values.LIMITS)
    "hash-max-listpack-entries", "hash-max-listpack-value", "zset-max-listpack-entries",
    "zset-max-listpack-value", "set-max-intset-entries", "list-max-listpack-size",
    "list-compress-depth", "stream-node-max-bytes", "stream-node-max-entries",
    # keyspace events, memory and eviction, HyperLogLog
    "notify-keyspace-events", "hll-sparse-max-bytes", "maxmemory", "maxmemory-policy",
    "maxmemory-samples", "maxmemory-eviction-tenacity", "lfu-log-factor", "lfu-decay-time",
    "lazyfree-lazy-eviction", "lazyfree-lazy-expire", "replica-ignore-maxmemory",
    # TLS (pynode/tls.py) and the cluster bus protection (gossip/busauth.py)
    "tls-port", "tls-cert-file", "tls-key-file", "tls-key-file-pass", "tls-client-cert-file",
    "tls-client-key-file", "tls-client-key-file-pass", "tls-dh-params-file",
    "tls-ca-cert-file", "tls-ca-cert-dir", "tls-auth-clients", "tls-protocols", "tls-ciphers",
    "tls-prefer-server-ciphers", "tls-session-caching", "tls-replication", "tls-cluster",
    "cluster-announce-tls-port", "cluster-bus-secret", "cluster-bus-port-protected-mode",
    # per-slot statistics (pynode/slotstats.py), the Prometheus endpoint (pynode/metrics_http.py)
    "cluster-slot-stats-enabled", "metrics-port",
}


# Redis keeps the 'n' (new key) class of notify-keyspace-events even when
# CONFIG GET does not show it (with 'A', it prints "AKE"): whether it was
# given is kept under this hidden name.
NOTIFY_NEW = "_notify-keyspace-events-n"


def keyspace_new(args: list[str]) -> str:
    return "yes" if any("n" in a for a in args) else ""


class ConfigError(Exception):
    def __init__(self, line_no: int, line: str, msg: str) -> None:
        super().__init__(msg)
        self.line_no = line_no
        self.line = line
        self.msg = msg

    def report(self) -> str:
        return ("\n*** FATAL CONFIG FILE ERROR (Redis %s) ***\n"
                "Reading the configuration file, at line %d\n>>> '%s'\n%s\n"
                % (VERSION, self.line_no, self.line, self.msg))


def canonical(name: str) -> str | None:
    name = name.lower()
    if name in DIRECTIVES:
        return name
    return ALIASES.get(name)


class Config:
    """The live configuration: canonical name -> the value CONFIG GET shows."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {d.name: d.default for d in DIRECTIVES.values()}
        self.values["dir"] = os.getcwd()
        self.config_file: str | None = None
        self.set_in_file: list[str] = []      # names in the order they were set
        self.renamed: dict[str, str] = {}
        self.command_names: set[str] | None = None  # the table as rename-command left it
        self.module_configs: list[str] = []   # `module.name value` lines (no modules)
        self.users: list[list[bytes]] = []    # `user` lines: [name, rule, ...] (pynode/acl.py)
        self.listeners: dict[str, object] = {}

    def get(self, name: str) -> str:
        return self.values[canonical(name) or name]

    def int(self, name: str) -> int:
        v = self.values[name]
        if v.endswith("%"):
            return -int(v[:-1])
        return int(v) if v else 0

    def bool(self, name: str) -> bool:
        return self.values[name] == "yes"

    def set(self, name: str, args: list[str], loading: bool = False) -> None:
        """Validate and store a directive; raises ValueError with Redis's reason."""
        cname = canonical(name)
        if cname is None:
            raise KeyError(name)
        d: Directive = DIRECTIVES[cname]
        if cname == "save" and loading and self.values.get("_save_seen") is None:
            self.values["_save_seen"] = "1"
            self.values["save"] = ""
        if cname == "save" and loading:
            # each `save` line in a file adds to the list, as in Redis
            value = normalize(d, args)
            cur = self.values["save"]
            self.values["save"] = (cur + " " + value).strip() if value else ""
        elif cname == "rename-command":
            if len(args) != 2:
                raise ValueError("wrong number of arguments")
            self.renamed[args[0].lower()] = args[1]
        elif cname == "dir" and not loading:
            value = normalize(d, args)
            os.chdir(value)
            self.values["dir"] = os.getcwd()
        else:
            value = normalize(d, args)
            if cname == "notify-keyspace-events":
                self.values[NOTIFY_NEW] = keyspace_new(args)
            if cname == "dir":
                try:
                    os.chdir(value)
                except OSError as e:
                    raise ValueError("Can't chdir to '%s': %s" % (value, e.strerror))
                value = os.getcwd()
            self.values[cname] = value
        if cname not in self.set_in_file:
            self.set_in_file.append(cname)

    def names(self):
        return [n for n in self.values if not n.startswith("_")]

    def bind_hosts(self) -> list[tuple[str, bool]]:
        """The `bind` addresses as (host, optional): "*" is 0.0.0.0, "::*" is
        ::, and a "-" prefix marks one that may be unavailable."""
        out = []
        for b in self.values.get("bind", "").split() or ["*"]:
            host = b.lstrip("-")
            out.append(({"*": "0.0.0.0", "::*": "::"}.get(host, host), b.startswith("-")))
        return out

    def source_addr(self) -> str | None:
        """The local address outgoing connections (cluster bus, replication,
        MIGRATE) are made from, as Redis's NET_FIRST_BIND_ADDR: bind-source-addr,
        else the first `bind` address unless it is a wildcard."""
        addr = self.values.get("bind-source-addr", "")
        if not addr:
            first = (self.values.get("bind", "").split() or [""])[0].lstrip("-")
            addr = "" if first in ("", "*", "::*", "0.0.0.0", "::") else first
        return addr or None

    def memory(self, name: str) -> int:
        return parse_memory(self.values[name])


def config_text_from_argv(argv: list[str]) -> tuple[str | None, bool, str]:
    """Split redis-server style arguments into (config file, read stdin, options),
    building the options text exactly as redis-server's main() does: each
    `--name` starts a line, each value is appended quoted (sdscatrepr)."""
    conf_file = None
    from_stdin = False
    j = 0
    n = len(argv)
    if argv and argv[0][:1] != "-":
        conf_file = argv[0]
        j = 1
    options = ""
    handled = True            # handled_last_config_arg
    while j < n:
        a = argv[j]
        if a == "-" and (j == 0 or j == n - 1):
            from_stdin = True
        elif handled and a.startswith("--"):
            if options:
                options += "\n"
            options += a[2:] + " "
            parts = split_args(os.fsencode(a))
            if parts is not None and len(parts) == 1:
                handled = False
                next_is_opt = j != n - 1 and argv[j + 1].startswith("--")
                if a.lower() == "--save" and (next_is_opt or j == n - 1):
                    options += '""'          # `--save --port 1` means save ""
                    handled = True
                elif a.lower() == "--sentinel" and next_is_opt:
                    handled = True
            else:
                handled = True
        else:
            options += _repr(os.fsencode(a)) + " "
            handled = True
        j += 1
    return conf_file, from_stdin, options


def _repr(arg: bytes) -> str:
    """sdscatrepr(): a double-quoted, escaped argument."""
    out = ['"']
    for ch in arg:
        if ch in (92, 34):
            out.append("\\" + chr(ch))
        elif ch in _REPR_ESC:
            out.append(_REPR_ESC[ch])
        elif 32 <= ch < 127:
            out.append(chr(ch))
        else:
            out.append("\\x%02x" % ch)
    out.append('"')
    return "".join(out)


_REPR_ESC = {10: "\\n", 13: "\\r", 9: "\\t", 7: "\\a", 8: "\\b"}


def _open_error(path: str, e: OSError) -> ConfigError:
    return ConfigError(0, path, "Fatal error, can't open config file '%s': %s"
                       % (path, e.strerror))


def apply_text(cfg: Config, text: str, first_line: int = 1) -> None:
    """Apply config-file text; raise ConfigError like loadServerConfigFromString."""
    for no, raw in enumerate(text.split("\n"), first_line):
        line = raw.strip(" \t\r\n")
        if not line or line.startswith("#"):
            continue
        parts = split_args(line.encode("utf-8", "surrogateescape"))
        if parts is None:
            raise ConfigError(no, line, "Unbalanced quotes in configuration line")
        if not parts:
            continue
        args = [p.decode("utf-8", "surrogateescape") for p in parts]
        name = args[0].lower()
        argc = len(args)
        cname = canonical(name)
        try:
            if cname is not None and cname not in FILE_ONLY:
                if not DIRECTIVES[cname].multi_arg and argc != 2:
                    raise ValueError("wrong number of arguments")
                cfg.set(name, args[1:], loading=True)
            elif name in DEPRECATED_IGNORED and argc == 2:
                continue
            elif name == "include" and argc == 2:
                try:
                    with open(args[1]) as fh:
                        apply_text(cfg, fh.read())
                except OSError as e:
                    raise _open_error(args[1], e)
            elif name == "rename-command" and argc == 3:
                check_rename(cfg, args[1], args[2])
                cfg.set(name, args[1:], loading=True)
            elif name == "user" and argc >= 2:
                from pynode.acl import check_user_line
                err = check_user_line(cfg.users, parts)
                if err:
                    raise ValueError(err)
                cfg.set(name, args[1:], loading=True)
            elif name == "loadmodule" and argc >= 2:
                cfg.set(name, args[1:], loading=True)
            elif "." in name:
                if argc < 2:
                    raise ValueError("Module config specified without value")
                cfg.module_configs.append(name)
            elif name == "sentinel":
                if argc != 1:
                    raise ValueError("sentinel directive while not in sentinel mode")
            else:
                raise ValueError("Bad directive or wrong number of arguments")
        except ValueError as e:
            raise ConfigError(no, line, str(e))


def check_rename(cfg: Config, old: str, new: str) -> None:
    """rename-command as Redis 7.0's loader: the command must be in the table
    (not already renamed away) and the new name free (names are
    case-insensitive).  A subcommand ("config|get") is refused as unknown:
    Redis 7.0 asserts on it."""
    from pynode.command_meta import TOP_LEVEL
    names = cfg.command_names
    if names is None:
        names = cfg.command_names = set(TOP_LEVEL)
    if old.lower() not in names:
        raise ValueError("No such command in rename-command")
    names.discard(old.lower())
    if new:
        if new.lower() in names:
            raise ValueError("Target command name already exists")
        names.add(new.lower())


def load_config(argv: list[str]) -> Config:
    cfg = Config()
    conf_file, from_stdin, options = config_text_from_argv(argv)
    text = ""
    if conf_file is not None:
        try:
            with open(conf_file) as fh:
                text = fh.read()
        except OSError as e:
            raise _open_error(conf_file, e)
        cfg.config_file = os.path.abspath(conf_file)
    if from_stdin:
        text += sys.stdin.read()
    # like loadServerConfig(): file, stdin, then "\n" and the options (so the
    # first option is on the line after an empty one, as Redis numbers it)
    apply_text(cfg, text + "\n" + options)
    return cfg
