"""Start, form, check and tear down local Redis Clusters for process-level tests.

The same code drives pynode and redis-server 7.0 (``server="pynode"`` or
``server="redis"``), so a test is first proven against the real thing and then
pointed at pynode.  Every wait is bounded; on a timeout the error message carries
each node's CLUSTER INFO / CLUSTER NODES and the tail of its log.

    with Cluster(primaries=3, replicas=1) as c:      # 6 nodes, formed, state ok
        rc = c.cluster_client()                      # redis.cluster.RedisCluster
        c.cli("-c", "set", "foo", "bar")             # redis-cli on the first node

The backend of the test modules is chosen by the environment variable
``PYNODE_CLUSTER_SERVER`` (``pynode``, the default, or ``redis``).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import redis
from redis.cluster import ClusterNode, RedisCluster

from tests.helpers import Proc, wait_ping, wait_until

# Ports for cluster tests: a fixed range below the kernel's ephemeral range, so an
# outgoing connection never grabs a port (or a bus port, +10000) of a node.
# When the suite runs in parallel (pytest-xdist), each worker takes its own
# share of the range, so two workers never race for the same free port.
def _port_range(lo: int = 19000, hi: int = 19999) -> tuple[int, int]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or count <= 1:
        return lo, hi
    share = (hi - lo + 1) // count
    first = lo + int(worker[2:]) * share
    return first, first + share - 1


PORT_RANGE = _port_range()
NODE_TIMEOUT_MS = 2000
SLOTS = 16384
CHECK_OK_AGREE = "[OK] All nodes agree about slots configuration."
CHECK_OK_COVERED = "[OK] All 16384 slots covered."


def backend() -> str:
    """The server the cluster tests run against: "pynode" (default) or "redis"."""
    name = os.environ.get("PYNODE_CLUSTER_SERVER", "pynode").strip().lower()
    if name in ("redis", "redis-server"):
        return "redis"
    if name != "pynode":
        raise ValueError("PYNODE_CLUSTER_SERVER must be pynode or redis, not %r" % name)
    return "pynode"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(n: int, lo: int = PORT_RANGE[0], hi: int = PORT_RANGE[1],
               exclude: set[int] | None = None) -> list[int]:
    """n free ports in [lo, hi] whose bus port (+10000) is free too.

    The scan starts at a random offset so that concurrent test runs rarely pick
    the same ports (a port that turns out to be taken fails start-up loudly).
    """
    span = hi - lo + 1
    start = random.randrange(span)
    found: list[int] = []
    exclude = exclude or set()
    for i in range(span):
        port = lo + (start + i) % span
        if port in exclude or port + 10000 > 65535:
            continue
        if _port_free(port) and _port_free(port + 10000):
            found.append(port)
            if len(found) == n:
                return found
    raise RuntimeError("only %d free port pairs in %d-%d" % (len(found), lo, hi))


def consecutive_free_ports(n: int, lo: int = PORT_RANGE[0],
                           hi: int = PORT_RANGE[1]) -> int:
    """A base port such that base..base+n-1 and their bus ports are all free."""
    bases = list(range(lo, hi - n + 2))
    random.shuffle(bases)
    for base in bases:
        if all(_port_free(p) and _port_free(p + 10000) for p in range(base, base + n)):
            return base
    raise RuntimeError("no %d consecutive free port pairs in %d-%d" % (n, lo, hi))


def run(cmd: list[str], timeout: float, input: str | None = None) -> subprocess.CompletedProcess:
    """Run a tool with a bounded time; a timeout becomes a CompletedProcess with rc -9."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              input=input, stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode("utf-8", "replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode("utf-8", "replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        return subprocess.CompletedProcess(cmd, -9, out,
                                           err + "\n[timed out after %.0fs]" % timeout)


def parse_info(text) -> dict[str, str]:
    """INFO / CLUSTER INFO text as a dict of strings (redis-py's parsed INFO accepted)."""
    if isinstance(text, dict):
        return {k: str(v) for k, v in text.items()}
    out = {}
    for line in text.splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def parse_nodes(text: str) -> list[dict]:
    """CLUSTER NODES lines as dicts: id, addr, port, flags (set), master, epoch, link, slots."""
    nodes = []
    for line in text.strip().splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        addr = parts[1].split("@")[0].split(",")[0]
        slots: set[int] = set()
        for s in parts[8:]:
            if s.startswith("["):
                continue        # migrating / importing
            if "-" in s:
                a, b = s.split("-")
                slots.update(range(int(a), int(b) + 1))
            else:
                slots.add(int(s))
        nodes.append({"id": parts[0], "addr": addr, "port": int(addr.rsplit(":", 1)[1]),
                      "flags": set(parts[2].split(",")), "master": parts[3],
                      "epoch": int(parts[6]), "link": parts[7], "slots": slots})
    return nodes


class Node:
    """One cluster node process (pynode or redis-server) in its own directory."""

    def __init__(self, port: int, workdir: str, server: str, node_timeout: int,
                 extra: list[str], conf_file: bool = False,
                 check_invariants: bool = True) -> None:
        self.port = port
        self.dir = workdir
        args = ["--cluster-enabled", "yes",
                "--cluster-config-file", "nodes-%d.conf" % port,
                "--cluster-node-timeout", str(node_timeout),
                "--appendonly", "no"] + extra
        # conf_file: start from a (blank) redis.conf, so CONFIG REWRITE works
        self.proc = Proc(args, redis_server=(server == "redis"), port=port, workdir=workdir,
                         conf_text="" if conf_file else None,
                         check_invariants=check_invariants)

    def start(self) -> "Node":
        self.proc.start(wait=False)
        return self

    def alive(self) -> bool:
        return self.proc.proc is not None and self.proc.proc.poll() is None

    def client(self, **kw) -> redis.Redis:
        kw.setdefault("socket_timeout", 5)
        kw.setdefault("decode_responses", True)
        return redis.Redis(host="127.0.0.1", port=self.port, **kw)

    def call(self, *args, timeout: float = 5):
        """One command on a fresh connection (no state carried between waits)."""
        c = self.client(socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            return c.execute_command(*args)
        finally:
            c.close()

    def info(self) -> dict[str, str]:
        return parse_info(self.call("CLUSTER", "INFO"))

    def nodes(self) -> list[dict]:
        return parse_nodes(self.call("CLUSTER", "NODES"))

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.proc.log().splitlines()[-n:])


class Cluster:
    """N nodes with cluster-enabled yes, formed by `redis-cli --cluster create`."""

    def __init__(self, primaries: int = 3, replicas: int = 1, server: str | None = None,
                 node_timeout: int = NODE_TIMEOUT_MS, extra: list[str] | None = None,
                 ports: list[int] | None = None, conf_file: bool = False,
                 check_invariants: bool = True) -> None:
        self.conf_file = conf_file
        # False: pynode as deployed, without the suite's invariant checks (benchmarks)
        self.check_invariants = check_invariants
        self.server = server or backend()
        self.primaries = primaries
        self.replicas = replicas
        self.n = primaries * (1 + replicas)
        self.node_timeout = node_timeout
        self.extra = list(extra or [])
        self.dir = tempfile.mkdtemp(prefix="pynode-cluster-")
        self.ports = ports or free_ports(self.n)
        self.nodes: list[Node] = []
        self.create_output = ""

    # -- life cycle ---------------------------------------------------------

    def start(self, timeout: float = 20) -> "Cluster":
        for port in self.ports:
            d = os.path.join(self.dir, str(port))
            os.makedirs(d, exist_ok=True)
            self.nodes.append(Node(port, d, self.server, self.node_timeout, self.extra,
                                   self.conf_file, self.check_invariants).start())
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            try:
                wait_ping(node.port, timeout=max(0.5, deadline - time.monotonic()))
            except TimeoutError:
                raise AssertionError("node %d did not start\n%s"
                                     % (node.port, self.diagnostics()))
        return self

    def create(self, timeout: float = 60) -> str:
        """`redis-cli --cluster create ... --cluster-replicas R --cluster-yes`."""
        hosts = ["127.0.0.1:%d" % p for p in self.ports]
        res = run(["redis-cli", "--cluster", "create", *hosts,
                   "--cluster-replicas", str(self.replicas), "--cluster-yes"], timeout)
        self.create_output = res.stdout + res.stderr
        if res.returncode != 0 or CHECK_OK_COVERED not in res.stdout:
            raise AssertionError("redis-cli --cluster create failed (rc=%d):\n%s\n%s"
                                 % (res.returncode, self.create_output, self.diagnostics()))
        return self.create_output

    def up(self, timeout: float = 60) -> "Cluster":
        """Start, form and wait until every node is ok and all agree."""
        try:
            self.start()
            self.create(timeout=timeout)
            self.wait_ok(timeout=timeout)
        except BaseException:
            self.cleanup()
            raise
        return self

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM every node at once, then wait (bounded), then SIGKILL stragglers."""
        for node in self.nodes:
            p = node.proc.proc
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            p = node.proc.proc
            if p is None:
                continue
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
            fh = getattr(node.proc, "logfh", None)
            if fh:
                fh.close()

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Cluster":
        return self.up()

    def __exit__(self, *exc) -> None:
        self.cleanup()

    # -- waiting ------------------------------------------------------------

    def problems(self) -> list[str]:
        """What keeps the cluster from being formed and agreed (empty list: all good)."""
        out: list[str] = []
        maps = {}
        for node in self.nodes:
            if not node.alive():
                out.append("%d: process exited" % node.port)
                continue
            try:
                info = node.info()
                nodes = node.nodes()
            except Exception as e:  # noqa: BLE001 - any failure is a reason to wait
                out.append("%d: %r" % (node.port, e))
                continue
            if info.get("cluster_state") != "ok":
                out.append("%d: cluster_state:%s" % (node.port, info.get("cluster_state")))
            if info.get("cluster_known_nodes") != str(self.n):
                out.append("%d: cluster_known_nodes:%s (want %d)"
                           % (node.port, info.get("cluster_known_nodes"), self.n))
            if info.get("cluster_slots_assigned") != str(SLOTS):
                out.append("%d: cluster_slots_assigned:%s"
                           % (node.port, info.get("cluster_slots_assigned")))
            bad = [n["addr"] + ":" + ",".join(sorted(n["flags"])) for n in nodes
                   if n["flags"] & {"handshake", "fail", "fail?", "noaddr"}
                   or n["link"] != "connected"]
            if bad:
                out.append("%d: not healthy: %s" % (node.port, " ".join(bad)))
            maps[node.port] = sorted((n["id"], n["master"] if "slave" in n["flags"] else "-",
                                      tuple(sorted(n["slots"]))) for n in nodes)
        if len(set(map(repr, maps.values()))) > 1:
            out.append("nodes disagree about the slot map / roles")
        return out

    def wait_ok(self, timeout: float = 60) -> None:
        """Every node: cluster_state:ok, all nodes known and healthy, same slot map;
        then `redis-cli --cluster check` passes."""
        deadline = time.monotonic() + timeout
        last: list[str] = ["never checked"]
        while time.monotonic() < deadline:
            last = self.problems()
            if not last:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("cluster not ok after %.0fs:\n  %s\n%s"
                                 % (timeout, "\n  ".join(last), self.diagnostics()))
        while True:
            res = self.check()
            if res.returncode == 0 and CHECK_OK_AGREE in res.stdout \
                    and CHECK_OK_COVERED in res.stdout:
                return
            if time.monotonic() > deadline:
                raise AssertionError("redis-cli --cluster check failed (rc=%d):\n%s\n%s\n%s"
                                     % (res.returncode, res.stdout, res.stderr,
                                        self.diagnostics()))
            time.sleep(0.3)

    def wait_replicas_synced(self, timeout: float = 30) -> None:
        """Every replica reports master_link_status:up."""
        deadline = time.monotonic() + timeout
        while True:
            pending = []
            for node in self.nodes:
                info = parse_info(node.call("INFO", "replication"))
                if info.get("role") == "slave" and info.get("master_link_status") != "up":
                    pending.append("%d: master_link_status:%s"
                                   % (node.port, info.get("master_link_status")))
            if not pending:
                return
            if time.monotonic() > deadline:
                raise AssertionError("replicas not in sync: %s\n%s"
                                     % (pending, self.diagnostics()))
            time.sleep(0.2)

    # -- tools --------------------------------------------------------------

    def check(self, port: int | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
        return run(["redis-cli", "--cluster", "check",
                    "127.0.0.1:%d" % (port or self.ports[0])], timeout)

    def cli(self, *args: str, port: int | None = None, timeout: float = 30,
            input: str | None = None) -> subprocess.CompletedProcess:
        return run(["redis-cli", "-h", "127.0.0.1", "-p", str(port or self.ports[0]), *args],
                   timeout, input=input)

    def cluster_client(self, **kw) -> RedisCluster:
        kw.setdefault("socket_timeout", 10)
        kw.setdefault("decode_responses", True)
        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in self.ports[:3]],
                            **kw)

    def add_node(self, port: int | None = None) -> Node:
        """Start one more node (not yet part of the cluster), like the others."""
        port = port or free_ports(1, exclude=set(self.ports))[0]
        d = os.path.join(self.dir, str(port))
        os.makedirs(d, exist_ok=True)
        node = Node(port, d, self.server, self.node_timeout, self.extra, self.conf_file,
                    self.check_invariants).start()
        self.nodes.append(node)
        self.ports.append(port)
        self.n = len(self.nodes)
        wait_ping(port, timeout=20)
        return node

    def remove_node(self, port: int) -> None:
        """Stop a node and forget it here (after `redis-cli --cluster del-node`)."""
        node = self.node_by_port(port)
        node.proc.stop()
        self.nodes.remove(node)
        self.ports.remove(port)
        self.n = len(self.nodes)

    def wait_agree(self, timeout: float = 60) -> subprocess.CompletedProcess:
        """Poll until every node knows every other one and `redis-cli --cluster
        check` is clean (all agree, all covered, no open slots); returns its last
        output."""
        deadline = time.monotonic() + timeout
        while True:
            res = self.check()
            if res.returncode == 0 and CHECK_OK_AGREE in res.stdout and \
                    CHECK_OK_COVERED in res.stdout and "[WARNING]" not in res.stdout \
                    and self._all_known():
                return res
            if time.monotonic() > deadline:
                raise AssertionError("redis-cli --cluster check not clean after %.0fs:\n%s\n%s"
                                     "\n%s" % (timeout, res.stdout, res.stderr,
                                                self.diagnostics()))
            time.sleep(0.3)

    def _all_known(self) -> bool:
        want = {n.port for n in self.nodes}
        for node in self.nodes:
            try:
                seen = {n["port"] for n in node.nodes() if "handshake" not in n["flags"]}
            except Exception:  # noqa: BLE001 - not ready yet
                return False
            if seen != want:
                return False
        return True

    def live_node(self) -> Node:
        return next(n for n in self.nodes if n.alive())

    def node_by_port(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    def primary_ports(self) -> list[int]:
        return [n["port"] for n in self.live_node().nodes() if "master" in n["flags"]]

    def owner_of(self, slot: int) -> int:
        """Port of the primary serving slot, as the first live node sees it."""
        for n in self.live_node().nodes():
            if "master" in n["flags"] and slot in n["slots"]:
                return n["port"]
        raise KeyError(slot)

    def diagnostics(self) -> str:
        """Each node's CLUSTER INFO, CLUSTER NODES and log tail."""
        parts = []
        for node in self.nodes:
            parts.append("==== node %d (%s, %s) ====" % (
                node.port, self.server, "alive" if node.alive() else
                "exited rc=%s" % (node.proc.proc.returncode if node.proc.proc else "?")))
            for what in (("CLUSTER", "INFO"), ("CLUSTER", "NODES")):
                try:
                    parts.append("-- %s:\n%s" % (" ".join(what), node.call(*what, timeout=2)))
                except Exception as e:  # noqa: BLE001
                    parts.append("-- %s: %r" % (" ".join(what), e))
            parts.append("-- log tail:\n" + node.log_tail())
        return "\n".join(parts)


def single_node_cluster(extra: list[str] | None = None, first: int = 0,
                        last: int = SLOTS - 1) -> Proc:
    """One started pynode with cluster-enabled yes serving slots first..last,
    cluster_state ok (with fewer than all slots, pass
    --cluster-require-full-coverage no); the caller cleans it up."""
    p = Proc(["--cluster-enabled", "yes", "--appendonly", "no"] + list(extra or []),
             port=free_ports(1)[0]).start()
    try:
        c = p.client()
        c.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        wait_until(lambda: b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO"),
                   what="cluster_state:ok")
        c.close()
    except BaseException:
        p.cleanup()
        raise
    return p


def key_for_slot(slot: int) -> str:
    """A short key (hash tag) that lands in slot; computed once per process."""
    return _slot_keys()[slot]


_SLOT_KEYS: list[str] = []


def _slot_keys() -> list[str]:
    if not _SLOT_KEYS:
        import binascii
        found: list[str | None] = [None] * SLOTS
        left = SLOTS
        i = 0
        while left:
            tag = "%d" % i
            s = binascii.crc_hqx(tag.encode(), 0) & (SLOTS - 1)
            if found[s] is None:
                found[s] = tag
                left -= 1
            i += 1
        _SLOT_KEYS.extend("{%s}" % t for t in found)  # type: ignore[misc]
    return _SLOT_KEYS


def keyslot(key: str | bytes) -> int:
    import binascii
    if isinstance(key, str):
        key = key.encode()
    s = key.find(b"{")
    if s != -1:
        e = key.find(b"}", s + 1)
        if e > s + 1:
            key = key[s + 1:e]
    return binascii.crc_hqx(key, 0) & (SLOTS - 1)


MOVED_RE = re.compile(rb"^-MOVED (\d+) ([0-9.]+):(\d+)\r\n$")
