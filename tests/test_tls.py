"""TLS on every port: the client port (tls-port), replication (tls-replication)
and the cluster bus (tls-cluster), against redis-cli/redis-benchmark --tls,
redis-py (ssl=True, RedisCluster), node-redis and ioredis, and redis-server
7.0.15 for replication both ways.  Certificates are made by the tests."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from tests import tls_certs
from tests.cluster_helpers import free_ports, key_for_slot, parse_info, parse_nodes, run
from tests.helpers import Proc, wait_until

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")


@pytest.fixture(scope="module")
def certs():
    d = tempfile.mkdtemp(prefix="pynode-tls-")
    try:
        yield tls_certs.make(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def tls_client(certs, port, **kw) -> redis.Redis:
    kw.setdefault("ssl_certfile", certs.cert)
    kw.setdefault("ssl_keyfile", certs.key)
    return redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=certs.ca,
                       socket_timeout=5, decode_responses=True, **kw)


def cli(certs, port, *args, timeout=20):
    return run(["redis-cli", "-p", str(port), *certs.cli_args(), *args], timeout)


def tls_server(certs, *extra, redis_server=False, auth="yes") -> Proc:
    tport = free_ports(1)[0]
    p = Proc(["--tls-port", str(tport), *certs.server_args(auth), *extra],
             redis_server=redis_server)
    p.tls_port = tport
    return p.start()


# ------------------------------------------------------------------ the client port

def test_clients_over_tls_and_plaintext_side_by_side(certs):
    p = tls_server(certs)
    try:
        assert cli(certs, p.tls_port, "SET", "k", "over-tls").stdout.strip() == "OK"
        assert p.client().get("k") == b"over-tls"          # the plaintext port
        c = tls_client(certs, p.tls_port)
        assert c.get("k") == "over-tls"
        assert c.incr("n") == 1
        c.close()
        out = run(["redis-benchmark", "-p", str(p.tls_port), *certs.cli_args(), "-n", "2000",
                   "-P", "16", "-t", "set,get", "-q"], 60).stdout
        assert "SET:" in out and "GET:" in out, out
        assert "Ready to accept connections tls" in p.log()
    finally:
        p.stop()
        p.cleanup()


def test_client_certificates_per_tls_auth_clients(certs):
    for auth, no_cert_ok in (("yes", False), ("optional", True), ("no", True)):
        p = tls_server(certs, auth=auth)
        try:
            c = tls_client(certs, p.tls_port, ssl_certfile=None, ssl_keyfile=None)
            if no_cert_ok:
                assert c.ping() is True
            else:
                with pytest.raises(redis.ConnectionError):
                    c.ping()
            c.close()
            # a certificate from a CA the server does not trust: refused unless "no"
            c = tls_client(certs, p.tls_port, ssl_certfile=certs.other_cert,
                           ssl_keyfile=certs.other_key)
            if auth == "no":
                assert c.ping() is True
            else:
                with pytest.raises(redis.ConnectionError):
                    c.ping()
            c.close()
            assert p.client().ping()
        finally:
            p.stop()
            p.cleanup()


def test_garbage_and_stalled_handshakes_lose_nothing(certs):
    p = tls_server(certs)
    try:
        c = tls_client(certs, p.tls_port)
        c.set("kept", "1")
        stalled = socket.create_connection(("127.0.0.1", p.tls_port))
        stalled.sendall(b"\x16\x03\x01\x00")             # a ClientHello cut short
        for payload in (b"\x16\x03\x01\xff\xff" + os.urandom(300), b"PING\r\n",
                        os.urandom(4096)):
            with socket.create_connection(("127.0.0.1", p.tls_port), timeout=5) as s:
                s.sendall(payload)
                s.settimeout(5)
                try:
                    while s.recv(4096):
                        pass
                except (ConnectionResetError, socket.timeout):
                    pass
        # a TLS client on the plaintext port gets nothing it can use, the server lives
        ctx = ssl.create_default_context(cafile=certs.ca)
        with socket.create_connection(("127.0.0.1", p.port), timeout=5) as s:
            with pytest.raises((ssl.SSLError, OSError)):
                ctx.wrap_socket(s, server_hostname="localhost")
        assert c.get("kept") == "1" and c.dbsize() == 1
        assert tls_client(certs, p.tls_port).get("kept") == "1"
        stalled.close()
    finally:
        p.stop()
        p.cleanup()


def test_key_file_password_and_protocols(certs, tmp_path):
    enc = tls_certs.make(str(tmp_path), key_password=b"k3y-pass")
    p = tls_server(enc, "--tls-key-file-pass", "k3y-pass", "--tls-protocols", "TLSv1.3")
    try:
        assert tls_client(enc, p.tls_port, ssl_password="k3y-pass").ping() is True
        ctx = ssl.create_default_context(cafile=enc.ca)
        ctx.load_cert_chain(enc.cert, enc.key, password="k3y-pass")
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2             # below what it allows
        with socket.create_connection(("127.0.0.1", p.tls_port), timeout=5) as s:
            with pytest.raises(ssl.SSLError):
                ctx.wrap_socket(s, server_hostname="localhost")
    finally:
        p.stop()
        p.cleanup()


@pytest.mark.parametrize("bad,text", [
    (["--tls-cert-file", "/nonexistent/cert.pem"], "Failed to load certificate"),
    (["--tls-protocols", "TLSv9"], "Invalid tls-protocols specified"),
    (["--tls-ca-cert-file", ""], "Either tls-ca-cert-file or tls-ca-cert-dir must be specified"),
])
def test_bad_tls_settings_stop_start_up_like_redis(certs, bad, text):
    for redis_server in (False, True):
        tport = free_ports(1)[0]
        p = Proc(["--tls-port", str(tport), *certs.server_args(), *bad],
                 redis_server=redis_server)
        try:
            p.start(wait=False)
            assert p.wait_exit(20) == 1
            log = p.log()
            assert "Failed to configure TLS. Check logs for more info." in log, log
            assert text in log, log
        finally:
            p.cleanup()


def test_config_set_reloads_tls_or_refuses_like_redis(certs, tmp_path):
    replies = []
    for redis_server in (True, False):
        p = tls_server(certs, redis_server=redis_server)
        try:
            c = p.client()
            with pytest.raises(redis.ResponseError) as e:
                c.config_set("tls-cert-file", "/nonexistent/cert.pem")
            replies.append(str(e.value))
            assert c.config_get("tls-cert-file")["tls-cert-file"] == certs.cert
            assert tls_client(certs, p.tls_port).ping() is True      # still serving
            # a new certificate from a new CA, in one CONFIG SET
            new = tls_certs.make(str(tmp_path / ("r" if redis_server else "p")))
            c.execute_command("CONFIG", "SET", "tls-cert-file", new.cert, "tls-key-file",
                              new.key, "tls-ca-cert-file", new.ca)
            assert tls_client(new, p.tls_port).ping() is True
            # tls-auth-clients at run time
            with pytest.raises(redis.ConnectionError):
                tls_client(new, p.tls_port, ssl_certfile=None, ssl_keyfile=None).ping()
            c.config_set("tls-auth-clients", "no")
            assert tls_client(new, p.tls_port, ssl_certfile=None, ssl_keyfile=None).ping()
            # and a TLS port opened at run time
            port2 = free_ports(1)[0]
            c.config_set("tls-port", port2)
            assert tls_client(new, port2).ping() is True
        finally:
            p.stop()
            p.cleanup()
    assert replies[0] == replies[1]
    assert "Unable to update TLS configuration. Check server logs." in replies[1]


def test_migrate_speaks_tls_with_tls_cluster(certs):
    a = tls_server(certs, "--tls-cluster", "yes")
    b = tls_server(certs)
    try:
        a.client().set("moving", "v")
        r = a.client().execute_command("MIGRATE", "127.0.0.1", b.tls_port, "moving", 0, 5000)
        assert r == b"OK"
        assert b.client().get("moving") == b"v" and a.client().exists("moving") == 0
    finally:
        for p in (a, b):
            p.stop()
            p.cleanup()


# ------------------------------------------------------------------ replication

@pytest.mark.parametrize("primary_is_redis", [True, False])
def test_replication_over_tls_with_redis_server(certs, primary_is_redis):
    primary = tls_server(certs, redis_server=primary_is_redis)
    replica = tls_server(certs, "--tls-replication", "yes", redis_server=not primary_is_redis)
    try:
        pc = primary.client()
        for i in range(200):
            pc.set("key:%d" % i, "v%d" % i)
        replica.client().execute_command("REPLICAOF", "127.0.0.1", primary.tls_port)
        rc = replica.client()
        wait_until(lambda: parse_info(rc.info("replication")).get("master_link_status") == "up",
                   timeout=30, what="replica link up over TLS")
        pc.set("after-sync", "yes")
        wait_until(lambda: rc.get("after-sync") == b"yes", timeout=20, what="the stream")
        assert rc.dbsize() == 201 and rc.get("key:199") == b"v199"
        # the primary sees its replica on the TLS connection
        assert parse_info(pc.info("replication"))["connected_slaves"] == "1"
    finally:
        for p in (replica, primary):
            p.stop()
            p.cleanup()


# ------------------------------------------------------------------ a TLS cluster

class TlsCluster:
    """3+3 pynode nodes: a plaintext port and a TLS port each, tls-cluster and
    tls-replication on, formed by `redis-cli --cluster create --tls`."""

    def __init__(self, certs, extra=()):
        self.certs = certs
        ports = free_ports(12)
        self.plain, self.tls = ports[:6], ports[6:]
        self.nodes = []
        for p, t in zip(self.plain, self.tls):
            self.nodes.append(Proc(["--tls-port", str(t), *certs.server_args(),
                                    "--cluster-enabled", "yes", "--cluster-node-timeout",
                                    "2000", "--tls-cluster", "yes", "--tls-replication", "yes",
                                    *extra], port=p))

    def up(self):
        for n in self.nodes:
            n.start()
        res = run(["redis-cli", "--cluster", "create",
                   *["127.0.0.1:%d" % t for t in self.tls], "--cluster-replicas", "1",
                   "--cluster-yes", *self.certs.cli_args()], 90)
        assert res.returncode == 0 and "[OK] All 16384 slots covered." in res.stdout, (
            res.stdout + res.stderr)
        wait_until(self.ok, timeout=60, what="the TLS cluster ok and agreeing")
        return self

    def check(self):
        return run(["redis-cli", "--cluster", "check", "127.0.0.1:%d" % self.tls[0],
                    *self.certs.cli_args()], 30)

    def ok(self):
        res = self.check()
        return (res.returncode == 0 and "[OK] All nodes agree" in res.stdout
                and all(parse_info(n.client().execute_command("CLUSTER", "INFO").decode())
                        ["cluster_state"] == "ok" for n in self.nodes)
                and all(parse_info(n.client().info("replication"))["role"] == "master"
                        or parse_info(n.client().info("replication"))
                        .get("master_link_status") == "up" for n in self.nodes))

    def owners(self, node):
        text = node.client().execute_command("CLUSTER", "NODES").decode()
        return {s: n["id"] for n in parse_nodes(text) for s in n["slots"]}

    def cleanup(self):
        for n in self.nodes:
            n.stop()
            n.cleanup()


@pytest.fixture(scope="module")
def tls_cluster(certs):
    c = TlsCluster(certs)
    try:
        yield c.up()
    finally:
        c.cleanup()


def test_cluster_announces_tls_ports_to_tls_clients_and_plain_ones_to_others(tls_cluster):
    cl = tls_cluster
    n0 = cl.nodes[0]
    t = tls_client(cl.certs, cl.tls[0])
    # (replicas are listed once their offset has been gossiped)
    wait_until(lambda: {e[1] for row in t.execute_command("CLUSTER", "SLOTS")
                        for e in row[2:]} == set(cl.tls), timeout=30,
               what="CLUSTER SLOTS listing every node by its TLS port")
    slots_plain = n0.client().execute_command("CLUSTER", "SLOTS")
    assert {e[1] for row in slots_plain for e in row[2:]} == set(cl.plain)
    nodes_tls = parse_nodes(t.execute_command("CLUSTER", "NODES"))
    assert {n["port"] for n in nodes_tls} == set(cl.tls)
    nodes_plain = parse_nodes(n0.client().execute_command("CLUSTER", "NODES").decode())
    assert {n["port"] for n in nodes_plain} == set(cl.plain)
    # CLUSTER SHARDS: "port" is the plaintext one, "tls-port" the TLS one
    shards = t.execute_command("CLUSTER", "SHARDS")
    assert len(shards) == 3
    for shard in shards:
        for fields in shard["nodes"]:
            assert list(fields)[:3] == ["id", "port", "tls-port"]
            assert cl.plain.index(fields["port"]) == cl.tls.index(fields["tls-port"])
    # MOVED names the port of the client's kind
    foo_owner = cl.owners(n0)[12182]
    other = next(i for i, n in enumerate(cl.nodes)
                 if n.client().execute_command("CLUSTER", "MYID").decode() != foo_owner
                 and "master" in n.client().info("replication")["role"])
    with pytest.raises(redis.ResponseError, match=r"12182 127\.0\.0\.1:(\d+)") as e:
        tls_client(cl.certs, cl.tls[other]).get("foo")
    assert int(str(e.value).rsplit(":", 1)[1]) in cl.tls
    with pytest.raises(redis.ResponseError) as e:
        cl.nodes[other].client().get("foo")
    assert int(str(e.value).rsplit(":", 1)[1]) in cl.plain
    # the nodes' bus is at tls-port + 10000
    assert all("@%d" % (p + 10000) in line for p, line in zip(
        sorted(cl.tls), sorted(t.execute_command("CLUSTER", "NODES").splitlines(),
                               key=lambda s: int(s.split()[1].split(":")[1].split("@")[0]))))
    t.close()


def test_redis_py_cluster_over_tls(tls_cluster):
    cl = tls_cluster
    rc = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", cl.tls[1])], ssl=True,
                      ssl_ca_certs=cl.certs.ca, ssl_certfile=cl.certs.cert,
                      ssl_keyfile=cl.certs.key, decode_responses=True, socket_timeout=10)
    try:
        for slot in range(0, 16384, 97):
            rc.set(key_for_slot(slot), "py-%d" % slot)
        for slot in range(0, 16384, 97):
            assert rc.get(key_for_slot(slot)) == "py-%d" % slot
        assert {n.port for n in rc.get_nodes()} == set(cl.tls)
    finally:
        rc.close()
    # the replicas got the writes over TLS replication
    wait_until(lambda: sum(tls_client(cl.certs, t).dbsize() for t in cl.tls)
               == 2 * len(range(0, 16384, 97)), timeout=20, what="replicas in sync")


@pytest.mark.parametrize("lib", ["node-redis", "ioredis"])
def test_node_clients_over_tls(tls_cluster, lib):
    modules = os.path.join(NODE_DIR, "node_modules")
    assert shutil.which("node"), "node is not installed"
    assert os.path.isdir(os.path.join(modules, "redis")), (
        "npm packages missing in tests/node/node_modules: run `npm ci --prefix tests/node`")
    cl = tls_cluster
    env = dict(os.environ, TLS_CA=cl.certs.ca, TLS_CERT=cl.certs.cert, TLS_KEY=cl.certs.key)
    res = subprocess.run(["node", os.path.join(NODE_DIR, "tls_cluster.js"), str(cl.tls[2]), lib],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "OK: 16384 slots written and read back" in res.stdout
    assert "3 masters discovered" in res.stdout


def test_mutual_tls_bus_refuses_outsiders(tls_cluster, certs):
    """The outsider scenario with tls-cluster + tls-auth-clients yes: a node with
    a certificate the cluster does not trust, and one without TLS, MEET the
    cluster and claim slot 12182; nothing changes."""
    cl = tls_cluster
    n0 = cl.nodes[0]
    owners = cl.owners(n0)
    assert "cluster_stats_bus_auth_refused" not in n0.client().execute_command(
        "CLUSTER", "INFO").decode()             # Redis's fields until something is refused
    epoch = parse_info(n0.client().execute_command("CLUSTER", "INFO").decode())[
        "cluster_current_epoch"]
    stranger_certs = tls_certs.Certs(certs.dir, certs.other_ca, certs.other_cert,
                                     certs.other_key, certs.ca, certs.cert, certs.key)
    ports = free_ports(3, exclude=set(cl.plain + cl.tls))
    outsiders = [
        Proc(["--tls-port", str(ports[2]), *stranger_certs.server_args(),
              "--tls-cluster", "yes", "--cluster-enabled", "yes"], port=ports[0]),
        Proc(["--cluster-enabled", "yes"], port=ports[1]),
    ]
    try:
        for o in outsiders:
            o.start()
            oc = o.client()
            oc.execute_command("CLUSTER", "MEET", "127.0.0.1", cl.tls[0])
            oc.execute_command("CLUSTER", "ADDSLOTS", 12182)
            for _ in range(3):
                oc.execute_command("CLUSTER", "BUMPEPOCH")
        time.sleep(3)
        for n in cl.nodes:
            text = n.client().execute_command("CLUSTER", "NODES").decode()
            assert len(parse_nodes(text)) == 6, text
            assert cl.owners(n) == owners
        info = parse_info(n0.client().execute_command("CLUSTER", "INFO").decode())
        assert info["cluster_current_epoch"] == epoch
        # refused handshakes are counted and logged (once per address)
        assert int(info["cluster_stats_bus_auth_refused"]) >= 2
        assert n0.log().count("TLS handshake failed (no trusted client certificate") == 1
        assert cl.ok()
        for o in outsiders:                      # and the outsiders learnt nothing
            text = o.client().execute_command("CLUSTER", "NODES").decode()
            assert all(n["port"] not in cl.tls or "handshake" in n["flags"]
                       for n in parse_nodes(text)), text
    finally:
        for o in outsiders:
            o.stop()
            o.cleanup()
