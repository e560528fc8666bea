"""Chaos controls: network labs of hosts in namespaces (netlab), reversible
actions against nodes (control), and the `pynode chaos` command (cli)."""
