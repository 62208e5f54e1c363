"""Observability: metrics, one log line per request with its id, optional tracing."""
