"""Partial rollouts (async mode): new weights land in the middle of a generation. Every token
records the version that produced it; staleness counts an episode's oldest token."""

from __future__ import annotations

import pytest
from support.engines import ECHO_TASK, OneWordEngine, play, runner
from support.episodes import episode

from rlagent.config import ConfigError, load_config
from rlagent.records import Task, Turn
from rlagent.rollout.engine import Generation
from rlagent.schedule import staleness


class SplitEngine(OneWordEngine):
    """Its second reply is cut by a weight update after the first token: two versions."""

    async def generate(self, prompt, max_tokens, *, temperature, top_p=1.0, stop=None):
        self.version += 1
        n = len(self.ids)
        spans = (
            [(self.version, 0, n)] if self.version == 1 else [(self.version, 0, 1), (self.version + 1, 1, n)]
        )
        return Generation(list(self.ids), [-0.5] * n, "stop", spans)


def test_each_token_records_the_version_that_generated_it(tok):
    engine = SplitEngine(tok, word="a b")
    r = runner(tok, "rlagent/Echo-v0", {"num_turns": 2}, engine)
    try:
        [e] = play(r, [(0, ECHO_TASK)], 1)
    finally:
        r.close()
    first, second = e.turns
    assert first.policy_version == 1 and first.versions == []  # one version: no spans kept
    start = second.span[0]
    assert second.policy_version == 2 and second.versions == [
        (2, start, start + 1),
        (3, start + 1, second.span[1]),
    ]
    assert e.policy_version == 1 and e.versions_used() == {1, 2, 3}  # the oldest: what staleness uses
    versions = e.token_versions()
    assert versions[first.span[0] : first.span[1]] == [1] * 3
    assert versions[second.span[0] : second.span[1]] == [2, 3, 3]
    assert {v for v, m in zip(versions, e.loss_mask) if not m} == {-1}
    assert -1 not in [v for v, m in zip(versions, e.loss_mask) if m]


def test_staleness_counts_the_oldest_token_and_mixed_episodes():
    task = Task(id="t", env="e", prompt="p")
    eps = [episode(task, True, group=g) for g in (0, 0, 1, 1)]
    for e, first, last in zip(eps, (5, 6, 4, 6), (6, 6, 6, 6)):
        e.turns = [
            Turn("a", "o", 0.0, {}, (0, 1), "stop", first),
            Turn(
                "b",
                None,
                0.0,
                {},
                (2, 4),
                "stop",
                first,
                [(first, 2, 3), (last, 3, 4)] if last != first else [],
            ),
        ]
        e.policy_version = first
    kept, m = staleness(eps, learner_version=7, max_staleness=2)
    assert kept == eps[:2]  # group 1 has an episode whose first token is 3 versions old
    assert m["staleness/max"] == 2.0 and m["staleness/mixed_version_episodes"] == 1.0


def test_a_removed_or_bad_rollout_key_is_a_config_error():
    with pytest.raises(ConfigError, match="rollout.inflight_updates: unknown key"):
        load_config(None, ["rollout.inflight_updates=true"])
    with pytest.raises(ConfigError, match="rollout.max_concurrent_episodes: must be >= 1"):
        load_config(None, ["rollout.max_concurrent_episodes=0"])
