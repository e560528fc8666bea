"""hashes: value type (to be filled)."""
