"""`pynode dashboard`: the aiohttp app (page, JSON/SSE API, actions, /metrics).

    pynode dashboard --cluster host:port [--cluster ...] [--port 8080] [--bind 127.0.0.1]
                     [--read-only] [--password-file F | --web-password P]
                     [-a PASSWORD] [--user USER] [--interval 1.0] [--chaos-log F]

The page is static/index.html (vanilla JS, no build step, nothing from the
internet); it reads /api/state once and then /api/events (server-sent events: one
`state` event per poll round with the new log entries).  With a page password a
login form sets an HttpOnly session cookie; /metrics also takes the page password
as HTTP basic auth (any user name) for Prometheus.  The nodes' password stays in
this process: no reply of the app contains it.  Actions are POSTs with a custom
header (a cross-site form cannot send it) and are refused in read-only mode.
Chaos actions (chaos.py) write to the same log as `pynode chaos` (--chaos-log,
default ./pynode-chaos.log or $PYNODE_CHAOS_LOG); the page shows that log.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hmac
import json
import os
import secrets
import signal
import sys
import time

from aiohttp import web

from pynode.chaos.control import DEFAULT_LOG
from pynode.dashboard.actions import ActionError, Actions
from pynode.dashboard.chaos import ChaosPanel
from pynode.dashboard.metrics import NodeHealthCollector, registry_for, render
from pynode.dashboard.poller import Poller

STATIC = os.path.join(os.path.dirname(__file__), "static")
COOKIE = "pynode_dashboard"
ACTION_HEADER = "X-Pynode-Dashboard"
SESSION_TTL = 12 * 3600
BRIEF_INFO = ("redis_version", "uptime_in_seconds", "used_memory_human", "role",
              "master_link_status", "slave_repl_offset", "master_repl_offset",
              "connected_slaves", "total_commands_processed", "aof_enabled", "loading")


def page_view(snap: dict | None) -> dict | None:
    """The snapshot without the raw INFO text (the page gets a few fields)."""
    if snap is None:
        return None
    nodes = []
    for n in snap["nodes"]:
        m = {k: v for k, v in n.items() if k not in ("info", "cluster_info", "latency",
                                                     "migrations", "slot_keys")}
        m["info"] = {k: n["info"][k] for k in BRIEF_INFO if k in (n.get("info") or {})}
        ci = n.get("cluster_info") or {}
        m["cluster_state"] = ci.get("cluster_state")
        m["current_epoch"] = ci.get("cluster_current_epoch")
        nodes.append(m)
    return dict(snap, nodes=nodes)


class Dashboard:
    def __init__(self, poller: Poller, read_only: bool = False,
                 web_password: str | None = None, chaos_log: str = DEFAULT_LOG) -> None:
        self.poller = poller
        self.chaos = ChaosPanel(poller, chaos_log)
        self.actions = Actions(poller, extra=self.chaos.handlers())
        self.read_only = read_only
        self.web_password = web_password
        self.sessions: dict[str, float] = {}
        self.registry = registry_for(poller)
        self.registry.register(NodeHealthCollector(poller))

    # -- authentication -------------------------------------------------------

    def _authed(self, request: web.Request) -> bool:
        if not self.web_password:
            return True
        token = request.cookies.get(COOKIE)
        now = time.time()
        if token and self.sessions.get(token, 0) > now:
            return True
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                _, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return hmac.compare_digest(pw.encode(), self.web_password.encode())
        return False

    @web.middleware
    async def guard(self, request: web.Request, handler):
        if request.path in ("/login", "/static/style.css") or self._authed(request):
            resp = await handler(request)
        elif request.path == "/metrics":
            resp = web.Response(status=401, text="authentication required\n",
                                headers={"WWW-Authenticate": 'Basic realm="pynode"'})
        elif request.path.startswith("/api/"):
            resp = web.json_response({"error": "login required"}, status=401)
        else:
            raise web.HTTPFound("/login")
        resp.headers.setdefault("Cache-Control", "no-store")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        return resp

    async def login_page(self, request: web.Request) -> web.Response:
        return web.FileResponse(os.path.join(STATIC, "login.html"))

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        pw = str(form.get("password", ""))
        if not self.web_password or not hmac.compare_digest(pw.encode(),
                                                            self.web_password.encode()):
            await asyncio.sleep(0.5)        # slow down guessing
            raise web.HTTPFound("/login?failed=1")
        token = secrets.token_urlsafe(32)
        now = time.time()
        self.sessions = {t: e for t, e in self.sessions.items() if e > now}
        self.sessions[token] = now + SESSION_TTL
        resp = web.HTTPFound("/")
        resp.set_cookie(COOKIE, token, httponly=True, samesite="Strict", max_age=SESSION_TTL)
        raise resp

    async def logout(self, request: web.Request) -> web.Response:
        self.sessions.pop(request.cookies.get(COOKIE, ""), None)
        resp = web.HTTPFound("/login")
        resp.del_cookie(COOKIE)
        raise resp

    # -- pages and API ------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        return web.FileResponse(os.path.join(STATIC, "index.html"))

    def _state(self, events) -> dict:
        return {"snapshot": page_view(self.poller.snapshot), "events": list(events),
                "read_only": self.read_only, "login": bool(self.web_password),
                "chaos": self.chaos.view()}

    async def api_state(self, request: web.Request) -> web.Response:
        return web.json_response(self._state(self.poller.events))

    async def api_events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store"})
        await resp.prepare(request)
        q = self.poller.subscribe()
        try:
            first = self._state(self.poller.events)
            await resp.write(b"event: state\ndata: %s\n\n" % json.dumps(first).encode())
            while True:
                try:
                    item = await asyncio.wait_for(q.get(), 15)
                except asyncio.TimeoutError:
                    await resp.write(b": keep-alive\n\n")
                    continue
                if item is None:        # shutting down
                    break
                snap, events = item
                body = {"snapshot": page_view(snap), "events": events,
                        "read_only": self.read_only, "chaos": self.chaos.view()}
                await resp.write(b"event: update\ndata: %s\n\n" % json.dumps(body).encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.poller.unsubscribe(q)
        return resp

    async def api_action(self, request: web.Request) -> web.Response:
        if self.read_only:
            return web.json_response({"error": "the dashboard is read-only"}, status=403)
        if request.headers.get(ACTION_HEADER) != "1":
            return web.json_response({"error": "missing %s header" % ACTION_HEADER},
                                     status=403)
        try:
            params = await request.json()
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"error": "the body must be JSON"}, status=400)
        if not isinstance(params, dict):
            return web.json_response({"error": "the body must be a JSON object"}, status=400)
        name = request.match_info["name"]
        try:
            result = await self.actions.run(name, params)
        except ActionError as e:
            self._log("action-failed", "%s failed: %s" % (name, e))
            return web.json_response({"error": str(e)}, status=400)
        self._log("action", "%s %s: %s" % (name, json.dumps(params, sort_keys=True),
                                           result["output"].strip().splitlines()[-1:]))
        return web.json_response(result)

    def _log(self, kind: str, text: str) -> None:
        p = self.poller
        p.event_seq += 1
        p.events.append({"id": p.event_seq, "time": time.time(), "kind": kind,
                         "node": None, "text": text})

    async def metrics(self, request: web.Request) -> web.Response:
        body = render(self.registry)
        return web.Response(body=body, headers={
            "Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard])
        app.router.add_get("/", self.index)
        app.router.add_get("/login", self.login_page)
        app.router.add_post("/login", self.login)
        app.router.add_post("/logout", self.logout)
        app.router.add_get("/api/state", self.api_state)
        app.router.add_get("/api/events", self.api_events)
        app.router.add_post("/api/action/{name}", self.api_action)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_static("/static/", STATIC)
        return app


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pynode dashboard",
                                 description="A web dashboard and /metrics for a cluster.")
    ap.add_argument("--cluster", action="append", required=True, metavar="HOST:PORT",
                    help="a node of the cluster (repeat for more seeds)")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--read-only", action="store_true", help="no actions")
    pw = ap.add_mutually_exclusive_group()
    pw.add_argument("--password-file", help="the page password: first line of this file")
    pw.add_argument("--web-password", help="the page password")
    ap.add_argument("-a", "--auth", default=os.environ.get("REDISCLI_AUTH"),
                    help="the nodes' password (default $REDISCLI_AUTH)")
    ap.add_argument("--user", help="the nodes' ACL user")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    ap.add_argument("--timeout", type=float, default=2.0, help="per-command timeout")
    ap.add_argument("--chaos-log", default=DEFAULT_LOG,
                    help="the chaos action log shared with `pynode chaos` "
                    "(default ./pynode-chaos.log)")
    return ap


def _seed(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError("--cluster wants host:port, not %r" % text)
    return host, int(port)


async def serve(args) -> None:
    web_password = args.web_password
    if args.password_file:
        with open(args.password_file, encoding="utf-8") as f:
            web_password = f.readline().rstrip("\r\n")
        if not web_password:
            raise ValueError("%s: empty password" % args.password_file)
    if args.bind not in ("127.0.0.1", "::1", "localhost") and not web_password \
            and not args.read_only:
        sys.stderr.write("pynode dashboard: warning: listening on %s with actions enabled and "
                         "no page password (--password-file or --read-only)\n" % args.bind)
    poller = Poller([_seed(s) for s in args.cluster], password=args.auth, user=args.user,
                    interval=args.interval, timeout=args.timeout)
    dash = Dashboard(poller, read_only=args.read_only, web_password=web_password,
                     chaos_log=args.chaos_log)
    runner = web.AppRunner(dash.app(), access_log=None, handle_signals=False,
                             shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, args.bind, args.port)
    await site.start()
    poller.start()
    print("pynode dashboard on http://%s:%d/ watching %s%s" % (
        args.bind, args.port, ", ".join(args.cluster),
        " (read-only)" if args.read_only else ""), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await poller.stop()
    poller.close_listeners()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        asyncio.run(serve(args))
    except (ValueError, OSError) as e:
        sys.stderr.write("pynode dashboard: %s\n" % e)
        return 1
    return 0
