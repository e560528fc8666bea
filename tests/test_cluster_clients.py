"""Node.js cluster clients against a 3+3 cluster: node-redis (`redis` createCluster)
and ioredis (`Cluster`) each write a key in every one of the 16384 slots and read
them back; the scripts in tests/node exit 0 only if every value matches.

The npm packages are pinned by tests/node/package-lock.json; install them with
`npm ci --prefix tests/node` (.ci/run does).  A missing install fails, never skips.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.cluster_helpers import Cluster, key_for_slot, run

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")
SCRIPTS = ["node_redis_cluster.js", "ioredis_cluster.js"]
PACKAGES = ["redis", "ioredis"]


def _require_node_modules() -> None:
    assert shutil.which("node"), "node (Node.js >= 20) is not installed: apt-get install nodejs npm"
    missing = [p for p in PACKAGES
               if not os.path.isfile(os.path.join(NODE_DIR, "node_modules", p, "package.json"))]
    assert not missing, ("npm packages %s are not installed in tests/node/node_modules: "
                         "run `npm ci --prefix tests/node`" % ", ".join(missing))


@pytest.fixture(scope="module")
def cluster():
    _require_node_modules()
    c = Cluster(primaries=3, replicas=1).up()
    try:
        yield c
    finally:
        c.cleanup()


@pytest.mark.parametrize("script", SCRIPTS)
def test_node_client_every_slot(cluster, script):
    # start from a node that is not the first, so discovery is exercised
    port = cluster.ports[1]
    res = run(["node", os.path.join(NODE_DIR, script), str(port)], timeout=90)
    out = res.stdout + res.stderr
    assert res.returncode == 0, "%s exited %d:\n%s\n%s" % (script, res.returncode, out,
                                                           cluster.diagnostics())
    assert "OK: 16384 slots written and read back" in res.stdout, out
    assert "3 masters discovered" in res.stdout, out
    # the values really are on the servers: spot-check through redis-py
    label = "node-redis" if script.startswith("node_redis") else "ioredis"
    rc = cluster.cluster_client()
    try:
        for slot in (0, 5460, 5461, 10922, 10923, 16383):
            assert rc.get(key_for_slot(slot)) == "%s:%d" % (label, slot)
    finally:
        rc.close()
