"""INFO: the text of every section, with Redis 7.0's field names and order.

Values are measured, not invented: memory comes from glibc's mallinfo2() plus
what CPython's own small-object allocator (pymalloc) holds, RSS from
/proc/self/statm, CPU from getrusage().  Fields for machinery pynode does not
have (RDB, Lua, jemalloc, replication backlog, ...) report the values an idle
Redis reports for them (0, -1, "ok").

`cron_sample(srv)` is called from Server.cron: it keeps the instantaneous
ops/sec and network-kbps samples (16 samples, one per 100 ms, as Redis) and the
peak memory (measured once a second).
"""

from __future__ import annotations

import ctypes
import os
import platform
import resource
import sys
import time

DEFAULT_SECTIONS = ("server", "clients", "memory", "persistence", "stats", "replication",
                    "cpu", "modules", "errorstats", "cluster", "keyspace")
ALL_SECTIONS = ("server", "clients", "memory", "persistence", "stats", "replication",
                "cpu", "modules", "commandstats", "errorstats", "latencystats", "cluster",
                "keyspace")
TITLES = {"server": "Server", "clients": "Clients", "memory": "Memory",
          "persistence": "Persistence", "stats": "Stats", "replication": "Replication",
          "cpu": "CPU", "modules": "Modules", "commandstats": "Commandstats",
          "errorstats": "Errorstats", "latencystats": "Latencystats", "cluster": "Cluster",
          "keyspace": "Keyspace"}

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
LRU_CLOCK_MAX = (1 << 24) - 1


# ------------------------------------------------------------------ memory
class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]


try:
    _libc = ctypes.CDLL(None)
    _mallinfo2 = _libc.mallinfo2
    _mallinfo2.restype = _MallInfo2
    _mallinfo2.argtypes = []
except (OSError, AttributeError):  # not glibc >= 2.33
    _mallinfo2 = None


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def pymalloc_stats() -> tuple[int, int]:
    """(bytes in allocated blocks, bytes of arenas) held by CPython's pymalloc.

    pymalloc takes its arenas with mmap(), so mallinfo2() does not see them;
    sys._debugmallocstats() is the only interface that reports them (it writes
    to the C stderr, which is redirected into a memfd for the call)."""
    try:
        fd = os.memfd_create("pynode-mallocstats")
    except (AttributeError, OSError):
        return 0, 0
    saved = -1
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(fd, 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while True:
            d = os.read(fd, 65536)
            if not d:
                break
            chunks.append(d)
    except OSError:
        return 0, 0
    finally:
        if saved >= 0:
            os.close(saved)
        os.close(fd)
    used = arenas = 0
    for line in b"".join(chunks).split(b"\n"):
        if line.startswith(b"# bytes in allocated blocks"):
            used = int(line.rsplit(b"=", 1)[1].strip().replace(b",", b""))
        elif b"bytes/arena" in line:
            arenas = int(line.rsplit(b"=", 1)[1].strip().replace(b",", b""))
    return used, arenas


def memory() -> dict:
    """Measured memory: used (malloc in use + pymalloc blocks in use), active
    (malloc arena + mmapped + pymalloc arenas), rss."""
    rss = rss_bytes()
    py_used, py_arenas = pymalloc_stats()
    if _mallinfo2 is not None:
        m = _mallinfo2()
        used = m.uordblks + m.hblkhd + py_used
        active = m.arena + m.hblkhd + py_arenas
    else:
        used = active = rss
    return {"used": used, "active": active, "rss": rss}


def used_memory() -> int:
    return memory()["used"]


def human(n: float) -> str:
    """bytesToHuman()."""
    if n < 1024:
        return "%dB" % n
    for unit, div in (("K", 1024), ("M", 1024 ** 2), ("G", 1024 ** 3), ("T", 1024 ** 4),
                      ("P", 1024 ** 5), ("E", 1024 ** 6)):
        if n < div * 1024 or unit == "E":
            return "%.2f%s" % (n / div, unit)
    return "%dB" % n


def total_system_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * PAGE_SIZE
    except (ValueError, OSError):
        return 0


# ------------------------------------------------------------------ sampling
class Stats:
    """srv.stats: the server's own counters that INFO shows (CONFIG RESETSTAT
    zeroes them: reset_counters) and INFO's sampling state (instantaneous
    metrics, memory peak: reset).  Counters kept by their owners stay there
    (evicted_keys: the evictor; sync_*: replication; total_forks: children;
    per-command calls: the command table)."""

    SAMPLES = 16

    def __init__(self) -> None:
        self.errorstats: dict[str, int] = {}   # error code -> count (INFO errorstats)
        self.reset_counters(0)
        self.reset()
        self.startup_memory = 0
        self.last_mem_sample = 0.0

    def reset_counters(self, expired_keys: int) -> None:
        self.numconnections = 0
        self.rejected_conn = 0
        # INFO expired_keys counts from here (the keyspace counts from start-up)
        self.expiredkeys_base = expired_keys
        self.total_reads = 0            # INFO total_reads_processed (not counted)
        self.total_writes = 0           # INFO total_writes_processed (not counted)
        self.keyspace_hits = 0
        self.keyspace_misses = 0
        self.net_input_bytes = 0
        self.net_output_bytes = 0
        self.total_error_replies = 0
        self.unexpected_error_replies = 0
        self.errorstats.clear()

    def reset(self) -> None:
        self.last_t = 0.0
        self.last = (0, 0, 0)
        self.samples = [[0.0] * self.SAMPLES for _ in range(3)]
        self.idx = 0
        self.peak_memory = 0
        self.peak_time = time.time()


def cron_sample(srv) -> None:
    """Called from Server.cron: the instantaneous metrics and the memory peak."""
    st = srv.stats
    now = time.monotonic()
    if now - st.last_t >= 0.1:
        cur = (srv.stat_numcommands, srv.stats.net_input_bytes, srv.stats.net_output_bytes)
        if st.last_t:
            dt = now - st.last_t
            i = st.idx % Stats.SAMPLES
            for k in range(3):
                st.samples[k][i] = max(0.0, (cur[k] - st.last[k]) / dt)
            st.idx += 1
        st.last_t = now
        st.last = cur
    if now - st.last_mem_sample >= 1.0:
        st.last_mem_sample = now
        used = used_memory()
        if not st.startup_memory:
            st.startup_memory = used
        if used > st.peak_memory:
            st.peak_memory = used
            st.peak_time = time.time()


def _inst(st: Stats, k: int) -> float:
    return sum(st.samples[k]) / Stats.SAMPLES


def reset_stats(srv) -> None:
    """CONFIG RESETSTAT: the sampler and the memory peak."""
    st = srv.stats
    mem_start = st.startup_memory
    st.reset()
    st.startup_memory = mem_start


# ------------------------------------------------------------------ sections
def _fmt(d: dict) -> str:
    return "".join("%s:%s\r\n" % kv for kv in d.items())


def _server(srv) -> dict:
    cfg = srv.cfg
    now = time.time()
    up = int(now - srv.start_time)
    u = platform.uname()
    exe = srv.executable
    return {
        "redis_version": srv.version,
        "redis_git_sha1": "00000000",
        "redis_git_dirty": 0,
        "redis_build_id": "7079746e6f6465",  # "pytnode" in hex: constant per build
        "redis_mode": "cluster" if cfg.bool("cluster-enabled") else "standalone",
        "os": "%s %s %s" % (u.system, u.release, u.machine),
        "arch_bits": 64 if sys.maxsize > 2 ** 32 else 32,
        "monotonic_clock": "POSIX clock_gettime",
        "multiplexing_api": "epoll" if sys.platform.startswith("linux") else "kqueue",
        "atomicvar_api": "c11-builtin",
        "gcc_version": "0.0.0",
        "process_id": os.getpid(),
        "process_supervised": "no",
        "run_id": srv.run_id,
        "tcp_port": cfg.int("port"),
        "server_time_usec": int(now * 1e6),
        "uptime_in_seconds": up,
        "uptime_in_days": up // 86400,
        "hz": srv.hz,
        "configured_hz": cfg.int("hz"),
        "lru_clock": int(now) & LRU_CLOCK_MAX,
        "executable": exe,
        "config_file": cfg.config_file or "",
        "io_threads_active": 0,
    }


def _is_blocked(c) -> bool:
    return c.blocked is not None


def _clients(srv) -> dict:
    clients = list(srv.clients.values())
    max_in = 0
    max_out = 0
    for c in clients:
        try:
            q = c.parser.pending()
        except Exception:  # noqa: BLE001 - a parser without pending()
            q = 0
        if q > max_in:
            max_in = q
        o = _obuf(c)
        if o > max_out:
            max_out = o
    return {
        "connected_clients": len(clients),
        "cluster_connections": srv.cluster.connections() if srv.cluster is not None else 0,
        "maxclients": srv.maxclients,
        "client_recent_max_input_buffer": max_in,
        "client_recent_max_output_buffer": max_out,
        # clients blocked on keys, and in WAIT (Redis counts both)
        "blocked_clients": sum(1 for c in clients if _is_blocked(c))
        + len(srv.replication.waiters),
        "tracking_clients": srv.tracking.clients,
        "clients_in_timeout_table": sum(1 for c in clients if _is_blocked(c)
                                        and c.blocked.deadline)
        + sum(1 for w in srv.replication.waiters if w[3] is not None),
    }


def _obuf(c) -> int:
    t = c.transport
    if t is None:
        return 0
    try:
        return t.get_write_buffer_size()
    except Exception:  # noqa: BLE001 - a closed transport
        return 0


def client_memory(c) -> int:
    """Approximate memory of one client: the object, query and output buffers."""
    n = sys.getsizeof(c) + 1024
    try:
        n += c.parser.pending()
    except Exception:  # noqa: BLE001
        pass
    n += _obuf(c)
    for _, argv in c.queued:
        n += sum(len(a) for a in argv)
    return n


def dict_overhead(srv) -> int:
    """The keyspace's own tables (slot dicts, expires dicts), not keys/values.
    Walking 16384 slot dicts per db costs ~2 ms: the value is kept for a second."""
    st = srv.stats
    now = time.monotonic()
    cached = getattr(st, "overhead_cache", None)
    if cached is not None and now - cached[0] < 1.0:
        return cached[1]
    n = 0
    for db in srv.ks.dbs:
        if db is None:
            continue
        n += sys.getsizeof(db.expires) + sum(map(sys.getsizeof, db.slots))
    st.overhead_cache = (now, n)
    return n


def _memory(srv) -> dict:
    m = memory()
    st = srv.stats
    used, rss, active = m["used"], m["rss"], m["active"]
    if used > st.peak_memory:
        st.peak_memory = used
    startup = st.startup_memory or used
    clients_mem = sum(client_memory(c) for c in srv.clients.values())
    aof_buf = len(srv.aof.buf) if srv.aof is not None and hasattr(srv.aof, "buf") else 0
    from pynode.evict import not_counted
    uncounted = not_counted(srv)
    overhead = min(used, startup + clients_mem + dict_overhead(srv) + aof_buf)
    dataset = used - overhead
    net = used - startup
    cfg = srv.cfg
    maxmem = cfg.memory("maxmemory")
    sysmem = total_system_memory()
    sm = srv.scripting.info_memory()
    vm_total = sm["used_memory_vm_eval"] + sm["used_memory_vm_functions"]
    return {
        "used_memory": used,
        "used_memory_human": human(used),
        "used_memory_rss": rss,
        "used_memory_rss_human": human(rss),
        "used_memory_peak": st.peak_memory,
        "used_memory_peak_human": human(st.peak_memory),
        "used_memory_peak_perc": "%.2f%%" % (used * 100.0 / st.peak_memory
                                            if st.peak_memory else 100.0),
        "used_memory_overhead": overhead,
        "used_memory_startup": startup,
        "used_memory_dataset": dataset,
        "used_memory_dataset_perc": "%.2f%%" % (dataset * 100.0 / net if net > 0 else 0.0),
        "allocator_allocated": used,
        "allocator_active": active,
        "allocator_resident": rss,
        "total_system_memory": sysmem,
        "total_system_memory_human": human(sysmem),
        "used_memory_lua": sm["used_memory_vm_eval"],
        "used_memory_vm_eval": sm["used_memory_vm_eval"],
        "used_memory_lua_human": human(sm["used_memory_vm_eval"]),
        "used_memory_scripts_eval": sm["used_memory_scripts_eval"],
        "number_of_cached_scripts": sm["number_of_cached_scripts"],
        "number_of_functions": sm["number_of_functions"],
        "number_of_libraries": sm["number_of_libraries"],
        "used_memory_vm_functions": sm["used_memory_vm_functions"],
        "used_memory_vm_total": vm_total,
        "used_memory_vm_total_human": human(vm_total),
        "used_memory_functions": sm["used_memory_scripts"] - sm["used_memory_scripts_eval"],
        "used_memory_scripts": sm["used_memory_scripts"],
        "used_memory_scripts_human": human(sm["used_memory_scripts"]),
        "maxmemory": maxmem,
        "maxmemory_human": human(maxmem),
        "maxmemory_policy": cfg.get("maxmemory-policy"),
        "allocator_frag_ratio": "%.2f" % (active / used if used else 0),
        "allocator_frag_bytes": active - used,
        "allocator_rss_ratio": "%.2f" % (rss / active if active else 0),
        "allocator_rss_bytes": rss - active,
        "rss_overhead_ratio": "%.2f" % 1.0,
        "rss_overhead_bytes": 0,
        "mem_fragmentation_ratio": "%.2f" % (rss / used if used else 0),
        "mem_fragmentation_bytes": rss - used,
        "mem_not_counted_for_evict": uncounted,
        "mem_replication_backlog": 0,
        "mem_total_replication_buffers": 0,
        "mem_clients_slaves": 0,
        "mem_clients_normal": clients_mem,
        "mem_cluster_links": 0,
        "mem_aof_buffer": aof_buf,
        "mem_allocator": "libc",
        "active_defrag_running": 0,
        **srv.lazyfree.info(),
    }


def aof_fields(srv) -> dict:
    if srv.aof is not None:
        return srv.aof.info()
    try:
        from storage.aof import AOF
        return AOF.info_off()
    except Exception:  # noqa: BLE001 - storage/aof.py not importable
        return {
            "aof_enabled": 0, "aof_rewrite_in_progress": 0, "aof_rewrite_scheduled": 0,
            "aof_last_rewrite_time_sec": -1, "aof_current_rewrite_time_sec": -1,
            "aof_last_bgrewrite_status": "ok", "aof_rewrites": 0,
            "aof_rewrites_consecutive_failures": 0, "aof_last_write_status": "ok",
            "aof_last_cow_size": 0, "module_fork_in_progress": 0,
            "module_fork_last_cow_size": 0,
        }


def _persistence(srv) -> dict:
    snap = srv.snapshots.info()
    d = {
        "loading": 1 if srv.loading else 0,
        "async_loading": 0,
        "current_cow_peak": 0,
        "current_cow_size": 0,
        "current_cow_size_age": 0,
        "current_fork_perc": "0.00",
        "current_save_keys_processed": 0,
        "current_save_keys_total": 0,
        "rdb_changes_since_last_save": snap["rdb_changes_since_last_save"],
        "rdb_bgsave_in_progress": snap["rdb_bgsave_in_progress"],
        "rdb_last_save_time": snap["rdb_last_save_time"],
        "rdb_last_bgsave_status": snap["rdb_last_bgsave_status"],
        "rdb_last_bgsave_time_sec": snap["rdb_last_bgsave_time_sec"],
        "rdb_current_bgsave_time_sec": snap["rdb_current_bgsave_time_sec"],
        "rdb_saves": snap["rdb_saves"],
        "rdb_last_cow_size": srv.children.last_cow["rdb"],
        "rdb_last_load_keys_expired": snap["rdb_last_load_keys_expired"],
        "rdb_last_load_keys_loaded": snap["rdb_last_load_keys_loaded"],
    }
    d.update(aof_fields(srv))
    d.update(srv.snapshots.loading_info())
    return d


def _stats(srv) -> dict:
    st = srv.stats
    aof = srv.aof
    ev = srv.evictor
    cur_exceeded = total_exceeded = 0.0
    if ev is not None:
        if ev.exceeded_since:
            cur_exceeded = time.monotonic() - ev.exceeded_since
        total_exceeded = ev.exceeded_total + cur_exceeded
    return {
        "total_connections_received": srv.stats.numconnections,
        "total_commands_processed": srv.stat_numcommands,
        "instantaneous_ops_per_sec": int(_inst(st, 0)),
        "total_net_input_bytes": srv.stats.net_input_bytes,
        "total_net_output_bytes": srv.stats.net_output_bytes,
        "total_net_repl_input_bytes": srv.replication.repl_in_bytes,
        "total_net_repl_output_bytes": srv.replication.repl_out_bytes,
        "instantaneous_input_kbps": "%.2f" % (_inst(st, 1) / 1024),
        "instantaneous_output_kbps": "%.2f" % (_inst(st, 2) / 1024),
        "instantaneous_input_repl_kbps": "0.00",
        "instantaneous_output_repl_kbps": "0.00",
        "rejected_connections": srv.stats.rejected_conn,
        "sync_full": srv.replication.stat_sync_full,
        "sync_partial_ok": srv.replication.stat_sync_partial_ok,
        "sync_partial_err": srv.replication.stat_sync_partial_err,
        "expired_keys": srv.ks.expired_keys - srv.stats.expiredkeys_base,
        "expired_stale_perc": "0.00",
        "expired_time_cap_reached_count": 0,
        "expire_cycle_cpu_milliseconds": 0,
        "evicted_keys": ev.evicted_keys if ev is not None else 0,
        "evicted_clients": 0,
        "total_eviction_exceeded_time": int(total_exceeded * 1000),
        "current_eviction_exceeded_time": int(cur_exceeded * 1000),
        "keyspace_hits": srv.stats.keyspace_hits,
        "keyspace_misses": srv.stats.keyspace_misses,
        "pubsub_channels": len(srv.pubsub.channels),
        "pubsub_patterns": len(srv.pubsub.patterns),
        "pubsubshard_channels": len(srv.pubsub.shard_channels),
        "latest_fork_usec": srv.children.last_fork_usec,
        "total_forks": srv.children.total_forks,
        "migrate_cached_sockets": 0,
        "slave_expires_tracked_keys": 0,
        "active_defrag_hits": 0,
        "active_defrag_misses": 0,
        "active_defrag_key_hits": 0,
        "active_defrag_key_misses": 0,
        "total_active_defrag_time": 0,
        "current_active_defrag_time": 0,
        "tracking_total_keys": len(srv.tracking.table),
        "tracking_total_items": srv.tracking.items,
        "tracking_total_prefixes": len(srv.tracking.prefixes),
        "unexpected_error_replies": srv.stats.unexpected_error_replies,
        "total_error_replies": srv.stats.total_error_replies,
        "dump_payload_sanitizations": 0,
        "total_reads_processed": srv.stats.total_reads,
        "total_writes_processed": srv.stats.total_writes,
        "io_threaded_reads_processed": 0,
        "io_threaded_writes_processed": 0,
        "reply_buffer_shrinks": 0,
        "reply_buffer_expands": 0,
    }


def _replication(srv) -> dict:
    return srv.replication.info()


def _cpu(srv) -> dict:
    s = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        th = resource.getrusage(resource.RUSAGE_THREAD)
    except (AttributeError, ValueError, OSError):
        th = s
    return {
        "used_cpu_sys": "%.6f" % s.ru_stime,
        "used_cpu_user": "%.6f" % s.ru_utime,
        "used_cpu_sys_children": "%.6f" % ch.ru_stime,
        "used_cpu_user_children": "%.6f" % ch.ru_utime,
        "used_cpu_sys_main_thread": "%.6f" % th.ru_stime,
        "used_cpu_user_main_thread": "%.6f" % th.ru_utime,
    }


def _commandstats_text(srv) -> str:
    from pynode.commands import all_commands
    out = []
    for cmd in all_commands(srv.table):
        if not (cmd.calls or cmd.failed or cmd.rejected):
            continue
        usec = cmd.ns // 1000
        out.append("cmdstat_%s:calls=%d,usec=%d,usec_per_call=%.2f,rejected_calls=%d,"
                   "failed_calls=%d\r\n"
                   % (cmd.name, cmd.calls, usec, usec / cmd.calls if cmd.calls else 0.0,
                      cmd.rejected, cmd.failed))
    return "".join(out)


def _errorstats_text(srv) -> str:
    return "".join("errorstat_%s:count=%d\r\n" % kv for kv in srv.stats.errorstats.items())


def avg_ttl(db, now_ms: int) -> int:
    if getattr(db, "avg_ttl", 0):
        return db.avg_ttl
    total = n = 0
    for when in db.expires.values():
        if when > now_ms:
            total += when - now_ms
            n += 1
        if n >= 64:
            break
    return total // n if n else 0


def _keyspace_text(srv) -> str:
    out = []
    now = int(time.time() * 1000)
    for db in srv.ks.dbs:
        if db is None:
            continue
        keys = db.size()
        if not keys:
            continue
        out.append("db%d:keys=%d,expires=%d,avg_ttl=%d\r\n"
                   % (db.id, keys, len(db.expires), avg_ttl(db, now)))
    return "".join(out)


_DICT_SECTIONS = {"server": _server, "clients": _clients, "memory": _memory,
                  "persistence": _persistence, "stats": _stats,
                  "replication": _replication, "cpu": _cpu}


def section_text(srv, name: str) -> str:
    if name in _DICT_SECTIONS:
        return _fmt(_DICT_SECTIONS[name](srv))
    if name == "commandstats":
        return _commandstats_text(srv)
    if name == "errorstats":
        return _errorstats_text(srv)
    if name == "keyspace":
        return _keyspace_text(srv)
    if name == "cluster":
        text = "cluster_enabled:%d\r\n" % (1 if srv.cfg.bool("cluster-enabled") else 0)
        t = srv.cluster.transport if srv.cluster is not None else None
        if t is not None and (t.secrets or t.stats_auth_refused):
            # pynode's own: bus links refused for not proving cluster-bus-secret
            text += "cluster_bus_auth_refused:%d\r\n" % t.stats_auth_refused
        return text
    if name == "latencystats":
        return srv.latency.info_text()
    return ""  # modules


def select_sections(args: list[str]) -> list[str]:
    """The sections INFO prints for its arguments, in Redis's order."""
    if not args:
        wanted = set(DEFAULT_SECTIONS)
    else:
        wanted = set()
        for a in args:
            a = a.lower()
            if a == "default":
                wanted.update(DEFAULT_SECTIONS)
            elif a in ("all", "everything"):
                wanted.update(ALL_SECTIONS)
            else:
                wanted.add(a)
    return [s for s in ALL_SECTIONS if s in wanted]


def build(srv, args: list[str] | None = None) -> str:
    out = []
    for s in select_sections(args or []):
        out.append("# %s\r\n%s" % (TITLES[s], section_text(srv, s)))
    return "\r\n".join(out)


def fields(text: str) -> dict:
    """Parse INFO text into {field: value} (for tests and tools)."""
    d = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and ":" in line:
            k, v = line.split(":", 1)
            d[k] = v
    return d
