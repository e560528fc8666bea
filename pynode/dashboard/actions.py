"""What the operator can do from the page, run on the server side.

Manual failover (CLUSTER FAILOVER on a replica) and moving slots (the legacy way
redis-cli moves a slot: SETSLOT IMPORTING on the target, MIGRATING on the source,
GETKEYSINSLOT + MIGRATE until empty, SETSLOT NODE on the target, the source and
every other primary) talk RESP directly; rebalance, add-node and del-node run
`redis-cli --cluster`, with the nodes' password in REDISCLI_AUTH, never on argv.
Every argument is checked against the latest snapshot before anything is sent.
"""

from __future__ import annotations

import asyncio
import os
import re

from pynode.dashboard.resp import ReplyError

ADDR = re.compile(r"^[A-Za-z0-9.\-:\[\]]+:\d{1,5}$")
MIGRATE_BATCH = 100


class ActionError(Exception):
    pass


def parse_slots(spec: str) -> list[int]:
    """'0-99,200' -> [0..99, 200]; bad input raises ActionError."""
    out: list[int] = []
    for part in str(spec).replace(" ", "").split(","):
        if not part:
            continue
        a, _, b = part.partition("-")
        if not a.isdigit() or (b and not b.isdigit()):
            raise ActionError("bad slot range %r" % part)
        lo, hi = int(a), int(b or a)
        if not 0 <= lo <= hi <= 16383:
            raise ActionError("slot range %r out of 0-16383" % part)
        out.extend(range(lo, hi + 1))
    if not out:
        raise ActionError("no slots given")
    return sorted(set(out))


class Actions:
    def __init__(self, poller, timeout: float = 120.0, extra: dict | None = None) -> None:
        self.poller = poller
        self.timeout = timeout
        self.lock = asyncio.Lock()      # one action at a time
        self.handlers = {"failover": self.failover, "move-slots": self.move_slots,
                         "rebalance": self.rebalance, "add-node": self.add_node,
                         "forget-node": self.forget_node, **(extra or {})}

    def _node(self, node_id: str) -> dict:
        for n in (self.poller.snapshot or {}).get("nodes", []):
            if n["id"] == node_id:
                return n
        raise ActionError("unknown node %r" % node_id)

    async def _ok(self, addr: str, *args, timeout: float = 10.0):
        try:
            reply = await self.poller.call(addr, *args, timeout=timeout)
        except (OSError, ConnectionError, asyncio.TimeoutError) as e:
            raise ActionError("%s: %s" % (addr, e or type(e).__name__))
        if isinstance(reply, ReplyError):
            raise ActionError("%s: %s" % (addr, reply))
        return reply

    async def run(self, name: str, params: dict) -> dict:
        handler = self.handlers.get(name)
        if handler is None:
            raise ActionError("unknown action %r" % name)
        async with self.lock:
            return await handler(params)

    async def failover(self, p: dict) -> dict:
        node = self._node(p.get("node", ""))
        if node["role"] != "slave":
            raise ActionError("CLUSTER FAILOVER runs on a replica; %s is a %s"
                              % (node["addr"], node["role"] or "node without role"))
        mode = (p.get("mode") or "").upper()
        if mode not in ("", "FORCE", "TAKEOVER"):
            raise ActionError("mode must be FORCE, TAKEOVER or empty")
        await self._ok(node["addr"], "CLUSTER", "FAILOVER", *([mode] if mode else []))
        return {"output": "CLUSTER FAILOVER %s sent to %s" % (mode, node["addr"])}

    async def move_slots(self, p: dict) -> dict:
        slots = parse_slots(p.get("slots", ""))
        target = self._node(p.get("target", ""))
        if target["role"] != "master":
            raise ActionError("the target must be a primary")
        nodes = self.poller.snapshot["nodes"]
        owners = {}
        for n in nodes:
            for a, b in n["slots"]:
                for s in range(a, b + 1):
                    owners[s] = n
        primaries = [n for n in nodes if n["role"] == "master"]
        moved, keys = 0, 0
        for slot in slots:
            source = owners.get(slot)
            if source is None:
                raise ActionError("slot %d has no owner (use redis-cli --cluster fix)" % slot)
            if source["id"] == target["id"]:
                continue
            keys += await self._move_one(slot, source, target, primaries)
            moved += 1
        return {"output": "moved %d slot(s), %d key(s) to %s" % (moved, keys, target["addr"])}

    async def _move_one(self, slot: int, source: dict, target: dict,
                        primaries: list[dict]) -> int:
        await self._ok(target["addr"], "CLUSTER", "SETSLOT", slot, "IMPORTING", source["id"])
        await self._ok(source["addr"], "CLUSTER", "SETSLOT", slot, "MIGRATING", target["id"])
        moved = 0
        auth = (["AUTH2", self.poller.user, self.poller.password] if self.poller.user
                else ["AUTH", self.poller.password] if self.poller.password else [])
        while True:
            keys = await self._ok(source["addr"], "CLUSTER", "GETKEYSINSLOT", slot,
                                  MIGRATE_BATCH)
            if not keys:
                break
            await self._ok(source["addr"], "MIGRATE", target["host"], target["port"], "", 0,
                           60000, *auth, "KEYS", *keys, timeout=70.0)
            moved += len(keys)
        await self._ok(target["addr"], "CLUSTER", "SETSLOT", slot, "NODE", target["id"])
        await self._ok(source["addr"], "CLUSTER", "SETSLOT", slot, "NODE", target["id"])
        for n in primaries:
            if n["id"] not in (source["id"], target["id"]) and n["up"]:
                try:
                    await self._ok(n["addr"], "CLUSTER", "SETSLOT", slot, "NODE", target["id"])
                except ActionError:
                    pass        # gossip carries the new owner there anyway
        return moved

    async def _cli(self, *args: str) -> dict:
        env = dict(os.environ)
        env.pop("REDISCLI_AUTH", None)
        if self.poller.password:
            env["REDISCLI_AUTH"] = self.poller.password
        argv = ["redis-cli", "--cluster", *args]
        if self.poller.user:
            argv += ["--user", self.poller.user]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env=env)
        except OSError as e:
            raise ActionError("cannot run redis-cli: %s" % e)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self.timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise ActionError("redis-cli --cluster %s timed out after %.0fs"
                              % (args[0], self.timeout))
        text = out.decode("utf-8", "replace")
        if proc.returncode != 0:
            raise ActionError("redis-cli --cluster %s failed (rc=%d):\n%s"
                              % (args[0], proc.returncode, text))
        return {"output": text}

    def _any_up(self) -> str:
        for n in (self.poller.snapshot or {}).get("nodes", []):
            if n["up"] and n["role"] == "master":
                return n["addr"]
        raise ActionError("no reachable primary")

    async def rebalance(self, p: dict) -> dict:
        args = ["rebalance", self._any_up(), "--cluster-yes"]
        if p.get("use_empty_masters"):
            args.append("--cluster-use-empty-masters")
        return await self._cli(*args)

    async def add_node(self, p: dict) -> dict:
        addr = str(p.get("addr", ""))
        if not ADDR.match(addr):
            raise ActionError("address must be host:port")
        args = ["add-node", addr, self._any_up()]
        if p.get("primary"):
            prim = self._node(p["primary"])
            args += ["--cluster-slave", "--cluster-master-id", prim["id"]]
        return await self._cli(*args)

    async def forget_node(self, p: dict) -> dict:
        node = self._node(p.get("node", ""))
        if node["slot_count"]:
            raise ActionError("%s still serves %d slots: move them first"
                              % (node["addr"], node["slot_count"]))
        return await self._cli("del-node", self._any_up(), node["id"])
