"""DAPO dynamic sampling through the real trainer: groups without signal are dropped and
refilled by more rollouts, and the batch keeps its shape."""

from rlagent.config import load_config
from rlagent.curriculum import make_sampler
from rlagent.records import Episode, Task, Turn
from rlagent.schedule import collect


def _episode(group: int, task: Task, generated: int) -> Episode:
    ids = [5] + [7] * generated
    turn = Turn("a", None, 0.0, {}, (1, len(ids)), "stop")
    return Episode(
        task=task,
        group=group,
        messages=[],
        token_ids=ids,
        loss_mask=[0] + [1] * generated,
        logprobs=[0.0] * len(ids),
        prompt_len=1,
        turns=[turn],
        termination="terminated",
        policy_version=0,
        reward=1.0,
    )


class EqualRewardsPool:
    """The ``RolloutPool.run`` interface, without engines: every episode earns 1.0, but in
    each group one writes 2 tokens and the others 6 (past the overlong buffer)."""

    def __init__(self):
        self.rounds = 0

    def run(self, tasks, group_size, on_progress=None):
        self.rounds += 1
        return [_episode(g, t, 2 if i == 0 else 6) for g, t in enumerate(tasks) for i in range(group_size)]


def test_dynamic_sampling_keeps_groups_whose_shaped_rewards_differ():
    cfg = load_config(
        None,
        [
            "env.id=rlagent/Echo-v0",
            "algo.dynamic_sampling=true",
            "algo.max_sampling_rounds=3",
            "algo.overlong_buffer=4",
            "algo.overlong_max_tokens=6",
            "algo.group_size=2",
            "algo.tasks_per_step=2",
        ],
    )
    pool = EqualRewardsPool()
    episodes, rounds, seen = collect(cfg, make_sampler(cfg), pool)
    # raw rewards [1, 1], shaped [1, 0]: every group has signal, one round is enough
    assert (rounds, pool.rounds, len(episodes), len(seen)) == (1, 1, 4, 2)
