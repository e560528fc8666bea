"""Cluster bus codec: units and properties (random bytes never crash, any split decodes the same)."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossip.bitmap import (
    BITMAP_BYTES, bitmap_from_slots, ranges_from_bitmap, slot_ranges, slots_from_bitmap,
)
from gossip.codec import (
    MAX_FRAME,
    PROTOCOL_VERSION,
    SIGNATURE,
    BusError,
    FailBody,
    FrameDecoder,
    GossipEntry,
    Header,
    Message,
    MsgType,
    PublishBody,
    UpdateBody,
    decode,
    encode,
    encode_payload,
)
from gossip.node import FLAG_NAMES

A = "a" * 40
B = "b" * 40

HYP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def header(**kw) -> Header:
    base = dict(
        sender=A, current_epoch=3, config_epoch=2, flags=frozenset({"myself", "master"}),
        primary_id=None, slots=bitmap_from_slots(range(0, 100)), ip="", port=7000,
        cport=17000, offset=42, state="ok",
    )
    base.update(kw)
    return Header(**base)


def ping(**kw) -> Message:
    return Message(
        MsgType.PING, header(**kw),
        (GossipEntry(B, 0, 1_700_000_000_000, "127.0.0.1", 7001, 17001, frozenset({"master"})),),
    )


def frame_of(obj) -> bytes:
    payload = msgpack.packb(obj, use_bin_type=True)
    return len(payload).to_bytes(4, "big") + payload


def wire(msg: Message) -> dict:
    return msgpack.unpackb(encode_payload(msg), raw=False)


# ----------------------------------------------------------------------------- units


def test_round_trip_every_type():
    msgs = [
        ping(),
        Message(MsgType.PONG, header(primary_id=B, flags=frozenset({"slave", "nofailover"}))),
        Message(MsgType.MEET, header(ip="10.0.0.1", hostname="host-1")),
        Message(MsgType.FAIL, header(), body=FailBody(B)),
        Message(MsgType.PUBLISH, header(), body=PublishBody(b"chan", b"\x00payload")),
        Message(MsgType.PUBLISHSHARD, header(), body=PublishBody(b"{s}c", b"shard")),
        Message(MsgType.UPDATE, header(), body=UpdateBody(B, 9, bitmap_from_slots([5, 16383]))),
        Message(MsgType.FAILOVER_AUTH_REQUEST, header(mflags=1)),
        Message(MsgType.FAILOVER_AUTH_ACK, header()),
        Message(MsgType.MFSTART, header()),
    ]
    stream = b"".join(encode(m) for m in msgs)
    assert FrameDecoder().feed(stream) == msgs
    for m in msgs:
        assert decode(encode(m)) == m


def test_frame_layout():
    f = encode(ping())
    n = int.from_bytes(f[:4], "big")
    assert n == len(f) - 4
    obj = msgpack.unpackb(f[4:], raw=False)
    assert obj["sig"] == SIGNATURE and obj["ver"] == PROTOCOL_VERSION and obj["type"] == 0
    assert len(obj["hdr"]["slots"]) == BITMAP_BYTES


def test_stat_names():
    assert [t.stat_name for t in MsgType] == [
        "ping", "pong", "meet", "fail", "publish", "auth-req", "auth-ack", "update", "mfstart",
        "publishshard",
    ]


def test_incremental_byte_by_byte():
    msgs = [ping(), Message(MsgType.FAIL, header(), body=FailBody(B))]
    stream = b"".join(encode(m) for m in msgs)
    d = FrameDecoder()
    got = []
    for i in range(len(stream)):
        got += d.feed(stream[i : i + 1])
    assert got == msgs and d.buffered == 0


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda o: o.update(sig=b"RCmb"), "bad signature"),
        (lambda o: o.pop("sig"), "bad signature"),
        (lambda o: o.update(ver=2), "unsupported protocol version"),
        (lambda o: o.update(ver=True), "unsupported protocol version"),
        (lambda o: o.update(type=99), "unknown message type"),
        (lambda o: o.update(type="PING"), "unknown message type"),
        (lambda o: o.pop("hdr"), "missing field msg.hdr"),
        (lambda o: o["hdr"].pop("cur"), "missing field hdr.cur"),
        (lambda o: o["hdr"].update(cur=-1), "bad field hdr.cur"),
        (lambda o: o["hdr"].update(cur=True), "bad field hdr.cur"),
        (lambda o: o["hdr"].update(port=70000), "bad field hdr.port"),
        (lambda o: o["hdr"].update(id="xyz"), "bad field hdr.id"),
        (lambda o: o["hdr"].update(id="A" * 40), "bad field hdr.id"),
        (lambda o: o["hdr"].update(primary=5), "bad field hdr.primary"),
        (lambda o: o["hdr"].update(slots=b"\x00" * 10), "bad field hdr.slots"),
        (lambda o: o["hdr"].update(state="maybe"), "bad field hdr.state"),
        (lambda o: o["hdr"].update(ip=b"127.0.0.1"), "bad field hdr.ip"),
        (lambda o: o.update(hdr=[]), "bad field hdr"),
        (lambda o: o.update(gossip={}), "bad field gossip"),
        (lambda o: o["gossip"][0].pop(), "bad field gossip[0]"),
        (lambda o: o["gossip"][0].__setitem__(2, -5), "bad field gossip[0].pong_received"),
        (lambda o: o["gossip"][0].__setitem__(0, "nope"), "bad field gossip[0].id"),
        (lambda o: o.update(body={"id": B}), "bad field body"),
    ],
)
def test_bad_fields(mutate, reason):
    obj = wire(ping())
    mutate(obj)
    with pytest.raises(BusError) as e:
        FrameDecoder().feed(frame_of(obj))
    assert e.value.reason.startswith(reason), e.value.reason


@pytest.mark.parametrize(
    "mtype, body, reason",
    [
        (MsgType.FAIL, None, "bad field body"),
        (MsgType.FAIL, {"id": "short"}, "bad field body.id"),
        (MsgType.PUBLISH, {"channel": "text", "message": b""}, "bad field body.channel"),
        (MsgType.UPDATE, {"id": B, "cfg": 1}, "missing field body.slots"),
        (MsgType.UPDATE, {"id": B, "cfg": 1, "slots": b"x"}, "bad field body.slots"),
    ],
)
def test_bad_bodies(mtype, body, reason):
    obj = wire(ping())
    obj["type"] = int(mtype)
    obj["body"] = body
    with pytest.raises(BusError) as e:
        FrameDecoder().feed(frame_of(obj))
    assert e.value.reason.startswith(reason), e.value.reason


def test_unknown_keys_are_ignored():
    obj = wire(ping())
    obj["future"] = [1, 2, 3]
    obj["hdr"]["shard_id"] = "x"
    assert FrameDecoder().feed(frame_of(obj)) == [ping()]


def test_oversized_length_rejected_before_buffering():
    d = FrameDecoder()
    with pytest.raises(BusError, match="bad frame length"):
        d.feed((MAX_FRAME + 1).to_bytes(4, "big"))
    assert d.buffered == 0


def test_zero_length_rejected():
    with pytest.raises(BusError, match="bad frame length 0"):
        FrameDecoder().feed(b"\x00\x00\x00\x00")


def test_undecodable_payload():
    for payload in (b"\xc1", b"\x92\x01", b"\x81\x01\x02", b"\xa2\xff\xfe", b"\x01\x02"):
        with pytest.raises(BusError):
            FrameDecoder().feed(len(payload).to_bytes(4, "big") + payload)


def test_decoder_stays_broken_and_keeps_earlier_messages():
    good = encode(ping())
    d = FrameDecoder()
    with pytest.raises(BusError) as e:
        d.feed(good + b"\x00\x00\x00\x02\xc1\xc1")
    assert e.value.messages == [ping()]
    with pytest.raises(BusError):
        d.feed(good)


def test_decode_requires_exactly_one_frame():
    with pytest.raises(BusError):
        decode(encode(ping()) + encode(ping()))
    with pytest.raises(BusError):
        decode(encode(ping())[:-1])


def test_bitmap_helpers():
    slots = [0, 1, 7, 8, 100, 16383]
    b = bitmap_from_slots(slots)
    assert b[0] == 0b10000011 and b[1] == 1 and b[-1] == 0x80
    assert slots_from_bitmap(b) == slots
    assert slots_from_bitmap(bitmap_from_slots(range(16384))) == list(range(16384))
    assert slot_ranges([5, 1, 2, 3, 9]) == [(1, 3), (5, 5), (9, 9)]
    assert ranges_from_bitmap(b) == [(0, 1), (7, 8), (100, 100), (16383, 16383)]
    assert ranges_from_bitmap(bitmap_from_slots(range(16384))) == [(0, 16383)]
    assert ranges_from_bitmap(bitmap_from_slots([])) == []


@given(st.lists(st.tuples(st.integers(0, 16383), st.integers(0, 64)), max_size=60))
def test_ranges_from_bitmap_equals_merging_the_slots(runs):
    slots = {s for start, n in runs for s in range(start, min(16384, start + n))}
    assert ranges_from_bitmap(bitmap_from_slots(slots)) == slot_ranges(slots)


# ----------------------------------------------------------------------------- properties

node_ids = st.text(alphabet="0123456789abcdef", min_size=40, max_size=40)
flag_sets = st.frozensets(st.sampled_from(FLAG_NAMES))
u64 = st.integers(0, (1 << 64) - 1)
ports = st.integers(0, 65535)
ips = st.text(max_size=46)
bitmaps = st.one_of(
    st.frozensets(st.integers(0, 16383), max_size=50).map(bitmap_from_slots),
    st.binary(min_size=BITMAP_BYTES, max_size=BITMAP_BYTES),
)

headers = st.builds(
    Header,
    sender=node_ids, current_epoch=u64, config_epoch=u64, flags=flag_sets,
    primary_id=st.none() | node_ids, slots=bitmaps, ip=ips, port=ports, cport=ports,
    offset=u64, state=st.sampled_from(["ok", "fail"]), mflags=u64,
    hostname=st.text(max_size=20),
)
gossip_entries = st.builds(GossipEntry, node_ids, u64, u64, ips, ports, ports, flag_sets)


@st.composite
def messages(draw):
    t = draw(st.sampled_from(list(MsgType)))
    body = None
    if t == MsgType.FAIL:
        body = FailBody(draw(node_ids))
    elif t in (MsgType.PUBLISH, MsgType.PUBLISHSHARD):
        body = PublishBody(draw(st.binary(max_size=50)), draw(st.binary(max_size=200)))
    elif t == MsgType.UPDATE:
        body = UpdateBody(draw(node_ids), draw(u64), draw(bitmaps))
    gossip = tuple(draw(st.lists(gossip_entries, max_size=5))) if t in (MsgType.PING, MsgType.PONG, MsgType.MEET) else ()
    return Message(t, draw(headers), gossip, body)


@HYP
@given(st.lists(messages(), min_size=1, max_size=4), st.lists(st.integers(0, 20000), max_size=8))
def test_any_split_decodes_the_same(msgs, cuts):
    stream = b"".join(encode(m) for m in msgs)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    d = FrameDecoder()
    got = []
    prev = 0
    for p in points + [len(stream)]:
        got += d.feed(stream[prev:p])
        prev = p
    assert got == msgs
    assert d.buffered == 0


def _only_bus_errors(data: bytes) -> None:
    d = FrameDecoder()
    try:
        for m in d.feed(data):
            assert isinstance(m, Message)
    except BusError as e:
        assert e.reason


@HYP
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(data):
    _only_bus_errors(data)


@HYP
@given(st.binary(max_size=300))
def test_random_payload_in_valid_frame_never_crashes(payload):
    _only_bus_errors(len(payload).to_bytes(4, "big") + payload)


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.floats()
    | st.text(max_size=10) | st.binary(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@HYP
@given(msgpack_values)
def test_random_msgpack_documents_never_crash(obj):
    _only_bus_errors(frame_of(obj))


@HYP
@given(messages(), st.data())
def test_mutated_frames_never_crash(msg, data):
    f = bytearray(encode(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(4, len(f) - 1))
        f[i] = data.draw(st.integers(0, 255))
    _only_bus_errors(bytes(f))


@HYP
@given(messages(), st.data())
def test_mutated_wire_fields_never_crash(msg, data):
    obj = wire(msg)
    section = data.draw(st.sampled_from(["top", "hdr"]))
    target = obj if section == "top" else obj["hdr"]
    key = data.draw(st.sampled_from(sorted(target)))
    target[key] = data.draw(msgpack_values)
    _only_bus_errors(frame_of(obj))
