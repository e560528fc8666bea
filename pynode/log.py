"""Log lines in Redis's format: `pid:role dd Mon yyyy hh:mm:ss.mmm <level> message`."""

from __future__ import annotations

import os
import sys
import time

LEVELS = {"debug": 0, "verbose": 1, "notice": 2, "warning": 3, "nothing": 4}
MARKS = ".-*#"
DEBUG, VERBOSE, NOTICE, WARNING = 0, 1, 2, 3


class Log:
    def __init__(self) -> None:
        self.level = NOTICE
        self.path = ""
        self.role = "M"
        self._fh = sys.stdout

    def configure(self, level: str, path: str) -> None:
        self.level = LEVELS.get(level, NOTICE)
        if path != self.path:
            if self._fh not in (sys.stdout, sys.stderr):
                self._fh.close()
            self.path = path
            self._fh = open(path, "a", buffering=1) if path else sys.stdout

    def __call__(self, level: int, msg: str) -> None:
        if level < self.level:
            return
        now = time.time()
        stamp = time.strftime("%d %b %Y %H:%M:%S", time.localtime(now))
        line = "%d:%s %s.%03d %s %s\n" % (os.getpid(), self.role, stamp,
                                          int(now * 1000) % 1000, MARKS[level], msg)
        try:
            self._fh.write(line)
            self._fh.flush()
        except (OSError, ValueError):
            pass

    def raw(self, level: int, text: str) -> None:
        """Write text as it is, without the line prefix (serverLogRaw)."""
        if level < self.level:
            return
        try:
            self._fh.write(text)
            self._fh.flush()
        except (OSError, ValueError):
            pass

    def notice(self, msg: str) -> None:
        self(NOTICE, msg)

    def warning(self, msg: str) -> None:
        self(WARNING, msg)

    def verbose(self, msg: str) -> None:
        self(VERBOSE, msg)

    def debug(self, msg: str) -> None:
        self(DEBUG, msg)


log = Log()
