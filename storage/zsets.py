"""zsets: value type (to be filled)."""
