"""redis_exporter's metric names for a node, from its INFO and CLUSTER INFO.

One place for the names and for turning INFO fields into metric families,
used by the node's own endpoint (pynode/metrics_http.py, `metrics-port`) and
by `pynode dashboard` (pynode/dashboard/metrics.py, which adds an `addr`
label per node, as redis_exporter does for several targets).  No I/O and
nothing of the server: the input is INFO / CLUSTER INFO as field -> value.

A builder gets `fam(kind, name, doc, labelnames)`: the caller's factory for
a family ("gauge" or "counter", the name without its `redis_` prefix) that
has `add_metric(labelvalues, value)`, so the same code fills
prometheus_client's families or this module's own (`Family`, with
`render_text`, for a node where prometheus-client is not installed).
"""

from __future__ import annotations

import re

# INFO field -> redis_exporter metric name (without the redis_ prefix)
GAUGES = {
    "uptime_in_seconds": "uptime_in_seconds",
    "connected_clients": "connected_clients",
    "blocked_clients": "blocked_clients",
    "tracking_clients": "tracking_clients",
    "used_memory": "memory_used_bytes",
    "used_memory_rss": "memory_used_rss_bytes",
    "used_memory_peak": "memory_used_peak_bytes",
    "used_memory_lua": "memory_used_lua_bytes",
    "used_memory_overhead": "memory_used_overhead_bytes",
    "used_memory_startup": "memory_used_startup_bytes",
    "used_memory_dataset": "memory_used_dataset_bytes",
    "used_memory_scripts": "memory_used_scripts_bytes",
    "maxmemory": "memory_max_bytes",
    "mem_fragmentation_ratio": "mem_fragmentation_ratio",
    "loading": "loading_dump_file",
    "rdb_changes_since_last_save": "rdb_changes_since_last_save",
    "rdb_bgsave_in_progress": "rdb_bgsave_in_progress",
    "rdb_last_save_time": "rdb_last_save_timestamp_seconds",
    "aof_enabled": "aof_enabled",
    "aof_rewrite_in_progress": "aof_rewrite_in_progress",
    "pubsub_channels": "pubsub_channels",
    "pubsub_patterns": "pubsub_patterns",
    "latest_fork_usec": "latest_fork_usec",
    "instantaneous_ops_per_sec": "instantaneous_ops",
    "connected_slaves": "connected_slaves",
    "repl_backlog_size": "replication_backlog_bytes",
    "repl_backlog_active": "repl_backlog_is_active",
    "repl_backlog_first_byte_offset": "repl_backlog_first_byte_offset",
    "repl_backlog_histlen": "repl_backlog_history_bytes",
    "master_repl_offset": "master_repl_offset",
    "slave_repl_offset": "slave_repl_offset",
    "master_last_io_seconds_ago": "master_last_io_seconds_ago",
    "sync_full": "replica_resyncs_full",
    "sync_partial_ok": "replica_partial_resync_accepted",
    "sync_partial_err": "replica_partial_resync_denied",
}
COUNTERS = {
    "total_connections_received": "connections_received_total",
    "total_commands_processed": "commands_processed_total",
    "rejected_connections": "rejected_connections_total",
    "total_net_input_bytes": "net_input_bytes_total",
    "total_net_output_bytes": "net_output_bytes_total",
    "expired_keys": "expired_keys_total",
    "evicted_keys": "evicted_keys_total",
    "keyspace_hits": "keyspace_hits_total",
    "keyspace_misses": "keyspace_misses_total",
    "used_cpu_sys": "cpu_sys_seconds_total",
    "used_cpu_user": "cpu_user_seconds_total",
    "used_cpu_sys_children": "cpu_sys_children_seconds_total",
    "used_cpu_user_children": "cpu_user_children_seconds_total",
    "sync_full": "replica_resyncs_full",
    "sync_partial_ok": "replica_partial_resync_accepted",
    "sync_partial_err": "replica_partial_resync_denied",
}
# CLUSTER INFO field -> metric name
CLUSTER_GAUGES = {
    "cluster_slots_assigned": "cluster_slots_assigned",
    "cluster_slots_ok": "cluster_slots_ok",
    "cluster_slots_pfail": "cluster_slots_pfail",
    "cluster_slots_fail": "cluster_slots_fail",
    "cluster_known_nodes": "cluster_known_nodes",
    "cluster_size": "cluster_size",
    "cluster_current_epoch": "cluster_current_epoch",
    "cluster_my_epoch": "cluster_my_epoch",
}
CLUSTER_COUNTERS = {
    "cluster_stats_messages_sent": "cluster_messages_sent_total",
    "cluster_stats_messages_received": "cluster_messages_received_total",
}
BUS_BY_TYPE = re.compile(r"^cluster_stats_messages_(.+)_(sent|received)$")
INSTANCE_LABELS = ("role", "redis_version", "redis_mode", "os", "maxmemory_policy",
                   "run_id", "tcp_port")
# CLUSTER SLOT-STATS fields (Valkey 8, and Redis 8.2's memory-bytes)
SLOT_FIELDS = ("key-count", "cpu-usec", "memory-bytes", "network-bytes-in",
               "network-bytes-out")


def parse_info(text) -> dict[str, str]:
    """INFO text -> {field: value}."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    out: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def parse_kv(value: str) -> dict[str, str]:
    """'keys=1,expires=0,avg_ttl=0' -> dict."""
    out = {}
    for part in value.split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
    return out


def num(v, default=0):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return default
    return int(f) if f.is_integer() else f


def add_info(fam, info: dict, labels: list[str], values: list[str]) -> None:
    """The INFO metrics of one node: instance info, the GAUGES and COUNTERS,
    per db, per command and per error type.  `labels`/`values` go first on
    every sample (the dashboard's addr; nothing for a node's own endpoint)."""
    fam("gauge", "instance_info", "Information about the Redis instance",
        [*labels, *INSTANCE_LABELS]).add_metric(
        [*values, *(info.get(k, "") for k in INSTANCE_LABELS)], 1)
    for field, name in GAUGES.items():
        if field in info:
            fam("gauge", name, "INFO " + field, labels).add_metric(values, num(info[field]))
    for field, name in COUNTERS.items():
        if field in info:
            fam("counter", name, "INFO " + field, labels).add_metric(values, num(info[field]))
    if "master_link_status" in info:
        fam("gauge", "master_link_up", "INFO master_link_status", labels).add_metric(
            values, 1 if info["master_link_status"] == "up" else 0)
    for key, value in info.items():
        if key.startswith("db") and key[2:].isdigit():
            kv = parse_kv(value)
            at = [*values, key]
            fam("gauge", "db_keys", "Total number of keys by DB",
                [*labels, "db"]).add_metric(at, num(kv.get("keys")))
            fam("gauge", "db_keys_expiring", "Total number of expiring keys by DB",
                [*labels, "db"]).add_metric(at, num(kv.get("expires")))
            fam("gauge", "db_avg_ttl_seconds", "Avg TTL in seconds",
                [*labels, "db"]).add_metric(at, num(kv.get("avg_ttl")) / 1000)
        elif key.startswith("cmdstat_"):
            kv = parse_kv(value)
            at = [*values, key[len("cmdstat_"):]]
            fam("counter", "commands_total", "Total number of calls per command",
                [*labels, "cmd"]).add_metric(at, num(kv.get("calls")))
            fam("counter", "commands_duration_seconds_total",
                "Total amount of time in seconds spent per command",
                [*labels, "cmd"]).add_metric(at, num(kv.get("usec")) / 1e6)
            if "rejected_calls" in kv:
                fam("counter", "commands_rejected_calls_total",
                    "Total number of rejected calls per command",
                    [*labels, "cmd"]).add_metric(at, num(kv["rejected_calls"]))
                fam("counter", "commands_failed_calls_total",
                    "Total number of failed calls per command",
                    [*labels, "cmd"]).add_metric(at, num(kv.get("failed_calls")))
        elif key.startswith("errorstat_"):
            fam("counter", "errors_total", "Total number of errors per error type",
                [*labels, "err"]).add_metric([*values, key[len("errorstat_"):]],
                                             num(parse_kv(value).get("count")))


def add_cluster_info(fam, ci: dict, labels: list[str], values: list[str]) -> None:
    """CLUSTER INFO of one node: state, slots, nodes, epochs, bus messages by type."""
    if "cluster_state" in ci:
        fam("gauge", "cluster_state", "CLUSTER INFO cluster_state (1 = ok)",
            labels).add_metric(values, 1 if ci["cluster_state"] == "ok" else 0)
    for field, name in CLUSTER_GAUGES.items():
        if field in ci:
            fam("gauge", name, "CLUSTER INFO " + field, labels).add_metric(
                values, num(ci[field]))
    for field, name in CLUSTER_COUNTERS.items():
        if field in ci:
            fam("counter", name, "CLUSTER INFO " + field, labels).add_metric(
                values, num(ci[field]))
    for field, value in ci.items():
        m = BUS_BY_TYPE.match(field)
        if m:
            name = "cluster_messages_%s_by_type_total" % m.group(2)
            fam("counter", name, "Cluster bus messages %s, by type" % m.group(2),
                [*labels, "type"]).add_metric([*values, m.group(1)], num(value))


def add_slot_stats(fam, entries: list[dict], labels: list[str], values: list[str]) -> None:
    """CLUSTER SLOT-STATS entries ({"slot": n, "key-count": ...}) as gauges per slot."""
    for st in entries:
        for field in SLOT_FIELDS:
            if field in st:
                name = "cluster_slot_" + field.replace("-", "_")
                fam("gauge", name, "CLUSTER SLOT-STATS %s of the hottest slots" % field,
                    [*labels, "slot"]).add_metric([*values, str(st["slot"])], st[field])


MIGRATION_DONE = ("success", "failed", "cancelled")     # GETSLOTMIGRATIONS end states


def add_slot_migrations(fam, jobs: list[dict], labels: list[str], values: list[str]) -> None:
    """Atomic slot migrations, as CLUSTER GETSLOTMIGRATIONS describes them
    (each dict with its slot_count): the unfinished ones one by one, and how
    many there are by operation and state."""
    by_state: dict[tuple[str, str], int] = {}
    for job in jobs:
        op, st = str(job.get("operation", "")), str(job.get("state", ""))
        by_state[(op, st)] = by_state.get((op, st), 0) + 1
        if st in MIGRATION_DONE:
            continue
        at = [*values, str(job.get("name", "")), op, st,
              str(job.get("source_node", "")), str(job.get("target_node", ""))]
        fam("gauge", "cluster_slot_migration_slots",
            "Slots of an unfinished atomic slot migration (GETSLOTMIGRATIONS)",
            [*labels, "name", "operation", "state", "source_node", "target_node"]
            ).add_metric(at, job["slot_count"])
        fam("gauge", "cluster_slot_migration_remaining_repl_bytes",
            "Bytes of an unfinished atomic slot migration not sent yet",
            [*labels, "name"]).add_metric(at[:len(values) + 1],
                                          num(job.get("remaining_repl_size")))
        fam("gauge", "cluster_slot_migration_last_update_timestamp_seconds",
            "When an unfinished atomic slot migration last made progress",
            [*labels, "name"]).add_metric(at[:len(values) + 1],
                                          num(job.get("last_update_time")))
    f = fam("gauge", "cluster_slot_migrations", "Atomic slot migrations this node knows, "
            "by operation and state (GETSLOTMIGRATIONS)", [*labels, "operation", "state"])
    for (op, st), count in sorted(by_state.items()):
        f.add_metric([*values, op, st], count)


class Families(dict):
    """name -> family, each made on first use by make(kind, "redis_" + name,
    doc, labelnames); a builder's `fam`."""

    def __init__(self, make) -> None:
        super().__init__()
        self.make = make

    def __call__(self, kind: str, name: str, doc: str, labels: list[str]):
        f = self.get(name)
        if f is None:
            f = self[name] = self.make(kind, "redis_" + name, doc, labels)
        return f


def prometheus_family(kind: str, name: str, doc: str, labels: list[str]):
    """A prometheus_client family (for Families; needs prometheus-client)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
    return cls(name, doc, labels=labels)


class Family:
    """A metric family for render_text (prometheus_client's, without it)."""

    def __init__(self, kind: str, name: str, doc: str, labels: list[str]) -> None:
        self.kind = kind
        self.name = name[:-6] if kind == "counter" and name.endswith("_total") else name
        self.doc = doc
        self.labels = list(labels)
        self.samples: list[tuple[list[str], float]] = []

    def add_metric(self, values, value) -> None:
        self.samples.append((list(values), value))


def _escape(s: str, quote: bool) -> str:
    s = s.replace("\\", r"\\").replace("\n", r"\n")
    return s.replace('"', r"\"") if quote else s


def _value(v) -> str:
    if isinstance(v, float):
        if v != v:
            return "NaN"
        if v in (float("inf"), float("-inf")):
            return "+Inf" if v > 0 else "-Inf"
        return repr(v)
    return "%d" % v


def render_text(families) -> bytes:
    """The Prometheus text exposition format (0.0.4) of `Family`s."""
    out = []
    for f in families:
        full = f.name + "_total" if f.kind == "counter" else f.name
        out.append("# HELP %s %s\n# TYPE %s %s\n" % (full, _escape(f.doc, False), full, f.kind))
        for values, v in f.samples:
            if values:
                labels = ",".join('%s="%s"' % (k, _escape(str(x), True))
                                  for k, x in zip(f.labels, values))
                out.append("%s{%s} %s\n" % (full, labels, _value(v)))
            else:
                out.append("%s %s\n" % (full, _value(v)))
    return "".join(out).encode()
