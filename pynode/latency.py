"""The latency monitor and per-command latency histograms (Redis 7.0 latency.c).

Two independent things live here, both as Redis keeps them:

- **Latency events** (`latency-monitor-threshold` ms, 0 = off): a code path that
  took at least the threshold adds a sample (unix second, milliseconds) to its
  event's time series: 160 samples, one per second (a later sample in the same
  second keeps the larger latency), plus the all-time maximum. LATENCY LATEST /
  HISTORY / GRAPH / DOCTOR / RESET read them. Events pynode samples:
  command, fast-command (by the command's `fast` flag), expire-cycle,
  eviction-cycle, eviction-del, fork, aof-write-alone, aof-write-active-child,
  aof-write-pending-fsync, aof-fsync-always.
- **Latency histograms** (`latency-tracking yes`): every command call's
  duration, kept as hdr_histogram keeps it with 2 significant digits over
  1 ns .. 1 s, so LATENCY HISTOGRAM's buckets and INFO latencystats'
  percentiles are computed as Redis computes them. To keep the dispatcher's
  cost at one list append, a call only appends its duration to `cmd.lat`;
  the samples are folded into the command's histogram every 10 ms
  (Server.fold_latency) and before anything reads them.
"""

from __future__ import annotations

import time
from collections import Counter
from itertools import compress
from operator import attrgetter

from pynode.config_table import _format_double as _fmt_percentile   # trimDoubleString

TS_LEN = 160                 # LATENCY_TS_LEN
GRAPH_COLS = 80              # LATENCY_GRAPH_COLS
HIST_MIN_NS = 1              # LATENCY_HISTOGRAM_MIN_VALUE
HIST_MAX_NS = 1000000000     # LATENCY_HISTOGRAM_MAX_VALUE
NEVER = 1 << 62              # a duration (ns) no call reaches: a threshold that is off


# ------------------------------------------------------------------ events
class TimeSeries:
    __slots__ = ("samples", "idx", "max")

    def __init__(self) -> None:
        self.samples = [[0, 0] for _ in range(TS_LEN)]   # [unix time, ms]
        self.idx = 0
        self.max = 0

    def add(self, now: int, ms: int) -> None:
        if ms > self.max:
            self.max = ms
        prev = self.samples[(self.idx + TS_LEN - 1) % TS_LEN]
        if prev[0] == now:
            if ms > prev[1]:
                prev[1] = ms
            return
        s = self.samples[self.idx]
        s[0], s[1] = now, ms
        self.idx = (self.idx + 1) % TS_LEN

    def ordered(self) -> list:
        """The samples, oldest first."""
        out = []
        for j in range(TS_LEN):
            s = self.samples[(self.idx + j) % TS_LEN]
            if s[0]:
                out.append(s)
        return out

    def last(self) -> list:
        return self.samples[(self.idx + TS_LEN - 1) % TS_LEN]


# ------------------------------------------------------------------ histograms
# hdr_histogram with lowest 1, highest 1e9, 2 significant figures: 256
# sub-buckets, the first bucket holds 0..255 one by one, bucket b >= 1 holds
# [128 << b, 256 << b) in steps of 1 << b. A value's index is its bucket
# shift and its top 8 bits.

def hist_index(ns: int) -> int:
    s = ns.bit_length() - 8
    return ns if s <= 0 else (s << 8) | (ns >> s)


def index_range(i: int) -> tuple[int, int]:
    """(lowest, highest) equivalent value of an index."""
    s = i >> 8
    if s == 0:
        return i, i
    low = (i & 255) << s
    return low, low + (1 << s) - 1


def _fold(hist: dict, pending: list) -> None:
    """Add durations (ns) to a histogram.  They are counted first, in C
    (Counter): a busy pipelined command's thousands of durations fall on a
    few hundred distinct values, and only those take the Python steps below
    (hist_index written out, the clamp to 1 ns .. 1 s tested once for all)."""
    counts = Counter(pending)
    if min(counts) < HIST_MIN_NS or max(counts) > HIST_MAX_NS:
        clamped: Counter = Counter()
        for ns, n in counts.items():
            clamped[HIST_MIN_NS if ns < HIST_MIN_NS else HIST_MAX_NS if ns > HIST_MAX_NS
                    else ns] += n
        counts = clamped
    get = hist.get
    for ns, n in counts.items():
        s = ns.bit_length() - 8
        i = ns if s <= 0 else (s << 8) | (ns >> s)      # hist_index
        hist[i] = get(i, 0) + n


_LAT = attrgetter("lat")


def value_at_percentile(hist: dict, total: int, p: float) -> int:
    """hdr_value_at_percentile."""
    want = int((min(p, 100.0) / 100.0) * total + 0.5)
    want = max(want, 1)
    n = 0
    idx = 0
    for idx in sorted(hist):
        n += hist[idx]
        if n >= want:
            break
    low, high = index_range(idx)
    return low if p == 0.0 else high


def cdf(hist: dict) -> list[tuple[int, int]]:
    """LATENCY HISTOGRAM's histogram_usec: an hdr log iteration from 1024 ns
    by powers of 2; each level's bucket upper bound (in us) with the count
    of calls up to it, where the count grew."""
    total = sum(hist.values())
    items = sorted(hist.items())
    out = []
    level = 1024
    cum = prev = 0
    k = 0
    while cum < total:
        li = hist_index(level)
        while k < len(items) and items[k][0] <= li:
            cum += items[k][1]
            k += 1
        if cum > prev:
            out.append((index_range(li)[1] // 1000, cum))
        prev = cum
        level <<= 1
    return out


# ------------------------------------------------------------------ sparkline
_CHARSET_FILL = "_o#"


def sparkline(values: list, labels: list, rows: int = 4, columns: int = GRAPH_COLS) -> str:
    """sparklineRender with SPARKLINE_FILL, as Redis draws LATENCY GRAPH."""
    out = []
    if not values:
        return ""
    vmin = min(values)
    vmax = max(values)
    nlabels = sum(1 for x in labels if x)
    for start in range(0, len(values), columns):
        if start:
            out.append("\n")
        vals = values[start:start + columns]
        labs = labels[start:start + columns]
        relmax = (vmax - vmin) or 1
        steps = len(_CHARSET_FILL) * rows
        row = 0
        while True:
            chars = [" "] * len(vals)
            loop = False
            for j, v in enumerate(vals):
                step = int(int((v - vmin) * steps) / relmax)
                step = max(0, min(step, steps - 1))
                if row < rows:
                    loop = True
                    ci = step - (rows - row - 1) * len(_CHARSET_FILL)
                    if 0 <= ci < len(_CHARSET_FILL):
                        chars[j] = _CHARSET_FILL[ci]
                    elif ci >= len(_CHARSET_FILL):
                        chars[j] = "|"
                else:
                    if nlabels and row - rows < 1:
                        loop = True
                        break
                    lab = labs[j]
                    lc = row - rows - 1
                    if lab and len(lab) > lc:
                        loop = True
                        chars[j] = lab[lc]
            if not loop:
                break
            row += 1
            out.append("".join(chars) + "\n")
    return "".join(out)


def _ago(elapsed: int) -> str:
    if elapsed < 60:
        return "%ds" % elapsed
    if elapsed < 3600:
        return "%dm" % (elapsed // 60)
    if elapsed < 86400:
        return "%dh" % (elapsed // 3600)
    return "%dd" % (elapsed // 86400)


# ------------------------------------------------------------------ doctor
NO_MONITOR = ("I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this Redis "
              "instance. You may use \"CONFIG SET latency-monitor-threshold <milliseconds>.\" in "
              "order to enable it. If we weren't in a deep space mission I'd suggest to take a "
              "look at https://redis.io/topics/latency-monitor.\n")
NO_SPIKES = ("Dave, no latency spike was observed during the lifetime of this Redis instance, "
             "not in the slightest bit. I honestly think you ought to sit down calmly, take a "
             "stress pill, and think things over.\n")
SPIKES = ("Dave, I have observed latency spikes in this Redis instance. You don't mind talking "
          "about it, do you Dave?\n\n")
NO_FIX = ("\nWhile there are latency events logged, I'm not able to suggest any easy fix. "
          "Please use the Redis community to get some help, providing this report in your "
          "help request.\n")

# advice key -> text, in the order the report prints them
ADVICE = [
    ("better_vm", "- If you are using a virtual machine, consider upgrading it with a faster "
     "one using a hypervisior that provides less latency during fork() calls. Xen is known to "
     "have poor fork() performance. Even in the context of the same VM provider, certain kinds "
     "of instances can execute fork faster than others.\n"),
    ("slowlog_enabled", "- There are latency issues with potentially slow commands you are "
     "using. Try to enable the Slow Log Redis feature using the command 'CONFIG SET "
     "slowlog-log-slower-than %d'. If the Slow log is disabled Redis is not able to log slow "
     "commands execution for you.\n"),
    ("slowlog_tuning", "- Your current Slow Log configuration only logs events that are slower "
     "than your configured latency monitor threshold. Please use 'CONFIG SET "
     "slowlog-log-slower-than %d'.\n"),
    ("slowlog_inspect", "- Check your Slow Log to understand what are the commands you are "
     "running which are too slow to execute. Please check https://redis.io/commands/slowlog "
     "for more information.\n"),
    ("scheduler", "- The system is slow to execute Redis code paths not containing system "
     "calls. This usually means the system does not provide Redis CPU time to run for long "
     "periods. You should try to:\n"
     "  1) Lower the system load.\n"
     "  2) Use a computer / VM just for Redis if you are running other software in the same "
     "system.\n"
     "  3) Check if you have a \"noisy neighbour\" problem.\n"
     "  4) Check with 'redis-cli --intrinsic-latency 100' what is the intrinsic latency in "
     "your system.\n"
     "  5) Check if the problem is allocator-related by recompiling Redis with MALLOC=libc, "
     "if you are using Jemalloc. However this may create fragmentation problems.\n"),
    ("local_disk", "- It is strongly advised to use local disks for persistence, especially "
     "if you are using AOF. Remote disks provided by platform-as-a-service providers are known "
     "to be slow.\n"),
    ("ssd", "- SSD disks are able to reduce fsync latency, and total time needed for "
     "snapshotting and AOF log rewriting (resulting in smaller memory usage). With extremely "
     "high write load SSD disks can be a good option. However Redis should perform reasonably "
     "with high load using normal disks. Use this advice as a last resort.\n"),
    ("data_writeback", "- Mounting ext3/4 filesystems with data=writeback can provide a "
     "performance boost compared to data=ordered, however this mode of operation provides "
     "less guarantees, and sometimes it can happen that after a hard crash the AOF file will "
     "have a half-written command at the end and will require to be repaired before Redis "
     "restarts.\n"),
    ("disk_contention", "- Try to lower the disk contention. This is often caused by other "
     "disk intensive processes running in the same computer (including other Redis "
     "instances).\n"),
    ("no_appendfsync", "- Assuming from the point of view of data safety this is viable in "
     "your environment, you could try to enable the 'no-appendfsync-on-rewrite' option, so "
     "that fsync will not be performed while there is a child rewriting the AOF file or "
     "producing an RDB file (the moment where there is high disk contention).\n"),
    ("relax_fsync_policy", "- Your fsync policy is set to 'always'. It is very hard to get "
     "good performances with such a setup, if possible try to relax the fsync policy to "
     "'onesec'.\n"),
    ("write_load_info", "- Latency during the AOF atomic rename operation or when the final "
     "difference is flushed to the AOF file at the end of the rewrite, sometimes is caused by "
     "very high write load, causing the AOF buffer to get very large. If possible try to send "
     "less commands to accomplish the same work, or use Lua scripts to group multiple "
     "operations into a single EVALSHA call.\n"),
    ("hz", "- In order to make the Redis keys expiring process more incremental, try to set "
     "the 'hz' configuration parameter to 100 using 'CONFIG SET hz 100'.\n"),
    ("large_objects", "- Deleting, expiring or evicting (because of maxmemory policy) large "
     "objects is a blocking operation. If you have very large objects that are often deleted, "
     "expired, or evicted, try to fragment those objects into multiple smaller objects.\n"),
    ("mass_eviction", "- Sudden changes to the 'maxmemory' setting via 'CONFIG SET', or "
     "allocation of large objects via sets or sorted sets intersections, STORE option of SORT, "
     "Redis Cluster large keys migrations (RESTORE command), may create sudden memory pressure "
     "forcing the server to block trying to evict keys. \n"),
    ("disable_thp", "- I detected a non zero amount of anonymous huge pages used by your "
     "process. This creates very serious latency events in different conditions, especially "
     "when Redis is persisting on disk. To disable THP support use the command 'echo never > "
     "/sys/kernel/mm/transparent_hugepage/enabled', make sure to also add it into "
     "/etc/rc.local so that the command will be executed again after a reboot. Note that even "
     "if you have already disabled THP, you still need to restart the Redis process to get rid "
     "of the huge pages already created.\n"),
]

# event -> (advices it turns on, how many advices it counts)
EVENT_ADVICE = {
    "fast-command": (("scheduler",), 1),
    "aof-write-pending-fsync": (("local_disk", "disk_contention", "ssd", "data_writeback"), 4),
    "aof-write-active-child": (("no_appendfsync", "data_writeback", "ssd"), 3),
    "aof-write-alone": (("local_disk", "data_writeback", "ssd"), 3),
    "aof-fsync-always": (("relax_fsync_policy",), 1),
    "aof-fstat": (("disk_contention", "local_disk"), 2),
    "rdb-unlink-temp-file": (("disk_contention", "local_disk"), 2),
    "aof-rewrite-diff-write": (("write_load_info", "data_writeback", "ssd", "local_disk"), 4),
    "aof-rename": (("write_load_info", "data_writeback", "ssd", "local_disk"), 4),
    "expire-cycle": (("hz", "large_objects"), 2),
    "eviction-del": (("large_objects",), 1),
    "eviction-cycle": (("mass_eviction",), 1),
}


def anon_huge_pages() -> int:
    """AnonHugePages of this process in bytes (THPGetAnonHugePagesSize)."""
    for path in ("/proc/self/smaps_rollup", "/proc/self/smaps"):
        total = 0
        try:
            with open(path, "rb") as f:
                for line in f:
                    if line.startswith(b"AnonHugePages:"):
                        total += int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            continue
        return total
    return 0


# ------------------------------------------------------------------ state
class Latency:
    """srv.latency: the event time series and the command histograms."""

    def __init__(self, srv) -> None:
        self.srv = srv
        self.events: dict[str, TimeSeries] = {}
        self.hists: dict = {}            # Command -> {hdr index: count}
        self.configure()

    def configure(self) -> None:
        cfg = self.srv.cfg
        self.threshold = cfg.int("latency-monitor-threshold")
        # the smallest duration (ns) worth looking at: NEVER when off
        self.min_ns = self.threshold * 1000000 if self.threshold else NEVER
        self.tracking = cfg.bool("latency-tracking")
        self.percentiles = [float(p) for p in cfg.get("latency-tracking-info-percentiles").split()]

    # ---- events
    def sample(self, event: str, seconds: float) -> None:
        """latencyAddSampleIfNeeded with a duration in seconds."""
        ms = int(seconds * 1e6) // 1000
        if self.threshold and ms >= self.threshold:
            self.add(event, ms)

    def add(self, event: str, ms: int) -> None:
        ts = self.events.get(event)
        if ts is None:
            ts = self.events[event] = TimeSeries()
        ts.add(int(time.time()), ms)

    def command(self, cmd, seconds: float) -> None:
        self.sample("fast-command" if cmd.fast else "command", seconds)

    def reset(self, names: list[bytes] | None) -> int:
        if names is None:
            n = len(self.events)
            self.events.clear()
            return n
        n = 0
        for name in names:
            low = name.decode("utf-8", "replace").lower()
            for ev in [e for e in self.events if e.lower() == low]:
                del self.events[ev]
                n += 1
        return n

    def analyze(self, ts: TimeSeries) -> dict:
        samples = ts.ordered()
        n = len(samples)
        if not n:
            return {"samples": 0, "avg": 0, "mad": 0, "period": 0}
        avg = sum(s[1] for s in samples) // n
        period = int(time.time()) - min(s[0] for s in samples)
        mad = sum(abs(avg - s[1]) for s in samples) // n
        return {"samples": n, "avg": avg, "mad": mad, "period": period or 1}

    def graph(self, event: str) -> str | None:
        ts = self.events.get(event)
        if ts is None:
            return None
        now = int(time.time())
        samples = ts.ordered()
        vals = [s[1] for s in samples]
        labels = [_ago(now - s[0]) for s in samples]
        hi = max(vals) if vals else 0
        lo = min(vals) if vals else 0
        return ("%s - high %d ms, low %d ms (all time high %d ms)\n" % (event, hi, lo, ts.max)
                + "-" * GRAPH_COLS + "\n" + sparkline(vals, labels))

    def doctor(self) -> str:
        srv = self.srv
        if not self.events and not self.threshold:
            return NO_MONITOR
        out = []
        advise: set = set()
        advices = 0
        for num, (event, ts) in enumerate(list(self.events.items()), 1):
            if num == 1:
                out.append(SPIKES)
            ls = self.analyze(ts)
            out.append("%d. %s: %d latency spikes (average %dms, mean deviation %dms, period "
                       "%.2f sec). Worst all time event %dms."
                       % (num, event, ls["samples"], ls["avg"], ls["mad"],
                          ls["period"] / ls["samples"] if ls["samples"] else 0.0, ts.max))
            ev = event.lower()
            if ev == "fork":
                rate = self.fork_rate()
                if rate < 10:
                    quality = "terrible"
                elif rate < 25:
                    quality = "poor"
                elif rate < 100:
                    quality = "good"
                else:
                    quality = "excellent"
                if rate < 25:
                    advise.add("better_vm")
                    advices += 1
                out.append(" Fork rate is %.2f GB/sec (%s)." % (rate, quality))
            if ev == "command":
                slower = srv.slowlog_slower_than
                if slower < 0:
                    advise.add("slowlog_enabled")
                    advices += 1
                elif slower // 1000 > self.threshold:
                    advise.add("slowlog_tuning")
                    advices += 1
                advise.update(("slowlog_inspect", "large_objects"))
                advices += 2
            if ev in EVENT_ADVICE:
                keys, n = EVENT_ADVICE[ev]
                advise.update(keys)
                advices += n
            out.append("\n")
        if anon_huge_pages() > 0:
            advise.add("disable_thp")
            advices += 1
        nevents = len(self.events)
        if nevents == 0 and advices == 0:
            out.append(NO_SPIKES)
        elif nevents > 0 and advices == 0:
            out.append(NO_FIX)
        else:
            out.append("\nI have a few advices for you:\n\n")
            for key, text in ADVICE:
                if key not in advise:
                    continue
                if key in ("slowlog_enabled", "slowlog_tuning"):
                    text = text % (self.threshold * 1000)
                elif key == "relax_fsync_policy" and srv.cfg.get("appendfsync") != "always":
                    continue
                elif key == "hz" and srv.hz >= 100:
                    continue
                out.append(text)
        return "".join(out)

    def fork_rate(self) -> float:
        """stat_fork_rate: GB of memory forked per second at the last fork."""
        from pynode.info import used_memory
        usec = self.srv.children.last_fork_usec
        if not usec:
            return 0.0
        return used_memory() * 1000000 / usec / (1024 * 1024 * 1024)

    # ---- histograms
    def fold(self) -> bool:
        """Move the durations commands appended into their histograms;
        True if there were any.  The commands with durations are found in C
        (compress) among the server's every command."""
        hists = self.hists
        cmds = self.srv.commands
        busy = list(compress(cmds, map(_LAT, cmds)))
        for cmd in busy:
            pending = cmd.lat
            cmd.lat = []
            h = hists.get(cmd)
            if h is None:
                h = hists[cmd] = {}
            _fold(h, pending)
        return bool(busy)

    def reset_histograms(self) -> None:
        from pynode.commands import all_commands
        for cmd in all_commands(self.srv.table):
            cmd.lat = []
        self.hists.clear()

    def histograms(self, cmds=None) -> list:
        """[(name, calls, [(usec, cumulative count)...])] for commands with data."""
        self.fold()
        from pynode.commands import all_commands
        out = []
        for cmd in (all_commands(self.srv.table) if cmds is None else cmds):
            h = self.hists.get(cmd)
            if h:
                out.append((cmd.name, sum(h.values()), cdf(h)))
        return out

    def info_text(self) -> str:
        """INFO latencystats."""
        self.fold()
        from pynode.commands import all_commands
        lines = []
        for cmd in all_commands(self.srv.table):
            h = self.hists.get(cmd)
            if not h:
                continue
            total = sum(h.values())
            parts = ["p%s=%.3f" % (_fmt_percentile(p), value_at_percentile(h, total, p) / 1000.0)
                     for p in self.percentiles]
            lines.append("latency_percentiles_usec_%s:%s\r\n" % (cmd.name, ",".join(parts)))
        return "".join(lines)
