"""HTTP API of the service: the FastAPI app, its dependencies and its routes."""
