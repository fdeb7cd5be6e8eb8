"""The terminal shows rlagent's own lines; third-party output goes to the run's output.log."""

import io
import logging
import sys

import pytest

from rlagent import terminal
from rlagent.terminal import is_own, sorted_output


def test_own_lines_are_recognised_here_and_from_actors():
    assert is_own("[rlagent] step 1/8  reward 0.2\n")
    assert is_own("rlagent: config error: learner.lrr: unknown key\n")
    assert is_own("\r[rlagent] step 2/8 rollout")
    # as Ray forwards an actor's line: coloured prefix, then the text
    assert is_own("\x1b[36m(RolloutWorker pid=4242)\x1b[0m [rlagent] engine ready\n")
    assert not is_own("\x1b[36m(RolloutWorker pid=4242)\x1b[0m WARNING 12-05 [vllm.py:1703] Enforce eager\n")
    assert not is_own("/x/torch/utils.py:3: FutureWarning: `torch.distributed.reduce_op` is deprecated\n")
    assert not is_own(
        "[2026-12-05 23:24:28] [WARNING] [real_accelerator.py:213] Setting accelerator to CPU\n"
    )


def test_lines_are_sorted_and_the_log_gets_what_came_before_it(tmp_path, monkeypatch):
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    with sorted_output():
        print("early library notice")  # before the run directory exists
        assert terminal.attach(tmp_path) == tmp_path / "output.log"
        print("[rlagent] run directory: x")
        library = logging.getLogger("a_library")
        library.addHandler(logging.StreamHandler())  # made now: writes to the sorted stderr
        library.warning("FutureWarning: a third-party deprecation")
        print("[rlagent] step 1/2", end="")  # the text, then the newline, in two writes
        print("")
        sys.stderr.write("(Learner pid=7) [rlagent] learner ready\n(Learner pid=7) DeepSpeed info\n")
    library.handlers.clear()
    assert out.getvalue() == "[rlagent] run directory: x\n[rlagent] step 1/2\n"
    assert err.getvalue() == "(Learner pid=7) [rlagent] learner ready\n"
    log = (tmp_path / "output.log").read_text()
    assert log.startswith("early library notice\n") and "FutureWarning: a third-party deprecation" in log
    assert log.endswith("(Learner pid=7) DeepSpeed info\n") and "[rlagent]" not in log
    assert terminal.attach(tmp_path) is None  # sorting ended with the block


def test_a_failure_before_the_run_directory_shows_what_was_held(monkeypatch):
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    with pytest.raises(RuntimeError), sorted_output():
        print("engine: cannot allocate the KV cache")
        raise RuntimeError("start failed")
    assert err.getvalue() == "engine: cannot allocate the KV cache\n" and out.getvalue() == ""


def test_verbose_sorts_nothing(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    with sorted_output(enabled=False):
        print("library notice")
        assert terminal.attach(".") is None
    assert out.getvalue() == "library notice\n"
