"""``verifiers/vf-guess-number``: a multi-turn verifiers environment. The env's ``run`` plays
the user: it reads each reply as a guess and answers "higher", "lower" or asks for a number,
until the guess is right or a limit ends the exchange. Reward ``found`` (the task's, weight 1);
the env records metric ``guesses`` after the exchange; the task's ``@vf.stop`` ends it after
three replies that hold no number."""

import random
import re

import verifiers.v1 as vf


class GuessData(vf.TaskData):
    secret: int
    high: int


class GuessTask(vf.Task[GuessData, vf.State, vf.TaskConfig]):
    @vf.reward
    async def found(self, trace: vf.Trace) -> float:
        return float(bool(trace.info.get("found")))

    @vf.stop
    async def no_numbers(self, trace: vf.Trace) -> bool:
        return trace.info.get("invalid", 0) >= 3


class GuessConfig(vf.TasksetConfig):
    high: int = 20
    count: int = 8


class GuessTaskset(vf.Taskset[GuessTask, GuessConfig]):
    def load(self):
        high = self.config.high
        for i in range(self.config.count):
            data = GuessData(
                name=f"guess-{i}",
                prompt=f"I am thinking of a whole number from 1 to {high}. Guess it: reply with "
                "one number; I will say higher or lower.",
                system_prompt="You are playing a guessing game.",
                secret=random.Random(i).randint(1, high),
                high=high,
            )
            yield GuessTask(data, self.config.task)


class GuessEnvConfig(vf.EnvConfig):
    player: vf.AgentConfig = vf.AgentConfig()


class GuessEnv(vf.Env[GuessEnvConfig]):
    async def run(self, task, agents):
        secret = task.data.secret
        async with agents.player.interaction(task) as interaction:
            trace = interaction.trace
            segment = await interaction.turn()
            while not segment.terminated:
                numbers = re.findall(r"-?\d+", segment.last_reply)
                if not numbers:
                    trace.info["invalid"] = trace.info.get("invalid", 0) + 1
                    reply = "Reply with one whole number."
                elif int(numbers[0]) == secret:
                    trace.info["found"] = True
                    break
                else:
                    reply = "higher" if int(numbers[0]) < secret else "lower"
                segment = await interaction.turn(reply)
        interaction.trace.record_metric("guesses", interaction.trace.num_turns)


__all__ = ["GuessEnv", "GuessTaskset"]
