"""Durable file operations: atomic replace, directory fsync, exclusive locks.

A file written with atomic_write() is either the old content or the new one
after a crash, never a mix: the data goes to a temporary file in the same
directory, is fsync()ed, renamed over the target, and the directory itself is
fsync()ed so the rename survives a power loss.
"""

from __future__ import annotations

import fcntl
import os


def fsync_dir(path: str) -> None:
    """fsync() a directory (pass the directory, or a file inside it with file=True)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data) -> None:
    """os.write() until every byte is written (retries short writes)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def atomic_write(path: str, data: bytes, mode: int = 0o644, tmp_name: str | None = None,
                 sync_dir: bool = True) -> None:
    """Replace `path` with `data` atomically (temp file + fsync + rename + dir fsync).

    tmp_name: the temporary file's name in the same directory (default
    "temp-<name>", the prefix Redis uses for its own temporary files).
    """
    d = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    tmp = os.path.join(d, tmp_name or ("temp-" + name))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    os.close(fd)
    os.replace(tmp, path)
    if sync_dir:
        fsync_dir(d)


def overwrite(path: str, data: bytes, mode: int = 0o644) -> None:
    """Rewrite `path` in place with one write() as Redis saves nodes.conf:
    the new text, padded with newlines to the old size, then a truncate.
    A process killed at any point leaves the old text, the new one, or the
    new one followed by blank lines (which readers skip); a power loss may
    leave less, so what must survive one goes through atomic_write.  On
    ext4 this costs a tenth of atomic_write even without fsync (a rename
    over a file flushes the new file's data first)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, mode)
    try:
        old = os.fstat(fd).st_size
        payload = data + b"\n" * (old - len(data)) if old > len(data) else data
        write_all(fd, payload)
        if old > len(data):
            os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


class LockHeld(OSError):
    """Another process holds the lock."""


class FileLock:
    """An exclusive advisory lock (fcntl.flock) on a file, held while open.

    The lock belongs to the open file description: it is released when the
    process exits (even on kill -9), and a forked child shares it.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    def acquire(self, blocking: bool = False) -> "FileLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            raise LockHeld("%s is locked by another process" % self.path)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd >= 0:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = -1

    @property
    def held(self) -> bool:
        return self.fd >= 0

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_exclusive(path: str, blocking: bool = False) -> FileLock:
    """Take an exclusive flock on `path` (created if missing); raises LockHeld."""
    return FileLock(path).acquire(blocking)
