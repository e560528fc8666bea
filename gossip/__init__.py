"""The cluster bus: message codec, cluster state machine, nodes.conf, transport."""
