"""Bad input is an error that says where, never a crash: task files (file and line) and
configs (the dotted key), checked on hand-picked cases and on generated ones (hypothesis)."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlagent.config import AgentConfig, Config, ConfigError, load_config
from rlagent.tasks import load_tasks

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# every section, the optional ones (default None) included
SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(Config) if f.default is dataclasses.MISSING}
SECTIONS["agent"] = AgentConfig
KEYS = [f"{s}.{f.name}" for s, make in SECTIONS.items() for f in dataclasses.fields(make())]


@pytest.mark.parametrize(
    "line, error",
    [
        ("{not json", r"tasks.jsonl:2: Expecting property name"),
        ('["a", "list"]', r"tasks.jsonl:2: a task must be a JSON object"),
        ('{"prompt": "no id"}', r"tasks.jsonl:2: task is missing field\(s\) \['id'\]"),
        ('{"id": null, "prompt": "p"}', r"tasks.jsonl:2: task is missing field\(s\) \['id'\]"),
        ('{"id": "x", "prompt": "p", "difficulty": "hard"}', r"tasks.jsonl:2: .*difficulty must be"),
        ('{"id": "x", "prompt": "p", "difficulty": null}', r"tasks.jsonl:2: .*difficulty must be"),
        ('{"id": "x", "prompt": "p", "difficulty": [1]}', r"tasks.jsonl:2: .*difficulty must be"),
    ],
)
def test_malformed_task_line_names_file_and_line(tmp_path, line, error):
    path = tmp_path / "tasks.jsonl"
    path.write_text('{"id": "ok", "prompt": "fine"}\n' + line + "\n")
    with pytest.raises(ValueError, match=error):
        load_tasks(path, "rlagent/Echo-v0")


def test_empty_task_file_is_an_error(tmp_path):
    (tmp_path / "tasks.jsonl").write_text("\n  \n")
    with pytest.raises(ValueError, match=r"tasks.jsonl: no tasks"):
        load_tasks(tmp_path / "tasks.jsonl", "rlagent/Echo-v0")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
TASK_LIKE = st.fixed_dictionaries(
    {}, optional={"id": JSON, "prompt": JSON, "answer": JSON, "difficulty": JSON, "env": JSON}
)
LINES = st.one_of(st.text(max_size=40), JSON.map(json.dumps), TASK_LIKE.map(json.dumps))


@SETTINGS
@given(lines=st.lists(LINES, min_size=1, max_size=5))
def test_any_task_file_loads_or_names_the_bad_line(tmp_path, lines):
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(line.replace("\n", " ").replace("\r", " ") for line in lines))
    try:
        tasks = load_tasks(path, "rlagent/Echo-v0")
    except ValueError as err:
        assert re.match(rf"{re.escape(str(path))}(:\d+)?: ", str(err)), str(err)
    else:
        assert tasks and all(isinstance(t.id, str) and isinstance(t.difficulty, int) for t in tasks)


VALUES = st.one_of(
    st.text(max_size=20),
    JSON.map(json.dumps),
    st.sampled_from(
        [
            "[",
            "{a: [",
            "-1",
            "0",
            "1e-4",
            ".nan",
            ".inf",
            "~",
            "yes",
            "2020-01-01",
            "!!python/object:os.system",
            "\x00",
            "a: b",
        ]
    ),
)


@SETTINGS
@given(key=st.sampled_from(KEYS) | st.text(max_size=15), value=VALUES)
def test_any_override_loads_or_names_the_key(key, value):
    try:
        cfg = load_config(None, [f"{key}={value}"])
    except ConfigError as err:
        assert str(err), (key, value)
    else:
        assert isinstance(cfg, Config)


@pytest.mark.parametrize(
    "text, error",
    [
        ("{1: 2, a: 3}", r"^1: unknown key"),
        ("run: {steps: 1, null: 2}", r"^run.None: unknown key"),
        ("algo: [", r"run.yaml: not valid YAML"),
        ("rewards: {components: [1]}", r"^rewards.components\[0\]: expected a mapping"),
        ("- a\n- b", r"run.yaml: top level must be a mapping"),
    ],
)
def test_bad_yaml_file_names_the_key_or_file(tmp_path, text, error):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=error):
        load_config(path)


@SETTINGS
@given(
    text=st.text(max_size=60)
    | JSON.map(json.dumps)
    | st.dictionaries(
        st.sampled_from(list(SECTIONS) + ["bogus", "1"]),
        st.dictionaries(st.text(max_size=10), JSON, max_size=3) | JSON,
        max_size=3,
    ).map(json.dumps)
)
def test_any_yaml_file_loads_or_is_a_config_error(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    try:
        load_config(path)
    except ConfigError as err:
        assert str(err)
