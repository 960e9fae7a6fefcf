"""Errors raised by the serving engine.

ServingError
├── TaskNotFound (LookupError)     no task of that name
├── TaskNotReady                   the task has no live adapter version yet
├── AdapterIncompatible (ValueError)  the delta was trained on another base model
└── AdapterCorrupt (ValueError)    the stored bytes fail their sha256 or do not parse
"""


class ServingError(Exception):
    """Base class of the serving engine's errors."""


class TaskNotFound(ServingError, LookupError):
    """Raised when no task has the requested name."""


class TaskNotReady(ServingError):
    """Raised when a task exists but no adapter version is live yet."""


class AdapterIncompatible(ServingError, ValueError):
    """Raised when a delta's base fingerprint differs from the loaded base model's."""


class AdapterCorrupt(ServingError, ValueError):
    """Raised when a stored delta fails its checksum or cannot be parsed."""
