"""The scoring stage: reward plugins run by the reward service, and every reward total.

- ``service``: plugin discovery and the ``RewardService`` actor (``start_reward_service``,
  the facade); it takes an ``EpisodeView`` and returns ``Scores``.
- ``combine``: pure; the only place a total reward is computed.
- ``offline``: ``rlagent rewards score``, a plugin on saved rollouts.

It imports neither the rollout nor the learner stage (docs/architecture.md).
"""
