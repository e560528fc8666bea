"""The one interpreter of the state machine's actions, and the nodes.conf save policy.

The state machine returns actions (gossip/actions.py); three programs carry them
out: the asyncio transport (gossip/transport.py) with the server
(pynode/cluster.py ClusterNode), and the simulator (gossip/sim.py). Each
implements two small ports, and :func:`execute` maps every action type to one
port method through one table, :data:`HANDLERS`:

* :class:`BusPort`: what moves frames (send, broadcast, reply, connect,
  disconnect, rename, close a link) and runs the state's clock (a wake-up);
* :class:`ServerPort`: what the node around the state does (save nodes.conf,
  replicate, drop keys or shard channels, deliver a PUBLISH, pause clients, log).

A new action type is one entry in :data:`HANDLERS` (with :func:`handles`) and one
method on the port that carries it out; :func:`execute` refuses an action type it
has no entry for, so a forgotten one fails loudly in the first test that meets it.

Order, as Redis's clusterBeforeSleep: a SaveConfig runs first (the state it
renders is already final, and an epoch or a vote must be on disk before any
message that announces it leaves); the other actions run in the order given.

:class:`SavePolicy` is Redis's rule for writing nodes.conf, shared by the node
and the simulator so a simulated crash loses exactly what a real one loses: a
save that asks for fsync (epochs, votes, roles) is written at once and durably;
any other (slot maps learned from the bus) waits up to ``DELAY_MS`` and is then
written in place, coalesced with the saves asked for meanwhile. A process that
dies in that window restarts from the previous text.
"""

from __future__ import annotations

from typing import Any, Callable

from gossip import actions as A


class BusPort:
    """Moves frames. Every method must be overridden by a real bus."""

    def send(self, node_id: str, msg) -> None:
        raise NotImplementedError

    def broadcast(self, msg, to: tuple[str, ...]) -> None:
        for nid in to:
            self.send(nid, msg)

    def reply(self, link: A.LinkInfo, msg) -> None:
        raise NotImplementedError

    def connect(self, node_id: str, ip: str, cport: int) -> None:
        raise NotImplementedError

    def disconnect(self, node_id: str) -> None:
        raise NotImplementedError

    def rename(self, old_id: str, new_id: str) -> None:
        raise NotImplementedError

    def close_link(self, link: A.LinkInfo) -> None:
        raise NotImplementedError

    def wake_at(self, at_ms: int) -> None:
        raise NotImplementedError


class NoBus(BusPort):
    """A bus that is not up yet (start-up): frames and links have nowhere to go."""

    def send(self, node_id, msg) -> None:
        pass

    def broadcast(self, msg, to) -> None:
        pass

    def reply(self, link, msg) -> None:
        pass

    def connect(self, node_id, ip, cport) -> None:
        pass

    def disconnect(self, node_id) -> None:
        pass

    def rename(self, old_id, new_id) -> None:
        pass

    def close_link(self, link) -> None:
        pass

    def wake_at(self, at_ms) -> None:
        pass  # the cron, once it runs, does what was due


class ServerPort:
    """The node around the state machine. The defaults do nothing (a bare bus
    with no server, as in transport tests); the node and the simulator override."""

    def request_save(self, fsync: bool) -> None:
        pass

    def replicate(self, primary_id: str | None) -> None:
        pass

    def empty_data(self) -> None:
        pass

    def drop_slot_keys(self, slots: tuple[int, ...]) -> None:
        pass

    def drop_slot_channels(self, slots: tuple[int, ...]) -> None:
        pass

    def deliver(self, channel: bytes, message: bytes, shard: bool) -> None:
        pass

    def pause_clients(self, until_ms: int) -> None:
        pass

    def unpause_clients(self) -> None:
        pass

    def log(self, level: str, text: str) -> None:
        pass


Handler = Callable[[BusPort, ServerPort, Any], None]
HANDLERS: dict[type, Handler] = {}


def handles(action_type: type) -> Callable[[Handler], Handler]:
    """Register the handler of one action type (one per type)."""
    def register(fn: Handler) -> Handler:
        assert action_type not in HANDLERS, f"two handlers for {action_type.__name__}"
        HANDLERS[action_type] = fn
        return fn
    return register


# ---------------------------------------------------------------- the bus's share
handles(A.Send)(lambda bus, node, a: bus.send(a.node_id, a.msg))
handles(A.Broadcast)(lambda bus, node, a: bus.broadcast(a.msg, a.to))
handles(A.Reply)(lambda bus, node, a: bus.reply(a.link, a.msg))
handles(A.Connect)(lambda bus, node, a: bus.connect(a.node_id, a.ip, a.cport))
handles(A.Disconnect)(lambda bus, node, a: bus.disconnect(a.node_id))
handles(A.Rename)(lambda bus, node, a: bus.rename(a.old_id, a.new_id))
handles(A.CloseLink)(lambda bus, node, a: bus.close_link(a.link))
handles(A.Wake)(lambda bus, node, a: bus.wake_at(a.at_ms))
# ---------------------------------------------------------------- the server's share
handles(A.SaveConfig)(lambda bus, node, a: node.request_save(a.fsync))
handles(A.Replicate)(lambda bus, node, a: node.replicate(a.primary_id))
handles(A.EmptyData)(lambda bus, node, a: node.empty_data())
handles(A.DropSlotKeys)(lambda bus, node, a: node.drop_slot_keys(a.slots))
handles(A.DropSlotChannels)(lambda bus, node, a: node.drop_slot_channels(a.slots))
handles(A.Deliver)(lambda bus, node, a: node.deliver(a.channel, a.message, a.shard))
handles(A.PauseClients)(lambda bus, node, a: node.pause_clients(a.until_ms))
handles(A.UnpauseClients)(lambda bus, node, a: node.unpause_clients())
handles(A.Log)(lambda bus, node, a: node.log(a.level, a.text))


def execute(actions: list, bus: BusPort, server: ServerPort) -> None:
    """Carry out ``actions``: SaveConfig first, then the others in order."""
    table = HANDLERS
    save = A.SaveConfig
    rest = False
    for a in actions:
        if type(a) is save:
            server.request_save(a.fsync)
        else:
            rest = True
    if not rest:
        return
    for a in actions:
        t = type(a)
        if t is save:
            continue
        try:
            handler = table[t]
        except KeyError:
            raise TypeError(f"no handler for action {t.__name__} (gossip/executor.py HANDLERS)") from None
        handler(bus, server, a)


class SavePolicy:
    """When nodes.conf is written (Redis's clusterSaveConfigOrDie / CLUSTER_TODO_SAVE_CONFIG).

    ``write(fsync)`` renders and writes the file (durably with ``fsync``: temp +
    fsync + rename; otherwise one in-place write). ``schedule(delay_ms, fn)``
    runs ``fn`` later on the owner's clock; None means there is no loop yet
    (start-up), and every save is written at once, durably.
    """

    DELAY_MS = 100

    def __init__(self, write: Callable[[bool], None],
                 schedule: Callable[[int, Callable[[], None]], None] | None) -> None:
        self.write = write
        self.schedule = schedule
        self.pending = False
        self.saves = 0

    def request(self, fsync: bool) -> None:
        """A SaveConfig action."""
        if fsync or self.schedule is None:
            self.pending = False
            self._write(True)
        elif not self.pending:
            # changes learned from the bus are saved at most every DELAY_MS:
            # during a reshard every node hears of a slot move several times a
            # second, and what the cluster told us it tells us again after a
            # crash; an admin command saves before it answers (flush())
            self.pending = True
            self.schedule(self.DELAY_MS, self.flush)

    def flush(self, fsync: bool = False) -> None:
        """Write now if a save is pending (or unconditionally with ``fsync``)."""
        if not (fsync or self.pending):
            return
        self.pending = False
        self._write(fsync)

    def forget(self) -> None:
        """The process died: a pending save never happens."""
        self.pending = False

    def _write(self, fsync: bool) -> None:
        self.write(fsync)
        self.saves += 1
