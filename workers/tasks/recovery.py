"""Re-send interrupted work when a worker starts on the SQLAlchemy (embedded) broker.

kombu's SQLAlchemy transport marks a message invisible when a worker takes it and never makes it
visible again if that worker is killed, so ``acks_late`` alone cannot redeliver it. The embedded
setup runs one worker, so at its start every job or round the database still shows as
``queued`` or ``running`` may have lost its message: its task is sent again (the tasks are
resumable, and a second delivery of a finished job or round is a no-op),
and each project with images lacking an embedding of its active model gets an ``embed_project``.
Redis needs none of this: unacknowledged messages come back after the visibility timeout.
"""
from __future__ import annotations

import logging

import sqlalchemy as sa

from backend.queue import AUTOMATIC_BATCH, EMBED_PROJECT, EXPORT_DATASET, PREFILL_SEMI_AUTO, TRAIN_ROUND
from workers.engine import db
from workers.tasks.common import engine, t

logger = logging.getLogger(__name__)
JOB_TASKS = {"prefill": PREFILL_SEMI_AUTO, "semi_auto": PREFILL_SEMI_AUTO, "automatic": AUTOMATIC_BATCH,
             "export": EXPORT_DATASET}


def resend_interrupted() -> list[tuple[str, int]]:
    """Send again the tasks of running jobs/rounds and of projects with unembedded images.

    Returns the (task name, id) pairs sent.
    """
    from workers.celery_app import app

    sent: list[tuple[str, int]] = []
    eng = engine()
    with db.transaction(eng) as conn:
        names = set(sa.inspect(conn).get_table_names())
        if not {"jobs", "rounds", "images", "projects", "embeddings"} <= names:
            logger.info("recovery: the database has no schema yet")
            return sent
        jobs, rounds = t("jobs"), t("rounds")
        for job in conn.execute(sa.select(jobs.c.id, jobs.c.kind).where(jobs.c.status.in_(("queued", "running")))):
            task = JOB_TASKS.get(str(job.kind))
            if task:
                sent.append((task, job.id))
        for rnd in conn.execute(sa.select(rounds.c.id).where(rounds.c.status.in_(("queued", "running")))):
            sent.append((TRAIN_ROUND, rnd.id))
        images, emb, projects = t("images"), t("embeddings"), t("projects")
        q = (sa.select(projects.c.id).where(projects.c.active_model_version_id.is_not(None)).where(
            sa.exists(sa.select(images.c.id).where(
                images.c.project_id == projects.c.id,
                ~sa.exists(sa.select(emb.c.id).where(emb.c.image_id == images.c.id,
                                                     emb.c.model_version_id == projects.c.active_model_version_id))))))
        sent += [(EMBED_PROJECT, p.id) for p in conn.execute(q)]
    for task, row_id in sent:
        key = "round_id" if task == TRAIN_ROUND else "project_id" if task == EMBED_PROJECT else "job_id"
        app.send_task(task, kwargs={key: row_id})
        logger.warning("recovery: re-sent %s(%s=%s)", task, key, row_id)
    return sent
