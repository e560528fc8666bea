"""LATENCY: the latency monitor's reports and the per-command latency
histograms (the state is pynode/latency.py, srv.latency)."""

from __future__ import annotations

from pynode.commands import CommandError, command
from pynode.resp import EMPTY_ARRAY, Map, Verbatim, encode, integer

LATENCY_HELP = [
    "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return a human readable latency analysis report.",
    "GRAPH <event>",
    "    Return an ASCII latency graph for the <event> class.",
    "HISTORY <event>",
    "    Return time-latency samples for the <event> class.",
    "LATEST",
    "    Return the latest latency samples for all events.",
    "RESET [<event> ...]",
    "    Reset latency data of one or more <event> classes.",
    "    (default: reset all data for all event classes)",
    "HISTOGRAM [COMMAND ...]",
    "    Return a cumulative distribution of latencies in the format of a histogram for the "
    "specified command names.",
    "    If no commands are specified then all histograms are replied.",
    "HELP",
    "    Prints this help.",
]


def _event(argv: list[bytes]) -> str:
    return argv[2].decode("utf-8", "surrogateescape")


@command("latency|help")
def latency_help(c, argv):
    return b"*%d\r\n" % len(LATENCY_HELP) + b"".join(
        b"+" + s.encode() + b"\r\n" for s in LATENCY_HELP)


@command("latency|latest")
def latency_latest(c, argv):
    out = []
    for event, ts in c.srv.latency.events.items():
        t, ms = ts.last()
        out.append([event.encode(), t, ms, ts.max])
    return encode(out, c.resp)


@command("latency|history")
def latency_history(c, argv):
    ts = c.srv.latency.events.get(_event(argv))
    if ts is None:
        return EMPTY_ARRAY
    return encode([[t, ms] for t, ms in ts.ordered()], c.resp)


@command("latency|graph")
def latency_graph(c, argv):
    text = c.srv.latency.graph(_event(argv))
    if text is None:
        raise CommandError("ERR No samples available for event '%s'" % _event(argv))
    return encode(Verbatim(text.encode()), c.resp)


@command("latency|doctor")
def latency_doctor(c, argv):
    return encode(Verbatim(c.srv.latency.doctor().encode()), c.resp)


@command("latency|reset")
def latency_reset(c, argv):
    return integer(c.srv.latency.reset(argv[2:] if len(argv) > 2 else None))


def _lookup(srv, name: bytes):
    """lookupCommandBySds: "get" or "client|id", any case."""
    parts = name.lower().split(b"|")
    if len(parts) > 2:
        return None
    cmd = srv.table.get(parts[0])
    if cmd is None or len(parts) == 1:
        return cmd
    return cmd.subs.get(parts[1]) if cmd.subs else None


@command("latency|histogram")
def latency_histogram(c, argv):
    srv = c.srv
    if len(argv) == 2:
        cmds = None
    else:
        cmds = []
        for name in argv[2:]:
            cmd = _lookup(srv, name)
            if cmd is None:
                continue
            cmds.append(cmd)
            if cmd.subs:
                cmds.extend(cmd.subs.values())
    out = []
    for name, calls, buckets in srv.latency.histograms(cmds):
        out.append((name.encode(), Map([(b"calls", calls),
                                        (b"histogram_usec", Map(buckets))])))
    # a map that may repeat a command asked for twice, as Redis's does
    head = b"%%%d\r\n" % len(out) if c.resp == 3 else b"*%d\r\n" % (2 * len(out))
    return head + b"".join(encode(k, c.resp) + encode(v, c.resp) for k, v in out)
