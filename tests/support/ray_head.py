"""A throwaway Ray head on loopback for tests that submit Ray jobs (not a pytest test module)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"no answer from {url} in {timeout} s")


@contextlib.contextmanager
def local_ray_head(num_cpus: int = 2) -> Iterator[tuple[str, dict[str, str]]]:
    """A head on 127.0.0.1 with token auth off (a test cluster only).

    Yields its dashboard address and the environment to run Ray clients with.
    """
    # A short temp dir: Ray's unix socket paths must stay under ~107 characters.
    temp = tempfile.mkdtemp(prefix="rlray-", dir="/tmp")
    env = {
        **os.environ,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "disabled",
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    env.pop("RAY_ADDRESS", None)
    dash = free_port()
    head = subprocess.Popen(
        [
            str(BIN / "ray"),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={free_port()}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dash}",
            f"--num-cpus={num_cpus}",
            f"--temp-dir={temp}",
            "--disable-usage-stats",
            # Ports of their own: another Ray on the machine (e.g. this test session's) holds
            # the defaults, and a job agent that cannot bind never accepts a job.
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--ray-client-server-port={free_port()}",
        ],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{dash}/api/version", 90)
        yield f"http://127.0.0.1:{dash}", env
    finally:  # `ray stop` would end every Ray on the machine; end only this head's group
        os.killpg(head.pid, signal.SIGTERM)
        try:
            # `ray start --block` rarely exits on SIGTERM: the suite's heads all waited out
            # an earlier 30 s here before the SIGKILL that ends them
            head.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)
