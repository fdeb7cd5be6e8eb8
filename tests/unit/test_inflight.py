"""In-flight weight updates (``rollout.inflight_updates``, async mode): new weights reach an
engine between two turns of the episodes it is playing, not after the whole batch. Each turn
records the version that generated it; staleness counts an episode's oldest turn."""

from __future__ import annotations

import pytest
from support.engines import ECHO_TASK, OneWordEngine, runner
from support.episodes import episode

from rlagent.config import ConfigError, load_config
from rlagent.records import Task, Turn
from rlagent.schedule import staleness


def test_each_turn_records_the_version_that_generated_it(tok):
    version = {"v": 3}

    def new_weights_after_this_reply():
        version["v"] += 1  # what a sync landing between two turns does

    engine = OneWordEngine(tok, before_reply=new_weights_after_this_reply)
    r = runner(tok, "rlagent/Echo-v0", {"num_turns": 2}, engine)
    try:
        [e] = r.run([(0, ECHO_TASK)], 1, lambda: version["v"])
    finally:
        r.close()
    assert [t.policy_version for t in e.turns] == [3, 4]
    assert e.policy_version == 3  # the oldest: what staleness is measured by
    versions = e.token_versions()
    for t in e.turns:
        assert set(versions[t.span[0] : t.span[1]]) == {t.policy_version}
    policy = [v for v, m in zip(versions, e.loss_mask) if m]
    assert len(policy) == sum(e.loss_mask) and -1 not in policy
    assert {v for v, m in zip(versions, e.loss_mask) if not m} == {-1}


def test_staleness_counts_the_oldest_turn_and_mixed_episodes():
    task = Task(id="t", env="e", prompt="p")
    eps = [episode(task, True, group=g) for g in (0, 0, 1, 1)]
    for e, first, last in zip(eps, (5, 6, 4, 6), (6, 6, 6, 6)):
        e.turns = [
            Turn("a", "o", 0.0, {}, (0, 1), "stop", first),
            Turn("b", None, 0.0, {}, (2, 3), "stop", last),
        ]
        e.policy_version = first
    kept, m = staleness(eps, learner_version=7, max_staleness=2)
    assert kept == eps[:2]  # group 1 has an episode whose first turn is 3 versions old
    assert m["staleness/max"] == 2.0 and m["staleness/mixed_version_episodes"] == 1.0


def test_inflight_updates_need_async_mode():
    with pytest.raises(ConfigError, match="rollout.inflight_updates: needs rollout.mode: async"):
        load_config(None, ["rollout.inflight_updates=true", "rollout.mode=one_step_off"])
    load_config(None, ["rollout.inflight_updates=true", "rollout.mode=async", "rollout.max_staleness=2"])
