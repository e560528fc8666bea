"""sets: value type (to be filled)."""
