"""The learner killed mid-run: the driver stops with an error that says the learner died and
gives the exact command that resumes the run; that command continues from the last
checkpoint. Metrics of every finished step were already on disk."""

from __future__ import annotations

from rlagent.cli import main
from rlagent.failures import resume_hint, run_died, who_died


def test_resume_hint_names_the_checkpoint_and_the_command(tmp_path):
    assert "wrote no checkpoint" in resume_hint(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest").write_text("step_00003")
    assert resume_hint(tmp_path) == (
        f"continue from its last checkpoint (step_00003) with: "
        f"rlagent train {tmp_path}/config.yaml resume={tmp_path}"
    )
    err = run_died(RuntimeError("boom\nmore"), [], tmp_path, 4)
    assert str(err).startswith("an actor died during step 4 (boom); the run stopped: continue")


class FakeHandle:
    def __init__(self, hex_id: str):
        self._actor_id = type("Id", (), {"hex": lambda _: hex_id})()


def test_a_task_failing_on_a_dead_learners_output_names_the_learner():
    """A rollout worker's load_weights fails when the learner that produced its argument died:
    Ray raises the worker's task error, whose cause names the learner."""
    import ray.exceptions as rex

    learner, worker = "1b8f01fbdb2528c0845a6d8001000000", "d66db8b0d5d3222c2a4ea0cc01000000"
    died = rex.RayActorError(actor_id=learner, error_msg="The actor died unexpectedly")
    err = rex.RayTaskError("RolloutWorker.load_weights", "tb", died, actor_id=worker)
    err = err.as_instanceof_cause()
    assert who_died(err, [FakeHandle(learner)]) == "the learner (rank 0)"
    assert who_died(err, [FakeHandle("ab" * 16)]) == "an actor"
    # only the message names it
    text = RuntimeError(f"The actor died unexpectedly\n\tclass_name: Learner\n\tactor_id: {learner}")
    assert who_died(text, [FakeHandle("00" * 16), FakeHandle(learner)]) == "the learner (rank 1)"


def test_cli_prints_the_message_and_exits_1(monkeypatch, capsys, tmp_path):
    import rlagent.trainer

    def dies(cfg):
        raise run_died(RuntimeError("The actor died unexpectedly"), [], tmp_path, 7)

    monkeypatch.setattr(rlagent.trainer, "train", dies)
    assert main(["train", "launch/configs/quickstart.yaml"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rlagent: an actor died during step 7 (The actor died unexpectedly)")
    assert "Traceback" not in err
