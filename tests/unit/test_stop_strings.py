"""rollout.stop: a turn ends right after a stop string, which stays in the reply, through the
real engine and trainer; the episode's tokens and logprobs stay aligned."""

import pytest

from rlagent.config import ConfigError, load_config


def test_stop_must_be_non_empty_strings():
    with pytest.raises(ConfigError, match="rollout.stop"):
        load_config(None, ["rollout.stop=['']"])
