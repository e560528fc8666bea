"""redis.conf parsing, command-line overrides and the live configuration.

`load_config(argv)` takes what `redis-server` takes: an optional config file
(or "-" for stdin) followed by `--directive value ...` overrides.  Every
directive of Redis 7.0 is accepted; an unknown one stops start-up with the
same message redis-server prints.
"""

from __future__ import annotations

import os
import sys

from pynode.config_table import ALIASES, DIRECTIVES, Directive, normalize, parse_memory
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
}


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

    def memory(self, name: str) -> int:
        return parse_memory(self.values[name])


def config_text_from_argv(argv: list[str]) -> tuple[str | None, str]:
    """Split redis-server style arguments into (config file, option text)."""
    conf_file = None
    i = 0
    if argv and not argv[0].startswith("--"):
        conf_file = argv[0]
        i = 1
    lines: list[str] = []
    cur: list[str] = []
    while i < len(argv):
        a = argv[i]
        if a.startswith("--") and len(a) > 2:
            if cur:
                lines.append(" ".join(cur))
            cur = [a[2:]]
        else:
            if not cur:
                raise ConfigError(0, a, "Invalid argument: %s" % a)
            cur.append(_quote(a))
        i += 1
    if cur:
        lines.append(" ".join(cur))
    return conf_file, "\n".join(lines)


def _quote(arg: str) -> str:
    if arg == "" or any(ch in arg for ch in " \t\"'\\"):
        return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return arg


def apply_text(cfg: Config, text: str, first_line: int = 1) -> None:
    """Apply config-file text; raise ConfigError like loadServerConfigFromString."""
    for no, raw in enumerate(text.split("\n"), first_line):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = split_args(line.encode())
        if parts is None:
            raise ConfigError(no, line, "Unbalanced quotes in configuration line")
        if not parts:
            continue
        args = [p.decode("utf-8", "surrogateescape") for p in parts]
        name = args[0].lower()
        if name == "include":
            if len(args) != 2:
                raise ConfigError(no, line, "Bad directive or wrong number of arguments")
            try:
                with open(args[1]) as fh:
                    apply_text(cfg, fh.read())
            except OSError as e:
                raise ConfigError(no, line, "Fatal error, can't open config file '%s': %s"
                                  % (args[1], e.strerror))
            continue
        if canonical(name) is None:
            raise ConfigError(no, line, "Bad directive or wrong number of arguments")
        if len(args) < 2 and name != "save":
            raise ConfigError(no, line, "Bad directive or wrong number of arguments")
        try:
            cfg.set(name, args[1:], loading=True)
        except ValueError as e:
            raise ConfigError(no, line, str(e))


def load_config(argv: list[str]) -> Config:
    cfg = Config()
    conf_file, options = config_text_from_argv(argv)
    text = ""
    if conf_file is not None:
        if conf_file == "-":
            text = sys.stdin.read()
        else:
            try:
                with open(conf_file) as fh:
                    text = fh.read()
            except OSError as e:
                raise ConfigError(0, conf_file, "Fatal error, can't open config file '%s': %s"
                                  % (conf_file, e.strerror))
            cfg.config_file = os.path.abspath(conf_file)
    if text and not text.endswith("\n"):
        text += "\n"
    apply_text(cfg, text + options)
    return cfg
