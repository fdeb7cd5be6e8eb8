import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# The viewer's run directory and page (unit: markup; system: in Chromium).
from support.viewer_run import page, run  # noqa: E402, F401

# Two cores: every process gets an explicit thread budget.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def pytest_addoption(parser):
    parser.addoption(
        "--run-seed",
        type=int,
        default=None,
        help="run.seed of the learning tests (default: each test's own), to check "
        "that they pass whatever the numeric path",
    )
    parser.addoption(
        "--flip-policy-loss",
        action="store_true",
        help="negate the policy loss in every Ray worker: each learning test must then fail",
    )


@pytest.fixture(scope="session")
def run_seed(request) -> int:
    """``run.seed`` for a learning test: ``--run-seed`` or 1."""
    seed = request.config.getoption("--run-seed")
    return 1 if seed is None else seed


@pytest.fixture(scope="session")
def echo_grpo_run(tiny_model, ray_cluster, tmp_path_factory, run_seed):
    """The learning family's GRPO run on Echo-v0 (``support/echo.py``), trained once per
    session: the learning test reads its curve, the eval test evaluates its checkpoint."""
    from support.echo import EVAL_COMPONENTS, train_echo_run

    return train_echo_run(tiny_model, tmp_path_factory.mktemp("echo-grpo"), run_seed, EVAL_COMPONENTS)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    from rlagent.testing import make_tiny_model

    return str(make_tiny_model(tmp_path_factory.mktemp("tiny-model")))


@pytest.fixture(scope="session")
def tok(tiny_model):
    """The tiny model's tokenizer (word-level: a few letters, yes and no)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="session")
def ray_cluster(request):
    """One local Ray for the whole session (starting one costs ~5 s)."""
    import ray

    temp = tempfile.mkdtemp(prefix="rlray-", dir="/tmp")  # short: unix socket path limit
    # Logical CPUs: tests run one training at a time, but actors of a finished run may
    # still be shutting down when the next run starts.
    runtime_env = {}
    if request.config.getoption("--flip-policy-loss"):
        runtime_env["worker_process_setup_hook"] = "rlagent.testing.flip_policy_loss"
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=temp,
        runtime_env=runtime_env or None,
    )
    yield
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)
