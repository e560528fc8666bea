"""Breaking nodes on purpose, reversibly: every action is written to a log
(JSON lines) with what undoes it, and `undo` replays those in reverse.

Mechanisms, all real:
- freeze/thaw: SIGSTOP/SIGCONT of the node's process;
- kill/restart: SIGKILL, then the same command line started again in the same
  working directory and network namespace (read from /proc before the kill);
- slow: a small worker process stops and continues the node (SIGSTOP for
  `stop_ms` of every `every_ms`), so the node answers late but answers;
- slow disk: DEBUG AOF-FLUSH-SLEEP (the node sleeps before each AOF write);
- partition: policy-routing blackhole rules between network namespaces (see
  netlab.py) when the node's address belongs to a lab; otherwise, isolating
  the node from every peer with DEBUG DROP-CLUSTER-PACKET-FILTER -2,
  CLOSE-CLUSTER-LINK-ON-PACKET-DROP 1 and PAUSE-CRON 1 (the cluster bus only: a
  replication link stays up, and the node's cron is paused while isolated).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

from pynode.chaos.netlab import STATE_DIR, NetLab, NetLabError
from pynode.localcluster import pid_alive


# the action log `pynode chaos` and `pynode dashboard` use unless told otherwise
DEFAULT_LOG = os.environ.get("PYNODE_CHAOS_LOG", "pynode-chaos.log")


class ChaosError(Exception):
    pass


# ---------------------------------------------------------------- talking to a node
def parse_node(spec: str) -> tuple[str, int]:
    host, _, port = spec.rpartition(":")
    if not host or not port.isdigit():
        raise ChaosError("a node is host:port, not %r" % spec)
    return host, int(port)


def _enc(*args) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def command(node: str, *args, password: str | None = None, timeout: float = 5.0,
            user: str | None = None) -> bytes:
    """One command on a fresh connection; the first reply line(s) as bytes.
    Raises ChaosError for an error reply or a node that cannot be reached."""
    host, port = parse_node(node)
    auth = (_enc("AUTH", user, password) if user else _enc("AUTH", password)) if password \
        else b""
    payload = auth + _enc(*args)
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(payload)
            buf = b""
            want = 2 if password else 1
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                replies = _split_replies(buf)
                if replies is not None and len(replies) >= want:
                    for r in replies[:want]:        # AUTH's error counts too
                        if r.startswith(b"-"):
                            raise ChaosError("%s answered %s" % (node, r[1:].strip().decode(
                                "utf-8", "replace")))
                    return replies[want - 1]
    except OSError as e:
        raise ChaosError("cannot reach %s: %s" % (node, e)) from None
    raise ChaosError("%s did not answer in %.0f s" % (node, timeout))


def _split_replies(buf: bytes) -> list[bytes] | None:
    """Whole simple/bulk replies in buf (enough for PING, INFO, DEBUG, CONFIG SET)."""
    out = []
    i = 0
    while i < len(buf):
        end = buf.find(b"\r\n", i)
        if end < 0:
            return out
        if buf[i:i + 1] == b"$":
            n = int(buf[i + 1:end])
            if n < 0:
                out.append(buf[i:end + 2])
                i = end + 2
                continue
            if len(buf) < end + 2 + n + 2:
                return out
            out.append(buf[end + 2:end + 2 + n])
            i = end + 2 + n + 2
        else:
            out.append(buf[i:end + 2])
            i = end + 2
    return out


def node_pid(node: str, password: str | None = None, timeout: float = 5.0,
             user: str | None = None) -> int:
    info = command(node, "INFO", "server", password=password, timeout=timeout,
                   user=user).decode("utf-8", "replace")
    for line in info.splitlines():
        if line.startswith("process_id:"):
            return int(line.split(":", 1)[1])
    raise ChaosError("%s does not report process_id in INFO" % node)


def not_local(pid: int, port: int) -> str | None:
    """None when process pid of this machine listens on TCP port (so signals
    and /proc reach the node); otherwise why not.  A node in a container or on
    another host reports a pid that is not its process here, or none at all."""
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except FileNotFoundError:
        return "no process %d on this machine" % pid
    except PermissionError:
        return "cannot inspect process %d (permission denied)" % pid
    inodes = set()
    for fd in fds:
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    for table in ("tcp", "tcp6"):         # the tables of the process's own namespace
        try:
            with open("/proc/%d/net/%s" % (pid, table)) as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if len(f) > 9 and f[3] == "0A" and f[9] in inodes \
                    and int(f[1].rsplit(":", 1)[1], 16) == port:
                return None
    return "process %d of this machine does not listen on port %d" % (pid, port)


def _netns_of(pid: int) -> str | None:
    """The name (ip netns) of the network namespace pid lives in, if named."""
    try:
        ino = os.stat("/proc/%d/ns/net" % pid).st_ino
    except OSError:
        return None
    if ino == os.stat("/proc/self/ns/net").st_ino:
        return None
    try:
        for name in os.listdir("/run/netns"):
            if os.stat(os.path.join("/run/netns", name)).st_ino == ino:
                return name
    except OSError:
        pass
    return None


def process_image(pid: int) -> dict:
    """What restarting this process the same way needs."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            argv = [a.decode("utf-8", "surrogateescape") for a in fh.read().split(b"\0") if a]
        cwd = os.readlink("/proc/%d/cwd" % pid)
    except OSError as e:
        raise ChaosError("cannot read process %d: %s" % (pid, e.strerror)) from None
    return {"argv": argv, "cwd": cwd, "netns": _netns_of(pid)}


def start_image(image: dict, log_path: str | None = None) -> int:
    argv = list(image["argv"])
    if image.get("netns"):
        argv = ["ip", "netns", "exec", image["netns"]] + argv
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        p = subprocess.Popen(argv, cwd=image["cwd"], stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        if log_path:
            out.close()
    return p.pid


# ---------------------------------------------------------------- the action log
LOG_FIELDS = ("id", "time", "action", "node", "undo", "undone", "undone_at")


def details(entry: dict) -> dict:
    """An entry's particulars (pid, stop_ms, mechanism, ...), without its undo
    (a restart's undo holds the node's command line, which may carry secrets)."""
    return {k: v for k, v in entry.items() if k not in LOG_FIELDS}


def summary(entry: dict) -> str:
    extra = entry.get("mechanism")
    return "%d: %s %s%s" % (entry["id"], entry["action"], entry["node"],
                            " (%s)" % extra if extra else "")


class Chaos:
    """Actions against nodes, each logged with its undo."""

    def __init__(self, log_path: str, password: str | None = None,
                 state_dir: str = STATE_DIR, user: str | None = None) -> None:
        self.log_path = log_path
        self.password = password
        self.user = user
        self.state_dir = state_dir

    def _cmd(self, node: str, *args) -> bytes:
        return command(node, *args, password=self.password, user=self.user)

    def pid_of(self, node: str) -> int:
        return node_pid(node, self.password, user=self.user)

    # log ------------------------------------------------------------------
    def entries(self) -> list[dict]:
        try:
            with open(self.log_path) as fh:
                lines = fh.read().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for i, ln in enumerate(lines, 1):
            try:
                e = json.loads(ln)
            except ValueError:
                e = None
            if not isinstance(e, dict) or not isinstance(e.get("id"), int):
                raise ChaosError("%s line %d is not an entry of this log (a JSON object "
                                 "with an id): remove or fix it" % (self.log_path, i))
            out.append(e)
        # later lines update earlier entries of the same id
        merged: dict[int, dict] = {}
        for e in out:
            merged.setdefault(e["id"], {}).update(e)
        return [merged[k] for k in sorted(merged)]

    def _append(self, entry: dict) -> None:
        d = os.path.dirname(os.path.abspath(self.log_path))
        os.makedirs(d, exist_ok=True)
        with open(self.log_path, "a") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def record(self, action: str, node: str, undo: dict | None, **detail) -> dict:
        ids = [e["id"] for e in self.entries()]
        entry = {"id": (max(ids) + 1) if ids else 1, "time": round(time.time(), 3),
                 "action": action, "node": node, "undo": undo, "undone": undo is None}
        entry.update(detail)
        self._append(entry)
        return entry

    def mark_undone(self, entry_id: int) -> None:
        self._append({"id": entry_id, "undone": True, "undone_at": round(time.time(), 3)})

    # actions ---------------------------------------------------------------
    def freeze(self, node: str) -> dict:
        pid = self.pid_of(node)
        os.kill(pid, signal.SIGSTOP)
        return self.record("freeze", node, {"action": "thaw", "pid": pid}, pid=pid)

    def thaw(self, node: str, pid: int | None = None) -> dict:
        if pid is None:
            pid = self._pid_from_log(node, "freeze")
        os.kill(pid, signal.SIGCONT)
        self._close_open(node, ("freeze",))
        return self.record("thaw", node, None, pid=pid)

    def kill(self, node: str) -> dict:
        pid = self.pid_of(node)
        image = process_image(pid)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.record("kill", node, {"action": "restart", "image": image}, pid=pid)

    def restart(self, node: str, image: dict | None = None) -> dict:
        if image is None:
            for e in reversed(self.entries()):
                if e["node"] == node and e["action"] == "kill" and not e["undone"]:
                    image = e["undo"]["image"]
                    break
            else:
                raise ChaosError("no kill of %s in %s to restart" % (node, self.log_path))
        log_path = os.path.join(image["cwd"], "chaos-restart-%s.log"
                                % node.replace(":", "-"))
        pid = start_image(image, log_path)
        self._close_open(node, ("kill",))
        return self.record("restart", node, None, pid=pid, output=log_path)

    def slow(self, node: str, stop_ms: int, every_ms: int) -> dict:
        if not 0 < stop_ms < every_ms:
            raise ChaosError("slow needs 0 < stop-ms < every-ms")
        pid = self.pid_of(node)
        worker = subprocess.Popen(
            [sys.executable, "-m", "pynode.chaos.control", "slow-worker", str(pid),
             str(stop_ms), str(every_ms)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        return self.record("slow", node, {"action": "fast", "pid": pid, "worker": worker.pid},
                           pid=pid, stop_ms=stop_ms, every_ms=every_ms)

    def fast(self, node: str, undo: dict | None = None) -> dict:
        if undo is None:
            for e in reversed(self.entries()):
                if e["node"] == node and e["action"] == "slow" and not e["undone"]:
                    undo = e["undo"]
                    break
            else:
                raise ChaosError("%s is not slowed (no open slow in %s)" % (node, self.log_path))
        try:
            os.kill(undo["worker"], signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 5
        while pid_alive(undo["worker"]) and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            os.kill(undo["pid"], signal.SIGCONT)
        except ProcessLookupError:
            pass
        self._close_open(node, ("slow",))
        return self.record("fast", node, None, pid=undo["pid"])

    def slow_disk(self, node: str, usec: int) -> dict:
        self._cmd(node, "DEBUG", "AOF-FLUSH-SLEEP", usec)
        return self.record("slow-disk", node, {"action": "fast-disk"}, usec=usec)

    def fast_disk(self, node: str) -> dict:
        self._cmd(node, "DEBUG", "AOF-FLUSH-SLEEP", 0)
        self._close_open(node, ("slow-disk",))
        return self.record("fast-disk", node, None)

    def partition(self, node: str, peers: list[str] | None, one_way: bool = False) -> dict:
        """Cut node off from peers (every other host of its lab when None)."""
        addr, _ = parse_node(node)
        lab = NetLab.find_addr(addr, self.state_dir)
        if lab is not None:
            if peers is None:
                mine = lab.host_of(addr)
                targets = [a for h, info in lab.hosts.items() if h != mine
                           for a in info["addrs"]] + [lab.gateway()]
            else:
                targets = [parse_node(p)[0] if ":" in p else p for p in peers]
            try:
                rules = lab.partition([addr], [t for t in targets if t != lab.gateway()],
                                      one_way)
            except NetLabError as e:
                raise ChaosError(str(e)) from None
            return self.record("partition", node, {"action": "heal", "lab": lab.name,
                                                   "rules": rules},
                               mechanism="netns", peers=targets, one_way=one_way)
        if peers is not None or one_way:
            raise ChaosError("%s is not in a network lab: without network namespaces only a "
                             "whole-bus isolation is possible (no --from, no --one-way); "
                             "run as root with `pynode chaos net create` for per-peer "
                             "partitions" % node)
        # as Redis's own cluster tests isolate a node: drop (and close the link
        # of) every bus packet it receives, and pause its cron so that its own
        # pings stop keeping the peers' view of it fresh
        self._cmd(node, "DEBUG", "CLOSE-CLUSTER-LINK-ON-PACKET-DROP", 1)
        self._cmd(node, "DEBUG", "DROP-CLUSTER-PACKET-FILTER", -2)
        self._cmd(node, "DEBUG", "PAUSE-CRON", 1)
        return self.record("partition", node, {"action": "heal", "lab": None},
                           mechanism="debug-packet-filter")

    def heal(self, node: str, undo: dict | None = None) -> dict:
        opened = [e for e in self.entries() if e["node"] == node and e["action"] == "partition"
                  and not e["undone"]]
        if undo is not None:
            opened = [{"undo": undo}]
        if not opened:
            raise ChaosError("%s is not partitioned (no open partition in %s)"
                             % (node, self.log_path))
        for e in opened:
            u = e["undo"]
            if u.get("lab"):
                lab = NetLab.load(u["lab"], self.state_dir)
                for h, src, dst in u["rules"]:
                    if [h, src, dst] in lab.rules:
                        from pynode.chaos.netlab import rule_cmds, run
                        run(rule_cmds(lab.hosts[h]["ns"], src, dst, False), check=False)
                        lab.rules.remove([h, src, dst])
                lab.save()
            else:
                self._cmd(node, "DEBUG", "PAUSE-CRON", 0)
                self._cmd(node, "DEBUG", "DROP-CLUSTER-PACKET-FILTER", -1)
                self._cmd(node, "DEBUG", "CLOSE-CLUSTER-LINK-ON-PACKET-DROP", 0)
        self._close_open(node, ("partition",))
        return self.record("heal", node, None)

    def undo(self, entry_id: int | None = None) -> list[dict]:
        """Undo one open action (by id) or every open one, newest first."""
        done = []
        for e in reversed(self.entries()):
            if e["undone"] or (entry_id is not None and e["id"] != entry_id):
                continue
            u = e["undo"]
            node = e["node"]
            kind = u["action"]
            if kind == "thaw":
                self.thaw(node, u["pid"])
            elif kind == "restart":
                self.restart(node, u["image"])
            elif kind == "fast":
                self.fast(node, u)
            elif kind == "fast-disk":
                self.fast_disk(node)
            elif kind == "heal":
                self.heal(node, u)
            self.mark_undone(e["id"])
            done.append(e)
        if entry_id is not None and not done:
            raise ChaosError("no open action %d in %s" % (entry_id, self.log_path))
        return done

    # helpers -----------------------------------------------------------------
    def _pid_from_log(self, node: str, action: str) -> int:
        for e in reversed(self.entries()):
            if e["node"] == node and e["action"] == action and not e["undone"]:
                return e["pid"]
        raise ChaosError("no open %s of %s in %s" % (action, node, self.log_path))

    def _close_open(self, node: str, actions: tuple[str, ...]) -> None:
        for e in self.entries():
            if e["node"] == node and e["action"] in actions and not e["undone"]:
                self.mark_undone(e["id"])


def slow_worker(pid: int, stop_ms: int, every_ms: int) -> int:
    """Stop pid for stop_ms of every every_ms until told to stop or pid exits."""
    running = [True]

    def stop(*_):
        running[0] = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while running[0] and pid_alive(pid):
            os.kill(pid, signal.SIGSTOP)
            time.sleep(stop_ms / 1000.0)
            os.kill(pid, signal.SIGCONT)
            if running[0]:
                time.sleep((every_ms - stop_ms) / 1000.0)
    except ProcessLookupError:
        return 0
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "slow-worker":
        sys.exit(slow_worker(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
    sys.exit("usage: python3 -m pynode.chaos.control slow-worker PID STOP_MS EVERY_MS")
