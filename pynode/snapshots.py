"""RDB persistence, as Redis 7.0's rdb.c: SAVE, BGSAVE in a forked child,
save points, the dump.rdb loaded at start-up, saving at shutdown.

`srv.snapshots` is a Snapshots.  The file is written whole to a temporary
name, fsynced and renamed over `dir/dbfilename`, so a crash leaves the old
snapshot or the new one.  A background save is a forked child that writes
the copy-on-write snapshot of the keyspace and the function libraries (the
same rdb.dump the full sync uses) and renames the file itself; the parent
reaps it from the cron.  Save points (`save <seconds> <changes> ...`) are
checked in the cron as Redis's serverCron does, with Redis's 5 s pause after
a failed background save.  At start-up with appendonly no, dump.rdb is
loaded all or nothing: a damaged file stops start-up with its name, the
offset and what to do.

After a failed background save, with save points set and
stop-writes-on-bgsave-error yes, writes (and PING) get MISCONF until a save
succeeds (the replication write guard answers it).

The child is forked through srv.children (pynode/children.py), one child at
a time: a save point or BGSAVE SCHEDULE waits while an AOF rewrite or a full
sync child runs.
"""

from __future__ import annotations

import os
import time

from pynode import evict
from pynode.log import log
from storage import durable, rdb
from pynode.children import RDB

RETRY_DELAY = 5.0              # CONFIG_BGSAVE_RETRY_DELAY


class Snapshots:
    def __init__(self, srv) -> None:
        self.srv = srv
        self.child_pid = 0
        self.child_start = 0.0
        self.child_dirty = 0           # srv.dirty when the child was forked
        self.last_ok = True            # rdb_last_bgsave_status
        self.last_bgsave_time = -1     # seconds the last background save took
        self.last_try = 0.0
        self.saves = 0                 # rdb_saves
        self.dirty_at_save = 0         # srv.dirty at the last successful save
        self.scheduled = False         # BGSAVE SCHEDULE while a child ran
        self.keys_loaded = 0
        self.keys_expired = 0
        # the start-up load (INFO loading_*)
        self.loading_start = 0
        self.loading_total = 0
        self.loading_loaded = 0
        self.loading_used_mem = 0
        self.lastsave = int(time.time())   # LASTSAVE: the last successful save

    # ------------------------------------------------------------ settings
    def path(self) -> str:
        cfg = self.srv.cfg
        return os.path.join(cfg.get("dir") or ".", cfg.get("dbfilename"))

    def save_points(self) -> list[tuple[int, int]]:
        parts = self.srv.cfg.get("save").split()
        return [(int(parts[i]), int(parts[i + 1])) for i in range(0, len(parts) - 1, 2)]

    def aux(self) -> dict:
        srv = self.srv
        return {"redis-ver": srv.version, "redis-bits": 64, "ctime": int(time.time()),
                "used-mem": 0, "aof-base": 0}

    def key_delay(self):
        """rdb-key-save-delay (microseconds after each key written), or None."""
        us = self.srv.cfg.int("rdb-key-save-delay")
        if us <= 0:
            return None
        return lambda: time.sleep(us / 1e6)

    def write_error(self) -> bool:
        """writeCommandsDeniedByDiskError for RDB: writes get MISCONF."""
        return (not self.last_ok and self.srv.cfg.bool("stop-writes-on-bgsave-error")
                and bool(self.save_points()))

    def set_ok(self, ok: bool) -> None:
        if ok != self.last_ok:
            self.last_ok = ok
            self.srv.replication.configure()      # MISCONF guard on or off

    @property
    def changes(self) -> int:
        return self.srv.dirty - self.dirty_at_save

    # ------------------------------------------------------------ saving
    def write(self, path: str) -> int:
        """The whole dataset to `path` (temp + fsync + rename); the key count."""
        srv = self.srv
        tmp = os.path.join(os.path.dirname(path) or ".", "temp-%d.rdb" % os.getpid())
        try:
            with open(tmp, "wb", buffering=1 << 20) as fh:
                n = rdb.dump(srv.ks.dbs, fh.write, self.aux(),
                             srv.scripting.functions.codes(), self.key_delay(),
                             self.key_clock())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return n

    def save(self) -> bool:
        """SAVE (foreground, as rdbSave)."""
        srv = self.srv
        try:
            n = self.write(self.path())
        except (OSError, rdb.RDBError) as e:
            log.warning("Failed saving the DB: %s" % e)
            return False
        log.notice("DB saved on disk (%d keys)" % n)
        self.dirty_at_save = srv.dirty
        self.lastsave = int(time.time())
        self.set_ok(True)
        self.saves += 1
        return True

    def bgsave(self) -> bool:
        """Fork a child that writes the snapshot; False if the fork failed."""
        srv = self.srv
        self.last_try = time.monotonic()
        path = self.path()

        def body() -> None:
            log.notice("DB saved on disk (%d keys)" % self.write(path))
        try:
            pid = srv.children.fork(RDB, body, "saving the DB in the background")
        except OSError as e:
            self.set_ok(False)
            log.warning("Can't save in background: fork: %s" % e.strerror)
            return False
        self.child_pid = pid
        self.child_start = time.time()
        self.child_dirty = srv.dirty
        self.scheduled = False
        log.notice("Background saving started by pid %d" % pid)
        return True

    def reap(self, block: bool = False) -> None:
        if not self.child_pid:
            return
        status = self.srv.children.reap(self.child_pid, block)
        if status is None:
            return
        self.child_pid = 0
        self.last_bgsave_time = int(time.time() - self.child_start)
        if self.srv.children.ok(status):
            log.notice("Background saving terminated with success")
            self.dirty_at_save = self.child_dirty
            self.lastsave = int(self.child_start)
            self.set_ok(True)
            self.saves += 1
        else:
            log.warning("Background saving error")
            self.set_ok(False)

    def kill_child(self) -> None:
        pid = self.child_pid
        if pid:
            self.srv.children.kill(pid)
            self.child_pid = 0
            try:
                os.unlink(os.path.join(os.path.dirname(self.path()) or ".",
                                       "temp-%d.rdb" % pid))
            except OSError:
                pass

    def cron(self) -> None:
        """Reap the child; start a background save when a save point is due."""
        if self.child_pid:
            self.reap()
            return
        srv = self.srv
        if srv.children.busy():
            return                         # one child at a time
        if self.scheduled and (self.last_ok or
                               time.monotonic() - self.last_try > RETRY_DELAY):
            self.bgsave()
            return
        points = self.save_points()
        if not points:
            return
        now = time.time()
        changes = self.changes
        for seconds, n in points:
            if changes >= n and now - self.lastsave > seconds and (
                    self.last_ok or time.monotonic() - self.last_try > RETRY_DELAY):
                log.notice("%d changes in %d seconds. Saving..." % (n, seconds))
                self.bgsave()
                return

    def key_clock(self):
        """What an LRU policy saves of each key (its idle seconds) or an LFU
        policy (its counter), as rdbSaveKeyValuePair; None otherwise."""
        srv = self.srv
        flags = evict.POLICIES.get(srv.evictor.policy, 0)
        ks = srv.ks
        if flags & evict.F_LFU:
            def lfu(db, key: bytes) -> bytes:
                return rdb.clock_record(-1, ks.lfu_decr(db.clock.get(key, ks.default_clock())))
            return lfu
        if flags & evict.F_LRU:
            def lru(db, key: bytes) -> bytes:
                idle = ks.idle_ms(db.clock.get(key, ks.default_clock())) // 1000
                return rdb.clock_record(idle, -1)
            return lru
        return None

    def take_clock(self, dbid: int, key: bytes, idle: int, freq: int) -> None:
        """A loaded key's saved idle time / LFU counter (objectSetLRUOrLFU)."""
        db = self.srv.ks.db(dbid)
        if db.peek(key) is not None:
            evict.set_lru_or_lfu(self.srv, db, key, freq, idle)

    # ------------------------------------------------------------ start / stop
    def load(self) -> bool:
        """Load dir/dbfilename if it is there (appendonly no); exits on a
        damaged file.  Logs as rdbLoad (producer version, age, memory) and
        serves clients with -LOADING every loading-process-events-interval-
        bytes (Server.loading_events).  As a primary, keys already expired
        are dropped and counted (keys expired)."""
        path = self.path()
        if not os.path.exists(path):
            return False
        srv = self.srv
        cfg = srv.cfg
        t0 = time.time()
        with open(path, "rb") as fh:
            data = fh.read()
        ks = srv.ks
        ks.tick()                         # keys are created (accessed) now
        codes: list[bytes] = []
        primary = not cfg.get("replicaof")
        now_ms = int(t0 * 1000)
        delay = cfg.int("key-load-delay") / 1e6
        counts = [0, 0]                   # keys loaded, keys expired

        def on_key(dbid: int, key: bytes, value, expire: int) -> None:
            if delay > 0:
                time.sleep(delay)
            if primary and expire != -1 and expire < now_ms:
                counts[1] += 1
                return
            db = ks.db(dbid)
            db.set(key, value)
            if expire != -1:
                db.set_expire(key, expire)
            counts[0] += 1

        def progress(pos: int) -> None:
            self.loading_loaded = pos
            srv.loading_events()

        self.loading_start = int(t0)
        self.loading_total = len(data)
        self.loading_loaded = 0
        self.loading_used_mem = 0
        srv.set_loading(True)
        try:
            rdb.load(data, on_key, self.on_load_aux, name=path, on_function=codes.append,
                     progress=progress,
                     progress_every=cfg.int("loading-process-events-interval-bytes"),
                     on_clock=self.take_clock)
            srv.scripting.load_functions(codes)
        except rdb.RDBError as e:
            ks.flushall()
            log.warning("Fatal error loading the DB: %s. The file was not loaded: move it "
                        "away (or restore a good copy) and start again. Exiting." % e)
            raise SystemExit(1)
        finally:
            srv.set_loading(False)
        self.keys_loaded, self.keys_expired = counts
        log.notice("Done loading RDB, keys loaded: %d, keys expired: %d." % tuple(counts))
        log.notice("DB loaded from disk: %.3f seconds" % (time.time() - t0))
        return True

    def on_load_aux(self, k: bytes, v: bytes) -> None:
        """rdbLoad's log lines for the producer's aux fields."""
        try:
            if k == b"redis-ver":
                log.notice("Loading RDB produced by version %s" % v.decode("utf-8", "replace"))
            elif k == b"ctime":
                log.notice("RDB age %d seconds" % max(0, int(time.time()) - int(v)))
            elif k == b"used-mem":
                self.loading_used_mem = int(v)
                log.notice("RDB memory usage when created %.2f Mb" % (int(v) / 1048576))
        except ValueError:
            pass

    def loading_info(self) -> dict:
        """INFO's loading_* fields, present while loading (as Redis)."""
        if not self.srv.loading or not self.loading_total:
            return {}
        elapsed = int(time.time()) - self.loading_start
        loaded = self.loading_loaded
        total = self.loading_total
        if not elapsed:
            eta = 1
        else:
            eta = int((total - loaded) / (loaded / elapsed)) if loaded else 1
        return {
            "loading_start_time": self.loading_start,
            "loading_total_bytes": total,
            "loading_rdb_used_mem": self.loading_used_mem,
            "loading_loaded_bytes": loaded,
            "loading_loaded_perc": "%.2f" % (loaded * 100 / total),
            "loading_eta_seconds": eta,
        }

    # ------------------------------------------------------------ full sync (replica)
    def persistence_off(self) -> bool:
        """allPersistenceDisabled: no save points and appendonly no."""
        return not self.save_points() and not self.srv.cfg.bool("appendonly")

    def store_sync_payload(self, payload: bytes) -> None:
        """A replica with repl-diskless-load disabled keeps the master's RDB
        as its dir/dbfilename (temp + fsync + rename), as readSyncBulkPayload."""
        if self.srv.cfg.get("repl-diskless-load") != "disabled":
            return
        path = self.path()
        try:
            durable.atomic_write(path, payload, tmp_name="temp-%d.%d.rdb"
                                 % (int(time.time()), os.getpid()))
        except OSError as e:
            log.warning("Failed trying to write the DB received from the MASTER in "
                        "%s: %s" % (path, e.strerror))

    def after_sync_load(self) -> None:
        """rdb-del-sync-files yes and no persistence: the RDB obtained from the
        master is removed once loaded."""
        cfg = self.srv.cfg
        if (cfg.get("repl-diskless-load") == "disabled" and cfg.bool("rdb-del-sync-files")
                and self.persistence_off()):
            log.notice("Removing the RDB file obtained from the master. This replica has "
                       "persistence disabled")
            try:
                os.unlink(self.path())
            except OSError:
                pass

    def on_shutdown(self, save: bool, nosave: bool) -> bool:
        """SHUTDOWN / SIGTERM: save when asked to or when save points are
        set, unless NOSAVE; False if that save failed."""
        self.kill_child()
        if nosave or not (save or self.save_points()):
            return True
        log.notice("Saving the final RDB snapshot before exiting.")
        return self.save()

    def after_flushall(self) -> None:
        """FLUSHALL with save points set saves the (empty) dataset, as Redis."""
        if self.save_points():
            self.kill_child()
            self.save()

    def info(self) -> dict:
        return {
            "rdb_changes_since_last_save": self.changes,
            "rdb_bgsave_in_progress": 1 if self.srv.children.kind_is_rdb() else 0,
            "rdb_last_save_time": self.lastsave,
            "rdb_last_bgsave_status": "ok" if self.last_ok else "err",
            "rdb_last_bgsave_time_sec": self.last_bgsave_time,
            "rdb_current_bgsave_time_sec": (int(time.time() - self.child_start)
                                            if self.child_pid else -1),
            "rdb_saves": self.saves,
            "rdb_last_load_keys_expired": self.keys_expired,
            "rdb_last_load_keys_loaded": self.keys_loaded,
        }
