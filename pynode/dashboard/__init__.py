"""`pynode dashboard`: a web page and a Prometheus endpoint for a whole cluster.

A separate program that talks to the nodes over RESP like any client (it never
imports the node's internals): poller.py reads CLUSTER NODES / CLUSTER INFO / INFO
from every node, state.py turns those replies into a snapshot and the event log,
metrics.py renders snapshots as Prometheus metrics, actions.py runs the operator's
actions (chaos.py the chaos ones, through pynode.chaos and its log), app.py is the aiohttp app serving static/ and the JSON/SSE API.
"""
