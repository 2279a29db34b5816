"""The hot path: the ASGI app, auth, request parsing, proxying and feedback intake."""
