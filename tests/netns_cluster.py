"""A 3+3 cluster spread over three hosts made of network namespaces
(pynode.chaos.netlab): each node has an address of its own, each host holds
two nodes, partitions are made with `pynode chaos`.

Layout (host: nodes): shard 1 lives on one host, so cutting that host off
takes a primary together with its replica; shards 2 and 3 are spread, so
cutting P2's address alone leaves its replica with the majority:

    h1: P1 (.11)  R1 (.12)
    h2: P2 (.21)  R3 (.22)
    h3: P3 (.31)  R2 (.32)

The test process lives in the root namespace and reaches every node through
the lab's bridge, as a client that sees both sides of a partition.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import redis
from redis.cluster import ClusterNode, RedisCluster

from pynode.chaos.control import ChaosError, node_pid
from pynode.chaos.netlab import NetLab
from tests.cluster_helpers import parse_nodes, run
from tests.helpers import ROOT

PORT = 7000          # every node has its own address, so all use the same port


class NetCluster:
    def __init__(self, node_timeout: int = 2000, state_dir: str | None = None) -> None:
        self.node_timeout = node_timeout
        self.tmp = tempfile.mkdtemp(prefix="pynode-netns-")
        self.state_dir = state_dir or os.path.join(self.tmp, "labs")
        self.lab = NetLab("pt%04d" % random.randrange(10000),
                          "10.77.%d" % random.randrange(100, 250), self.state_dir)
        self.procs: dict[str, subprocess.Popen] = {}
        self.log = os.path.join(self.tmp, "chaos.log")
        s = self.lab.subnet
        self.p = ["%s.11" % s, "%s.21" % s, "%s.31" % s]
        self.r = ["%s.12" % s, "%s.32" % s, "%s.22" % s]   # replica of P1, P2, P3
        self.addrs = self.p + self.r
        self.n = 6
        self.env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get(
            "PYTHONPATH", ""), PYNODE_CHAOS_STATE_DIR=self.state_dir)

    # -- life cycle ---------------------------------------------------------
    def up(self, timeout: float = 60) -> "NetCluster":
        self.lab.create(3, 2)
        for a in self.addrs:
            self.start(a)
        deadline = time.monotonic() + timeout
        for a in self.addrs:
            self.wait_ping(a, deadline)
        res = run(["redis-cli", "--cluster", "create"] + ["%s:%d" % (a, PORT) for a in self.p]
                  + ["--cluster-yes"], timeout)
        assert res.returncode == 0, res.stdout + res.stderr
        for rep, prim in zip(self.r, self.p):
            pid = self.call(prim, "CLUSTER", "MYID")
            self.call(rep, "CLUSTER", "MEET", prim, PORT)
            self.wait(lambda: pid in self.call(rep, "CLUSTER", "NODES"), deadline,
                      "%s knows %s" % (rep, prim))
            self.call(rep, "CLUSTER", "REPLICATE", pid)
        self.wait(lambda: not self.problems(), deadline, "a healthy cluster")
        return self

    def start(self, addr: str) -> None:
        d = os.path.join(self.tmp, addr)
        os.makedirs(d, exist_ok=True)
        argv = self.lab.exec_prefix(self.lab.host_of(addr)) + [
            sys.executable, "-m", "pynode", "--bind", addr, "--port", str(PORT),
            "--cluster-enabled", "yes", "--cluster-node-timeout", str(self.node_timeout),
            # clients and replicas reach it from other addresses, and no password is set
            "--protected-mode", "no",
            "--appendonly", "yes", "--appendfsync", "always", "--save", "",
            "--logfile", "node.log", "--dir", d]
        self.procs[addr] = subprocess.Popen(argv, cwd=d, env=self.env,
                                            stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)

    def cleanup(self) -> None:
        for p in self.procs.values():
            try:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
                p.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        # restarted nodes are not our children: find them by their directory
        for a in self.addrs:
            try:
                os.kill(node_pid("%s:%d" % (a, PORT)), signal.SIGKILL)
            except (ChaosError, OSError):     # already gone
                pass
        self.lab.destroy()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- talking ------------------------------------------------------------
    def client(self, addr: str, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(addr, PORT, socket_timeout=timeout, socket_connect_timeout=timeout,
                           decode_responses=True)

    def call(self, addr: str, *args, timeout: float = 2.0):
        c = self.client(addr, timeout)
        try:
            return c.execute_command(*args)
        finally:
            c.close()

    def info(self, addr: str, section: str = "server", timeout: float = 2.0) -> dict:
        c = self.client(addr, timeout)
        try:
            return c.info(section)
        finally:
            c.close()

    def wait_ping(self, addr: str, deadline: float) -> None:
        self.wait(lambda: self.call(addr, "PING", timeout=0.5), deadline, "%s answers" % addr)

    def wait(self, cond, deadline: float, what: str, interval: float = 0.1) -> float:
        t0 = time.monotonic()
        last = None
        while time.monotonic() < deadline:
            try:
                if cond():
                    return time.monotonic() - t0
            except Exception as e:  # noqa: BLE001 - a node in transition
                last = e
            time.sleep(interval)
        raise AssertionError("timed out waiting for %s (last error %r)\n%s"
                             % (what, last, self.diagnostics()))

    def view(self, addr: str) -> list[dict]:
        return parse_nodes(self.call(addr, "CLUSTER", "NODES"))

    def owner(self, addr: str, slot: int) -> str | None:
        """The address of the node owning slot, as addr sees it."""
        for n in self.view(addr):
            if slot in n["slots"] and "fail" not in n["flags"]:
                return n["addr"].rsplit(":", 1)[0]
        return None

    def problems(self) -> list[str]:
        out = []
        for a in self.addrs:
            try:
                if "cluster_state:ok" not in self.call(a, "CLUSTER", "INFO"):
                    out.append("%s: cluster_state not ok" % a)
                flags = [n for n in self.view(a)
                         if {"fail", "fail?", "handshake", "noaddr"} & n["flags"]]
                if flags:
                    out.append("%s sees %s" % (a, [(n["addr"], sorted(n["flags"]))
                                                   for n in flags]))
                repl = self.info(a, "replication")
                if repl.get("role") == "slave" and repl.get("master_link_status") != "up":
                    out.append("%s: replication link down" % a)
            except Exception as e:  # noqa: BLE001
                out.append("%s: %r" % (a, e))
        return out

    def cluster_client(self, **kw) -> RedisCluster:
        kw.setdefault("socket_timeout", 2)
        kw.setdefault("socket_connect_timeout", 2)
        kw.setdefault("decode_responses", True)
        kw.setdefault("require_full_coverage", False)
        return RedisCluster(startup_nodes=[ClusterNode(a, PORT) for a in self.addrs], **kw)

    def chaos(self, *args: str) -> subprocess.CompletedProcess:
        """`pynode chaos ...` as a user runs it."""
        res = subprocess.run([sys.executable, "-m", "pynode", "chaos", "--log", self.log,
                              *args], env=self.env, capture_output=True, text=True,
                             timeout=60, stdin=subprocess.DEVNULL)
        assert res.returncode == 0, "pynode chaos %s: %s%s" % (" ".join(args), res.stdout,
                                                                res.stderr)
        return res

    def diagnostics(self) -> str:
        parts = [self.lab.describe()]
        for a in self.addrs:
            try:
                parts.append("== %s\n%s" % (a, self.call(a, "CLUSTER", "NODES", timeout=1)))
            except Exception as e:  # noqa: BLE001
                parts.append("== %s: %r" % (a, e))
            try:
                with open(os.path.join(self.tmp, a, "node.log"), errors="replace") as fh:
                    parts.append("".join(fh.readlines()[-12:]))
            except OSError:
                pass
        return "\n".join(parts)
