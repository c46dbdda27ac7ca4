"""What operators read: logs (and, as they come, metrics and status)."""
