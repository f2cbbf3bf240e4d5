"""Celery tasks of Maskloop (names in ``backend.queue``); thin wrappers over ``workers.engine``."""
from workers.tasks import automatic, embed, export, rounds  # noqa: F401 - registers the tasks
