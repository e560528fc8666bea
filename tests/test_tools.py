"""Real Redis tools against pynode: redis-cli answers and redis-benchmark runs."""

from __future__ import annotations

import difflib
import os
import re
import subprocess

import pytest

from tests.helpers import Proc

SCRIPT = os.path.join(os.path.dirname(__file__), "data", "redis_cli_script.txt")


def run_cli(port: int, script: bytes) -> str:
    out = subprocess.run(["redis-cli", "--no-raw", "-p", str(port)], input=script,
                         capture_output=True, timeout=120)
    return out.stdout.decode("utf-8", "replace")


def test_redis_cli_session_answers_as_redis_server():
    """One script of commands from every group through redis-cli, against
    pynode and redis-server: the printed answers are identical."""
    with open(SCRIPT, "rb") as fh:
        script = fh.read()
    with Proc() as pyn, Proc(redis_server=True) as red:
        got = run_cli(pyn.port, script)
        want = run_cli(red.port, script)
    diff = "\n".join(difflib.unified_diff(want.splitlines(), got.splitlines(),
                                          "redis-server", "pynode", lineterm=""))
    assert got == want, diff
    assert got.count("\n") > 200


@pytest.mark.serial   # loads both cores
def test_redis_benchmark_finishes_without_errors():
    with Proc() as p:
        c = p.client()
        # redis-py's own CLIENT SETINFO (a 7.2 command) fails on 7.0 as on pynode
        errors_before = c.info("errorstats")
        out = subprocess.run(
            ["redis-benchmark", "-h", "127.0.0.1", "-p", str(p.port), "-t",
             "ping,set,get,incr,mset", "-c", "50", "-n", "20000", "--csv"],
            capture_output=True, timeout=600, text=True)
        assert out.returncode == 0, out.stderr
        rows = [line for line in out.stdout.splitlines() if line.startswith('"')]
        tests = {re.match(r'"([^"]+)"', line).group(1) for line in rows[1:]}
        assert {"PING_INLINE", "PING_MBULK", "SET", "GET", "INCR"} <= tests
        assert any(t.startswith("MSET") for t in tests)
        assert "error" not in (out.stdout + out.stderr).lower()
        # the benchmark's writes really landed, and no command failed
        assert int(c.get("counter:__rand_int__")) > 0
        assert c.info("errorstats") == errors_before
