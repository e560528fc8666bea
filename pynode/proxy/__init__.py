"""`pynode proxy`: a stateless Redis Cluster proxy for plain (non-cluster) clients.

A plain client connects to the proxy as to one redis-server. The proxy learns
the slot map (CLUSTER SLOTS), sends each command to the node that serves the
slot of its first key over a few shared, pipelined links (one per node, client
protocol and credentials), and follows MOVED, ASK (with ASKING), TRYAGAIN,
CLUSTERDOWN and READONLY refusals with bounded retries, refreshing the map.

Replies are forwarded as the node wrote them: the links speak the client's own
protocol (RESP2 or RESP3), so only frame boundaries are found here
(`core.reply_end`); values are decoded (hiredis) only where the proxy itself must
read them (CLUSTER SLOTS, counts, cursors, INFO keyspace).

Several proxies may run side by side: none keeps state beyond its map.

The package: core.py (pure: framing, slot map, split/join), links.py (node
links), router.py (clients, calls, retries, batches, fan-out, map refresh),
commands.py (what the proxy answers itself or sends to every primary).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys

from pynode.proxy.router import Proxy


def _hostport(s: str) -> tuple:
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError("expected host:port, got %r" % s)
    return host, int(port)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="pynode proxy",
                                 description="A stateless Redis Cluster proxy for plain "
                                             "clients.")
    ap.add_argument("--port", type=int, default=7777)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--cluster", type=_hostport, action="append", required=True,
                    metavar="HOST:PORT", help="a cluster node (repeat for more seeds)")
    ap.add_argument("--read-from-replicas", action="store_true",
                    help="send read-only commands to replicas of the slot")
    ap.add_argument("--user", help="user for the proxy's own links (AUTH)")
    ap.add_argument("--password", help="password for the proxy's own links (AUTH)")
    ap.add_argument("--retry-timeout", type=float, default=10.0,
                    help="seconds a command is retried through redirections (default 10)")
    ap.add_argument("--refresh-interval", type=float, default=2.0,
                    help="seconds between slot map refreshes (default 2)")
    ap.add_argument("--client-output-limit", type=int, default=8 << 20, metavar="BYTES",
                    help="stop reading a client's commands while this many bytes of "
                         "replies wait to be sent to it (default 8 MiB)")
    ap.add_argument("--workers", type=int, default=1,
                    help="processes serving the port (SO_REUSEPORT), each a proxy of its own "
                         "(default 1)")
    ap.add_argument("--worker-of", type=int, help=argparse.SUPPRESS)   # the first's pid
    ap.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error("--workers must be at least 1")
    creds = None
    if args.password is not None:
        creds = ((args.user.encode(),) if args.user else ()) + (args.password.encode(),)
    try:
        import uvloop
        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        pass
    proxy = Proxy(args.cluster, args.port, args.bind, args.read_from_replicas, creds,
                  args.retry_timeout, args.refresh_interval,
                  output_limit=args.client_output_limit, workers=args.workers,
                  worker_index=args.worker_index, worker_of=args.worker_of)
    others = []
    if args.workers > 1 and args.worker_of is None:
        # the other workers: the same command, told whose they are (they leave
        # when this process does)
        for i in range(1, args.workers):
            others.append(subprocess.Popen(
                [sys.executable, "-m", "pynode", "proxy", *argv, "--worker-of",
                 str(os.getpid()), "--worker-index", str(i)], stdin=subprocess.DEVNULL))
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        asyncio.run(proxy.serve())
    except KeyboardInterrupt:
        pass
    except OSError as e:
        sys.stderr.write("pynode proxy: %s\n" % e)
        return 1
    finally:
        for p in others:
            p.terminate()
        for p in others:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
