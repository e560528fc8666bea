"""metrics-port: Prometheus text on http://<bind>:<metrics-port>/metrics.

Served by the node's own event loop (an asyncio server, no thread): a scrape
renders the metrics at once from the server's state, as INFO would, so
nothing is sampled in the background.  Names are redis_exporter's
(pynode/metrics.py, shared with `pynode dashboard`): redis_up, INFO's figures
(redis_connected_clients, redis_commands_total{cmd},
redis_commands_duration_seconds_total{cmd}, redis_memory_used_bytes,
redis_db_keys{db}, redis_keyspace_hits_total, ...), CLUSTER INFO's
(redis_cluster_state, redis_cluster_slots_ok/pfail/fail, redis_cluster_known_nodes,
redis_cluster_messages_{sent,received}_by_type_total{type}), slot migrations
in progress, and with cluster-slot-stats-enabled the hottest slots by cpu-usec
(redis_cluster_slot_*{slot}).

prometheus-client (the `dashboard` extra) writes the exposition format when it
is installed; without it the node writes the same text format itself
(pynode/metrics.py's render_text) and says so once in the log.

HTTP is the least a scraper needs: one request per connection, `GET` or
`HEAD` of /metrics (a query string is ignored) gets 200, any other path 404,
another method 405, a request line that is not HTTP or a head over 8 KiB
400, and a client that has not sent its whole head within 3 s is closed
(408); a scrape that fails to render is a 500 and a warning in the log.  At most 32 scrape connections at once; more are closed at once.
Nothing a client sends can make the node wait: every read is handled as it
arrives, and the reply is queued to the transport, never awaited.
"""

from __future__ import annotations

import asyncio

from pynode import info as infomod
from pynode.metrics import (Families, Family, add_cluster_info, add_info, add_slot_migrations,
                            add_slot_stats, parse_info, prometheus_family, render_text)

MAX_HEAD = 8192
HEAD_TIMEOUT = 3.0
MAX_CONNECTIONS = 32
HOT_SLOTS = 10
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found",
           405: b"Method Not Allowed", 408: b"Request Timeout", 500: b"Internal Server Error"}


def _prometheus_client():
    try:
        import prometheus_client
    except ImportError:
        return None
    return prometheus_client


class _Snapshot:
    """A prometheus_client collector over families built for one scrape."""

    def __init__(self, families) -> None:
        self.families = families

    def collect(self):
        yield from self.families


class MetricsEndpoint:
    """srv.metrics: the listener of metrics-port and what a scrape returns."""

    def __init__(self, srv) -> None:
        self.srv = srv
        self.port = 0
        self.servers: list = []      # asyncio servers on metrics-port
        self.socks: list = []        # bound sockets not served yet
        self.conns: set = set()
        self.prom = _prometheus_client()
        self.warned = False

    # ------------------------------------------------------------ listener
    def listen(self, rebind: bool = False) -> None:
        """Serve metrics-port now (0: stop serving), again on every `bind`
        address with `rebind`; OSError when the port cannot be bound (the
        old listener then stays)."""
        srv = self.srv
        port = srv.cfg.int("metrics-port")
        if srv.loop is None or (port == self.port and not rebind):
            return
        socks = srv.listen_sockets(port)       # OSError: nothing changed
        self.close()
        self.port = port
        self.socks = socks
        for s in socks:
            srv.loop.create_task(self._serve(s))
        if port:
            if self.prom is None and not self.warned:
                self.warned = True
                srv.log.notice("metrics-port: prometheus-client is not installed; "
                               "writing the Prometheus text format without it")
            srv.log.notice("Serving Prometheus metrics on port %d (/metrics)" % port)

    async def _serve(self, sock) -> None:
        if sock not in self.socks:
            return                             # closed before it was served
        self.socks.remove(sock)
        server = await self.srv.loop.create_server(lambda: _Scrape(self), sock=sock)
        self.servers.append(server)

    def close(self) -> None:
        for s in self.servers:
            s.close()
        for s in self.socks:
            s.close()
        self.servers = []
        self.socks = []
        self.port = 0

    # ------------------------------------------------------------ content
    def families(self, fam) -> None:
        srv = self.srv
        fam("gauge", "up", "Information about the Redis instance", []).add_metric([], 1)
        add_info(fam, parse_info(infomod.build(srv, ["all"])), [], [])
        cl = srv.cluster
        if cl is None:
            return
        add_cluster_info(fam, {k: str(v) for k, v in cl.info_fields()}, [], [])
        me = cl.state.myself
        fam("gauge", "cluster_slots_migrating", "Slots this node is migrating out "
            "(SETSLOT MIGRATING)", []).add_metric([], len(me.migrating))
        fam("gauge", "cluster_slots_importing", "Slots this node is importing "
            "(SETSLOT IMPORTING)", []).add_metric([], len(me.importing))
        m = srv.migrations
        jobs = []
        for job in m.jobs:
            d = {k.decode(): (v.decode() if isinstance(v, bytes) else v)
                 for k, v in m.valkey_entry(job).items()}
            d["slot_count"] = len(job.slots)
            jobs.append(d)
            if job.active and job.operation == "EXPORT":
                fam("gauge", "cluster_slot_migration_slots_sent",
                    "Slots whose snapshot the source of an atomic migration has sent",
                    ["name"]).add_metric([job.name], len(job.sent))
                fam("gauge", "cluster_slot_migration_keys_sent",
                    "Keys the source of an atomic migration has sent",
                    ["name"]).add_metric([job.name], job.keys_sent)
        add_slot_migrations(fam, jobs, [], [])
        ss = srv.slot_stats
        if ss.counting:
            ss.sync_owners()
            hot = [{"slot": s, **ss.entry(s, True)} for s in ss.ordered("cpu-usec", HOT_SLOTS)]
            add_slot_stats(fam, hot, [], [])

    def render(self) -> bytes:
        if self.prom is None:
            fam = Families(Family)
            self.families(fam)
            return render_text(fam.values())
        fam = Families(prometheus_family)
        self.families(fam)
        reg = self.prom.CollectorRegistry(auto_describe=False)
        reg.register(_Snapshot(list(fam.values())))
        return self.prom.generate_latest(reg)


class _Scrape(asyncio.Protocol):
    """One HTTP connection to metrics-port (asyncio protocol)."""

    def __init__(self, endpoint: MetricsEndpoint) -> None:
        self.ep = endpoint
        self.transport = None
        self.buf = b""
        self.done = False
        self.timer = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        ep = self.ep
        if len(ep.conns) >= MAX_CONNECTIONS:
            self.done = True
            transport.abort()
            return
        ep.conns.add(self)
        self.timer = ep.srv.loop.call_later(HEAD_TIMEOUT, self.respond, 408)

    def connection_lost(self, exc) -> None:
        self.done = True
        self.ep.conns.discard(self)
        if self.timer is not None:
            self.timer.cancel()

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            end = self.buf.find(b"\n\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                self.respond(400)
            return
        line = self.buf.split(b"\n", 1)[0].rstrip(b"\r")
        parts = line.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or not parts[1][:1] == b"/":
            self.respond(400)
        elif parts[0] not in (b"GET", b"HEAD"):
            self.respond(405)
        elif parts[1].split(b"?", 1)[0] != b"/metrics":
            self.respond(404)
        else:
            self.respond(200, head_only=parts[0] == b"HEAD")

    def eof_received(self):
        if not self.done:
            self.respond(400)
        return False

    def respond(self, status: int, head_only: bool = False) -> None:
        if self.done:
            return
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
        if status == 200:
            try:
                body, ctype = self.ep.render(), CONTENT_TYPE
            except Exception as e:  # noqa: BLE001 - a scrape must not take the node down
                self.ep.srv.log.warning("metrics-port: rendering failed: %r" % (e,))
                status = 500
        if status != 200:
            body, ctype = b"%d %s\n" % (status, REASONS[status]), b"text/plain"
        head = [b"HTTP/1.1 %d %s" % (status, REASONS[status]), b"Content-Type: " + ctype,
                b"Content-Length: %d" % len(body), b"Connection: close"]
        if status == 405:
            head.append(b"Allow: GET, HEAD")
        data = b"\r\n".join(head) + b"\r\n\r\n" + (b"" if head_only else body)
        tr = self.transport
        if not tr.is_closing():
            tr.write(data)
            tr.close()
