"""Start real pynode / redis-server processes on free loopback ports for tests."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import hiredis
import redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    """A free TCP port whose +10000 bus port is free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535:
            continue
        try:
            with socket.socket() as s2:
                s2.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair found")


def wait_ping(port: int, timeout: float = 30.0, password: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            r = redis.Redis(host="127.0.0.1", port=port, password=password,
                            socket_timeout=1)
            r.ping()
            r.close()
            return
        except redis.AuthenticationError:
            return
        except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
            last = e
            time.sleep(0.05)
    raise TimeoutError("server on port %d did not answer PING: %r" % (port, last))


class Proc:
    """A pynode (or redis-server) process in its own temporary directory."""

    #: every Proc that made its own directory: what a test stopped without
    #: cleanup() (to start it again, or on a failure path) goes at exit
    made: list["Proc"] = []

    def __init__(self, args: list[str] | None = None, redis_server: bool = False,
                 port: int | None = None, workdir: str | None = None,
                 conf_text: str | None = None, check_invariants: bool = True) -> None:
        self.port = port or free_port()
        self.own_dir = workdir is None
        self.dir = workdir or tempfile.mkdtemp(prefix="pynode-test-")
        self.redis_server = redis_server
        self.args = list(args or [])
        self.conf_text = conf_text
        # pynode's cron asserts its invariants (the suite); off: as deployed (benchmarks)
        self.check_invariants = check_invariants
        self.proc: subprocess.Popen | None = None
        self.logpath = os.path.join(self.dir, "server-%d.log" % self.port)
        if self.own_dir:
            Proc.made.append(self)

    def command(self) -> list[str]:
        if self.redis_server:
            base = ["redis-server"]
        else:
            base = [sys.executable, "-m", "pynode"]
        conf = []
        if self.conf_text is not None:
            path = os.path.join(self.dir, "test-%d.conf" % self.port)
            with open(path, "w") as fh:
                fh.write(self.conf_text)
            conf = [path]
        return base + conf + ["--port", str(self.port), "--bind", "127.0.0.1",
                              "--dir", self.dir, "--save", ""] + self.args

    def start(self, wait: bool = True, password: str | None = None) -> "Proc":
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        if self.check_invariants:
            env["PYNODE_CHECK_INVARIANTS"] = "1"     # the cron asserts pynode's invariants
        else:
            env.pop("PYNODE_CHECK_INVARIANTS", None)
        self.logfh = open(self.logpath, "ab")
        self.proc = subprocess.Popen(self.command(), cwd=self.dir, env=env,
                                     stdout=self.logfh, stderr=subprocess.STDOUT)
        if wait:
            try:
                wait_ping(self.port, password=password)
            except TimeoutError:
                self.stop()
                raise AssertionError("server did not start:\n" + self.log())
            except BaseException:
                self.stop()              # never leave a process behind
                raise
        return self

    def client(self, **kw) -> redis.Redis:
        kw.setdefault("socket_timeout", 10)
        return redis.Redis(host="127.0.0.1", port=self.port, **kw)

    def log(self) -> str:
        try:
            with open(self.logpath, "rb") as fh:
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_exit(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
        if getattr(self, "logfh", None):
            self.logfh.close()

    def cleanup(self) -> None:
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Proc":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()


@atexit.register
def _remove_what_procs_left() -> None:
    """At the test process's exit: the processes still running and the
    directories of every Proc that made its own."""
    for p in Proc.made:
        p.stop()
        shutil.rmtree(p.dir, ignore_errors=True)


def wait_until(fn, timeout=10.0, what="condition"):
    """Poll fn (bounded) until it returns something true; returns that."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            v = fn()
            if v:
                return v
        except (redis.ConnectionError, redis.ResponseError) as e:
            last = e
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s (%r)" % (what, last))


def enc(*args) -> bytes:
    """A command as a RESP multibulk request."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def raw_command(port: int, payload: bytes, timeout: float = 5.0, read_until_close: bool = False,
                replies: int | None = None) -> bytes:
    """Send raw bytes and return what the server answers: until `replies` whole
    replies have arrived when that is given (hiredis counts them), else until the
    connection is idle for 0.3 s or closed."""
    reader = hiredis.Reader()
    got = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        chunks = []
        deadline = time.monotonic() + timeout
        s.settimeout(0.3 if not read_until_close and replies is None else timeout)
        while time.monotonic() < deadline:
            try:
                data = s.recv(65536)
            except socket.timeout:
                if read_until_close:
                    continue
                break
            if not data:
                break
            chunks.append(data)
            if replies is not None:
                reader.feed(data)
                while reader.gets() is not False:
                    got += 1
                if got >= replies:
                    break
        return b"".join(chunks)


def ping_ok(port: int, timeout: float = 0.5) -> bool:
    """PONG within timeout (one try: a client library's retries would stretch it)."""
    try:
        return raw_command(port, enc("PING"), timeout=timeout, replies=1) == b"+PONG\r\n"
    except OSError:
        return False


class ChaosCli:
    """`pynode chaos --log LOG ...` as a subprocess (this worktree's code)."""

    def __init__(self, log: str, state_dir: str | None = None) -> None:
        self.log = log
        self.env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get(
            "PYTHONPATH", ""))
        if state_dir:
            self.env["PYNODE_CHAOS_STATE_DIR"] = state_dir

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        res = subprocess.run([sys.executable, "-m", "pynode", "chaos", "--log", self.log,
                              *args], env=self.env, capture_output=True, text=True,
                             timeout=60, stdin=subprocess.DEVNULL)
        if ok:
            assert res.returncode == 0, res.stdout + res.stderr
        return res

    def entries(self) -> list[dict]:
        with open(self.log) as fh:
            return [json.loads(ln) for ln in fh]
