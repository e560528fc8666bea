"""metrics-port: the node's own Prometheus endpoint (pynode/metrics_http.py).

The scrape is parsed with prometheus_client's parser and compared with INFO
and CLUSTER INFO; bad requests get 400/404/405/408 and never hold the node;
CONFIG SET moves the listener; without prometheus-client the node writes the
same format itself.
"""

from __future__ import annotations

import os
import socket
import time

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from pynode.metrics import Families, Family, add_cluster_info, add_info, render_text
from tests.cluster_helpers import free_ports, key_for_slot, single_node_cluster
from tests.helpers import Proc, free_port, wait_until


def http(port: int, request: bytes, timeout: float = 5.0) -> tuple[int, dict, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(b":") for ln in lines[1:])}
    return status, headers, body


def scrape(port: int) -> dict:
    """{(sample name, frozenset(labels)): value}"""
    status, headers, body = http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200 and headers[b"content-type"].startswith(b"text/plain; version=0.0.4")
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: dict, name: str, **labels):
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture(scope="module")
def node():
    mport = free_port()
    p = single_node_cluster(["--cluster-slot-stats-enabled", "yes", "--metrics-port", str(mport)])
    p.mport = mport
    yield p
    p.cleanup()


def test_scrape_matches_info(node):
    c = node.client(decode_responses=True)
    hot = key_for_slot(99)
    for i in range(20):
        c.set(hot, i)
        c.get(hot)
    c.get(key_for_slot(5))                  # a miss
    for i in range(7):
        c.set(key_for_slot(1000 + i), "v")
    info = c.info("all")
    ci = dict(line.split(":", 1) for line in c.execute_command("CLUSTER", "INFO").split()
              if ":" in line)
    m = scrape(node.mport)
    assert value(m, "redis_up") == 1
    assert value(m, "redis_db_keys", db="db0") == info["db0"]["keys"] == 8
    assert value(m, "redis_commands_total", cmd="set") == info["cmdstat_set"]["calls"] == 27
    assert value(m, "redis_commands_total", cmd="get") == info["cmdstat_get"]["calls"] == 21
    assert value(m, "redis_commands_duration_seconds_total", cmd="get") == pytest.approx(
        info["cmdstat_get"]["usec"] / 1e6)
    assert value(m, "redis_keyspace_hits_total") == info["keyspace_hits"]
    assert value(m, "redis_keyspace_misses_total") == info["keyspace_misses"]
    assert value(m, "redis_memory_used_bytes") > 0
    assert value(m, "redis_instance_info", role="master", redis_version="7.0.15",
                 redis_mode="cluster", os=info["os"], maxmemory_policy="noeviction",
                 run_id=info["run_id"], tcp_port=str(node.port)) == 1
    # CLUSTER INFO
    assert value(m, "redis_cluster_state") == 1
    for field in ("slots_assigned", "slots_ok", "slots_pfail", "slots_fail", "known_nodes",
                  "size", "current_epoch"):
        assert value(m, "redis_cluster_" + field) == int(ci["cluster_" + field]), field
    assert value(m, "redis_cluster_slots_migrating") == 0
    # the busiest slot by bytes in (cpu-usec is a timing: one slow SET elsewhere can top it)
    [(slot, st)] = c.execute_command("CLUSTER", "SLOT-STATS", "ORDERBY", "network-bytes-in",
                                     "LIMIT", 1)
    assert slot == 99
    assert st["cpu-usec"] > 0
    assert value(m, "redis_cluster_slot_cpu_usec", slot="99") <= st["cpu-usec"]
    assert value(m, "redis_cluster_slot_network_bytes_in", slot="99") == \
        st["network-bytes-in"]
    assert value(m, "redis_cluster_slot_key_count", slot="99") == 1
    c.close()


def test_bus_messages_by_type_on_two_nodes():
    mport = free_port()
    pa, pb = free_ports(2)
    with Proc(["--cluster-enabled", "yes", "--metrics-port", str(mport)], port=pa) as a, \
            Proc(["--cluster-enabled", "yes"], port=pb) as b:
        a.client().execute_command("CLUSTER", "MEET", "127.0.0.1", b.port)
        wait_until(lambda: (scrape(mport).get(("redis_cluster_messages_received_by_type_total",
                                               frozenset({("type", "pong")}))) or 0) > 0,
                   what="pongs counted")
        m = scrape(mport)
        assert value(m, "redis_cluster_known_nodes") == 2
        for way in ("sent", "received"):
            by_type = {dict(labels)["type"]: v for (name, labels), v in m.items()
                       if name == "redis_cluster_messages_%s_by_type_total" % way}
            assert value(m, "redis_cluster_messages_%s_total" % way) == sum(by_type.values())
        assert value(m, "redis_cluster_messages_sent_by_type_total", type="meet") == 1
        # an atomic slot migration from a to b, as GETSLOTMIGRATIONS tells it
        ca, cb = a.client(), b.client()
        ca.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        bid = cb.execute_command("CLUSTER", "MYID").decode()
        for c in (ca, cb):
            wait_until(lambda c=c: b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO"),
                       what="cluster_state:ok")
        ca.set("{a}k", "v")
        ca.execute_command("CLUSTER", "MIGRATESLOTS", "SLOTSRANGE", 15495, 15495, "NODE", bid)
        wait_until(lambda: scrape(mport).get(("redis_cluster_slot_migrations", frozenset(
            {("operation", "EXPORT"), ("state", "success")}))) == 1, timeout=30,
            what="the finished migration in the metrics")
        assert cb.get("{a}k") == b"v"


def test_bad_requests_get_errors_and_never_block(node):
    port = node.mport
    assert http(port, b"GET /nope HTTP/1.1\r\n\r\n")[0] == 404
    assert http(port, b"GET / HTTP/1.0\r\n\r\n")[0] == 404
    st, headers, _ = http(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert st == 405 and headers[b"allow"] == b"GET, HEAD"
    assert http(port, b"\x16\x03\x01garbage\r\n\r\n")[0] == 400
    assert http(port, b"GET /metrics\r\n\r\n")[0] == 400          # HTTP/0.9
    assert http(port, b"GET " + b"a" * 9000)[0] == 400             # a head without end
    st, headers, body = http(port, b"HEAD /metrics?x=1 HTTP/1.1\r\n\r\n")
    assert st == 200 and body == b"" and int(headers[b"content-length"]) > 1000
    # a slow client holds neither the node nor other scrapes
    slow = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    try:
        for s in slow:
            s.sendall(b"GET /metr")
        c = node.client()
        t0 = time.monotonic()
        assert c.ping() and value(scrape(port), "redis_up") == 1
        assert time.monotonic() - t0 < 2
        c.close()
    finally:
        for s in slow:
            s.close()


def test_slow_client_is_timed_out(node):
    # the 3 s head timeout, seen through a half-sent request (bounded wait)
    with socket.create_connection(("127.0.0.1", node.mport), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\n")
        t0 = time.monotonic()
        data = s.recv(4096)
        assert data.startswith(b"HTTP/1.1 408 ") and 2.5 < time.monotonic() - t0 < 8


def test_config_get_set_metrics_port(node):
    c = node.client(decode_responses=True)
    assert c.config_get("metrics-port") == {"metrics-port": str(node.mport)}
    assert "metrics-port" not in c.config_get("*")
    new = free_port()
    c.config_set("metrics-port", new)
    assert value(scrape(new), "redis_up") == 1
    with pytest.raises(OSError):
        http(node.mport, b"GET /metrics HTTP/1.1\r\n\r\n", timeout=1)
    # taken port: refused, the old listener stays
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        with pytest.raises(redis.ResponseError, match="CONFIG SET failed \\(possibly related "
                                                      "to argument 'metrics-port'\\) - Unable "
                                                      "to listen on this port"):
            c.config_set("metrics-port", busy.getsockname()[1])
    assert c.config_get("metrics-port") == {"metrics-port": str(new)}
    assert value(scrape(new), "redis_up") == 1
    for bad in ("abc", "70000", "-1"):
        with pytest.raises(redis.ResponseError, match="metrics-port"):
            c.config_set("metrics-port", bad)
    c.config_set("metrics-port", 0)
    with pytest.raises(OSError):
        http(new, b"GET /metrics HTTP/1.1\r\n\r\n", timeout=1)
    c.config_set("metrics-port", node.mport)
    assert value(scrape(node.mport), "redis_up") == 1
    c.close()


def test_without_prometheus_client_the_node_writes_the_format(tmp_path):
    # a prometheus_client that cannot be imported, first on the path
    stub = tmp_path / "prometheus_client"
    stub.mkdir()
    (stub / "__init__.py").write_text("raise ImportError('not installed')\n")
    mport = free_port()
    old = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = str(tmp_path) + os.pathsep + old
    try:
        p = Proc(["--metrics-port", str(mport)]).start()
    finally:
        os.environ["PYTHONPATH"] = old
    try:
        p.client().set("k", "v")
        m = scrape(mport)
        assert value(m, "redis_up") == 1 and value(m, "redis_db_keys", db="db0") == 1
        assert value(m, "redis_commands_total", cmd="set") == 1
        assert "prometheus-client is not installed" in p.log()
    finally:
        p.cleanup()


def test_own_text_format_equals_prometheus_client():
    from prometheus_client import CollectorRegistry, generate_latest

    from pynode.metrics import prometheus_family
    info = {"connected_clients": "3", "used_memory": "1024", "keyspace_hits": "5",
            "db0": "keys=4,expires=1,avg_ttl=2500", "role": "master",
            "cmdstat_get": "calls=2,usec=30,usec_per_call=15.00,rejected_calls=0,failed_calls=0",
            "errorstat_ERR": "count=1", "os": 'Linux "x"\\y', "mem_fragmentation_ratio": "1.25"}
    ci = {"cluster_state": "ok", "cluster_slots_assigned": "16384",
          "cluster_stats_messages_ping_sent": "7", "cluster_stats_messages_sent": "7"}
    ours = Families(Family)
    theirs = Families(prometheus_family)
    for fam in (ours, theirs):
        add_info(fam, info, ["addr"], ["a:1"])
        add_cluster_info(fam, ci, ["addr"], ["a:1"])

    class Snap:
        def collect(self):
            yield from theirs.values()
    reg = CollectorRegistry(auto_describe=False)
    reg.register(Snap())

    def parsed(text: bytes):
        return sorted((f.name, f.type, f.documentation,
                       sorted((s.name, sorted(s.labels.items()), s.value) for s in f.samples))
                      for f in text_string_to_metric_families(text.decode()))
    assert parsed(render_text(ours.values())) == parsed(generate_latest(reg))
    assert len(parsed(render_text(ours.values()))) > 10


def test_a_taken_metrics_port_stops_start_up():
    # a taken metrics-port stops start-up with a clear message, as a taken port does
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        p = Proc(["--metrics-port", str(busy.getsockname()[1])])
        p.start(wait=False)
        try:
            assert p.wait_exit(timeout=15) == 1
            assert "Could not create the metrics listening socket" in p.log()
        finally:
            p.cleanup()

