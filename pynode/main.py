"""`pynode [config-file] [--directive value ...]`: start a node, as redis-server does."""

from __future__ import annotations

import asyncio
import os
import sys

from pynode.config import ACTIVE, VERSION, ConfigError, load_config
from pynode.log import log

USAGE = """Usage: pynode [/path/to/redis.conf] [options] [-]
       pynode - (read config from stdin)
       pynode -v or --version
       pynode -h or --help
       pynode chaos ... (break nodes on purpose: pynode chaos --help)
       pynode proxy --port P --cluster host:port [--cluster host:port ...]
                    [--read-from-replicas] (a proxy for plain clients)
       pynode dashboard --cluster host:port ... (web page + /metrics: pynode dashboard --help)
       pynode rebalance|migrate ... (atomic slot migration: pynode rebalance --help)

Examples:
       pynode (run the server with default config)
       pynode /etc/redis/6379.conf
       pynode --port 7777
       pynode --port 7777 --replicaof 127.0.0.1 8888
       pynode /etc/myredis.conf --loglevel verbose -
       pynode /etc/myredis.conf --loglevel verbose
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "chaos":
        from pynode.chaos.cli import main as chaos_main
        return chaos_main(argv[1:])
    if argv and argv[0] == "proxy":
        from pynode.proxy import main as proxy_main
        return proxy_main(argv[1:])
    if argv and argv[0] == "dashboard":
        from pynode.dashboard.app import main as dashboard_main
        return dashboard_main(argv[1:])
    if argv and argv[0] in ("rebalance", "migrate"):
        from pynode.rebalance import main as rebalance_main
        return rebalance_main(argv)
    if argv and argv[0] in ("-v", "--version"):
        print("Redis server v=%s sha=00000000:0 malloc=libc bits=64 build=pynode" % VERSION)
        return 0
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    try:
        cfg = load_config(argv)
    except ConfigError as e:
        if e.line_no == 0:      # a file that cannot be opened: a log line, as Redis
            log.role = "C"
            log.warning(e.msg)
            log.role = "M"
        else:
            sys.stderr.write(e.report())
        return 1
    if cfg.bool("daemonize"):
        from pynode.children import daemonize
        daemonize()
    log.configure(cfg.get("loglevel"), cfg.get("logfile"))
    log.notice("oO0OoO0OoO0Oo pynode is starting oO0OoO0OoO0Oo")
    log.notice("pynode version=%s (Redis %s compatible), bits=64, pid=%d, just started"
               % (_pkg_version(), VERSION, os.getpid()))
    if cfg.config_file:
        log.notice("Configuration loaded")
    else:
        log.warning("Warning: no config file specified, using the default config. In order "
                    "to specify a config file use pynode /path/to/redis.conf")
    if cfg.module_configs:
        log.warning("Module Configuration detected without loadmodule directive or no "
                    "ApplyConfig call: aborting")
        return 1
    inert = [n for n in cfg.set_in_file if n not in ACTIVE]
    if inert:
        log.notice("These directives are accepted and shown by CONFIG GET but have no "
                   "effect yet: %s" % ", ".join(inert))
    pidfile = cfg.get("pidfile")
    if cfg.bool("daemonize") and not pidfile:
        pidfile = "/var/run/redis_%d.pid" % cfg.int("port")
        cfg.values["pidfile"] = pidfile
    if pidfile:
        try:
            with open(pidfile, "w") as fh:
                fh.write("%d\n" % os.getpid())
        except OSError as e:
            log.warning("Failed to write PID file: %s" % e.strerror)
    try:
        import uvloop
        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        pass
    from pynode.server import Server
    server = Server(cfg)
    from pynode.commands.acl import load_at_startup
    if not load_at_startup(server):
        return 1
    import gc
    gc.collect()
    gc.freeze()
    try:
        server.load_data()
    except Exception as e:  # a damaged file stops start-up with the reason
        from storage.aof import AOFError
        if isinstance(e, AOFError):
            log.warning(str(e))
            return 1
        raise
    try:
        return asyncio.run(server.start()) or 0
    except SystemExit as e:
        return int(e.code or 0)


def _pkg_version() -> str:
    try:
        from importlib.metadata import version
        return version("pynode")
    except Exception:
        return "0"


if __name__ == "__main__":
    sys.exit(main())
