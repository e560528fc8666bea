"""lists: value type (to be filled)."""
