"""Episodes built by hand, for tests of what consumes them (curriculum, staleness)."""

from __future__ import annotations

from rlagent.records import Episode, Task, Turn


def episode(task: Task, success: bool | None, group: int = 0, reward: float | None | str = "auto") -> Episode:
    info = {} if success is None else {"success": success}
    turn = Turn(action="a", observation=None, env_reward=0.0, info=info, span=(0, 1), finish_reason="stop")
    return Episode(
        task=task,
        group=group,
        messages=[],
        token_ids=[1],
        loss_mask=[1],
        logprobs=[0.0],
        prompt_len=0,
        turns=[turn],
        termination="terminated",
        policy_version=0,
        reward=float(bool(success)) if reward == "auto" else reward,
    )
