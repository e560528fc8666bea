"""srv.pubsub: who listens to what (the commands are in commands/pubsub.py).

  channels        channel -> the clients subscribed to it (SUBSCRIBE)
  patterns        pattern -> its clients (PSUBSCRIBE)
  shard_channels  shard channel -> its clients (SSUBSCRIBE)
  shard_slots     slot -> its shard channels, so that a slot leaving this
                  node's shard drops its channels
"""

from __future__ import annotations


class PubSub:
    def __init__(self) -> None:
        self.channels: dict[bytes, set] = {}
        self.patterns: dict[bytes, set] = {}
        self.shard_channels: dict[bytes, set] = {}
        self.shard_slots: dict[int, set[bytes]] = {}
