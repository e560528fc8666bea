"""FAILOVER (standalone coordinated failover) between real processes, its
errors byte-for-byte against redis-server 7.0.15, and LOLWUT."""

from __future__ import annotations

import pytest

from tests.compare import mismatches
from tests.helpers import Proc, raw_command, enc, wait_until


def _info(c) -> dict:
    return c.info("replication")


def _pair(redis_server: bool):
    primary = Proc(redis_server=redis_server).start()
    replica = Proc(["--replicaof", "127.0.0.1", str(primary.port)],
                   redis_server=redis_server).start()
    p = primary.client()
    wait_until(lambda: _info(p)["connected_slaves"] == 1
               and _info(p)["slave0"]["state"] == "online", 15, "replica online")
    p.close()
    return primary, replica


@pytest.fixture(scope="module")
def pairs():
    made = []
    try:
        for rs in (False, True):
            made.append(_pair(rs))
        yield made
    finally:
        for pr in made:
            for proc in pr:
                proc.cleanup()


ERRORS_NO_REPLICA = [
    "FAILOVER ABORT",
    "FAILOVER TIMEOUT 0",
    "FAILOVER TIMEOUT -5",
    "FAILOVER TIMEOUT abc",
    "FAILOVER TIMEOUT 10 TIMEOUT 20",
    "FAILOVER TO 127.0.0.1",
    "FAILOVER TO 127.0.0.1 notaport",
    "FAILOVER TO 127.0.0.1 1 TO 127.0.0.1 2",
    "FAILOVER FORCE FORCE",
    "FAILOVER foo",
    "FAILOVER ABORT TIMEOUT 10",
    "FAILOVER",
    "FAILOVER FORCE",
    "FAILOVER TIMEOUT 100 FORCE",
]


def test_errors_without_replicas_match_redis():
    mine = Proc().start()
    ref = Proc(redis_server=True).start()
    try:
        assert mismatches([mine.port, ref.port], ERRORS_NO_REPLICA) == []
    finally:
        mine.cleanup()
        ref.cleanup()


def test_errors_with_a_replica_match_redis(pairs):
    script = ["FAILOVER FORCE", "FAILOVER TIMEOUT 100 FORCE", "FAILOVER TO 127.0.0.1 1",
              "FAILOVER TO 127.0.0.1 1 FORCE", "FAILOVER TO 127.0.0.1 1 TIMEOUT 10 FORCE",
              "FAILOVER ABORT"]
    assert mismatches([pairs[0][0].port, pairs[1][0].port], script) == []
    # on the replica
    assert mismatches([pairs[0][1].port, pairs[1][1].port], ["FAILOVER", "FAILOVER ABORT"]) == []


def test_cluster_mode_refuses():
    p = Proc(["--cluster-enabled", "yes"]).start()
    try:
        assert raw_command(p.port, enc("FAILOVER"), replies=1) == \
            b"-ERR FAILOVER not allowed in cluster mode.\r\n"
    finally:
        p.cleanup()


def _roles_swapped(old, new) -> bool:
    return (_info(new)["role"] == "master" and _info(old)["role"] == "slave"
            and _info(old)["master_link_status"] == "up")


@pytest.mark.parametrize("args", [[], ["TO", "127.0.0.1", None], ["TIMEOUT", "5000"]])
def test_failover_swaps_roles_and_keeps_data(args):
    primary, replica = _pair(False)
    try:
        p, r = primary.client(), replica.client()
        for i in range(50):
            p.set("k%d" % i, i)
        argv = [a if a is not None else str(replica.port) for a in args]
        assert p.execute_command("FAILOVER", *argv) == b"OK"
        assert _info(p)["master_failover_state"] in ("waiting-for-sync", "failover-in-progress",
                                                     "no-failover")
        wait_until(lambda: _roles_swapped(primary.client(), r), 15, "roles swapped")
        assert _info(p)["master_failover_state"] == "no-failover"
        assert _info(p)["master_port"] == replica.port
        # the data written before is on the new primary; writes go on there
        assert r.dbsize() == 50 and r.get("k49") == b"49"
        r.set("after", "yes")
        wait_until(lambda: p.get("after") == b"yes", 10, "new write replicated back")
        with pytest.raises(Exception, match="read only replica"):
            p.set("x", 1)
        assert "failover request" in replica.log()
        p.close()
        r.close()
    finally:
        primary.cleanup()
        replica.cleanup()


@pytest.mark.parametrize("primary_is_redis", [False, True])
def test_failover_between_pynode_and_redis_server(primary_is_redis):
    """PSYNC ... FAILOVER is understood both ways: a pynode primary hands its
    role to a redis-server replica, and a redis-server primary to pynode."""
    primary = Proc(redis_server=primary_is_redis).start()
    replica = Proc(["--replicaof", "127.0.0.1", str(primary.port)],
                   redis_server=not primary_is_redis).start()
    try:
        p, r = primary.client(), replica.client()
        wait_until(lambda: _info(p).get("slave0", {}).get("state") == "online", 15,
                   "replica online")
        p.set("a", 1)
        assert p.execute_command("FAILOVER") == b"OK"
        wait_until(lambda: _roles_swapped(primary.client(), r), 15, "roles swapped")
        assert r.get("a") == b"1" and _info(p)["master_failover_state"] == "no-failover"
        p.close()
        r.close()
    finally:
        primary.cleanup()
        replica.cleanup()


def test_abort_and_timeout_without_force():
    primary, replica = _pair(False)
    try:
        p = primary.client()
        # a replica that never acks: stop it so it cannot catch up
        import signal
        replica.proc.send_signal(signal.SIGSTOP)
        try:
            p.set("a", 1)
            assert p.execute_command("FAILOVER", "TO", "127.0.0.1", str(replica.port)) == b"OK"
            assert _info(p)["master_failover_state"] == "waiting-for-sync"
            # writes wait while failing over; reads answer
            assert p.get("a") == b"1"
            assert raw_command(primary.port, enc("FAILOVER"), replies=1) == \
                b"-ERR FAILOVER already in progress.\r\n"
            assert p.execute_command("FAILOVER", "ABORT") == b"OK"
            assert _info(p)["master_failover_state"] == "no-failover"
            assert p.set("b", 2) and _info(p)["role"] == "master"
            # TIMEOUT without FORCE: gives up and stays primary
            assert p.execute_command("FAILOVER", "TIMEOUT", "300") == b"OK"
            wait_until(lambda: _info(p)["master_failover_state"] == "no-failover", 10,
                       "timeout")
            assert _info(p)["role"] == "master" and p.set("c", 3)
            assert "Replica never caught up before timeout" in primary.log()
        finally:
            replica.proc.send_signal(signal.SIGCONT)
        p.close()
    finally:
        primary.cleanup()
        replica.cleanup()


def test_paused_write_runs_after_failover():
    """A write sent while waiting is held, then answered READONLY by the
    new replica, as Redis does when the pause ends."""
    primary, replica = _pair(False)
    try:
        import signal
        import socket
        p = primary.client()
        replica.proc.send_signal(signal.SIGSTOP)
        try:
            assert p.execute_command("FAILOVER", "TO", "127.0.0.1", str(replica.port),
                                     "TIMEOUT", "500", "FORCE") == b"OK"
            s = socket.create_connection(("127.0.0.1", primary.port), timeout=10)
            s.sendall(enc("SET", "held", "1"))
            s.settimeout(0.2)
            with pytest.raises(socket.timeout):
                s.recv(100)              # held while waiting for the replica
        finally:
            replica.proc.send_signal(signal.SIGCONT)
        # FORCE after the timeout: fails over even though the replica lagged
        r = replica.client()
        wait_until(lambda: _roles_swapped(primary.client(), r), 15, "forced failover")
        s.settimeout(10)
        assert s.recv(100).startswith(b"-READONLY")
        s.close()
        p.close()
        r.close()
    finally:
        primary.cleanup()
        replica.cleanup()


def test_target_refuses_wrong_replid():
    p = Proc().start()
    try:
        assert raw_command(p.port, enc("PSYNC", "0" * 40, "1", "FAILOVER"), replies=1) == \
            b"-ERR PSYNC FAILOVER replid must match my replid.\r\n"
    finally:
        p.cleanup()


# ---------------------------------------------------------------- LOLWUT
LOLWUT_SAME = [
    "LOLWUT",
    "LOLWUT VERSION 7",
    "LOLWUT VERSION 4",
    "LOLWUT VERSION -1",
    "LOLWUT VERSION 59",
    "LOLWUT VERSION x",
    "LOLWUT VERSION",
    "LOLWUT foo bar",
    # Schotter with one or two rows of squares draws nothing at random
    "LOLWUT VERSION 5 66 8 2",
    "LOLWUT VERSION 5 1 1 1",
    "LOLWUT VERSION 5 10 3 1",
    "LOLWUT VERSION 5 100 20 2",
    "LOLWUT VERSION 5 0 0 0",
    "LOLWUT VERSION 5 5000 500 1",
    "LOLWUT VERSION 5 abc",
    "LOLWUT VERSION 5 10 abc",
]


@pytest.mark.parametrize("resp", [2, 3])
def test_lolwut_matches_redis(resp):
    mine = Proc().start()
    ref = Proc(redis_server=True).start()
    try:
        assert mismatches([mine.port, ref.port], LOLWUT_SAME, resp) == []
        # the random rows: same size and trailer, a braille picture
        for proc in (mine, ref):
            c = proc.client()
            text = c.execute_command("LOLWUT", "VERSION", "5").decode()
            lines = text.split("\n")
            assert lines[-2] == "Georg Nees - schotter, plotter on paper, 1968. Redis ver. 7.0.15"
            # 66 columns: a 132 px canvas, squares of 16 px, 12 rows + padding = 196 px
            assert len(lines) == 196 // 4 + 3
            assert all(len(x) == 66 and all(0x2800 <= ord(ch) <= 0x28FF for ch in x)
                       for x in lines[:-3])
            c.close()
    finally:
        mine.cleanup()
        ref.cleanup()
