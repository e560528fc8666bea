"""The bus transport on a late event loop: a cron tick that runs late (the loop was
busy, or the process starved of CPU) first lets the loop read what arrived
meanwhile, so failure detection judges peers by the PONGs already received, not
by ones still unread in our socket buffers. uvloop runs due timers before it
polls the sockets; pynode runs on uvloop, so the test does too."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time

import uvloop

from gossip import transport as T
from gossip.codec import MsgType, encode
from gossip.executor import ServerPort
from gossip.state import ClusterState
from tests.cluster_helpers import free_ports
from tests.test_gossip_state import T0, TIMEOUT, msg


class Recorder(ClusterState):
    """A real state that notes the order of ticks and messages."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.order: list[str] = []

    def on_tick(self, now):
        self.order.append("tick")
        return super().on_tick(now)

    def on_message(self, link, m, now):
        self.order.append("msg")
        return super().on_message(link, m, now)


class Slow(asyncio.Protocol):
    """A client whose command takes 400 ms: the loop is busy inside an I/O callback."""

    def data_received(self, data):
        time.sleep(0.4)


async def _late_tick_reads_the_sockets_first(cport: int, port: int) -> tuple[list[str], int, int]:
    loop = asyncio.get_running_loop()
    st = Recorder("a" * 40, "127.0.0.1", cport - 10000, cport, TIMEOUT, random.Random(1), T0)
    bus = T.BusTransport(st, ServerPort(), hosts=["127.0.0.1"], cport=cport)
    await bus.start()
    slow = await loop.create_server(Slow, "127.0.0.1", port)
    peer = socket.create_connection(("127.0.0.1", cport))
    client = socket.create_connection(("127.0.0.1", port))
    try:
        await asyncio.sleep(0.35)  # a few ticks on time
        assert st.order and set(st.order) == {"tick"}
        assert bus.stats_late_ticks == 0
        st.order.clear()
        # a slow command starts; a PING reaches the bus while it runs
        ping = threading.Timer(0.1, peer.sendall, (encode(msg(MsgType.PING, "b", port=7001)),))
        ping.start()
        client.sendall(b"x")
        await asyncio.sleep(0.6)
        ping.join()
        return list(st.order), bus.stats_late_ticks, bus.max_tick_lateness_ms
    finally:
        peer.close()
        client.close()
        slow.close()
        bus.close()


def test_a_late_tick_runs_after_what_arrived_during_the_stall():
    port, other = free_ports(2)
    cport = port + 10000
    loop = uvloop.new_event_loop()
    try:
        order, late, worst = loop.run_until_complete(_late_tick_reads_the_sockets_first(cport, other))
    finally:
        loop.close()
    assert order[0] == "msg", order  # the message read before the late cron
    assert "tick" in order
    assert late >= 1 and worst >= 200
