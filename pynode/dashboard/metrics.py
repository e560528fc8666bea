"""The whole cluster as Prometheus metrics (prometheus-client), from the latest poll.

Names follow redis_exporter (redis_up, redis_connected_clients, redis_commands_total
{cmd}, redis_memory_used_bytes, redis_db_keys{db}, ...) with an `addr` label per node,
as redis_exporter does for multiple targets; cluster metrics come from each node's
CLUSTER INFO (redis_cluster_*) plus what only the dashboard sees (failovers it saw,
nodes it cannot reach, the hottest slots from CLUSTER SLOT-STATS where nodes have it).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from pynode.metrics import (Families, add_cluster_info, add_info, add_slot_migrations,
                            add_slot_stats, prometheus_family)


class ClusterCollector:
    """A prometheus_client collector over Poller.snapshot (read at scrape time)."""

    def __init__(self, poller) -> None:
        self.poller = poller

    def collect(self):
        snap = self.poller.snapshot or {"nodes": [], "cluster": {}}
        fam = Families(prometheus_family)
        for n in snap["nodes"]:
            addr = n["addr"]
            fam("gauge", "up", "Information about the Redis instance", ["addr"]).add_metric(
                [addr], 1 if n["up"] else 0)
            info = n.get("info") or {}
            if not n["up"] or not info:
                continue
            add_info(fam, info, ["addr"], [addr])
            add_cluster_info(fam, n.get("cluster_info") or {}, ["addr"], [addr])
            fam("gauge", "cluster_node_slots", "Slots this node serves (reference view)",
                ["addr", "role"]).add_metric([addr, n["role"]], n["slot_count"])
            if n.get("lag") is not None:
                fam("gauge", "cluster_replica_lag_bytes",
                    "Primary's master_repl_offset minus this replica's slave_repl_offset",
                    ["addr"]).add_metric([addr], n["lag"])
            for slot, _ in n.get("migrating", {}).items():
                fam("gauge", "cluster_slot_migrating", "Slots this node is migrating out",
                    ["addr", "slot"]).add_metric([addr, str(slot)], 1)
        add_slot_stats(fam, snap.get("hot_slots") or [], [], [])
        yield from fam.values()
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
        fams = Families(prometheus_family)

        def gauge(name, doc, labels):
            return fams("gauge", name, doc, labels)

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
            if jobs is not None:
                add_slot_migrations(fams, jobs, ["addr"], [addr])
        yield from fams.values()
