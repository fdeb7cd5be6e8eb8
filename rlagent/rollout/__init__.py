"""The rollout stage: vLLM engines playing multi-turn episodes in the envs.

- ``engine``: every vLLM call (token ids in; ids and sampling logprobs out; weights in place);
- ``chat``: the chat template as token ids (token-in/token-out: never re-tokenised);
- ``episodes``: ``EpisodeRunner``, the agent loop over one engine (no Ray);
- ``pool``: the ``RolloutWorker`` actor and the ``RolloutPool`` facade the driver calls.

It imports neither the scoring nor the learner stage (docs/architecture.md).
"""
