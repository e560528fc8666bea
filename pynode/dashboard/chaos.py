"""Chaos from the page: pynode.chaos's own Chaos object, so an action taken here
lands in the same JSON-lines log (with its undo) that `pynode chaos` writes and
reads, and `pynode chaos undo` can reverse it, or the page what the command did.

Breaking a node (freeze, kill -9, slow, slow disk, partition) signals its
process or reads /proc, so it needs the node to be a process of this machine:
a node is local when the process_id its INFO reports is, here, a process
listening on the node's port (a node in a container or on another host fails
this).  The page gets, per node, whether it is local and why not; the buttons
of other nodes are disabled, and the actions refused here as well.  Repairing
(thaw, restart, fast, fast disk, heal, undo) works from what the log recorded,
so a frozen or killed node, which answers nothing, can still be brought back.
The blocking calls of Chaos run in a thread, one action at a time (the
Actions lock).
"""

from __future__ import annotations

import asyncio
import os

from pynode.chaos.control import Chaos, ChaosError, details, not_local, summary
from pynode.chaos.netlab import NetLabError
from pynode.dashboard.actions import ActionError
from pynode.dashboard.state import num

LOG_SHOWN = 100         # newest log entries sent to the page
SLOW_MAX_MS = 60000
DISK_MAX_USEC = 10_000_000


class ChaosPanel:
    def __init__(self, poller, log_path: str) -> None:
        self.poller = poller
        self.chaos = Chaos(log_path, poller.password, user=poller.user)
        self._local: dict[tuple[str, int], str | None] = {}    # (addr, pid) -> why not
        self._log_stamp: tuple | None = None
        self._log_view: dict = {"entries": [], "error": None}

    # -- what the page sees ------------------------------------------------------

    def log_view(self) -> dict:
        """The newest entries (particulars only, never an undo), re-read when
        the file changed: the command line writes to it too."""
        try:
            st = os.stat(self.chaos.log_path)
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp != self._log_stamp:
            self._log_stamp = stamp
            try:
                entries = self.chaos.entries()
                error = None
            except ChaosError as e:
                entries, error = [], str(e)
            self._log_view = {"entries": [
                {"id": e["id"], "time": e.get("time"), "action": e.get("action"),
                 "node": e.get("node"), "open": not e.get("undone", True),
                 "details": details(e)} for e in entries[-LOG_SHOWN:]], "error": error}
        return self._log_view

    def why_not_local(self, node: dict, pid: int | None = None) -> str | None:
        """pid: the node's process id as it reports it (default: from the last poll)."""
        if pid is None:
            pid = num((node.get("info") or {}).get("process_id"), None)
        if pid is None:
            return "the node does not answer INFO"
        key = (node["addr"], pid)
        if key not in self._local:
            if len(self._local) > 1000:
                self._local.clear()
            self._local[key] = not_local(pid, node["port"])
        return self._local[key]

    def view(self) -> dict:
        nodes = {}
        for n in (self.poller.snapshot or {}).get("nodes", []):
            why = self.why_not_local(n)
            nodes[n["id"]] = {"local": why is None, "why": why}
        return {"log_path": os.path.abspath(self.chaos.log_path), "nodes": nodes,
                **self.log_view()}

    # -- actions -------------------------------------------------------------------

    def handlers(self) -> dict:
        return {"chaos-freeze": self.freeze, "chaos-thaw": self.thaw, "chaos-kill": self.kill,
                "chaos-restart": self.restart, "chaos-slow": self.slow,
                "chaos-fast": self.fast, "chaos-slow-disk": self.slow_disk,
                "chaos-fast-disk": self.fast_disk, "chaos-partition": self.partition,
                "chaos-heal": self.heal, "chaos-undo": self.undo}

    async def _run(self, fn, *args) -> dict:
        try:
            entry = await asyncio.to_thread(fn, *args)
        except (ChaosError, NetLabError, OSError) as e:
            raise ActionError(str(e)) from None
        return {"output": summary(entry)}

    def _node(self, p: dict) -> dict:
        node_id = p.get("node", "")
        for n in (self.poller.snapshot or {}).get("nodes", []):
            if n["id"] == node_id:
                return n
        raise ActionError("unknown node %r" % node_id)

    async def _local_node(self, p: dict) -> dict:
        """The node to break, checked to be a process of this machine with the
        process id it reports now (the last poll may predate a restart or a thaw)."""
        n = self._node(p)
        try:
            pid = await asyncio.to_thread(self.chaos.pid_of, n["addr"])
        except ChaosError as e:
            raise ActionError(str(e)) from None
        why = self.why_not_local(n, pid)
        if why:
            raise ActionError("%s is not a process of the dashboard's machine (%s): chaos "
                              "actions need the dashboard on the nodes' machine"
                              % (n["addr"], why))
        return n

    async def freeze(self, p: dict) -> dict:
        return await self._run(self.chaos.freeze, (await self._local_node(p))["addr"])

    async def thaw(self, p: dict) -> dict:
        return await self._run(self.chaos.thaw, self._node(p)["addr"])

    async def kill(self, p: dict) -> dict:
        return await self._run(self.chaos.kill, (await self._local_node(p))["addr"])

    async def restart(self, p: dict) -> dict:
        return await self._run(self.chaos.restart, self._node(p)["addr"])

    async def slow(self, p: dict) -> dict:
        node = await self._local_node(p)
        stop_ms = _int(p, "stop_ms", 200, 1, SLOW_MAX_MS)
        every_ms = _int(p, "every_ms", 1000, 2, SLOW_MAX_MS)
        return await self._run(self.chaos.slow, node["addr"], stop_ms, every_ms)

    async def fast(self, p: dict) -> dict:
        return await self._run(self.chaos.fast, self._node(p)["addr"])

    async def slow_disk(self, p: dict) -> dict:
        node = await self._local_node(p)
        usec = _int(p, "usec", None, 1, DISK_MAX_USEC)
        return await self._run(self.chaos.slow_disk, node["addr"], usec)

    async def fast_disk(self, p: dict) -> dict:
        return await self._run(self.chaos.fast_disk, self._node(p)["addr"])

    async def partition(self, p: dict) -> dict:
        node = await self._local_node(p)
        peers = p.get("peers") or []
        if not isinstance(peers, list):
            raise ActionError("peers must be a list of node ids (empty: isolate)")
        addrs = [self._node({"node": peer})["addr"] for peer in peers]
        if node["addr"] in addrs:
            raise ActionError("a node cannot be partitioned from itself")
        return await self._run(self.chaos.partition, node["addr"], addrs or None,
                               bool(p.get("one_way")))

    async def heal(self, p: dict) -> dict:
        return await self._run(self.chaos.heal, self._node(p)["addr"])

    async def undo(self, p: dict) -> dict:
        entry_id = p.get("id")
        if entry_id is not None and (not isinstance(entry_id, int)
                                     or isinstance(entry_id, bool)):
            raise ActionError("id must be an action id from the chaos log")
        try:
            done = await asyncio.to_thread(self.chaos.undo, entry_id)
        except (ChaosError, NetLabError, OSError) as e:
            raise ActionError(str(e)) from None
        return {"output": "\n".join("undone " + summary(e) for e in done)
                or "nothing to undo"}


def _int(p: dict, name: str, default, lo: int, hi: int) -> int:
    v = p.get(name, default)
    if v is None:
        raise ActionError("%s is required" % name)
    if isinstance(v, str) and v.strip().isdigit():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise ActionError("%s must be an integer from %d to %d" % (name, lo, hi))
    return v
