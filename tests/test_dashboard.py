"""`pynode dashboard`: snapshot/event units, the HTTP API and SSE (aiohttp's client),
/metrics against INFO (prometheus_client's own parser), actions, the page password,
read-only mode, a node dying, and a real headless chromium watching a reshard and a
failover."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import aiohttp
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from pynode.dashboard import state
from pynode.dashboard.actions import ActionError, parse_slots
from pynode.dashboard.metrics import registry_for, render
from tests.cluster_helpers import Cluster, free_ports, key_for_slot, parse_info, run
from tests.helpers import ChaosCli, ping_ok, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACTION_HEADERS = {"X-Pynode-Dashboard": "1"}


# -- units: replies -> snapshot -> events ---------------------------------------------

NODES_A = """\
aaaa000000000000000000000000000000000000 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460 [5461-<-bbbb000000000000000000000000000000000000]
bbbb000000000000000000000000000000000000 127.0.0.1:7001@17001 master - 0 1 2 connected 5461-10922
cccc000000000000000000000000000000000000 127.0.0.1:7002@17002 master - 0 1 3 connected 10923-16383
dddd000000000000000000000000000000000000 127.0.0.1:7003@17003 slave aaaa000000000000000000000000000000000000 0 1 1 connected
"""


def _snap(text: str, now: float, prev=None, down=()) -> dict:
    view = state.parse_nodes(text)
    per = {n["addr"]: {"up": n["addr"] not in down, "info": {}, "cluster_info": {},
                       "self": None, "slot_stats": None} for n in view}
    return state.build_snapshot(now, view, view[0]["id"], per, prev)


def test_parse_nodes_ranges_flags_and_migration_marks():
    nodes = state.parse_nodes(NODES_A)
    a = nodes[0]
    assert a["myself"] and a["role"] == "master" and a["addr"] == "127.0.0.1:7000"
    assert a["slots"] == [[0, 5460]] and a["importing"] == {5461: "b" * 4 + "0" * 36}
    assert a["port"] == 7000 and a["cport"] == 17000 and a["config_epoch"] == 1
    assert nodes[3]["role"] == "slave" and nodes[3]["primary"] == a["id"]
    mig = state.parse_nodes("x 1.2.3.4:1@2 myself,master - 0 0 5 connected 7 [8->-yy]\n")[0]
    assert mig["slots"] == [[7, 7]] and mig["migrating"] == {8: "yy"}


def test_diff_failover_flags_epochs_and_slot_moves():
    s1 = _snap(NODES_A, 100.0)
    assert [e["kind"] for e in state.diff(None, s1)] == ["start"]
    # the replica of aaaa takes over with epoch 4, aaaa is FAIL, 100 slots move to cccc
    text2 = (NODES_A.replace("myself,master - 0 0 1 connected 0-5460", "master,fail - 0 0 1 "
                             "disconnected 100-5460")
             .replace("slave aaaa000000000000000000000000000000000000 0 1 1 connected",
                      "master - 0 1 4 connected")
             .replace("10923-16383", "0-99 10923-16383"))
    s2 = _snap(text2, 101.0, s1, down={"127.0.0.1:7000"})
    kinds = {e["kind"]: e["text"] for e in state.diff(s1, s2)}
    assert "fail" in kinds and "7000" in kinds["fail"]
    assert "failover" in kinds and "127.0.0.1:7003" in kinds["failover"]
    assert "epoch" in kinds and "1 -> 4" in kinds["epoch"]
    assert "unreachable" in kinds
    assert kinds["slots-moved"].startswith("100 slots moved from 127.0.0.1:7000") \
        and kinds["slots-moved"].endswith(": 0-99")
    assert state.diff(s2, _snap(text2, 102.0, s2, down={"127.0.0.1:7000"})) == []
    # a promoted replica taking its old primary's slots is a failover, not a move
    text3 = (NODES_A.replace("myself,master - 0 0 1 connected 0-5460", "slave dddd" + "0" * 36
                             + " 0 0 5 connected")
             .replace("slave aaaa000000000000000000000000000000000000 0 1 1 connected",
                      "master - 0 1 5 connected 0-5460"))
    kinds = [e["kind"] for e in state.diff(s1, _snap(text3, 101.0, s1))]
    assert "failover" in kinds and "demoted" in kinds and "slots-failover" in kinds
    assert "slots-moved" not in kinds


def test_ops_per_second_leave_out_the_dashboards_own_commands():
    view = state.parse_nodes(NODES_A)[:1]

    def rnd(now, processed, own, prev):
        per = {view[0]["addr"]: {"up": True, "self": None, "slot_stats": None,
                                 "info": {"total_commands_processed": str(processed)},
                                 "cluster_info": {}, "own_calls": own}}
        return state.build_snapshot(now, view, view[0]["id"], per, prev)
    s1 = rnd(10.0, 100, 7, None)
    s2 = rnd(12.0, 124, 11, s1)          # 24 commands in 2 s, 4 of them the dashboard's
    assert s2["nodes"][0]["ops"] == 10.0


def test_parse_slot_stats_valkey_shape():
    # RESP2 reply of CLUSTER SLOT-STATS ORDERBY key-count LIMIT 2 (Valkey 8)
    reply = [[100, [b"key-count", 7, b"cpu-usec", 30, b"network-bytes-in", 5,
                    b"network-bytes-out", 9]], [5, [b"key-count", 1]]]
    assert state.parse_slot_stats(reply) == [
        {"slot": 100, "key-count": 7, "cpu-usec": 30, "network-bytes-in": 5,
         "network-bytes-out": 9}, {"slot": 5, "key-count": 1}]
    assert state.parse_slot_stats(state_error("ERR unknown subcommand")) is None


def state_error(text):
    from pynode.dashboard.resp import ReplyError
    return ReplyError(text)


def test_parse_slots_rejects_bad_input():
    assert parse_slots("0-2, 7,7") == [0, 1, 2, 7]
    for bad in ("", "x", "5-3", "0-16384", "-1", "1-2-3"):
        with pytest.raises(ActionError):
            parse_slots(bad)


def test_metrics_render_from_snapshot():
    snap = _snap(NODES_A, 1.0)
    snap["nodes"][0]["info"] = {"connected_clients": "3", "used_memory": "1000",
                                "db0": "keys=5,expires=1,avg_ttl=2000",
                                "cmdstat_set": "calls=7,usec=70,usec_per_call=10.00,"
                                "rejected_calls=0,failed_calls=1"}
    snap["nodes"][0]["cluster_info"] = {"cluster_state": "ok",
                                        "cluster_stats_messages_ping_sent": "4"}
    snap["hot_slots"] = [{"slot": 9, "key-count": 3, "node": "x"}]

    class P:
        snapshot, failovers, polls = snap, 2, 5
    fams = {f.name: f for f in text_string_to_metric_families(render(registry_for(P)).decode())}
    up = {s.labels["addr"]: s.value for s in fams["redis_up"].samples}
    assert up == {"127.0.0.1:%d" % p: 1.0 for p in (7000, 7001, 7002, 7003)}
    assert fams["redis_connected_clients"].samples[0].value == 3
    assert [(s.labels, s.value) for s in fams["redis_db_keys"].samples] == [
        ({"addr": "127.0.0.1:7000", "db": "db0"}, 5.0)]
    assert fams["redis_db_avg_ttl_seconds"].samples[0].value == 2.0
    cmds = fams["redis_commands"]          # the parser strips _total from counter names
    assert cmds.type == "counter" and cmds.samples[0].name == "redis_commands_total"
    assert cmds.samples[0].labels["cmd"] == "set" and cmds.samples[0].value == 7
    assert fams["redis_commands_failed_calls"].samples[0].value == 1
    bus = fams["redis_cluster_messages_sent_by_type"].samples[0]
    assert bus.labels == {"addr": "127.0.0.1:7000", "type": "ping"} and bus.value == 4
    assert fams["redis_cluster_slot_key_count"].samples[0].labels == {"slot": "9"}
    assert fams["pynode_dashboard_failovers"].samples[0].value == 2


def test_slowlog_latency_and_migration_metrics_from_replies():
    lat = state.parse_latency(4, [[17, 1700000000, 2500, [b"DEBUG", b"SLEEP", b"0"]]],
                              [[b"command", 1700000001, 250, 900]])
    assert lat == {"slowlog_len": 4, "slowlog_last_id": 17, "slowlog_last_usec": 2500,
                   "events": [{"event": "command", "time": 1700000001, "latest_ms": 250,
                               "max_ms": 900}]}
    assert state.parse_latency(0, [], []) == {"slowlog_len": 0, "slowlog_last_id": 0,
                                              "slowlog_last_usec": 0, "events": []}
    refused = state_error("NOPERM")
    assert state.parse_latency(refused, refused, refused) == {"events": []}
    jobs = state.parse_slot_migrations([
        [b"name", b"j1", b"operation", b"EXPORT", b"slot_ranges", b"0-99 200-200",
         b"target_node", b"t" * 40, b"source_node", b"s" * 40, b"state", b"streaming",
         b"last_update_time", 1700000002, b"remaining_repl_size", 512],
        [b"name", b"j0", b"operation", b"EXPORT", b"slot_ranges", b"5-5", b"state",
         b"success"]])
    assert jobs[0]["slot_count"] == 101 and jobs[0]["state"] == "streaming"
    assert jobs[0]["remaining_repl_size"] == 512 and jobs[1]["slot_count"] == 1
    assert state.parse_slot_migrations(state_error("ERR unknown subcommand")) is None
    snap = _snap(NODES_A, 1.0)
    a = snap["nodes"][0]       # imports 5461 from bbbb
    a["latency"], a["migrations"], a["slot_keys"] = lat, jobs, {5461: 3}
    b = snap["nodes"][1]
    b["migrating"], b["slot_keys"] = {5461: a["id"]}, {5461: 7}

    class P:
        snapshot = snap
    from pynode.dashboard.metrics import NodeHealthCollector
    from prometheus_client import CollectorRegistry
    reg = CollectorRegistry(auto_describe=False)
    reg.register(NodeHealthCollector(P))
    fams = {f.name: f for f in text_string_to_metric_families(render(reg).decode())}

    def val(metric, /, **labels):
        got = [s.value for s in fams[metric].samples
               if all(s.labels.get(k) == v for k, v in labels.items())]
        assert len(got) == 1, (metric, labels, fams[metric].samples)
        return got[0]
    A, B = "127.0.0.1:7000", "127.0.0.1:7001"
    assert val("redis_slowlog_length", addr=A) == 4
    assert val("redis_slowlog_last_id", addr=A) == 17
    assert val("redis_last_slow_execution_duration_seconds", addr=A) == 0.0025
    assert val("redis_latency_spike_last", addr=A, event_name="command") == 1700000001
    assert val("redis_latency_spike_duration_seconds", addr=A, event_name="command") == 0.25
    assert val("redis_latency_spike_max_duration_seconds", addr=A) == 0.9
    assert val("redis_cluster_slots_importing", addr=A) == 1
    assert val("redis_cluster_slots_migrating", addr=A) == 0
    assert val("redis_cluster_slots_migrating", addr=B) == 1
    assert val("redis_cluster_slot_importing_keys", addr=A, slot="5461") == 3
    assert val("redis_cluster_slot_migrating_keys", addr=B, slot="5461") == 7
    # unfinished jobs one by one; every job counted by state
    assert val("redis_cluster_slot_migration_slots", addr=A, name="j1", state="streaming",
               target_node="t" * 40) == 101
    assert val("redis_cluster_slot_migration_remaining_repl_bytes", name="j1") == 512
    assert val("redis_cluster_slot_migration_last_update_timestamp_seconds",
               name="j1") == 1700000002
    assert len(fams["redis_cluster_slot_migration_slots"].samples) == 1
    assert val("redis_cluster_slot_migrations", state="success", operation="EXPORT") == 1
    assert val("redis_cluster_slot_migrations", state="streaming") == 1


def test_chaos_log_on_the_page_and_a_damaged_log(tmp):
    """The page's view of the chaos log: particulars, never an undo; a damaged
    line is named, for the page and the command line alike."""
    from pynode.chaos.control import Chaos, ChaosError
    from pynode.dashboard.chaos import ChaosPanel
    log = os.path.join(tmp, "unit-chaos.log")
    ch = Chaos(log)
    ch.record("kill", "127.0.0.1:1", {"action": "restart", "image": {
        "argv": ["pynode", "--requirepass", "s3cret"], "cwd": "/", "netns": None}}, pid=7)

    class P:
        snapshot, password, user = None, None, None
    panel = ChaosPanel(P, log)
    view = panel.view()
    assert view["error"] is None and view["log_path"] == log
    assert [(e["id"], e["action"], e["open"], e["details"]) for e in view["entries"]] == [
        (1, "kill", True, {"pid": 7})]
    assert "s3cret" not in json.dumps(view)
    with open(log) as f:
        good = f.read()
    for bad in ("{not json", "[1, 2]", '{"no": "id"}'):
        with open(log, "w") as f:
            f.write(good + bad + "\n")
        with pytest.raises(ChaosError, match="line 2 is not an entry of this log"):
            ch.entries()
        view = panel.view()
        assert "line 2 is not an entry" in view["error"] and view["entries"] == []


# -- CLUSTER SLOT-STATS from a node that has it (a stand-in speaking Valkey 8's reply) ------

def _resp(v) -> bytes:
    if isinstance(v, int):
        return b":%d\r\n" % v
    if isinstance(v, list):
        return b"*%d\r\n" % len(v) + b"".join(_resp(x) for x in v)
    if isinstance(v, Exception):
        return b"-%s\r\n" % str(v).encode()
    v = v.encode() if isinstance(v, str) else v
    return b"$%d\r\n%s\r\n" % (len(v), v)


async def _slot_stats_node(port: int, stats: dict[int, dict[str, int]], seen: list,
                           pid: int = 0):
    """A one-primary 'cluster' on port whose CLUSTER SLOT-STATS answers as Valkey 8
    (INFO reports process_id pid when given)."""
    import hiredis

    def answer(cmd):
        words = [c.decode() for c in cmd]
        seen.append(words)
        up = [w.upper() for w in words]
        if up[:2] == ["CLUSTER", "NODES"]:
            return "%s 127.0.0.1:%d@%d myself,master - 0 0 1 connected 0-16383\n" % (
                "e" * 40, port, port + 10000)
        if up[:2] == ["CLUSTER", "INFO"]:
            return "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_known_nodes:1\r\n"
        if up[0] == "INFO":
            return ("# Server\r\nredis_version:8.0.0\r\n%s# Keyspace\r\ndb0:keys=%d,expires=0,"
                    "avg_ttl=0\r\n" % ("process_id:%d\r\n" % pid if pid else "",
                                       sum(s["key-count"] for s in stats.values())))
        if up[:4] == ["CLUSTER", "SLOT-STATS", "ORDERBY", "KEY-COUNT"] and up[4] == "LIMIT":
            order = sorted(stats, key=lambda slot: (-stats[slot]["key-count"], slot))
            return [[slot, [x for kv in stats[slot].items() for x in kv]]
                    for slot in order[:int(words[5])]]
        return Exception("ERR unknown command")

    async def client(reader, writer):
        parser = hiredis.Reader()
        while data := await reader.read(65536):
            parser.feed(data)
            while (cmd := parser.gets()) is not False:
                writer.write(_resp(answer(cmd)))
        writer.close()
    return await asyncio.start_server(client, "127.0.0.1", port)


def test_hot_slot_of_a_skewed_load_from_slot_stats():
    from pynode.dashboard.poller import Poller
    port = free_ports(1)[0]
    # a skewed load: slot 777 holds most keys and took most CPU
    stats = {s: {"key-count": 2, "cpu-usec": 10, "network-bytes-in": 30,
                 "network-bytes-out": 40} for s in range(0, 16384, 997)}
    stats[777] = {"key-count": 500, "cpu-usec": 9000, "network-bytes-in": 7000,
                  "network-bytes-out": 12000}
    seen: list = []

    async def go():
        server = await _slot_stats_node(port, stats, seen)
        poller = Poller([("127.0.0.1", port)], timeout=5)
        try:
            return await poller.poll_once(), render(registry_for(poller)).decode()
        finally:
            await poller.stop()
            server.close()
            await server.wait_closed()
    snap, text = asyncio.run(asyncio.wait_for(go(), 30))
    assert ["CLUSTER", "SLOT-STATS", "ORDERBY", "key-count", "LIMIT", "10"] in seen
    assert snap["slot_stats_supported"] is True
    assert len(snap["hot_slots"]) == 10
    hot = snap["hot_slots"][0]
    assert hot["slot"] == 777 and hot["key-count"] == 500 and hot["cpu-usec"] == 9000
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    kc = {s.labels["slot"]: s.value for s in fams["redis_cluster_slot_key_count"].samples}
    assert max(kc, key=kc.get) == "777" and kc["777"] == 500
    assert {s.labels["slot"]: s.value for s in
            fams["redis_cluster_slot_network_bytes_out"].samples}["777"] == 12000


# -- a real cluster and a dashboard process ---------------------------------------------

class Dashboard:
    def __init__(self, cluster: Cluster, *extra: str, tmp: str) -> None:
        self.port = free_ports(1, exclude=set(cluster.ports))[0]
        self.url = "http://127.0.0.1:%d" % self.port
        self.log_path = os.path.join(tmp, "dashboard-%d.log" % self.port)
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pynode", "dashboard", "--interval", "0.5",
             "--cluster", "127.0.0.1:%d" % cluster.ports[0],
             "--cluster", "127.0.0.1:%d" % cluster.ports[1], "--port", str(self.port), *extra],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=tmp)

    def wait_ready(self, auth=None) -> "Dashboard":
        def ready():
            assert self.proc.poll() is None, self.output()
            try:
                st, _, body = http("GET", self.url + "/api/state", auth=auth)
            except aiohttp.ClientError:
                return False
            return st == 200 and json.loads(body)["snapshot"] is not None
        wait_until(ready, timeout=30, what="dashboard ready")
        return self

    def output(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def http(method: str, url: str, auth: tuple[str, str] | None = None, **kw):
    """(status, headers, body) through aiohttp's client, no redirects followed;
    auth = (user, password) for HTTP basic auth."""
    if auth:
        token = base64.b64encode(("%s:%s" % auth).encode()).decode()
        kw["headers"] = dict(kw.get("headers") or {}, Authorization="Basic " + token)

    async def go():
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as s:
            async with s.request(method, url, allow_redirects=False, **kw) as r:
                return r.status, dict(r.headers), await r.read()
    return asyncio.run(go())


def state_of(d: Dashboard) -> dict:
    st, _, body = http("GET", d.url + "/api/state")
    assert st == 200
    return json.loads(body)


def action(d: Dashboard, name: str, params, headers=ACTION_HEADERS):
    st, _, body = http("POST", d.url + "/api/action/" + name, json=params, headers=headers)
    return st, json.loads(body)


@pytest.fixture(scope="module")
def tmp():
    d = tempfile.mkdtemp(prefix="pynode-dashboard-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    # DEBUG from loopback: the chaos partition and slow-disk actions use it
    with Cluster(primaries=3, replicas=1, extra=["--enable-debug-command", "local"]) as c:
        yield c


@pytest.fixture(scope="module")
def dash(cluster, tmp):
    d = Dashboard(cluster, tmp=tmp)
    try:
        yield d.wait_ready()
    finally:
        d.stop()


def by_id(snap: dict) -> dict:
    return {n["id"]: n for n in snap["nodes"]}


def polls_pass(d: Dashboard, n: int = 2) -> None:
    """Wait until n more poll rounds finished (so the snapshot is newer than now)."""
    t0 = time.time()
    wait_until(lambda: state_of(d)["snapshot"]["time"] > t0 + 0.5 * (n - 1), timeout=20,
               what="%d dashboard polls" % n)


def test_state_api_shows_shards_roles_and_slots(cluster, dash):
    data = state_of(dash)
    snap = data["snapshot"]
    assert data["read_only"] is False and data["login"] is False
    assert len(snap["nodes"]) == 6 and all(n["up"] for n in snap["nodes"])
    assert len(snap["shards"]) == 3 and all(len(s["replicas"]) == 1 for s in snap["shards"])
    assert sum(s["slot_count"] for s in snap["shards"]) == 16384
    assert snap["cluster"]["state"] == "ok" and snap["cluster"]["slots_assigned"] == "16384"
    # the truth: CLUSTER NODES of a node
    truth = {n["id"]: n for n in cluster.nodes[0].nodes()}
    for n in snap["nodes"]:
        t = truth[n["id"]]
        assert n["role"] == ("master" if "master" in t["flags"] else "slave")
        assert n["config_epoch"] == t["epoch"] and n["link"] == t["link"]
        assert n["slot_count"] == len(t["slots"])
    # raw INFO stays on the server; the page gets a few fields
    assert all(set(n["info"]) <= set(("redis_version uptime_in_seconds used_memory_human role "
                                      "master_link_status slave_repl_offset master_repl_offset "
                                      "connected_slaves total_commands_processed aof_enabled "
                                      "loading").split()) for n in snap["nodes"])
    # pynode answers CLUSTER SLOT-STATS as Valkey 8: key-count only while
    # cluster-slot-stats-enabled is no (the default)
    assert snap["slot_stats_supported"] is True and snap["hot_slots"]
    assert all(set(s) == {"slot", "key-count", "node"} for s in snap["hot_slots"])
    st, headers, body = http("GET", dash.url + "/")
    assert st == 200 and b'<canvas id="slotmap"' in body and b"http" not in body.split(
        b"<script")[0].replace(b"http-equiv", b"")
    st, _, js = http("GET", dash.url + "/static/app.js")
    assert st == 200 and b"EventSource" in js and b"//cdn" not in js


def test_metrics_parse_and_match_info(cluster, dash):
    rc = cluster.cluster_client()
    try:
        for i in range(200):
            rc.set("metric:%d" % i, "v")
        rc.get("metric:0")
        rc.get("metric:none")
    finally:
        rc.close()
    polls_pass(dash)
    st, headers, body = http("GET", dash.url + "/metrics")
    assert st == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    fams = {f.name: f for f in text_string_to_metric_families(body.decode())}

    def per_addr(name, **labels):
        return {s.labels["addr"]: s.value for s in fams[name].samples
                if s.name.startswith(name) and all(s.labels.get(k) == v
                                                   for k, v in labels.items())}
    addrs = {"127.0.0.1:%d" % p for p in cluster.ports}
    assert per_addr("redis_up") == {a: 1.0 for a in addrs}
    keys = per_addr("redis_db_keys", db="db0")
    sets = per_addr("redis_commands", cmd="set")
    total_keys = 0
    for node in cluster.nodes:
        addr = "127.0.0.1:%d" % node.port
        info = node.client().info("all")        # redis-py parses db0 and cmdstat_*
        n_keys = info["db0"]["keys"] if "db0" in info else 0
        assert keys.get(addr, 0) == n_keys, addr
        calls = info["cmdstat_set"]["calls"] if "cmdstat_set" in info else 0
        assert sets.get(addr, 0) == calls, addr
        if info["role"] == "master":
            total_keys += n_keys
            assert per_addr("redis_keyspace_hits")[addr] == int(info["keyspace_hits"])
            assert per_addr("redis_keyspace_misses")[addr] == int(info["keyspace_misses"])
        assert per_addr("redis_memory_max_bytes")[addr] == int(info["maxmemory"])
        assert 0 < per_addr("redis_commands_processed")[addr] <= int(
            info["total_commands_processed"])
        ci = node.info()
        assert per_addr("redis_cluster_known_nodes")[addr] == int(ci["cluster_known_nodes"])
        assert per_addr("redis_cluster_slots_assigned")[addr] == 16384
        assert per_addr("redis_cluster_state")[addr] == 1
        assert 0 < per_addr("redis_cluster_messages_sent_by_type", type="ping")[addr] <= int(
            node.info()["cluster_stats_messages_ping_sent"])
    assert total_keys == 200
    assert fams["redis_commands"].type == "counter"
    assert fams["redis_connected_clients"].type == "gauge"


def test_sse_sends_state_then_updates(dash):
    async def go():
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as s:
            async with s.get(dash.url + "/api/events") as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/event-stream")
                got, event = [], None
                async for line in r.content:
                    line = line.decode().rstrip("\n")
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        got.append((event, json.loads(line[6:])))
                        if len(got) == 3:
                            return got
    got = asyncio.run(asyncio.wait_for(go(), 30))
    assert got[0][0] == "state" and got[0][1]["events"][0]["kind"] == "start"
    assert [g[0] for g in got[1:]] == ["update", "update"]
    assert got[2][1]["snapshot"]["time"] > got[1][1]["snapshot"]["time"]


def test_actions_refuse_bad_input_and_cross_site_posts(dash):
    snap = state_of(dash)["snapshot"]
    primary = snap["shards"][0]["primary"]
    assert action(dash, "move-slots", {"slots": "0", "target": primary}, headers={})[0] == 403
    st, body = action(dash, "move-slots", {"slots": "abc", "target": primary})
    assert st == 400 and "bad slot range" in body["error"]
    st, body = action(dash, "move-slots", {"slots": "1", "target": "nope"})
    assert st == 400 and "unknown node" in body["error"]
    st, body = action(dash, "failover", {"node": primary})
    assert st == 400 and "runs on a replica" in body["error"]
    st, body = action(dash, "forget-node", {"node": primary})
    assert st == 400 and "move them first" in body["error"]
    st, body = action(dash, "add-node", {"addr": "$(reboot)"})
    assert st == 400 and "host:port" in body["error"]
    assert action(dash, "nope", {})[0] == 400
    st, _, body = http("POST", dash.url + "/api/action/failover", data=b"{not json",
                       headers=ACTION_HEADERS)
    assert st == 400
    # nothing changed
    after = state_of(dash)["snapshot"]
    assert [n["slots"] for n in after["nodes"]] == [n["slots"] for n in snap["nodes"]]


def test_move_slots_action_moves_keys_and_logs_it(cluster, dash):
    snap = state_of(dash)["snapshot"]
    src, dst = snap["shards"][0]["primary"], snap["shards"][1]["primary"]
    first = by_id(snap)[src]["slots"][0][0]
    slots = [first, first + 1, first + 2]
    rc = cluster.cluster_client()
    try:
        for s in slots:
            for j in range(5):
                rc.set(key_for_slot(s) + ":%d" % j, "x%d" % j)
        st, body = action(dash, "move-slots", {"slots": "%d-%d" % (slots[0], slots[-1]),
                                               "target": dst})
        assert st == 200, body
        assert body["output"] == "moved 3 slot(s), 15 key(s) to %s" % by_id(snap)[dst]["addr"]
        for node in cluster.nodes:
            wait_until(lambda: all(cluster.owner_of(s) == by_id(snap)[dst]["port"]
                                   for s in slots), timeout=20, what="new owner everywhere")
        for s in slots:
            for j in range(5):
                assert rc.get(key_for_slot(s) + ":%d" % j) == "x%d" % j
    finally:
        rc.close()
    ev = wait_until(lambda: [e for e in state_of(dash)["events"] if e["kind"] == "slots-moved"],
                    timeout=20, what="slots-moved event")
    assert ev[-1]["text"].endswith(": %d-%d" % (slots[0], slots[-1]))
    assert any(e["kind"] == "action" and "move-slots" in e["text"]
               for e in state_of(dash)["events"])
    assert cluster.check().returncode == 0


def test_failover_action_appears_in_event_log(cluster, dash):
    snap = state_of(dash)["snapshot"]
    shard = snap["shards"][2]
    replica = by_id(snap)[shard["replicas"][0]]
    st, body = action(dash, "failover", {"node": replica["id"]})
    assert st == 200, body
    ev = wait_until(lambda: [e for e in state_of(dash)["events"]
                             if e["kind"] == "failover" and e["node"] == replica["id"]],
                    timeout=30, what="failover event")
    assert replica["addr"] in ev[0]["text"]
    assert by_id(state_of(dash)["snapshot"])[replica["id"]]["role"] == "master"
    st, _, body = http("GET", dash.url + "/metrics")
    fams = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert fams["pynode_dashboard_failovers"].samples[0].value >= 1
    cluster.wait_ok(timeout=30)


def test_node_dying_is_shown_and_survived(cluster, dash):
    snap = state_of(dash)["snapshot"]
    replica = by_id(snap)[snap["shards"][1]["replicas"][0]]
    node = cluster.node_by_port(replica["port"])
    node.proc.kill(signal.SIGKILL)
    addr = replica["addr"]
    wait_until(lambda: not by_id(state_of(dash)["snapshot"])[replica["id"]]["up"],
               timeout=20, what="node shown down")
    st, _, body = http("GET", dash.url + "/metrics")
    fams = {f.name: f for f in text_string_to_metric_families(body.decode())}
    up = {s.labels["addr"]: s.value for s in fams["redis_up"].samples}
    assert up[addr] == 0 and sum(up.values()) == 5
    assert fams["pynode_dashboard_nodes_unreachable"].samples[0].value == 1
    # the cluster flags it FAIL; the dashboard logs both
    wait_until(lambda: {"unreachable", "fail"} <= {
        e["kind"] for e in state_of(dash)["events"] if e["node"] == replica["id"]},
        timeout=30, what="unreachable + FAIL events")
    node.start()
    wait_until(lambda: by_id(state_of(dash)["snapshot"])[replica["id"]]["up"],
               timeout=30, what="node shown up again")
    cluster.wait_ok(timeout=60)
    assert dash.proc.poll() is None


def test_add_node_and_remove_node_actions(cluster, dash):
    snap = state_of(dash)["snapshot"]
    primary = snap["shards"][0]["primary"]
    new = cluster.add_node()
    addr = "127.0.0.1:%d" % new.port
    st, body = action(dash, "add-node", {"addr": addr, "primary": primary})
    assert st == 200, body
    assert "[OK] New node added correctly." in body["output"]

    def joined():
        n = next((n for n in state_of(dash)["snapshot"]["nodes"] if n["addr"] == addr), None)
        return n if n and n["role"] == "slave" and n["primary"] == primary else None
    node = wait_until(joined, timeout=30, what="new replica shown")
    assert any(e["kind"] == "node-added" and e["node"] == node["id"]
               for e in state_of(dash)["events"])
    # `redis-cli --cluster del-node` sends CLUSTER FORGET to every node: each
    # must know the new node first (gossip spreads it), as with redis-server
    wait_until(lambda: all(node["id"] in n.call("CLUSTER", "NODES") for n in cluster.nodes
                           if n.port != new.port), timeout=30,
               what="every node knowing the new node")
    st, body = action(dash, "forget-node", {"node": node["id"]})
    assert st == 200, body
    wait_until(lambda: addr not in {n["addr"] for n in state_of(dash)["snapshot"]["nodes"]},
               timeout=30, what="node gone from the dashboard")
    assert any(e["kind"] == "node-removed" and e["node"] == node["id"]
               for e in state_of(dash)["events"])
    assert all(node["id"] not in n["id"] for n in cluster.nodes[0].nodes())
    cluster.remove_node(new.port)
    cluster.wait_ok(timeout=60)


def test_password_read_only_and_cluster_password_kept(cluster, tmp):
    pwfile = os.path.join(tmp, "web-password")
    with open(pwfile, "w") as f:
        f.write("page-secret\n")
    secret = "node-secret-4711"
    for node in cluster.nodes:
        node.call("CONFIG", "SET", "masterauth", secret)
        node.call("CONFIG", "SET", "requirepass", secret)
    victim = cluster.nodes[0].client(password=secret).execute_command("CLUSTER", "MYID")
    d = Dashboard(cluster, "--read-only", "--password-file", pwfile, "-a", secret,
                  "--chaos-log", os.path.join(tmp, "read-only-chaos.log"), tmp=tmp)
    try:
        basic = ("prometheus", "page-secret")
        d.wait_ready(auth=basic)
        st, headers, _ = http("GET", d.url + "/")
        assert st == 302 and headers["Location"] == "/login"
        assert http("GET", d.url + "/api/state")[0] == 401
        st, headers, _ = http("GET", d.url + "/metrics")
        assert st == 401 and headers["WWW-Authenticate"].startswith("Basic")
        assert http("GET", d.url + "/metrics", auth=("p", "wrong"))[0] == 401

        async def browse():
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(cookie_jar=jar) as s:
                async with s.post(d.url + "/login", data={"password": "nope"},
                                  allow_redirects=False) as r:
                    assert r.status == 302 and r.headers["Location"] == "/login?failed=1"
                    assert not list(jar)
                async with s.post(d.url + "/login", data={"password": "page-secret"},
                                  allow_redirects=False) as r:
                    assert r.status == 302 and r.headers["Location"] == "/"
                    cookie = r.headers["Set-Cookie"]
                    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
                bodies = []
                for path in ("/", "/static/app.js", "/api/state", "/metrics"):
                    async with s.get(d.url + path) as r:
                        assert r.status == 200, path
                        bodies.append(await r.read())
                async with s.get(d.url + "/api/events") as r:
                    bodies.append(await r.content.readuntil(b"\n\n"))
                for name in ("failover", "chaos-freeze", "chaos-kill", "chaos-undo"):
                    async with s.post(d.url + "/api/action/" + name, json={"node": victim},
                                      headers=ACTION_HEADERS) as r:
                        assert r.status == 403, name
                        assert "read-only" in (await r.json())["error"]
                async with s.post(d.url + "/logout", allow_redirects=False) as r:
                    assert r.status == 302
                async with s.get(d.url + "/api/state") as r:
                    assert r.status == 401
                return bodies
        bodies = asyncio.run(browse())
        data = json.loads(bodies[2])
        assert data["read_only"] is True and data["login"] is True
        # the chaos actions were refused before reaching the node or the log
        assert cluster.nodes[0].client(password=secret).ping()
        assert data["chaos"]["entries"] == []
        assert data["chaos"]["log_path"] == os.path.join(tmp, "read-only-chaos.log")
        assert not os.path.exists(data["chaos"]["log_path"])
        # the dashboard authenticated to every node...
        assert all(n["up"] for n in data["snapshot"]["nodes"]), data["snapshot"]["nodes"]
        # ...and no reply carries the nodes' password
        for b in bodies:
            assert secret.encode() not in b
    finally:
        d.stop()
        for node in cluster.nodes:
            if node.alive():
                node.client(password=secret).execute_command("CONFIG", "SET", "requirepass", "")
                node.call("CONFIG", "SET", "masterauth", "")


# -- a real browser ---------------------------------------------------------------------

def chromium(tmp: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1500,1150",
                 "--user-data-dir=" + tempfile.mkdtemp(prefix="chromium-", dir=tmp)):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)


def click(driver, css: str) -> None:
    """Click what css finds, again if the page redrew it in between (every poll
    round rebuilds the tables)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def once():
        try:
            driver.find_element(By.CSS_SELECTOR, css).click()
        except StaleElementReferenceException:
            return False
        return True
    wait_until(once, timeout=10, what="a click on " + css)


def test_browser_sees_reshard_and_failover(cluster, dash, tmp):
    from selenium.webdriver.common.by import By
    shots = os.path.join(tmp, "screenshots")
    os.makedirs(shots)
    driver = chromium(tmp)
    try:
        driver.set_page_load_timeout(30)
        driver.get(dash.url + "/")

        def js(expr):
            return driver.execute_script("return " + expr)

        def wait_js(expr, what, timeout=30):
            return wait_until(lambda: js(expr), timeout=timeout, what=what)

        wait_js("window.pynodeDashboard && pynodeDashboard.snapshot() && "
                "pynodeDashboard.snapshot().nodes.length === 6", "page shows 6 nodes")
        snap = state_of(dash)["snapshot"]
        src, dst = snap["shards"][0]["primary"], snap["shards"][2]["primary"]
        slot = by_id(snap)[src]["slots"][0][0]
        assert js("pynodeDashboard.owner(%d)" % slot) == src
        src_colour = js("pynodeDashboard.colour('%s')" % src)
        dst_colour = js("pynodeDashboard.colour('%s')" % dst)
        assert src_colour != dst_colour
        assert js("pynodeDashboard.pixel(%d)" % slot) == src_colour
        rows = driver.find_elements(By.CSS_SELECTOR, "#nodes tbody tr")
        assert len(rows) == 6
        driver.save_screenshot(os.path.join(shots, "1-before.png"))

        def moved_in_log():
            return sum(int(span.text.split(" slot")[0]) for span in driver.find_elements(
                By.CSS_SELECTOR, "#events li[data-kind='slots-moved'] span:not(.t)"))
        moved_before = moved_in_log()
        # keys in the slots to move, then redis-cli reshards 100 slots src -> dst
        rc = cluster.cluster_client()
        try:
            for s in range(slot, slot + 100):
                rc.set(key_for_slot(s), "v")
        finally:
            rc.close()
        res = run(["redis-cli", "--cluster", "reshard", "127.0.0.1:%d" % cluster.ports[0],
                   "--cluster-from", src, "--cluster-to", dst, "--cluster-slots", "100",
                   "--cluster-yes"], 120)
        assert res.returncode == 0, res.stdout + res.stderr
        wait_js("pynodeDashboard.pixel(%d) === '%s'" % (slot, dst_colour),
                "slot %d drawn in the new owner's colour" % slot)
        assert js("pynodeDashboard.owner(%d)" % slot) == dst
        # the page may see the move over several polls: the new entries add up to 100
        wait_until(lambda: moved_in_log() - moved_before == 100, timeout=20,
                   what="the 100 slots moved in the event log")
        driver.save_screenshot(os.path.join(shots, "2-resharded.png"))
        # a manual failover from the page: the button, the confirmation, the event log
        snap = state_of(dash)["snapshot"]
        replica = by_id(snap)[snap["shards"][1]["replicas"][0]]
        click(driver, "button.failover[data-node='%s']" % replica["id"])
        alert = driver.switch_to.alert
        assert replica["addr"] in alert.text
        alert.accept()
        wait_until(lambda: any(replica["addr"] in li.text for li in driver.find_elements(
            By.CSS_SELECTOR, "#events li[data-kind='failover']")), timeout=30,
            what="failover in the page's event log")
        wait_until(lambda: "primary" in js(
            "document.querySelector(\"#nodes tr[data-node='%s']\").textContent" % replica["id"]),
            timeout=10, what="row shows primary")
        final = os.path.join(shots, "3-failover.png")
        driver.save_screenshot(final)
        for name in os.listdir(shots):
            with open(os.path.join(shots, name), "rb") as f:
                assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("PYNODE_DASHBOARD_SHOT"):     # refresh docs/dashboard.png
            shutil.copy(final, os.environ["PYNODE_DASHBOARD_SHOT"])
    finally:
        driver.quit()
    cluster.wait_ok(timeout=30)


def test_rebalance_action_evens_out_the_slots(cluster, dash):
    snap = state_of(dash)["snapshot"]
    src, dst = snap["shards"][0]["primary"], snap["shards"][1]["primary"]
    a, b = by_id(snap)[src]["slots"][-1]
    start = max(a, b - 599)
    st, body = action(dash, "move-slots", {"slots": "%d-%d" % (start, b), "target": dst})
    assert st == 200, body

    def spread():
        counts = [s["slot_count"] for s in state_of(dash)["snapshot"]["shards"]]
        return max(counts) - min(counts)
    wait_until(lambda: spread() >= 500, timeout=30, what="imbalance shown")
    st, body = action(dash, "rebalance", {})
    assert st == 200, body
    assert "Rebalancing across 3 nodes" in body["output"]
    wait_until(lambda: spread() < 250, timeout=60, what="balanced slots shown")
    cluster.wait_ok(timeout=60)
    assert cluster.check().returncode == 0


# -- slow log, latency monitor and slot migrations in /metrics ---------------------------

def metric_families(d: Dashboard) -> dict:
    st, _, body = http("GET", d.url + "/metrics")
    assert st == 200
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def samples(fams: dict, name: str, **labels) -> dict:
    """addr -> value of the samples of name with these labels."""
    return {s.labels["addr"]: s.value for s in fams[name].samples
            if all(s.labels.get(k) == v for k, v in labels.items())}


def test_metrics_slowlog_latency_and_migrations_match_the_nodes(cluster, dash):
    snap = state_of(dash)["snapshot"]
    src_id, dst_id = snap["shards"][0]["primary"], snap["shards"][1]["primary"]
    src = cluster.node_by_port(by_id(snap)[src_id]["port"])
    dst = cluster.node_by_port(by_id(snap)[dst_id]["port"])
    addr = {n: "127.0.0.1:%d" % n.port for n in (src, dst)}
    slot = by_id(snap)[src_id]["slots"][0][0]
    rc = cluster.cluster_client()
    try:
        for j in range(3):
            rc.set("%s:%d" % (key_for_slot(slot), j), "v")
    finally:
        rc.close()
    # a slow log and a latency spike on src, then both left as they are
    src.call("CONFIG", "SET", "slowlog-log-slower-than", "0")
    for _ in range(3):
        src.call("PING")
    src.call("CONFIG", "SET", "slowlog-log-slower-than", "10000000")
    src.call("CONFIG", "SET", "latency-monitor-threshold", "10")
    src.call("DEBUG", "SLEEP", "0.05")
    src.call("CONFIG", "SET", "latency-monitor-threshold", "0")
    # a legacy migration of the slot, stopped half way
    dst.call("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    src.call("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
    try:
        polls_pass(dash, 3)
        fams = metric_families(dash)
        c = src.client()
        assert samples(fams, "redis_slowlog_length")[addr[src]] == c.slowlog_len() >= 4
        last = c.slowlog_get(1)[0]
        assert samples(fams, "redis_slowlog_last_id")[addr[src]] == last["id"]
        assert samples(fams, "redis_last_slow_execution_duration_seconds")[addr[src]] == \
            pytest.approx(last["duration"] / 1e6)
        latest = {ev[0]: ev for ev in src.call("LATENCY", "LATEST")}
        assert "command" in latest, latest
        assert samples(fams, "redis_latency_spike_last", event_name="command")[
            addr[src]] == latest["command"][1]
        assert latest["command"][2] >= 50
        assert samples(fams, "redis_latency_spike_duration_seconds", event_name="command")[
            addr[src]] == pytest.approx(latest["command"][2] / 1e3)
        assert samples(fams, "redis_cluster_slots_migrating")[addr[src]] == 1
        assert samples(fams, "redis_cluster_slots_importing")[addr[dst]] == 1
        assert samples(fams, "redis_cluster_slot_migrating_keys", slot=str(slot))[
            addr[src]] == src.call("CLUSTER", "COUNTKEYSINSLOT", slot) >= 3
        assert samples(fams, "redis_cluster_slot_importing_keys", slot=str(slot))[
            addr[dst]] == dst.call("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    finally:
        for n in (src, dst):
            n.call("CLUSTER", "SETSLOT", slot, "STABLE")
            n.call("CONFIG", "SET", "slowlog-log-slower-than", "10000")
            n.call("LATENCY", "RESET")
    if cluster.server != "pynode":
        return          # atomic slot migration is Valkey 9.0's, pynode has it
    src.call("CLUSTER", "MIGRATESLOTS", "SLOTSRANGE", slot, slot, "NODE", dst_id)
    wait_until(lambda: cluster.owner_of(slot) == dst.port, timeout=30,
               what="slot %d migrated atomically" % slot)

    def jobs(n) -> dict:
        out: dict = {}
        for job in n.call("CLUSTER", "GETSLOTMIGRATIONS"):
            d = job if isinstance(job, dict) else dict(zip(job[::2], job[1::2]))
            out[(d["operation"], d["state"])] = out.get((d["operation"], d["state"]), 0) + 1
        return out
    wait_until(lambda: jobs(src).get(("EXPORT", "success")), timeout=30,
               what="the export job finished")
    polls_pass(dash, 2)
    fams = metric_families(dash)
    for n in (src, dst):
        got = {(s.labels["operation"], s.labels["state"]): s.value
               for s in fams["redis_cluster_slot_migrations"].samples
               if s.labels["addr"] == addr[n]}
        assert got == jobs(n) != {}, (n.port, got)
    cluster.wait_ok(timeout=30)


# -- chaos from the page -----------------------------------------------------------------

def test_chaos_actions_share_the_log_with_pynode_chaos(cluster, dash, tmp):
    data = state_of(dash)
    snap, ch = data["snapshot"], data["chaos"]
    assert all(ch["nodes"][n["id"]] == {"local": True, "why": None} for n in snap["nodes"])
    assert ch["log_path"] == os.path.join(os.path.realpath(tmp), "pynode-chaos.log")
    cli = ChaosCli(ch["log_path"])
    replica = by_id(snap)[snap["shards"][0]["replicas"][0]]
    rid, addr, port = replica["id"], replica["addr"], replica["port"]
    node = cluster.node_by_port(port)
    other = snap["shards"][1]["primary"]
    try:
        # freeze / thaw
        st, body = action(dash, "chaos-freeze", {"node": rid})
        assert st == 200 and body["output"].endswith("freeze %s" % addr), body
        assert not ping_ok(port)
        assert cli("log").stdout.split()[:4] == ["1", "freeze", addr, "OPEN"]
        st, body = action(dash, "chaos-thaw", {"node": rid})
        assert st == 200 and ping_ok(port, 5)
        # slow / fast: a worker stops and continues the node
        st, body = action(dash, "chaos-slow", {"node": rid, "stop_ms": 300, "every_ms": 400})
        assert st == 200, body
        worker = [e for e in cli.entries() if e.get("action") == "slow"][-1]["undo"]["worker"]
        assert os.path.exists("/proc/%d" % worker)
        assert action(dash, "chaos-fast", {"node": rid})[0] == 200
        assert ping_ok(port, 5)
        # slow disk (DEBUG AOF-FLUSH-SLEEP) / fast disk
        assert action(dash, "chaos-slow-disk", {"node": rid, "usec": 1000})[0] == 200
        assert action(dash, "chaos-fast-disk", {"node": rid})[0] == 200
        # partition: per-peer needs a network lab; isolating works with DEBUG
        st, body = action(dash, "chaos-partition", {"node": rid, "peers": [other]})
        assert st == 400 and "not in a network lab" in body["error"]
        st, body = action(dash, "chaos-partition", {"node": rid, "peers": []})
        assert st == 200 and "(debug-packet-filter)" in body["output"]
        assert action(dash, "chaos-heal", {"node": rid})[0] == 200
        # kill -9 / restart from the page
        st, body = action(dash, "chaos-kill", {"node": rid})
        assert st == 200 and node.proc.proc.wait(10) == -9
        st, body = action(dash, "chaos-restart", {"node": rid})
        assert st == 200, body
        wait_until(lambda: ping_ok(port), timeout=30, what="node restarted by the page")
        # the command line's action shows on the page, and the page undoes it
        assert "slow-disk %s" % addr in cli("slow-disk", addr, "--usec", "1000").stdout
        wait_until(lambda: [e for e in state_of(dash)["chaos"]["entries"]
                            if e["action"] == "slow-disk" and e["open"]],
                   timeout=10, what="the command line's slow-disk on the page")
        st, body = action(dash, "chaos-undo", {})
        assert st == 200 and body["output"].endswith("slow-disk %s" % addr), body
        assert "OPEN" not in cli("log").stdout
        entries = state_of(dash)["chaos"]["entries"]
        assert [e["action"] for e in entries] == [
            "freeze", "thaw", "slow", "fast", "slow-disk", "fast-disk", "partition", "heal",
            "kill", "restart", "slow-disk", "fast-disk"]
        assert not any(e["open"] for e in entries)
        assert all("undo" not in e and "undo" not in e["details"] for e in entries)
        # refusals
        for name, params, why in (
                ("chaos-freeze", {"node": "nope"}, "unknown node"),
                ("chaos-thaw", {"node": rid}, "no open freeze"),
                ("chaos-fast", {"node": rid}, "not slowed"),
                ("chaos-heal", {"node": rid}, "not partitioned"),
                ("chaos-slow", {"node": rid, "stop_ms": 500, "every_ms": 100}, "stop-ms"),
                ("chaos-slow", {"node": rid, "stop_ms": "x"}, "stop_ms must be an integer"),
                ("chaos-slow-disk", {"node": rid}, "usec is required"),
                ("chaos-slow-disk", {"node": rid, "usec": -5}, "usec must be an integer"),
                ("chaos-partition", {"node": rid, "peers": "all"}, "list of node ids"),
                ("chaos-undo", {"id": 999}, "no open action 999"),
                ("chaos-undo", {"id": "1"}, "id must be")):
            st, body = action(dash, name, params)
            assert st == 400 and why in body["error"], (name, params, body)
        assert len(state_of(dash)["chaos"]["entries"]) == len(entries)
        assert any(e["kind"] == "action" and "chaos-freeze" in e["text"]
                   for e in state_of(dash)["events"])
    finally:
        cli("undo", "--all", ok=False)       # whatever a failed step left open
        if not node.alive():                 # a node started by chaos: back to the test's
            try:
                os.kill(int(node.client(socket_timeout=2).info("server")["process_id"]),
                        signal.SIGKILL)
            except (redis.RedisError, ProcessLookupError):
                pass
            wait_until(lambda: not ping_ok(port), timeout=10, what="restarted node gone")
            node.start()
    wait_until(lambda: ping_ok(port), timeout=30, what="node back under the test")
    cluster.wait_ok(timeout=60)


def test_chaos_refused_for_a_node_that_is_not_a_local_process(tmp):
    """A node whose process_id is not, here, a process listening on its port
    (as from a container or another host): the page says why, actions are refused."""
    from pynode.dashboard.app import Dashboard as App
    from pynode.dashboard.poller import Poller
    from aiohttp import web
    port, web_port = free_ports(2)
    stranger = subprocess.Popen(["sleep", "60"])      # a local process, not the node
    log = os.path.join(tmp, "stranger-chaos.log")

    async def go():
        server = await _slot_stats_node(port, {}, [], pid=stranger.pid)
        poller = Poller([("127.0.0.1", port)], timeout=5)
        app = App(poller, chaos_log=log)
        runner = web.AppRunner(app.app())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", web_port).start()
        try:
            await poller.poll_once()
            async with aiohttp.ClientSession() as s:
                async with s.get("http://127.0.0.1:%d/api/state" % web_port) as r:
                    data = await r.json()
                out = []
                for name in ("chaos-freeze", "chaos-kill", "chaos-slow", "chaos-partition"):
                    async with s.post("http://127.0.0.1:%d/api/action/%s" % (web_port, name),
                                      json={"node": "e" * 40, "usec": 5},
                                      headers=ACTION_HEADERS) as r:
                        out.append((r.status, await r.json()))
            page = await asyncio.to_thread(chaos_panel_in_chromium,
                                           "http://127.0.0.1:%d/" % web_port, tmp)
            return data, out, page
        finally:
            poller.close_listeners()        # ends the page's event stream
            await runner.cleanup()
            await poller.stop()
            server.close()
            await server.wait_closed()
    try:
        data, out, page = asyncio.run(asyncio.wait_for(go(), 60))
        with open("/proc/%d/stat" % stranger.pid) as f:
            assert f.read().rsplit(")", 1)[1].split()[0] != "T"     # never stopped
        assert stranger.poll() is None                               # nor killed
    finally:
        stranger.kill()
        stranger.wait()
    me = data["chaos"]["nodes"]["e" * 40]
    assert me["local"] is False
    assert me["why"] == "process %d of this machine does not listen on port %d" % (
        stranger.pid, port)
    for st, body in out:
        assert st == 400 and "not a process of the dashboard's machine" in body["error"], body
    assert not os.path.exists(log)
    # the page says so and disables every button that breaks a node
    note, enabled = page
    assert note.startswith("None of the nodes is a process of this machine"), note
    assert enabled == {"chaos-freeze": False, "chaos-thaw": False, "chaos-kill": False,
                       "chaos-restart": False, "chaos-slow": False, "chaos-fast": False,
                       "chaos-slow-disk": False, "chaos-fast-disk": False,
                       "chaos-partition": False, "chaos-heal": False,
                       "chaos-undo-all": False}


def chaos_panel_in_chromium(url: str, tmp: str):
    """(the chaos panel's note, button id -> enabled) as headless chromium shows them."""
    from selenium.webdriver.common.by import By
    driver = chromium(tmp)
    try:
        driver.set_page_load_timeout(30)
        driver.get(url)
        wait_until(lambda: driver.execute_script(
            "return document.querySelectorAll('#chaos-node option').length") == 1,
            timeout=30, what="the chaos panel drawn")
        return (driver.find_element(By.ID, "chaos-note").text,
                {b.get_attribute("id"): b.is_enabled() for b in driver.find_elements(
                    By.CSS_SELECTOR, "#chaos-controls button")})
    finally:
        driver.quit()


def test_browser_freezes_a_node_and_undoes_it(cluster, dash, tmp):
    """Freeze clicked on the page: the node goes PFAIL/FAIL in the event log;
    Undo in the page's chaos log thaws it and the flag clears."""
    from selenium.webdriver.common.by import By
    for node in cluster.nodes:
        node.call("CONFIG", "SET", "cluster-node-timeout", "1000")
    snap = state_of(dash)["snapshot"]
    replica = by_id(snap)[snap["shards"][2]["replicas"][0]]
    victim = cluster.node_by_port(replica["port"])
    driver = chromium(tmp)
    try:
        driver.set_page_load_timeout(30)
        driver.get(dash.url + "/")

        def js(expr, *args):
            return driver.execute_script("return " + expr, *args)
        wait_until(lambda: js("document.querySelectorAll('#chaos-node option').length") == 6,
                   timeout=30, what="the chaos panel listing the nodes")
        assert js("document.getElementById('chaos-note').textContent") == ""
        js("(() => { const s = document.getElementById('chaos-node'); s.value = arguments[0]; "
           "s.dispatchEvent(new Event('change')); return s.value; })()", replica["id"])
        freeze = driver.find_element(By.ID, "chaos-freeze")
        assert freeze.is_enabled()
        assert not driver.find_element(By.ID, "chaos-thaw").is_enabled()
        freeze.click()
        alert = driver.switch_to.alert
        assert "Freeze " + replica["addr"] in alert.text
        alert.accept()

        def flagged(kinds):
            return [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#events li")
                    if li.get_attribute("data-kind") in kinds and replica["addr"] in li.text]
        wait_until(lambda: flagged(("pfail", "fail")), timeout=45,
                   what="the frozen node flagged PFAIL/FAIL on the page")
        assert not ping_ok(victim.port)
        wait_until(lambda: driver.find_elements(
            By.CSS_SELECTOR, "#chaos-log tr.open button.chaos-undo"), timeout=10,
            what="the open freeze in the page's chaos log")
        assert "freeze" in js("document.querySelector('#chaos-log tr.open').textContent")
        driver.save_screenshot(os.path.join(tmp, "chaos-frozen.png"))
        click(driver, "#chaos-log tr.open button.chaos-undo")
        alert = driver.switch_to.alert
        assert "Undo freeze of " + replica["addr"] in alert.text
        alert.accept()
        wait_until(lambda: flagged(("pfail-cleared", "fail-cleared")), timeout=45,
                   what="the thawed node's flag cleared on the page")
        assert ping_ok(victim.port)
        assert driver.find_elements(By.CSS_SELECTOR, "#chaos-log tr.open") == []
    finally:
        driver.quit()
        os.kill(victim.proc.proc.pid, signal.SIGCONT)       # whatever happened above
        for node in cluster.nodes:
            node.call("CONFIG", "SET", "cluster-node-timeout", str(cluster.node_timeout))
    cluster.wait_ok(timeout=30)
