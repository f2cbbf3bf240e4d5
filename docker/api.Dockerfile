# Maskloop API: FastAPI + Alembic migrations, no torch (the workers do all model work).
# Build from the repository root:  docker build -f docker/api.Dockerfile -t maskloop-api .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    MASKLOOP_DATA_DIR=/data

WORKDIR /app
# Editable install: the CLI finds alembic.ini, migrations/ and models/ next to the package (/app).
COPY pyproject.toml README.md alembic.ini ./
COPY backend ./backend
COPY workers ./workers
COPY migrations ./migrations
RUN pip install --upgrade pip && pip install -e .
# The shipped default model (model.pt + decoder.onnx) registered by `maskloop migrate`.
COPY models ./models
ENV MASKLOOP_DEFAULT_MODEL_DIR=/app/models/default

RUN useradd --create-home --uid 1000 maskloop && mkdir -p /data && chown maskloop /data
USER maskloop
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --retries=5 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/v1/health', timeout=4)"
CMD ["sh", "-c", "maskloop migrate && exec maskloop api --host 0.0.0.0 --port 8000"]
