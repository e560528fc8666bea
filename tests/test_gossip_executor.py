"""gossip/executor.py: the one table from action type to port method, and the save policy."""

from __future__ import annotations

import typing

import pytest

from gossip import actions as A
from gossip.executor import HANDLERS, BusPort, SavePolicy, ServerPort, execute
from gossip.sim import SimBus
from gossip.transport import BusTransport


class Recorder(BusPort, ServerPort):
    """Both ports, recording every call in order."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __getattribute__(self, name):
        if name in _PORT_METHODS:
            calls = object.__getattribute__(self, "calls")
            return lambda *args: calls.append((name, *args))
        return object.__getattribute__(self, name)


_PORT_METHODS = {
    name for cls in (BusPort, ServerPort) for name, v in vars(cls).items()
    if callable(v) and not name.startswith("_")
}

MSG = object()  # the executor passes messages through untouched
LINK = A.LinkInfo(inbound=True, conn_id=7)
ONE_OF_EACH = [
    A.Send("n1", MSG), A.Broadcast(MSG, ("n1", "n2")), A.Reply(LINK, MSG),
    A.Connect("n1", "10.0.0.1", 17000), A.Disconnect("n1"), A.Rename("h", "n1"),
    A.CloseLink(LINK), A.Replicate("p"), A.EmptyData(), A.DropSlotKeys((1, 2)),
    A.DropSlotChannels((3,)), A.Deliver(b"ch", b"m", True), A.PauseClients(5),
    A.UnpauseClients(), A.Wake(1234), A.Log("notice", "hi"), A.SaveConfig(fsync=True),
]


def test_every_action_type_has_exactly_one_handler():
    declared = set(typing.get_args(A.Action))
    assert declared == set(HANDLERS)
    assert {type(a) for a in ONE_OF_EACH} == declared


def test_execute_saves_first_then_runs_in_order():
    r = Recorder()
    execute(ONE_OF_EACH, r, r)
    assert r.calls == [
        ("request_save", True),
        ("send", "n1", MSG), ("broadcast", MSG, ("n1", "n2")), ("reply", LINK, MSG),
        ("connect", "n1", "10.0.0.1", 17000), ("disconnect", "n1"), ("rename", "h", "n1"),
        ("close_link", LINK), ("replicate", "p"), ("empty_data",), ("drop_slot_keys", (1, 2)),
        ("drop_slot_channels", (3,)), ("deliver", b"ch", b"m", True), ("pause_clients", 5),
        ("unpause_clients",), ("wake_at", 1234), ("log", "notice", "hi"),
    ]


def test_an_action_without_a_handler_is_refused():
    class Unknown:
        pass
    r = Recorder()
    with pytest.raises(TypeError, match="no handler for action Unknown"):
        execute([A.Log("notice", "x"), Unknown()], r, r)


@pytest.mark.parametrize("port", [BusTransport, SimBus])
def test_the_buses_implement_every_bus_method(port):
    for name, v in vars(BusPort).items():
        if callable(v) and not name.startswith("_") and name != "broadcast":
            assert getattr(port, name) is not v, f"{port.__name__} lacks {name}"


@pytest.mark.parametrize("cls_name", ["pynode.cluster.ClusterNode", "gossip.sim.SimNode"])
def test_the_servers_implement_every_server_method(cls_name):
    mod, _, name = cls_name.rpartition(".")
    cls = getattr(__import__(mod, fromlist=[name]), name)
    assert issubclass(cls, ServerPort)
    for meth, v in vars(ServerPort).items():
        if callable(v) and not meth.startswith("_"):
            assert getattr(cls, meth) is not v, f"{cls.__name__} lacks {meth}"


def test_save_policy_fsync_now_others_delayed_and_coalesced():
    writes: list[bool] = []
    timers: list = []
    p = SavePolicy(writes.append, lambda ms, fn: timers.append((ms, fn)))
    p.request(False)
    p.request(False)
    assert writes == [] and len(timers) == 1 and timers[0][0] == SavePolicy.DELAY_MS
    p.request(True)  # an epoch or a vote: at once, durably; the pending one is covered
    assert writes == [True] and not p.pending
    timers[0][1]()  # the timer fires with nothing pending: no write
    assert writes == [True]
    p.request(False)
    p.flush()  # an admin command answers only after its change is written
    assert writes == [True, False] and p.saves == 2
    p.request(False)
    p.forget()  # the process died
    timers[-1][1]()
    assert writes == [True, False]


def test_save_policy_without_a_loop_writes_at_once_durably():
    writes: list[bool] = []
    p = SavePolicy(writes.append, None)
    p.request(False)
    assert writes == [True]
