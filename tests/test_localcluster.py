"""`python -m pynode.localcluster start|status|stop` on free ports in a temp dir:
the cluster forms, status says ok, data written through redis-cli -c survives a
stop and a restart (which must not form the cluster again), stop leaves no process.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from pynode.localcluster import pid_alive
from tests.cluster_helpers import backend, consecutive_free_ports, run
from tests.helpers import ROOT


def lc(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    try:
        return subprocess.run([sys.executable, "-m", "pynode.localcluster", *args], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(e.cmd, -9, str(e.stdout), str(e.stderr) + " [timeout]")


def pids(root: str) -> list[int]:
    out = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name, "node.pid")
        if os.path.isfile(path):
            with open(path) as fh:
                out.append(int(fh.read()))
    return out


def node_logs(root: str) -> str:
    parts = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name, "node.log")
        if os.path.isfile(path):
            with open(path, errors="replace") as fh:
                parts.append("== %s\n%s" % (name, "".join(fh.readlines()[-15:])))
    return "\n".join(parts)


@pytest.fixture
def cluster_dir():
    root = tempfile.mkdtemp(prefix="pynode-localcluster-")
    started: list[int] = []
    try:
        yield root, started
    finally:
        lc("stop", "--dir", root, timeout=60)
        for pid in started + pids(root):     # whatever stop left behind
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


def test_start_status_stop_restart(cluster_dir):
    root, started = cluster_dir
    base = consecutive_free_ports(6)
    server = "pynode" if backend() == "pynode" else "redis-server"
    res = lc("start", "--nodes", "6", "--replicas", "1", "--base-port", str(base),
             "--dir", root, "--server", server, "--node-timeout", "2000", "--timeout", "60",
             # a primary's SHUTDOWN need not wait for replicas still in their first sync
             "--set", "shutdown-timeout=1")
    started.extend(pids(root))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out + "\n" + node_logs(root)
    assert "forming the cluster" in out
    assert "redis-cli -c -p %d" % base in out
    assert len(started) == 6 and all(pid_alive(p) for p in started)
    for port in range(base, base + 6):
        assert os.path.isfile(os.path.join(root, str(port), "nodes-%d.conf" % port))

    # the printed hints run as printed (an absolute interpreter, no bare `python`)
    status = [ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("status:")]
    assert len(status) == 1 and status[0].startswith(shlex.quote(sys.executable)), out
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run(shlex.split(status[0]), env=env, capture_output=True, text=True,
                         timeout=60, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "cluster ok" in res.stdout
    rows = [ln.split() for ln in res.stdout.splitlines()[1:-1]]
    assert sorted(r[2] for r in rows) == ["master"] * 3 + ["slave"] * 3, res.stdout
    assert sum(int(r[4]) for r in rows) == 16384, res.stdout

    keys = ["foo", "bar", "hello", "{user1}:x"]
    for k in keys:
        w = run(["redis-cli", "-c", "-p", str(base), "set", k, "v-" + k], 20)
        assert w.stdout.strip() == "OK", w.stdout + w.stderr

    res = lc("stop", "--dir", root)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "data kept in %s" % root in res.stdout
    assert not any(pid_alive(p) for p in started)
    res = lc("status", "--dir", root)
    assert res.returncode == 1 and "NOT ok" in res.stdout

    # restart: the nodes come back from their nodes-<port>.conf and append-only files
    res = lc("start", "--dir", root, "--timeout", "60")
    started.extend(pids(root))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out + "\n" + node_logs(root)
    assert "already formed" in out and "forming the cluster" not in out, out
    for k in keys:
        g = run(["redis-cli", "-c", "-p", str(base + 1), "get", k], 20)
        assert g.stdout.strip() == "v-" + k, g.stdout + g.stderr
    res = lc("stop", "--dir", root)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not any(pid_alive(p) for p in pids(root) + started)


def test_errors_are_clear(cluster_dir):
    root, _ = cluster_dir
    res = lc("status", "--dir", os.path.join(root, "nothing-here"))
    assert res.returncode == 1
    assert "no cluster in" in res.stderr and "localcluster start" in res.stderr
    res = lc("start", "--nodes", "4", "--dir", root)
    assert res.returncode == 1 and "at least 3 primaries" in res.stderr, res.stderr
