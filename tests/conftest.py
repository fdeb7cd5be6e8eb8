import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# Two cores: every process gets an explicit thread budget.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    from tiny import make_tiny_model

    return str(make_tiny_model(tmp_path_factory.mktemp("tiny-model")))


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray for the whole session (starting one costs ~5 s)."""
    import ray

    temp = tempfile.mkdtemp(prefix="rlray-", dir="/tmp")  # short: unix socket path limit
    # Logical CPUs: tests run one training at a time, but actors of a finished run may
    # still be shutting down when the next run starts.
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
             _temp_dir=temp)
    yield
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)
