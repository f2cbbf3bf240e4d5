# Maskloop GPU worker: Celery consuming the `gpu` queue (embeddings, automatic masks, prefill, training).
# Build from the repository root:  docker build -f docker/worker.Dockerfile -t maskloop-worker .
# Needs the NVIDIA container toolkit on the host (compose reserves one GPU per worker).
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MASKLOOP_DATA_DIR=/data \
    MASKLOOP_DEVICE=auto

# Python 3.11 from the deadsnakes PPA (Ubuntu 24.04 ships 3.12).
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common gpg-agent ca-certificates curl \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv /venv
ENV PATH=/venv/bin:$PATH

WORKDIR /app
# torch first, pinned (the PyPI Linux wheel bundles its CUDA libraries; its own layer: it is the big one).
RUN pip install --upgrade pip && pip install torch==2.13.0
COPY pyproject.toml README.md alembic.ini ./
COPY backend ./backend
COPY workers ./workers
COPY migrations ./migrations
RUN pip install -e ".[worker]"
COPY models ./models
ENV MASKLOOP_DEFAULT_MODEL_DIR=/app/models/default

RUN useradd --create-home --uid 1000 maskloop && mkdir -p /data && chown maskloop /data
USER maskloop
# One process per GPU: the model stays loaded between tasks.
CMD ["celery", "-A", "workers.celery_app:app", "worker", "-Q", "gpu", "--concurrency", "1", \
     "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
