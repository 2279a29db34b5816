"""When to fine-tune: trigger rules evaluated over telemetry."""
