"""Growing and shrinking a pynode cluster while clients keep working, and a kill -9
in the middle of a reshard.

Live: a redis-py RedisCluster thread writes and reads back a ledger of keys and
redis-benchmark --cluster runs SET/GET, while `redis-cli --cluster` moves slots
from one primary to another, rebalances, adds a fourth primary and gives it
slots, drains it and del-nodes it.  The clients may see redirections (their
libraries follow them) and nothing else; every acknowledged write reads back;
`redis-cli --cluster check` is clean.  PYNODE_LIVE_FORM picks the size: "short"
(the default suite: 500 slots, then 300 slots to the new primary with reshard
--cluster-from all) or "long" (`make chaos`: 2000 slots, then rebalance
--cluster-use-empty-masters, which moves 4096 slots each way).

Kill: AOF with appendfsync always, then kill -9 of the source, or of the target,
while `redis-cli --cluster reshard` runs; after a restart `redis-cli --cluster
fix` finishes the job and every key is in exactly one place with its value.
(PYNODE_CLUSTER_SERVER=redis runs the same against redis-server 7.0.)
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import threading
import time

import pytest
import redis
from redis.cluster import RedisCluster

from tests.cluster_helpers import Cluster, key_for_slot, run
from tests.helpers import wait_ping


def cli(*args: str, timeout: float = 900, input: str | None = None) -> str:
    res = run(["redis-cli", "--cluster", *args], timeout, input=input)
    out = res.stdout + res.stderr
    assert res.returncode == 0, "redis-cli --cluster %s failed:\n%s" % (" ".join(args), out)
    return out


def ids(cl) -> dict[int, str]:
    return {n["port"]: n["id"] for n in cl.live_node().nodes()}


def slot_counts(cl) -> dict[int, int]:
    return {n["port"]: len(n["slots"]) for n in cl.live_node().nodes()
            if "master" in n["flags"]}


class Ledger:
    """One thread: SET ledger:<k> <seq> through RedisCluster, and GET back a key
    written earlier; every exception the library raises is a client-visible error."""

    def __init__(self, cl: Cluster, keys: int = 2000, seed: int = 7) -> None:
        self.rc = cl.cluster_client(socket_timeout=10)
        self.keys = ["ledger:%d" % i for i in range(keys)]
        self.acked: dict[str, int] = {}
        self.errors: list[str] = []
        self.mismatches: list[str] = []
        self.writes = self.reads = 0
        self.rng = random.Random(seed)
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self) -> "Ledger":
        self.thread.start()
        return self

    def run(self) -> None:
        seq = 0
        deadline = time.monotonic() + 1800
        while not self.stop_flag.is_set() and time.monotonic() < deadline:
            k = self.rng.choice(self.keys)
            seq += 1
            try:
                if self.rc.set(k, seq):
                    self.acked[k] = seq
                    self.writes += 1
                if self.acked:
                    r = self.rng.choice(list(self.acked)[-200:])
                    got = self.rc.get(r)
                    self.reads += 1
                    if got != str(self.acked[r]):
                        self.mismatches.append("%s: read %r, acknowledged %d"
                                               % (r, got, self.acked[r]))
            except Exception as e:  # noqa: BLE001 - counted: the test fails on any
                self.errors.append("%s: %s" % (type(e).__name__, e))
                time.sleep(0.05)
            time.sleep(0.001)

    def stop(self) -> None:
        self.stop_flag.set()
        self.thread.join(60)
        assert not self.thread.is_alive()

    def verify(self, cl: Cluster) -> int:
        rc = cl.cluster_client()
        try:
            keys = list(self.acked)
            got = rc.mget_nonatomic(keys)
        finally:
            rc.close()
        lost = [(k, v, self.acked[k]) for k, v in zip(keys, got) if v != str(self.acked[k])]
        assert not lost, "%d acknowledged writes do not read back: %s" % (len(lost), lost[:5])
        return len(keys)


class Benchmark:
    """redis-benchmark --cluster SET/GET until stopped; its output is checked."""

    def __init__(self, port: int) -> None:
        self.p = subprocess.Popen(
            ["redis-benchmark", "--cluster", "-h", "127.0.0.1", "-p", str(port), "-c", "4",
             "-n", "100000000", "-t", "set,get", "-r", "100000", "-q"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def stop(self) -> str:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
        try:
            out, _ = self.p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, _ = self.p.communicate(timeout=10)
        return out


LIVE_FORM = os.environ.get("PYNODE_LIVE_FORM", "short")
if LIVE_FORM not in ("short", "long"):
    raise ValueError("PYNODE_LIVE_FORM must be short or long, not %r" % LIVE_FORM)


def test_live_reshard_rebalance_add_and_remove_a_primary():
    long_form = LIVE_FORM == "long"
    first_move = 2000 if long_form else 500
    with Cluster(primaries=3, replicas=1) as cl:
        cl.wait_replicas_synced()
        ledger = Ledger(cl).start()
        bench = Benchmark(cl.ports[0])
        try:
            deadline = time.monotonic() + 30
            while ledger.writes < 200 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert ledger.writes >= 200, ledger.errors[:5]
            i = ids(cl)
            a, b = cl.primary_ports()[:2]
            h = "127.0.0.1:%d" % a
            before = slot_counts(cl)
            cli("reshard", h, "--cluster-from", i[a], "--cluster-to", i[b],
                "--cluster-slots", str(first_move), "--cluster-yes", "--cluster-pipeline", "50")
            cl.wait_agree()
            assert slot_counts(cl)[b] == before[b] + first_move
            cli("rebalance", h, "--cluster-pipeline", "50")
            cl.wait_agree()
            assert all(abs(n - 16384 / 3) <= 3 for n in slot_counts(cl).values())
            new = cl.add_node()
            cli("add-node", "127.0.0.1:%d" % new.port, h)
            cl.wait_ok()          # a new primary says CLUSTERDOWN for its first seconds
            cl.wait_agree()
            nid = new.call("CLUSTER", "MYID")
            if long_form:
                cli("rebalance", h, "--cluster-use-empty-masters", "--cluster-pipeline", "50")
                want = 4096
            else:
                cli("reshard", h, "--cluster-from", "all", "--cluster-to", nid,
                    "--cluster-slots", "300", "--cluster-yes", "--cluster-pipeline", "50")
                want = 300
            cl.wait_agree()
            counts = slot_counts(cl)
            assert len(counts) == 4 and abs(counts[new.port] - want) <= 3, counts
            cli("rebalance", h, "--cluster-weight", "%s=0" % nid, "--cluster-pipeline", "50")
            cl.wait_agree()
            assert slot_counts(cl).get(new.port, 0) == 0
            cli("del-node", h, nid)
            cl.remove_node(new.port)
            cl.wait_ok()
            res = cl.wait_agree()
            assert len(re.findall(r"M: [0-9a-f]{40} ", res.stdout)) == 3
            # a little more traffic on the final layout
            target = ledger.writes + 100
            deadline = time.monotonic() + 30
            while ledger.writes < target and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            ledger.stop()
            out = bench.stop()
        assert not ledger.errors, "client errors: %s" % ledger.errors[:10]
        assert not ledger.mismatches, ledger.mismatches[:10]
        checked = ledger.verify(cl)
        assert checked > 100
        errors = [line for line in out.splitlines()
                  if "rror" in line and "configuration changed" not in line]
        assert not errors, "redis-benchmark errors:\n" + "\n".join(errors[:10])
        assert re.search(r"(SET|GET): rps=", out) or re.search(r"(SET|GET): [\d.]+ requests", out)
        print("ledger: %d writes, %d reads, %d keys checked" % (
            ledger.writes, ledger.reads, checked))


# ------------------------------------------------------------------ kill -9 mid-reshard
SLOTS_TO_MOVE = 120
KEYS_PER_SLOT = 40


def _load(cl: Cluster, src: int) -> tuple[list[int], dict[str, str]]:
    slots = sorted(s for n in cl.live_node().nodes() if n["port"] == src for s in n["slots"])
    slots = slots[:SLOTS_TO_MOVE]
    data = {}
    conn = redis.Redis(port=src)
    pipe = conn.pipeline(transaction=False)
    for s in slots:
        tag = key_for_slot(s)
        for j in range(KEYS_PER_SLOT):
            k = "%s:%d" % (tag, j)
            data[k] = "v%d-%d" % (s, j)
            pipe.set(k, data[k])
    pipe.execute()
    conn.close()
    return slots, data


def _check_once_everywhere(cl: Cluster, data: dict[str, str]) -> None:
    rc = cl.cluster_client()
    try:
        keys = list(data)
        got = rc.mget_nonatomic(keys)
    finally:
        rc.close()
    bad = [(k, v) for k, v in zip(keys, got) if v != data[k]]
    assert not bad, "%d keys lost or wrong: %s" % (len(bad), bad[:5])
    total = sum(redis.Redis(port=p).dbsize() for p, n in slot_counts(cl).items() if n)
    assert total == len(data), "keys in more than one place: %d stored, %d written" % (
        total, len(data))


@pytest.mark.parametrize("victim", ["source", "target"])
def test_kill_during_reshard_then_fix(victim):
    extra = ["--appendonly", "yes", "--appendfsync", "always",
             "--enable-debug-command", "local"]
    with Cluster(primaries=3, replicas=0, extra=extra) as cl:
        i = ids(cl)
        src, dst = cl.ports[0], cl.ports[1]
        slots, data = _load(cl, src)
        h = "127.0.0.1:%d" % cl.ports[2]
        reshard = subprocess.Popen(
            ["redis-cli", "--cluster", "reshard", h, "--cluster-from", i[src],
             "--cluster-to", i[dst], "--cluster-slots", str(SLOTS_TO_MOVE), "--cluster-yes",
             "--cluster-pipeline", "10"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        try:
            # kill once a few slots have moved, mid-way
            target = redis.Redis(port=dst)
            deadline = time.monotonic() + 120
            moved = 0
            while time.monotonic() < deadline and reshard.poll() is None:
                moved = sum(1 for s in slots[:SLOTS_TO_MOVE // 2]
                            if target.execute_command("CLUSTER", "COUNTKEYSINSLOT", s))
                if moved >= 10:
                    break
                time.sleep(0.02)
            assert moved >= 10 and reshard.poll() is None, "the reshard ended too early"
            port = src if victim == "source" else dst
            node = cl.node_by_port(port)
            node.proc.kill(signal.SIGKILL)
            reshard.wait(timeout=120)
        finally:
            if reshard.poll() is None:
                reshard.kill()
            reshard.communicate(timeout=30)
        node.proc.start(wait=False)
        wait_ping(port, timeout=30)
        # fix may need more than one pass: each finishes what the previous left
        deadline = time.monotonic() + 180
        while True:
            out = run(["redis-cli", "--cluster", "fix", h, "--cluster-yes"], 300,
                      input="yes\n")
            check = cl.check()
            if check.returncode == 0 and "[WARNING]" not in check.stdout and \
                    "All nodes agree" in check.stdout:
                break
            assert time.monotonic() < deadline, "fix did not converge:\n%s\n%s" % (
                out.stdout[-3000:], check.stdout[-3000:])
            time.sleep(1)
        cl.wait_ok(timeout=60)
        cl.wait_agree()
        _check_once_everywhere(cl, data)
        # and the cluster can finish the move it was asked for
        cli("reshard", h, "--cluster-from", i[src], "--cluster-to", i[dst],
            "--cluster-slots", "10", "--cluster-yes")
        cl.wait_agree()
        _check_once_everywhere(cl, data)
