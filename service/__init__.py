"""Loraplex service: HTTP API, registry, task types and the serving engine."""
