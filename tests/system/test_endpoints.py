"""Network endpoints: rlagent serves nothing itself (``rlagent view`` writes a file), and the
local Ray cluster a run starts answers no HTTP request without Ray's token on any address
but loopback (no dashboard, no metrics exporter; Ray's own agents check the token)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

# In a fresh process: start Ray the way `rlagent train` does, then try every port the
# cluster listens on from outside loopback with plain HTTP requests.
PROBE = r"""
import json, socket, time, urllib.error, urllib.request
import psutil
from rlagent.config import load_config
from rlagent.remote import ray_session

def host_ip():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing address
        return s.getsockname()[0]

with ray_session(num_cpus=1):
    time.sleep(3)  # the agents start after ray.init returns
    procs = psutil.Process().children(recursive=True)
    ports = {(c.laddr.ip, c.laddr.port) for p in procs for c in p.net_connections("inet")
             if c.status == psutil.CONN_LISTEN}
    ip, answers = host_ip(), []
    for bound, port in sorted(ports):
        if bound.startswith("127."):
            continue
        for path in ("/", "/metrics", "/api/jobs/", "/api/job_agent/jobs/x"):
            try:
                with urllib.request.urlopen(f"http://{ip}:{port}{path}", timeout=3) as r:
                    answers.append([bound, port, path, r.status])
            except urllib.error.HTTPError as err:
                answers.append([bound, port, path, err.code])
            except Exception as err:  # not HTTP (Ray's gRPC ports) or not reachable
                answers.append([bound, port, path, type(err).__name__])
print("ANSWERS", json.dumps(answers))
"""


@pytest.mark.slow
def test_local_ray_answers_no_http_request_without_its_token():
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(Path.home()),
        "RAY_ADDRESS": "",
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    line = next((x for x in out.stdout.splitlines() if x.startswith("ANSWERS ")), None)
    assert line, out.stdout[-2000:] + out.stderr[-2000:]
    answers = json.loads(line.removeprefix("ANSWERS "))
    assert answers, "the cluster listens on no outside address at all?"
    opened = [a for a in answers if a[3] == 200]
    assert not opened, f"answered without a token: {opened}"
    assert any(a[3] == 401 for a in answers)  # Ray's agents are there, and ask for the token
