"""Episode views of a calculator question, for the judge plugin's tests."""

from __future__ import annotations

from rlagent.episode_view import EpisodeView
from rlagent.records import Episode, Task, Turn


def view(*turns: tuple[str, str | None], answer=523, prompt="What is 37 * 14 + 5?") -> EpisodeView:
    """An episode whose assistant turns are (action, observation) pairs."""
    records = [
        Turn(action=a, observation=o, env_reward=0.0, info={}, span=(i, i + 1), finish_reason="stop")
        for i, (a, o) in enumerate(turns)
    ]
    task = Task(id="t1", env="rlagent/Calculator-v0", prompt=prompt, answer=answer, difficulty=2)
    n = len(turns)
    ep = Episode(
        task=task,
        group=0,
        messages=[],
        token_ids=[1] + list(range(2, 2 + n)),
        loss_mask=[0] + [1] * n,
        logprobs=[0.0] + [-0.5] * n,
        prompt_len=1,
        turns=records,
        termination="terminated",
        policy_version=0,
    )
    return EpisodeView.of(ep)


SOLVED = view(("<calc>37 * 14</calc>", "<result>518</result>"), ("518 + 5 = 523. <answer>523</answer>", None))


WRONG = view(("37 times 14 is about 500, plus 5. <answer>505</answer>", None))


NO_TAG = view(("I am not sure how to compute this.", None))


OTHER = view(("<answer>12</answer>", None), answer=12, prompt="What is 3 * 4?")


EPISODES = [SOLVED, WRONG, NO_TAG, OTHER]
