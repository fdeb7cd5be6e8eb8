"""The learner stage: DeepSpeed ranks that update the policy (and PPO's critic).

- ``worker``: the ``Learner`` actor (one rank: setup, the update); ``state``: its weights and
  training state going out and coming back (weight sync, checkpoints);
- ``group``: the ``LearnerGroup`` facade the driver calls;
- ``models``: the policy, reference and critic models and their DeepSpeed set-up;
- ``logprobs``: per-token logprobs without B x T x V logits;
- ``tensors``: a batch as target-aligned tensors, the advantages, each rank's rows.

It imports neither the rollout nor the scoring stage (docs/architecture.md).
"""
