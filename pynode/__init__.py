"""pynode: a Redis Cluster node in Python."""
