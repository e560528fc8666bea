"""Table of the configuration directives accepted by Redis 7.0.

The table mirrors what a stock ``redis-server`` 7.0 (built with TLS support)
accepts in ``redis.conf`` / on the command line and reports via CONFIG GET:
names, aliases, value kinds, defaults (formatted the way CONFIG GET prints
them), numeric limits, enum values and the IMMUTABLE / SENSITIVE /
MULTI_ARG properties.

Besides the table this module offers:

* :func:`parse_memory` -- Redis ``memtoull`` (``100mb``, ``1gb``, ``5k`` ...).
* :func:`normalize`    -- validate argument(s) for one directive the way the
  Redis config loader / CONFIG SET does and return the value as CONFIG GET
  would print it, raising :class:`ValueError` carrying the Redis error text.
* :func:`lookup`       -- resolve a (case-insensitive) name or alias.

Extra module level sets describe properties the dataclass does not carry:
``HIDDEN`` (not matched by CONFIG GET glob patterns), ``TLS`` (only present
in TLS builds), ``FILE_ONLY`` (config-file directives that are not configs:
include, rename-command, user, loadmodule), ``PROTECTED`` / ``DENY_LOADING``
and ``DEPRECATED_IGNORED`` (silently accepted and ignored by the loader).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = [
    "Directive",
    "DIRECTIVES",
    "ALIASES",
    "HIDDEN",
    "TLS",
    "OWN",
    "FILE_ONLY",
    "PROTECTED",
    "DENY_LOADING",
    "DEPRECATED_IGNORED",
    "OCTAL",
    "lookup",
    "parse_memory",
    "normalize",
    "merge_client_output_buffer_limit",
]


@dataclass(frozen=True, slots=True)
class Directive:
    name: str                 # canonical lowercase name, e.g. "appendfsync"
    kind: str                 # "bool" | "int" | "uint" | "memory" | "percent" | "enum" | "string" | "sds" | "special" | "flags"
    default: str              # default value exactly as CONFIG GET prints it on a fresh 7.0 server
    alias: str | None = None  # e.g. "slaveof" for "replicaof"
    enum: tuple[str, ...] = ()  # allowed values for enum / flags kinds (lowercase, Redis order)
    min: int | None = None
    max: int | None = None
    immutable: bool = False   # cannot be changed by CONFIG SET (IMMUTABLE_CONFIG)
    sensitive: bool = False   # value is redacted (SENSITIVE_CONFIG)
    multi_arg: bool = False   # directive takes several arguments on one line


# ---------------------------------------------------------------------------
# C limits (LP64 platform, as on every 64 bit Linux build)
# ---------------------------------------------------------------------------
INT_MIN = -(2**31)
INT_MAX = 2**31 - 1
UINT_MAX = 2**32 - 1
LONG_MAX = 2**63 - 1
LLONG_MIN = -(2**63)
LLONG_MAX = 2**63 - 1
SSIZE_MAX = 2**63 - 1
ULLONG_MAX = 2**64 - 1

# Maximum number of "bind" addresses (CONFIG_BINDADDR_MAX).
BINDADDR_MAX = 16
# maxmemory-clients accepts "N%" with N up to this value.
PERCENT_MAX = 100
# NET_HOST_STR_LEN: announced hostnames must be shorter than this.
HOST_STR_LEN = 256

# ---------------------------------------------------------------------------
# Enum value tables (order matters: it is the order Redis lists them in
# error messages).
# ---------------------------------------------------------------------------
_YES_NO_LOCAL = ("no", "yes", "local")
_ENUM_MAXMEMORY_POLICY = (
    "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl",
    "allkeys-lru", "allkeys-lfu", "allkeys-random", "noeviction",
)
_ENUM_SYSLOG_FACILITY = (
    "user", "local0", "local1", "local2", "local3",
    "local4", "local5", "local6", "local7",
)
_ENUM_LOGLEVEL = ("debug", "verbose", "notice", "warning")
_ENUM_SUPERVISED = ("upstart", "systemd", "auto", "no")
_ENUM_APPENDFSYNC = ("everysec", "always", "no")
_ENUM_DISKLESS_LOAD = ("disabled", "on-empty-db", "swapdb")
_ENUM_TLS_AUTH = ("no", "yes", "optional")
_ENUM_OOM_SCORE_ADJ = ("no", "yes", "relative", "absolute")
_ENUM_ACL_PUBSUB = ("allchannels", "resetchannels")
_ENUM_SANITIZE = ("no", "yes", "clients")
_ENUM_ENDPOINT = ("ip", "hostname", "unknown-endpoint")
_ENUM_PROPAGATION = ("ignore", "panic", "panic-on-replicas")
_FLAGS_SHUTDOWN = ("default", "save", "nosave", "now", "force", "failover")

# Enum names that share a value with an earlier entry; CONFIG GET prints the
# first name carrying that value.
_ENUM_SYNONYMS: dict[str, dict[str, str]] = {
    "oom-score-adj": {"relative": "yes"},
}

# Bit values of the shutdown-on-sig* flags ("default" is 0).
_SHUTDOWN_BITS = {"default": 0, "save": 1, "nosave": 2, "now": 4, "force": 8, "failover": 16}


def _b(name, default, *, alias=None, immutable=False):
    return Directive(name, "bool", default, alias=alias, immutable=immutable)


def _i(name, default, lo, hi, *, kind="int", alias=None, immutable=False):
    return Directive(name, kind, default, alias=alias, min=lo, max=hi, immutable=immutable)


def _s(name, default="", *, kind="string", alias=None, immutable=False, sensitive=False):
    return Directive(name, kind, default, alias=alias, immutable=immutable, sensitive=sensitive)


def _e(name, default, values, *, immutable=False):
    return Directive(name, "enum", default, enum=values, immutable=immutable)


def _x(name, default, *, alias=None, immutable=False, multi_arg=False):
    return Directive(name, "special", default, alias=alias, immutable=immutable, multi_arg=multi_arg)


_TABLE: list[Directive] = [
    # ---- yes/no -----------------------------------------------------------
    _b("rdbchecksum", "yes", immutable=True),
    _b("daemonize", "no", immutable=True),
    _b("io-threads-do-reads", "no", immutable=True),
    _b("always-show-logo", "no", immutable=True),
    _b("protected-mode", "yes"),
    _b("rdbcompression", "yes"),
    _b("rdb-del-sync-files", "no"),
    _b("activerehashing", "yes"),
    _b("stop-writes-on-bgsave-error", "yes"),
    _b("set-proc-title", "yes", immutable=True),
    _b("dynamic-hz", "yes"),
    _b("lazyfree-lazy-eviction", "no"),
    _b("lazyfree-lazy-expire", "no"),
    _b("lazyfree-lazy-server-del", "no"),
    _b("lazyfree-lazy-user-del", "no"),
    _b("lazyfree-lazy-user-flush", "no"),
    _b("repl-disable-tcp-nodelay", "no"),
    _b("repl-diskless-sync", "yes"),
    _b("aof-rewrite-incremental-fsync", "yes"),
    _b("no-appendfsync-on-rewrite", "no"),
    _b("cluster-require-full-coverage", "yes"),
    _b("rdb-save-incremental-fsync", "yes"),
    _b("aof-load-truncated", "yes"),
    _b("aof-use-rdb-preamble", "yes"),
    _b("aof-timestamp-enabled", "no"),
    _b("cluster-replica-no-failover", "no", alias="cluster-slave-no-failover"),
    _b("replica-lazy-flush", "no", alias="slave-lazy-flush"),
    _b("replica-serve-stale-data", "yes", alias="slave-serve-stale-data"),
    _b("replica-read-only", "yes", alias="slave-read-only"),
    _b("replica-ignore-maxmemory", "yes", alias="slave-ignore-maxmemory"),
    _b("jemalloc-bg-thread", "yes"),
    _b("activedefrag", "no"),
    _b("syslog-enabled", "no", immutable=True),
    _b("cluster-enabled", "no", immutable=True),
    _b("appendonly", "no"),
    _b("cluster-allow-reads-when-down", "no"),
    _b("cluster-allow-pubsubshard-when-down", "yes"),
    _b("crash-log-enabled", "yes"),
    _b("crash-memcheck-enabled", "yes"),
    _b("use-exit-on-panic", "no"),
    _b("disable-thp", "yes", immutable=True),
    _b("cluster-allow-replica-migration", "yes"),
    _b("replica-announced", "yes"),
    _b("latency-tracking", "yes"),
    _b("aof-disable-auto-gc", "no"),
    _b("replica-ignore-disk-write-errors", "no"),

    # ---- plain strings ------------------------------------------------------
    _s("aclfile", immutable=True),
    _s("unixsocket", immutable=True),
    _s("pidfile", immutable=True),
    _s("replica-announce-ip", alias="slave-announce-ip"),
    _s("masteruser", sensitive=True),
    _s("cluster-announce-ip"),
    _s("cluster-config-file", "nodes.conf", immutable=True),
    _s("cluster-announce-hostname"),
    _s("syslog-ident", "redis", immutable=True),
    _s("dbfilename", "dump.rdb"),
    _s("appendfilename", "appendonly.aof", immutable=True),
    _s("appenddirname", "appendonlydir", immutable=True),
    _s("server_cpulist", immutable=True),
    _s("bio_cpulist", immutable=True),
    _s("aof_rewrite_cpulist", immutable=True),
    _s("bgsave_cpulist", immutable=True),
    _s("ignore-warnings"),
    _s("proc-title-template", "{title} {listen-addr} {server-mode}"),
    _s("bind-source-addr"),
    _s("logfile", immutable=True),

    # ---- sds strings (binary safe) ---------------------------------------
    _s("masterauth", kind="sds", sensitive=True),
    _s("requirepass", kind="sds", sensitive=True),

    # ---- enums ----------------------------------------------------------------
    _e("supervised", "no", _ENUM_SUPERVISED, immutable=True),
    _e("syslog-facility", "local0", _ENUM_SYSLOG_FACILITY, immutable=True),
    _e("repl-diskless-load", "disabled", _ENUM_DISKLESS_LOAD),
    _e("loglevel", "notice", _ENUM_LOGLEVEL),
    _e("maxmemory-policy", "noeviction", _ENUM_MAXMEMORY_POLICY),
    _e("appendfsync", "everysec", _ENUM_APPENDFSYNC),
    _e("oom-score-adj", "no", _ENUM_OOM_SCORE_ADJ),
    _e("acl-pubsub-default", "resetchannels", _ENUM_ACL_PUBSUB),
    _e("sanitize-dump-payload", "no", _ENUM_SANITIZE),
    _e("enable-protected-configs", "no", _YES_NO_LOCAL, immutable=True),
    _e("enable-debug-command", "no", _YES_NO_LOCAL, immutable=True),
    _e("enable-module-command", "no", _YES_NO_LOCAL, immutable=True),
    _e("cluster-preferred-endpoint-type", "ip", _ENUM_ENDPOINT),
    _e("propagation-error-behavior", "ignore", _ENUM_PROPAGATION),
    Directive("shutdown-on-sigint", "flags", "default", enum=_FLAGS_SHUTDOWN, multi_arg=True),
    Directive("shutdown-on-sigterm", "flags", "default", enum=_FLAGS_SHUTDOWN, multi_arg=True),

    # ---- signed integers (int, long, long long, time_t, off_t, and the
    #      unsigned long ones which Redis range-checks as signed) ------------
    _i("databases", "16", 1, INT_MAX, immutable=True),
    _i("port", "6379", 0, 65535),
    _i("io-threads", "1", 1, 128, immutable=True),
    _i("auto-aof-rewrite-percentage", "100", 0, INT_MAX),
    _i("cluster-replica-validity-factor", "10", 0, INT_MAX, alias="cluster-slave-validity-factor"),
    _i("list-max-listpack-size", "-2", INT_MIN, INT_MAX, alias="list-max-ziplist-size"),
    _i("tcp-keepalive", "300", 0, INT_MAX),
    _i("cluster-migration-barrier", "1", 0, INT_MAX),
    _i("active-defrag-cycle-min", "1", 1, 99),
    _i("active-defrag-cycle-max", "25", 1, 99),
    _i("active-defrag-threshold-lower", "10", 0, 1000),
    _i("active-defrag-threshold-upper", "100", 0, 1000),
    _i("lfu-log-factor", "10", 0, INT_MAX),
    _i("lfu-decay-time", "1", 0, INT_MAX),
    _i("replica-priority", "100", 0, INT_MAX, alias="slave-priority"),
    _i("repl-diskless-sync-delay", "5", 0, INT_MAX),
    _i("maxmemory-samples", "5", 1, INT_MAX),
    _i("maxmemory-eviction-tenacity", "10", 0, 100),
    _i("timeout", "0", 0, INT_MAX),
    _i("replica-announce-port", "0", 0, 65535, alias="slave-announce-port"),
    _i("tcp-backlog", "511", 0, INT_MAX, immutable=True),
    _i("cluster-port", "0", 0, 65535, immutable=True),
    _i("cluster-announce-bus-port", "0", 0, 65535),
    _i("cluster-announce-port", "0", 0, 65535),
    _i("cluster-announce-tls-port", "0", 0, 65535),
    _i("repl-timeout", "60", 1, INT_MAX),
    _i("repl-ping-replica-period", "10", 1, INT_MAX, alias="repl-ping-slave-period"),
    _i("list-compress-depth", "0", 0, INT_MAX),
    _i("rdb-key-save-delay", "0", INT_MIN, INT_MAX),
    _i("key-load-delay", "0", INT_MIN, INT_MAX),
    _i("active-expire-effort", "1", 1, 10),
    _i("hz", "10", 0, INT_MAX),
    _i("min-replicas-to-write", "0", 0, INT_MAX, alias="min-slaves-to-write"),
    _i("min-replicas-max-lag", "10", 0, INT_MAX, alias="min-slaves-max-lag"),
    _i("watchdog-period", "0", 0, INT_MAX),
    _i("shutdown-timeout", "10", 0, INT_MAX),
    _i("repl-diskless-sync-max-replicas", "0", 0, INT_MAX),
    _i("active-defrag-max-scan-fields", "1000", 1, LONG_MAX),
    _i("slowlog-max-len", "128", 0, LONG_MAX),
    _i("acllog-max-len", "128", 0, LONG_MAX),
    _i("busy-reply-threshold", "5000", 0, LONG_MAX, alias="lua-time-limit"),
    _i("cluster-node-timeout", "15000", 0, LLONG_MAX),
    _i("slowlog-log-slower-than", "10000", -1, LLONG_MAX),
    _i("latency-monitor-threshold", "0", 0, LLONG_MAX),
    _i("stream-node-max-entries", "100", 0, LLONG_MAX),
    _i("repl-backlog-ttl", "3600", 0, LONG_MAX),
    _i("loading-process-events-interval-bytes", "2097152", 1024, INT_MAX),

    # ---- unsigned integers (unsigned int, size_t) ----------------------------
    _i("maxclients", "10000", 1, UINT_MAX, kind="uint"),
    # unixsocketperm is parsed and printed in octal (see OCTAL); 0777 == 511.
    _i("unixsocketperm", "0", 0, 0o777, kind="uint", immutable=True),
    _i("socket-mark-id", "0", 0, UINT_MAX, kind="uint", immutable=True),
    _i("hash-max-listpack-entries", "512", 0, LONG_MAX, kind="uint", alias="hash-max-ziplist-entries"),
    _i("set-max-intset-entries", "512", 0, LONG_MAX, kind="uint"),
    _i("zset-max-listpack-entries", "128", 0, LONG_MAX, kind="uint", alias="zset-max-ziplist-entries"),
    _i("tracking-table-max-keys", "1000000", 0, LONG_MAX, kind="uint"),

    # ---- memory values (accept k/kb/m/mb/g/gb; printed in bytes) -------------
    _i("proto-max-bulk-len", "536870912", 1024 * 1024, LONG_MAX, kind="memory"),
    _i("repl-backlog-size", "1048576", 1, LLONG_MAX, kind="memory"),
    _i("maxmemory", "0", 0, ULLONG_MAX, kind="memory"),
    _i("cluster-link-sendbuf-limit", "0", 0, ULLONG_MAX, kind="memory"),
    _i("active-defrag-ignore-bytes", "104857600", 1, LLONG_MAX, kind="memory"),
    _i("hash-max-listpack-value", "64", 0, LONG_MAX, kind="memory", alias="hash-max-ziplist-value"),
    _i("stream-node-max-bytes", "4096", 0, LONG_MAX, kind="memory"),
    _i("zset-max-listpack-value", "64", 0, LONG_MAX, kind="memory", alias="zset-max-ziplist-value"),
    _i("hll-sparse-max-bytes", "3000", 0, LONG_MAX, kind="memory"),
    _i("client-query-buffer-limit", "1073741824", 1024 * 1024, LONG_MAX, kind="memory"),
    _i("auto-aof-rewrite-min-size", "67108864", 0, LLONG_MAX, kind="memory"),

    # ---- memory or percentage ("N%", N <= 100) ----------------------------------
    _i("maxmemory-clients", "0", 0, SSIZE_MAX, kind="percent"),

    # ---- TLS (only in builds with TLS support) -------------------------------
    _i("tls-port", "0", 0, 65535),
    _i("tls-session-cache-size", "20480", 0, INT_MAX),
    _i("tls-session-cache-timeout", "300", 0, INT_MAX),
    _b("tls-cluster", "no"),
    _b("tls-replication", "no"),
    _e("tls-auth-clients", "yes", _ENUM_TLS_AUTH),
    _b("tls-prefer-server-ciphers", "no"),
    _b("tls-session-caching", "yes"),
    _s("tls-cert-file"),
    _s("tls-key-file"),
    _s("tls-key-file-pass"),
    _s("tls-client-cert-file"),
    _s("tls-client-key-file"),
    _s("tls-client-key-file-pass"),
    _s("tls-dh-params-file"),
    _s("tls-ca-cert-file"),
    _s("tls-ca-cert-dir"),
    _s("tls-protocols"),
    _s("tls-ciphers"),
    _s("tls-ciphersuites"),

    # ---- special configs ---------------------------------------------------------
    # "dir" really defaults to the server's working directory.
    _x("dir", ""),
    _x("save", "3600 1 300 100 60 10000", multi_arg=True),
    _x("client-output-buffer-limit",
       "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60",
       multi_arg=True),
    _x("oom-score-adj-values", "0 200 800", multi_arg=True),
    _x("notify-keyspace-events", ""),
    _x("bind", "* -::*", multi_arg=True),
    _x("replicaof", "", alias="slaveof", immutable=True, multi_arg=True),
    _x("latency-tracking-info-percentiles", "50 99 99.9", multi_arg=True),

    # ---- pynode's own (hidden: CONFIG GET shows them for their exact name) ----
    # the cluster bus secret(s), preferred first (gossip/busauth.py)
    Directive("cluster-bus-secret", "special", "", sensitive=True, multi_arg=True),
    # yes: refuse to start a bus that listens beyond loopback unprotected
    _b("cluster-bus-port-protected-mode", "no"),
    # Valkey 8's: count cpu-usec and network bytes per slot (CLUSTER SLOT-STATS)
    _b("cluster-slot-stats-enabled", "no"),
    # Prometheus text on http://<bind>:<metrics-port>/metrics (0: off)
    _i("metrics-port", "0", 0, 65535),
    # ---- config-file only directives (not configs: no CONFIG GET/SET) --------
    _x("include", "", immutable=True),
    _x("rename-command", "", immutable=True, multi_arg=True),
    _x("user", "", immutable=True, multi_arg=True),
    _x("loadmodule", "", immutable=True, multi_arg=True),
]

DIRECTIVES: dict[str, Directive] = {d.name: d for d in _TABLE}
ALIASES: dict[str, str] = {d.alias: d.name for d in _TABLE if d.alias}

# Configs with HIDDEN_CONFIG: CONFIG GET only returns them for an exact name.
HIDDEN: frozenset[str] = frozenset({
    "cluster-bus-secret", "cluster-bus-port-protected-mode", "cluster-slot-stats-enabled",
    "metrics-port", "use-exit-on-panic", "rdb-key-save-delay", "key-load-delay",
    "watchdog-period", "loading-process-events-interval-bytes",
})
# pynode's own directives (not Redis 7.0's).
OWN: frozenset[str] = frozenset({"cluster-bus-secret", "cluster-bus-port-protected-mode",
                                 "cluster-slot-stats-enabled", "metrics-port"})
# Only registered when Redis is built with TLS support.
TLS: frozenset[str] = frozenset(n for n in DIRECTIVES if n.startswith("tls-"))
# Config-file directives that are not configs (unknown to CONFIG GET/SET).
FILE_ONLY: frozenset[str] = frozenset({"include", "rename-command", "user", "loadmodule"})
# PROTECTED_CONFIG: CONFIG SET needs enable-protected-configs.
PROTECTED: frozenset[str] = frozenset({"dir", "dbfilename"})
# DENY_LOADING_CONFIG: CONFIG SET refused while loading the dataset.
DENY_LOADING: frozenset[str] = frozenset({"appendonly", "repl-diskless-load", "dir"})
# Accepted (with exactly one argument) and silently ignored by the loader.
DEPRECATED_IGNORED: frozenset[str] = frozenset({
    "list-max-ziplist-entries", "list-max-ziplist-value", "lua-replicate-commands",
})
# Numeric configs parsed and printed in octal.
OCTAL: frozenset[str] = frozenset({"unixsocketperm"})


def lookup(name: str) -> Directive | None:
    """Return the directive for a name or alias (case-insensitive)."""
    key = name.lower()
    d = DIRECTIVES.get(key)
    if d is None and key in ALIASES:
        d = DIRECTIVES[ALIASES[key]]
    return d


# ---------------------------------------------------------------------------
# Number parsing helpers reproducing Redis' C helpers
# ---------------------------------------------------------------------------
_MEM_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1024,
    "m": 1000 * 1000, "mb": 1024 * 1024,
    "g": 1000 * 1000 * 1000, "gb": 1024 * 1024 * 1024,
}
_MEM_RE = re.compile(r"([0-9]*)(.*)", re.S)


def parse_memory(text: str) -> int:
    """Parse a memory amount like Redis ``memtoull``.

    Accepts a plain non-negative number, optionally followed by one of the
    case-insensitive units b, k (1000), kb (1024), m (10**6), mb (2**20),
    g (10**9), gb (2**30).  Raises ValueError otherwise (including an empty
    number part and values that do not fit in 64 bits unsigned).
    """
    if not isinstance(text, str):
        raise ValueError("argument must be a memory value")
    m = _MEM_RE.fullmatch(text)
    digits, unit = m.group(1), m.group(2).lower()
    if unit not in _MEM_UNITS or not digits or len(digits) >= 128:
        raise ValueError("argument must be a memory value")
    value = int(digits) * _MEM_UNITS[unit]
    if value > ULLONG_MAX:
        raise ValueError("argument must be a memory value")
    return value


_LL_RE = re.compile(r"-?[1-9][0-9]*|0")


def _string2ll(text: str) -> int | None:
    """Strict integer parse (Redis string2ll): no spaces, no '+', no
    leading zeros, must fit in a signed 64 bit integer."""
    if not _LL_RE.fullmatch(text):
        return None
    v = int(text)
    if v < LLONG_MIN or v > LLONG_MAX:
        return None
    return v


_C_SPACE = " \t\n\v\f\r"


def _strtoll(text: str, base: int) -> int | None:
    """strtoll(text, &end, base) followed by a check that the whole string
    was consumed and no overflow happened.  Like C, a string with no digits
    at all is only accepted when it is empty (value 0)."""
    if text == "":
        return 0
    s = text.lstrip(_C_SPACE)
    digits = "01234567" if base == 8 else "0123456789"
    pat = rf"[+-]?[{digits}]+"
    if not re.fullmatch(pat, s):
        return None
    v = int(s, base)
    if v < LLONG_MIN or v > LLONG_MAX:
        return None
    return v


_FLOAT_RE = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity)",
    re.IGNORECASE,
)


def _string2d(text: str) -> float | None:
    """Parse a double like Redis string2d (strtod on the whole string)."""
    if not text or text[0] in _C_SPACE or not _FLOAT_RE.fullmatch(text):
        return None
    v = float(text)
    if math.isnan(v):
        return None
    if math.isinf(v) and "inf" not in text.lower():
        return None  # overflow (ERANGE)
    return v


def _format_double(v: float) -> str:
    """printf("%f") followed by trimming trailing zeros / dot."""
    s = "%f" % v
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


# ---------------------------------------------------------------------------
# Validation / normalisation
# ---------------------------------------------------------------------------
_WRONG_ARGS = "wrong number of arguments"


def _range_error(lo: int, hi: int, octal: bool = False) -> ValueError:
    if octal:
        return ValueError(f"argument must be between {lo:o} and {hi:o} inclusive")
    return ValueError(f"argument must be between {lo} and {hi} inclusive")


def _check_range(d: Directive, v: int) -> None:
    if (d.min is not None and v < d.min) or (d.max is not None and v > d.max):
        raise _range_error(d.min, d.max, d.name in OCTAL)


def _single(d: Directive, args: list[str]) -> str:
    if len(args) != 1:
        raise ValueError(_WRONG_ARGS)
    return args[0]


def _split_multi(args: list[str]) -> list[str]:
    # CONFIG SET hands multi-arg configs a single string split on spaces.
    if len(args) == 1 and " " in args[0]:
        return args[0].split(" ")
    return list(args)


def _is_base_name(path: str) -> bool:
    return "/" not in path and "\\" not in path


_PROC_TITLE_VARS = {
    # value used when validating: Redis expands the template with an empty
    # title and requires a non empty result (after trimming spaces).
    "title": "",
    "listen-addr": "*:6379",
    "server-mode": "",
    "port": "6379",
    "tls-port": "0",
    "unixsocket": "",
    "config-file": "",
}


def _valid_proc_title_template(template: str) -> bool:
    out = []
    i = 0
    n = len(template)
    while i < n:
        j = template.find("{", i)
        if j < 0:
            out.append(template[i:])
            break
        out.append(template[i:j])
        j += 1
        if j >= n:
            return False
        if template[j] == "{":
            out.append("{")
            i = j + 1
            continue
        k = template.find("}", j)
        if k < 0:
            return False
        var = template[j:k]
        if var not in _PROC_TITLE_VARS:
            return False
        out.append(_PROC_TITLE_VARS[var])
        i = k + 1
    return "".join(out).strip(" ") != ""


def _validate_string(d: Directive, value: str) -> None:
    name = d.name
    if name == "dbfilename":
        if not _is_base_name(value):
            raise ValueError("dbfilename can't be a path, just a filename")
    elif name == "appendfilename":
        if value == "":
            raise ValueError("appendfilename can't be empty")
        if not _is_base_name(value):
            raise ValueError("appendfilename can't be a path, just a filename")
    elif name == "appenddirname":
        if value == "":
            raise ValueError("appenddirname can't be empty")
        if not _is_base_name(value):
            raise ValueError("appenddirname can't be a path, just a dirname")
    elif name == "cluster-announce-hostname":
        if len(value.encode("utf-8", "surrogateescape")) >= HOST_STR_LEN:
            raise ValueError(f"Hostnames must be less than {HOST_STR_LEN} characters")
        if not re.fullmatch(r"[A-Za-z0-9.\-]*", value):
            raise ValueError("Hostnames may only contain alphanumeric characters, hyphens or dots")
    elif name == "proc-title-template":
        if not _valid_proc_title_template(value):
            raise ValueError("template format is invalid or contains unknown variables")


def _normalize_number(d: Directive, value: str) -> str:
    kind = d.kind
    if kind == "memory":
        try:
            v = parse_memory(value)
        except ValueError:
            raise ValueError("argument must be a memory value") from None
        _check_range(d, v)
        return str(v)
    if kind == "percent":
        try:
            v = parse_memory(value)
        except ValueError:
            v = None
        if v is None:
            pct = None
            if len(value) > 1 and value.endswith("%"):
                pct = _string2ll(value[:-1])
            if pct is None or pct < 0:
                raise ValueError("argument must be a memory or percent value")
            if pct > PERCENT_MAX:
                raise ValueError(f"percentage argument must be less or equal to {PERCENT_MAX}")
            return f"{pct}%" if pct else "0"
        _check_range(d, v)
        return str(v)
    if d.name in OCTAL:
        v = _strtoll(value, 8)
        if v is None:
            raise ValueError("argument couldn't be parsed as an octal number")
        _check_range(d, v)
        return format(v, "o")
    v = _string2ll(value)
    if v is None:
        raise ValueError("argument couldn't be parsed into an integer")
    _check_range(d, v)
    return str(v)


def _normalize_enum(d: Directive, value: str) -> str:
    low = value.lower()
    if low not in d.enum:
        raise ValueError("argument(s) must be one of the following: " + ", ".join(d.enum))
    return _ENUM_SYNONYMS.get(d.name, {}).get(low, low)


def _normalize_flags(d: Directive, args: list[str]) -> str:
    if not args:
        raise ValueError("argument(s) must be one of the following: " + ", ".join(d.enum))
    bits = 0
    for a in args:
        low = a.lower()
        if low not in d.enum:
            raise ValueError("argument(s) must be one of the following: " + ", ".join(d.enum))
        bits |= _SHUTDOWN_BITS[low]
    if bits & _SHUTDOWN_BITS["save"] and bits & _SHUTDOWN_BITS["nosave"]:
        raise ValueError("shutdown options SAVE and NOSAVE can't be used simultaneously")
    if bits == 0:
        return "default"
    return " ".join(n for n in d.enum if _SHUTDOWN_BITS[n] and bits & _SHUTDOWN_BITS[n])


# notify-keyspace-events classes, in the order CONFIG GET prints them.
_KS_BITS = {
    "g": 1 << 2, "$": 1 << 3, "l": 1 << 4, "s": 1 << 5, "h": 1 << 6,
    "z": 1 << 7, "x": 1 << 8, "e": 1 << 9, "t": 1 << 10, "d": 1 << 13,
    "n": 1 << 14, "K": 1 << 0, "E": 1 << 1, "m": 1 << 11,
}
# 'A' is an alias for "g$lshzxetd" (key-miss 'm' and new-key 'n' excluded).
_KS_ALL = 0
for _c in "g$lshzxetd":
    _KS_ALL |= _KS_BITS[_c]
del _c


def _normalize_keyspace_events(value: str) -> str:
    flags = 0
    for ch in value:
        if ch == "A":
            flags |= _KS_ALL
        elif ch in _KS_BITS:
            flags |= _KS_BITS[ch]
        else:
            raise ValueError("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.")
    out = []
    if flags & _KS_ALL == _KS_ALL:
        out.append("A")
    else:
        out.extend(c for c in "g$lshzxetdn" if flags & _KS_BITS[c])
    # note: like Redis, 'n' is not printed when 'A' is (it is not part of A)
    out.extend(c for c in "KEm" if flags & _KS_BITS[c])
    return "".join(out)


_OBUF_CLASSES = {"normal": "normal", "slave": "slave", "replica": "slave", "pubsub": "pubsub"}
_OBUF_ORDER = ("normal", "slave", "pubsub")


def _parse_obuf_limits(args: list[str]) -> dict[str, tuple[int, int, int]]:
    if len(args) % 4:
        raise ValueError("Wrong number of arguments in buffer limit configuration.")
    out: dict[str, tuple[int, int, int]] = {}
    for j in range(0, len(args), 4):
        cls = _OBUF_CLASSES.get(args[j].lower())
        if cls is None:
            raise ValueError("Invalid client class specified in buffer limit configuration.")
        try:
            hard = parse_memory(args[j + 1])
            soft = parse_memory(args[j + 2])
        except ValueError:
            raise ValueError("Error in hard, soft or soft_seconds setting in "
                             "buffer limit configuration.") from None
        secs = _strtoll(args[j + 3], 10)
        if secs is None or secs < 0:
            raise ValueError("Error in hard, soft or soft_seconds setting in "
                             "buffer limit configuration.")
        out[cls] = (hard, soft, secs)
    return out


def _format_obuf_limits(limits: dict[str, tuple[int, int, int]]) -> str:
    return " ".join(f"{c} {limits[c][0]} {limits[c][1]} {limits[c][2]}"
                    for c in _OBUF_ORDER if c in limits)


def merge_client_output_buffer_limit(current: str, args: list[str]) -> str:
    """Apply new client-output-buffer-limit arguments on top of the current
    CONFIG GET value (Redis only replaces the classes that are mentioned)
    and return the resulting CONFIG GET value."""
    merged = _parse_obuf_limits(current.split()) if current.strip() else {}
    merged.update(_parse_obuf_limits(_split_multi(args)))
    return _format_obuf_limits(merged)


def _normalize_special(d: Directive, args: list[str]) -> str:
    name = d.name
    if d.multi_arg and name not in FILE_ONLY:
        args = _split_multi(args)

    if name == "save":
        if len(args) == 1 and args[0] == "":
            args = []
        if len(args) % 2:
            raise ValueError("Invalid save parameters")
        vals = []
        for j, a in enumerate(args):
            v = _strtoll(a, 10)
            if v is None or (j % 2 == 0 and v < 1) or (j % 2 == 1 and v < 0):
                raise ValueError("Invalid save parameters")
            vals.append(str(v))
        return " ".join(vals)

    if name == "client-output-buffer-limit":
        return _format_obuf_limits(_parse_obuf_limits(args))

    if name == "oom-score-adj-values":
        if len(args) != 3:
            raise ValueError(_WRONG_ARGS)
        vals = []
        for a in args:
            v = _strtoll(a, 10)
            if v is None or v < -2000 or v > 2000:
                raise ValueError("Invalid oom-score-adj-values, elements must be between -2000 and 2000.")
            vals.append(str(v))
        return " ".join(vals)

    if name == "notify-keyspace-events":
        return _normalize_keyspace_events(_single(d, args))

    if name == "bind":
        if len(args) > BINDADDR_MAX:
            raise ValueError("Too many bind addresses specified.")
        if len(args) == 1 and args[0] == "":
            return ""
        return " ".join(args)

    if name == "replicaof":
        if len(args) != 2:
            raise ValueError(_WRONG_ARGS)
        host, port = args
        if host.lower() == "no" and port.lower() == "one":
            return ""
        p = _strtoll(port, 10)
        if p is None or p < 0 or p > 65535:
            raise ValueError("Invalid master port")
        return f"{host} {p}"

    if name == "latency-tracking-info-percentiles":
        if len(args) == 1 and args[0] == "":
            return ""
        vals = []
        for a in args:
            v = _string2d(a)
            if v is None:
                raise ValueError("Invalid latency-tracking-info-percentiles parameters")
            if v > 100.0 or v < 0.0:
                raise ValueError("latency-tracking-info-percentiles parameters should sit between [0.0,100.0]")
            vals.append(_format_double(v))
        return " ".join(vals)

    if name in ("dir", "include"):
        return _single(d, args)

    if name == "cluster-bus-secret":
        from gossip.busauth import check_secrets
        value = " ".join(a for a in args if a)
        check_secrets(value)
        return value

    if name == "rename-command":
        if len(args) != 2:
            raise ValueError("Bad directive or wrong number of arguments")
        return " ".join(args)

    if name in ("user", "loadmodule"):
        if len(args) < 1:
            raise ValueError("Bad directive or wrong number of arguments")
        return " ".join(args)

    return " ".join(args)


def normalize(directive: Directive, args: list[str]) -> str:
    """Validate ``args`` for ``directive`` like the Redis 7.0 config loader /
    CONFIG SET and return the value as CONFIG GET would print it.

    ``args`` are the arguments following the directive name (one element for
    single-value directives).  Raises ValueError carrying the Redis error
    text on invalid input.

    Notes: for client-output-buffer-limit only the classes given are
    returned (use :func:`merge_client_output_buffer_limit` to combine with
    the current value); "dir" is returned as given (Redis prints the
    absolute working directory after chdir()).
    """
    if isinstance(args, str):
        args = [args]
    d = directive
    kind = d.kind
    if kind == "special":
        return _normalize_special(d, list(args))
    if kind == "flags":
        return _normalize_flags(d, _split_multi(list(args)))

    value = _single(d, list(args))
    if kind == "bool":
        low = value.lower()
        if low not in ("yes", "no"):
            raise ValueError("argument must be 'yes' or 'no'")
        return low
    if kind in ("int", "uint", "memory", "percent"):
        return _normalize_number(d, value)
    if kind == "enum":
        return _normalize_enum(d, value)
    if kind in ("string", "sds"):
        _validate_string(d, value)
        return value
    return value


# ---------------------------------------------------------------------------
# Self check
# ---------------------------------------------------------------------------
if __name__ == "__main__":
    configs = [n for n in DIRECTIVES if n not in FILE_ONLY]
    print(f"{len(DIRECTIVES)} directives ({len(configs)} configs, "
          f"{len(FILE_ONLY)} file-only, {len(ALIASES)} aliases, "
          f"{len(TLS)} TLS-only, {len(HIDDEN)} hidden)")

    # every default must survive its own normalisation
    for d in DIRECTIVES.values():
        if d.name in FILE_ONLY or d.name in ("dir", "replicaof"):
            continue
        got = normalize(d, [d.default])
        assert got == d.default, (d.name, d.default, got)

    expected = {
        "port": "6379", "bind": "* -::*", "protected-mode": "yes",
        "tcp-backlog": "511", "timeout": "0", "tcp-keepalive": "300",
        "daemonize": "no", "pidfile": "", "loglevel": "notice", "logfile": "",
        "databases": "16", "save": "3600 1 300 100 60 10000",
        "dbfilename": "dump.rdb", "dir": "", "appendonly": "no",
        "appendfilename": "appendonly.aof", "appenddirname": "appendonlydir",
        "appendfsync": "everysec", "auto-aof-rewrite-percentage": "100",
        "auto-aof-rewrite-min-size": "67108864", "aof-load-truncated": "yes",
        "aof-use-rdb-preamble": "yes", "hz": "10", "maxclients": "10000",
        "cluster-enabled": "no", "cluster-config-file": "nodes.conf",
        "cluster-node-timeout": "15000", "cluster-port": "0",
        "enable-debug-command": "no", "repl-backlog-size": "1048576",
        "slowlog-log-slower-than": "10000", "slowlog-max-len": "128",
        "maxmemory": "0", "proto-max-bulk-len": "536870912",
        "client-query-buffer-limit": "1073741824",
    }
    for k, v in expected.items():
        assert DIRECTIVES[k].default == v, (k, DIRECTIVES[k].default, v)
    assert DIRECTIVES["enable-debug-command"].enum == ("no", "yes", "local")
    assert ALIASES["slaveof"] == "replicaof"
    assert lookup("SLAVE-READ-ONLY").name == "replica-read-only"

    def err(d, args):
        try:
            normalize(DIRECTIVES[d], args)
        except ValueError as e:
            return str(e)
        raise AssertionError(f"{d} {args!r} should fail")

    assert parse_memory("100") == 100
    assert parse_memory("1k") == 1000 and parse_memory("1KB") == 1024
    assert parse_memory("2m") == 2_000_000 and parse_memory("2Mb") == 2 * 1024 ** 2
    assert parse_memory("3g") == 3_000_000_000 and parse_memory("3gb") == 3 * 1024 ** 3
    for bad in ("", "-1", "1x", "kb", "1.5mb", " 1"):
        try:
            parse_memory(bad)
        except ValueError:
            pass
        else:
            raise AssertionError(bad)

    assert normalize(DIRECTIVES["appendonly"], ["YES"]) == "yes"
    assert err("appendonly", ["maybe"]) == "argument must be 'yes' or 'no'"
    assert err("port", ["abc"]) == "argument couldn't be parsed into an integer"
    assert err("port", ["70000"]) == "argument must be between 0 and 65535 inclusive"
    assert err("appendfsync", ["sometimes"]) == \
        "argument(s) must be one of the following: everysec, always, no"
    assert normalize(DIRECTIVES["appendfsync"], ["ALWAYS"]) == "always"
    assert normalize(DIRECTIVES["maxmemory"], ["100mb"]) == "104857600"
    assert err("maxmemory", ["lots"]) == "argument must be a memory value"
    assert normalize(DIRECTIVES["maxmemory-clients"], ["10%"]) == "10%"
    assert normalize(DIRECTIVES["maxmemory-clients"], ["1gb"]) == "1073741824"
    assert err("maxmemory-clients", ["101%"]) == "percentage argument must be less or equal to 100"
    assert err("maxmemory-clients", ["x%"]) == "argument must be a memory or percent value"
    assert normalize(DIRECTIVES["unixsocketperm"], ["700"]) == "700"
    assert err("unixsocketperm", ["1000"]) == "argument must be between 0 and 777 inclusive"
    assert normalize(DIRECTIVES["save"], [""]) == ""
    assert normalize(DIRECTIVES["save"], ["900 1 300 10"]) == "900 1 300 10"
    assert err("save", ["900"]) == "Invalid save parameters"
    assert normalize(DIRECTIVES["notify-keyspace-events"], ["KEA"]) == "AKE"
    assert normalize(DIRECTIVES["notify-keyspace-events"], ["Ex"]) == "xE"
    assert normalize(DIRECTIVES["shutdown-on-sigterm"], ["now save"]) == "save now"
    assert err("shutdown-on-sigint", ["save", "nosave"]).startswith("shutdown options")
    assert normalize(DIRECTIVES["oom-score-adj"], ["relative"]) == "yes"
    assert normalize(DIRECTIVES["replicaof"], ["no", "one"]) == ""
    assert normalize(DIRECTIVES["replicaof"], ["127.0.0.1", "6380"]) == "127.0.0.1 6380"
    assert normalize(DIRECTIVES["client-output-buffer-limit"],
                     ["replica 256mb 64mb 60"]) == "slave 268435456 67108864 60"
    assert merge_client_output_buffer_limit(
        DIRECTIVES["client-output-buffer-limit"].default, ["normal", "1mb", "0", "0"]
    ) == "normal 1048576 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"
    assert normalize(DIRECTIVES["latency-tracking-info-percentiles"], ["50 99.90"]) == "50 99.9"
    assert err("dbfilename", ["a/b.rdb"]) == "dbfilename can't be a path, just a filename"
    print("self-check OK")
