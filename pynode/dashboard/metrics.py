"""The whole cluster as Prometheus metrics (prometheus-client), from the latest poll.

Names follow redis_exporter (redis_up, redis_connected_clients, redis_commands_total
{cmd}, redis_memory_used_bytes, redis_db_keys{db}, ...) with an `addr` label per node,
as redis_exporter does for multiple targets; cluster metrics come from each node's
CLUSTER INFO (redis_cluster_*) plus what only the dashboard sees (failovers it saw,
nodes it cannot reach, the hottest slots from CLUSTER SLOT-STATS where nodes have it).
"""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from pynode.dashboard.state import num, parse_kv

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


class ClusterCollector:
    """A prometheus_client collector over Poller.snapshot (read at scrape time)."""

    def __init__(self, poller) -> None:
        self.poller = poller

    def collect(self):
        snap = self.poller.snapshot or {"nodes": [], "cluster": {}}
        fams: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}

        def fam(kind, name, doc, labels):
            f = fams.get(name)
            if f is None:
                cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                f = fams[name] = cls("redis_" + name, doc, labels=labels)
            return f

        for n in snap["nodes"]:
            addr = n["addr"]
            fam("gauge", "up", "Information about the Redis instance", ["addr"]).add_metric(
                [addr], 1 if n["up"] else 0)
            info = n.get("info") or {}
            if not n["up"] or not info:
                continue
            fam("gauge", "instance_info", "Information about the Redis instance",
                ["addr", *INSTANCE_LABELS]).add_metric(
                [addr, *(info.get(k, "") for k in INSTANCE_LABELS)], 1)
            for field, name in GAUGES.items():
                if field in info:
                    fam("gauge", name, "INFO " + field, ["addr"]).add_metric(
                        [addr], num(info[field]))
            for field, name in COUNTERS.items():
                if field in info:
                    fam("counter", name, "INFO " + field, ["addr"]).add_metric(
                        [addr], num(info[field]))
            if "master_link_status" in info:
                fam("gauge", "master_link_up", "INFO master_link_status", ["addr"]).add_metric(
                    [addr], 1 if info["master_link_status"] == "up" else 0)
            for key, value in info.items():
                if key.startswith("db") and key[2:].isdigit():
                    kv = parse_kv(value)
                    fam("gauge", "db_keys", "Total number of keys by DB",
                        ["addr", "db"]).add_metric([addr, key], num(kv.get("keys")))
                    fam("gauge", "db_keys_expiring", "Total number of expiring keys by DB",
                        ["addr", "db"]).add_metric([addr, key], num(kv.get("expires")))
                    fam("gauge", "db_avg_ttl_seconds", "Avg TTL in seconds",
                        ["addr", "db"]).add_metric([addr, key],
                                                   num(kv.get("avg_ttl")) / 1000)
                elif key.startswith("cmdstat_"):
                    kv = parse_kv(value)
                    cmd = key[len("cmdstat_"):]
                    fam("counter", "commands_total", "Total number of calls per command",
                        ["addr", "cmd"]).add_metric([addr, cmd], num(kv.get("calls")))
                    fam("counter", "commands_duration_seconds_total",
                        "Total amount of time in seconds spent per command",
                        ["addr", "cmd"]).add_metric([addr, cmd], num(kv.get("usec")) / 1e6)
                    if "rejected_calls" in kv:
                        fam("counter", "commands_rejected_calls_total",
                            "Total number of rejected calls per command",
                            ["addr", "cmd"]).add_metric([addr, cmd], num(kv["rejected_calls"]))
                        fam("counter", "commands_failed_calls_total",
                            "Total number of failed calls per command",
                            ["addr", "cmd"]).add_metric([addr, cmd], num(kv.get("failed_calls")))
                elif key.startswith("errorstat_"):
                    fam("counter", "errors_total", "Total number of errors per error type",
                        ["addr", "err"]).add_metric(
                        [addr, key[len("errorstat_"):]], num(parse_kv(value).get("count")))
            ci = n.get("cluster_info") or {}
            if "cluster_state" in ci:
                fam("gauge", "cluster_state", "CLUSTER INFO cluster_state (1 = ok)",
                    ["addr"]).add_metric([addr], 1 if ci["cluster_state"] == "ok" else 0)
            for field, name in CLUSTER_GAUGES.items():
                if field in ci:
                    fam("gauge", name, "CLUSTER INFO " + field, ["addr"]).add_metric(
                        [addr], num(ci[field]))
            for field, name in CLUSTER_COUNTERS.items():
                if field in ci:
                    fam("counter", name, "CLUSTER INFO " + field, ["addr"]).add_metric(
                        [addr], num(ci[field]))
            for field, value in ci.items():
                m = BUS_BY_TYPE.match(field)
                if m:
                    name = "cluster_messages_%s_by_type_total" % m.group(2)
                    fam("counter", name, "Cluster bus messages %s, by type" % m.group(2),
                        ["addr", "type"]).add_metric([addr, m.group(1)], num(value))
            fam("gauge", "cluster_node_slots", "Slots this node serves (reference view)",
                ["addr", "role"]).add_metric([addr, n["role"]], n["slot_count"])
            if n.get("lag") is not None:
                fam("gauge", "cluster_replica_lag_bytes",
                    "Primary's master_repl_offset minus this replica's slave_repl_offset",
                    ["addr"]).add_metric([addr], n["lag"])
            for slot, _ in n.get("migrating", {}).items():
                fam("gauge", "cluster_slot_migrating", "Slots this node is migrating out",
                    ["addr", "slot"]).add_metric([addr, str(slot)], 1)
        hot = snap.get("hot_slots") or []
        for st in hot:
            for field in ("key-count", "cpu-usec", "memory-bytes", "network-bytes-in",
                          "network-bytes-out"):
                if field in st:
                    name = "cluster_slot_" + field.replace("-", "_")
                    fam("gauge", name, "CLUSTER SLOT-STATS %s of the hottest slots" % field,
                        ["slot"]).add_metric([str(st["slot"])], st[field])
        yield from fams.values()
        p = self.poller
        yield GaugeMetricFamily("pynode_dashboard_nodes_unreachable",
                                "Known nodes the dashboard cannot reach",
                                value=sum(1 for n in snap["nodes"] if not n["up"]))
        yield CounterMetricFamily("pynode_dashboard_failovers",
                                  "Failovers the dashboard saw (a replica became primary)",
                                  value=p.failovers)
        yield CounterMetricFamily("pynode_dashboard_polls", "Poll rounds", value=p.polls)


def registry_for(poller) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(ClusterCollector(poller))
    return reg


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


# -- slow log, latency monitor, slot migrations ---------------------------------------

MIGRATION_DONE = ("success", "failed", "cancelled")     # GETSLOTMIGRATIONS end states


class NodeHealthCollector:
    """Per node, from the latest poll: the slow log (SLOWLOG LEN / GET 1) and
    the latency monitor (LATENCY LATEST) in redis_exporter's names, and slot
    migrations in progress: legacy ones (SETSLOT MIGRATING/IMPORTING, keys
    left from CLUSTER COUNTKEYSINSLOT) and atomic ones (CLUSTER
    GETSLOTMIGRATIONS, where the node has it)."""

    def __init__(self, poller) -> None:
        self.poller = poller

    def collect(self):
        snap = self.poller.snapshot or {"nodes": []}
        fams: dict[str, GaugeMetricFamily] = {}

        def gauge(name, doc, labels):
            f = fams.get(name)
            if f is None:
                f = fams[name] = GaugeMetricFamily("redis_" + name, doc, labels=labels)
            return f

        for n in snap["nodes"]:
            if not n["up"]:
                continue
            addr = n["addr"]
            lat = n.get("latency") or {}
            if "slowlog_len" in lat:
                gauge("slowlog_length", "Total slowlog", ["addr"]).add_metric(
                    [addr], lat["slowlog_len"])
            if "slowlog_last_id" in lat:
                gauge("slowlog_last_id", "Last id of slowlog", ["addr"]).add_metric(
                    [addr], lat["slowlog_last_id"])
                gauge("last_slow_execution_duration_seconds",
                      "The amount of time needed for last slow execution, in seconds",
                      ["addr"]).add_metric([addr], lat["slowlog_last_usec"] / 1e6)
            for ev in lat.get("events", []):
                labels = [addr, ev["event"]]
                gauge("latency_spike_last", "When the latency spike last occurred",
                      ["addr", "event_name"]).add_metric(labels, ev["time"])
                gauge("latency_spike_duration_seconds",
                      "Length of the last latency spike in seconds",
                      ["addr", "event_name"]).add_metric(labels, ev["latest_ms"] / 1e3)
                gauge("latency_spike_max_duration_seconds",
                      "Length of the longest latency spike of this event in seconds",
                      ["addr", "event_name"]).add_metric(labels, ev["max_ms"] / 1e3)
            if n["role"] == "master":
                gauge("cluster_slots_migrating", "Slots this node is migrating out "
                      "(SETSLOT MIGRATING)", ["addr"]).add_metric([addr], len(n["migrating"]))
                gauge("cluster_slots_importing", "Slots this node is importing "
                      "(SETSLOT IMPORTING)", ["addr"]).add_metric([addr], len(n["importing"]))
            keys = n.get("slot_keys") or {}
            for kind, slots in (("migrating", n["migrating"]), ("importing", n["importing"])):
                for slot in slots:
                    if slot in keys:
                        gauge("cluster_slot_%s_keys" % kind,
                              "Keys in a slot this node is %s (CLUSTER COUNTKEYSINSLOT)"
                              % kind, ["addr", "slot"]).add_metric([addr, str(slot)],
                                                                   keys[slot])
            jobs = n.get("migrations")
            if jobs is None:
                continue
            by_state: dict[tuple[str, str], int] = {}
            for job in jobs:
                op, st = str(job.get("operation", "")), str(job.get("state", ""))
                by_state[(op, st)] = by_state.get((op, st), 0) + 1
                if st in MIGRATION_DONE:
                    continue
                labels = [addr, str(job.get("name", "")), op, st,
                          str(job.get("source_node", "")), str(job.get("target_node", ""))]
                gauge("cluster_slot_migration_slots",
                      "Slots of an unfinished atomic slot migration (GETSLOTMIGRATIONS)",
                      ["addr", "name", "operation", "state", "source_node", "target_node"]
                      ).add_metric(labels, job["slot_count"])
                gauge("cluster_slot_migration_remaining_repl_bytes",
                      "Bytes of an unfinished atomic slot migration not sent yet",
                      ["addr", "name"]).add_metric(labels[:2],
                                                   num(job.get("remaining_repl_size")))
                gauge("cluster_slot_migration_last_update_timestamp_seconds",
                      "When an unfinished atomic slot migration last made progress",
                      ["addr", "name"]).add_metric(labels[:2],
                                                   num(job.get("last_update_time")))
            fam = gauge("cluster_slot_migrations", "Atomic slot migrations this node knows, "
                        "by operation and state (GETSLOTMIGRATIONS)",
                        ["addr", "operation", "state"])
            for (op, st), count in sorted(by_state.items()):
                fam.add_metric([addr, op, st], count)
        yield from fams.values()
