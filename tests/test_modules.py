"""MODULE: the same answers as redis-server 7.0 (no modules loaded, loading
refused or failed), with enable-module-command off and on."""

from __future__ import annotations

import pytest

from tests.compare import Conn
from tests.helpers import Proc

CMDS = [("MODULE", "LIST"), ("MODULE", "HELP"), ("MODULE", "LOAD", "/nonexistent.so"),
        ("MODULE", "LOAD", "/nonexistent.so", "a", "b"),
        ("MODULE", "LOADEX", "/nonexistent.so", "CONFIG", "a", "b", "ARGS", "x"),
        ("MODULE", "UNLOAD", "foo"), ("MODULE", "foo"), ("MODULE",), ("MODULE", "UNLOAD")]


@pytest.mark.parametrize("mode", ["no", "yes", "local"])
def test_module_commands_as_redis(mode):
    procs = [Proc(["--enable-module-command", mode], redis_server=rs).start()
             for rs in (False, True)]
    try:
        for resp in (2, 3):
            replies = []
            for p in procs:
                c = Conn(p.port, resp)
                replies.append([c.call(*a) for a in CMDS])
                c.close()
            for a, x, y in zip(CMDS, *replies):
                assert x == y, (mode, resp, a, x, y)
    finally:
        for p in procs:
            p.cleanup()
