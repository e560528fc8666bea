"""`pynode chaos ...`: break nodes on purpose, reversibly.

    pynode chaos net create --hosts 3 [--addrs 2] [--name pynode] [--subnet 10.77.0]
    pynode chaos net show|destroy [--name pynode]
    pynode chaos net exec h1 -- pynode --bind 10.77.0.11 --port 7000 --protected-mode no ...
    pynode chaos partition NODE [--from PEER ...] [--one-way]
    pynode chaos heal NODE
    pynode chaos freeze|thaw|kill|restart NODE
    pynode chaos slow NODE [--stop-ms 200] [--every-ms 1000]
    pynode chaos fast NODE
    pynode chaos slow-disk NODE --usec N  /  pynode chaos fast-disk NODE
    pynode chaos log
    pynode chaos undo [ID | --all]

NODE is host:port. Every action is appended to the log (--log, default
./pynode-chaos.log or $PYNODE_CHAOS_LOG) with what undoes it; `pynode dashboard`
reads and writes the same log. -a PASSWORD [--user USER] for nodes that want AUTH.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from pynode.chaos.control import DEFAULT_LOG, Chaos, ChaosError, details, summary
from pynode.chaos.netlab import NetLab, NetLabError, available

PROG = "pynode chaos"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=PROG, description="Break nodes on purpose, reversibly.")
    ap.add_argument("--log", default=DEFAULT_LOG,
                    help="the action log (default ./pynode-chaos.log)")
    ap.add_argument("-a", "--password", default=os.environ.get("REDISCLI_AUTH"),
                    help="the nodes' password (default $REDISCLI_AUTH)")
    ap.add_argument("--user", help="the nodes' ACL user")
    sub = ap.add_subparsers(dest="cmd", required=True)

    net = sub.add_parser("net", help="hosts as network namespaces (root)")
    nsub = net.add_subparsers(dest="netcmd", required=True)
    c = nsub.add_parser("create", help="make a lab of hosts on one bridge")
    c.add_argument("--hosts", type=int, default=3)
    c.add_argument("--addrs", type=int, default=1, help="addresses per host")
    c.add_argument("--name", default="pynode")
    c.add_argument("--subnet", default="10.77.0")
    for name in ("show", "destroy"):
        p = nsub.add_parser(name)
        p.add_argument("--name", default="pynode")
    e = nsub.add_parser("exec", help="run a command inside a host")
    e.add_argument("host")
    e.add_argument("--name", default="pynode")
    e.add_argument("argv", nargs=argparse.REMAINDER)

    p = sub.add_parser("partition", help="cut a node off from peers")
    p.add_argument("node")
    p.add_argument("--from", dest="peers", action="append",
                   help="a peer (host:port or address); repeat; default every other host")
    p.add_argument("--one-way", action="store_true", help="drop only node -> peers")
    for name, text in (("heal", "undo partitions of a node"), ("freeze", "SIGSTOP"),
                       ("thaw", "SIGCONT"), ("kill", "kill -9, remembering how to restart"),
                       ("restart", "start a killed node again"),
                       ("fast", "stop slowing a node"), ("fast-disk", "undo slow-disk")):
        sub.add_parser(name, help=text).add_argument("node")
    s = sub.add_parser("slow", help="answer late: stop the node stop-ms of every every-ms")
    s.add_argument("node")
    s.add_argument("--stop-ms", type=int, default=200)
    s.add_argument("--every-ms", type=int, default=1000)
    d = sub.add_parser("slow-disk", help="sleep before each AOF write (DEBUG AOF-FLUSH-SLEEP)")
    d.add_argument("node")
    d.add_argument("--usec", type=int, required=True)
    sub.add_parser("log", help="the actions taken, open ones marked")
    u = sub.add_parser("undo", help="undo an action by id, or all open ones")
    u.add_argument("id", nargs="?", type=int)
    u.add_argument("--all", action="store_true")
    return ap


def _net(args) -> int:
    if args.netcmd in ("create", "destroy", "exec"):
        why = available()
        if why:
            raise NetLabError(why)
    if args.netcmd == "create":
        lab = NetLab(args.name, args.subnet)
        lab.create(args.hosts, args.addrs)
        print(lab.describe())
        return 0
    lab = NetLab.load(args.name)
    if args.netcmd == "show":
        print(lab.describe())
    elif args.netcmd == "destroy":
        lab.destroy()
        print("lab %s destroyed" % args.name)
    else:
        argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not argv:
            raise NetLabError("nothing to run: pynode chaos net exec HOST -- COMMAND ...")
        return subprocess.call(lab.exec_prefix(args.host) + argv)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "net":
            return _net(args)
        ch = Chaos(args.log, args.password, user=args.user)
        if args.cmd == "log":
            for e in ch.entries():
                detail = details(e)
                print("%3d %-10s %-22s %-6s %s" % (e["id"], e["action"], e["node"],
                                                   "done" if e["undone"] else "OPEN",
                                                   " ".join("%s=%s" % kv
                                                            for kv in sorted(detail.items()))))
            return 0
        if args.cmd == "undo":
            if args.id is None and not args.all:
                raise ChaosError("undo needs an action id or --all (see `pynode chaos log`)")
            for e in ch.undo(None if args.all else args.id):
                print("undone %d: %s %s" % (e["id"], e["action"], e["node"]))
            return 0
        if args.cmd == "partition":
            e = ch.partition(args.node, args.peers, args.one_way)
        elif args.cmd == "slow":
            e = ch.slow(args.node, args.stop_ms, args.every_ms)
        elif args.cmd == "slow-disk":
            e = ch.slow_disk(args.node, args.usec)
        else:
            e = getattr(ch, args.cmd.replace("-", "_"))(args.node)
        print(summary(e))
        return 0
    except (ChaosError, NetLabError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
