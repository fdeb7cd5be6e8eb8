"""``pytest --flip-policy-loss``: every Ray worker of the session (the learner ranks among
them) negates the policy-gradient loss, so a correct learning test must then fail. A check
that the learning tests can fail, not part of any run."""

from __future__ import annotations


def install() -> None:
    """Ray's ``worker_process_setup_hook``: runs in each worker process before any task."""
    from rlagent import algos

    plain = algos.clipped_policy_loss
    if getattr(plain, "flipped", False):
        return

    def flipped(*args, **kwargs):
        loss, clipped = plain(*args, **kwargs)
        return -loss, clipped

    flipped.flipped = True
    algos.clipped_policy_loss = flipped
