"""nodes.conf and CLUSTER NODES: render and parse Redis 7.0's format.

One line per node::

    <id> <ip>:<port>@<cport>[,<hostname>] <flags> <primary-id|-> <ping-sent>
        <pong-recv> <config-epoch> <link-state> <slot> ...

flags in Redis's order (myself, master, slave, fail?, fail, handshake, noaddr,
nofailover) or ``noflags``; slots as ``a-b`` ranges or single slots, then for
myself ``[slot->-id]`` (migrating) and ``[slot-<-id]`` (importing). A replica's
config epoch is printed as its primary's. The file ends with
``vars currentEpoch N lastVoteEpoch N``; handshake nodes are not saved.

:func:`parse` is all-or-nothing: a corrupt or truncated file raises
:class:`NodesConfError` naming the line; nothing is half-loaded. An empty file
means "no configuration yet" (``None``), as Redis treats a zero-length file.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from gossip.bitmap import CLUSTER_SLOTS, slot_ranges
from gossip.node import (
    FAIL,
    HANDSHAKE,
    MASTER,
    MYSELF,
    NOADDR,
    NOFAILOVER,
    PFAIL,
    SLAVE,
    Node,
    is_valid_node_id,
)

if TYPE_CHECKING:  # pragma: no cover
    from gossip.state import ClusterState

#: (flag name, printed name) in the order Redis prints them.
PRINTED_FLAGS = (
    (MYSELF, "myself"),
    (MASTER, "master"),
    (SLAVE, "slave"),
    (PFAIL, "fail?"),
    (FAIL, "fail"),
    (HANDSHAKE, "handshake"),
    (NOADDR, "noaddr"),
    (NOFAILOVER, "nofailover"),
)
_PARSED_FLAGS = {printed: name for name, printed in PRINTED_FLAGS}

WHAT_TO_DO = (
    "fix the line by hand, or move the file away to start this node as a new empty "
    "node (then CLUSTER MEET it and reassign its slots)"
)


class NodesConfError(Exception):
    """A corrupt or truncated nodes.conf. Start-up must stop."""

    def __init__(self, line_number: int, line: str, reason: str, what_to_do: str = WHAT_TO_DO):
        self.line_number = line_number
        self.line = line
        self.reason = reason
        self.what_to_do = what_to_do
        super().__init__(
            f'Unrecoverable error: corrupted cluster config file "{line}" '
            f"(line {line_number}: {reason}). To recover: {what_to_do}."
        )


@dataclass(frozen=True)
class NodeRecord:
    """One nodes.conf line, parsed."""

    id: str
    ip: str
    port: int
    cport: int
    flags: frozenset[str]
    primary_id: str | None = None
    ping_sent: int = 0
    pong_received: int = 0
    config_epoch: int = 0
    link_state: str = "disconnected"
    slots: tuple[tuple[int, int], ...] = ()  # canonical: merged, ascending (start, end) ranges
    migrating: tuple[tuple[int, str], ...] = ()  # (slot, node id), ascending slots
    importing: tuple[tuple[int, str], ...] = ()
    hostname: str = ""


@dataclass(frozen=True)
class NodesConf:
    nodes: tuple[NodeRecord, ...]
    current_epoch: int = 0
    last_vote_epoch: int = 0

    @property
    def myself(self) -> NodeRecord:
        return next(n for n in self.nodes if MYSELF in n.flags)


# --------------------------------------------------------------------------- render


def render_flags(flags: Iterable[str]) -> str:
    flags = set(flags)
    out = [printed for name, printed in PRINTED_FLAGS if name in flags]
    return ",".join(out) if out else "noflags"


@functools.lru_cache(maxsize=256)
def slots_text(ranges: tuple[tuple[int, int], ...]) -> str:
    """The slot part of a line, e.g. ``0-99 200 300-310``.  Cached: nodes.conf is written on
    every SETSLOT and most nodes' slots did not change since the last write."""
    return " ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def format_record(r: NodeRecord) -> str:
    parts = [
        r.id,
        f"{r.ip}:{r.port}@{r.cport}" + (f",{r.hostname}" if r.hostname else ""),
        render_flags(r.flags),
        r.primary_id or "-",
        str(r.ping_sent),
        str(r.pong_received),
        str(r.config_epoch),
        r.link_state,
    ]
    if r.slots:
        parts.append(slots_text(r.slots))
    # Redis prints, per slot ascending, migrating if set else importing.
    mig = dict(r.migrating)
    imp = dict(r.importing)
    for slot in sorted(set(mig) | set(imp)):
        if slot in mig:
            parts.append(f"[{slot}->-{mig[slot]}]")
        else:
            parts.append(f"[{slot}-<-{imp[slot]}]")
    return " ".join(parts)


def format_conf(conf: NodesConf) -> str:
    lines = [format_record(r) for r in conf.nodes]
    lines.append(f"vars currentEpoch {conf.current_epoch} lastVoteEpoch {conf.last_vote_epoch}")
    return "\n".join(lines) + "\n"


def record_from_node(node: Node, state: "ClusterState", use_pport: bool = False) -> NodeRecord:
    epoch = node.config_epoch
    if node.is_replica and node.primary_id is not None:
        primary = state.nodes.get(node.primary_id)
        if primary is not None:
            epoch = primary.config_epoch
    mine = node.is_myself
    return NodeRecord(
        id=node.id,
        ip=node.ip,
        port=node.pport if use_pport and node.pport else node.port,
        cport=node.cport,
        flags=frozenset(node.flags),
        primary_id=node.primary_id,
        ping_sent=node.ping_sent,
        pong_received=node.pong_received,
        config_epoch=epoch,
        link_state=node.link_state,
        slots=node.slot_ranges(),
        migrating=tuple(sorted(node.migrating.items())) if mine else (),
        importing=tuple(sorted(node.importing.items())) if mine else (),
        hostname=node.hostname,
    )


def render_nodes_line(node: Node, state: "ClusterState", use_pport: bool = False) -> str:
    """One CLUSTER NODES line (no newline); ``myself`` appears on the local node.
    ``use_pport``: a plaintext client of a TLS cluster is shown the plaintext ports."""
    return format_record(record_from_node(node, state, use_pport))


def render_cluster_nodes(state: "ClusterState", use_pport: bool = False) -> str:
    """The CLUSTER NODES reply: every node, handshake ones included."""
    return "".join(render_nodes_line(n, state, use_pport) + "\n" for n in state.nodes.values())


def conf_from_state(state: "ClusterState") -> NodesConf:
    return NodesConf(
        nodes=tuple(record_from_node(n, state) for n in state.nodes.values() if not n.in_handshake),
        current_epoch=state.current_epoch,
        last_vote_epoch=state.last_vote_epoch,
    )


def render(state: "ClusterState") -> str:
    """The nodes.conf text for ``state``."""
    return format_conf(conf_from_state(state))


# --------------------------------------------------------------------------- parse


def _uint(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise ValueError(text)
    return int(text)


def _slot(text: str) -> int:
    s = _uint(text)
    if s >= CLUSTER_SLOTS:
        raise ValueError(text)
    return s


def parse(text: str) -> NodesConf | None:
    """Parse nodes.conf text. ``None`` for an empty file (no config yet)."""
    if text == "":
        return None
    lines = text.split("\n")
    if lines[-1] != "":
        raise NodesConfError(len(lines), lines[-1], "the last line is cut short (no newline): file truncated")
    lines.pop()

    records: list[NodeRecord] = []
    seen: dict[str, int] = {}
    slot_line: dict[int, int] = {}
    vars_: dict[str, int] = {}
    vars_line = 0
    myself_line = 0

    for number, line in enumerate(lines, 1):
        if line.strip() == "":
            continue  # Redis pads a shrunk file with newlines

        def bad(reason: str) -> NodesConfError:
            return NodesConfError(number, line, reason)

        argv = line.split()
        if argv[0].lower() == "vars":
            if len(argv) % 2 != 1:
                raise bad("'vars' needs name/value pairs")
            for name, value in zip(argv[1::2], argv[2::2]):
                key = name.lower()
                if key in ("currentepoch", "lastvoteepoch"):
                    try:
                        vars_[key] = _uint(value)
                    except ValueError:
                        raise bad(f"{name} is not a number: {value!r}") from None
                # unknown variables are skipped, as Redis does
            vars_line = number
            continue
        if vars_line:
            raise bad("node line after the 'vars' line")
        if len(argv) < 8:
            raise bad(f"a node line needs at least 8 fields, found {len(argv)}")

        nid = argv[0]
        if not is_valid_node_id(nid):
            raise bad(f"bad node id {nid!r}")
        if nid in seen:
            raise bad(f"node {nid} is listed twice (also line {seen[nid]})")
        seen[nid] = number

        addr, _, hostname = argv[1].partition(",")
        host, colon, ports = addr.rpartition(":")
        if not colon:
            raise bad(f"bad address {argv[1]!r}: expected ip:port@cport")
        port_s, at, cport_s = ports.partition("@")
        try:
            port = _uint(port_s)
            cport = _uint(cport_s) if at else port + 10000
            if port > 65535 or cport > 65535:
                raise ValueError
        except ValueError:
            raise bad(f"bad port in {argv[1]!r}") from None

        flags: set[str] = set()
        for f in argv[2].split(","):
            f = f.lower()
            if f == "noflags":
                continue
            if f not in _PARSED_FLAGS:
                raise bad(f"unknown flag {f!r}")
            flags.add(_PARSED_FLAGS[f])
        if MASTER in flags and SLAVE in flags:
            raise bad("a node cannot be both master and slave")
        if MYSELF in flags:
            if myself_line:
                raise bad(f"a second 'myself' node (first on line {myself_line})")
            myself_line = number
            if flags & {PFAIL, FAIL, HANDSHAKE, NOADDR} or not flags & {MASTER, SLAVE}:
                raise bad("the 'myself' node must be a master or a slave without failure flags")

        primary_id = None
        if argv[3] != "-":
            if not is_valid_node_id(argv[3]):
                raise bad(f"bad primary id {argv[3]!r}")
            if argv[3] == nid:
                raise bad("a node cannot replicate itself")
            primary_id = argv[3]
        if MYSELF in flags and (SLAVE in flags) != (primary_id is not None):
            raise bad("the 'myself' node is a slave exactly when it names a primary")

        try:
            ping_sent = _uint(argv[4])
            pong_received = _uint(argv[5])
            config_epoch = _uint(argv[6])
        except ValueError:
            raise bad("ping-sent, pong-recv and config-epoch must be numbers") from None
        link_state = argv[7]
        if link_state not in ("connected", "disconnected"):
            raise bad(f"bad link state {link_state!r}")

        slots: set[int] = set()
        migrating: dict[int, str] = {}
        importing: dict[int, str] = {}
        for tok in argv[8:]:
            if tok.startswith("["):
                if not tok.endswith("]"):
                    raise bad(f"bad slot token {tok!r}")
                inner = tok[1:-1]
                if "->-" in inner:
                    s, other = inner.split("->-", 1)
                    table = migrating
                elif "-<-" in inner:
                    s, other = inner.split("-<-", 1)
                    table = importing
                else:
                    raise bad(f"bad migrating/importing slot {tok!r}")
                try:
                    slot = _slot(s)
                except ValueError:
                    raise bad(f"bad slot in {tok!r}") from None
                if not is_valid_node_id(other):
                    raise bad(f"bad node id in {tok!r}")
                if MYSELF not in flags:
                    raise bad(f"{tok!r}: only the 'myself' node has migrating/importing slots")
                if slot in migrating or slot in importing:
                    raise bad(f"slot {slot} is migrating/importing twice")
                table[slot] = other
                continue
            a, dash, b = tok.partition("-")
            try:
                start = _slot(a)
                stop = _slot(b) if dash else start
            except ValueError:
                raise bad(f"bad slot or slot range {tok!r}") from None
            if start > stop:
                raise bad(f"empty slot range {tok!r}")
            for s in range(start, stop + 1):
                if s in slot_line:
                    raise bad(f"slot {s} is also assigned on line {slot_line[s]}")
                slot_line[s] = number
                slots.add(s)
        if slots and SLAVE in flags:
            raise bad("a slave cannot own slots")

        records.append(
            NodeRecord(
                id=nid, ip=host, port=port, cport=cport, flags=frozenset(flags),
                primary_id=primary_id, ping_sent=ping_sent, pong_received=pong_received,
                config_epoch=config_epoch, link_state=link_state, slots=tuple(slot_ranges(slots)),
                migrating=tuple(sorted(migrating.items())),
                importing=tuple(sorted(importing.items())), hostname=hostname,
            )
        )

    last = len(lines)
    if not myself_line:
        raise NodesConfError(last, lines[-1] if lines else "", "no 'myself' node in the file")
    if not vars_line:
        raise NodesConfError(last, lines[-1] if lines else "", "no 'vars' line at the end: file truncated")
    myself = next(r for r in records if MYSELF in r.flags)
    if myself.primary_id is not None and myself.primary_id not in seen:
        raise NodesConfError(myself_line, lines[myself_line - 1], "the primary of 'myself' has no line of its own")
    return NodesConf(
        nodes=tuple(records),
        current_epoch=vars_.get("currentepoch", 0),
        last_vote_epoch=vars_.get("lastvoteepoch", 0),
    )
