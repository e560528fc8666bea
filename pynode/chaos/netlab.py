"""Hosts on one machine: network namespaces joined by a bridge, and real
partitions between their addresses.

A lab named N has a bridge ``N-br`` in the root namespace (address .1 of the
subnet, so programs in the root namespace reach every host) and hosts
``N-h1``, ``N-h2`` ... each a network namespace with an ``eth0`` (a veth pair
whose other end ``N-v<i>`` is on the bridge) holding one or more addresses:
host i's j-th address is ``<subnet>.<10 * i + j>`` (h1: .11, .12; h2: .21 ...),
so each node can have an address of its own and several nodes can share a host.

A partition is made of policy-routing rules of type blackhole (``ip rule add
from A to B blackhole``): in A's host the rule drops what A sends to B, in B's
host the same rule drops what arrives from A (input routing consults the rules
too). A symmetric partition adds both directions; a one-way partition only
A -> B. Nodes on the same host cannot be separated, as on real hosts. Nothing
here needs iptables or the netem qdisc.

The lab's state (hosts, addresses, rules in force) is a JSON file in
/run/pynode-chaos/<name>.json ($PYNODE_CHAOS_STATE_DIR overrides the
directory), so ``pynode chaos`` commands run later find it.
Needs root (CAP_NET_ADMIN); `available()` says whether this process can.

The functions that compute commands are pure; `run` executes them.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess

STATE_DIR = os.environ.get("PYNODE_CHAOS_STATE_DIR", "/run/pynode-chaos")
# interface names are at most 15 bytes: "<name>-v<i>" with i <= 99
NAME_MAX = 10


class NetLabError(Exception):
    pass


def run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                         stdin=subprocess.DEVNULL)
    if check and res.returncode != 0:
        raise NetLabError("%s: %s" % (" ".join(cmd), (res.stderr or res.stdout).strip()))
    return res


def available() -> str | None:
    """None when network namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN); run as root"
    try:
        res = run(["ip", "netns", "list"], check=False)
    except FileNotFoundError:
        return "the `ip` command (iproute2) is not installed: apt-get install iproute2"
    if res.returncode != 0:
        return "`ip netns` does not work here: %s" % res.stderr.strip()
    return None


def host_addr(subnet: str, host: int, index: int) -> str:
    """The index-th address (1-based) of host number `host` (1-based)."""
    if not 1 <= host <= 24 or not 1 <= index <= 9:
        raise NetLabError("hosts are numbered 1..24 with 1..9 addresses each")
    return "%s.%d" % (subnet, 10 * host + index)


def rule_cmds(ns: str, src: str, dst: str, add: bool) -> list[str]:
    return ["ip", "netns", "exec", ns, "ip", "rule", "add" if add else "del",
            "from", src, "to", dst, "blackhole"]


class NetLab:
    def __init__(self, name: str = "pynode", subnet: str = "10.77.0",
                 state_dir: str = STATE_DIR) -> None:
        if not name.replace("-", "").isalnum() or len(name) > NAME_MAX:
            raise NetLabError("a lab name is up to %d letters, digits or '-'" % NAME_MAX)
        try:
            net = ipaddress.ip_network(subnet + ".0/24")
        except ValueError:
            raise NetLabError("subnet must be the first three octets of an IPv4 /24, "
                              "e.g. 10.77.0") from None
        if not net.is_private:
            raise NetLabError("subnet %s is not a private range" % subnet)
        self.name = name
        self.subnet = subnet
        self.state_path = os.path.join(state_dir, name + ".json")
        self.bridge = name + "-br"
        # host name -> {"ns": ..., "veth": ..., "addrs": [...]}
        self.hosts: dict[str, dict] = {}
        # rules in force: [host, src, dst]
        self.rules: list[list[str]] = []

    # ------------------------------------------------------------------ state
    @classmethod
    def load(cls, name: str = "pynode", state_dir: str = STATE_DIR) -> "NetLab":
        path = os.path.join(state_dir, name + ".json")
        try:
            with open(path) as fh:
                st = json.load(fh)
        except OSError:
            raise NetLabError("no lab named %r (no %s): create one with "
                              "`pynode chaos net create`" % (name, path)) from None
        except ValueError as e:
            raise NetLabError("%s is damaged: %s" % (path, e)) from None
        lab = cls(name, st["subnet"], state_dir)
        lab.hosts = st["hosts"]
        lab.rules = st["rules"]
        return lab

    @classmethod
    def find_addr(cls, addr: str, state_dir: str = STATE_DIR) -> "NetLab | None":
        """The lab one of whose hosts has this address, if any."""
        try:
            names = sorted(os.listdir(state_dir))
        except OSError:
            return None
        for fn in names:
            if fn.endswith(".json"):
                try:
                    lab = cls.load(fn[:-5], state_dir)
                except NetLabError:
                    continue
                if lab.host_of(addr) is not None:
                    return lab
        return None

    def save(self) -> None:
        os.makedirs(os.path.dirname(self.state_path), exist_ok=True)
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump({"subnet": self.subnet, "hosts": self.hosts, "rules": self.rules}, fh,
                      indent=1)
        os.replace(tmp, self.state_path)

    def host_of(self, addr: str) -> str | None:
        for h, info in self.hosts.items():
            if addr in info["addrs"]:
                return h
        return None

    def gateway(self) -> str:
        return self.subnet + ".1"

    # ------------------------------------------------------------------ plan
    def create_cmds(self, hosts: int, addrs: int) -> list[list[str]]:
        br = self.bridge
        cmds = [["ip", "link", "add", br, "type", "bridge"],
                ["ip", "addr", "add", self.gateway() + "/24", "dev", br],
                ["ip", "link", "set", br, "up"]]
        for i in range(1, hosts + 1):
            ns, veth = "%s-h%d" % (self.name, i), "%s-v%d" % (self.name, i)
            cmds += [["ip", "netns", "add", ns],
                     ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0",
                      "netns", ns],
                     ["ip", "link", "set", veth, "master", br],
                     ["ip", "link", "set", veth, "up"]]
            for j in range(1, addrs + 1):
                cmds.append(["ip", "netns", "exec", ns, "ip", "addr", "add",
                             host_addr(self.subnet, i, j) + "/24", "dev", "eth0"])
            cmds += [["ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up"],
                     ["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"]]
            self.hosts["h%d" % i] = {"ns": ns, "veth": veth,
                                     "addrs": [host_addr(self.subnet, i, j)
                                               for j in range(1, addrs + 1)]}
        return cmds

    def partition_rules(self, a: list[str], b: list[str], one_way: bool) -> list[list[str]]:
        """[host, src, dst] rules that cut a -> b (and b -> a unless one_way)."""
        out: list[list[str]] = []
        pairs = [(x, y) for x in a for y in b]
        if not one_way:
            pairs += [(y, x) for x in a for y in b]
        for src, dst in pairs:
            hs, hd = self.host_of(src), self.host_of(dst)
            if hs is None or hd is None:
                raise NetLabError("%s is not an address of lab %r"
                                  % (src if hs is None else dst, self.name))
            if hs == hd:
                raise NetLabError("%s and %s are on the same host (%s): a partition "
                                  "separates hosts" % (src, dst, hs))
            for h in (hs, hd):       # dropped on the way out and on the way in
                r = [h, src, dst]
                if r not in out and r not in self.rules:
                    out.append(r)
        return out

    # ------------------------------------------------------------------ act
    def create(self, hosts: int, addrs: int = 1) -> None:
        if os.path.exists(self.state_path):
            raise NetLabError("lab %r exists (%s): destroy it first" % (self.name,
                                                                       self.state_path))
        if not 1 <= hosts <= 24:
            raise NetLabError("1..24 hosts")
        cmds = self.create_cmds(hosts, addrs)
        try:
            for c in cmds:
                run(c)
        except NetLabError:
            self.destroy()
            raise
        self.save()

    def destroy(self) -> None:
        for info in self.hosts.values():
            run(["ip", "netns", "del", info["ns"]], check=False)
            run(["ip", "link", "del", info["veth"]], check=False)
        run(["ip", "link", "del", self.bridge], check=False)
        try:
            os.unlink(self.state_path)
        except OSError:
            pass
        self.rules = []

    def exec_prefix(self, host: str) -> list[str]:
        if host not in self.hosts:
            raise NetLabError("no host %r in lab %r (hosts: %s)"
                              % (host, self.name, ", ".join(self.hosts)))
        return ["ip", "netns", "exec", self.hosts[host]["ns"]]

    def partition(self, a: list[str], b: list[str], one_way: bool = False) -> list[list[str]]:
        rules = self.partition_rules(a, b, one_way)
        for h, src, dst in rules:
            run(rule_cmds(self.hosts[h]["ns"], src, dst, True))
            self.rules.append([h, src, dst])
            self.save()
        return rules

    def heal(self, addrs: list[str] | None = None) -> list[list[str]]:
        """Remove the rules touching these addresses (all rules when None)."""
        gone = [r for r in self.rules if addrs is None or r[1] in addrs or r[2] in addrs]
        for r in gone:
            run(rule_cmds(self.hosts[r[0]]["ns"], r[1], r[2], False), check=False)
            self.rules.remove(r)
            self.save()
        return gone

    def describe(self) -> str:
        lines = ["lab %s: bridge %s (%s), state %s" % (self.name, self.bridge, self.gateway(),
                                                       self.state_path)]
        for h, info in self.hosts.items():
            lines.append("  %-4s %-14s %s" % (h, info["ns"], " ".join(info["addrs"])))
        for h, src, dst in self.rules:
            lines.append("  cut  %s -> %s (rule in %s)" % (src, dst, h))
        return "\n".join(lines)
