# Latentcord on an NVIDIA GPU. Build: docker build -t latentcord .   Run: see compose.yaml.
# The CUDA runtime comes from the PyTorch wheel (it bundles CUDA and cuDNN); the base image only needs the
# driver libraries, which the NVIDIA container toolkit mounts at run time.
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    # Model downloads live in a volume, never in the image.
    HF_HOME=/cache/huggingface \
    DATABASE_PATH=/app/data/bot.sqlite3 \
    IMAGES_DIR=/app/data/images \
    MODEL_CACHE_DIR=/cache/latentcord

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

WORKDIR /app

# Dependencies first, so code changes do not reinstall torch.
COPY pyproject.toml README.md ./
RUN mkdir -p bot cogs models db && touch bot/__init__.py cogs/__init__.py models/__init__.py db/__init__.py \
    && pip install --index-url https://download.pytorch.org/whl/cu128 --extra-index-url https://pypi.org/simple "torch>=2.4,<2.15" \
    && pip install . \
    && pip uninstall -y latentcord

COPY bot ./bot
COPY cogs ./cogs
COPY models ./models
COPY db ./db
RUN pip install --no-deps .

RUN useradd --create-home --uid 10001 latentcord \
    && mkdir -p /app/data /cache \
    && chown -R latentcord:latentcord /app/data /cache
USER latentcord

VOLUME ["/app/data", "/cache"]
CMD ["python", "-m", "bot"]
