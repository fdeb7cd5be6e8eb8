"""What the tests and benchmarks run on: a tiny model, and faults on purpose.

``make_tiny_model``: a tiny randomly initialised Llama with a word-level tokenizer that knows a
few letters; fast enough to train to convergence in a test, real enough for vLLM and
DeepSpeed (an ordinary Hugging Face model directory).

``FaultyEcho`` (registered on import as ``faults/FaultyEcho-v0``; a run names it
``rlagent.testing:faults/FaultyEcho-v0``) is Echo-v0 whose steps can raise, hang,
take a while, or end the whole process, each at a set rate, and which can own a child
process (as the Web env owns a browser) that it needs alive. ``FlakyReward`` is a reward
plugin that raises, hangs or returns garbage at set rates.

Both append one line per injected fault (``raise``, ``hang``, ``exit``, ``garbage``, ...) to
the file named by ``log``, from whichever process they run in, so a test can compare what
the run counted with what was injected.
"""

from __future__ import annotations

import functools
import itertools
import os
import random
import subprocess
import threading
import time
from pathlib import Path

import gymnasium

from rlagent.envs.echo import EchoEnv

ENV_ID = "faults/FaultyEcho-v0"
_instances = itertools.count()
_exiting = threading.Lock()


def record(log: str | None, what: str, episode: str = "") -> None:
    """Append ``what`` (and the episode's id, when known) as one line (O_APPEND: lines from
    several processes do not mix)."""
    what = f"{what} {episode}" if episode else what
    if log:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, (what + "\n").encode())
        finally:
            os.close(fd)


def count(log: str, what: str) -> int:
    """How many ``what`` lines the log holds (0 when nothing was injected)."""
    return len(episodes(log, what))


def episodes(log: str, what: str) -> list[str]:
    """The episode id of every ``what`` line of the log ("" where none was recorded)."""
    if not os.path.exists(log):
        return []
    with open(log) as f:
        return [(line.split() + [""])[1] for line in f if line.split()[:1] == [what]]


class FaultyEcho(EchoEnv):
    """Echo-v0 with injected faults; every step first draws its fault (at most one):
    ``raise_rate`` (RuntimeError), ``hang_rate`` (sleeps ``hang_s``, past the runner's step
    timeout). ``delay_s`` slows every step (logged as ``delay``); ``exit_process`` ends the
    process hosting the env at its first step (``os._exit``, no clean-up, logged as ``exit``);
    ``child`` starts a ``sleep`` process that reset and step need alive. A task's
    ``step_s`` field sets the delay of its own episode's steps instead of ``delay_s``."""

    difficulties = (2,)  # generated tasks have two turns, as the tests' max_turns expects

    def __init__(
        self,
        raise_rate: float = 0.0,
        hang_rate: float = 0.0,
        hang_s: float = 5.0,
        delay_s: float = 0.0,
        exit_process: bool = False,
        child: bool = False,
        log: str | None = None,
        seed: int = 0,
        **echo_kwargs,
    ):
        super().__init__(**echo_kwargs)
        self.raise_rate, self.hang_rate, self.hang_s = raise_rate, hang_rate, hang_s
        self.delay_s, self.exit_process, self.log = delay_s, exit_process, log
        self.episode = ""  # the id of the episode being played (reset's options["episode_id"])
        self.rng = random.Random(f"{seed}-{os.getpid()}-{next(_instances)}")
        self.child = subprocess.Popen(["sleep", "3600"]) if child else None
        record(log, "make")

    def _check_child(self) -> None:
        if self.child is not None and self.child.poll() is not None:
            raise RuntimeError(f"the env's child process {self.child.pid} died")

    def reset(self, *, seed=None, options=None):
        self._check_child()
        task = (options or {}).get("task") or {}
        self.step_s = float(task.get("step_s", self.delay_s))
        self.episode = str((options or {}).get("episode_id", ""))
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self._check_child()
        if self.exit_process:
            with _exiting:  # one "exit" per process: other threads wait here until it ends
                record(self.log, "exit")
                os._exit(1)
        if getattr(self, "step_s", self.delay_s):
            record(self.log, "delay")
            time.sleep(self.step_s)
        draw = self.rng.random()
        if draw < self.raise_rate:
            record(self.log, "raise", self.episode)
            raise RuntimeError("injected env fault")
        if draw < self.raise_rate + self.hang_rate:
            record(self.log, "hang", self.episode)
            time.sleep(self.hang_s)
        return super().step(action)

    def close(self):
        if self.child is not None and self.child.poll() is None:
            self.child.kill()
            self.child.wait()
        record(self.log, "close")
        super().close()


class FlakyReward:
    """Outcome reward 1.0 (``garbage``: the string "1.0") that raises, hangs ``hang_s`` or
    returns garbage at the given rates (at most one per call)."""

    kind = "outcome"

    def __init__(
        self,
        raise_rate: float = 0.0,
        hang_rate: float = 0.0,
        garbage_rate: float = 0.0,
        hang_s: float = 2.0,
        log: str | None = None,
        seed: int = 0,
    ):
        self.rates = (raise_rate, hang_rate, garbage_rate)
        self.hang_s, self.log = hang_s, log
        self.rng = random.Random(f"{seed}-{os.getpid()}")

    def score(self, episode):
        draw = self.rng.random()
        raise_rate, hang_rate, garbage_rate = self.rates
        uid = getattr(episode, "uid", "")
        if draw < raise_rate:
            record(self.log, "reward_raise", uid)
            raise RuntimeError("injected reward fault")
        if draw < raise_rate + hang_rate:
            record(self.log, "reward_hang", uid)
            time.sleep(self.hang_s)
        elif draw < raise_rate + hang_rate + garbage_rate:
            record(self.log, "reward_garbage", uid)
            return "1.0"
        return 1.0


if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point=FaultyEcho)


def flip_policy_loss() -> None:
    """A wrong sign on purpose: negate the policy-gradient loss in this process. Installed in
    every Ray worker by ``pytest --flip-policy-loss`` (Ray's ``worker_process_setup_hook``),
    so that each learning test can be seen to fail for a sign-flipped trainer."""
    from rlagent import algos

    plain = algos.clipped_policy_loss
    if getattr(plain, "flipped", False):
        return

    def flipped(*args, **kwargs):
        loss, clipped = plain(*args, **kwargs)
        return -loss, clipped

    flipped.flipped = True  # type: ignore[attr-defined]
    algos.clipped_policy_loss = flipped  # type: ignore[assignment]


# ---------------------------------------------------------------- a tiny model
SPECIAL = ["<unk>", "<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
WORDS = ["a", "b", "c", "d", "e", "f", "g", "h", "yes", "no"]
# Each message is "<|role|> content </s>": the end-of-turn token is the eos the engine stops on.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def make_tiny_model(path: Path, seed: int = 0, hidden: int = 64, layers: int = 2) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIAL + WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=SPECIAL[4:],
    )
    tok.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=hidden // 2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
        pad_token_id=vocab["<pad>"],
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).float()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


# ---------------------------------------------------------------- an agent of its own loop
@functools.cache
def _openai_client(base_url: str):
    """One client per process (a session's key is set per call with ``with_options``):
    creating one loads its TLS certificates, ~30 ms of CPU per episode otherwise."""
    import openai

    return openai.OpenAI(base_url=base_url, api_key="per-session", max_retries=0)


def echo_agent(task: dict, session) -> float:
    """Echo-v0 played by an agent with its own loop and the plain ``openai`` client, through
    the rollout workers' endpoint (``agent.entrypoint: rlagent.testing:echo_agent``): it
    shows the env's observation, sends the model's reply back as the action, and returns the
    env's summed reward. The learning test's endpoint variant."""
    client = _openai_client(session.base_url).with_options(api_key=session.api_key)
    env = EchoEnv()
    observation, _ = env.reset(options={"task": task, "episode_id": session.episode_id})
    messages, total, done = [{"role": "user", "content": observation}], 0.0, False
    while not done:
        reply = client.chat.completions.create(model=session.model, messages=messages).choices[0].message
        observation, reward, done, _, _ = env.step(reply.content or "")
        total += float(reward)
        messages += [
            {"role": "assistant", "content": reply.content or ""},
            {"role": "user", "content": observation},
        ]
    return total
