# Latentcord on an NVIDIA GPU. Build: docker build -t latentcord .   Run: see compose.yaml.
# A plain Python image is enough: PyTorch's CUDA wheels bring their own CUDA runtime, cuBLAS and cuDNN (as
# nvidia-* wheels). Only the driver comes from the host: the NVIDIA container toolkit mounts it when the
# container is given a GPU. The image runs the torch that CI tests (TORCH_VERSION), in its CUDA 13.0 build
# (TORCH_INDEX), which needs an NVIDIA driver of the R580 series or newer on the host.
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
# The torchvision built for that torch (spandrel, the upscalers' loader, imports it).
ARG TORCHVISION_VERSION=0.28.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu130

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    # What the NVIDIA container toolkit mounts from the driver: CUDA (compute) and nvidia-smi (utility).
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    # The database and images live in /app/data, model files in /cache: two volumes, never the image.
    # compose.yaml sets these again under `environment:`, so a .env written for a checkout cannot move them.
    DATABASE_PATH=/app/data/bot.sqlite3 \
    IMAGES_DIR=/app/data/images \
    FINETUNES_DIR=/app/data/finetunes \
    HF_HOME=/cache/huggingface \
    MODEL_CACHE_DIR=/cache/latentcord

# SD_COMPILE=auto compiles the UNet with Triton, which builds a small C launcher per kernel at run time:
# it needs a C compiler. What it compiles is cached under MODEL_CACHE_DIR (the /cache volume).
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv

WORKDIR /app

# Dependencies first, so code changes do not reinstall torch. torch and its torchvision are pinned first, in one
# call from PyTorch's CUDA 13.0 index, so that `pip install .` (whose ranges admit newer releases) keeps the
# versions CI tests and torchvision's compiled ops match torch's build.
COPY pyproject.toml README.md ./
RUN pip install "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" --index-url "${TORCH_INDEX}" \
    && mkdir -p bot cogs models db && touch bot/__init__.py cogs/__init__.py models/__init__.py db/__init__.py \
    && pip install . \
    && pip uninstall -y latentcord

COPY bot ./bot
COPY cogs ./cogs
COPY models ./models
COPY db ./db
RUN pip install --no-deps .

RUN useradd --create-home --uid 10001 latentcord \
    && mkdir -p /app/data /cache /finetunes \
    && chown -R latentcord:latentcord /app/data /cache /finetunes
USER latentcord

VOLUME ["/app/data", "/cache"]

# Prometheus metrics on /metrics and the health check on /healthz (bot/observability), on every address of the
# container: another container (Prometheus) scrapes it; publish the port only on a private network. A .env or
# compose may move them; METRICS_PORT set empty turns both off (and the health check below then passes).
ENV METRICS_PORT=9464 \
    METRICS_HOST=0.0.0.0
EXPOSE 9464
# Healthy while the gateway is connected, SQLite answers and a worker is ready or starting (/healthz: 200, else
# 503). No curl in a slim image: Python's own urllib, whose HTTPError on a 503 exits 1. The start period covers a
# first start that downloads and loads a model before connecting.
HEALTHCHECK --interval=30s --timeout=10s --start-period=15m --retries=3 \
    CMD python -c "import os, sys, urllib.request as r; p = os.environ.get('METRICS_PORT'); sys.exit(bool(p) and r.urlopen(f'http://127.0.0.1:{p}/healthz', timeout=8).status != 200)"
CMD ["python", "-m", "bot"]
