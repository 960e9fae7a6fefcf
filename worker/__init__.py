"""Loraplex worker: the Celery app and the trainer."""
