"""Pub/Sub: SUBSCRIBE UNSUBSCRIBE PSUBSCRIBE PUNSUBSCRIBE PUBLISH PUBSUB, and the
sharded SSUBSCRIBE SUNSUBSCRIBE SPUBLISH (Redis 7.0 pubsub.c).

State: srv.pubsub (pynode/pubsub.py: channels, patterns, shard channels and
the shard channels of each slot), and per client c.subs /
c.psubs / c.ssubs.  Replies and messages are arrays in RESP2 and pushes
('>') in RESP3; a (un)subscribe reply is one message per channel, carrying
the client's count of channels + patterns, or of shard channels for
(S)SUBSCRIBE/SUNSUBSCRIBE.  A RESP2 client with any subscription is in the
"subscribed" context (only (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PING, QUIT,
RESET): Server.special_checks enforces it, so c.update_special() follows
every change of c.subs/c.psubs/c.ssubs.

Shard channels are routed like keys in cluster mode (pynode/routing.py);
SPUBLISH reaches the other nodes of this shard only (a PUBLISHSHARD bus
message), and patterns never see shard messages.  When a slot leaves this
node's shard, drop_slot_channels unsubscribes its channels' subscribers
with a sunsubscribe message each (removeChannelsInSlot).
"""

from __future__ import annotations

from pynode.commands import CommandError, command
from pynode.resp import bulk, integer
from storage.glob import match
from storage.slots import keyslot

_HDR3 = (b"*3\r\n", b">3\r\n")     # [RESP2, RESP3] header of a 3-element message
_HDR4 = (b"*4\r\n", b">4\r\n")


def _count(c) -> int:
    return len(c.subs) + len(c.psubs)


def _notice(c, kind: bytes, name: bytes | None, count: int | None = None) -> bytes:
    """["subscribe", name, count] and friends (addReplyPubsub(Un)Subscribed)."""
    return b"%s$%d\r\n%s\r\n%s%s" % (_HDR3[c.resp == 3], len(kind), kind,
                                      bulk(name) if name is not None else c.nil,
                                      integer(_count(c) if count is None else count))


# ---------------------------------------------------------------- subscribe
def _subscribe(c, registry: dict, mine: set, kind: bytes, names: list[bytes]) -> bytes:
    out = []
    for name in names:
        if name not in mine:
            mine.add(name)
            s = registry.get(name)
            if s is None:
                s = registry[name] = set()
            s.add(c)
        out.append(_notice(c, kind, name))  # the count after this one
    c.update_special()
    return b"".join(out)


@command("subscribe")
def subscribe(c, argv):
    return _subscribe(c, c.srv.pubsub.channels, c.subs, b"subscribe", argv[1:])


@command("psubscribe")
def psubscribe(c, argv):
    return _subscribe(c, c.srv.pubsub.patterns, c.psubs, b"psubscribe", argv[1:])


def _drop(registry: dict, name: bytes, c) -> None:
    s = registry.get(name)
    if s is not None:
        s.discard(c)
        if not s:
            del registry[name]


def _unsubscribe(c, registry: dict, mine: set, kind: bytes, names: list[bytes]) -> bytes:
    """With no names: from all of them (and a [kind, nil, count] reply if none)."""
    names = names or list(mine)
    if not names:
        return _notice(c, kind, None)
    out = []
    for name in names:
        if name in mine:
            mine.discard(name)
            _drop(registry, name, c)
        out.append(_notice(c, kind, name))
    c.update_special()
    return b"".join(out)


@command("unsubscribe")
def unsubscribe(c, argv):
    return _unsubscribe(c, c.srv.pubsub.channels, c.subs, b"unsubscribe", argv[1:])


@command("punsubscribe")
def punsubscribe(c, argv):
    return _unsubscribe(c, c.srv.pubsub.patterns, c.psubs, b"punsubscribe", argv[1:])


# ---------------------------------------------------------------- publish
_limit_cache: list = [None, 0]   # [config value, pubsub hard limit in bytes]


def _hard_limit(srv) -> int:
    """The pubsub class hard limit of client-output-buffer-limit (0 = none)."""
    v = srv.cfg.get("client-output-buffer-limit")
    if v is not _limit_cache[0]:
        parts = v.split()
        hard = 0
        for i in range(0, len(parts) - 3, 4):
            if parts[i] == "pubsub":
                try:
                    hard = int(parts[i + 1])
                except ValueError:
                    hard = 0
        _limit_cache[0] = v
        _limit_cache[1] = hard
    return _limit_cache[1]


def _deliver(srv, t, msg: bytes, limit: int) -> None:
    tr = t.transport
    if tr is None or t.closing:
        return
    t.write(msg)
    if limit and tr.get_write_buffer_size() > limit:
        srv.log.warning("Client id=%d addr=%s scheduled to be closed ASAP for overcoming "
                        "of output buffer limits." % (t.id, t.addr))
        t.closing = True
        tr.abort()


def _fanout(srv, clients, hdr: tuple, body: bytes, skip, own: list, limit: int) -> int:
    """Send hdr[resp == 3] + body to each client (to `own` for `skip`);
    returns the number of receivers."""
    m2 = m3 = None
    for t in list(clients):
        if t.resp == 3:
            msg = m3 or (m3 := hdr[1] + body)
        else:
            msg = m2 or (m2 := hdr[0] + body)
        if t is skip:
            own.append(msg)
        else:
            _deliver(srv, t, msg, limit)
    return len(clients)


def publish_message(srv, channel: bytes, data: bytes, skip=None) -> tuple[int, bytes]:
    """Send a message to the subscribers of channel and of matching patterns.

    Returns (receivers, what is owed to `skip`): the publishing client gets its
    own messages in its reply, so they stay in order with its earlier replies."""
    n = 0
    own: list = []
    limit = 0
    subs = srv.pubsub.channels.get(channel)
    if subs:
        limit = _hard_limit(srv)
        body = b"$7\r\nmessage\r\n" + bulk(channel) + bulk(data)
        n += _fanout(srv, subs, _HDR3, body, skip, own, limit)
    if srv.pubsub.patterns:
        limit = limit or _hard_limit(srv)
        for pat, clients in list(srv.pubsub.patterns.items()):
            if not match(pat, channel):
                continue
            body = b"$8\r\npmessage\r\n" + bulk(pat) + bulk(channel) + bulk(data)
            n += _fanout(srv, clients, _HDR4, body, skip, own, limit)
    return n, b"".join(own)


@command("publish")
def publish(c, argv):
    n, own = publish_message(c.srv, argv[1], argv[2], c)
    if c.srv.cluster is not None:  # to every node over the bus; the count stays local
        c.srv.cluster.publish(argv[1], argv[2])
    return own + integer(n) if own else integer(n)


# ---------------------------------------------------------------- shard channels
def publish_shard_message(srv, channel: bytes, data: bytes, skip=None) -> tuple[int, bytes]:
    """Send an smessage to the subscribers of shard channel `channel` (no
    patterns).  Returns (receivers, what is owed to `skip`) as publish_message."""
    subs = srv.pubsub.shard_channels.get(channel)
    if not subs:
        return 0, b""
    own: list = []
    body = b"$8\r\nsmessage\r\n" + bulk(channel) + bulk(data)
    n = _fanout(srv, subs, _HDR3, body, skip, own, _hard_limit(srv))
    if srv.slot_stats.counting:      # the publisher's own copy is in its reply
        srv.slot_stats.shard_message(channel, (n - len(own)) * (len(_HDR3[0]) + len(body)))
    return n, b"".join(own)


@command("spublish")
def spublish(c, argv):
    srv = c.srv
    n, own = publish_shard_message(srv, argv[1], argv[2], c)
    if srv.cluster is not None:    # to the other nodes of this shard over the bus
        srv.cluster.publish_shard(argv[1], argv[2])
    else:                          # forceCommandPropagation(c, PROPAGATE_REPL)
        srv.propagate(c.db.id, argv, 2)
    return own + integer(n) if own else integer(n)


def _shard_add(srv, c, channel: bytes) -> None:
    c.ssubs.add(channel)
    s = srv.pubsub.shard_channels.get(channel)
    if s is None:
        s = srv.pubsub.shard_channels[channel] = set()
        slot = keyslot(channel)
        chans = srv.pubsub.shard_slots.get(slot)
        if chans is None:
            chans = srv.pubsub.shard_slots[slot] = set()
        chans.add(channel)
    s.add(c)


def _shard_forget(srv, channel: bytes) -> None:
    """The channel has no subscriber left: drop it and its slot entry."""
    del srv.pubsub.shard_channels[channel]
    slot = keyslot(channel)
    chans = srv.pubsub.shard_slots.get(slot)
    if chans is not None:
        chans.discard(channel)
        if not chans:
            del srv.pubsub.shard_slots[slot]


def _shard_drop(srv, c, channel: bytes) -> bool:
    if channel not in c.ssubs:
        return False
    c.ssubs.discard(channel)
    s = srv.pubsub.shard_channels.get(channel)
    if s is not None:
        s.discard(c)
        if not s:
            _shard_forget(srv, channel)
    return True


@command("ssubscribe")
def ssubscribe(c, argv):
    if c.in_multi or c.script:
        # CLIENT_DENY_BLOCKING, and unlike SUBSCRIBE no exception for MULTI
        raise CommandError("ERR SSUBSCRIBE isn't allowed for a DENY BLOCKING client")
    srv = c.srv
    out = []
    for ch in argv[1:]:
        if ch not in c.ssubs:
            _shard_add(srv, c, ch)
        out.append(_notice(c, b"ssubscribe", ch, len(c.ssubs)))
    c.update_special()
    return b"".join(out)


@command("sunsubscribe")
def sunsubscribe(c, argv):
    srv = c.srv
    names = argv[1:] or list(c.ssubs)
    if not names:
        return _notice(c, b"sunsubscribe", None, 0)
    out = []
    for ch in names:
        _shard_drop(srv, c, ch)
        out.append(_notice(c, b"sunsubscribe", ch, len(c.ssubs)))
    c.update_special()
    return b"".join(out)


def shard_unsubscribe_all(srv, c) -> None:
    """RESET or a disconnection: leave every shard channel without notices."""
    for ch in list(c.ssubs):
        _shard_drop(srv, c, ch)


def drop_slot_channels(srv, slots) -> int:
    """Slots left this node's shard: every shard channel in them goes, and each
    of its subscribers gets a sunsubscribe (pubsubShardUnsubscribeAllClients),
    channels of a slot in byte order as Redis's slot -> channels radix tree
    yields them.  Returns the number of channels dropped."""
    n = 0
    for slot in slots:
        chans = srv.pubsub.shard_slots.get(slot)
        if not chans:
            continue
        for ch in sorted(chans):
            for t in list(srv.pubsub.shard_channels.get(ch, ())):
                t.ssubs.discard(ch)
                t.write(_notice(t, b"sunsubscribe", ch, len(t.ssubs)))
                t.update_special()
            _shard_forget(srv, ch)
            n += 1
    return n


# ---------------------------------------------------------------- PUBSUB
_HELP = [
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> "
    "(default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
    "HELP",
    "    Prints this help.",
]


def _bad_args(argv) -> CommandError:
    return CommandError("ERR unknown subcommand or wrong number of arguments for '%s'. "
                        "Try PUBSUB HELP." % argv[1].decode("utf-8", "replace"))


def _array(items: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(items) + b"".join(bulk(x) for x in items)


@command("pubsub|help")
def pubsub_help(c, argv):
    return b"*%d\r\n" % len(_HELP) + b"".join(b"+%s\r\n" % h.encode() for h in _HELP)


def _registry(c, argv) -> dict:
    """srv.pubsub.channels, or srv.pubsub.shard_channels for the SHARD* subcommands."""
    return c.srv.pubsub.shard_channels if argv[1][:1] in b"sS" else c.srv.pubsub.channels


@command("pubsub|channels", "pubsub|shardchannels")
def pubsub_channels(c, argv):
    if len(argv) > 3:
        raise _bad_args(argv)
    channels = _registry(c, argv)
    if len(argv) == 2:
        return _array(list(channels))
    pat = argv[2]
    return _array([ch for ch in channels if match(pat, ch)])


@command("pubsub|numsub", "pubsub|shardnumsub")
def pubsub_numsub(c, argv):
    channels = _registry(c, argv)
    out = [b"*%d\r\n" % (2 * (len(argv) - 2))]
    for ch in argv[2:]:
        out.append(bulk(ch))
        out.append(integer(len(channels.get(ch, ()))))
    return b"".join(out)


@command("pubsub|numpat")
def pubsub_numpat(c, argv):
    return integer(len(c.srv.pubsub.patterns))
