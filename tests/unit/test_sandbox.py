"""The Python sandbox: escape attempts are stopped and reported as results; the caller lives on.

Every test runs real code in a real sandboxed process (about 50 ms each); limits are small so
the runaway cases (fork bomb, 10 GB, infinite loop, 1 GB of output) end within seconds.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
from support.isolation import isolation_unavailable, needs_namespaces

import rlagent.envs.sandbox
from rlagent.envs.sandbox import ERROR_KINDS, Sandbox, SandboxLimits

LIMITS = SandboxLimits(
    wall_s=2.0, cpu_s=2, memory_mb=512, max_processes=16, max_output_bytes=16 * 1024, disk_mb=8
)


def _no_namespaces(monkeypatch) -> None:
    """As on a machine without unprivileged user namespaces (where the probe's unshare fails)."""
    monkeypatch.setattr(rlagent.envs.sandbox, "namespaces_available", lambda python=None: False)


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(LIMITS)


def _sandbox_processes() -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if "_sandbox_child.py" in line]


def test_code_runs_and_returns_output(sandbox):
    result = sandbox.run("import sys\nprint(6 * 7)\nprint('warn', file=sys.stderr)")
    assert (result.ok, result.error, result.exit_code) == (True, None, 0)
    assert result.stdout == "42\n" and result.stderr == "warn\n"
    assert 0 < result.wall_s < LIMITS.wall_s


def test_installed_packages_are_importable(sandbox):
    result = sandbox.run("import fractions, sympy\nprint(sympy.gcd(84, 36))")
    assert result.ok and result.stdout == "12\n", result


@pytest.mark.parametrize(
    "code, kind, needle",
    [
        ("1 / 0", "exception", "ZeroDivisionError: division by zero"),
        ("raise SystemExit(2)", "exit", ""),
        ("def f(:\n  pass", "exception", "SyntaxError"),
        ("import ctypes\nctypes.string_at(0)", "crash", ""),
    ],
)
def test_failures_are_results_not_exceptions(sandbox, code, kind, needle):
    result = sandbox.run(code)
    assert not result.ok and result.error == kind and kind in ERROR_KINDS
    assert needle in result.stderr
    # The runner's own frames are not shown to the model.
    assert "_sandbox_child" not in result.stderr


def test_allocating_10_gb_is_a_memory_error(sandbox):
    result = sandbox.run("x = bytearray(10 * 1024 ** 3)")
    assert result.error == "memory" and "MemoryError" in result.stderr


def test_infinite_loop_hits_the_wall_clock(sandbox):
    result = sandbox.run("while True:\n    pass")
    assert result.error == "timeout" and result.wall_s < LIMITS.wall_s + 1.0


def test_cpu_limit():
    limits = SandboxLimits(wall_s=10.0, cpu_s=1)
    result = Sandbox(limits).run("while True:\n    pass")
    assert result.error in ("cpu_time", "killed"), result


def test_printing_1_gb_hits_the_output_cap(sandbox):
    result = sandbox.run("import sys\nfor _ in range(1024):\n    sys.stdout.write('x' * 2**20)")
    assert result.error == "output_limit"
    assert len(result.stdout) + len(result.stderr) <= LIMITS.max_output_bytes
    assert result.wall_s < LIMITS.wall_s


def test_fork_bomb_is_stopped_and_leaves_no_process(sandbox):
    if sandbox.process_limit == "none":
        isolation_unavailable(
            "the fork-bomb test", "no process limit here (uid 0 without a pids cgroup): not safe to run"
        )
    code = "import os\nwhile True:\n    os.fork()"
    result = sandbox.run(code)
    assert result.error in ("exception", "timeout"), result
    assert result.error == "timeout" or "BlockingIOError" in result.stderr
    assert _sandbox_processes() == []
    assert sandbox.run("print('still here')").stdout == "still here\n"


def test_private_directory_is_cwd_home_and_tmpdir_and_is_removed(sandbox):
    code = (
        "import os, tempfile\n"
        "open('notes.txt', 'w').write('kept during the call')\n"
        "print(os.getcwd()); print(os.environ['HOME']); print(tempfile.gettempdir())\n"
        "print(open(os.path.join(os.getcwd(), 'notes.txt')).read())"
    )
    result = sandbox.run(code)
    cwd, home, tmp, text = result.stdout.splitlines()
    assert cwd == home == tmp and text == "kept during the call"
    assert not os.path.exists(cwd)


def test_caller_environment_is_not_passed_on(sandbox, monkeypatch):
    monkeypatch.setenv("RLAGENT_TEST_SECRET", "hunter2")
    result = sandbox.run("import os\nprint(os.environ.get('RLAGENT_TEST_SECRET'))")
    assert result.stdout == "None\n"


def test_missing_interpreter_is_a_sandbox_error():
    result = Sandbox(LIMITS, isolation="none", python="/nonexistent/python").run("print(1)")
    assert (result.ok, result.error, result.exit_code) == (False, "sandbox", None)
    assert "cannot start the sandbox" in result.stderr


def test_bad_isolation_and_limits_are_rejected():
    with pytest.raises(ValueError, match="isolation must be"):
        Sandbox(isolation="docker")
    with pytest.raises(ValueError, match="wall_s must be > 0"):
        SandboxLimits(wall_s=0)


def test_weaker_mode_still_enforces_limits_and_output_cap():
    sandbox = Sandbox(LIMITS, isolation="none")
    assert sandbox.run("print(2 + 2)").stdout == "4\n"
    assert sandbox.run("x = bytearray(10 * 1024 ** 3)").error == "memory"
    assert sandbox.run("while True:\n    pass").error == "timeout"
    assert sandbox.run("while True:\n    print('y' * 1000)").error == "output_limit"


def test_auto_refuses_to_run_without_isolation(monkeypatch):
    # "auto" used to fall back to "none" silently: model code with network and file access.
    _no_namespaces(monkeypatch)
    with pytest.raises(RuntimeError, match="user namespaces are unavailable") as caught:
        Sandbox(LIMITS)
    message = str(caught.value)
    assert "seccomp" in message and "env.kwargs.sandbox_isolation: none" in message
    with pytest.raises(RuntimeError, match="env.kwargs.sandbox_isolation: none"):
        Sandbox(LIMITS, isolation="namespaces")
    explicit = Sandbox(LIMITS, isolation="none")  # asked for: it runs
    assert explicit.isolation == "none" and explicit.run("print(1)").stdout == "1\n"


@pytest.mark.parametrize("ci", ["1", None])
def test_missing_isolation_fails_under_ci_and_skips_elsewhere(monkeypatch, ci):
    _no_namespaces(monkeypatch)
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    ran = []

    @needs_namespaces
    def escape_attempt(tmp_path):
        ran.append(tmp_path)

    outcome = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(outcome, match="user namespaces are not available") as caught:
        escape_attempt(tmp_path=None)
    assert ran == [] and ("CI is set" in str(caught.value)) is bool(ci)


# --- namespace mode: escape attempts ------------------------------------------------------
@needs_namespaces
def test_no_network_even_to_localhost():
    sandbox = Sandbox(LIMITS, isolation="namespaces")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.2)
        port = server.getsockname()[1]
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)"
        result = sandbox.run(code)
        assert result.error == "exception" and "Network is unreachable" in result.stderr
        with pytest.raises(TimeoutError):
            server.accept()


@needs_namespaces
@pytest.mark.parametrize("where", ["tmp_path", "home", "cwd_of_caller"])
def test_writes_outside_the_private_directory_fail(tmp_path, where):
    target = {
        "tmp_path": tmp_path / "escaped.txt",
        "home": Path.home() / "rlagent-sandbox-escaped.txt",
        "cwd_of_caller": Path.cwd() / "rlagent-sandbox-escaped.txt",
    }[where]
    sandbox = Sandbox(LIMITS, isolation="namespaces")
    result = sandbox.run(f"open({str(target)!r}, 'w').write('out')")
    assert result.error == "exception", result
    assert "Read-only file system" in result.stderr or "No such file" in result.stderr
    assert not target.exists()


@needs_namespaces
@pytest.mark.parametrize(
    "code",
    [
        # undo the read-only mounts
        (
            "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "assert libc.mount(None, b'/', None, 0x1020, None) == 0, ctypes.get_errno()"
        ),
        # a fresh /proc or sysfs would be writable
        (
            "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nos.mkdir('p')\n"
            "assert libc.mount(b'proc', b'p', b'proc', 0, None) == 0, ctypes.get_errno()"
        ),
        # a nested user namespace would hand back every capability
        (
            "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "assert libc.unshare(0x10000000) == 0, ctypes.get_errno()"
        ),
        "open('/proc/sys/kernel/hostname', 'w').write('x')",
    ],
)
def test_privileged_escapes_fail(code):
    result = Sandbox(LIMITS, isolation="namespaces").run(code)
    assert result.error == "exception", result


@needs_namespaces
def test_only_own_processes_and_no_capabilities_are_visible():
    code = (
        "import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
        "print([l for l in open('/proc/self/status') if l.startswith('CapEff')][0].split()[1])\n"
        "print(sorted(os.listdir('/tmp')))"
    )
    result = Sandbox(LIMITS, isolation="namespaces").run(code)
    pids, cap_eff, tmp_entries = result.stdout.splitlines()
    assert pids == "[1, 2]" and int(cap_eff, 16) == 0
    assert "pytest-of" not in tmp_entries  # the caller's /tmp is hidden


@needs_namespaces
def test_credentials_in_the_callers_home_are_hidden():
    secret = Path.home() / f".rlagent-sandbox-secret-{os.getpid()}"
    secret.write_text("api-key-1234")
    try:
        code = f"import os\nprint(os.listdir({str(Path.home())!r}))\nprint(open({str(secret)!r}).read())"
        result = Sandbox(LIMITS, isolation="namespaces").run(code)
    finally:
        secret.unlink()
    assert result.error == "exception" and "FileNotFoundError" in result.stderr, result
    # Only the interpreter's own directories stay (e.g. ~/.pyenv), bound back into the empty home.
    assert secret.name not in result.stdout and "api-key-1234" not in result.stdout + result.stderr
