"""`pynode rebalance` / `pynode migrate`: drive atomic slot migration over a whole
cluster (redis-cli 7.0 knows nothing of CLUSTER MIGRATESLOTS).

    pynode rebalance HOST:PORT [--weight <node-id-prefix>=W ...] [--threshold 2]
                     [--use-empty-masters] [--simulate] [-a PASSWORD]
    pynode migrate HOST:PORT --slots 0-99,200-299 --to <node-id> [-a PASSWORD]

rebalance plans like `redis-cli --cluster rebalance` (slots per primary in
proportion to its weight, nothing done while every primary is within
--threshold percent of its share, empty primaries only with
--use-empty-masters), then runs one CLUSTER MIGRATESLOTS per (source, target)
move on the source, waits for each with a progress bar, and prints a summary:
slots and keys moved, time, and each move's write hold at the flip.

A client of the cluster like redis-cli: it talks RESP over sockets and imports
nothing of the node but storage.slots' pure slot arithmetic.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time

import hiredis

from storage.slots import slot_ranges as ranges

SLOTS = 16384


class NodeError(Exception):
    pass


class Conn:
    def __init__(self, addr: str, password: str | None = None, timeout: float = 10.0) -> None:
        host, _, port = addr.rpartition(":")
        self.addr = addr
        self.sock = socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout)
        self.reader = hiredis.Reader()
        if password:
            self.call("AUTH", password)

    def call(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        while True:
            r = self.reader.gets()
            if r is not False:
                break
            data = self.sock.recv(1 << 16)
            if not data:
                raise NodeError("%s closed the connection" % self.addr)
            self.reader.feed(data)
        if isinstance(r, hiredis.ReplyError):
            raise NodeError("%s: %s" % (self.addr, r))
        return r

    def close(self) -> None:
        self.sock.close()


def _slots_of(fields: list[str]) -> set[int]:
    out: set[int] = set()
    for f in fields:
        if f.startswith("["):
            continue               # an open SETSLOT migration
        a, _, b = f.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


def primaries(conn: Conn) -> list[dict]:
    """The primaries as CLUSTER NODES shows them: id, addr, slots."""
    text = conn.call("CLUSTER", "NODES").decode()
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8 or "master" not in parts[2] or "fail" in parts[2].split(","):
            continue
        out.append({"id": parts[0], "addr": parts[1].split("@")[0].split(",")[0],
                    "slots": _slots_of(parts[8:])})
    return out


def plan(nodes: list[dict], weights: dict[str, float], threshold: float,
         use_empty: bool) -> list[tuple[dict, dict, list[int]]]:
    """redis-cli's rebalance plan: [(source, target, slots)]."""
    def weight(n):
        for prefix, w in weights.items():
            if n["id"].startswith(prefix):
                return w
        return 1.0
    nodes = [n for n in nodes if n["slots"] or use_empty or weight(n) != 1.0
             or any(n["id"].startswith(p) for p in weights)]
    nodes = [n for n in nodes if weight(n) > 0 or n["slots"]]
    total = sum(weight(n) for n in nodes)
    if not nodes or total <= 0:
        return []
    per = SLOTS / total
    over = False
    for n in nodes:
        n["expected"] = int(per * weight(n))
        n["balance"] = len(n["slots"]) - n["expected"]
        if n["expected"] and abs(n["balance"]) / n["expected"] * 100 > threshold:
            over = True
        elif not n["expected"] and n["slots"]:
            over = True
    if not over:
        return []
    # rounding leaves a few slots unclaimed: give them to the neediest
    total_balance = sum(n["balance"] for n in nodes)
    for n in sorted(nodes, key=lambda n: n["balance"]):
        if total_balance <= 0:
            break
        n["balance"] -= 1
        total_balance -= 1
    moves = []
    order = sorted(nodes, key=lambda n: n["balance"])
    dst_i, src_i = 0, len(order) - 1
    while dst_i < src_i:
        dst, src = order[dst_i], order[src_i]
        n = min(-dst["balance"], src["balance"])
        if n > 0:
            take = sorted(src["slots"])[:n]
            src["slots"] -= set(take)
            dst["slots"] |= set(take)
            moves.append((src, dst, take))
            dst["balance"] += n
            src["balance"] -= n
        if dst["balance"] >= 0:
            dst_i += 1
        if src["balance"] <= 0:
            src_i -= 1
    return moves


def _entry(e) -> dict:
    if isinstance(e, dict):
        items = e.items()
    else:
        items = zip(e[::2], e[1::2])
    return {k.decode() if isinstance(k, bytes) else k:
            v.decode() if isinstance(v, bytes) else v for k, v in items}


def _bar(done: int, total: int, width: int = 40) -> str:
    filled = int(width * done / total) if total else width
    return "[%s%s] %d/%d slots" % ("#" * filled, "." * (width - filled), done, total)


def run_move(src: dict, dst: dict, slots: list[int], password: str | None,
             out, done_before: int, total: int, timeout: float = 3600) -> dict:
    """One MIGRATESLOTS on the source, waited for; returns its final entry."""
    c = Conn(src["addr"], password)
    try:
        args = ["CLUSTER", "MIGRATESLOTS", "SLOTSRANGE"]
        for a, b in ranges(slots):
            args += [a, b]
        args += ["NODE", dst["id"]]
        before = {_entry(e)["name"] for e in c.call("CLUSTER", "GETSLOTMIGRATIONS")}
        c.call(*args)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            mine = [_entry(e) for e in c.call("CLUSTER", "GETSLOTMIGRATIONS")]
            mine = [e for e in mine if e["name"] not in before]
            if mine and mine[-1]["state"] in ("success", "failed", "cancelled"):
                e = mine[-1]
                st = c.call("CLUSTER", "MIGRATION", "STATUS", "ID", e["name"])
                if st:
                    e["write_pause_ms"] = _entry(st[0]).get("write_pause_ms", 0)
                if out is not None and out.isatty():
                    out.write("\r" + _bar(done_before + len(slots), total) + "\n")
                return e
            if out is not None and out.isatty():
                out.write("\r" + _bar(done_before, total) + " moving %d to %s"
                          % (len(slots), dst["addr"]))
                out.flush()
            time.sleep(0.1)
        raise NodeError("migration to %s did not finish in %.0f s" % (dst["addr"], timeout))
    finally:
        c.close()


def _execute(moves, password, out) -> int:
    total = sum(len(s) for _, _, s in moves)
    done = 0
    t0 = time.monotonic()
    failed = 0
    rows = []
    for src, dst, slots in moves:
        e = run_move(src, dst, slots, password, out, done, total)
        done += len(slots)
        rows.append((src, dst, slots, e))
        if e["state"] != "success":
            failed += 1
        if out is not None and not out.isatty():
            out.write("%s %d slots %s -> %s: %s\n" % (_bar(done, total), len(slots),
                                                    src["addr"], dst["addr"], e["state"]))
    dt = time.monotonic() - t0
    out.write("\nSummary: %d move(s), %d slots in %.2f s, %d failed\n"
              % (len(rows), total, dt, failed))
    for src, dst, slots, e in rows:
        out.write("  %s -> %s  %5d slots  %-9s write hold %s ms%s\n"
                  % (src["addr"], dst["addr"], len(slots), e["state"],
                     e.get("write_pause_ms", "?"),
                     ("  (" + e["message"] + ")") if e.get("message") else ""))
    return 1 if failed else 0


def main(argv: list[str] | None = None, prog: str = "pynode") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    auth = argparse.ArgumentParser(add_help=False)
    auth.add_argument("-a", "--password", default=None, help="the nodes' password")
    sub = ap.add_subparsers(dest="cmd", required=True)
    rb = sub.add_parser("rebalance", parents=[auth], help="balance slots over the primaries")
    rb.add_argument("node", help="HOST:PORT of any node")
    rb.add_argument("--weight", action="append", default=[], metavar="ID=W")
    rb.add_argument("--threshold", type=float, default=2.0)
    rb.add_argument("--use-empty-masters", action="store_true")
    rb.add_argument("--simulate", action="store_true")
    mg = sub.add_parser("migrate", parents=[auth], help="move slots to one primary")
    mg.add_argument("node", help="HOST:PORT of any node")
    mg.add_argument("--slots", required=True, help="ranges: 0-99,200,300-310")
    mg.add_argument("--to", required=True, help="the target primary's id (or a prefix)")
    args = ap.parse_args(argv)
    out = sys.stdout
    try:
        c = Conn(args.node, args.password)
        nodes = primaries(c)
        c.close()
        if args.cmd == "rebalance":
            weights = {}
            for w in args.weight:
                k, _, v = w.partition("=")
                weights[k] = float(v)
            moves = plan(nodes, weights, args.threshold, args.use_empty_masters)
            if not moves:
                out.write("*** No rebalancing needed! All nodes are within the %.2f%% "
                          "threshold.\n" % args.threshold)
                return 0
            for src, dst, slots in moves:
                out.write("Moving %d slots from %s to %s\n" % (len(slots), src["addr"],
                                                              dst["addr"]))
            if args.simulate:
                return 0
        else:
            want: set[int] = set()
            for part in args.slots.split(","):
                a, _, b = part.partition("-")
                want.update(range(int(a), int(b or a) + 1))
            dst = [n for n in nodes if n["id"].startswith(args.to)]
            if len(dst) != 1:
                raise NodeError("no single primary with id %s" % args.to)
            moves = []
            for n in nodes:
                mine = sorted(want & n["slots"])
                if mine and n is not dst[0]:
                    moves.append((n, dst[0], mine))
            if not moves:
                out.write("Nothing to move.\n")
                return 0
        return _execute(moves, args.password, out)
    except (NodeError, OSError) as e:
        sys.stderr.write("[ERR] %s\n" % e)
        return 1
