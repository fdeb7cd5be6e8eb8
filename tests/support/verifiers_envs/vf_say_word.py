"""``verifiers/vf-say-word``: a single-turn verifiers taskset. The model must reply with one
word; rewards: ``exact`` (weight 1), ``brief`` (at most three words, weight 0.5); metric
``reply_chars``."""

import verifiers.v1 as vf

SYSTEM_PROMPT = "Answer with a single word."


class WordData(vf.TaskData):
    answer: str


class WordTaskConfig(vf.TaskConfig):
    fail_scoring: bool = False
    """Make ``exact`` raise, as a broken reward function would."""


class WordTask(vf.Task[WordData, vf.State, WordTaskConfig]):
    @vf.reward
    async def exact(self, trace: vf.Trace) -> float:
        if self.config.fail_scoring:
            raise RuntimeError("scoring broke")
        return float(trace.last_reply.strip(" .!").lower() == self.data.answer)

    @vf.reward(weight=0.5)
    async def brief(self, trace: vf.Trace) -> float:
        return float(len(trace.last_reply.split()) <= 3)

    @vf.metric
    async def reply_chars(self, trace: vf.Trace) -> float:
        return float(len(trace.last_reply))


class WordConfig(vf.TasksetConfig):
    words: list[str] = ["apple", "river", "stone", "cloud", "maple"]
    task: WordTaskConfig = WordTaskConfig()


class WordTaskset(vf.Taskset[WordTask, WordConfig]):
    def load(self):
        for word in self.config.words:
            data = WordData(
                prompt=f"Reply with the word '{word}' and nothing else.",
                system_prompt=SYSTEM_PROMPT,
                answer=word,
            )
            yield WordTask(data, self.config.task)


__all__ = ["WordTaskset"]
