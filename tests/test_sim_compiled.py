"""The gossip core compiled with mypyc (``python -m tests.sim_scale --compiled``)
runs the same events as the pure Python: the same trace digests, bus figures
and nodes.conf, sequentially and with the fork after forming."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests import sim_scale
from tests.test_gossip_sim import _digest

# (nodes, seed, sequential): sim_scale.run with 4 virtual seconds of steady state
RUNS = [(40, 5, True), (40, 5, False), (60, 2, False)]

IN_CHILD = """
import json, sys
from tests import sim_scale
sim_scale.use_compiled(out=lambda *a: None)
import gossip.codec, gossip.sim, gossip.state
from tests.test_gossip_sim import _digest
from tests.test_sim_compiled import figures
print(json.dumps({
    "modules": [gossip.codec.__file__, gossip.sim.__file__, gossip.state.__file__],
    "runs": figures(),
    "digests": [_digest(42), _digest(7)],
}))
"""


def figures() -> dict:
    """What each run of RUNS ends with, in this process's form of the gossip core."""
    quiet = lambda *a: None  # noqa: E731
    runs = {}
    for n, seed, sequential in RUNS:
        f = sim_scale.run(n, seed, 15000, 4, out=quiet, sequential=sequential)
        runs[f"{n}/{seed}/{sequential}"] = [f["trace"], f["msgs_per_node_s"], f["bytes_per_node_s"],
                                             f["failover_node_timeouts"], f["form"][1]]
    return runs


def _python(code_or_args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *code_or_args], cwd=sim_scale.ROOT, capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, PYTHONPATH=str(sim_scale.ROOT), **env))


@pytest.fixture(scope="module")
def compiled() -> dict:
    sim_scale.build_compiled(out=lambda *a: None)  # (once per source hash)
    done = _python(["-c", IN_CHILD])
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_the_compiled_modules_are_the_ones_run(compiled):
    for path in compiled["modules"]:
        assert path.startswith(str(sim_scale.BUILD_DIR)) and path.endswith(".so"), path


def test_compiled_runs_have_the_pure_traces(compiled):
    pure = figures()
    assert compiled["runs"] == pure
    assert len({v[0] for v in pure.values()}) == len(RUNS)  # three different histories


def test_compiled_replays_have_the_pure_digests(compiled):
    # the wire form (msgpack encode and decode), loss, duplication, a crash and
    # a restart from nodes.conf
    assert compiled["digests"] == [_digest(42), _digest(7)]


def test_without_a_compiler_the_error_says_so(tmp_path):
    done = _python(["-m", "tests.sim_scale", "--nodes", "4", "--compiled", "--no-hugepages",
                    "--build-dir", str(tmp_path)], CC="/nonexistent/cc")
    assert done.returncode == 2
    assert "sim_scale --compiled: --compiled needs a C compiler: '/nonexistent/cc' not found" in done.stderr
    assert "Traceback" not in done.stderr and not list(tmp_path.iterdir())


def test_not_after_the_pure_form_is_imported():
    # this process runs the pure form: the compiled one cannot replace it
    with pytest.raises(sim_scale.CompileError, match="already imported"):
        sim_scale.use_compiled()
