"""Start-up and shut-down of the `pynode` process: command line, config file,
log format, signals, SHUTDOWN, pidfile, daemonize, -v."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import redis

from tests.helpers import ROOT, Proc, free_port, wait_ping

LOG_LINE = re.compile(r"^\d+:[MSCX] \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2}\.\d{3} [.\-*#] ")
PYNODE = [sys.executable, "-m", "pynode"]


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    return e


def start(args: list[str], cwd, **kw) -> subprocess.Popen:
    return subprocess.Popen(PYNODE + args, cwd=cwd, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)


def stop(p: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 15.0):
    """Signal the process; return (exit code, stdout, stderr)."""
    p.send_signal(sig)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate(timeout=5)
        raise AssertionError("did not exit on %s:\n%s" % (sig, out.decode()))
    return p.returncode, out.decode(), err.decode()


def assert_log_format(text: str) -> list[str]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert lines
    for ln in lines:
        assert LOG_LINE.match(ln), "not a Redis log line: %r" % ln
    return lines


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ------------------------------------------------------------------ starting

def test_port_only(tmp_path):
    port = free_port()
    p = start(["--port", str(port)], tmp_path)
    try:
        wait_ping(port)
        c = redis.Redis(port=port, socket_timeout=10, decode_responses=True)
        assert c.config_get("port") == {"port": str(port)}
        assert c.set("a", "1") and c.get("a") == "1"
        assert c.config_get("dir")["dir"] == str(tmp_path)
        c.close()
    finally:
        rc, out, err = stop(p)
    assert rc == 0, err
    lines = assert_log_format(out)
    assert "Ready to accept connections" in out
    assert "Received SIGTERM scheduling shutdown..." in out
    assert lines[-1].endswith("is now ready to exit, bye bye...")
    assert "no config file specified" in out


def test_config_file_with_overrides(tmp_path):
    port = free_port()
    conf = os.path.join(ROOT, "conf", "7001.conf")
    p = start([conf, "--port", str(port), "--appendonly", "no", "--loglevel", "verbose"], tmp_path)
    try:
        wait_ping(port)
        c = redis.Redis(port=port, socket_timeout=10, decode_responses=True)
        assert c.config_get("port") == {"port": str(port)}               # override wins
        assert c.config_get("appendonly") == {"appendonly": "no"}
        assert c.config_get("loglevel") == {"loglevel": "verbose"}
        assert c.config_get("cluster-config-file") == {"cluster-config-file": "nodes-7001.conf"}
        assert c.config_get("cluster-node-timeout") == {"cluster-node-timeout": "5000"}
        assert c.config_get("appenddirname") == {"appenddirname": "appendonlydir-7001"}
        assert c.info("server")["config_file"] == conf
        c.close()
    finally:
        rc, out, err = stop(p, signal.SIGINT)
    assert rc == 0, err
    assert_log_format(out)
    assert "Configuration loaded" in out
    assert "Received SIGINT scheduling shutdown..." in out
    assert "ready to exit" in out
    assert not os.path.exists(tmp_path / "appendonlydir-7001")


def test_misspelled_directive(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("port 7000\n# comment\nappendonyl yes\n")
    r = subprocess.run(PYNODE + [str(conf)], cwd=tmp_path, env=env(), capture_output=True,
                       timeout=20)
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***" in err
    assert "at line 3" in err
    assert ">>> 'appendonyl yes'" in err
    assert "Bad directive or wrong number of arguments" in err
    theirs = subprocess.run(["redis-server", str(conf)], cwd=tmp_path, capture_output=True,
                            timeout=20)
    assert theirs.returncode == 1 and theirs.stderr.decode() == err


def test_bad_value(tmp_path):
    r = subprocess.run(PYNODE + ["--port", "abc"], cwd=tmp_path, env=env(),
                       capture_output=True, timeout=20)
    assert r.returncode == 1
    assert r.stderr.decode() == ("\n*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***\n"
                                 "Reading the configuration file, at line 2\n"
                                 ">>> 'port \"abc\"'\n"
                                 "argument couldn't be parsed into an integer\n")


def test_port_in_use(tmp_path):
    with Proc() as other:
        r = subprocess.run(PYNODE + ["--port", str(other.port), "--bind", "127.0.0.1"],
                           cwd=tmp_path, env=env(), capture_output=True, timeout=20)
        assert r.returncode == 1
        assert "Could not create server TCP listening socket" in r.stdout.decode()
        assert other.client().ping()


@pytest.mark.parametrize("flag", ["-v", "--version"])
def test_version(flag):
    r = subprocess.run(PYNODE + [flag], env=env(), capture_output=True, timeout=20)
    assert r.returncode == 0
    out = r.stdout.decode()
    assert re.match(r"^Redis server v=7\.0\.15 sha=\S+ malloc=\S+ bits=64 build=\S+\n$", out)
    theirs = subprocess.run(["redis-server", flag], capture_output=True, timeout=20)
    assert re.match(r"^Redis server v=7\.0\.15 sha=\S+ malloc=\S+ bits=64 build=\S+\n$",
                    theirs.stdout.decode())


def test_help():
    r = subprocess.run(PYNODE + ["-h"], env=env(), capture_output=True, timeout=20)
    assert r.returncode == 0 and r.stdout.decode().startswith("Usage: ")


# ------------------------------------------------------------------ stopping

def test_shutdown_command(tmp_path):
    port = free_port()
    pidfile = tmp_path / "node.pid"
    p = start(["--port", str(port), "--pidfile", str(pidfile), "--appendonly", "yes"], tmp_path)
    try:
        wait_ping(port)
        assert pidfile.read_text().strip() == str(p.pid)
        c = redis.Redis(port=port, socket_timeout=10)
        c.set("k", "v")
        try:
            c.shutdown()
        except redis.ConnectionError:
            pass
        out, err = p.communicate(timeout=15)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=5)
    assert p.returncode == 0, err
    text = out.decode()
    assert_log_format(text)
    assert "User requested shutdown..." in text
    assert "ready to exit" in text
    assert not pidfile.exists()
    # the AOF was flushed: a new node in the same dir has the key
    with Proc(["--appendonly", "yes"], workdir=str(tmp_path)) as again:
        assert again.client().get("k") == b"v"


def test_sigterm_removes_pidfile(tmp_path):
    port = free_port()
    pidfile = tmp_path / "sub" / "x.pid"
    pidfile.parent.mkdir()
    p = start(["--port", str(port), "--pidfile", str(pidfile)], tmp_path)
    try:
        wait_ping(port)
        assert int(pidfile.read_text()) == p.pid
    finally:
        rc, out, err = stop(p)
    assert rc == 0
    assert "Removing the pid file." in out
    assert not pidfile.exists()


def test_daemonize_with_logfile(tmp_path):
    port = free_port()
    logfile = tmp_path / "node.log"
    pidfile = tmp_path / "node.pid"
    r = subprocess.run(PYNODE + ["--port", str(port), "--bind", "127.0.0.1", "--daemonize", "yes",
                                 "--logfile", str(logfile), "--pidfile", str(pidfile)],
                       cwd=tmp_path, env=env(), capture_output=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b""               # the daemon writes to its log file only
    pid = None
    try:
        wait_ping(port)
        deadline = time.monotonic() + 10
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        pid = int(pidfile.read_text())
        assert alive(pid)
        c = redis.Redis(port=port, socket_timeout=10)
        assert c.config_get("daemonize") == {"daemonize": "yes"}
        assert c.set("d", "1")
        try:
            c.shutdown()
        except redis.ConnectionError:
            pass
        deadline = time.monotonic() + 15
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid)
    finally:
        if pid is not None and alive(pid):
            os.kill(pid, signal.SIGKILL)
    text = logfile.read_text()
    assert_log_format(text)
    assert "Ready to accept connections" in text
    assert "ready to exit" in text
    assert not pidfile.exists()


def test_console_script_entry_point():
    """`pynode` (pyproject's console script) points at pynode.main:main."""
    from pynode.main import main
    assert main(["-v"]) == 0
    import tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        meta = tomllib.load(fh)
    assert meta["project"]["scripts"]["pynode"] == "pynode.main:main"


def test_always_show_logo_prints_the_pid_line():
    """always-show-logo yes: the banner with "PID: <pid>" that supervisors and
    Redis's test harness read; without it, the "Running mode" line."""
    import re as _re
    for show in ("yes", "no"):
        p = Proc(["--always-show-logo", show]).start()
        try:
            text = p.log()
            m = _re.search(r"PID: (\d+)", text)
            if show == "yes":
                assert m and int(m.group(1)) == p.proc.pid, text
                assert "Port: %d" % p.port in text and "Running in standalone mode" in text
            else:
                assert m is None and "Running mode=standalone, port=%d." % p.port in text
        finally:
            p.cleanup()
