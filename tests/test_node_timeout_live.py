"""CONFIG SET cluster-node-timeout applies at once, as in Redis: a node whose
timeout is lowered from 15 s to 1 s marks a stopped peer PFAIL within a few
seconds (with the start-up value it would wait 15 s); redis-server 7.0 too."""

from __future__ import annotations

import signal
import time

import pytest

from tests.cluster_helpers import Cluster


@pytest.mark.parametrize("server", ["pynode", "redis"])
def test_config_set_node_timeout_applies_live(server):
    c = Cluster(primaries=3, replicas=0, node_timeout=15000, server=server).up()
    try:
        a, b = c.nodes[0], c.nodes[1]
        assert a.call("CONFIG", "SET", "cluster-node-timeout", "1000") in (b"OK", "OK", True)
        r = a.client(decode_responses=True)
        assert r.config_get("cluster-node-timeout") == {"cluster-node-timeout": "1000"}
        r.close()
        b_id = next(n["id"] for n in b.nodes() if "myself" in n["flags"])
        b.proc.proc.send_signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            flags: set = set()
            while time.monotonic() - t0 < 8:
                flags = next(n["flags"] for n in a.nodes() if n["id"] == b_id)
                if flags & {"fail?", "fail"}:
                    break
                time.sleep(0.1)
            assert flags & {"fail?", "fail"}, flags
        finally:
            b.proc.proc.send_signal(signal.SIGCONT)
        # the other node kept 15 s: it has not marked b on its own
        c3 = next(n["flags"] for n in c.nodes[2].nodes() if n["id"] == b_id)
        assert "fail?" not in c3, c3
    finally:
        c.cleanup()
