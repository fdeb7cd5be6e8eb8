"""A run at a glance: ``rlagent plot`` and the summary a finished run prints, from a
metrics file with numbers worked by hand."""

import json
import subprocess
import sys
from pathlib import Path

from rlagent.plot import finish_run, plot, read_metrics, summary

RLAGENT = str(Path(sys.executable).parent / "rlagent")


def _row(step, reward, success, tools, step_s):
    return {
        "step": step,
        "reward/mean": reward,
        "reward/format/mean": 1.0,
        "reward/outcome/mean": reward - 0.2,
        "success/rate": success,
        "info/tool_calls": tools,
        "timing/rollout_s": step_s - 2.0,
        "timing/train_s": 1.5,
        "timing/sync_s": 0.5,
        "timing/step_s": step_s,
    }


def _run(tmp_path: Path, rows: list[dict]) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


ROWS = [
    _row(1, 0.2, 0.0, 0.0, 10.0),
    _row(2, 0.4, 0.25, 0.5, 12.0),
    _row(3, 0.9, 0.5, 1.0, 14.0),  # logged again by the resumed run below: its row counts
    _row(3, 0.8, 0.75, 1.0, 14.0),
    _row(4, 1.2, 1.0, 1.0, 16.0),
]


def test_summary_by_hand(tmp_path):
    run = _run(tmp_path, ROWS)
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3, 4]
    lines = summary(run, {"run dir": str(run)})
    # first two steps (0.2, 0.4) -> last two (0.8, 1.2); success (0, 0.25) -> (0.75, 1.0)
    assert lines[0] == "reward:     0.300 -> 1.000  (first two steps -> last two)"
    assert lines[1] == "success:    0.12 -> 0.88  (first two steps -> last two)"
    assert lines[2] == "tool calls: 0.25 -> 1.00  (first two steps -> last two)"
    # steps of 10, 12, 14, 16 s: rollout 8, 10, 12, 14 (mean 11), train 1.5, sync 0.5
    assert lines[3] == "per step:   13.0 s over 4 steps (rollout 11.0, train 1.5, sync 0.5)"
    assert lines[4] == f"run dir:    {run}"


def test_plot_writes_a_png_and_finish_run_names_it(tmp_path):
    run = _run(tmp_path, ROWS)
    path = plot(run)
    assert path == run / "curves.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = finish_run(run)
    assert f"curves:     {run / 'curves.png'}" in lines
    assert not any(line.startswith(("viewer", "W&B")) for line in lines)  # none saved here


def test_plot_command_and_its_errors_are_one_line(tmp_path):
    run = _run(tmp_path, ROWS)
    out = subprocess.run(
        [RLAGENT, "plot", str(run), "--out", str(tmp_path / "c.png")], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.strip() == str(tmp_path / "c.png"), out.stderr
    missing = subprocess.run([RLAGENT, "plot", str(tmp_path / "nope")], capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stderr.strip().splitlines() == [
        f"rlagent: {tmp_path / 'nope'}: no metrics.jsonl (not a run directory, or no step ended yet)"
    ]
    (run / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2,\n')
    bad = subprocess.run([RLAGENT, "plot", str(run)], capture_output=True, text=True)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert f"{run / 'metrics.jsonl'}:2: not a JSON line" in bad.stderr
