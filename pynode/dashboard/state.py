"""Replies -> snapshot -> events: the dashboard's sans-I/O part.

parse_nodes() reads CLUSTER NODES, parse_info() reads INFO / CLUSTER INFO,
build_snapshot() merges what one poll round got from every node into one JSON-able
dict, and diff() compares two successive snapshots into the event log (PFAIL/FAIL,
failovers, epoch changes, slot moves, migrations, nodes joining/leaving, nodes the
dashboard cannot reach).  No sockets, no clock: the poller passes `now`.
"""

from __future__ import annotations

from pynode.metrics import num, parse_info, parse_kv  # noqa: F401 - also this module's API

SLOTS = 16384


def parse_nodes(text) -> list[dict]:
    """CLUSTER NODES -> one dict per line, slots as [start, end] ranges."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    nodes = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        addr = parts[1].split(",")[0]
        hostport, _, cport = addr.partition("@")
        host, _, port = hostport.rpartition(":")
        flags = [f for f in parts[2].split(",") if f and f != "noflags"]
        slots, migrating, importing = [], {}, {}
        for s in parts[8:]:
            if s.startswith("["):
                body = s.strip("[]")
                if "->-" in body:
                    slot, dest = body.split("->-")
                    migrating[int(slot)] = dest
                elif "-<-" in body:
                    slot, src = body.split("-<-")
                    importing[int(slot)] = src
                continue
            a, _, b = s.partition("-")
            slots.append([int(a), int(b or a)])
        nodes.append({
            "id": parts[0], "addr": hostport, "host": host, "port": num(port),
            "cport": num(cport), "flags": flags,
            "role": "master" if "master" in flags else "slave" if "slave" in flags else "",
            "primary": None if parts[3] == "-" else parts[3],
            "ping_sent": num(parts[4]), "pong_recv": num(parts[5]),
            "config_epoch": num(parts[6]), "link": parts[7],
            "slots": slots, "migrating": migrating, "importing": importing,
            "myself": "myself" in flags,
        })
    return nodes


def parse_slot_stats(reply) -> list[dict] | None:
    """CLUSTER SLOT-STATS (RESP2 shape: [[slot, [name, value, ...]], ...])."""
    if not isinstance(reply, list):
        return None
    out = []
    for item in reply:
        if not isinstance(item, list) or len(item) != 2 or not isinstance(item[1], list):
            return None
        stats = {"slot": int(item[0])}
        fields = item[1]
        for i in range(0, len(fields) - 1, 2):
            name = fields[i].decode() if isinstance(fields[i], bytes) else str(fields[i])
            stats[name] = num(fields[i + 1])
        out.append(stats)
    return out


def _text(v) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def parse_latency(slowlog_len, slowlog_last, latest) -> dict:
    """SLOWLOG LEN, SLOWLOG GET 1 and LATENCY LATEST replies -> one dict;
    a refused command (an error reply) leaves its part out."""
    out: dict = {"events": []}
    if isinstance(slowlog_len, int):
        out["slowlog_len"] = slowlog_len
    if isinstance(slowlog_last, list):
        if slowlog_last and isinstance(slowlog_last[0], list) and len(slowlog_last[0]) > 2:
            out["slowlog_last_id"] = num(slowlog_last[0][0])
            out["slowlog_last_usec"] = num(slowlog_last[0][2])
        elif not slowlog_last:
            out["slowlog_last_id"] = out["slowlog_last_usec"] = 0
    if isinstance(latest, list):
        for ev in latest:
            if isinstance(ev, list) and len(ev) >= 4:
                out["events"].append({"event": _text(ev[0]), "time": num(ev[1]),
                                      "latest_ms": num(ev[2]), "max_ms": num(ev[3])})
    return out


def parse_slot_migrations(reply) -> list[dict] | None:
    """CLUSTER GETSLOTMIGRATIONS (Valkey 9.0; RESP2: one flat name/value list
    per job) -> dicts with text values and the job's slot_count; None when the
    node refuses it."""
    if not isinstance(reply, list):
        return None
    out = []
    for job in reply:
        if not isinstance(job, list) or len(job) % 2:
            return None
        d = {_text(job[i]): (job[i + 1] if isinstance(job[i + 1], int) else _text(job[i + 1]))
             for i in range(0, len(job), 2)}
        count = 0
        for part in str(d.get("slot_ranges", "")).replace(",", " ").split():
            a, _, b = part.partition("-")
            count += num(b or a) - num(a) + 1
        d["slot_count"] = count
        out.append(d)
    return out


def slot_count(ranges) -> int:
    return sum(b - a + 1 for a, b in ranges)


def owner_map(nodes: list[dict]) -> list[str | None]:
    """slot -> primary id (None where no node claims the slot)."""
    owners: list[str | None] = [None] * SLOTS
    for n in nodes:
        for a, b in n["slots"]:
            for s in range(a, b + 1):
                owners[s] = n["id"]
    return owners


def _keys(info: dict[str, str]) -> int:
    return sum(num(parse_kv(v).get("keys")) for k, v in info.items()
               if k.startswith("db") and k[2:].isdigit())


def build_snapshot(now: float, view: list[dict], reference: str | None,
                   per_node: dict[str, dict], prev: dict | None) -> dict:
    """One poll round as a dict the page and /metrics read.

    view: CLUSTER NODES of the reference node (the topology shown);
    per_node: addr -> {"up": bool, "info": dict, "cluster_info": dict,
    "self": the node's own CLUSTER NODES line (dict) or None, "slot_stats": list|None,
    "error": str|None}.
    """
    prev_nodes = {n["id"]: n for n in (prev or {}).get("nodes", [])}
    dt = now - prev["time"] if prev else 0.0
    nodes = []
    for v in view:
        n = dict(v)
        n.pop("myself", None)
        got = per_node.get(v["addr"]) or {"up": False, "error": "not polled"}
        n["up"] = bool(got.get("up"))
        n["error"] = got.get("error")
        own = got.get("self")
        if own and own["id"] == v["id"]:
            n["migrating"], n["importing"] = own["migrating"], own["importing"]
        info = got.get("info") or {}
        n["info"] = info
        n["cluster_info"] = got.get("cluster_info") or {}
        n["slot_stats"] = got.get("slot_stats")
        n["latency"] = got.get("latency")
        n["migrations"] = got.get("migrations")
        n["slot_keys"] = got.get("slot_keys") or {}
        # ops/s from total_commands_processed, minus the dashboard's own commands
        # (counted right before each INFO, so the two deltas cover the same span)
        processed = num(info.get("total_commands_processed"), None)
        own_calls = got.get("own_calls")
        p = prev_nodes.get(v["id"])
        if (processed is not None and p and p.get("processed") is not None and dt > 0
                and processed >= p["processed"] and own_calls is not None
                and p.get("own_calls") is not None):
            others = (processed - p["processed"]) - (own_calls - p["own_calls"])
            n["ops"] = round(max(0, others) / dt, 1)
        else:
            n["ops"] = num(info.get("instantaneous_ops_per_sec"), None)
        n["processed"], n["own_calls"] = processed, own_calls
        n["memory"] = num(info.get("used_memory"), None)
        n["clients"] = num(info.get("connected_clients"), None)
        n["keys"] = _keys(info) if info else None
        n["repl_offset"] = num(info.get("master_repl_offset"), None)
        n["slot_count"] = slot_count(v["slots"])
        nodes.append(n)
    by_id = {n["id"]: n for n in nodes}
    for n in nodes:        # replication lag: primary's offset - replica's offset
        n["lag"] = None
        prim = by_id.get(n["primary"]) if n["primary"] else None
        if prim and prim["repl_offset"] is not None:
            off = num(n["info"].get("slave_repl_offset"), None)
            if off is not None:
                n["lag"] = max(0, prim["repl_offset"] - off)
    shards = []
    for n in nodes:
        if n["role"] == "master":
            shards.append({"primary": n["id"], "slot_count": n["slot_count"],
                           "replicas": [r["id"] for r in nodes if r["primary"] == n["id"]]})
    shards.sort(key=lambda s: (by_id[s["primary"]]["slots"][:1] or [[SLOTS]])[0][0])
    ref = next((n for n in nodes if n["id"] == reference), None)
    cinfo = ref["cluster_info"] if ref else {}
    hot = []
    for n in nodes:
        for st in n.get("slot_stats") or []:
            hot.append(dict(st, node=n["id"]))
    hot.sort(key=lambda s: (-(s.get("cpu-usec") or 0), -(s.get("key-count") or 0)))
    return {
        "time": now, "reference": reference, "nodes": nodes, "shards": shards,
        "cluster": {k[len("cluster_"):]: cinfo[k] for k in cinfo if k.startswith("cluster_")
                    and not k.startswith("cluster_stats_")},
        "slot_stats_supported": any(n.get("slot_stats") is not None for n in nodes),
        "hot_slots": hot[:20],
    }


def _ranges(slots: list[int]) -> str:
    out, start = [], None
    for i, s in enumerate(slots):
        if start is None:
            start = s
        if i + 1 == len(slots) or slots[i + 1] != s + 1:
            out.append(str(start) if start == s else "%d-%d" % (start, s))
            start = None
    return ",".join(out)


def _name(n: dict) -> str:
    return "%s (%s)" % (n["addr"], n["id"][:8])


def diff(prev: dict | None, cur: dict) -> list[dict]:
    """Events between two snapshots: [{"time", "kind", "node", "text"}]."""
    if prev is None:
        return [{"time": cur["time"], "kind": "start", "node": None,
                 "text": "watching %d nodes (%d primaries)" % (
                     len(cur["nodes"]), len(cur["shards"]))}]
    t = cur["time"]
    events: list[dict] = []

    def ev(kind, node, text):
        events.append({"time": t, "kind": kind, "node": node, "text": text})

    old = {n["id"]: n for n in prev["nodes"]}
    new = {n["id"]: n for n in cur["nodes"]}
    for nid, n in new.items():
        o = old.get(nid)
        if o is None:
            ev("node-added", nid, "node %s joined as %s" % (_name(n), n["role"] or "?"))
            continue
        for flag, kind in (("fail?", "pfail"), ("fail", "fail")):
            if flag in n["flags"] and flag not in o["flags"]:
                ev(kind, nid, "%s flagged %s" % (_name(n), flag.upper().replace("FAIL?", "PFAIL")))
            elif flag in o["flags"] and flag not in n["flags"]:
                ev(kind + "-cleared", nid, "%s no longer %s" % (
                    _name(n), flag.upper().replace("FAIL?", "PFAIL")))
        if o["role"] == "slave" and n["role"] == "master":
            was = old.get(o["primary"]) if o["primary"] else None
            ev("failover", nid, "failover: %s promoted to primary (was replica of %s), "
               "config epoch %s" % (_name(n), _name(was) if was else o["primary"],
                                    n["config_epoch"]))
        elif o["role"] == "master" and n["role"] == "slave":
            prim = new.get(n["primary"])
            ev("demoted", nid, "%s is now a replica of %s" % (
                _name(n), _name(prim) if prim else n["primary"]))
        elif (o["role"] == n["role"] == "slave" and o["primary"] != n["primary"]):
            prim = new.get(n["primary"])
            ev("replica-moved", nid, "%s now replicates %s" % (
                _name(n), _name(prim) if prim else n["primary"]))
        if n["config_epoch"] != o["config_epoch"]:
            ev("epoch", nid, "%s config epoch %s -> %s" % (
                _name(n), o["config_epoch"], n["config_epoch"]))
        if n["up"] != o["up"]:
            ev("reachable" if n["up"] else "unreachable", nid, "%s %s" % (
                _name(n), "answers again" if n["up"] else "unreachable from the dashboard: %s"
                % (n.get("error") or "no reply")))
        for slot, dest in n["migrating"].items():
            if o["migrating"].get(slot) != dest:
                d = new.get(dest)
                ev("migrating", nid, "slot %d migrating from %s to %s" % (
                    slot, _name(n), _name(d) if d else dest))
    for nid, o in old.items():
        if nid not in new:
            ev("node-removed", nid, "node %s left the cluster" % _name(o))
    # slot moves, grouped by (from, to)
    before, after = owner_map(prev["nodes"]), owner_map(cur["nodes"])
    moves: dict[tuple, list[int]] = {}
    for s in range(SLOTS):
        if before[s] != after[s]:
            moves.setdefault((before[s], after[s]), []).append(s)
    promoted = {e["node"] for e in events if e["kind"] == "failover"}
    for (src, dst), slots in moves.items():
        s_name = _name(old[src]) if src in old else (src or "nobody")
        d_name = _name(new[dst]) if dst in new else (dst or "nobody")
        if dst in promoted and old.get(dst, {}).get("primary") == src:
            ev("slots-failover", dst, "%s took over %d slots of %s: %s" % (
                d_name, len(slots), s_name, _ranges(slots)))
            continue
        ev("slots-moved", dst, "%d slot%s moved from %s to %s: %s" % (
            len(slots), "" if len(slots) == 1 else "s", s_name, d_name, _ranges(slots)))
    oc, nc = prev.get("cluster", {}), cur.get("cluster", {})
    if oc.get("current_epoch") != nc.get("current_epoch") and oc and nc:
        ev("current-epoch", None, "cluster current epoch %s -> %s" % (
            oc.get("current_epoch"), nc.get("current_epoch")))
    if oc.get("state") != nc.get("state") and nc.get("state"):
        ev("cluster-state", None, "cluster state %s -> %s" % (oc.get("state"), nc.get("state")))
    return events
