"""tests/sim_scale.py's two orders: the steady measurement in a forked child
from the formed state (the default) gives the figures of the sequential run."""

import os
import time

import pytest

from tests import sim_scale


@pytest.fixture(scope="module")
def both():
    quiet = lambda *a: None  # noqa: E731
    return (sim_scale.run(24, 3, 15000, 4, out=quiet),
            sim_scale.run(24, 3, 15000, 4, out=quiet, sequential=True))


def test_the_child_measures_what_the_sequential_run_does(both):
    forked, sequential = both
    for key in ("msgs_per_node_s", "bytes_per_node_s", "pings_per_node_s"):
        assert forked[key] == sequential[key] > 0
    assert forked["steady"][1] == sequential["steady"][1] == 4.0
    assert forked["child_cpu_s"] > 0 and forked["memory"]["child"]["Rss"] > 0


def test_the_failover_starts_right_after_forming(both):
    forked, sequential = both
    # the parent's history lacks the 4 steady seconds: another trace, 4 s sooner
    assert forked["trace"] != sequential["trace"]
    assert forked["form"][1] == sequential["form"][1]
    end = lambda f: f["form"][1] + f["failover"][1] + f["rejoin"][1]  # noqa: E731
    assert forked["virtual_s"] == pytest.approx(end(forked))
    assert sequential["virtual_s"] == pytest.approx(end(sequential) + 4.0)
    for f in both:
        assert 1.0 <= f["failover_node_timeouts"] < 2.0


def test_a_failing_child_is_reported():
    def work(lines):
        lines.append("half done")
        raise AssertionError("seed 3: two primaries serve slot 7")
    with pytest.raises(SystemExit, match="half done\nsteady-state child: AssertionError: seed 3: two"):
        sim_scale._Child(work).result()


def test_a_failure_in_this_process_ends_the_child():
    child = sim_scale._Child(lambda lines: time.sleep(60) or {})
    t0 = time.monotonic()
    child.stop()
    assert time.monotonic() - t0 < 10
    with pytest.raises(ChildProcessError):
        os.waitpid(child.pid, os.WNOHANG)  # reaped
