"""Error classes that decide how a task ends: bad input fails at once, transient errors retry."""
from __future__ import annotations


class BadInputError(ValueError):
    """The input itself is wrong (missing/corrupt image, too large, model that does not load,
    empty snapshot): retrying cannot help, the task records the message and fails."""


def transient_errors() -> tuple[type[BaseException], ...]:
    """Exceptions worth retrying with backoff: lost DB or broker connections."""
    import sqlalchemy.exc as sa_exc

    errors: list[type[BaseException]] = [sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError,
                                         ConnectionError, TimeoutError]
    try:
        import redis.exceptions as redis_exc

        errors += [redis_exc.ConnectionError, redis_exc.TimeoutError]
    except ImportError:  # pragma: no cover - redis is installed with the workers
        pass
    try:
        import kombu.exceptions as kombu_exc

        errors.append(kombu_exc.OperationalError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)
