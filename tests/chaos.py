"""Chaos harness: a 3+3 cluster under a writer with a ledger of acknowledged writes,
and the faults done to it (kill -9, SIGSTOP/SIGCONT, restart, CLUSTER FAILOVER).

Used by tests/test_chaos.py (short form, default suite) and tests/chaos_long.py
(long form, ``make chaos``).  The same code drives redis-server 7.0 and pynode
(``PYNODE_CLUSTER_SERVER=redis|pynode``, see tests/cluster_helpers.py): the harness
was proven against redis-server first.

Vocabulary
----------
write        one logical write: ``SET chaos:<i> s<seq>``; ``seq`` grows by one per
             write, so per key the values only go up (single writer thread).
batch        a few writes on distinct keys, grouped by the primary that owns each
             key's slot (redis-py RedisCluster's slot map, refreshed with its
             NodesManager.initialize() after an error) and sent to that primary on
             the writer's ONE connection to it: the SETs pipelined, their replies
             read (the time of an OK is taken here), then ``WAIT 1 <ms>`` on the
             same connection, so WAIT covers exactly those SETs.
acknowledged a write whose SET answered OK and whose pipeline's ``WAIT 1`` answered
             >= 1 (a replica has it).  Only those go into the ledger ``acked``.
ok           SET answered OK (acknowledged or not).
retried      the SET got MOVED / ASK / TRYAGAIN / CLUSTERDOWN / LOADING / READONLY /
             MASTERDOWN or a connection error / timeout: the writer refreshes the slot
             map and sends the same write (same value) again, for at most
             ``retry_window`` seconds.
failed       a write the client GAVE UP on: still retried when ``retry_window``
             expired, or any other error (never retried).  Writes still pending when
             the writer is stopped are "abandoned", not failed.
lost         an acknowledged write that does not read back: the key's value read
             from the current primaries is missing or older (smaller seq) than the
             last acknowledged one.  A value newer than acknowledged is fine (an
             unacknowledged write may land); a value never sent is a "phantom".
"""

from __future__ import annotations

import binascii
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import redis
from redis.cluster import ClusterNode, RedisCluster

from tests.cluster_helpers import (NODE_TIMEOUT_MS, SLOTS, Cluster, backend, free_ports,
                                   parse_info, parse_nodes)
from tests.helpers import wait_ping

# The chaos clusters use their own port range.  Bus ports are +10000 and must stay
# below the kernel's ephemeral range (32768 here), hence 22767 and not 22999.
CHAOS_PORTS = (21000, 22767)

RETRYABLE = (redis.exceptions.MovedError, redis.exceptions.AskError,
             redis.exceptions.TryAgainError, redis.exceptions.ClusterDownError,
             redis.exceptions.BusyLoadingError, redis.exceptions.ReadOnlyError,
             redis.exceptions.MasterDownError, redis.exceptions.ConnectionError,
             redis.exceptions.TimeoutError)


def error_kind(e: BaseException) -> str:
    if isinstance(e, redis.exceptions.MovedError):
        return "MOVED"
    if isinstance(e, redis.exceptions.AskError):
        return "ASK"
    if isinstance(e, redis.exceptions.TryAgainError):
        return "TRYAGAIN"
    if isinstance(e, redis.exceptions.ClusterDownError):
        return "CLUSTERDOWN"
    if isinstance(e, redis.exceptions.BusyLoadingError):
        return "LOADING"
    if isinstance(e, redis.exceptions.ReadOnlyError):
        return "READONLY"
    if isinstance(e, redis.exceptions.MasterDownError):
        return "MASTERDOWN"
    if isinstance(e, redis.exceptions.TimeoutError):
        return "timeout"
    if isinstance(e, redis.exceptions.ConnectionError):
        return "connection"
    return "other:%s" % (str(e)[:80],)


def keyslot(key: str) -> int:
    return binascii.crc_hqx(key.encode(), 0) & (SLOTS - 1)


class ChaosError(AssertionError):
    """A bounded wait ran out or an invariant broke; the message has diagnostics."""


# ====================================================================== cluster


class ChaosCluster:
    """A cluster (tests/cluster_helpers.Cluster) plus the faults and the checks."""

    def __init__(self, primaries: int = 3, replicas: int = 1, server: str | None = None,
                 node_timeout: int = NODE_TIMEOUT_MS, port_range=CHAOS_PORTS,
                 extra: list[str] | None = None) -> None:
        self.server = server or backend()
        ports = free_ports(primaries * (1 + replicas), *port_range)
        self.c = Cluster(primaries=primaries, replicas=replicas, server=self.server,
                         node_timeout=node_timeout, extra=extra, ports=ports)
        self.node_timeout = node_timeout
        self.stopped: set[int] = set()      # SIGSTOPped ports
        self.writer: "Writer | None" = None  # for diagnostics

    # -- life cycle ---------------------------------------------------------

    def up(self, timeout: float = 90) -> "ChaosCluster":
        self.c.up(timeout=timeout)
        try:
            self.wait_healthy(timeout=timeout)
        except BaseException:
            self.cleanup()
            raise
        return self

    def cleanup(self) -> None:
        for port in list(self.stopped):
            self.cont(port)
        self.c.cleanup()

    def __enter__(self) -> "ChaosCluster":
        return self.up()

    def __exit__(self, *exc) -> None:
        self.cleanup()

    # -- nodes --------------------------------------------------------------

    @property
    def ports(self) -> list[int]:
        return list(self.c.ports)

    @property
    def n(self) -> int:
        return self.c.n

    def node(self, port: int):
        return self.c.node_by_port(port)

    def live_ports(self) -> list[int]:
        """Running and not SIGSTOPped."""
        return [n.port for n in self.c.nodes if n.alive() and n.port not in self.stopped]

    def call(self, port: int, *args, timeout: float = 2.0):
        return self.node(port).call(*args, timeout=timeout)

    def view(self, port: int, timeout: float = 2.0) -> list[dict]:
        return parse_nodes(self.call(port, "CLUSTER", "NODES", timeout=timeout))

    def topology(self, port: int | None = None) -> dict:
        """As one live node sees it: {"owner": {slot: port}, "primaries": {port: set
        of slots}, "master_of": {replica port: primary port}, "ids": {port: id}}."""
        port = port or self.live_ports()[0]
        nodes = self.view(port)
        by_id = {n["id"]: n for n in nodes}
        prim = {n["port"]: set(n["slots"]) for n in nodes
                if "master" in n["flags"] and n["slots"]}
        owner = {s: p for p, slots in prim.items() for s in slots}
        master_of = {n["port"]: by_id[n["master"]]["port"] for n in nodes
                     if "slave" in n["flags"] and n["master"] in by_id}
        return {"owner": owner, "primaries": prim, "master_of": master_of,
                "ids": {n["port"]: n["id"] for n in nodes}}

    def roles(self) -> dict[int, str]:
        """{port: "master" | "slave -> <primary port>"} as the first live node sees it."""
        t = self.topology()
        out = {p: "master" for p in t["primaries"]}
        out.update({p: "slave -> %d" % m for p, m in t["master_of"].items()})
        return out

    def random_primary(self, rng: random.Random | None = None) -> int:
        return (rng or random).choice(sorted(self.topology()["primaries"]))

    def replica_of(self, primary: int) -> int:
        return next(r for r, m in sorted(self.topology()["master_of"].items())
                    if m == primary)

    # -- faults -------------------------------------------------------------

    def kill(self, port: int) -> float:
        """kill -9; returns the monotonic time of the signal."""
        node = self.node(port)
        self.stopped.discard(port)
        p = node.proc.proc
        t = time.monotonic()
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
        return t

    def stop(self, port: int) -> float:
        """SIGSTOP (the process freezes; its sockets stay open)."""
        t = time.monotonic()
        self.node(port).proc.proc.send_signal(signal.SIGSTOP)
        self.stopped.add(port)
        return t

    def cont(self, port: int) -> float:
        t = time.monotonic()
        p = self.node(port).proc.proc
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGCONT)
        self.stopped.discard(port)
        return t

    def restart(self, port: int, timeout: float = 30) -> None:
        """Start a killed node again from its directory (its nodes-<port>.conf)."""
        node = self.node(port)
        assert not node.alive(), "node %d is still running" % port
        fh = getattr(node.proc, "logfh", None)
        if fh:
            fh.close()
        with open(node.proc.logpath, "ab") as fh:
            fh.write(b"\n==== chaos: restarted ====\n")
        node.start()
        try:
            wait_ping(port, timeout=timeout)
        except TimeoutError:
            raise ChaosError("node %d did not restart\n%s" % (port, self.diagnostics()))

    # -- checks (each returns a list of problems; empty = good) --------------

    def serving_problems(self, down: set[int] = frozenset()) -> list[str]:
        """Every live node (ports in `down` excluded) says cluster_state:ok, and in its
        CLUSTER NODES every slot has exactly one primary, a live one not flagged fail;
        all live nodes agree about the owner of every slot."""
        out: list[str] = []
        maps = {}
        for port in self.live_ports():
            if port in down:
                continue
            try:
                info = parse_info(self.call(port, "CLUSTER", "INFO"))
                nodes = self.view(port)
            except Exception as e:  # noqa: BLE001 - a reason to wait
                out.append("%d: %r" % (port, e))
                continue
            if info.get("cluster_state") != "ok":
                out.append("%d: cluster_state:%s" % (port, info.get("cluster_state")))
            owners: dict[int, list[str]] = {}
            for n in nodes:
                if "master" not in n["flags"]:
                    if n["slots"]:
                        out.append("%d: replica %d lists slots" % (port, n["port"]))
                    continue
                for s in n["slots"]:
                    owners.setdefault(s, []).append(n["id"])
                if n["slots"] and (n["flags"] & {"fail", "fail?"} or n["port"] in down
                                   or n["port"] not in self.live_ports()):
                    out.append("%d: slots owned by %d which is %s" % (
                        port, n["port"], ",".join(sorted(n["flags"]))
                        if n["flags"] & {"fail", "fail?"} else "down"))
            unowned = SLOTS - len(owners)
            if unowned:
                out.append("%d: %d slots without a primary" % (port, unowned))
            multi = [s for s, o in owners.items() if len(o) > 1]
            if multi:
                out.append("%d: %d slots with several primaries (e.g. %d: %s)"
                           % (port, len(multi), multi[0], owners[multi[0]]))
            maps[port] = sorted((s, o[0]) for s, o in owners.items())
        if len({repr(m) for m in maps.values()}) > 1:
            out.append("live nodes disagree about slot owners")
        return out

    def health_problems(self) -> list[str]:
        """Fully healthy: every node running, all the checks of serving_problems, every
        node known and linked by every other with no fail/handshake flags, the
        configured number of primaries each with its replicas, replicas in sync."""
        out = []
        dead = [n.port for n in self.c.nodes if not n.alive()]
        if dead or self.stopped:
            return ["not running: %s, stopped: %s" % (dead, sorted(self.stopped))]
        out += self.serving_problems()
        if out:
            return out
        views = {}
        for port in self.ports:
            try:
                nodes = self.view(port)
                info = parse_info(self.call(port, "INFO", "replication"))
            except Exception as e:  # noqa: BLE001
                out.append("%d: %r" % (port, e))
                continue
            if len(nodes) != self.n:
                out.append("%d: knows %d nodes, want %d" % (port, len(nodes), self.n))
            bad = ["%d:%s:%s" % (n["port"], ",".join(sorted(n["flags"])), n["link"])
                   for n in nodes if n["flags"] & {"fail", "fail?", "handshake", "noaddr"}
                   or n["link"] != "connected"]
            if bad:
                out.append("%d: sees %s" % (port, " ".join(bad)))
            me = next(n for n in nodes if "myself" in n["flags"])
            if "slave" in me["flags"] and info.get("master_link_status") != "up":
                out.append("%d: replica with master_link_status:%s"
                           % (port, info.get("master_link_status")))
            views[port] = sorted((n["id"], "slave" in n["flags"], n["master"]) for n in nodes)
        if len({repr(v) for v in views.values()}) > 1:
            out.append("nodes disagree about roles")
        if out:
            return out
        t = self.topology()
        if len(t["primaries"]) != self.c.primaries:
            out.append("%d primaries with slots, want %d"
                       % (len(t["primaries"]), self.c.primaries))
        for p in t["primaries"]:
            k = sum(1 for m in t["master_of"].values() if m == p)
            if k != self.c.replicas:
                out.append("primary %d has %d replicas, want %d" % (p, k, self.c.replicas))
        return out

    def replica_problems(self, port: int, primary: int | None = None) -> list[str]:
        """`port` is a replica (of `primary` if given) in every live node's view,
        including its own, and its replication link is up."""
        out = []
        for p in self.live_ports():
            try:
                nodes = self.view(p)
            except Exception as e:  # noqa: BLE001
                out.append("%d: %r" % (p, e))
                continue
            by_id = {n["id"]: n for n in nodes}
            me = next((n for n in nodes if n["port"] == port), None)
            if me is None:
                out.append("%d does not know %d" % (p, port))
                continue
            if "slave" not in me["flags"]:
                out.append("%d sees %d as %s" % (p, port, ",".join(sorted(me["flags"]))))
                continue
            m = by_id.get(me["master"])
            if primary is not None and (m is None or m["port"] != primary):
                out.append("%d sees %d replicating %s, want %d"
                           % (p, port, m and m["port"], primary))
        try:
            info = parse_info(self.call(port, "INFO", "replication"))
            if info.get("role") != "slave" or info.get("master_link_status") != "up":
                out.append("%d: role:%s master_link_status:%s" % (
                    port, info.get("role"), info.get("master_link_status")))
        except Exception as e:  # noqa: BLE001
            out.append("%d: %r" % (port, e))
        return out

    # -- bounded waits --------------------------------------------------------

    def wait_for(self, what: str, problems, timeout: float, interval: float = 0.1) -> float:
        """Poll problems() until it returns []; returns the monotonic time it did.
        On timeout raise ChaosError with the last problems and the diagnostics."""
        deadline = time.monotonic() + timeout
        last = ["never checked"]
        while True:
            last = problems()
            if not last:
                return time.monotonic()
            if time.monotonic() > deadline:
                raise ChaosError("%s: not reached after %.1fs (%s):\n  %s\n%s" % (
                    what, timeout, self.server, "\n  ".join(last), self.diagnostics()))
            time.sleep(interval)

    def wait_serving(self, down: set[int] = frozenset(), timeout: float = 30) -> float:
        return self.wait_for("every slot served (down: %s)" % sorted(down),
                             lambda: self.serving_problems(down), timeout)

    def wait_healthy(self, timeout: float = 30) -> float:
        return self.wait_for("cluster healthy", self.health_problems, timeout, 0.2)

    def wait_replica(self, port: int, primary: int | None = None,
                     timeout: float = 30) -> float:
        return self.wait_for("%d is a replica%s" % (port, "" if primary is None else
                                                    " of %d" % primary),
                             lambda: self.replica_problems(port, primary), timeout)

    # -- diagnostics ----------------------------------------------------------

    def diagnostics(self, log_lines: int = 25) -> str:
        parts = []
        if self.writer is not None:
            parts.append("==== writer: %s" % self.writer.summary())
            parts.append("last errors: %s" % list(self.writer.recent_errors)[-10:])
        for node in self.c.nodes:
            state = ("SIGSTOPPED" if node.port in self.stopped else "alive") \
                if node.alive() else "exited rc=%s" % (
                    node.proc.proc.returncode if node.proc.proc else "?")
            parts.append("==== node %d (%s, %s) ====" % (node.port, self.server, state))
            if node.alive() and node.port not in self.stopped:
                for what in (("CLUSTER", "INFO"), ("CLUSTER", "NODES")):
                    try:
                        txt = node.call(*what, timeout=1.5)
                        if what[1] == "INFO":
                            txt = " ".join(ln for ln in txt.splitlines()
                                           if ln.startswith(("cluster_state", "cluster_size",
                                                             "cluster_current_epoch",
                                                             "cluster_my_epoch",
                                                             "cluster_known")))
                        parts.append("-- %s:\n%s" % (" ".join(what), txt))
                    except Exception as e:  # noqa: BLE001
                        parts.append("-- %s: %r" % (" ".join(what), e))
            parts.append("-- log tail:\n" + node.log_tail(log_lines))
        return "\n".join(parts)

    # -- clients --------------------------------------------------------------

    def cluster_client(self, **kw) -> RedisCluster:
        kw.setdefault("socket_timeout", 2)
        kw.setdefault("socket_connect_timeout", 2)
        kw.setdefault("decode_responses", True)
        kw.setdefault("require_full_coverage", False)
        nodes = [ClusterNode("127.0.0.1", p) for p in self.live_ports()]
        return RedisCluster(startup_nodes=nodes, **kw)


# ====================================================================== writer


@dataclass
class Stats:
    sent: int = 0           # SETs sent, retries included
    writes: int = 0         # logical writes started
    ok: int = 0             # logical writes whose SET answered OK
    acked: int = 0          # ... and WAIT 1 >= 1
    unacked: int = 0        # OK but WAIT 1 answered 0
    retries: int = 0        # re-sends after a retryable error
    failed: int = 0         # given up
    abandoned: int = 0      # pending when the writer was stopped
    batches: int = 0
    errors: dict = field(default_factory=dict)   # kind -> count


class Writer:
    """A bounded background writer through redis-py RedisCluster's slot map, with a
    ledger of acknowledged writes (see the module docstring for the vocabulary)."""

    def __init__(self, cluster: ChaosCluster, keys: int = 2000, batch: int = 24,
                 wait_ms: int = 300, retry_window: float = 15.0, max_seconds: float = 600,
                 max_writes: int = 5_000_000, pause: float = 0.005,
                 socket_timeout: float = 1.0, seed: int | None = None,
                 function: str | None = None) -> None:
        self.cluster = cluster
        # write through FCALL <function> 1 <key> <value> instead of SET
        self.function = function
        self.keys = ["chaos:%d" % i for i in range(keys)]
        self.slot_of = {k: keyslot(k) for k in self.keys}
        self.batch = min(batch, keys)
        self.wait_ms = wait_ms
        self.retry_window = retry_window
        self.max_seconds = max_seconds
        self.max_writes = max_writes
        self.pause = pause
        self.socket_timeout = socket_timeout
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.acked: dict[str, int] = {}      # key -> highest acknowledged seq
        self.okd: dict[str, int] = {}        # key -> highest seq answered OK
        self.attempted: dict[str, int] = {}  # key -> highest seq ever sent
        self.failures: list[tuple[str, int, str]] = []   # (key, seq, last error)
        self.error_log: list[tuple[float, str, int]] = []  # (time, kind, port)
        self.recent_errors: list = []
        self.stats = Stats()
        self.seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watches: dict[str, tuple] = {}
        self.first_ok: dict[str, float] = {}
        self.crash: BaseException | None = None
        self.started = 0.0
        self._last_refresh = 0.0
        self.rc: RedisCluster | None = None
        self._conns: dict[str, redis.Connection] = {}

    # -- control ----------------------------------------------------------------

    def start(self) -> "Writer":
        self.rc = self.cluster.cluster_client(socket_timeout=self.socket_timeout,
                                              socket_connect_timeout=self.socket_timeout)
        self.cluster.writer = self
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="chaos-writer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop and join (bounded: a pipeline blocks at most socket_timeout, and a
        topology refresh a few of them)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout or (10 + 4 * self.socket_timeout * self.cluster.n))
            if self._thread.is_alive():
                raise ChaosError("writer thread did not stop")
            self._thread = None
        for name in list(self._conns):
            self._drop_conn(name)
        if self.rc is not None:
            try:
                self.rc.close()
            except Exception:  # noqa: BLE001
                pass
            self.rc = None
        if self.crash is not None:
            raise ChaosError("writer crashed: %r" % (self.crash,)) from self.crash

    def __enter__(self) -> "Writer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def watch(self, name: str, slots, since: float | None = None,
              not_from: int | None = None) -> None:
        """Remember the time of the first OK write on any of `slots` after `since`,
        answered by a node other than `not_from` (a reply the victim sent just before
        the signal landed does not count)."""
        with self.lock:
            self._watches[name] = (since if since is not None else time.monotonic(),
                                   frozenset(slots), not_from)
            self.first_ok.pop(name, None)

    def wait_first_ok(self, name: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                t = self.first_ok.get(name)
            if t is not None:
                return t
            if not self.alive():
                break
            time.sleep(0.05)
        raise ChaosError("no successful write on the watched slots (%s) within %.0fs\n%s"
                         % (name, timeout, self.cluster.diagnostics()))

    def wait_progress(self, acked: int = 1, timeout: float = 30) -> None:
        """Wait (bounded) until `acked` more writes were acknowledged."""
        base = self.stats.acked
        deadline = time.monotonic() + timeout
        while self.stats.acked - base < acked:
            if time.monotonic() > deadline or not self.alive():
                raise ChaosError("writer made no progress (%d/%d acknowledged writes in "
                                 "%.0fs; alive=%s)\n%s" % (
                                     self.stats.acked - base, acked, timeout, self.alive(),
                                     self.cluster.diagnostics()))
            time.sleep(0.05)

    def errors_since(self, t: float) -> list[tuple[float, str, int]]:
        with self.lock:
            return [e for e in self.error_log if e[0] >= t]

    def summary(self) -> str:
        s = self.stats
        return ("%.1fs: %d writes, %d ok (%d acknowledged, %d not), %d retries, %d failed,"
                " %d abandoned, errors %s" % (time.monotonic() - self.started, s.writes,
                                             s.ok, s.acked, s.unacked, s.retries, s.failed,
                                             s.abandoned, dict(sorted(s.errors.items()))))

    # -- the thread ---------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # noqa: BLE001 - reported by stop()
            self.crash = e

    def _loop(self) -> None:
        deadline = self.started + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline \
                and self.stats.writes < self.max_writes:
            pending: dict[str, int] = {}
            for k in self.rng.sample(self.keys, self.batch):
                self.seq += 1
                pending[k] = self.seq
            with self.lock:
                for k, seq in pending.items():
                    self.attempted[k] = seq
                self.stats.writes += len(pending)
                self.stats.batches += 1
            first = time.monotonic()
            last_err: dict[str, str] = {}
            while pending:
                self._send(pending, last_err)
                if not pending:
                    break
                if self._stop.is_set():
                    with self.lock:
                        self.stats.abandoned += len(pending)
                    break
                if time.monotonic() - first > self.retry_window:
                    with self.lock:
                        self.stats.failed += len(pending)
                        self.failures.extend((k, s, last_err.get(k, "?"))
                                             for k, s in pending.items())
                    break
                time.sleep(0.02)
                self._refresh()
                with self.lock:
                    self.stats.retries += len(pending)
            if self.pause:
                time.sleep(self.pause)

    def _refresh(self) -> None:
        """Reload the slot map (redis-py's NodesManager.initialize, ~2 ms), at most
        every 50 ms."""
        now = time.monotonic()
        if now - self._last_refresh < 0.05:
            return
        self._last_refresh = now
        try:
            self.rc.nodes_manager.initialize()
        except Exception as e:  # noqa: BLE001 - retried on the next error
            self._error("refresh:" + error_kind(e), 0)

    def _error(self, kind: str, port: int) -> None:
        t = time.monotonic()
        with self.lock:
            self.stats.errors[kind] = self.stats.errors.get(kind, 0) + 1
            self.error_log.append((t, kind, port))
            self.recent_errors.append((round(t - self.started, 2), kind, port))
            if len(self.recent_errors) > 50:
                del self.recent_errors[:25]

    def _send(self, pending: dict[str, int], last_err: dict[str, str]) -> None:
        """One attempt for every pending write: one round trip of SETs per primary,
        then WAIT 1 on the same connection."""
        groups: dict[tuple, list[str]] = {}
        nodes = {}
        for k in pending:
            try:
                node = self.rc.nodes_manager.get_node_from_slot(self.slot_of[k])
            except Exception as e:  # noqa: BLE001 - slot not covered in the map
                last_err[k] = "no node for slot: %r" % (e,)
                self._error("slotmap", 0)
                self._last_refresh = 0.0
                continue
            groups.setdefault(node.name, []).append(k)
            nodes[node.name] = node
        for name, keys in groups.items():
            node = nodes[name]
            port = int(node.port)
            conn = self._conn(node)
            with self.lock:
                self.stats.sent += len(keys)
            done = []
            try:
                # SET ... SET in one write, their replies, then WAIT 1 on the same
                # connection: the OK time is the SET reply's, not WAIT's.
                if self.function is None:
                    cmds = [("SET", k, "s%d" % pending[k]) for k in keys]
                else:
                    cmds = [("FCALL", self.function, 1, k, "s%d" % pending[k]) for k in keys]
                conn.send_packed_command(conn.pack_commands(cmds))
                replies = []
                for _ in keys:
                    try:
                        replies.append(conn.read_response())
                    except redis.exceptions.ResponseError as e:
                        replies.append(e)
                t = time.monotonic()
                for k, rep in zip(keys, replies):
                    if isinstance(rep, Exception):
                        kind = error_kind(rep)
                        self._error(kind, port)
                        last_err[k] = kind
                        if not isinstance(rep, RETRYABLE):
                            self._give_up([k], pending, kind)
                        elif isinstance(rep, redis.exceptions.MovedError):
                            self._last_refresh = 0.0
                    else:
                        done.append(k)
                waited = 0
                if done:
                    conn.send_command("WAIT", 1, self.wait_ms)
                    try:
                        waited = conn.read_response()
                    except redis.exceptions.ResponseError as e:
                        self._error("WAIT:" + error_kind(e), port)
            except Exception as e:  # noqa: BLE001 - connection lost: outcome unknown
                kind = error_kind(e)
                self._error(kind, port)
                for k in keys:
                    last_err[k] = kind
                if not isinstance(e, RETRYABLE):
                    self._give_up(keys, pending, kind)
                if kind != "timeout":
                    self._last_refresh = 0.0
                self._drop_conn(name)
                if done:
                    # SETs answered OK whose WAIT did not come back: ok, unacknowledged
                    self._record(done, pending, False, t, port)
                continue
            replicated = isinstance(waited, int) and waited >= 1
            if done:
                self._record(done, pending, replicated, t, port)

    def _record(self, done, pending, replicated: bool, t: float, port: int) -> None:
        with self.lock:
            for k in done:
                seq = pending.pop(k)
                slot = self.slot_of[k]
                self.stats.ok += 1
                if seq > self.okd.get(k, 0):
                    self.okd[k] = seq
                if replicated:
                    self.stats.acked += 1
                    if seq > self.acked.get(k, 0):
                        self.acked[k] = seq
                else:
                    self.stats.unacked += 1
                for name_, (since, slots, not_from) in self._watches.items():
                    if name_ not in self.first_ok and t >= since and slot in slots \
                            and port != not_from:
                        self.first_ok[name_] = t

    def _conn(self, node) -> redis.Connection:
        """One connection per node, owned by the writer thread."""
        conn = self._conns.get(node.name)
        if conn is None:
            conn = redis.Connection(host=node.host, port=int(node.port),
                                    socket_timeout=self.socket_timeout,
                                    socket_connect_timeout=self.socket_timeout,
                                    decode_responses=True)
            self._conns[node.name] = conn
        return conn

    def _drop_conn(self, name: str) -> None:
        conn = self._conns.pop(name, None)
        if conn is not None:
            try:
                conn.disconnect()
            except Exception:  # noqa: BLE001
                pass

    def _give_up(self, keys, pending, kind) -> None:
        with self.lock:
            for k in keys:
                if k in pending:
                    self.failures.append((k, pending.pop(k), kind))
                    self.stats.failed += 1

    # -- snapshots ------------------------------------------------------------------

    def snapshot(self) -> tuple[dict, dict, dict]:
        with self.lock:
            return dict(self.acked), dict(self.okd), dict(self.attempted)


# ====================================================================== checks


@dataclass
class Verification:
    checked: int
    lost: list          # (key, value read, acknowledged seq)
    phantom: list       # (key, value read, highest seq sent)
    elapsed: float

    def ok(self) -> bool:
        return not self.lost and not self.phantom

    def __str__(self) -> str:
        return "%d keys checked in %.1fs: %d lost %s, %d phantom %s" % (
            self.checked, self.elapsed, len(self.lost), self.lost[:10], len(self.phantom),
            self.phantom[:10])


@contextmanager
def ledger_writer(cl: ChaosCluster, seed: int, keys: int = 1500):
    """A started Writer on a healthy cluster that has acknowledged writes
    already; stopped (and summarized) on exit."""
    cl.wait_healthy(timeout=30)
    w = Writer(cl, keys=keys, max_seconds=150, seed=seed)
    w.start()
    try:
        w.wait_progress(acked=50, timeout=20)
        yield w
    finally:
        w.stop()
    print("writer:", w.summary())


def read_keys(cluster: ChaosCluster, keys: list[str], timeout: float = 30,
              rc: RedisCluster | None = None) -> dict[str, str | None]:
    """GET every key through redis-py RedisCluster (primaries only), retrying the whole
    read (bounded) while the cluster is moving."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        own = rc is None
        client = rc or cluster.cluster_client()
        try:
            out: dict[str, str | None] = {}
            for i in range(0, len(keys), 1000):
                chunk = keys[i:i + 1000]
                pipe = client.pipeline(transaction=False)
                for k in chunk:
                    pipe.get(k)
                out.update(zip(chunk, pipe.execute()))
            return out
        except Exception as e:  # noqa: BLE001 - retry until the deadline
            last = e
            time.sleep(0.2)
        finally:
            if own:
                client.close()
    raise ChaosError("could not read %d keys back: %r\n%s"
                     % (len(keys), last, cluster.diagnostics()))


def verify(writer: Writer, timeout: float = 30) -> Verification:
    """Read every key the writer ever wrote and compare with the ledger.  Safe while
    the writer runs: acked is taken before the read, attempted after it."""
    t0 = time.monotonic()
    acked, _, _ = writer.snapshot()
    with writer.lock:
        keys = sorted(writer.attempted)
    got = read_keys(writer.cluster, keys, timeout=timeout)
    _, _, attempted = writer.snapshot()
    lost, phantom = [], []
    for k in keys:
        v = got.get(k)
        seq = None
        if v is not None:
            try:
                seq = int(v[1:]) if v.startswith("s") else None
            except ValueError:
                seq = None
            if seq is None or seq > attempted.get(k, 0):
                phantom.append((k, v, attempted.get(k)))
                continue
        a = acked.get(k)
        if a is not None and (seq is None or seq < a):
            lost.append((k, v, a))
    return Verification(len(keys), lost, phantom, time.monotonic() - t0)


def assert_verified(writer: Writer, timeout: float = 30) -> Verification:
    v = verify(writer, timeout)
    if not v.ok():
        raise ChaosError("ledger check failed: %s\nwriter: %s\n%s"
                         % (v, writer.summary(), writer.cluster.diagnostics()))
    return v


# ====================================================================== scenarios
# Each scenario assumes a healthy cluster and a running writer, leaves the cluster
# healthy, and returns a dict of what it measured.  Every wait is bounded and raises
# ChaosError with diagnostics.


def kill_primary_round(cl: ChaosCluster, w: Writer, rng: random.Random | None = None,
                       name: str = "kill") -> dict:
    """kill -9 a random primary; wait until every slot is served (by its replica);
    restart it; wait until it is a replica; check the ledger."""
    nt = cl.node_timeout / 1000
    victim = cl.random_primary(rng)
    topo = cl.topology()
    slots = topo["primaries"][victim]
    heir = cl.replica_of(victim)
    t_kill = cl.kill(victim)
    w.watch(name, slots, since=t_kill, not_from=victim)
    t_served = cl.wait_serving(down={victim}, timeout=15 * nt)
    t_first = w.wait_first_ok(name, timeout=15 * nt)
    after = cl.topology()
    promoted = sorted(p for p, s in after["primaries"].items() if s & slots)
    if promoted != [heir]:
        raise ChaosError("slots of %d now served by %s, want its replica %d\n%s"
                         % (victim, promoted, heir, cl.diagnostics()))
    cl.restart(victim)
    cl.wait_replica(victim, primary=heir, timeout=20 * nt)
    cl.wait_healthy(timeout=15 * nt)
    w.wait_progress(acked=10, timeout=10 * nt)
    v = assert_verified(w)
    return {"victim": victim, "heir": heir, "failover_s": t_first - t_kill,
            "served_s": t_served - t_kill, "checked": v.checked, "lost": len(v.lost)}


def sigstop_primary(cl: ChaosCluster, w: Writer, rng: random.Random | None = None,
                    probe_key: str = "chaos:stale-probe") -> dict:
    """SIGSTOP a primary past node-timeout until its replica took over, SIGCONT it:
    it must come back as a replica and serve no stale writes."""
    nt = cl.node_timeout / 1000
    victim = cl.random_primary(rng)
    slots = cl.topology()["primaries"][victim]
    heir = cl.replica_of(victim)
    # the probe key must live on the victim's slots
    probe = next("%s:{%d}" % (probe_key, i) for i in range(100000)
                 if keyslot(str(i)) in slots)
    t_stop = cl.stop(victim)
    w.watch("sigstop", slots, since=t_stop, not_from=victim)
    cl.wait_serving(down={victim}, timeout=15 * nt)
    t_first = w.wait_first_ok("sigstop", timeout=15 * nt)
    # What the new primary changed counts from here: SETs the victim answered OK
    # just before the stop, whose WAIT the stop cut off, are recorded OK (not
    # acknowledged) only when that WAIT times out, and asynchronous replication
    # may lose them (they may never have reached the replica).
    time.sleep(max(0.0, t_stop + w.socket_timeout + 0.2 - time.monotonic()))
    _, ok0, _ = w.snapshot()
    # let the writer change some of the victim's keys on the new primary
    deadline = time.monotonic() + 10 * nt
    while True:
        _, ok1, _ = w.snapshot()
        changed = {k: s for k, s in ok1.items()
                   if w.slot_of[k] in slots and s > ok0.get(k, 0)}
        if len(changed) >= 20:
            break
        if time.monotonic() > deadline:
            raise ChaosError("writer changed only %d keys on the new primary\n%s"
                             % (len(changed), cl.diagnostics()))
        time.sleep(0.05)
    # resume it and probe it directly, at once: SET + WAIT 1 until it redirects
    t_cont = cl.cont(victim)
    probe_replies = []
    stale_acked = 0
    r = redis.Redis(host="127.0.0.1", port=victim, socket_timeout=2 * nt,
                    decode_responses=True)
    try:
        i = 0
        while time.monotonic() < t_cont + 10 * nt:
            i += 1
            pipe = r.pipeline(transaction=False)
            pipe.set(probe, "stale-%d" % i)
            pipe.execute_command("WAIT", 1, 200)
            try:
                a, b = pipe.execute(raise_on_error=False)
            except Exception as e:  # noqa: BLE001
                probe_replies.append(error_kind(e))
                time.sleep(0.05)
                continue
            if isinstance(a, Exception):
                probe_replies.append(error_kind(a))
                if isinstance(a, redis.exceptions.MovedError):
                    break
            else:
                probe_replies.append("OK/WAIT=%s" % (b,))
                if isinstance(b, int) and b >= 1:
                    stale_acked += 1
            time.sleep(0.02)
    finally:
        r.close()
    stale_accepted = sum(1 for x in probe_replies if x.startswith("OK"))
    if stale_acked:
        raise ChaosError("resumed old primary %d acknowledged %d stale writes: %s\n%s"
                         % (victim, stale_acked, probe_replies, cl.diagnostics()))
    if not probe_replies or probe_replies[-1] != "MOVED":
        raise ChaosError("resumed old primary %d never redirected: %s\n%s"
                         % (victim, probe_replies[-20:], cl.diagnostics()))
    cl.wait_replica(victim, primary=heir, timeout=20 * nt)
    cl.wait_healthy(timeout=15 * nt)
    # a write sent to it now gets MOVED to the new primary
    k = next(iter(changed))
    for key in (k, probe):
        try:
            cl.call(victim, "SET", key, "stale-late")
            raise ChaosError("old primary %d accepted SET %s after rejoining" % (victim, key))
        except redis.exceptions.MovedError as e:
            want = "%d 127.0.0.1:%d" % (keyslot(key.split("{")[1].split("}")[0])
                                        if "{" in key else keyslot(key), heir)
            if str(e) != want:
                raise ChaosError("MOVED %s, want MOVED %s" % (e, want))
    # reads of the keys changed meanwhile, starting at the old primary, follow the
    # redirection to the new values; the probe's stale values are gone
    only_victim = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", victim)],
                               decode_responses=True, socket_timeout=2,
                               require_full_coverage=False)
    try:
        keys = sorted(changed) + [probe]
        got = read_keys(cl, keys, rc=only_victim)
    finally:
        only_victim.close()
    _, _, attempted = w.snapshot()
    stale = [(k, got[k], s) for k, s in changed.items()
             if got[k] is None or not got[k].startswith("s")
             or not s <= int(got[k][1:]) <= attempted[k]]
    if got[probe] is not None:
        stale.append((probe, got[probe], None))
    if stale:
        raise ChaosError("stale values served after failover: %s\n%s"
                         % (stale[:10], cl.diagnostics()))
    # and the old primary's own data was replaced by the new primary's (READONLY)
    def replica_stale():
        rr = redis.Redis(host="127.0.0.1", port=victim, decode_responses=True,
                         socket_timeout=2)
        try:
            rr.execute_command("READONLY")
            vals = [rr.get(k) for k in list(changed)[:20]] + [rr.get(probe)]
        finally:
            rr.close()
        bad = ["%s=%s (want >= s%d)" % (k, v, changed[k])
               for k, v in zip(list(changed)[:20], vals)
               if v is None or not v.startswith("s") or int(v[1:]) < changed[k]]
        if vals[-1] is not None:
            bad.append("%s=%s (want nil)" % (probe, vals[-1]))
        return bad
    cl.wait_for("old primary's data replaced", replica_stale, timeout=10 * nt)
    w.wait_progress(acked=10, timeout=10 * nt)
    v = assert_verified(w)
    return {"victim": victim, "heir": heir, "failover_s": t_first - t_stop,
            "stale_accepted_unacknowledged": stale_accepted,
            "probe_replies": probe_replies[:5] + (["..."] if len(probe_replies) > 5 else []),
            "changed_keys": len(changed), "checked": v.checked}


def kill_replica(cl: ChaosCluster, w: Writer, rng: random.Random | None = None) -> dict:
    """kill -9 a replica: it gets flagged fail, nothing fails over, the writer sees
    no error at all; restarted, it is the same primary's replica again."""
    nt = cl.node_timeout / 1000
    before = cl.roles()
    victim = (rng or random).choice(sorted(p for p, r in before.items() if r != "master"))
    primary = cl.topology()["master_of"][victim]
    owners0 = cl.topology()["owner"]
    t_kill = cl.kill(victim)

    def flagged():
        out = []
        for p in cl.live_ports():
            n = next(x for x in cl.view(p) if x["port"] == victim)
            if "fail" not in n["flags"]:
                out.append("%d sees %d as %s" % (p, victim, ",".join(sorted(n["flags"]))))
        return out
    cl.wait_for("replica %d flagged fail" % victim, flagged, timeout=15 * nt)
    time.sleep(nt)   # room for a wrong election to happen
    problems = cl.serving_problems(down={victim})
    for p in cl.live_ports():
        t = cl.topology(p)
        if t["owner"] != owners0:
            problems.append("%d: slot owners changed" % p)
        roles = {q: r for q, r in cl.roles().items() if q != victim}
        want = {q: r for q, r in before.items() if q != victim}
        if roles != want:
            problems.append("roles changed: %s, were %s" % (roles, want))
    if problems:
        raise ChaosError("after killing replica %d: %s\n%s"
                         % (victim, problems, cl.diagnostics()))
    cl.restart(victim)
    cl.wait_replica(victim, primary=primary, timeout=20 * nt)
    cl.wait_healthy(timeout=15 * nt)
    w.wait_progress(acked=10, timeout=10 * nt)
    errors = w.errors_since(t_kill)
    if errors:
        raise ChaosError("writer saw errors after a replica was killed: %s" % errors[:20])
    if cl.roles() != before:
        raise ChaosError("roles changed: %s, were %s" % (cl.roles(), before))
    v = assert_verified(w)
    return {"victim": victim, "primary": primary, "checked": v.checked}


def manual_failover(cl: ChaosCluster, w: Writer, rng: random.Random | None = None) -> dict:
    """CLUSTER FAILOVER on a replica under load: roles swap, no write given up, none
    lost."""
    nt = cl.node_timeout / 1000
    primary = cl.random_primary(rng)
    replica = cl.replica_of(primary)
    slots = cl.topology()["primaries"][primary]
    failed0 = w.stats.failed
    w.wait_progress(acked=50, timeout=10 * nt)
    t0 = time.monotonic()
    w.watch("manual", slots, since=t0)
    try:
        reply = cl.call(replica, "CLUSTER", "FAILOVER", timeout=5)
    except redis.exceptions.RedisError as e:
        reply = e
    if reply not in (True, "OK", b"OK"):
        raise ChaosError("CLUSTER FAILOVER on replica %d (of %d) replied %r"
                         % (replica, primary, reply))

    def swapped():
        t = cl.topology(replica)
        out = cl.serving_problems()
        if t["primaries"].get(replica) != slots:
            out.append("%d does not own the slots of %d yet" % (replica, primary))
        return out
    t_done = cl.wait_for("manual failover %d -> %d" % (primary, replica), swapped,
                         timeout=15 * nt)
    cl.wait_replica(primary, primary=replica, timeout=15 * nt)
    cl.wait_healthy(timeout=15 * nt)
    w.watch("manual-after", slots, since=time.monotonic())
    w.wait_first_ok("manual-after", timeout=10 * nt)
    w.wait_progress(acked=10, timeout=10 * nt)
    if w.stats.failed != failed0:
        raise ChaosError("writes given up during manual failover: %s\n%s"
                         % (w.failures[-10:], w.summary()))
    errs = w.errors_since(t0)
    v = assert_verified(w)
    return {"primary": primary, "replica": replica, "switch_s": t_done - t0,
            "client_retries": len(errs),
            "errors": sorted({e[1] for e in errs}), "checked": v.checked}


class CpuLoad:
    """One busy-loop process per core (or ``n``) for the duration of a ``with``
    block: the machine a loaded CI runner is.  The processes are killed (and
    reaped) on exit, whatever happened inside."""

    def __init__(self, n: int | None = None) -> None:
        self.n = n or os.cpu_count() or 2
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> "CpuLoad":
        try:
            for _ in range(self.n):
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-c", "while True: pass"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.procs = []


def consecutive_failover(cl: ChaosCluster, victim: int | None = None,
                         timeout: float | None = None) -> dict:
    """Redis's consecutive failover: kill -9 a primary that has two replicas or
    more, wait until one of them serves its slots, then kill -9 that new primary
    too and wait until another of the original replicas serves them.  Returns
    both failover times: ``promoted_s`` (kill -> a replica says role:master) and
    ``failover_s`` (kill -> every live node agrees on a live owner, as the
    harness sees it: on a loaded machine its own polling adds seconds)."""
    nt = cl.node_timeout / 1000
    timeout = timeout or 15 * nt
    topo = cl.topology()
    if victim is None:
        victim = max(topo["primaries"], key=lambda p: (
            sum(1 for m in topo["master_of"].values() if m == p), -p))
    slots = topo["primaries"][victim]
    shard = sorted(r for r, m in topo["master_of"].items() if m == victim)
    if len(shard) < 2:
        raise ChaosError("primary %d has %d replicas, want 2 or more" % (victim, len(shard)))
    times, promoted = [], []
    down: set[int] = set()
    heirs = []

    def no_new_primary(old: int):
        def problems() -> list[str]:
            for r in shard:
                if r in down or r == old:
                    continue
                try:
                    if parse_info(cl.call(r, "INFO", "replication")).get("role") == "master":
                        return []
                except Exception:  # noqa: BLE001 - busy or down: ask again
                    pass
            return ["no replica of %d promoted" % old]
        return problems

    for _ in range(2):
        t_kill = cl.kill(victim)
        down.add(victim)
        t_promoted = cl.wait_for("a replica of %d promoted" % victim, no_new_primary(victim),
                                 timeout)
        promoted.append(t_promoted - t_kill)
        t_served = cl.wait_serving(down=down, timeout=timeout)
        times.append(t_served - t_kill)
        owners = sorted(p for p, s in cl.topology()["primaries"].items() if s & slots)
        if len(owners) != 1 or owners[0] not in shard:
            raise ChaosError("slots of %d served by %s, want one of its replicas %s\n%s"
                             % (victim, owners, shard, cl.diagnostics()))
        victim = owners[0]
        heirs.append(victim)
        if len(heirs) == 1:
            # the other replicas follow the new primary before it is killed too
            for r in shard:
                if r != victim:
                    cl.wait_replica(r, primary=victim, timeout=timeout)
    return {"shard": shard, "heirs": heirs, "promoted_s": promoted, "failover_s": times}


def median_ratio(times: list[float], node_timeout_ms: int) -> float:
    return statistics.median(times) / (node_timeout_ms / 1000)


def pids(cl: ChaosCluster) -> list[int]:
    return [n.proc.proc.pid for n in cl.c.nodes if n.proc.proc is not None]


__all__ = ["ChaosCluster", "Writer", "ChaosError", "verify", "assert_verified",
           "kill_primary_round", "sigstop_primary", "kill_replica", "manual_failover",
           "median_ratio", "read_keys", "CHAOS_PORTS", "CpuLoad", "consecutive_failover"]
