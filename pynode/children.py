"""Every child process the node forks, as Redis's childinfo/fork code.

`srv.children` is a Children: the only place that forks, reaps and kills.
Three kinds of child write a copy-on-write snapshot of the dataset:
  "rdb"        BGSAVE and save points (pynode/snapshots.py)
  "aof"        an AOF rewrite (storage/aof.py asks through the owner it is given)
  "repl-sync"  the RDB of a full sync, written into a pipe (pynode/replication.py)
Redis runs one at a time (hasActiveChildProcess): callers check busy() and
schedule their work for later when another child runs (BGSAVE SCHEDULE,
BGREWRITEAOF "scheduled", a replica waiting for its full sync).  Redis calls
both "rdb" and "repl-sync" CHILD_TYPE_RDB: kind_is_rdb() answers that.

daemonize() (daemonize yes) is the one other fork, before the server runs.

INFO total_forks and latest_fork_usec are counted here only.  A child runs
body() after child_setup() and _exit()s 0 if it returned, 1 if it raised.
A child that succeeded reports its copy-on-write size (the Private_Dirty
bytes of its mappings) through a pipe, as Redis's child info: logged as
"Fork CoW for <name>: ..." and kept for INFO rdb_last_cow_size /
aof_last_cow_size (last_cow).
"""

from __future__ import annotations

import gc
import os
import signal
import stat
import struct
import time

RDB, AOF, REPL_SYNC = "rdb", "aof", "repl-sync"
# the name of each kind in the child's "Fork CoW for <name>" line
COW_NAMES = {RDB: "RDB", AOF: "AOF rewrite", REPL_SYNC: "RDB"}


class Children:
    def __init__(self, log=None, on_latency=None) -> None:
        self.log = log
        # fn(event, seconds): the latency monitor's "fork" event
        self.on_latency = on_latency
        self.active: dict[int, str] = {}      # pid -> kind
        self.total_forks = 0                  # INFO total_forks
        self.last_fork_usec = 0               # INFO latest_fork_usec
        self.cow_pipes: dict[int, int] = {}   # pid -> read end of its CoW report
        self.last_cow = {RDB: 0, AOF: 0}      # INFO rdb/aof_last_cow_size
        # fn(busy): a child started (True) / none runs any more (False)
        self.on_busy = None

    # ------------------------------------------------------------ state
    def busy(self) -> str | None:
        """The kind of a running child, or None (hasActiveChildProcess)."""
        for kind in self.active.values():
            return kind
        return None

    def running(self, kind: str) -> bool:
        return kind in self.active.values()

    def kind_is_rdb(self) -> bool:
        """server.child_type == CHILD_TYPE_RDB: a BGSAVE or a full sync."""
        return self.running(RDB) or self.running(REPL_SYNC)

    # ------------------------------------------------------------ life cycle
    def fork(self, kind: str, body, what: str) -> int:
        """Fork a child that runs body(); its pid.  OSError if the fork fails.
        `what` names the job in the child's error line ("Error <what>: ...")."""
        rfd, wfd = os.pipe()
        t0 = time.perf_counter()
        try:
            pid = os.fork()
        except OSError:
            os.close(rfd)
            os.close(wfd)
            raise
        if pid == 0:
            os.close(rfd)
            run_child(body, what, self.log, (wfd, COW_NAMES.get(kind, kind)))  # never returns
        os.close(wfd)
        self.cow_pipes[pid] = rfd
        self.last_fork_usec = int((time.perf_counter() - t0) * 1e6)
        self.total_forks += 1
        if self.on_latency is not None:
            self.on_latency("fork", self.last_fork_usec / 1e6)
        self.active[pid] = kind
        if self.on_busy is not None:
            self.on_busy(True)
        return pid

    def reap(self, pid: int, block: bool = False):
        """None while the child runs, else its wait status (see ok())."""
        try:
            done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            done, status = pid, 1 << 8         # gone without a status: a failure
        if done == 0:
            return None
        kind = self.active.pop(pid, None)
        if not self.active and self.on_busy is not None:
            self.on_busy(False)
        rfd = self.cow_pipes.pop(pid, None)
        if rfd is not None:
            try:
                data = os.read(rfd, 8)
            except OSError:
                data = b""
            os.close(rfd)
            if len(data) == 8:
                self.last_cow[RDB if kind == REPL_SYNC else kind] = struct.unpack("<Q", data)[0]
        return status

    def kill(self, pid: int, sig: int = signal.SIGKILL) -> None:
        """Stop a child and reap it (killRDBChild / killAppendOnlyChild)."""
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        self.reap(pid, block=True)

    @staticmethod
    def ok(status: int) -> bool:
        return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def run_child(body, what: str, log=None, cow=None) -> None:
    """The whole life of a forked child: set up, run body(), exit 0 if it
    returned, 1 if it raised (logged as "Error <what>: ..."); after success
    the CoW report goes to cow = (pipe fd, name). Never returns."""
    code = 1
    try:
        child_setup(log)
        body()
        code = 0
        if cow is not None:
            report_cow(cow[0], cow[1], log)
    except BaseException as e:  # noqa: BLE001 - the child must always _exit
        try:
            if log is not None:
                log.warning("Error %s: %r" % (what, e))
        except BaseException:
            pass
    finally:
        os._exit(code)


def private_dirty() -> int:
    """Bytes of this process's pages written since the fork (Private_Dirty
    of /proc/self/smaps_rollup, as Redis's zmalloc_get_private_dirty); 0
    where /proc does not tell."""
    try:
        with open("/proc/self/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Private_Dirty:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def report_cow(fd: int, name: str, log=None) -> None:
    """sendChildCowInfo at the end of a child: log its CoW and send it."""
    cow = private_dirty()
    if log is not None:
        mb = cow // (1024 * 1024)
        log.notice("Fork CoW for %s: current %d MB, peak %d MB, average %d MB"
                   % (name, mb, mb, mb))
    try:
        os.write(fd, struct.pack("<Q", cow))
    except OSError:
        pass


def child_setup(log=None) -> None:
    """First thing in a forked child: no gc, default signals, inherited
    sockets closed, log lines marked C."""
    gc.disable()
    try:
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):
        pass
    _close_sockets()
    if log is not None and hasattr(log, "role"):
        log.role = "C"


def _close_sockets() -> None:
    """Close inherited sockets (listeners, clients), so a restarted server can
    bind its port while the child still runs."""
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return
    for f in fds:
        try:
            fd = int(f)
            if fd > 2 and stat.S_ISSOCK(os.fstat(fd).st_mode):
                os.close(fd)
        except (ValueError, OSError):
            pass


def daemonize() -> None:
    """daemonize yes: the server goes on in a grandchild, detached from its
    terminal and session, with stdin/out/err on /dev/null (the parents exit 0)."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    fd = os.open(os.devnull, os.O_RDWR)
    for i in (0, 1, 2):
        os.dup2(fd, i)
