"""Library functions the Celery tasks call: image loading, model cache, embedding, automatic
masks (prefill and full batch), retraining-round orchestration and the database helpers.

Everything here is plain Python callable without Celery, so it is tested directly.
"""
