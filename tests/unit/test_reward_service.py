"""The reward service: weighted totals, and every plugin failure counted, never a silent 0."""

import time

import pytest

from rlagent.config import ConfigError, RewardSpec
from rlagent.episode_view import EpisodeView
from rlagent.records import Episode, Task, Turn
from rlagent.scoring.combine import reward_metrics
from rlagent.scoring.service import RewardService


def _episode(action="<answer>5</answer>", termination="terminated") -> Episode:
    task = Task(id="t", env="rlagent/Calculator-v0", prompt="2+3?", answer=5)
    turn = Turn(action, None, 1.0, {"success": True}, (3, 5), "stop")
    return Episode(
        task=task,
        group=0,
        messages=[],
        token_ids=[1, 2, 3, 4, 5],
        loss_mask=[0, 0, 0, 1, 1],
        logprobs=[0, 0, 0, -1.0, -0.5],
        prompt_len=3,
        turns=[turn],
        termination=termination,
        policy_version=0,
    )


class _Plugin:
    kind = "outcome"

    def __init__(self, fn):
        self.score = fn


def score(svc: RewardService, episode: Episode) -> Episode:
    """What a rollout worker does: the service scores the episode's view; the episode takes
    the (token-free) scores back."""
    episode.take(svc.score(EpisodeView.of(episode)))
    return episode


def _service(**bad) -> RewardService:
    specs = [RewardSpec("format", 0.5), RewardSpec("outcome", 1.0)]
    specs += [RewardSpec(name, 1.0) for name in bad]
    svc = RewardService(specs[:2], timeout_s=0.5)
    svc.specs = specs
    svc.plugins.update({name: _Plugin(fn) for name, fn in bad.items()})
    return svc


def test_weighted_total_of_builtin_plugins():
    ep = score(_service(), _episode())
    # format: one well-formed turn ending in an answer = 1.0; outcome: 5 == 5 -> 1.0
    assert ep.rewards == {"format": 1.0, "outcome": 1.0}
    assert ep.reward == pytest.approx(0.5 * 1.0 + 1.0 * 1.0)
    ep = score(_service(), _episode("<answer>6</answer>"))
    assert ep.reward == pytest.approx(0.5) and ep.reward_errors == {}


def _raise(episode):
    raise KeyError("no such field")


@pytest.mark.parametrize(
    "name, fn, error",
    [
        ("crash", _raise, "KeyError"),
        ("hang", lambda e: time.sleep(3), "timed out"),
        ("garbage", lambda e: "1.0", "returned str"),
        ("nan", lambda e: float("nan"), "returned nan"),
        ("flag", lambda e: True, "returned bool"),
    ],
)
def test_failing_plugin_is_counted_and_the_episode_left_out(name, fn, error):
    ep = score(_service(**{name: fn}), _episode())
    assert error in ep.reward_errors[name]
    assert ep.reward is None, "a failed weighted plugin must not turn into a score"
    m = reward_metrics(
        [ep, score(_service(), _episode())], [RewardSpec("outcome", 1.0), RewardSpec(name, 1.0)]
    )
    assert m[f"reward/{name}/errors"] == 1.0 and m["reward/invalid"] == 1.0
    assert m["reward/outcome/mean"] == 1.0


def test_failure_of_a_log_only_plugin_keeps_the_reward():
    svc = _service(crash=_raise)
    svc.specs[-1] = RewardSpec("crash", 0.0)
    ep = score(svc, _episode())
    assert "crash" in ep.reward_errors and ep.reward == pytest.approx(1.5)


def test_env_failures_and_inapplicable_rewards_are_not_scores():
    svc = _service()
    assert score(svc, _episode(termination="env_timeout")).reward is None
    assert score(svc, _episode(termination="env_error")).reward is None
    none_only = _service(na=lambda e: None)
    none_only.specs = [RewardSpec("na", 1.0)]
    assert score(none_only, _episode()).reward is None


def test_unknown_plugin_names_the_installed_ones():
    with pytest.raises(ConfigError, match="no reward plugin named 'nope'.*env_reward"):
        RewardService([RewardSpec("nope", 1.0)], timeout_s=1)


def test_drop_component_totals_the_plugins_that_scored():
    svc = _service(crash=_raise)
    svc.on_error = "drop_component"
    ep = score(svc, _episode())
    # format 0.5 * 1 + outcome 1.0 * 1; the crash is counted but left out of the sum
    assert ep.reward == pytest.approx(1.5) and "KeyError" in ep.reward_errors["crash"]


def test_group_normalized_combine_by_hand():
    from rlagent.scoring.combine import group_normalized

    specs = [RewardSpec("a", 1.0), RewardSpec("b", 2.0)]
    eps = []
    for group, a, b in [(0, 1.0, 10.0), (0, 3.0, 10.0), (1, 0.0, 1.0), (1, 0.0, 3.0), (1, 0.0, None)]:
        e = _episode()
        e.group, e.rewards = group, {"a": a, "b": b}
        eps.append(e)
    group_normalized(eps, specs, "exclude")
    # group 0: a [1, 3] -> mean 2, population std 1 -> [-1, 1]; b [10, 10] equal -> 0, 0
    #   totals 1 * -1 + 2 * 0 = -1 and 1
    # group 1: a [0, 0, 0] equal -> 0; b [1, 3, n/a] -> [-1, 1] over the two that scored
    #   totals 2 * -1 = -2, 2 * 1 = 2, and the third 0 (a applied, b did not)
    got = [e.reward for e in eps]
    assert got == pytest.approx([-1, 1, -2, 2, 0], abs=1e-5)


def test_latency_and_std_are_reported():
    eps = [score(_service(), _episode(a)) for a in ("<answer>5</answer>", "<answer>6</answer>")]
    assert all(0 <= e.reward_latency["outcome"] < 0.5 for e in eps)
    m = reward_metrics(eps, [RewardSpec("outcome", 1.0)])
    # outcome scores [1, 0]: mean 0.5, population std 0.5
    assert m["reward/outcome/mean"] == 0.5 and m["reward/outcome/std"] == 0.5
    assert m["reward/outcome/latency_s"] < 0.5
