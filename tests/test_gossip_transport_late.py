"""The bus transport's clock: a cron tick that runs late (the loop was
busy, or the process starved of CPU) first lets the loop read what arrived
meanwhile, so failure detection judges peers by the PONGs already received, not
by ones still unread in our socket buffers. uvloop runs due timers before it
polls the sockets; pynode runs on uvloop, so the tests do too. A Wake runs
``on_timer`` once, at the last time asked for."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time

import uvloop

from gossip import actions as A
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

    def on_timer(self, now):
        self.order.append(f"timer {now}")
        return super().on_timer(now)


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


async def _wakes(cport: int) -> tuple[int, list[str], list[str]]:
    st = Recorder("a" * 40, "127.0.0.1", cport - 10000, cport, TIMEOUT, random.Random(1), T0)
    bus = T.BusTransport(st, ServerPort(), hosts=["127.0.0.1"], cport=cport)
    await bus.start()
    try:
        t = bus.clock()
        bus.run([A.Wake(t + 60), A.Wake(t + 150)])  # the later one replaces the first
        await asyncio.sleep(0.4)
        timers = [x for x in st.order if x.startswith("timer")]
        st.order.clear()
        bus.paused = True  # DEBUG PAUSE-CRON: no timer either
        bus.run([A.Wake(bus.clock() + 10)])
        await asyncio.sleep(0.1)
        paused = [x for x in st.order if x.startswith("timer")]
        bus.paused = False
        bus.run([A.Wake(bus.clock() + 50)])
        bus.close()  # cancels it
        await asyncio.sleep(0.1)
        return t, timers, paused + [x for x in st.order if x.startswith("timer")]
    finally:
        bus.close()


def test_a_wake_runs_on_timer_once_at_the_last_time_asked():
    (port,) = free_ports(1)
    loop = uvloop.new_event_loop()
    try:
        t, timers, none = loop.run_until_complete(_wakes(port + 10000))
    finally:
        loop.close()
    (timer,) = timers
    assert int(timer.split()[1]) >= t + 149  # (the loop's clock may round a ms down)
    assert none == []
