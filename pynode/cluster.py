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

Handover at shutdown (Valkey 9's ``SHUTDOWN FAILOVER`` and ``shutdown-on-sigterm
failover``): a primary serving slots with an online replica first holds client
writes, waits until its best replica (the greatest acknowledged offset) has
everything, asks that replica for ``CLUSTER FAILOVER FORCE`` on a client
connection (not in the replication stream, which its other replicas would
replay), and waits until the cluster names the replica primary of its slots.
Then it lets the held writes run (they get MOVED to the new primary) and shuts
down. Bounded by shutdown-timeout; if anything fails the shutdown goes on.
"""

from __future__ import annotations

import asyncio
import os
import time
import random

from gossip.executor import ServerPort, NoBus, SavePolicy, execute
from gossip.node import random_node_id
from gossip.nodes_conf import NodesConfError, parse, render
from gossip.state import ClusterState
from gossip.transport import BusTransport, now_ms
from pynode.pause import FAILOVER, SHUTDOWN, WRITE
from storage.rewrite import encode_command
from storage.durable import LockHeld, atomic_write, lock_exclusive, overwrite

NO_BUS = NoBus()


class ClusterNode(ServerPort):
    def __init__(self, srv) -> None:
        self.srv = srv
        cfg = srv.cfg
        log = srv.log
        # deriveAnnouncedPorts: with tls-cluster the cluster knows the node by
        # its TLS port, and the bus is TLS too (at tls-port + 10000 by default)
        self.tls = cfg.bool("tls-cluster")
        self.port = cfg.int("tls-port") if self.tls else cfg.int("port")
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
        self.announced_port = (cfg.int("cluster-announce-tls-port") if self.tls
                               else cfg.int("cluster-announce-port")) or self.port
        self.announced_cport = cfg.int("cluster-announce-bus-port") or self.cport
        self.node_timeout = max(1, cfg.int("cluster-node-timeout"))
        self.path = cfg.get("cluster-config-file")
        self.primary_id: str | None = None  # last Replicate action (None: primary)
        self.transport: BusTransport | None = None
        # nodes.conf writes: fsync ones at once, others delayed (gossip.executor)
        self.saver = SavePolicy(self._write_config, None)
        self._lock = None
        self._rng = random.Random(int.from_bytes(os.urandom(16), "big"))
        self.handover: asyncio.Task | None = None  # SHUTDOWN FAILOVER in progress

        self._take_lock()
        self.state = self._load()
        if self.tls:
            self.state.myself.pport = (cfg.int("cluster-announce-port") if
                                       cfg.int("cluster-announce-tls-port") else 0) or cfg.int("port")
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
        # cluster-node-timeout: failure detection, elections, the bus's
        # connect timeout and the migration links' timeouts read it live
        self.node_timeout = st.node_timeout = max(1, cfg.int("cluster-node-timeout"))
        if self.transport is not None:
            self.transport.connect_timeout = max(0.1, self.node_timeout / 1000)
        st.allow_replica_migration = cfg.bool("cluster-allow-replica-migration")
        st.replica_validity_factor = cfg.int("cluster-replica-validity-factor")
        st.migration_barrier = cfg.int("cluster-migration-barrier")
        st.set_replica_no_failover(cfg.bool("cluster-replica-no-failover"))
        st.set_hostname(cfg.get("cluster-announce-hostname") or "")
        self.endpoint_type = cfg.get("cluster-preferred-endpoint-type")
        self.configure_bus()

    def configure_bus(self) -> None:
        """cluster-bus-secret: the secrets new links must prove (gossip/busauth.py)."""
        if self.transport is not None:
            from gossip.busauth import parse_secrets
            self.transport.secrets = parse_secrets(self.srv.cfg.get("cluster-bus-secret"))

    def check_bus_protection(self) -> None:
        """A bus reachable beyond loopback with neither a secret nor mutual
        TLS lets anyone who can reach it join the cluster and take slots: a
        loud warning, or no start with cluster-bus-port-protected-mode yes."""
        cfg = self.srv.cfg
        mutual_tls = self.tls and cfg.get("tls-auth-clients") == "yes"
        if self.transport.secrets or mutual_tls:
            return
        loopback = all(h in ("127.0.0.1", "::1", "localhost") or h.startswith("127.")
                       for h, _ in cfg.bind_hosts())
        if loopback:
            return
        text = ("The cluster bus port %d listens beyond the loopback interface with neither "
                "cluster-bus-secret nor tls-cluster with tls-auth-clients yes: any host that "
                "can reach it can join this cluster and take its slots." % self.cport)
        if cfg.bool("cluster-bus-port-protected-mode"):
            self.srv.log.warning(text + " Refusing to start (cluster-bus-port-protected-mode "
                                 "yes): set cluster-bus-secret, enable mutual TLS, or bind "
                                 "the loopback interface only.")
            raise SystemExit(1)
        self.srv.log.warning("WARNING: " + text + " Set cluster-bus-secret on every node.")

    def client_port(self, node, c) -> int:
        """The port a client is told for ``node``: with tls-cluster the TLS
        port, except for a plaintext client when the node has a plaintext
        port too (Redis 7.0's use_pport)."""
        if self.tls and node.pport and not getattr(c, "tls", False):
            return node.pport
        return node.port

    def use_pport(self, c) -> bool:
        return self.tls and not getattr(c, "tls", False)

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
        loop = asyncio.get_running_loop()
        self.saver.schedule = lambda ms, fn: loop.call_later(ms / 1000.0, fn)
        self.transport = BusTransport(
            self.state, self, hosts=hosts, cport=self.cport,
            connect_timeout_ms=self.node_timeout, log=self._log,
        )
        self.transport.source_addr = srv.cfg.source_addr()
        if self.tls and srv.tls is not None:
            self.transport.ssl_server = srv.tls_listener
            self.transport.ssl_client = srv.tls.client
        self.configure_bus()
        self.check_bus_protection()
        # gossip caused by a command leaves after the command's reply
        # (Server.before_sleep calls flush_frames once the replies are written)
        self.transport.hold_frames = srv.before_sleep_pending
        try:
            await self.transport.start()
        except OSError as e:
            srv.log.warning("Could not create the cluster bus listening socket on port %d: %s"
                            % (self.cport, e.strerror))
            raise SystemExit(1)

    def shutdown(self) -> None:
        self.saver.forget()
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
        """Execute actions (gossip.executor); before the bus is up only the
        server's share means anything."""
        execute(actions, self.transport if self.transport is not None else NO_BUS, self)

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
        self.saver.flush()
        return value

    # ServerPort: the executor's calls for the server's share of the actions
    def request_save(self, fsync: bool) -> None:
        self.saver.request(fsync)
        self.srv.slot_stats.sync_owners()    # a slot's new owner counts from zero

    def log(self, level: str, text: str) -> None:
        self._log(level, text)

    def deliver(self, channel: bytes, message: bytes, shard: bool) -> None:
        from pynode.commands.pubsub import publish_message, publish_shard_message
        if shard:
            publish_shard_message(self.srv, channel, message)
        else:
            publish_message(self.srv, channel, message)

    def drop_slot_keys(self, slots) -> None:
        # a few keys at once, many in the background (pynode/migration.py)
        self.srv.migrations.drop_slots(slots)

    def drop_slot_channels(self, slots) -> None:
        from pynode.commands.pubsub import drop_slot_channels
        drop_slot_channels(self.srv, slots)

    def empty_data(self) -> None:
        srv = self.srv
        n = srv.ks.flushall()
        srv.dirty += max(1, n)
        srv.propagate(0, [b"FLUSHALL"])

    def replicate(self, primary_id: str | None) -> None:
        self.primary_id = primary_id
        if primary_id is None:
            self.srv.log.notice("Cluster: acting as a primary")
        else:
            p = self.state.nodes.get(primary_id)
            where = "%s:%d" % (p.ip, p.port) if p is not None else "?"
            self.srv.log.notice("Cluster: replica of %s (%s)" % (primary_id, where))
        repl = self.srv.replication
        if primary_id is None:
            repl.become_primary()
            # a replica of a failed import's target holds what it imported
            self.srv.migrations.promoted()
        else:
            # a failover took my shard: my jobs' data may be behind the new primary's
            self.srv.migrations.abort_all("This node became a replica")
            if p is not None and p.ip and p.port:
                repl.become_replica(p.ip, p.port)

    def pause_clients(self, until_ms: int) -> None:
        # a manual failover of our replica: hold writes, then report the
        # offset that is now final so the replica can catch up to it
        srv = self.srv
        left = max(0, until_ms - now_ms())
        srv.pause_clients(FAILOVER, time.monotonic() + left / 1000.0, WRITE)
        self.state.set_repl_offset(srv.replication.offset)

    def unpause_clients(self) -> None:
        self.srv.unpause_clients(FAILOVER)

    def delete_slot_keys(self, slots, lazy: bool | None = None) -> int:
        """delKeysInSlot for `slots`; lazy: big values freed in pieces
        (None: as lazyfree-lazy-server-del)."""
        srv = self.srv
        db = srv.ks.db(0)
        n = 0
        for s in slots:
            for key in list(db.slots[s]):
                if db.delete(key, lazy):
                    n += 1
                    srv.propagate(0, [b"DEL", key])
        if n:
            srv.dirty += n
            srv.log.notice("Deleted %d keys from slots the cluster gave to another node" % n)
        return n

    def _write_config(self, fsync: bool) -> None:
        """The save policy's writer: a failed write stops the node, as Redis's
        clusterSaveConfigOrDie."""
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

    def publish(self, channel: bytes, message: bytes) -> None:
        """PUBLISH in cluster mode: to every node over the bus."""
        self.run(self.state.publish(channel, message, now=now_ms()))

    def publish_shard(self, channel: bytes, message: bytes) -> None:
        """SPUBLISH in cluster mode: to the other nodes of this shard over the bus."""
        self.run(self.state.publish_shard(channel, message, now=now_ms()))

    # ------------------------------------------------------------------ handover
    def start_handover(self, then, timeout_s: float) -> bool:
        """SHUTDOWN FAILOVER: hand the slots to the best replica, then call ``then()``.
        False (nothing started) unless this node is a primary serving slots with an
        online replica."""
        from pynode.replication import ONLINE
        srv = self.srv
        me = self.state.myself
        if self.handover is not None or not me.is_primary or not me.slots:
            return False
        if not any(r.state == ONLINE for r in srv.replication.live_replicas()):
            return False
        deadline = time.monotonic() + max(0.1, timeout_s)
        srv.pause_clients(SHUTDOWN, deadline, WRITE)     # hold client writes
        srv.log.warning("Handing my slots over to a replica before shutting down "
                        "(timeout %.0f ms)." % (max(0.1, timeout_s) * 1000))
        self.handover = srv.loop.create_task(self._handover(then, deadline))
        return True

    def abort_handover(self) -> bool:
        """SHUTDOWN ABORT during a handover: writes resume, no shutdown."""
        task, self.handover = self.handover, None
        if task is None:
            return False
        task.cancel()
        self.srv.unpause_clients(SHUTDOWN)
        self.srv.log.warning("Shutdown and handover aborted.")
        return True

    async def _handover(self, then, deadline: float) -> None:
        srv = self.srv
        log = srv.log
        try:
            target = await self._caught_up_replica(deadline)
            if target is None:
                log.warning("Handover: no replica caught up in time; shutting down without it.")
            else:
                ip, port = target
                log.warning("Handover: replica %s:%d has all my data; asking it to take over."
                            % (ip, port))
                if await self._ask_takeover(ip, port, deadline):
                    while self.state.myself.is_primary and time.monotonic() < deadline:
                        await asyncio.sleep(0.01)
                if self.state.myself.is_primary:
                    log.warning("Handover: the replica did not take over in time.")
                else:
                    log.warning("Handover done: %s:%d serves my slots now." % (ip, port))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the shutdown must go on
            log.warning("Handover failed: %r" % (e,))
        if self.handover is None:        # aborted meanwhile
            return
        self.handover = None
        # the held writes run now (MOVED to the new primary) and their replies
        # leave before the shutdown closes the connections
        srv.unpause_clients(SHUTDOWN)
        srv.loop.call_later(0.05, then)

    async def _caught_up_replica(self, deadline: float):
        """(ip, port) of an online replica that acknowledged our whole stream, the
        one with the greatest acknowledged offset; None at the deadline."""
        from pynode.replication import ONLINE
        repl = self.srv.replication
        last_getack = 0.0
        while time.monotonic() < deadline:
            online = [r for r in repl.live_replicas() if r.state == ONLINE]
            if not online:
                return None
            best = max(online, key=lambda r: r.ack_off)
            if best.ack_off >= repl.offset:
                return best.ip, best.port
            if time.monotonic() - last_getack > 0.2:
                last_getack = time.monotonic()
                repl.send_getack()
            await asyncio.sleep(0.005)
        return None

    async def _ask_takeover(self, ip: str, port: int, deadline: float) -> bool:
        """CLUSTER FAILOVER FORCE on the replica, authenticated as replication is."""
        from pynode.replication import peer_auth, peer_ssl
        cfg = self.srv.cfg
        left = max(0.05, deadline - time.monotonic())
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(ip, port, ssl=peer_ssl(self.srv)), left)
        try:
            auth = peer_auth(cfg)
            cmds = [auth] if auth is not None else []
            cmds.append([b"CLUSTER", b"FAILOVER", b"FORCE"])
            writer.write(b"".join(encode_command(c) for c in cmds))
            for _ in cmds:
                left = max(0.05, deadline - time.monotonic())
                line = await asyncio.wait_for(reader.readline(), left)
                if not line.startswith(b"+"):
                    self.srv.log.warning("Handover: the replica answered %r"
                                         % line.strip()[:200])
                    return False
            return True
        finally:
            writer.close()

    # ------------------------------------------------------------------ views
    def info_fields(self) -> list[tuple[str, object]]:
        fields = self.state.cluster_info()
        t = self.transport
        if t is not None and (t.secrets or t.stats_auth_refused):
            # links refused for not proving the bus secret (pynode's own field,
            # shown once a secret is set: Redis's output otherwise)
            fields.append(("cluster_stats_bus_auth_refused", self.transport.stats_auth_refused))
        return fields

    def connections(self) -> int:
        return self.transport.connections() if self.transport is not None else 0
