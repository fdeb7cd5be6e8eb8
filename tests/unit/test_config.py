"""Config loading: YAML, dotted overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import REPO

from rlagent.config import Config, ConfigError, RewardSpec, load_config, save_config


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def error(overrides: list[str], path: Path | None = None) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(path, overrides)
    return str(e.value)


def test_defaults_without_file():
    cfg = load_config(None, [])
    assert cfg.to_dict() == Config().to_dict()
    assert cfg.episodes_per_step == 4 * 4


def test_yaml_file_is_read(tmp_path):
    p = write(
        tmp_path,
        "run: {name: exp1, steps: 3}\nalgo:\n  group_size: 8\n  name: dr_grpo\n"
        "env: {kwargs: {max_turns: 2}}\n",
    )
    cfg = load_config(p)
    assert (cfg.run.name, cfg.run.steps) == ("exp1", 3)
    assert cfg.algo.group_size == 8 and cfg.algo.name == "dr_grpo"
    assert cfg.env.kwargs == {"max_turns": 2}
    assert cfg.learner.lr == 1e-6  # untouched sections keep their defaults


def test_empty_yaml_gives_defaults(tmp_path):
    assert load_config(write(tmp_path, "")).to_dict() == Config().to_dict()


def test_top_level_must_be_a_mapping(tmp_path):
    assert "top level must be a mapping" in error([], write(tmp_path, "- a\n- b\n"))


def test_overrides_win_over_the_file(tmp_path):
    p = write(tmp_path, "algo: {group_size: 4, tasks_per_step: 2}\n")
    cfg = load_config(p, ["algo.group_size=8", "run.name=other", "env.kwargs.max_turns=5"])
    assert cfg.algo.group_size == 8 and cfg.algo.tasks_per_step == 2
    assert cfg.run.name == "other" and cfg.env.kwargs == {"max_turns": 5}
    assert cfg.episodes_per_step == 16


def test_overrides_take_yaml_flow_syntax():
    cfg = load_config(
        None,
        [
            "rewards.components=[{name: env_reward, weight: 1.0}, "
            "{name: format, weight: 0, kwargs: {strict: true}}]",
            "data.difficulties=[1, 3]",
            "ray.address=null",
        ],
    )
    assert cfg.rewards.components == [
        RewardSpec("env_reward", 1.0, {}),
        RewardSpec("format", 0.0, {"strict": True}),
    ]
    assert isinstance(cfg.rewards.components[1].weight, float)
    assert cfg.data.difficulties == [1, 3] and cfg.ray.address is None


def test_override_without_equals_sign():
    assert "expected dotted.key=value" in error(["algo.group_size"])


def test_unknown_key_names_it_and_lists_allowed_keys():
    msg = error(["algo.groupsize=8"])
    assert msg.startswith("algo.groupsize: unknown key")
    for allowed in ("group_size", "tasks_per_step", "clip_low", "clip_high", "kl_coef"):
        assert allowed in msg


def test_unknown_section_and_nested_unknown_key(tmp_path):
    assert error(["algos.group_size=8"]).startswith("algos: unknown key")
    p = write(tmp_path, "rewards:\n  components:\n    - {name: outcome, wieght: 1}\n")
    assert error([], p).startswith("rewards.components[0].wieght: unknown key")


@pytest.mark.parametrize(
    "override, start",
    [
        ("algo.group_size=abc", "algo.group_size: expected int"),
        ("algo.group_size=4.5", "algo.group_size: expected int"),
        ("algo.group_size=true", "algo.group_size: expected int"),  # bool is not an int here
        ("learner.lr=true", "learner.lr: expected float"),
        ("learner.lr=fast", "learner.lr: expected float"),
        ("run.name=[a, b]", "run.name: expected str"),
        ("tracking.save_rollouts=1", "tracking.save_rollouts: expected bool"),
        ("env.kwargs=[1]", "env.kwargs: expected a mapping"),
        ("data.difficulties=3", "data.difficulties: expected a list"),
        ("data.difficulties=[1, x]", "data.difficulties[1]: expected int"),
        ("algo=3", "algo: expected a mapping"),
    ],
)
def test_wrong_type_names_the_key(override, start):
    assert error([override]).startswith(start)


def test_int_and_exponent_accepted_for_float_fields():
    cfg = load_config(None, ["learner.lr=1", "algo.clip_high=0", "learner.weight_decay=1e-2"])
    assert cfg.learner.lr == 1.0 and type(cfg.learner.lr) is float
    assert cfg.algo.clip_high == 0.0 and type(cfg.algo.clip_high) is float
    # YAML 1.1 reads "1e-2" (no dot) as a string: it must still become the float 0.01.
    assert cfg.learner.weight_decay == 0.01


def test_literal_lists_allowed_values():
    msg = error(["learner.zero_stage=5"])
    assert msg.startswith("learner.zero_stage: must be one of")
    for allowed in ("'auto'", "0", "1", "2"):
        assert allowed in msg
    assert load_config(None, ["learner.zero_stage=2"]).learner.zero_stage == 2
    assert "3" not in msg.split("got")[0]  # stage 3 is not offered
    assert error(["model.dtype=fp8"]).startswith("model.dtype: must be one of")


@pytest.mark.parametrize("value", ["true", "1.0"])
def test_literal_rejects_values_that_only_compare_equal(value):
    # True == 1 and 1.0 == 1 in Python: a Literal check by `in` would let them through
    # and DeepSpeed would be handed {"stage": True}.
    assert error([f"learner.zero_stage={value}"]).startswith("learner.zero_stage: must be one of")


def test_group_of_one_is_rejected_for_grpo():
    msg = error(["algo.group_size=1"])
    assert msg.startswith("algo.group_size") and "for grpo" in msg and "got 1" in msg


@pytest.mark.parametrize(
    "override, start",
    [
        ("run.steps=0", "run.steps"),
        ("algo.clip_low=1.0", "algo.clip_low"),
        ("rollout.top_p=0", "rollout.top_p"),
        ("rollout.max_episode_tokens=64", "rollout.max_episode_tokens"),  # == max_new_tokens
        ("learner.lr=0", "learner.lr"),
        ("rewards.components=[]", "rewards.components"),
        ("tracking.table_episodes=-1", "tracking.table_episodes"),
        ("rollout.step_timeout_s=0", "rollout.step_timeout_s"),
        ("rollout.timeout_s=-5", "rollout.timeout_s"),
        ("rollout.max_retries=-1", "rollout.max_retries"),
        ("learner.sync_timeout_s=0", "learner.sync_timeout_s"),
    ],
)
def test_impossible_values_name_the_key(override, start):
    assert error([override]).startswith(start)


def test_duplicate_reward_names_rejected():
    msg = error(["rewards.components=[{name: outcome}, {name: outcome, weight: 0.5}]"])
    assert msg.startswith("rewards.components") and "'outcome', 'outcome'" in msg


def test_all_zero_weights_rejected():
    msg = error(["rewards.components=[{name: outcome, weight: 0}, {name: format, weight: 0.0}]"])
    assert msg.startswith("rewards.components") and "non-zero weight" in msg


def test_quickstart_config_loads():
    cfg = load_config(REPO / "launch/configs/quickstart.yaml")
    assert cfg.run.name == "quickstart" and cfg.run.steps == 8
    assert cfg.env.id == "rlagent/Calculator-v0" and cfg.env.kwargs == {"max_turns": 2}
    assert cfg.env.system_prompt.startswith("You answer arithmetic questions with a calculator.")
    assert cfg.data.difficulties == [2, 3] and cfg.rollout.stop == ["</calc>", "</answer>"]
    assert [(c.name, c.weight) for c in cfg.rewards.components] == [
        ("format", 0.2),
        ("outcome", 1.0),
        ("valid_tool_call", 0.1),
    ]
    assert cfg.algo.kl_coef == 0.0 and cfg.learner.lr == 2e-5
    assert cfg.episodes_per_step == 32


def test_save_config_round_trips(tmp_path):
    cfg = load_config(
        REPO / "launch/configs/quickstart.yaml",
        [
            "rewards.components=[{name: outcome, weight: 1, kwargs: {tol: 0.01}}]",
            "learner.zero_stage=auto",
            "ray.num_cpus=2",
            "env.system_prompt=Be brief.",
        ],
    )
    out = tmp_path / "saved.yaml"
    save_config(cfg, out)
    again = load_config(out)
    assert again.to_dict() == cfg.to_dict()
    assert again.rewards.components[0].kwargs == {"tol": 0.01}


def test_turn_level_credit_needs_the_weighted_sum():
    # group_normalized totals are sums of z-scores: a raw per-turn score cannot be taken out
    msg = error(["algo.turn_level_coef=0.5", "rewards.combine=group_normalized"])
    assert msg.startswith("algo.turn_level_coef: needs rewards.combine: weighted_sum")
    load_config(None, ["algo.turn_level_coef=0.5"])
    load_config(None, ["rewards.combine=group_normalized"])


def test_fixed_deadlines_are_named_and_can_be_raised():
    from rlagent import remote

    cfg = load_config(None, ["ray.timeouts={learner_step: 7200}"])
    remote.configure(cfg.ray.timeouts)
    try:
        assert remote.deadline("learner_step") == remote.Deadline(7200.0, "ray.timeouts.learner_step")
        assert remote.deadline("checkpoint").seconds == remote.TIMEOUTS["checkpoint"]
    finally:
        remote.configure({})
    assert error(["ray.timeouts={learner_stp: 10}"]).startswith("ray.timeouts.learner_stp: unknown timeout")
    assert error(["ray.timeouts={checkpoint: 0}"]) == "ray.timeouts.checkpoint: must be > 0"
    assert "expected float" in error(["ray.timeouts={checkpoint: soon}"])


def test_a_misspelt_key_gets_the_closest_one():
    assert error(["learner.lrr=1"]).startswith("learner.lrr: unknown key (did you mean learner.lr? allowed:")
