"""outboxkit plugin."""
