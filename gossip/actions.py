"""The I/O contract of the cluster state machine: what comes in, what goes out.

Inputs describe the link a message came on (:class:`LinkInfo`). Outputs are
actions, small frozen dataclasses the transport executes in order:

* :class:`Connect` opens an outbound bus link to a node (keyed by node id);
  messages sent to that id before it is up are queued by the transport. When the
  connection fails or later drops, the transport calls ``on_link_down(node_id)``.
* :class:`Send` writes a message on the outbound link of a node;
  :class:`Reply` writes on the very link a message came in on (PONG to a PING);
  :class:`Broadcast` sends one message to the listed nodes' outbound links.
* :class:`Disconnect` closes a node's outbound link (no on_link_down follows).
* :class:`Rename` re-keys an outbound link when a handshake node learns its id.
* :class:`SaveConfig` asks for nodes.conf to be written (render it from the state
  when executing; several in a row may be coalesced).
* :class:`Replicate`, :class:`EmptyData`, :class:`DropSlotKeys` and
  :class:`Deliver` are for the server (replication, keyspace, pub/sub).
* :class:`PauseClients` / :class:`UnpauseClients` are for the server too: a primary
  whose replica asked for a manual failover (CLUSTER FAILOVER) pauses its clients'
  writes (Redis's pauseClients(CLIENT_PAUSE_WRITE)) until ``until_ms`` or until the
  UnpauseClients that ends the manual failover (done, timed out, or this node became
  a replica). After pausing, the server reports its (now final) replication offset
  with ``state.set_repl_offset(offset)`` (its 10 Hz cron does): the PAUSED flag goes
  out in headers only after that, so the replica never waits for a pre-pause offset.
* :class:`Wake` asks to be woken at a time: the transport calls
  ``on_timer(now)`` then (once, however many Wakes came for it; a later Wake
  replaces an earlier one). The state uses it where Redis's beforeSleep would
  act as soon as a time has come (a replica's election start) rather than at
  the next 100 ms tick; the tick's checks stay the backstop.
* :class:`Log` is a log line at a Redis level (debug/verbose/notice/warning).
"""

from __future__ import annotations

from dataclasses import dataclass

from gossip.codec import Message


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """Where a message came from.

    Outbound links (we connected) are named by the node id they belong to.
    Inbound links (they connected) have no node; ``conn_id`` is the transport's
    handle for the connection, ``peer_ip`` the remote address, and ``local_ip``
    the address of our end (used to learn our own ip from a MEET, as Redis).
    """

    inbound: bool
    node_id: str | None = None
    peer_ip: str = ""
    local_ip: str = ""
    conn_id: int = 0


@dataclass(frozen=True, slots=True)
class Connect:
    node_id: str
    ip: str
    cport: int


@dataclass(frozen=True, slots=True)
class Disconnect:
    node_id: str


@dataclass(frozen=True, slots=True)
class Rename:
    old_id: str
    new_id: str


@dataclass(frozen=True, slots=True)
class Send:
    node_id: str
    msg: Message


@dataclass(frozen=True, slots=True)
class Reply:
    link: LinkInfo
    msg: Message


@dataclass(frozen=True, slots=True)
class Broadcast:
    msg: Message
    to: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SaveConfig:
    fsync: bool = False


@dataclass(frozen=True, slots=True)
class Replicate:
    """Replicate from this primary (its address is in the node table), or, with
    ``None``, stop replicating and act as a primary."""

    primary_id: str | None


@dataclass(frozen=True, slots=True)
class EmptyData:
    """Drop the whole keyspace (CLUSTER RESET of a replica)."""


@dataclass(frozen=True, slots=True)
class DropSlotKeys:
    """These slots were taken over by another primary: delete our keys in them."""

    slots: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Deliver:
    """A PUBLISH (``shard``: a PUBLISHSHARD) from the bus, to deliver to local
    subscribers."""

    channel: bytes
    message: bytes
    shard: bool = False


@dataclass(frozen=True, slots=True)
class DropSlotChannels:
    """These slots left my shard (the primary I am or follow lost them): drop
    their shard channels and tell the subscribers (removeChannelsInSlot)."""

    slots: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PauseClients:
    """Stop executing clients' write commands until ``until_ms`` (the state's clock, ms)
    or an :class:`UnpauseClients`, then report the offset via ``set_repl_offset``."""

    until_ms: int


@dataclass(frozen=True, slots=True)
class UnpauseClients:
    """End the pause started by :class:`PauseClients` (the manual failover is over)."""


@dataclass(frozen=True, slots=True)
class CloseLink:
    """Free the link a message came in on (a dropped packet with
    ``close_link_on_drop``); an outbound one is reported down as usual."""

    link: LinkInfo


@dataclass(frozen=True, slots=True)
class Wake:
    """Call ``on_timer`` at ``at_ms`` (the state's clock, ms), replacing any earlier Wake."""

    at_ms: int


@dataclass(frozen=True, slots=True)
class Log:
    level: str  # debug | verbose | notice | warning
    text: str


Action = (
    Connect | Disconnect | Rename | Send | Reply | Broadcast | SaveConfig | Replicate
    | EmptyData | DropSlotKeys | DropSlotChannels | Deliver | PauseClients | UnpauseClients
    | CloseLink | Wake | Log
)
