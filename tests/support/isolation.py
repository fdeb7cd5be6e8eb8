"""Sandbox security tests where namespace isolation cannot run: skipped, except under CI.

CI machines allow unprivileged user namespaces, so there a skipped escape test would only hide
that the sandbox's isolation was never checked; with the ``CI`` environment variable set (as
for hadolint in test_dockerfile.py) the test fails instead, saying why.
"""

from __future__ import annotations

import functools
import os

import pytest

from rlagent.envs import sandbox


def isolation_unavailable(
    what: str, missing: str = "unprivileged user namespaces are not available here"
) -> None:
    """End the running test, which checks ``what``: a skip, or a failure when ``CI`` is set."""
    reason = f"{what} needs sandbox isolation: {missing}"
    if os.environ.get("CI"):
        pytest.fail(
            f"{reason}; CI is set, and CI machines must run the sandbox's security tests, not skip them",
            pytrace=False,
        )
    pytest.skip(reason)


def needs_namespaces(test):
    """Decorator: run ``test`` only where the namespace sandbox works, else
    ``isolation_unavailable`` (asked when the test runs, so CI can fail it)."""

    @functools.wraps(test)
    def checked(*args, **kwargs):
        if not sandbox.namespaces_available():  # looked up at call time: tests can patch it
            isolation_unavailable(test.__name__)
        return test(*args, **kwargs)

    return checked
