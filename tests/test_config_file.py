"""redis.conf loading (pynode/config.py): unit tests of the loader and
process-level tests comparing the start-up errors with redis-server 7.0."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pynode.config import ConfigError, _repr, config_text_from_argv, load_config
from pynode.config_table import DIRECTIVES, FILE_ONLY, OWN
from tests.helpers import ROOT, Proc, free_port

CONF_DIR = os.path.join(ROOT, "conf")


def default_conf_text() -> str:
    """A config file setting every Redis 7.0 directive to its default value."""
    lines = []
    for d in DIRECTIVES.values():
        if d.name in FILE_ONLY or d.name in OWN:
            continue
        if d.name == "dir":
            lines.append("dir .")
        elif d.name == "replicaof":
            lines.append("replicaof no one")
        elif d.multi_arg:
            lines.append("%s %s" % (d.name, d.default or '""'))
        else:
            lines.append("%s %s" % (d.name, _repr(d.default.encode())))
    return "\n".join(lines) + "\n"


def load_text(tmp_path, text: str, *extra: str):
    path = tmp_path / "t.conf"
    path.write_text(text)
    return load_config([str(path), *extra])


@pytest.fixture(autouse=True)
def keep_cwd():
    """`dir` chdirs the process: restore the working directory after each test."""
    cwd = os.getcwd()
    yield
    os.chdir(cwd)


# ------------------------------------------------------------------ unit

def test_every_directive_at_its_default_is_accepted(tmp_path):
    os.chdir(tmp_path)
    cfg = load_text(tmp_path, default_conf_text())
    for d in DIRECTIVES.values():
        if d.name in FILE_ONLY or d.name in ("dir", "replicaof"):
            continue
        assert cfg.values[d.name] == d.default, d.name
    assert cfg.values["dir"] == str(tmp_path)
    assert len(cfg.set_in_file) >= len(DIRECTIVES) - len(FILE_ONLY) - len(OWN)


def test_file_only_directives_and_deprecated_ones(tmp_path):
    inc = tmp_path / "inc.conf"
    inc.write_text("maxclients 123\n")
    text = ("include %s\nrename-command get get2\nrename-command flushall \"\"\n"
            "user alice on >pw ~* +@all\nloadmodule /nonexistent/mod.so a b\n"
            "list-max-ziplist-entries 5\nlist-max-ziplist-value 64\n"
            "lua-replicate-commands yes\nsentinel\n" % inc)
    cfg = load_text(tmp_path, text)
    assert cfg.int("maxclients") == 123
    assert cfg.renamed == {"get": "get2", "flushall": ""}


@pytest.mark.parametrize("line,msg", [
    ("prot 7000", "Bad directive or wrong number of arguments"),
    ("port abc", "argument couldn't be parsed into an integer"),
    ("port 1 2", "wrong number of arguments"),
    ("port", "wrong number of arguments"),
    ("slaveof", "wrong number of arguments"),
    ("appendonly maybe", "argument must be 'yes' or 'no'"),
    ('logfile "abc', "Unbalanced quotes in configuration line"),
    ("maxmemory 10xb", "argument must be a memory value"),
    ("loglevel loud", "argument(s) must be one of the following: debug, verbose, notice, warning"),
    ("save 900", "Invalid save parameters"),
    ("include", "Bad directive or wrong number of arguments"),
    ("rename-command get", "Bad directive or wrong number of arguments"),
    ("rename-command nosuch x", "No such command in rename-command"),
    ("user", "Bad directive or wrong number of arguments"),
    ("loadmodule", "Bad directive or wrong number of arguments"),
    ("list-max-ziplist-entries", "Bad directive or wrong number of arguments"),
    ("mymodule.opt", "Module config specified without value"),
    ("sentinel monitor x", "sentinel directive while not in sentinel mode"),
    ("client-output-buffer-limit normal 0 0", "Wrong number of arguments in buffer limit configuration."),
])
def test_errors(tmp_path, line, msg):
    with pytest.raises(ConfigError) as ei:
        load_text(tmp_path, "# comment\n\n  %s  \nport 1\n" % line)
    e = ei.value
    assert (e.line_no, e.line, e.msg) == (3, line, msg)
    assert e.report() == ("\n*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***\n"
                          "Reading the configuration file, at line 3\n>>> '%s'\n%s\n" % (line, msg))


def test_options_come_after_the_file_and_win(tmp_path):
    cfg = load_text(tmp_path, "port 7000\nmaxclients 10\n", "--port", "7777", "--maxclients", "20")
    assert cfg.int("port") == 7777 and cfg.int("maxclients") == 20
    assert cfg.config_file == str(tmp_path / "t.conf")
    # an option error is reported after an empty line, as Redis numbers it
    with pytest.raises(ConfigError) as ei:
        load_text(tmp_path, "port 7000\n", "--port", "abc")
    assert (ei.value.line_no, ei.value.line) == (3, 'port "abc"')
    with pytest.raises(ConfigError) as ei:
        load_config(["--maxclients", "1", "--port", "1", "2"])
    assert (ei.value.line_no, ei.value.line) == (3, 'port "1" "2"')


def test_save_lines_accumulate_and_empty_save_clears(tmp_path):
    cfg = load_text(tmp_path, "save 900 1\nsave 300 10\n")
    assert cfg.get("save") == "900 1 300 10"
    assert load_text(tmp_path, "save 900 1\n", "--save", "").get("save") == ""
    assert load_text(tmp_path, 'save ""\n').get("save") == ""
    assert load_text(tmp_path, "save \"60 5\"\n").get("save") == "60 5"


def test_argv_to_options_like_redis_main():
    assert config_text_from_argv(["--port", "1"]) == (None, False, 'port "1" ')
    assert config_text_from_argv(["x.conf", "--save", "--port", "2", "-"]) == \
        ("x.conf", True, 'save ""\nport "2" ')
    assert config_text_from_argv(["--save"]) == (None, False, 'save ""')
    assert config_text_from_argv(["--port 5", "--bind", "a", "b"]) == \
        (None, False, 'port 5 \nbind "a" "b" ')
    assert config_text_from_argv(["-"]) == (None, True, "")
    assert _repr(b'a"b\\c\n\x01 ') == '"a\\"b\\\\c\\n\\x01 "'


def test_quoted_values_round_trip(tmp_path):
    cfg = load_text(tmp_path, 'requirepass "a b\\x41\\"q"\nlogfile \'x y.log\'\n')
    assert cfg.get("requirepass") == 'a bA"q'
    assert cfg.get("logfile") == "x y.log"
    cfg = load_config(["--requirepass", 'sp ace"\\'])
    assert cfg.get("requirepass") == 'sp ace"\\'


def test_sample_cluster_confs_load(tmp_path):
    for i in range(6):
        port = 7000 + i
        os.chdir(tmp_path)
        cfg = load_config([os.path.join(CONF_DIR, "%d.conf" % port)])
        assert cfg.int("port") == port
        assert cfg.get("cluster-enabled") == "yes"
        assert cfg.get("cluster-config-file") == "nodes-%d.conf" % port
        assert cfg.int("cluster-node-timeout") == 5000
        assert cfg.get("appendonly") == "yes"
        assert cfg.get("appendfilename") == "appendonly-%d.aof" % port
        assert cfg.get("appenddirname") == "appendonlydir-%d" % port
        assert cfg.get("dir") == str(tmp_path)
        assert cfg.get("logfile") == ""


# ------------------------------------------------------------------ processes

def run_server(exe: list[str], args: list[str], cwd, timeout: float = 20.0):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(exe + args, cwd=cwd, env=env, capture_output=True, timeout=timeout)


PYNODE = [sys.executable, "-m", "pynode"]
REDIS = ["redis-server"]

BAD_FILES = [
    "prot 7000",
    "port abc",
    "port 1 2",
    "appendonly maybe",
    'logfile "abc',
    "rename-command nosuch x",
    "mymodule.opt",
    "cluster-node-timeout -5",
    "bind 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17",
]


@pytest.mark.parametrize("line", BAD_FILES)
def test_bad_config_file_stops_like_redis(tmp_path, line):
    conf = tmp_path / "bad.conf"
    conf.write_text("# a comment\nsave \"\"\n\n%s\nport 1\n" % line)
    port = str(free_port())
    mine = run_server(PYNODE, [str(conf), "--port", port], tmp_path)
    theirs = run_server(REDIS, [str(conf), "--port", port], tmp_path)
    assert mine.returncode == theirs.returncode == 1
    assert mine.stderr == theirs.stderr
    err = mine.stderr.decode()
    assert "*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***" in err
    assert "at line 4" in err
    assert ">>> '%s'" % line in err


@pytest.mark.parametrize("args", [
    ["--port", "abc"],
    ["--port", "1", "extra"],
    ["--prot", "5"],
    ["--port"],
    ["CONF", "CONF"],
    ["CONF", "--maxmemory", "lots"],
])
def test_bad_command_line_like_redis(tmp_path, args):
    conf = tmp_path / "ok.conf"
    conf.write_text('save ""\n')
    args = [str(conf) if a == "CONF" else a for a in args]
    mine = run_server(PYNODE, args, tmp_path)
    theirs = run_server(REDIS, args, tmp_path)
    assert mine.returncode == theirs.returncode == 1
    assert mine.stderr == theirs.stderr
    assert b"*** FATAL CONFIG FILE ERROR (Redis 7.0.15) ***" in mine.stderr


def test_missing_config_file_like_redis(tmp_path):
    mine = run_server(PYNODE, [str(tmp_path / "nope.conf")], tmp_path)
    theirs = run_server(REDIS, [str(tmp_path / "nope.conf")], tmp_path)
    assert mine.returncode == theirs.returncode == 1
    msg = b"# Fatal error, can't open config file '%s': No such file or directory\n" % (
        str(tmp_path / "nope.conf").encode())
    assert mine.stdout.endswith(msg) and theirs.stdout.endswith(msg)


def test_every_directive_accepted_by_a_running_node(tmp_path):
    text = default_conf_text()
    # redis-server accepts the very same file
    for redis_server in (True, False):
        p = Proc(conf_text=text, redis_server=redis_server,
                 workdir=str(tmp_path / ("r" if redis_server else "p")))
        os.makedirs(p.dir)
        p.start()
        try:
            c = p.client()
            assert c.ping()
            assert c.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
            assert c.config_get("hz")["hz"] == "10"
        finally:
            p.stop()
        log = p.log()
        if not redis_server:
            marker = "have no effect yet: "
            assert log.count(marker) == 1, log
            inert = log.split(marker, 1)[1].splitlines()[0].split(", ")
            assert "activerehashing" in inert and "port" not in inert
            assert len(inert) == len(set(inert))


def test_sample_cluster_conf_starts_with_redis_and_pynode(tmp_path):
    text = open(os.path.join(CONF_DIR, "7000.conf")).read()
    for redis_server in (True, False):
        p = Proc(conf_text=text, redis_server=redis_server,
                 workdir=str(tmp_path / ("r" if redis_server else "p")))
        os.makedirs(p.dir)
        p.start()
        try:
            c = p.client()
            got = c.config_get("cluster-*")
            assert got["cluster-enabled"] == "yes"
            assert got["cluster-config-file"] == "nodes-7000.conf"
            assert got["cluster-node-timeout"] == "5000"
            assert c.config_get("port")["port"] == str(p.port)   # --port wins
            assert c.config_get("appendfilename")["appendfilename"] == "appendonly-7000.aof"
            assert c.ping()   # (no slots assigned yet: Redis answers CLUSTERDOWN to SET)
        finally:
            p.stop()
        assert p.proc.returncode == 0
        assert os.path.isdir(os.path.join(p.dir, "appendonlydir-7000")), os.listdir(p.dir)
