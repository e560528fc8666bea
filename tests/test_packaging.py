"""`pip install .` from a checkout gives a working pynode: every module and
data file is in the wheel, and the installed copy runs away from the source tree."""

import os
import subprocess
import sys
import tempfile
import zipfile
import shutil

from tests.helpers import ROOT


def test_wheel_has_every_module_and_runs_installed():
    tmp = tempfile.mkdtemp(prefix="pynode-wheel-")
    try:
        # copy the tracked files only: a clean checkout, no build/ or egg-info left over
        files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                               check=True, timeout=30).stdout.split()
        src = os.path.join(tmp, "src")
        for f in files:
            os.makedirs(os.path.dirname(os.path.join(src, f)), exist_ok=True)
            if os.path.isfile(os.path.join(ROOT, f)):
                shutil.copy2(os.path.join(ROOT, f), os.path.join(src, f))
        res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                              "--disable-pip-version-check", "-w", os.path.join(tmp, "dist"),
                              src], capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
        wheel = [f for f in os.listdir(os.path.join(tmp, "dist")) if f.endswith(".whl")]
        assert len(wheel) == 1, wheel
        with zipfile.ZipFile(os.path.join(tmp, "dist", wheel[0])) as z:
            names = set(z.namelist())
        want = {f for f in files if f.split("/")[0] in ("pynode", "gossip", "storage")
                and (f.endswith(".py") or f.endswith(".lua") or "/static/" in f)}
        assert "pynode/dashboard/static/index.html" in want
        assert want and sorted(want - names) == []

        target = os.path.join(tmp, "site")
        res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                              "--disable-pip-version-check", "--target", target,
                              os.path.join(tmp, "dist", wheel[0])],
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
        # the installed copy, not the checkout: run from elsewhere with only it on the path
        env = dict(os.environ, PYTHONPATH=target)
        res = subprocess.run([sys.executable, "-c",
                              "import pynode.main, pynode.scripting.engine as e, sys;"
                              "print(pynode.main.__file__);"
                              "sys.argv=['pynode','--version'];pynode.main.main()"],
                             cwd=tmp, env=env, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stdout + res.stderr
        first, version = res.stdout.splitlines()[:2]
        assert first.startswith(target), first
        assert version.startswith("Redis server v=7.0.15"), version
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
