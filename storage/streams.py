"""streams: value type (to be filled)."""
