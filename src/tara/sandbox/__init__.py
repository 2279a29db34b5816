"""A local OpenAI-compatible upstream for development, tests, demos and benchmarks."""
