"""Network endpoints: rlagent serves nothing itself (``rlagent view`` writes a file), and the
local Ray cluster a run starts answers no HTTP request without Ray's token on any address
but loopback (no dashboard, no metrics exporter; Ray's own agents check the token)."""

from __future__ import annotations

from support import REPO


def test_rlagent_opens_no_server_of_its_own():
    sources = [p for d in ("rlagent", "envs", "rewards") for p in (REPO / d).rglob("*.py")]
    for path in sources:
        text = path.read_text()
        for marker in (
            "http.server",
            "socketserver",
            "HTTPServer",
            "dashboard_host",
            "include_dashboard=True",
            "0.0.0.0",
        ):
            assert marker not in text, f"{path.relative_to(REPO)} mentions {marker}"
