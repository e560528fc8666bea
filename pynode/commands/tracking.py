"""Client-side caching commands: CLIENT TRACKING, CACHING, GETREDIR,
TRACKINGINFO (Redis 7.0's networking.c; the state is pynode/tracking.py).
Argument order, checks and error texts follow redis-server 7.0.15."""

from __future__ import annotations

from pynode.commands import SYNTAX, CommandError, command, parse_int
from pynode.resp import OK, Map, SetReply, encode, error, integer


@command("client|tracking")
def client_tracking(c, argv):
    redirect = 0
    bcast = optin = optout = noloop = False
    prefixes: list[bytes] = []
    n = len(argv)
    j = 3
    while j < n:
        opt = argv[j].lower()
        more = j < n - 1
        if opt == b"redirect" and more:
            j += 1
            if redirect:
                raise CommandError("ERR A client can only redirect to a single other client")
            redirect = parse_int(argv[j])
            if redirect not in c.srv.clients:
                raise CommandError("ERR The client ID you want redirect to does not exist")
        elif opt == b"bcast":
            bcast = True
        elif opt == b"optin":
            optin = True
        elif opt == b"optout":
            optout = True
        elif opt == b"noloop":
            noloop = True
        elif opt == b"prefix" and more:
            j += 1
            prefixes.append(argv[j])
        else:
            raise CommandError(SYNTAX)
        j += 1
    tracking = c.srv.tracking
    mode = argv[2].lower()
    if mode == b"off":
        tracking.disable(c)
        return OK
    if mode != b"on":
        raise CommandError(SYNTAX)
    t = c.tracking if c.tracking is not None and c.tracking.on else None
    if prefixes and not bcast:
        raise CommandError("ERR PREFIX option requires BCAST mode to be enabled")
    if t is not None and t.bcast != bcast:
        raise CommandError("ERR You can't switch BCAST mode on/off before disabling tracking "
                           "for this client, and then re-enabling it with a different mode.")
    if bcast and (optin or optout):
        raise CommandError("ERR OPTIN and OPTOUT are not compatible with BCAST")
    if optin and optout:
        raise CommandError("ERR You can't specify both OPTIN mode and OPTOUT mode")
    if t is not None and ((optin and t.optout) or (optout and t.optin)):
        raise CommandError("ERR You can't switch OPTIN/OPTOUT mode before disabling tracking "
                           "for this client, and then re-enabling it with a different mode.")
    prefix_error = None
    if bcast:
        prefix_error, go_on = tracking.prefix_overlap(t, prefixes)
        if not go_on:
            raise CommandError(prefix_error)
    tracking.enable(c, redirect, bcast, optin, optout, noloop, prefixes)
    if prefix_error is not None:
        # Redis 7.0 answers a clash between two later prefixes with the
        # error and then OK (two replies), tracking enabled
        srv = c.srv
        srv.error_reply(prefix_error)
        parent = srv.table.get(b"client")        # None if rename-command renamed it
        if parent is not None:
            parent.subs[b"tracking"].failed += 1
        return error(prefix_error) + OK
    return OK


@command("client|caching")
def client_caching(c, argv):
    t = c.tracking
    if t is None or not t.on:
        raise CommandError("ERR CLIENT CACHING can be called only when the client is in "
                           "tracking mode with OPTIN or OPTOUT mode enabled")
    opt = argv[2].lower()
    if opt == b"yes":
        if not t.optin:
            raise CommandError("ERR CLIENT CACHING YES is only valid when tracking is "
                               "enabled in OPTIN mode.")
    elif opt == b"no":
        if not t.optout:
            raise CommandError("ERR CLIENT CACHING NO is only valid when tracking is "
                               "enabled in OPTOUT mode.")
    else:
        raise CommandError(SYNTAX)
    t.caching = True
    return OK


@command("client|getredir")
def client_getredir(c, argv):
    t = c.tracking
    return integer(t.redirect if t is not None and t.on else -1)


@command("client|trackinginfo")
def client_trackinginfo(c, argv):
    t = c.tracking
    if t is None or not t.on:
        return encode(Map({b"flags": SetReply([b"off"]), b"redirect": -1, b"prefixes": []}),
                      c.resp)
    flags = [b"on"]
    if t.bcast:
        flags.append(b"bcast")
    for mode, name, caching in ((t.optin, b"optin", b"caching-yes"),
                                (t.optout, b"optout", b"caching-no")):
        if mode:
            flags.append(name)
            if t.caching:
                flags.append(caching)
    if t.noloop:
        flags.append(b"noloop")
    if t.broken:
        flags.append(b"broken_redirect")
    return encode(Map({b"flags": SetReply(flags), b"redirect": t.redirect,
                       b"prefixes": sorted(t.prefixes)}), c.resp)
