"""The data: keyspace, value types, AOF and durable file writes (no networking)."""
