"""Enqueueing with the broker down: requests never fail, per-image sends back off after one
failure (one connection timeout per upload, not one per image), explicit actions always retry."""
from __future__ import annotations

import logging

from backend import queue
from backend.services import embedding_jobs


def test_broker_down_backs_off_for_bulk_sends_only(api, caplog, monkeypatch):
    monkeypatch.setattr(embedding_jobs, "_down_until", {})
    api.settings.broker_url = "redis://127.0.0.1:1/0"  # nothing listens there
    caplog.set_level(logging.WARNING, logger=embedding_jobs.__name__)
    assert [embedding_jobs.enqueue_image_embedding(i, 1) for i in range(4)] == [None] * 4
    errors = [r for r in caplog.records if "could not enqueue" in r.getMessage()]
    skipped = [r for r in caplog.records if "not sending" in r.getMessage()]
    assert len(errors) == 1 and len(skipped) == 3
    # A round or job start is an explicit action: it tries the broker again.
    assert embedding_jobs.try_enqueue(queue.TRAIN_ROUND, round_id=7) is None
    assert len([r for r in caplog.records if "could not enqueue" in r.getMessage()]) == 2
    # Once the broker is reachable again (here: the embedded one), sends go through.
    monkeypatch.setattr(embedding_jobs, "_down_until", {})
    api.settings.broker_url = f"sqla+sqlite:///{api.settings.resolved_data_dir / 'broker.db'}"
    assert embedding_jobs.enqueue_image_embedding(5, 1) is not None
