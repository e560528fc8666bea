"""Cluster bus message codec: frames of msgpack, sans-I/O.

A frame is a 4-byte big-endian payload length followed by a msgpack map::

    {"sig": b"PYnB", "ver": 1, "type": <int>,
     "hdr": {"id", "cur", "cfg", "flags", "primary", "slots", "ip", "port",
             "cport", "offset", "state", "mflags", "hostname", "pport"?},
     "gossip": [[id, ping_sent, pong_received, ip, port, cport, flags], ...],
     "body": {...} | nil}

``flags`` are bitmasks of :data:`gossip.node.FLAG_BITS` (unknown bits ignored);
``slots`` are 2048-byte bitmaps (:mod:`gossip.bitmap`). Bodies: FAIL ``{"id"}``,
PUBLISH and PUBLISHSHARD ``{"channel", "message"}`` (bytes), UPDATE ``{"id", "cfg", "slots"}``;
the other types carry none. Unknown map keys are ignored (room to grow);
anything missing, mistyped or out of range is a :class:`BusError`.

:class:`FrameDecoder` turns arbitrary bytes into :class:`Message` objects or a
:class:`BusError`, never any other exception: the transport closes that link.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import msgpack

from gossip.bitmap import BITMAP_BYTES
from gossip.node import NO_ID_NUMBER, bits_to_flags, flags_to_bits, is_valid_node_id

SIGNATURE = b"PYnB"
PROTOCOL_VERSION = 1
MAX_FRAME = 1 << 20  # payload bytes
LENGTH_PREFIX = 4

U64_MAX = (1 << 64) - 1
IP_MAX_LEN = 46  # NET_IP_STR_LEN
HOSTNAME_MAX_LEN = 255


class MsgType(enum.IntEnum):
    """Message types, numbered as Redis's CLUSTERMSG_TYPE_*."""

    PING = 0
    PONG = 1
    MEET = 2
    FAIL = 3
    PUBLISH = 4
    FAILOVER_AUTH_REQUEST = 5
    FAILOVER_AUTH_ACK = 6
    UPDATE = 7
    MFSTART = 8
    # 9 is Redis's MODULE (module messages), not used here
    PUBLISHSHARD = 10

    @property
    def stat_name(self) -> str:
        """The name CLUSTER INFO uses: cluster_stats_messages_<name>_sent."""
        return _STAT_NAMES[self]


_STAT_NAMES = {
    MsgType.PING: "ping",
    MsgType.PONG: "pong",
    MsgType.MEET: "meet",
    MsgType.FAIL: "fail",
    MsgType.PUBLISH: "publish",
    MsgType.FAILOVER_AUTH_REQUEST: "auth-req",
    MsgType.FAILOVER_AUTH_ACK: "auth-ack",
    MsgType.UPDATE: "update",
    MsgType.MFSTART: "mfstart",
    MsgType.PUBLISHSHARD: "publishshard",
}

PING_LIKE = frozenset((MsgType.PING, MsgType.PONG, MsgType.MEET))

#: Header ``mflags`` bits, as Redis's CLUSTERMSG_FLAG0_*: a primary sets PAUSED while a
#: manual failover of one of its replicas is in progress (its clients are paused, so the
#: offset it sends is final); a replica sets FORCEACK on a FAILOVER_AUTH_REQUEST of a
#: manual failover (primaries vote although its primary is not failed).
MF_PAUSED = 1 << 0
MF_FORCEACK = 1 << 1


class BusError(Exception):
    """Bad bytes on a bus link. ``reason`` says what; the link must be closed.

    ``messages`` holds the messages decoded from the same feed() call before the
    bad frame (the transport may process them before closing the link).
    """

    def __init__(self, reason: str, messages: list | None = None):
        super().__init__(reason)
        self.reason = reason
        self.messages: list[Message] = messages or []


@dataclass(frozen=True, slots=True)
class Header:
    """The sender's view of itself, on every message."""

    sender: str
    current_epoch: int
    config_epoch: int  # its primary's when the sender is a replica
    flags: frozenset[str]
    primary_id: str | None
    slots: bytes  # 2048-byte bitmap (its primary's when a replica)
    ip: str  # announced ip, "" to let the receiver use the link's peer address
    port: int
    cport: int
    offset: int  # replication offset
    state: str  # "ok" | "fail": the sender's view of the cluster
    mflags: int = 0  # MF_PAUSED | MF_FORCEACK (manual failover)
    hostname: str = ""
    pport: int = 0  # the plaintext client port when port is the TLS one (tls-cluster)


# The messages and their gossip entries are frozen dataclasses with their own
# __init__: the generated one of a frozen dataclass looks object.__setattr__
# up for each field, which made building an entry 2-2.5x slower (a simulated
# 1000-node cluster builds millions).
_setattr = object.__setattr__


@dataclass(frozen=True, slots=True, init=False)
class GossipEntry:
    node_id: str
    ping_sent: int
    pong_received: int
    ip: str
    port: int
    cport: int
    flags: frozenset[str]
    #: gossip.node.id_number(node_id) when the sender's table knows it (in one
    #: process: never on the wire), NO_ID_NUMBER otherwise
    num: int = field(default=NO_ID_NUMBER, compare=False, repr=False)

    def __init__(self, node_id: str, ping_sent: int, pong_received: int, ip: str, port: int,
                 cport: int, flags: frozenset[str], num: int = NO_ID_NUMBER) -> None:
        s = _setattr
        s(self, "node_id", node_id)
        s(self, "ping_sent", ping_sent)
        s(self, "pong_received", pong_received)
        s(self, "ip", ip)
        s(self, "port", port)
        s(self, "cport", cport)
        s(self, "flags", flags)
        s(self, "num", num)


@dataclass(frozen=True, slots=True)
class FailBody:
    node_id: str


@dataclass(frozen=True, slots=True)
class PublishBody:
    channel: bytes
    message: bytes


@dataclass(frozen=True, slots=True)
class UpdateBody:
    node_id: str
    config_epoch: int
    slots: bytes


Body = FailBody | PublishBody | UpdateBody | None

_BODY_TYPES: dict[MsgType, type | None] = {
    MsgType.FAIL: FailBody,
    MsgType.PUBLISH: PublishBody,
    MsgType.PUBLISHSHARD: PublishBody,
    MsgType.UPDATE: UpdateBody,
}


@dataclass(frozen=True, slots=True, init=False)
class Message:
    type: MsgType
    header: Header
    gossip: tuple[GossipEntry, ...] = ()
    body: Body = None

    def __init__(self, type: MsgType, header: Header, gossip: tuple[GossipEntry, ...] = (),
                 body: Body = None) -> None:
        s = _setattr
        s(self, "type", type)
        s(self, "header", header)
        s(self, "gossip", gossip)
        s(self, "body", body)
        want = _BODY_TYPES.get(type)
        if want is None:
            assert body is None, f"{type.name} carries no body"
        else:
            assert isinstance(body, want), f"{type.name} needs a {want.__name__}"


# --------------------------------------------------------------------------- encode


def _header_to_wire(h: Header) -> dict:
    return {
        "id": h.sender,
        "cur": h.current_epoch,
        "cfg": h.config_epoch,
        "flags": flags_to_bits(h.flags),
        "primary": h.primary_id,
        "slots": h.slots,
        "ip": h.ip,
        "port": h.port,
        "cport": h.cport,
        "offset": h.offset,
        "state": h.state,
        "mflags": h.mflags,
        "hostname": h.hostname,
        "pport": h.pport,
    }


def _body_to_wire(b: Body) -> dict | None:
    if b is None:
        return None
    if isinstance(b, FailBody):
        return {"id": b.node_id}
    if isinstance(b, PublishBody):
        return {"channel": b.channel, "message": b.message}
    return {"id": b.node_id, "cfg": b.config_epoch, "slots": b.slots}


def encode_payload(msg: Message) -> bytes:
    return msgpack.packb(
        {
            "sig": SIGNATURE,
            "ver": PROTOCOL_VERSION,
            "type": int(msg.type),
            "hdr": _header_to_wire(msg.header),
            "gossip": [
                [g.node_id, g.ping_sent, g.pong_received, g.ip, g.port, g.cport, flags_to_bits(g.flags)]
                for g in msg.gossip
            ],
            "body": _body_to_wire(msg.body),
        },
        use_bin_type=True,
    )


def encode(msg: Message) -> bytes:
    """One complete frame (length prefix + payload)."""
    payload = encode_payload(msg)
    assert len(payload) <= MAX_FRAME, "message too large for a bus frame"
    return len(payload).to_bytes(LENGTH_PREFIX, "big") + payload


# --------------------------------------------------------------------------- decode

_MISSING = object()


def _get(d: dict, key: str, where: str) -> Any:
    v = d.get(key, _MISSING)
    if v is _MISSING:
        raise BusError(f"missing field {where}.{key}")
    return v


def _int(d: dict, key: str, where: str, hi: int = U64_MAX) -> int:
    v = _get(d, key, where)
    if type(v) is not int or not 0 <= v <= hi:
        raise BusError(f"bad field {where}.{key}: expected an integer in 0..{hi}")
    return v


def _str(d: dict, key: str, where: str, maxlen: int) -> str:
    v = _get(d, key, where)
    if type(v) is not str or len(v) > maxlen:
        raise BusError(f"bad field {where}.{key}: expected a string of at most {maxlen} characters")
    return v


def _bytes(d: dict, key: str, where: str, size: int | None = None) -> bytes:
    v = _get(d, key, where)
    if type(v) is not bytes or (size is not None and len(v) != size):
        what = f"{size} bytes" if size is not None else "bytes"
        raise BusError(f"bad field {where}.{key}: expected {what}")
    return v


def _node_id(v: Any, where: str) -> str:
    if not is_valid_node_id(v):
        raise BusError(f"bad field {where}: expected a 40-character node id")
    return v


def _header_from_wire(h: Any) -> Header:
    if type(h) is not dict:
        raise BusError("bad field hdr: expected a map")
    primary = _get(h, "primary", "hdr")
    if primary is not None:
        _node_id(primary, "hdr.primary")
    state = _get(h, "state", "hdr")
    if state not in ("ok", "fail"):
        raise BusError("bad field hdr.state: expected 'ok' or 'fail'")
    return Header(
        sender=_node_id(_get(h, "id", "hdr"), "hdr.id"),
        current_epoch=_int(h, "cur", "hdr"),
        config_epoch=_int(h, "cfg", "hdr"),
        flags=bits_to_flags(_int(h, "flags", "hdr")),
        primary_id=primary,
        slots=_bytes(h, "slots", "hdr", BITMAP_BYTES),
        ip=_str(h, "ip", "hdr", IP_MAX_LEN),
        port=_int(h, "port", "hdr", 65535),
        cport=_int(h, "cport", "hdr", 65535),
        offset=_int(h, "offset", "hdr"),
        state=state,
        mflags=_int(h, "mflags", "hdr"),
        hostname=_str(h, "hostname", "hdr", HOSTNAME_MAX_LEN),
        pport=_int(h, "pport", "hdr", 65535) if "pport" in h else 0,
    )


def _gossip_from_wire(g: Any) -> tuple[GossipEntry, ...]:
    if type(g) is not list:
        raise BusError("bad field gossip: expected an array")
    out = []
    for i, e in enumerate(g):
        where = f"gossip[{i}]"
        if type(e) is not list or len(e) != 7:
            raise BusError(f"bad field {where}: expected an array of 7 fields")
        nid, ping_sent, pong_received, ip, port, cport, flags = e
        for name, v, hi in (
            ("ping_sent", ping_sent, U64_MAX),
            ("pong_received", pong_received, U64_MAX),
            ("port", port, 65535),
            ("cport", cport, 65535),
            ("flags", flags, U64_MAX),
        ):
            if type(v) is not int or not 0 <= v <= hi:
                raise BusError(f"bad field {where}.{name}: expected an integer in 0..{hi}")
        if type(ip) is not str or len(ip) > IP_MAX_LEN:
            raise BusError(f"bad field {where}.ip: expected a string")
        out.append(
            GossipEntry(
                _node_id(nid, f"{where}.id"), ping_sent, pong_received, ip, port, cport,
                bits_to_flags(flags),
            )
        )
    return tuple(out)


def _body_from_wire(t: MsgType, b: Any) -> Body:
    want = _BODY_TYPES.get(t)
    if want is None:
        if b is not None:
            raise BusError(f"bad field body: {t.name} carries no body")
        return None
    if type(b) is not dict:
        raise BusError(f"bad field body: {t.name} needs a body map")
    if want is FailBody:
        return FailBody(_node_id(_get(b, "id", "body"), "body.id"))
    if want is PublishBody:
        return PublishBody(_bytes(b, "channel", "body"), _bytes(b, "message", "body"))
    return UpdateBody(
        _node_id(_get(b, "id", "body"), "body.id"),
        _int(b, "cfg", "body"),
        _bytes(b, "slots", "body", BITMAP_BYTES),
    )


def decode_payload(payload: bytes) -> Message:
    """Decode one frame's payload (without the length prefix)."""
    try:
        # Any exception from msgpack on untrusted bytes (ExtraData, FormatError,
        # StackError, UnicodeDecodeError, ValueError for non-string map keys ...)
        # means the same thing here: undecodable.
        obj = msgpack.unpackb(payload, raw=False, strict_map_key=True, timestamp=0)
    except Exception as e:  # noqa: BLE001 - see above
        raise BusError(f"undecodable msgpack ({type(e).__name__})") from None
    if type(obj) is not dict:
        raise BusError("bad payload: expected a map")
    if obj.get("sig") != SIGNATURE:
        raise BusError("bad signature")
    ver = obj.get("ver")
    if ver != PROTOCOL_VERSION or type(ver) is not int:
        raise BusError(f"unsupported protocol version {ver!r}")
    t = _get(obj, "type", "msg")
    if type(t) is not int or t not in MsgType._value2member_map_:
        raise BusError(f"unknown message type {t!r}")
    mtype = MsgType(t)
    return Message(
        type=mtype,
        header=_header_from_wire(_get(obj, "hdr", "msg")),
        gossip=_gossip_from_wire(obj.get("gossip", [])),
        body=_body_from_wire(mtype, obj.get("body")),
    )


class FrameDecoder:
    """Incremental decoder for one link: feed bytes, get whole messages.

    After a :class:`BusError` the decoder stays broken (every later feed raises
    the same error): the link is to be closed.
    """

    def __init__(self, max_frame: int = MAX_FRAME):
        self.max_frame = max_frame
        self._buf = bytearray()
        self._error: BusError | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Message]:
        if self._error is not None:
            raise BusError(self._error.reason)
        self._buf += data
        out: list[Message] = []
        buf = self._buf
        pos = 0
        try:
            while len(buf) - pos >= LENGTH_PREFIX:
                n = int.from_bytes(buf[pos : pos + LENGTH_PREFIX], "big")
                if n == 0 or n > self.max_frame:
                    raise BusError(f"bad frame length {n} (max {self.max_frame})")
                end = pos + LENGTH_PREFIX + n
                if len(buf) < end:
                    break
                out.append(decode_payload(bytes(buf[pos + LENGTH_PREFIX : end])))
                pos = end
        except BusError as e:
            self._error = e
            self._buf = bytearray()
            raise BusError(e.reason, out) from None
        del buf[:pos]
        return out


def decode(frame: bytes) -> Message:
    """Decode exactly one complete frame."""
    d = FrameDecoder()
    msgs = d.feed(frame)
    if len(msgs) != 1 or d.buffered:
        raise BusError("expected exactly one complete frame")
    return msgs[0]
