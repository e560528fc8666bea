"""`python3 -m pynode.localcluster start|stop|status`: a local Redis Cluster in one command.

    python3 -m pynode.localcluster start              # 3 primaries + 3 replicas on 7000-7005
    redis-cli -c -p 7000                             # use it
    python3 -m pynode.localcluster status
    python3 -m pynode.localcluster stop               # data stays in ./cluster

Each node runs from the sample config conf/<port>.conf (conf/7000.conf ... 7005.conf)
in its own working directory <dir>/<port>, so the configs' relative `dir .` keeps the
nodes' files (nodes-<port>.conf, append-only files) apart.  The nodes are background
processes in their own session; <dir>/<port>/node.pid and node.log are theirs, and
<dir>/cluster.json records the layout so that `stop` and `status` need no options.

The first `start` forms the cluster with `redis-cli --cluster create`.  A later
`start` on the same directory only restarts the nodes: they find each other again
from their nodes-<port>.conf.  `--server redis-server` runs the same layout with
Redis's own server, to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

PKG_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONF_DIR = os.path.join(PKG_ROOT, "conf")
SLOTS = 16384
STATE_FILE = "cluster.json"



def hint(action: str, root: str) -> str:
    """A command line for `action` that can be pasted as printed: the running
    interpreter's absolute path (a venv's python, where Debian has no `python`)."""
    return shlex.join([sys.executable, "-m", "pynode.localcluster", action, "--dir", root])

class ClusterError(Exception):
    """A failure to report to the user (message already explains what to do)."""


# --------------------------------------------------------------------------
# a tiny RESP client (the package has no client dependency)

class RespError(Exception):
    pass


def _read_reply(f):
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RespError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode("utf-8", "replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise ConnectionError("unexpected reply %r" % line[:40])


def call(port: int, *args, timeout: float = 2.0, host: str = "127.0.0.1"):
    """Send one command, return its reply (an error reply is returned as RespError)."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(b"".join(parts))
        with s.makefile("rb") as f:
            return _read_reply(f)


def info_fields(text) -> dict[str, str]:
    out = {}
    if isinstance(text, str):
        for line in text.splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                out[k] = v.strip()
    return out


# --------------------------------------------------------------------------
# processes

def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:            # a zombie whose parent has not reaped it yet is not running
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def port_in_use(port: int) -> bool:
    """True when something listens on port (TIME_WAIT leftovers do not count: the
    servers bind with SO_REUSEADDR too)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class LocalNode:
    def __init__(self, root: str, port: int, index: int) -> None:
        self.root = root
        self.port = port
        self.index = index
        self.dir = os.path.join(root, str(port))
        self.pidfile = os.path.join(self.dir, "node.pid")
        self.logfile = os.path.join(self.dir, "node.log")

    def pid(self) -> int | None:
        try:
            with open(self.pidfile) as fh:
                pid = int(fh.read().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def running(self) -> bool:
        return self.pid() is not None

    def conf_file(self) -> str | None:
        for name in ("%d.conf" % self.port, "%d.conf" % (7000 + self.index), "7000.conf"):
            path = os.path.join(CONF_DIR, name)
            if os.path.isfile(path):
                return path
        return None

    def command(self, server: str, node_timeout: int | None, extra: list[str]) -> list[str]:
        if server == "pynode":
            cmd = [sys.executable, "-m", "pynode"]
        else:
            cmd = [shutil.which("redis-server") or "redis-server"]
        conf = self.conf_file()
        if conf:
            cmd.append(conf)
        p = self.port
        # the directives that carry the port, so any base port and any node count work
        # with the sample files; logs go to node.log through standard output
        cmd += ["--port", str(p), "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes-%d.conf" % p,
                "--appendfilename", "appendonly-%d.aof" % p,
                "--appenddirname", "appendonlydir-%d" % p,
                "--dbfilename", "dump-%d.rdb" % p,
                "--daemonize", "no", "--logfile", "", "--pidfile", "",
                "--dir", "."]
        if conf is None:
            cmd += ["--bind", "127.0.0.1", "--appendonly", "yes", "--save", ""]
        if node_timeout is not None:
            cmd += ["--cluster-node-timeout", str(node_timeout)]
        return cmd + extra

    def start(self, server: str, node_timeout: int | None, extra: list[str]) -> int:
        os.makedirs(self.dir, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = PKG_ROOT + (os.pathsep + env["PYTHONPATH"]
                                        if env.get("PYTHONPATH") else "")
        with open(self.logfile, "ab") as log, open(os.devnull, "rb") as devnull:
            proc = subprocess.Popen(self.command(server, node_timeout, extra), cwd=self.dir,
                                    env=env, stdin=devnull, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        with open(self.pidfile, "w") as fh:
            fh.write("%d\n" % proc.pid)
        return proc.pid

    def log_tail(self, n: int = 20) -> str:
        try:
            with open(self.logfile, "rb") as fh:
                lines = fh.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])


# --------------------------------------------------------------------------
# the cluster

class LocalCluster:
    def __init__(self, root: str, base_port: int = 7000, nodes: int = 6, replicas: int = 1,
                 server: str = "pynode", node_timeout: int | None = None,
                 extra: list[str] | None = None) -> None:
        self.root = os.path.abspath(root)
        self.base_port = base_port
        self.count = nodes
        self.replicas = replicas
        self.server = server
        self.node_timeout = node_timeout
        self.extra = list(extra or [])
        self.nodes = [LocalNode(self.root, base_port + i, i) for i in range(nodes)]

    # layout persisted in <dir>/cluster.json --------------------------------

    @classmethod
    def load(cls, root: str) -> "LocalCluster":
        path = os.path.join(os.path.abspath(root), STATE_FILE)
        try:
            with open(path) as fh:
                st = json.load(fh)
        except OSError:
            raise ClusterError("no cluster in %s (no %s): start one with:\n  %s"
                               % (os.path.abspath(root), STATE_FILE, hint("start", root)))
        except ValueError as e:
            raise ClusterError("%s is damaged (%s): stop the nodes by hand (pids in "
                               "%s/*/node.pid) and remove the directory" % (path, e, root))
        return cls(root, st["base_port"], st["nodes"], st["replicas"], st["server"],
                   st.get("node_timeout"), st.get("extra"))

    def save(self) -> None:
        os.makedirs(self.root, exist_ok=True)
        tmp = os.path.join(self.root, STATE_FILE + ".tmp")
        with open(tmp, "w") as fh:
            json.dump({"base_port": self.base_port, "nodes": self.count,
                       "replicas": self.replicas, "server": self.server,
                       "node_timeout": self.node_timeout, "extra": self.extra}, fh, indent=1)
            fh.write("\n")
        os.replace(tmp, os.path.join(self.root, STATE_FILE))

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    # start -----------------------------------------------------------------

    def start(self, timeout: float = 60, out=sys.stdout) -> None:
        if self.count < 3:
            raise ClusterError("a cluster needs at least 3 primaries (--nodes >= 3)")
        if self.count % (1 + self.replicas) or self.count // (1 + self.replicas) < 3:
            raise ClusterError("--nodes %d with --replicas %d does not give at least 3 "
                               "primaries with %d replica(s) each"
                               % (self.count, self.replicas, self.replicas))
        if not shutil.which("redis-cli"):
            raise ClusterError("redis-cli not found: it forms the cluster. Install Debian's "
                               "redis-tools (`make setup` does)")
        if self.server != "pynode" and not shutil.which("redis-server"):
            raise ClusterError("redis-server not found (apt-get install redis-server)")
        self.save()
        started = []
        for node in self.nodes:
            if node.running():
                print("node %d already running (pid %d)" % (node.port, node.pid()), file=out)
                continue
            for p in (node.port, node.port + 10000):
                if port_in_use(p):
                    raise ClusterError("port %d is in use by another process: choose another "
                                       "--base-port (bus ports are +10000)" % p)
            pid = node.start(self.server, self.node_timeout, self.extra)
            started.append(node)
            print("started %s on port %d (pid %d, dir %s)"
                  % (self.server, node.port, pid, node.dir), file=out)
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            self._wait_ping(node, deadline)
        formed = self._formation()
        if formed == "new":
            print("forming the cluster: redis-cli --cluster create ... --cluster-replicas %d"
                  % self.replicas, file=out)
            self._create(deadline, out)
        elif formed == "partial":
            raise ClusterError("the nodes in %s are neither a new cluster nor a formed one "
                               "(some know others or own slots, some do not):\n%s\n"
                               "stop it and remove the directory to start over:\n"
                               "  %s && rm -rf %s"
                               % (self.root, self.describe(), hint("stop", self.root),
                                  shlex.quote(self.root)))
        else:
            print("cluster already formed: nodes restarted from their nodes-<port>.conf",
                  file=out)
        self.wait_ok(deadline)
        print("cluster ok: %d nodes on ports %d-%d (%d primaries, %d replica(s) each)"
              % (self.count, self.ports[0], self.ports[-1],
                 self.count // (1 + self.replicas), self.replicas), file=out)
        if self.replicas:
            print("replicas sync with their primaries in the background ("
                  "`status` shows each link)", file=out)
        print("connect with:  redis-cli -c -p %d" % self.ports[0], file=out)
        print("status:        %s" % hint("status", self.root), file=out)
        print("stop:          %s" % hint("stop", self.root), file=out)

    def _wait_ping(self, node: LocalNode, deadline: float) -> None:
        while True:
            if not node.running():
                raise ClusterError("node %d exited during start-up; log %s:\n%s"
                                   % (node.port, node.logfile, node.log_tail()))
            try:
                if call(node.port, "PING", timeout=1) == "PONG":
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ClusterError("node %d does not answer PING; log %s:\n%s"
                                   % (node.port, node.logfile, node.log_tail()))
            time.sleep(0.05)

    def _formation(self) -> str:
        """"new" (every node alone, no slots), "formed" or "partial"."""
        fresh = 0
        for node in self.nodes:
            info = info_fields(call(node.port, "CLUSTER", "INFO"))
            if info.get("cluster_known_nodes") == "1" and info.get("cluster_slots_assigned") == "0":
                fresh += 1
        if fresh == self.count:
            return "new"
        return "formed" if fresh == 0 else "partial"

    def _create(self, deadline: float, out) -> None:
        cmd = ["redis-cli", "--cluster", "create"]
        cmd += ["127.0.0.1:%d" % p for p in self.ports]
        cmd += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                 timeout=max(5.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired as e:
            raise ClusterError("redis-cli --cluster create did not finish in time:\n%s\n%s"
                               % (_text(e.stdout), self.describe()))
        if res.returncode != 0 or "[OK] All 16384 slots covered." not in res.stdout:
            raise ClusterError("redis-cli --cluster create failed (exit %d):\n%s%s\n%s"
                               % (res.returncode, res.stdout, res.stderr, self.describe()))

    def problems(self) -> list[str]:
        out = []
        for node in self.nodes:
            try:
                info = info_fields(call(node.port, "CLUSTER", "INFO"))
                nodes = call(node.port, "CLUSTER", "NODES")
            except OSError as e:
                out.append("%d: %s" % (node.port, e))
                continue
            if info.get("cluster_state") != "ok":
                out.append("%d: cluster_state:%s" % (node.port, info.get("cluster_state")))
            if info.get("cluster_known_nodes") != str(self.count):
                out.append("%d: knows %s of %d nodes"
                           % (node.port, info.get("cluster_known_nodes"), self.count))
            if isinstance(nodes, str):
                for line in nodes.splitlines():
                    f = line.split()
                    if len(f) > 7 and (set(f[2].split(",")) & {"fail", "fail?", "handshake",
                                                                 "noaddr"} or f[7] != "connected"):
                        out.append("%d: sees %s %s %s" % (node.port, f[1], f[2], f[7]))
        return out

    def wait_ok(self, deadline: float) -> None:
        while True:
            left = self.problems()
            if not left:
                return
            if time.monotonic() > deadline:
                raise ClusterError("the cluster did not reach cluster_state:ok in time:\n  %s\n%s"
                                   % ("\n  ".join(left), self.describe()))
            time.sleep(0.2)

    # stop --------------------------------------------------------------------

    def stop(self, timeout: float = 20, out=sys.stdout) -> bool:
        """SHUTDOWN every running node (SIGTERM if it does not answer), wait, then
        SIGKILL what is left.  True when every node stopped cleanly."""
        pids = {}
        for node in self.nodes:
            pid = node.pid()
            if pid is None:
                continue
            pids[node.port] = pid
            try:
                reply = call(node.port, "SHUTDOWN", timeout=2)
                if isinstance(reply, RespError):
                    os.kill(pid, signal.SIGTERM)
            except (OSError, ConnectionError):
                # SHUTDOWN closes the connection without a reply: that is success
                pass
        deadline = time.monotonic() + timeout
        clean = True
        for port, pid in pids.items():
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                t = time.monotonic() + 3
                while pid_alive(pid) and time.monotonic() < t:
                    time.sleep(0.05)
            if pid_alive(pid):
                clean = False
                os.kill(pid, signal.SIGKILL)
                print("node %d (pid %d) did not stop in time: killed" % (port, pid), file=out)
            else:
                print("stopped node %d (pid %d)" % (port, pid), file=out)
        for node in self.nodes:
            if node.pid() is None:
                try:
                    os.unlink(node.pidfile)
                except OSError:
                    pass
        if not pids:
            print("no node was running", file=out)
        print("data kept in %s (per node: nodes-<port>.conf, appendonlydir-<port>, node.log)"
              % self.root, file=out)
        print("start again:  %s" % hint("start", self.root), file=out)
        print("start over:   rm -rf %s" % shlex.quote(self.root), file=out)
        return clean

    # status ------------------------------------------------------------------

    def describe(self) -> str:
        lines = []
        for node in self.nodes:
            pid = node.pid()
            lines.append("== node %d: %s" % (node.port, "pid %d" % pid if pid else "not running"))
            if pid:
                try:
                    lines.append(str(call(node.port, "CLUSTER", "NODES")).rstrip())
                except OSError as e:
                    lines.append("CLUSTER NODES: %s" % e)
            lines.append("-- log tail (%s):\n%s" % (node.logfile, node.log_tail(10)))
        return "\n".join(lines)

    def status(self, out=sys.stdout) -> bool:
        """Print one line per node; True when every node runs and says cluster_state:ok."""
        ok = True
        print("%-6s %-8s %-8s %-7s %-6s %s" % ("port", "pid", "role", "state", "slots",
                                                "detail"), file=out)
        for node in self.nodes:
            pid = node.pid()
            if pid is None:
                ok = False
                print("%-6d %-8s" % (node.port, "down"), file=out)
                continue
            try:
                info = info_fields(call(node.port, "CLUSTER", "INFO"))
                repl = info_fields(call(node.port, "INFO", "replication"))
                myself = next((ln for ln in str(call(node.port, "CLUSTER", "NODES")).splitlines()
                               if "myself" in ln.split()[2]), "")
            except OSError as e:
                ok = False
                print("%-6d %-8d %s" % (node.port, pid, "not answering: %s" % e), file=out)
                continue
            state = info.get("cluster_state", "?")
            ok = ok and state == "ok"
            fields = myself.split()
            # the role as the cluster sees it (CLUSTER NODES flags), the link from INFO
            flags = set(fields[2].split(",")) if len(fields) > 2 else set()
            role = "slave" if "slave" in flags else "master" if "master" in flags else "?"
            slots = _count_slots(fields[8:]) if fields else 0
            detail = ""
            if role == "slave":
                detail = "of %s" % fields[3][:8]
                if repl.get("role") == "slave":
                    detail = "of %s:%s link %s" % (repl.get("master_host"),
                                                   repl.get("master_port"),
                                                   repl.get("master_link_status"))
            print("%-6d %-8d %-8s %-7s %-6d %s" % (node.port, pid, role, state, slots, detail),
                  file=out)
        print("cluster %s (dir %s)" % ("ok" if ok else "NOT ok", self.root), file=out)
        return ok


def _count_slots(fields: list[str]) -> int:
    n = 0
    for f in fields:
        if f.startswith("["):
            continue
        if "-" in f:
            a, b = f.split("-")
            n += int(b) - int(a) + 1
        else:
            n += 1
    return n


def _text(b) -> str:
    if isinstance(b, bytes):
        return b.decode("utf-8", "replace")
    return b or ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m pynode.localcluster",
                                 description="Run a local Redis Cluster of pynode processes.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("start", help="start the nodes; form the cluster on first start")
    st.add_argument("--nodes", type=int, default=6, help="number of nodes (default 6)")
    st.add_argument("--replicas", type=int, default=1, help="replicas per primary (default 1)")
    st.add_argument("--base-port", type=int, default=7000, help="first port (default 7000)")
    st.add_argument("--server", choices=("pynode", "redis-server"), default="pynode",
                    help="which server to run (default pynode)")
    st.add_argument("--node-timeout", type=int, default=None,
                    help="cluster-node-timeout in ms (default: the config file's)")
    st.add_argument("--timeout", type=float, default=60,
                    help="seconds to wait for cluster_state:ok (default 60)")
    st.add_argument("--set", action="append", default=[], metavar="DIRECTIVE=VALUE",
                    help="extra directive for every node, e.g. --set appendonly=no")
    for p in (st, sub.add_parser("stop", help="stop every node, keep the data"),
              sub.add_parser("status", help="show the nodes; exit 1 unless all are ok")):
        p.add_argument("--dir", default="cluster", help="cluster directory (default ./cluster)")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "start":
            extra = []
            for item in args.set:
                name, _, value = item.partition("=")
                extra += ["--" + name, value]
            root = os.path.abspath(args.dir)
            if os.path.isfile(os.path.join(root, STATE_FILE)):
                lc = LocalCluster.load(root)
                asked = (args.base_port, args.nodes, args.replicas)
                if asked != (lc.base_port, lc.count, lc.replicas) and \
                        asked != (7000, 6, 1):
                    raise ClusterError("%s already holds a cluster of %d nodes from port %d "
                                       "(%d replicas); use another --dir or remove it"
                                       % (root, lc.count, lc.base_port, lc.replicas))
            else:
                lc = LocalCluster(root, args.base_port, args.nodes, args.replicas,
                                  args.server, args.node_timeout, extra)
            lc.start(timeout=args.timeout)
            return 0
        lc = LocalCluster.load(args.dir)
        if args.cmd == "stop":
            return 0 if lc.stop() else 1
        return 0 if lc.status() else 1
    except ClusterError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
