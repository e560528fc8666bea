"""The asyncio cluster bus: moves frames between nodes and runs a ClusterState.

The state machine (:mod:`gossip.state`) decides; this module only does I/O:

* a listener on the bus port (one per bind address) accepts *inbound* links;
  each message on one is given to ``state.on_message`` with an inbound
  :class:`LinkInfo`, and a :class:`Reply` is written back on that very link;
  the first message from a known node binds the link to it (one inbound link
  per node: a newer one replaces and closes the older, as in Redis);
* one *outbound* link per node, opened on :class:`Connect` and keyed by node id
  (re-keyed on :class:`Rename`); messages sent before it is up are queued and
  written on connect; a failed connect or a dropped link is reported with
  ``state.on_link_down`` (not after a :class:`Disconnect`, which the state asked for);
* ``state.on_tick`` every 100 ms on the loop, and ``state.on_timer`` at the
  time of the last :class:`Wake` (one timer, replaced by each Wake).

Actions are executed by :func:`gossip.executor.execute`: this class is its bus
port (network actions); the others (SaveConfig, Replicate, EmptyData,
DropSlotKeys, Deliver, Log ...) go to the ``server`` port given by the owner
(pynode's ClusterNode), which keeps this module free of any pynode import.

Protection (both optional, set by the owner): ``ssl_server``/``ssl_client``
put the links on TLS (tls-cluster); ``secrets`` (cluster-bus-secret) runs a
:class:`gossip.busauth.LinkAuth` on every link between the socket and the frame
decoder, so the state machine only ever sees frames from peers that proved
the secret.  A refusal (no proof, a bad record, a handshake not finished in
the connect timeout, a failed TLS handshake) closes that link, is counted in
``stats_auth_refused`` and logged once per address.

A bad frame (:class:`BusError`) closes that link only: messages decoded before
it in the same read are still processed, the link is counted in
``stats_bad_frames`` and logged. An exception raised by the state machine while
processing one message is treated the same way (logged with its traceback,
link closed), so no peer can stop the node by what it sends.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import traceback
import weakref
from typing import Callable

from gossip.actions import LinkInfo
from gossip.busauth import AuthError, LinkAuth
from gossip.codec import BusError, FrameDecoder, encode
from gossip.executor import BusPort, ServerPort, execute
from gossip.outgoing import connect_async

TICK_S = 0.1
# A tick that runs this late (the loop was busy or the process starved of CPU)
# first lets the loop read what arrived meanwhile: uvloop runs due timers before
# it polls the sockets, so the cron would otherwise judge peers by PONGs that
# are waiting, unread, in our own receive buffers (and flag them PFAIL).
LATE_TICK_S = 0.05


def now_ms() -> int:
    return int(time.time() * 1000)


class _Link(asyncio.Protocol):
    """One bus connection, either direction.  Subclasses give `make_info()`,
    the LinkInfo the state machine sees for messages arriving on the link."""

    inbound = False

    def __init__(self, bus: "BusTransport", conn_id: int) -> None:
        self.bus = bus
        self.conn_id = conn_id
        self.transport: asyncio.Transport | None = None
        self.decoder = FrameDecoder()
        self.closed = False
        self.ctime = now_ms()
        self.peer_ip = ""
        self.local_ip = ""
        self.info: LinkInfo | None = None
        self.auth: LinkAuth | None = None   # with a bus secret (gossip/busauth.py)
        self.made = [False]                 # connection_made seen (a TLS handshake passed)

    # -- asyncio callbacks
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.made[0] = True
        if self.closed:
            transport.abort()
            return
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.peer_ip = _ip_of(peer)
        self.local_ip = _ip_of(sock)
        self.info = self.make_info()
        if self.bus.secrets:
            self.auth = LinkAuth(not self.inbound, self.bus.secrets)
            transport.write(self.auth.hello())
            self.bus.auth_deadline(self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.bus.stats_bytes_received += len(data)
        auth = self.auth
        if auth is not None:
            try:
                data, out = auth.feed(data)
            except AuthError as e:
                self.bus.auth_refused(self, str(e))
                return
            if out:
                self.transport.write(out)
            if not data:
                return
        try:
            msgs = self.decoder.feed(data)
        except BusError as e:
            for m in e.messages:
                if self.closed or not self.bus.deliver(self, m):
                    return
            self.bus.bad_frame(self, e.reason)
            return
        for m in msgs:
            if self.closed or not self.bus.deliver(self, m):
                return

    def connection_lost(self, exc) -> None:
        was_closed = self.closed
        self.closed = True
        if not was_closed and self.decoder.buffered:
            self.bus.truncated_frame(self, self.decoder.buffered)
        self.bus.link_lost(self, was_closed)

    # -- helpers
    def write(self, frame: bytes) -> None:
        t = self.transport
        if t is not None and not self.closed:
            if self.auth is not None:
                frame = self.auth.seal(frame)   # b"" until the handshake is done
                if not frame:
                    return
            t.write(frame)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def send_buffer(self) -> int:
        t = self.transport
        if t is None or t.is_closing():
            return 0
        return t.get_write_buffer_size()


class InboundLink(_Link):
    inbound = True

    def __init__(self, bus, conn_id):
        super().__init__(bus, conn_id)
        self.node_id: str | None = None  # the sender seen on this link, once known

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.bus.inbound[self.conn_id] = self

    def make_info(self) -> LinkInfo:
        return LinkInfo(inbound=True, peer_ip=self.peer_ip, local_ip=self.local_ip,
                        conn_id=self.conn_id)


class OutboundLink(_Link):
    def __init__(self, bus, conn_id, node_id: str) -> None:
        super().__init__(bus, conn_id)
        self.node_id = node_id
        self.pending: list[bytes] = []
        self.connected = False

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if self.closed:
            return
        self.connected = True
        if self.pending:
            _Link.write(self, b"".join(self.pending))
            self.pending = []
        self.bus.link_up(self)

    def make_info(self) -> LinkInfo:
        return LinkInfo(inbound=False, node_id=self.node_id, peer_ip=self.peer_ip,
                        local_ip=self.local_ip, conn_id=self.conn_id)

    def write(self, frame: bytes) -> None:
        if self.closed:
            return
        if self.connected:
            _Link.write(self, frame)
        else:
            self.pending.append(frame)

    def send_buffer(self) -> int:
        if not self.connected:
            return sum(map(len, self.pending))
        return super().send_buffer()


def _ip_of(addr) -> str:
    if not addr:
        return ""
    ip = addr[0] if isinstance(addr, tuple) else str(addr)
    if ip.startswith("::ffff:") and "." in ip:
        ip = ip[7:]
    return ip


class BusTransport(BusPort):
    """Runs ``state`` on ``loop``: listener, outbound links, tick; the bus port of
    gossip.executor (the owner's ``server`` is its server port)."""

    def __init__(
        self,
        state,
        server: ServerPort,
        *,
        hosts: list[str],
        cport: int,
        connect_timeout_ms: int = 2000,
        log: Callable[[str, str], None] | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.state = state
        self.server = server
        self.hosts = hosts
        self.cport = cport
        self.connect_timeout = max(0.1, connect_timeout_ms / 1000)
        self.log = log or (lambda level, text: None)
        self.clock = clock
        self.loop: asyncio.AbstractEventLoop | None = None
        self.servers: list = []
        self.outbound: dict[str, OutboundLink] = {}
        self.inbound: dict[int, InboundLink] = {}
        self.inbound_of: dict[str, InboundLink] = {}  # node id -> its bound inbound link
        self._next_conn = 1
        self._tick_handle = None
        self._wake_handle = None
        self._tasks: set = set()
        self.closing = False
        # the local address outgoing links are made from (None: the kernel's choice)
        self.source_addr: str | None = None
        # DEBUG PAUSE-CRON: while true the tick runs no cluster cron
        self.paused = False
        # Frames wait here until the loop has run what is ready: a reply to a
        # client goes out before the gossip its command caused (Redis writes
        # replies in beforeSleep and links on the next writable event), so the
        # client is not left waiting while the peers wake up to process it.
        # While ``hold_frames()`` is true the owner has replies to write and
        # calls ``flush_frames()`` after them.
        self.hold_frames: Callable[[], bool] | None = None
        self._held: list[tuple[_Link, bytes]] = []
        self._flush_scheduled = False
        # cluster-bus-secret values, preferred first (empty: no authentication);
        # a change applies to links made after it
        self.secrets: list[bytes] = []
        # TLS (tls-cluster): contexts for the listener and for outbound links
        self.ssl_server = None
        self.ssl_client = None
        self._auth_logged: set[str] = set()
        # counters
        self.stats_auth_refused = 0
        self.stats_bad_frames = 0
        self.stats_truncated_frames = 0
        self.stats_bytes_received = 0
        self.stats_dropped_sends = 0
        self.stats_state_errors = 0
        # cron ticks that ran late (> LATE_TICK_S) and the worst lateness seen
        self.stats_late_ticks = 0
        self.max_tick_lateness_ms = 0
        self._tick_due = 0.0
        self._tick_deferred = False
        self.last_bad_frame = ""

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Listen on the bus port (raises OSError if a non-optional address fails) and tick."""
        self.loop = asyncio.get_running_loop()
        for h in self.hosts:
            optional = h.startswith("-")
            host = h.lstrip("-")
            if host == "*":
                host = "0.0.0.0"
            elif host == "::*":
                host = "::"
            try:
                srv = await self.loop.create_server(self._accept, host, self.cport,
                                                    reuse_address=True, ssl=self.ssl_server)
            except OSError:
                if optional:
                    continue
                raise
            self.servers.append(srv)
        self._tick_due = time.monotonic() + TICK_S
        self._tick_handle = self.loop.call_later(TICK_S, self._tick)

    def close(self) -> None:
        self.closing = True
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        if self._wake_handle is not None:
            self._wake_handle.cancel()
            self._wake_handle = None
        for s in self.servers:
            s.close()
        self.servers = []
        self._held = []
        for link in list(self.outbound.values()):
            link.close()
        self.outbound.clear()
        for link in list(self.inbound.values()):
            link.close()
        self.inbound.clear()
        self.inbound_of.clear()
        for t in list(self._tasks):
            t.cancel()

    def _new_conn_id(self) -> int:
        n = self._next_conn
        self._next_conn += 1
        return n

    def _accept(self) -> InboundLink:
        link = InboundLink(self, self._new_conn_id())
        if self.ssl_server is not None:
            weakref.finalize(link, self._handshake_done, link.made)
        return link

    # ------------------------------------------------------------------ state entry points

    def _tick(self) -> None:
        self._tick_handle = None
        if self.closing:
            return
        late = time.monotonic() - self._tick_due
        if late > LATE_TICK_S and not self._tick_deferred:
            # poll the sockets first (a 1 ms timer fires after the next poll)
            self._tick_deferred = True
            self.stats_late_ticks += 1
            self.max_tick_lateness_ms = max(self.max_tick_lateness_ms, int(late * 1000))
            self._tick_handle = self.loop.call_later(0.001, self._tick)
            return
        self._tick_deferred = False
        try:
            if not self.paused:
                self.run(self.state.on_tick(self.clock()))
        except Exception:  # noqa: BLE001 - keep the bus alive, but loudly
            self.stats_state_errors += 1
            self.log("warning", "Cluster cron failed:\n" + traceback.format_exc())
        finally:
            if not self.closing:
                self._tick_due = time.monotonic() + TICK_S
                self._tick_handle = self.loop.call_later(TICK_S, self._tick)

    def deliver(self, link: _Link, msg) -> bool:
        """One decoded message from a link; False if the link must stop reading."""
        if link.info is None:
            link.info = link.make_info()
        if link.inbound and link.node_id is None:
            self._bind_inbound(link, msg.header.sender)
        try:
            actions = self.state.on_message(link.info, msg, self.clock())
        except Exception:  # noqa: BLE001
            self.stats_state_errors += 1
            self.log("warning", "Error processing a %s message from %s: closing the link\n%s"
                     % (msg.type.name, link.peer_ip, traceback.format_exc()))
            self._drop(link)
            return False
        self.run(actions)
        return not link.closed

    def _bind_inbound(self, link: InboundLink, sender_id: str) -> None:
        """setClusterNodeToInboundClusterLink: the first message from a known node
        (not in handshake) names the inbound link's node, once.  A node has one
        inbound link: an older one still open (the peer reconnected before we saw
        the old connection end) is closed, as Redis frees it."""
        sender = self.state.nodes.get(sender_id)
        if sender is None or sender.in_handshake or sender is self.state.myself:
            return
        old = self.inbound_of.get(sender.id)
        if old is not None and old is not link:
            self.log("debug", "Replacing inbound link %d from node %s with %d"
                     % (old.conn_id, sender.id, link.conn_id))
            old.close()
            self.inbound.pop(old.conn_id, None)
        link.node_id = sender.id
        self.inbound_of[sender.id] = link

    def _unbind_inbound(self, link: _Link) -> None:
        self.inbound.pop(link.conn_id, None)
        if link.node_id is not None and self.inbound_of.get(link.node_id) is link:
            del self.inbound_of[link.node_id]

    def bad_frame(self, link: _Link, reason: str) -> None:
        self.stats_bad_frames += 1
        self.last_bad_frame = reason
        self.log("verbose", "Bad cluster bus frame from %s (%s link): %s; closing the link "
                 "(%d bad frames so far)" % (link.peer_ip or "?",
                                             "inbound" if link.inbound else "outbound",
                                             reason, self.stats_bad_frames))
        self._drop(link)

    def auth_refused(self, link: _Link, reason: str) -> None:
        """A peer that could not prove the bus secret: nothing it sent is
        processed; the link is closed, counted, and logged once per address."""
        self.refused(link.peer_ip or "?", link.inbound, reason)
        self._drop(link)

    def refused(self, peer: str, inbound: bool, reason: str) -> None:
        """Count a link refused for want of the secret or of a trusted
        certificate; log it once per address."""
        self.stats_auth_refused += 1
        if peer not in self._auth_logged:
            if len(self._auth_logged) < 1024:
                self._auth_logged.add(peer)
            self.log("warning", "Cluster bus link %s %s refused: %s (%d refused so far; "
                     "further refusals from this address are not logged)"
                     % ("from" if inbound else "to", peer, reason, self.stats_auth_refused))

    def _handshake_done(self, made: list) -> None:
        """An inbound TLS link gone before connection_made: its handshake failed
        (the loop tells nothing else, not even the address)."""
        if not made[0] and not self.closing:
            self.refused("an unknown address", True,
                         "TLS handshake failed (no trusted client certificate, or not TLS)")

    def auth_deadline(self, link: _Link) -> None:
        """A link that has not completed the bus authentication within the
        connect timeout is refused (a peer that stops mid-handshake)."""
        def check() -> None:
            if not link.closed and link.auth is not None and not link.auth.is_open:
                self.auth_refused(link, "authentication not completed in time")
        if self.loop is not None:
            self.loop.call_later(self.connect_timeout, check)

    def truncated_frame(self, link: _Link, buffered: int) -> None:
        """The peer closed the link in the middle of a frame."""
        self.stats_truncated_frames += 1
        self.log("verbose", "Cluster bus link from %s closed with a partial frame of %d bytes "
                 "(%d so far)" % (link.peer_ip or "?", buffered, self.stats_truncated_frames))

    def _drop(self, link: _Link) -> None:
        """Close a link on our initiative; an outbound one is reported down to the state."""
        link.close()
        if link.inbound:
            self._unbind_inbound(link)
        else:
            self._outbound_down(link)

    def kill_links(self, node_id: str, outbound: bool, inbound: bool) -> None:
        """DEBUG CLUSTERLINK KILL: free the link to a node and/or the links from it."""
        if outbound:
            link = self.outbound.get(node_id)
            if link is not None:
                self._drop(link)
        if inbound:
            for link in list(self.inbound.values()):
                if getattr(link, "node_id", None) == node_id:
                    self._drop(link)

    def link_up(self, link: OutboundLink) -> None:
        if self.outbound.get(link.node_id) is link:
            self.run(self.state.on_link_up(link.node_id, self.clock()))

    def link_lost(self, link: _Link, was_closed: bool) -> None:
        if link.inbound:
            self._unbind_inbound(link)
            return
        if not was_closed:
            self._outbound_down(link)

    def _outbound_down(self, link: OutboundLink) -> None:
        if self.outbound.get(link.node_id) is link:
            del self.outbound[link.node_id]
            if not self.closing:
                self.run(self.state.on_link_down(link.node_id, self.clock()))

    # ------------------------------------------------------------------ actions

    def _write(self, link: "_Link", frame: bytes) -> None:
        if self.loop is None:
            link.write(frame)
            return
        self._held.append((link, frame))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        self._flush_scheduled = False
        if self.hold_frames is None or not self.hold_frames():
            self.flush_frames()

    def _wake(self) -> None:
        self._wake_handle = None
        if self.closing or self.paused:
            return  # (DEBUG PAUSE-CRON: the cron does it once it runs again)
        try:
            self.run(self.state.on_timer(self.clock()))
        except Exception:  # noqa: BLE001 - keep the bus alive, but loudly
            self.stats_state_errors += 1
            self.log("warning", "Cluster timer failed:\n" + traceback.format_exc())

    def flush_frames(self) -> None:
        """Write the held frames, in order; one write per link."""
        held = self._held
        if not held:
            return
        self._held = []
        per_link: dict[_Link, list[bytes]] = {}
        for link, frame in held:
            per_link.setdefault(link, []).append(frame)
        for link, frames in per_link.items():
            link.write(frames[0] if len(frames) == 1 else b"".join(frames))

    def run(self, actions: list) -> None:
        """Execute actions (gossip.executor: SaveConfig first, then in order)."""
        execute(actions, self, self.server)

    # BusPort: the executor's calls for the network actions
    def send(self, node_id: str, msg) -> None:
        link = self.outbound.get(node_id)
        if link is None:
            self.stats_dropped_sends += 1
        else:
            self._write(link, encode(msg))

    def broadcast(self, msg, to) -> None:
        frame = encode(msg)
        for nid in to:
            link = self.outbound.get(nid)
            if link is None:
                self.stats_dropped_sends += 1
            else:
                self._write(link, frame)

    def wake_at(self, at_ms: int) -> None:
        if self.loop is None or self.closing:
            return  # not started: the first tick does what is due
        if self._wake_handle is not None:
            self._wake_handle.cancel()
        delay = max(0, at_ms - self.clock()) / 1000
        self._wake_handle = self.loop.call_later(delay, self._wake)

    def _link_of(self, info: LinkInfo):
        return (self.inbound.get(info.conn_id) if info.inbound
                else self.outbound.get(info.node_id or ""))

    def reply(self, info: LinkInfo, msg) -> None:
        link = self._link_of(info)
        if link is not None:
            self._write(link, encode(msg))

    def disconnect(self, node_id: str) -> None:
        link = self.outbound.pop(node_id, None)
        if link is not None:
            link.close()

    def rename(self, old_id: str, new_id: str) -> None:
        link = self.outbound.pop(old_id, None)
        if link is not None:
            other = self.outbound.pop(new_id, None)
            if other is not None and other is not link:
                other.close()
            link.node_id = new_id
            link.info = link.make_info() if link.transport is not None else None
            self.outbound[new_id] = link

    def close_link(self, info: LinkInfo) -> None:
        link = self._link_of(info)
        if link is not None:
            self._drop(link)

    def connect(self, node_id: str, ip: str, cport: int) -> None:
        old = self.outbound.pop(node_id, None)
        if old is not None:
            old.close()
        link = OutboundLink(self, self._new_conn_id(), node_id)
        self.outbound[node_id] = link
        if self.loop is None or self.closing:
            return
        task = self.loop.create_task(self._open(link, ip, cport))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _open(self, link: OutboundLink, ip: str, cport: int) -> None:
        try:
            async def connect() -> None:
                sock = await connect_async(ip, cport, self.source_addr)
                await self.loop.create_connection(
                    lambda: link, sock=sock, ssl=self.ssl_client,
                    server_hostname=ip if self.ssl_client is not None else None)
            await asyncio.wait_for(connect(), self.connect_timeout)
        except asyncio.CancelledError:
            link.close()
            raise
        except (OSError, asyncio.TimeoutError, ValueError) as e:
            if link.closed:
                return
            link.closed = True
            if isinstance(e, ssl.SSLError):
                self.refused(ip, False, "TLS handshake failed: %s" % e)
            self.log("debug", "Connecting to node %s at %s:%d failed: %s"
                     % (link.node_id, ip, cport, e))
            self._outbound_down(link)

    # ------------------------------------------------------------------ views

    def links(self) -> list[tuple[str, str, int, str, int, int]]:
        """CLUSTER LINKS rows: (direction, node id, create-time, events, allocated, used),
        per node in node-table order, its outbound link then its inbound link."""
        inbound_of = self.inbound_of
        rows = []
        for nid in self.state.nodes:
            out = self.outbound.get(nid)
            if out is not None and not out.closed:
                used = out.send_buffer()
                rows.append(("to", nid, out.ctime, "rw" if used else "r", used, used))
            inl = inbound_of.get(nid)
            if inl is not None and not inl.closed:
                used = inl.send_buffer()
                rows.append(("from", nid, inl.ctime, "rw" if used else "r", used, used))
        return rows

    def connections(self) -> int:
        """Open bus sockets (INFO cluster_connections)."""
        return (sum(1 for link in self.outbound.values() if link.connected and not link.closed)
                + sum(1 for link in self.inbound.values() if not link.closed))
