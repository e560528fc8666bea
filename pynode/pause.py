"""Client pauses, one per purpose, as Redis's pauseClients/unpauseClients.

`srv.pause` is a Pause.  Each purpose (CLIENT PAUSE, a failover, a shutdown
handing its slots over) holds its own (type, end); what clients see is the
most restrictive type in force and its latest end, recomputed whenever a
purpose starts, ends or expires (updateClientPauseTypeAndEndTime).  So
CLIENT UNPAUSE ends the operator's pause only, and a failover ending does
not end an operator's CLIENT PAUSE.

Clients parked by a pause (`clients`) run again whenever the pause becomes
less restrictive (they are checked again and may be parked again).
"""

from __future__ import annotations

OFF, WRITE, ALL = 0, 1, 2

# pause purposes (Redis's pause_purpose)
CLIENT_COMMAND = "client-command"   # CLIENT PAUSE
SHUTDOWN = "shutdown"               # SHUTDOWN FAILOVER's handover
FAILOVER = "failover"               # FAILOVER, a cluster manual failover
MIGRATION = "migration"             # an atomic slot migration's flip (its slots only)


class Pause:
    def __init__(self) -> None:
        self.purposes: dict[str, list] = {}   # purpose -> [type, end (monotonic s)]
        self.type = OFF
        self.end = 0.0          # 0.0 while no pause is in force (the clients' fast test)
        self.clients: set = set()             # clients parked by the pause

    def pause(self, purpose: str, end: float, ptype: int, now: float) -> None:
        """pauseClients: a purpose's pause merges with its own earlier one
        (the more restrictive type, the later end)."""
        p = self.purposes.get(purpose)
        if p is None or p[1] <= now:
            self.purposes[purpose] = [ptype, end]
        else:
            p[0] = max(p[0], ptype)
            p[1] = max(p[1], end)
        self.update(now)

    def unpause(self, purpose: str, now: float) -> None:
        """unpauseClients: end one purpose's pause."""
        if self.purposes.pop(purpose, None) is not None:
            self.update(now)

    def active(self, purpose: str, now: float) -> bool:
        p = self.purposes.get(purpose)
        return p is not None and p[1] > now

    def update(self, now: float) -> None:
        """Drop expired purposes; the type is the most restrictive in force,
        the end that type's latest; clients resume if the type loosened."""
        old = self.type
        ptype, end = OFF, 0.0
        for purpose, (t, e) in list(self.purposes.items()):
            if e <= now:
                del self.purposes[purpose]
            elif t > ptype:
                ptype, end = t, e
            elif t == ptype:
                end = max(end, e)
        self.type = ptype
        self.end = end
        if ptype < old:
            self.resume_all()

    def resume_all(self) -> None:
        clients = list(self.clients)
        self.clients.clear()
        for c in clients:
            c.resume()

    def discard(self, c) -> None:
        self.clients.discard(c)
