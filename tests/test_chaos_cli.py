"""`pynode chaos` without network namespaces: the lab's plans (pure), and the
reversible actions against real pynode processes: freeze/thaw, kill/restart,
slow/fast, slow-disk, the packet-filter isolation of a cluster node, the log
and undo."""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import pytest
import redis

from pynode.chaos.control import not_local
from pynode.chaos.netlab import NetLab, NetLabError, host_addr
from tests.cluster_helpers import Cluster
from tests.helpers import ChaosCli, Proc, ping_ok, wait_until


# ---------------------------------------------------------------- the lab's plans
def lab3() -> NetLab:
    lab = NetLab("t1", "10.77.9", tempfile.gettempdir())
    lab.create_cmds(3, 2)
    return lab


def test_lab_addresses_and_commands():
    lab = NetLab("t1", "10.77.9", tempfile.gettempdir())
    cmds = lab.create_cmds(2, 2)
    assert lab.hosts["h1"]["addrs"] == ["10.77.9.11", "10.77.9.12"]
    assert lab.hosts["h2"] == {"ns": "t1-h2", "veth": "t1-v2",
                               "addrs": ["10.77.9.21", "10.77.9.22"]}
    assert ["ip", "link", "add", "t1-br", "type", "bridge"] in cmds
    assert ["ip", "netns", "exec", "t1-h2", "ip", "addr", "add", "10.77.9.22/24", "dev",
            "eth0"] in cmds
    assert lab.gateway() == "10.77.9.1"
    assert host_addr("10.0.0", 3, 1) == "10.0.0.31"
    with pytest.raises(NetLabError):
        host_addr("10.0.0", 25, 1)
    for bad in ("a name too long", "x;y"):
        with pytest.raises(NetLabError):
            NetLab(bad)
    for bad in ("8.8.8", "10.77", "10.77.300"):
        with pytest.raises(NetLabError):
            NetLab("ok", bad)


def test_partition_rules_symmetric_one_way_and_refusals():
    lab = lab3()
    a, b, c = "10.77.9.11", "10.77.9.21", "10.77.9.31"
    # one way: a -> b dropped leaving a's host and arriving at b's host
    assert lab.partition_rules([a], [b], one_way=True) == [["h1", a, b], ["h2", a, b]]
    # symmetric: both directions, both hosts
    rules = lab.partition_rules([a], [b, c], one_way=False)
    assert sorted(rules) == sorted([["h1", a, b], ["h2", a, b], ["h1", a, c], ["h3", a, c],
                                    ["h2", b, a], ["h1", b, a], ["h3", c, a], ["h1", c, a]])
    # rules already in force are not added twice
    lab.rules = [["h1", a, b]]
    assert lab.partition_rules([a], [b], one_way=True) == [["h2", a, b]]
    with pytest.raises(NetLabError, match="same host"):
        lab.partition_rules([a], ["10.77.9.12"], one_way=False)
    with pytest.raises(NetLabError, match="not an address"):
        lab.partition_rules([a], ["10.1.1.1"], one_way=False)


def test_lab_state_round_trip(tmp_path):
    lab = NetLab("t2", "10.77.8", str(tmp_path))
    lab.create_cmds(2, 1)
    lab.rules = [["h1", "10.77.8.11", "10.77.8.21"]]
    lab.save()
    back = NetLab.load("t2", str(tmp_path))
    assert back.hosts == lab.hosts and back.rules == lab.rules
    assert NetLab.find_addr("10.77.8.21", str(tmp_path)).name == "t2"
    assert NetLab.find_addr("10.77.8.99", str(tmp_path)) is None
    (tmp_path / "t2.json").write_text("{not json")
    with pytest.raises(NetLabError, match="damaged"):
        NetLab.load("t2", str(tmp_path))
    with pytest.raises(NetLabError, match="no lab named"):
        NetLab.load("nope", str(tmp_path))


# ---------------------------------------------------------------- actions on processes
@pytest.fixture
def chaos():
    tmp = tempfile.mkdtemp(prefix="pynode-chaos-")
    try:
        yield ChaosCli(os.path.join(tmp, "chaos.log"), os.path.join(tmp, "labs"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_freeze_thaw_kill_restart_and_undo(chaos):
    p = Proc(["--appendonly", "yes", "--appendfsync", "always"]).start()
    restarted = None
    try:
        node = "127.0.0.1:%d" % p.port
        c = p.client()
        c.set("k", "v")
        assert "1: freeze" in chaos("freeze", node).stdout
        assert not ping_ok(p.port)
        assert "OPEN" in chaos("log").stdout
        chaos("thaw", node)
        assert ping_ok(p.port)
        # as an ACL user (AUTH user password)
        c.execute_command("ACL", "SETUSER", "ops", "on", ">ops-pw", "+@all", "~*")
        res = chaos("--user", "ops", "-a", "wrong", "freeze", node, ok=False)
        assert res.returncode == 1 and "WRONGPASS" in res.stderr
        chaos("--user", "ops", "-a", "ops-pw", "freeze", node)
        assert not ping_ok(p.port)
        chaos("--user", "ops", "-a", "ops-pw", "thaw", node)
        assert ping_ok(p.port)

        pid = p.proc.pid
        chaos("kill", node)
        assert p.proc.wait(10) == -9
        kill = [e for e in chaos.entries() if e.get("action") == "kill"][0]
        assert kill["undo"]["image"]["cwd"] == os.path.realpath(p.dir)
        out = chaos("undo", "--all").stdout
        assert "undone 5: kill" in out, out
        wait_until(lambda: ping_ok(p.port), 30, "the restarted node answering")
        restarted = int(redis.Redis(port=p.port).info("server")["process_id"])
        assert restarted != pid
        assert redis.Redis(port=p.port).get("k") == b"v"      # from its AOF
        assert "OPEN" not in chaos("log").stdout
        # nothing left to undo; an unknown id is an error
        assert chaos("undo", "--all").stdout == ""
        res = chaos("undo", "99", ok=False)
        assert res.returncode == 1 and "no open action 99" in res.stderr
        res = chaos("thaw", "127.0.0.1:1", ok=False)
        assert res.returncode == 1 and "error:" in res.stderr
    finally:
        if restarted:
            try:
                os.kill(restarted, 9)
            except OSError:
                pass
        p.cleanup()


def test_slow_then_fast(chaos):
    p = Proc().start()
    try:
        node = "127.0.0.1:%d" % p.port
        c = redis.Redis(port=p.port, socket_timeout=5)

        def worst(n: int) -> float:
            w = 0.0
            for _ in range(n):
                t = time.monotonic()
                c.ping()
                w = max(w, time.monotonic() - t)
                time.sleep(0.01)
            return w

        chaos("slow", node, "--stop-ms", "300", "--every-ms", "400")
        assert worst(40) >= 0.1          # some PING waited for the node to be continued
        worker = [e for e in chaos.entries() if e.get("action") == "slow"][0]["undo"]["worker"]
        chaos("fast", node)
        assert not os.path.exists("/proc/%d/status" % worker) or \
            "zombie" in open("/proc/%d/status" % worker).read()
        assert worst(40) < 0.25
        res = chaos("fast", node, ok=False)
        assert res.returncode == 1 and "not slowed" in res.stderr
        res = chaos("slow", node, "--stop-ms", "500", "--every-ms", "100", ok=False)
        assert res.returncode == 1
    finally:
        p.cleanup()


def test_slow_disk_sets_aof_flush_sleep(chaos):
    p = Proc(["--appendonly", "yes", "--enable-debug-command", "yes"]).start()
    try:
        node = "127.0.0.1:%d" % p.port
        c = redis.Redis(port=p.port, socket_timeout=5)
        chaos("slow-disk", node, "--usec", "200000")
        t = time.monotonic()
        c.set("a", "1")
        assert time.monotonic() - t >= 0.15
        chaos("undo", "--all")
        t = time.monotonic()
        c.set("a", "2")
        assert time.monotonic() - t < 0.15
    finally:
        p.cleanup()


def test_partition_without_namespaces_isolates_the_bus(chaos):
    """Not in a lab: the node is cut off from every peer with the DEBUG packet
    filter; per-peer partitions are refused with the reason."""
    cl = Cluster(primaries=3, replicas=0, node_timeout=1000,
                 extra=["--enable-debug-command", "yes"])
    cl.up()
    try:
        victim = cl.nodes[0]
        node = "127.0.0.1:%d" % victim.port
        res = chaos("partition", node, "--from", "127.0.0.1:%d" % cl.nodes[1].port, ok=False)
        assert res.returncode == 1 and "not in a network lab" in res.stderr
        assert "debug-packet-filter" in chaos("partition", node).stdout
        vid = victim.call("CLUSTER", "MYID")
        for other in cl.nodes[1:]:
            wait_until(lambda o=other: any(
                ln.startswith(vid) and "fail" in ln.split()[2]
                for ln in o.call("CLUSTER", "NODES").splitlines()), 30,
                "the isolated node marked failing by %d" % other.port)
        chaos("heal", node)
        for other in cl.nodes:
            wait_until(lambda o=other: "cluster_state:ok" in o.call("CLUSTER", "INFO")
                       and "fail" not in o.call("CLUSTER", "NODES"), 30,
                       "a healed cluster on %d" % other.port)
    finally:
        cl.cleanup()


def test_not_local_needs_this_machines_process_listening_on_the_port():
    """What the dashboard checks before a chaos action: the pid a node reports
    is, here, a process listening on the node's port."""
    p = Proc().start()
    try:
        assert not_local(p.proc.pid, p.port) is None
        assert "does not listen on port %d" % p.port in not_local(os.getpid(), p.port)
        assert "no process" in not_local(2 ** 22 + 1, p.port)     # above any pid_max
    finally:
        p.cleanup()
