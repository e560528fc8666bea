"""Cluster mode (`cluster-enabled yes`): glue between the server, the gossip state
machine (gossip.state.ClusterState) and the bus transport (gossip.transport).

``srv.cluster`` is a :class:`ClusterNode` when cluster mode is on, ``None``
otherwise. ``srv.cluster.state`` is the live ClusterState (routing reads its
``slot_owner``, ``myself_id``, ``nodes`` and ``state``).

Start-up, as Redis's clusterInit: take an exclusive lock for the cluster config
file (a second process on the same file is refused and exits 1), load it
(a corrupt or truncated file stops start-up naming the line and what to do), or
create a new node with a random id when there is none, then save it back.
A SaveConfig action rewrites the file atomically (temp + rename): at once and
with fsync when the state asks for it (epochs, votes, roles); before the reply
for an admin command (CLUSTER SETSLOT ...); otherwise (slot maps learned from
the bus) at most every 100 ms.

The server-side actions of the state machine are executed here: DropSlotKeys
deletes the keys of lost slots in db 0 (propagating a DEL per key, as Redis's
delKeysInSlot), DropSlotChannels unsubscribes the shard channels of slots
that left this node's shard, EmptyData flushes everything, Deliver publishes
to local subscribers (of shard channels for a PUBLISHSHARD), Replicate is
handed to the replication module (become_replica / become_primary), and PauseClients/UnpauseClients hold writes while a replica
runs a manual failover.
"""

from __future__ import annotations

import os
import time
import random

from gossip import actions as A
from gossip.node import random_node_id
from gossip.nodes_conf import NodesConfError, parse, render
from gossip.state import ClusterState
from gossip.transport import BusTransport, now_ms
from storage.durable import LockHeld, atomic_write, lock_exclusive, overwrite

SAVE_DELAY_S = 0.1


class ClusterNode:
    def __init__(self, srv) -> None:
        self.srv = srv
        cfg = srv.cfg
        log = srv.log
        self.port = cfg.int("port")
        cport = cfg.int("cluster-port")
        if not cport:
            if self.port > 55535:
                log.warning("Redis port number too high. Cluster communication port is "
                            "10,000 port numbers higher than your Redis port. Your Redis "
                            "port number must be 55535 or less.")
                raise SystemExit(1)
            cport = self.port + 10000
        self.cport = cport
        self.announce_ip = cfg.get("cluster-announce-ip") or None
        self.announced_port = cfg.int("cluster-announce-port") or self.port
        self.announced_cport = cfg.int("cluster-announce-bus-port") or self.cport
        self.node_timeout = max(1, cfg.int("cluster-node-timeout"))
        self.path = cfg.get("cluster-config-file")
        self.primary_id: str | None = None  # last Replicate action (None: primary)
        self.transport: BusTransport | None = None
        self.saves = 0
        self.save_pending = False
        self._lock = None
        self._rng = random.Random(int.from_bytes(os.urandom(16), "big"))

        self._take_lock()
        self.state = self._load()
        self.endpoint_type = cfg.get("cluster-preferred-endpoint-type")
        self.save_config(fsync=True)

    # ------------------------------------------------------------------ start-up
    def _take_lock(self) -> None:
        """One process per cluster config file.

        The lock is taken on a companion ``<file>.lock`` rather than on the file
        itself: the config is replaced by rename on every save, and a lock on
        the old inode would no longer protect the new file."""
        try:
            self._lock = lock_exclusive(self.path + ".lock")
        except LockHeld:
            self.srv.log.warning(
                "Sorry, the cluster configuration file %s is already used by a different "
                "Redis Cluster node. Please make sure that different nodes use different "
                "cluster configuration files." % self.path)
            raise SystemExit(1)
        except OSError as e:
            self.srv.log.warning("Can't open %s in order to acquire a lock: %s"
                                 % (self.path, e.strerror))
            raise SystemExit(1)

    def _kwargs(self) -> dict:
        cfg = self.srv.cfg
        kw = dict(announce_ip=self.announce_ip,
                  require_full_coverage=cfg.bool("cluster-require-full-coverage"),
                  allow_replica_migration=cfg.bool("cluster-allow-replica-migration"),
                  replica_validity_factor=cfg.int("cluster-replica-validity-factor"),
                  migration_barrier=cfg.int("cluster-migration-barrier"),
                  replica_no_failover=cfg.bool("cluster-replica-no-failover"),
                  hostname=cfg.get("cluster-announce-hostname") or "")
        return kw

    def _load(self) -> ClusterState:
        log = self.srv.log
        text = ""
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            raw = b""
        except OSError as e:
            log.warning("Unrecoverable error: can't read the cluster config file %s: %s"
                        % (self.path, e.strerror))
            raise SystemExit(1)
        try:
            text = raw.decode("utf-8")
            conf = parse(text)
        except UnicodeDecodeError as e:
            log.warning("Unrecoverable error: corrupted cluster config file %s (offset %d: "
                        "not text). To recover: move the file away to start this node as a "
                        "new empty node." % (self.path, e.start))
            raise SystemExit(1)
        except NodesConfError as e:
            log.warning("%s (file %s, line %d)" % (e, os.path.abspath(self.path),
                                                   e.line_number))
            raise SystemExit(1)
        now = now_ms()
        if conf is None:
            st = ClusterState(random_node_id(self._rng), "", self.announced_port,
                              self.announced_cport, self.node_timeout, self._rng, now,
                              **self._kwargs())
            log.notice("No cluster configuration found, I'm %s" % st.myself_id)
            return st
        try:
            st = ClusterState.from_conf(conf, port=self.announced_port,
                                        cport=self.announced_cport,
                                        node_timeout_ms=self.node_timeout, rng=self._rng,
                                        now_ms=now, **self._kwargs())
        except AssertionError as e:
            log.warning("Unrecoverable error: inconsistent cluster config file %s: %s. "
                        "To recover: fix it by hand, or move it away to start this node as "
                        "a new empty node." % (self.path, e))
            raise SystemExit(1)
        log.notice("Node configuration loaded, I'm %.40s" % st.myself_id)
        if st.myself.is_replica:
            self.primary_id = st.myself.primary_id
        return st

    def configure(self) -> None:
        """CONFIG SET of the cluster-* failover settings takes effect at once."""
        cfg = self.srv.cfg
        st = self.state
        st.allow_replica_migration = cfg.bool("cluster-allow-replica-migration")
        st.replica_validity_factor = cfg.int("cluster-replica-validity-factor")
        st.migration_barrier = cfg.int("cluster-migration-barrier")
        st.set_replica_no_failover(cfg.bool("cluster-replica-no-failover"))
        st.set_hostname(cfg.get("cluster-announce-hostname") or "")
        self.endpoint_type = cfg.get("cluster-preferred-endpoint-type")

    def endpoint(self, node) -> str:
        """getPreferredEndpoint: how clients are told to reach ``node`` (MOVED,
        ASK, CLUSTER SHARDS), per cluster-preferred-endpoint-type."""
        etype = self.endpoint_type
        if etype == "ip":
            return node.ip
        if etype == "hostname":
            return node.hostname or "?"
        return ""

    def cron(self) -> None:
        """Called by the server cron: what gossip needs to know about replication."""
        repl = self.srv.replication
        st = self.state
        st.set_repl_offset(repl.offset)
        self.srv.migrations.cron()
        if repl.masterhost is not None:
            if repl.state == "connected":
                st.set_master_link_down_since(None, int(repl.master_last_io * 1000))
            else:
                st.set_master_link_down_since(int((repl.down_since or time.time()) * 1000))

    async def start(self) -> None:
        """Listen on the bus port and start the cluster cron (after the client listener)."""
        srv = self.srv
        hosts = srv.cfg.get("bind").split() or ["*"]
        self.transport = BusTransport(
            self.state, self.handle, hosts=hosts, cport=self.cport,
            connect_timeout_ms=self.node_timeout, log=self._log,
        )
        self.transport.source_addr = srv.cfg.source_addr()
        # gossip caused by a command leaves after the command's reply
        # (Server.flush_writes calls flush_frames once the replies are written)
        self.transport.hold_frames = lambda: bool(srv.write_queue)
        try:
            await self.transport.start()
        except OSError as e:
            srv.log.warning("Could not create the cluster bus listening socket on port %d: %s"
                            % (self.cport, e.strerror))
            raise SystemExit(1)

    def shutdown(self) -> None:
        self.save_pending = False
        try:
            self.save_config(fsync=True)
        except OSError as e:
            self.srv.log.warning("Error saving the cluster config on shutdown: %s" % e)
        if self.transport is not None:
            self.transport.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # ------------------------------------------------------------------ actions
    def _log(self, level: str, text: str) -> None:
        getattr(self.srv.log, level, self.srv.log.notice)(text)

    def run(self, actions: list) -> None:
        if self.transport is not None:
            self.transport.run(actions)
        else:  # not started yet (start-up) : only the local actions make sense
            for a in actions:
                if isinstance(a, A.Log):
                    self._log(a.level, a.text)
                elif not isinstance(a, (A.Send, A.Broadcast, A.Reply, A.Connect,
                                        A.Disconnect, A.Rename)):
                    self.handle(a)

    def call(self, method: str, *args, **kwargs):
        """Run an admin call of the state machine; execute its actions; return its
        value.  A configuration change is on disk before the command answers."""
        result = getattr(self.state, method)(*args, now=now_ms(), **kwargs)
        value = result
        if isinstance(result, list):
            self.run(result)
            value = None
        elif isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], list):
            self.run(result[1])
            value = result[0]
        if self.save_pending:
            self.flush_config()
        return value

    def handle(self, a) -> None:
        """The server's share of the actions."""
        t = type(a)
        if t is A.SaveConfig:
            if a.fsync or self.srv.loop is None:
                self.flush_config(True)
            elif not self.save_pending:
                # changes learned from the bus are saved at most every 100 ms:
                # during a reshard every node hears of a slot move several times
                # a second, and what the cluster told us it tells us again after
                # a crash; an admin command saves before it answers (call())
                self.save_pending = True
                self.srv.loop.call_later(SAVE_DELAY_S, self.flush_config)
        elif t is A.Deliver:
            from pynode.commands.pubsub import publish_message, publish_shard_message
            if a.shard:
                publish_shard_message(self.srv, a.channel, a.message)
            else:
                publish_message(self.srv, a.channel, a.message)
        elif t is A.DropSlotChannels:
            from pynode.commands.pubsub import drop_slot_channels
            drop_slot_channels(self.srv, a.slots)
        elif t is A.DropSlotKeys:
            self.srv.migrations.drop_slots(a.slots)     # many keys: in the background
        elif t is A.EmptyData:
            srv = self.srv
            n = srv.ks.flushall()
            srv.dirty += max(1, n)
            srv.propagate(0, [b"FLUSHALL"])
        elif t is A.Replicate:
            self.primary_id = a.primary_id
            if a.primary_id is None:
                self.srv.log.notice("Cluster: acting as a primary")
            else:
                p = self.state.nodes.get(a.primary_id)
                where = "%s:%d" % (p.ip, p.port) if p is not None else "?"
                self.srv.log.notice("Cluster: replica of %s (%s)" % (a.primary_id, where))
            repl = self.srv.replication
            if a.primary_id is None:
                repl.become_primary()
                # a replica of a failed import's target holds what it imported
                self.srv.migrations.sweep_orphans()
            else:
                # a failover took my shard: my jobs' data may be behind the new primary's
                self.srv.migrations.abort_all("This node became a replica")
                if p is not None and p.ip and p.port:
                    repl.become_replica(p.ip, p.port)
        elif t is A.PauseClients:
            # a manual failover of our replica: hold writes, then report the
            # offset that is now final so the replica can catch up to it
            srv = self.srv
            left = max(0, a.until_ms - now_ms())
            srv.paused_until = time.monotonic() + left / 1000.0
            srv.pause_all = False
            self.state.set_repl_offset(srv.replication.offset)
        elif t is A.UnpauseClients:
            self.srv.unpause()
        elif t is A.Log:
            self._log(a.level, a.text)

    def drop_slot_keys(self, slots) -> int:
        srv = self.srv
        db = srv.ks.db(0)
        n = 0
        for s in slots:
            for key in list(db.slots[s]):
                if db.delete(key):
                    n += 1
                    srv.propagate(0, [b"DEL", key])
        if n:
            srv.dirty += n
            srv.log.notice("Deleted %d keys from slots the cluster gave to another node" % n)
        return n

    def flush_config(self, fsync: bool = False) -> None:
        """Write nodes.conf now if a save is pending (or asked with fsync)."""
        if not (fsync or self.save_pending):
            return
        self.save_pending = False
        try:
            self.save_config(fsync)
        except OSError as e:
            self.srv.log.warning("Could not save the cluster config file %s: %s"
                                 % (self.path, e))
            self.srv.log.warning("Fatal: can't update cluster config file.")
            os._exit(1)

    def save_config(self, fsync: bool = False) -> None:
        data = render(self.state).encode()
        # as Redis: fsync only for what must survive a power loss (epochs, votes,
        # role changes), with an atomic replace; other changes are written in
        # place with one write(), which a killed process cannot tear
        if fsync:
            atomic_write(self.path, data)
        else:
            overwrite(self.path, data)
        self.saves += 1

    def publish(self, channel: bytes, message: bytes) -> None:
        """PUBLISH in cluster mode: to every node over the bus."""
        self.run(self.state.publish(channel, message, now=now_ms()))

    def publish_shard(self, channel: bytes, message: bytes) -> None:
        """SPUBLISH in cluster mode: to the other nodes of this shard over the bus."""
        self.run(self.state.publish_shard(channel, message, now=now_ms()))

    # ------------------------------------------------------------------ views
    def info_fields(self) -> list[tuple[str, object]]:
        return self.state.cluster_info()

    def connections(self) -> int:
        return self.transport.connections() if self.transport is not None else 0
