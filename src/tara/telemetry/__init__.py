"""What was observed: Prometheus metrics, window stats and the interaction log."""
