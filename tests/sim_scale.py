"""The simulator at cluster sizes: form, converge, measure the bus, survive a primary failure.

    python -m tests.sim_scale --nodes 1000        (make chaos runs it)
    python -m tests.sim_scale --nodes 100 --profile

Half the nodes are primaries (slots spread evenly, distinct config epochs), the
other half one replica each. Phases, each with its wall time:

1. form: ADDSLOTS on the primaries, SET-CONFIG-EPOCH on every node (as
   redis-cli), every node MEETs the last node (a replica-to-be, owning no
   slots; MEET again for the lost ones, as redis-cli), until every node knows
   every other; then each primary MEETs it once more (see Simulator.form:
   the hub learns no slots from its handshakes) and CLUSTER REPLICATE on the
   replicas, until the cluster is
   consistent as ``redis-cli --cluster check`` sees it (Simulator.consistent:
   one slot map, every slot served once, distinct epochs, all states ok; not
   that every node has heard each replica name its primary, which takes a
   direct message between each pair: minutes at 1000 nodes, as in Redis);
2. steady: ``--steady`` seconds of virtual time, counting the bus messages and
   bytes (PING, PONG ...) per node per second, printed next to what Redis's
   gossip rules give for the same size (clusterCron: one PING a second to the
   oldest of 5 random nodes, plus a PING to every node not heard from in
   node-timeout/2; a gossip section of max(3, n/10) entries of 104 bytes after a
   2256-byte header, which carries the 2048-byte slot bitmap);
3. failover: kill -9 of a primary; until every slot is served by exactly one
   writable primary and every live node has the same slot map;
4. rejoin: the dead primary restarts from its nodes.conf and comes back as a
   replica of its successor (the cluster consistent again).

Phases 2 and 3-4 are independent experiments on the formed cluster, so by
default the process forks once formed: the child checks every node's
invariants in full on the formed state and runs 2 (after ``--warmup``) on the
other core and sends its figures back, while the parent runs 3 and 4
from the same state, so the failure comes right after forming, not 10 virtual
seconds later. The output gives both, each phase's CPU seconds (of the process
that ran it), the resident and proportional sizes of the two processes, and
the total wall time (form, then the longer of the two). ``--sequential`` runs
2, 3 and 4 in that order in one process, as before; ``--profile`` profiles
the parent (form, failover, rejoin), with ``--sequential`` all of it.

The run re-executes itself once with glibc's allocator on transparent huge
pages (``PYTHONMALLOC=malloc``, ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``)
where the kernel offers them on request (``madvise``): the node tables are
gigabytes read at random, one gossip entry at a time, and with 4 KB pages
most of those reads also miss the TLB. ``--no-hugepages`` keeps the process
as started.

``--compiled`` runs the gossip core (gossip/node.py, codec.py, state.py,
sim.py and what they use) compiled with mypyc, the same events in less CPU
time: the sources are copied to build/gossip-mypyc/<hash of the sources>/,
compiled there once (about 45 s of one core) and put first on this process's
sys.path (the forked child inherits it). It keeps Python's own allocator:
compiled, the huge-page one formed 500 and 700 nodes in 3% and 9% more CPU
time (docs/benchmarks.md). Without mypy or a C compiler it says which is
missing and exits with status 2.

Exit status 1 if a phase does not finish in its virtual-time bound, or if the
whole run took longer than ``--budget`` seconds of wall time (default 600: ten
minutes, the bound for 1000 nodes on 2 cores).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import os
import pickle
import pstats
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (imported when run: the compiled form goes first on sys.path)
    from gossip.sim import Simulator

REDIS_HEADER = 2256  # sizeof(clusterMsg) without the data union (7.0)
REDIS_GOSSIP_ENTRY = 104  # sizeof(clusterMsgDataGossip)


def redis_rules(n: int, node_timeout_ms: int) -> tuple[float, int]:
    """(PINGs a node sends per second, bytes of a PING) under Redis's clusterCron
    rules in a healthy cluster of n nodes: every peer is pinged at least once per
    node-timeout/2 (the once-a-second random ping is one of those), and a PING
    carries max(3, n/10) gossip entries (freshnodes = n - 2 caps it)."""
    pings = max(1.0, (n - 1) / (node_timeout_ms / 2000))
    wanted = min(max(3, n // 10), n - 2)
    return pings, REDIS_HEADER + REDIS_GOSSIP_ENTRY * wanted


def fmt_rate(x: float) -> str:
    return f"{x:,.1f}"


def run(n: int, seed: int, node_timeout: int, steady_s: int, out=print, warmup_s: int = 0,
        sequential: bool = False) -> dict:
    # The cyclic garbage collector is off for the run: what the events leave
    # behind (messages, entries, actions) has no cycles and goes with its last
    # reference, while each collection walks a generation of the run's
    # long-lived objects (a node table per node: a million entries at 1000
    # nodes) - a fifth of the CPU at 250 nodes.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _run(n, seed, node_timeout, steady_s, out, warmup_s, sequential)
    finally:
        if enabled:
            gc.enable()


class _Phases:
    """Prints and records each phase's wall, CPU and virtual time (CPU of the
    calling process, from the end of the previous phase or ``restart``)."""

    def __init__(self, sim: Simulator, figures: dict, out) -> None:
        self.sim, self.figures, self.out = sim, figures, out
        self.cpu = time.process_time()

    def restart(self) -> None:
        self.cpu = time.process_time()

    def __call__(self, name: str, t0: float, v0: int) -> None:
        wall = time.perf_counter() - t0
        virt = (self.sim.now - v0) / 1000
        c = time.process_time()
        used, self.cpu = c - self.cpu, c
        self.figures[name] = (wall, virt, used)
        self.out(f"{name:9s} wall {wall:7.1f} s   cpu {used:7.1f} s   virtual {virt:6.1f} s"
                 f"   events {self.sim.steps:,}")


def _run(n: int, seed: int, node_timeout: int, steady_s: int, out, warmup_s: int,
         sequential: bool) -> dict:
    from gossip.sim import START_MS, Simulator
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    out(f"{n} nodes, seed {seed}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores;"
        f" allocator {'malloc (huge pages)' if os.environ.get('PYTHONMALLOC') == 'malloc' else 'pymalloc'}")
    # The invariant checks at this scale: a node's O(n) table check every n-th
    # call of that node, the O(n) cross-node epoch check every n-th event, one
    # node's O(n + slots) check every 50n events - each about one node visited
    # per event - and every table in full once formed and at the end.
    sim = Simulator(
        n, seed, delay=(1, 5), node_timeout_ms=node_timeout, wire=False,
        full_check_every=max(1000, 50 * n), slot_check_every=n,
        lazy_conf=True, bytes_sample=64,
        state_kwargs={"check_every": n, "share_slot_sets": True},
    )
    n_prim = n // 2
    figures: dict = {"nodes": n, "seed": seed, "node_timeout_ms": node_timeout}
    phase = _Phases(sim, figures, out)

    # 1. form
    t0, v0 = time.perf_counter(), sim.now
    failed = sim.form(n_prim, timeout_ms=600_000, every_ms=1000, agree_on_roles=False,
                      hub=n - 1, remeet=True, epochs_for_all=True)
    if failed:
        raise SystemExit(f"seed {seed}: {n} nodes: {failed}")
    if sequential:
        sim.check_all()
    phase("form", t0, v0)
    figures["formed_rss_mb"] = _memory()["Rss"]

    child_cpu = 0.0
    if sequential:
        _steady(sim, figures, phase, out, n, node_timeout, steady_s, warmup_s)
    else:
        # 2 runs in a child on the other core, from the same formed state, while
        # this process runs 3 and 4: the two are independent experiments.
        # The child also runs the full check of the formed cluster (the same
        # state), off the critical path.
        def in_child(lines: list[str]) -> dict:
            c = time.process_time()
            sim.check_all()
            mine: dict = {"formed_check_cpu_s": time.process_time() - c}
            lines.append(f"(the formed cluster's full check: {mine['formed_check_cpu_s']:.1f} s of CPU in the child)")
            return _steady(sim, mine, _Phases(sim, mine, lines.append), lines.append,
                           n, node_timeout, steady_s, warmup_s)
        steady = _Child(in_child)
    try:
        _failover(sim, figures, phase, n_prim, seed, node_timeout)
    except BaseException:
        if not sequential:
            steady.stop()
        raise
    if not sequential:
        t_wait = time.perf_counter()
        lines, child = steady.result()
        figures["waited_for_steady_s"] = time.perf_counter() - t_wait
        for line in lines:
            out(line)
        figures.update(child)
        child_cpu = child["child_cpu_s"]
        out(f"(steady in a child process from the formed state: the failover above started right"
            f" after forming; waited {figures['waited_for_steady_s']:.1f} s for the child)")
        mine, theirs = _memory(), child["child_memory"]
        figures["memory"] = {"parent": mine, "child": theirs}
        out(f"memory at the end, MB: this process rss {mine['Rss']:.0f} (pss {mine['Pss']:.0f}),"
            f" the child's rss {theirs['Rss']:.0f} (pss {theirs['Pss']:.0f}); rss {figures['formed_rss_mb']:.0f}"
            f" when formed")
    figures["wall_s"] = time.perf_counter() - t_start
    figures["cpu_s"] = time.process_time() - cpu_start + child_cpu
    figures["virtual_s"] = (sim.now - START_MS) / 1000
    figures["trace"] = sim.trace_digest()
    out(f"total     wall {figures['wall_s']:7.1f} s   cpu {figures['cpu_s']:7.1f} s   virtual {figures['virtual_s']:6.1f} s   "
        f"failover in {figures['failover_node_timeouts']:.2f} x node-timeout; "
        f"load average {os.getloadavg()[0]:.1f}; trace {figures['trace'][:12]}")
    return figures


def _steady(sim: Simulator, figures: dict, phase: _Phases, out, n: int, node_timeout: int,
            steady_s: int, warmup_s: int) -> dict:
    """Phase 2: the bus (after ``warmup_s``: links made while forming are
    fresh, so the pings due every node-timeout/2 start only after that)."""
    sim.run_for(warmup_s * 1000)
    phase.restart()  # (the warm-up counts in the total only)
    t0, v0 = time.perf_counter(), sim.now
    m0, b0 = sim.msgs_sent, sim.bus_bytes()
    by_type0 = _sent_by_type(sim)
    sim.run_for(steady_s * 1000)
    phase("steady", t0, v0)
    per = n * steady_s
    msgs = (sim.msgs_sent - m0) / per
    nbytes = (sim.bus_bytes() - b0) / per
    by_type = {t: (c - by_type0.get(t, 0)) / per for t, c in _sent_by_type(sim).items()}
    pings = by_type.get("PING", 0.0)
    r_pings, r_ping_bytes = redis_rules(n, node_timeout)
    figures.update(msgs_per_node_s=msgs, bytes_per_node_s=nbytes, pings_per_node_s=pings,
                   redis_pings_per_node_s=r_pings, redis_ping_bytes=r_ping_bytes,
                   redis_bytes_per_node_s=2 * r_pings * r_ping_bytes)
    out(f"bus, per node per second ({n} nodes, node-timeout {node_timeout} ms):")
    out(f"  pynode: {fmt_rate(msgs)} messages ({', '.join(f'{t} {fmt_rate(v)}' for t, v in sorted(by_type.items()) if v)}),"
        f" {fmt_rate(nbytes / 1024)} KiB sent ({fmt_rate(nbytes / max(msgs, 1e-9))} B a message)")
    out(f"  Redis rules: {fmt_rate(r_pings)} PINGs + as many PONGs, {r_ping_bytes:,} B each"
        f" -> {fmt_rate(2 * r_pings * r_ping_bytes / 1024)} KiB sent")
    return figures


def _failover(sim: Simulator, figures: dict, phase: _Phases, n_prim: int, seed: int,
              node_timeout: int) -> None:
    """Phases 3 (a primary fails) and 4 (it comes back as a replica)."""
    t0, v0 = time.perf_counter(), sim.now
    victim = n_prim // 2
    sim.crash(victim)

    def failed_over(s: Simulator) -> bool:
        return s.every_slot_served_once(writable=True) and s.slots_converged()
    if not sim.run_until(failed_over, 20 * node_timeout, every_ms=200):
        raise SystemExit(f"seed {seed}: no failover of primary {victim}")
    phase("failover", t0, v0)
    figures["failover_node_timeouts"] = (sim.now - v0) / node_timeout

    t0, v0 = time.perf_counter(), sim.now
    sim.restart(victim)

    def rejoined(s: Simulator) -> bool:
        return s.consistent() and s.state(victim).myself.is_replica
    if not sim.run_until(rejoined, 20 * node_timeout, every_ms=1000):
        raise SystemExit(f"seed {seed}: primary {victim} did not come back as a replica")
    sim.check_all()
    phase("rejoin", t0, v0)


class _Child:
    """``work(lines)`` (it appends its output lines and returns a dict of
    figures) run in a forked child; ``result()`` waits for it and gives
    (lines, figures), the figures with the child's CPU seconds and memory.
    The child stops any profiler it inherited: a profile covers this
    process's phases (``--sequential`` profiles them all)."""

    def __init__(self, work) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            status = 0
            try:
                os.close(r)
                sys.setprofile(None)
                cpu0 = time.process_time()
                lines: list[str] = []
                try:
                    figures = work(lines)
                    figures["child_cpu_s"] = time.process_time() - cpu0
                    figures["child_memory"] = _memory()
                    result = (lines, figures, None)
                except BaseException as e:  # noqa: BLE001 - reported by the parent
                    result = (lines, None, f"{type(e).__name__}: {e}")
                    status = 1
                with os.fdopen(w, "wb") as f:
                    pickle.dump(result, f)
            finally:
                os._exit(status)
        os.close(w)
        self.pid, self.fd = pid, r

    def result(self) -> tuple[list[str], dict]:
        with os.fdopen(self.fd, "rb") as f:
            data = f.read()  # until the child exits (its work is bounded in virtual time)
        os.waitpid(self.pid, 0)
        if not data:
            raise SystemExit("the steady-state child died without a result")
        lines, figures, error = pickle.loads(data)
        if error is not None:
            raise SystemExit("\n".join([*lines, f"steady-state child: {error}"]))
        return lines, figures

    def stop(self) -> None:
        """This process failed: end the child (its figures are not wanted)."""
        os.close(self.fd)
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)


def _memory() -> dict[str, float]:
    """This process's resident and proportional set sizes, MB (Linux; zeros
    elsewhere). Pss splits each page shared with a forked child between the two."""
    sizes = {"Rss": 0.0, "Pss": 0.0}
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in sizes:
                    sizes[key] = int(rest.split()[0]) / 1024
    except OSError:
        pass
    return sizes


def _sent_by_type(sim: Simulator) -> dict[str, int]:
    from gossip.codec import MsgType
    total: dict[str, int] = {}
    for node in sim.live():
        for t, c in node.state.stats_sent.items():
            if c:
                total[MsgType(t).name] = total.get(MsgType(t).name, 0) + c
    return total


HUGEPAGE_ENV = {"PYTHONMALLOC": "malloc", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}


def _hugepages_env() -> dict[str, str] | None:
    """The environment to re-execute in for huge pages, or None (already in
    it, or the kernel gives none on request)."""
    if os.environ.get("PYTHONMALLOC") == "malloc" or not sys.platform.startswith("linux"):
        return None
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            mode = f.read()
    except OSError:
        return None
    if "[never]" in mode:
        return None
    env = dict(os.environ, PYTHONMALLOC=HUGEPAGE_ENV["PYTHONMALLOC"])
    tunables = env.get("GLIBC_TUNABLES")
    env["GLIBC_TUNABLES"] = f"{tunables}:{HUGEPAGE_ENV['GLIBC_TUNABLES']}" if tunables else HUGEPAGE_ENV["GLIBC_TUNABLES"]
    return env


ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = ROOT / "build" / "gossip-mypyc"
#: the modules of the gossip core compiled together (native classes calling
#: each other natively); the rest of the package is copied and stays Python
COMPILED_MODULES = ("actions", "bitmap", "node", "codec", "state", "executor", "sim")
BUILD_TIMEOUT_S = 900    # ~45 s of one core on the development machine
MYPYC_FLAGS = ("--follow-imports=silent", "--ignore-missing-imports",
               "--disable-error-code", "annotation-unchecked")


class CompileError(Exception):
    """The compiled form cannot be built here (what is missing, or what failed)."""


def _mypyc_version() -> str:
    try:
        from mypy.version import __version__
        import mypyc  # noqa: F401 - ships with mypy
    except ImportError:
        raise CompileError(f"--compiled needs mypy with mypyc in {sys.executable}"
                           " (pip install mypy, or the test extra)") from None
    return __version__


def _compiler() -> str:
    """The C compiler setuptools will call (CC, else the one Python was built with)."""
    cc = os.environ.get("CC") or (sysconfig.get_config_var("CC") or "cc")
    exe = cc.split()[0]
    if shutil.which(exe) is None:
        raise CompileError(f"--compiled needs a C compiler: {exe!r} not found (install gcc, or set CC)")
    return exe


def compiled_key(source: Path = ROOT / "gossip") -> str:
    """A hash of what the build depends on: every gossip source file, mypy's
    version, the interpreter and the flags."""
    h = hashlib.sha256()
    h.update(f"{_mypyc_version()}|{sys.implementation.cache_tag}|{sysconfig.get_platform()}|"
             f"{COMPILED_MODULES}|{MYPYC_FLAGS}".encode())
    for f in sorted(source.glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def build_compiled(build_dir: Path = BUILD_DIR, out=print) -> Path:
    """The directory holding the compiled ``gossip`` package (a copy of the
    sources, with COMPILED_MODULES built by mypyc next to them), built once
    per source hash; older builds there are removed."""
    key = compiled_key()
    target = build_dir / key
    if (target / "BUILT").exists():
        return target
    _compiler()
    build_dir.mkdir(parents=True, exist_ok=True)
    work = build_dir / f"{key}.tmp{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(ROOT / "gossip", work / "gossip", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "mypyc", *MYPYC_FLAGS, *(f"gossip/{m}.py" for m in COMPILED_MODULES)]
    try:
        done = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        shutil.rmtree(work, ignore_errors=True)
        raise CompileError(f"mypyc did not finish building the gossip core in {BUILD_TIMEOUT_S} s") from None
    built = [m for m in COMPILED_MODULES if list((work / "gossip").glob(f"{m}.*.so"))]
    if done.returncode != 0 or len(built) != len(COMPILED_MODULES):
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        shutil.rmtree(work, ignore_errors=True)
        raise CompileError(f"mypyc failed (exit {done.returncode}) building the gossip core:\n{tail}")
    shutil.rmtree(work / "build", ignore_errors=True)  # the C sources and objects
    shutil.rmtree(work / ".mypy_cache", ignore_errors=True)
    (work / "BUILT").write_text(f"{time.perf_counter() - t0:.1f} s\n")
    for old in build_dir.iterdir():
        if ".tmp" not in old.name:  # a build of other sources
            shutil.rmtree(old, ignore_errors=True)
    try:
        work.rename(target)
    except OSError:  # another process built it meanwhile
        shutil.rmtree(work, ignore_errors=True)
    out(f"(compiled the gossip core with mypyc in {time.perf_counter() - t0:.1f} s: {target})")
    return target


def use_compiled(build_dir: Path = BUILD_DIR, out=print) -> Path:
    """Put the compiled gossip core first on this process's sys.path (a
    forked child inherits it). Only before gossip is imported."""
    if "gossip" in sys.modules:
        raise CompileError("the gossip package is already imported in this process")
    path = build_compiled(build_dir, out)
    sys.path.insert(0, str(path))
    import gossip.state
    if not gossip.state.__file__ or gossip.state.__file__.endswith(".py"):
        raise CompileError(f"the compiled gossip core did not load: {gossip.state.__file__}")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--node-timeout", type=int, default=15000)
    ap.add_argument("--steady", type=int, default=10, help="virtual seconds measured")
    ap.add_argument("--warmup", type=int, default=0,
                    help="virtual seconds run between forming and the measurement")
    ap.add_argument("--budget", type=float, default=600.0, help="wall seconds allowed")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--sequential", action="store_true",
                    help="run the steady measurement before the failure, in one process")
    ap.add_argument("--no-hugepages", action="store_true",
                    help="do not re-execute with the allocator on transparent huge pages")
    ap.add_argument("--compiled", action="store_true",
                    help=f"run the gossip core compiled with mypyc (built in {BUILD_DIR.relative_to(ROOT)}/)")
    ap.add_argument("--build-dir", type=Path, default=BUILD_DIR, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    # (compiled, pymalloc is the faster allocator: see the module's docstring)
    env = None if args.no_hugepages or args.compiled or argv is not None else _hugepages_env()
    if env is not None:
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, "-m", "tests.sim_scale", *sys.argv[1:]], env)
    if args.compiled:
        try:
            path = use_compiled(args.build_dir)
        except CompileError as e:
            print(f"sim_scale --compiled: {e}", file=sys.stderr)
            return 2
        print(f"gossip core compiled with mypyc: {path}")
    if args.profile:
        prof = cProfile.Profile()
        figures = prof.runcall(run, args.nodes, args.seed, args.node_timeout, args.steady,
                               warmup_s=args.warmup, sequential=args.sequential)
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    else:
        figures = run(args.nodes, args.seed, args.node_timeout, args.steady, warmup_s=args.warmup,
                      sequential=args.sequential)
    if figures["wall_s"] > args.budget:
        print(f"over budget: {figures['wall_s']:.0f} s > {args.budget:.0f} s")
        return 1
    return 0


if __name__ == "__main__":
    status = main()
    # Exit without the interpreter's teardown: at 1000 nodes, freeing the
    # millions of objects of the node tables one by one takes half a minute
    # of wall time after the run (this process holds no other resource).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
