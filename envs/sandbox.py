"""Run untrusted Python in a separate, confined process, and never raise because of it.

``Sandbox.run(code)`` starts ``python -I -S envs/_sandbox_child.py`` with the code on stdin and
returns a ``SandboxResult``: ``ok``, captured ``stdout``/``stderr`` (at most
``max_output_bytes`` together) and, on failure, an ``error`` kind from ``ERROR_KINDS``.
Timeouts, memory exhaustion, runaway output, crashes and sandbox set-up failures are results;
the caller (a rollout worker running many episodes) always survives.

What is enforced (see docs/envs.md, rlagent/Tool-v0, for how it was checked):

- always: a fresh interpreter per call with a scrubbed environment (no caller variables, so no
  API keys); CPU seconds (RLIMIT_CPU), address space (RLIMIT_AS), file size (RLIMIT_FSIZE), no
  core dumps; wall-clock limit, after which the whole process group is SIGKILLed; output cap
  (the caller stops reading and kills); a private temporary directory as cwd, HOME and TMPDIR,
  deleted afterwards.
- ``isolation="namespaces"`` (Linux with unprivileged user namespaces): new user, mount, net,
  pid, ipc and uts namespaces. No network (only a loopback device that is down); the file
  system is read-only except the working directory (a size-capped tmpfs), /tmp, /var/tmp,
  /run, /dev/shm and the caller's home (its credentials) are hidden behind empty read-only
  tmpfs, /proc shows only the sandbox's
  processes; capabilities are dropped for good (locked securebits, empty bounding set,
  no_new_privs, no nested user namespaces), so the mounts cannot be undone; when the code's
  main process ends, the kernel kills every process it left behind.
- process count: a ``pids`` cgroup per call where one can be created (root, or a delegated
  cgroup), else RLIMIT_NPROC inside the private user namespace (the kernel counts processes
  per user namespace, so the limit is per call). Neither for uid 0 without a cgroup: the
  kernel does not apply RLIMIT_NPROC to root, and only the wall clock stops a fork bomb.
- ``isolation="none"``, only when asked for by name: rlimits, wall clock, output cap and the
  private directory only. The code can read and write whatever the caller's user can, and use
  the network. ``"auto"`` never falls back to it: where namespaces are unavailable, ``"auto"``
  (like ``"namespaces"``) is an error at construction, so running model code without
  isolation is a choice written in the config, never a silent downgrade.
"""

from __future__ import annotations

import functools
import itertools
import marshal
import os
import select
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rlagent.envs import _sandbox_child as child

CHILD_SCRIPT = str(Path(child.__file__).resolve())
ERROR_KINDS = (
    "exception",
    "memory",
    "exit",
    "timeout",
    "cpu_time",
    "killed",
    "crash",
    "output_limit",
    "sandbox",
)
# Hidden behind empty read-only tmpfs in namespace mode (common homes of unix sockets);
# the caller's home directory too (credentials: ~/.netrc, ~/.ray/auth_token, ~/.ssh).
HIDDEN_DIRS = ("/tmp", "/var/tmp", "/run", "/dev/shm")
Isolation = Literal["auto", "namespaces", "none"]
# Why a machine has no unprivileged user namespaces, and what to do: the constructor's error.
_NO_NAMESPACES = (
    "unprivileged user namespaces are unavailable here (e.g. Docker's default seccomp profile "
    "blocks unshare, a container run as root without them, or kernel.unprivileged_userns_clone=0 "
    "/ user.max_user_namespaces=0; check with `unshare -rn true`), so model-written code would "
    "run without isolation, with network access and the caller's files. Either run where user "
    "namespaces work, or accept running it unisolated by saying so: "
    "env.kwargs.sandbox_isolation: none in the run config (Sandbox(isolation='none'))"
)


@dataclass(frozen=True)
class SandboxLimits:
    """Per-call limits. Memory is per process: all of a call's processes together may use up
    to ``max_processes * memory_mb`` (no memory cgroup is used)."""

    wall_s: float = 5.0
    """Wall-clock seconds before the whole call is killed (error ``timeout``)."""
    cpu_s: int = 5
    """CPU seconds per process (RLIMIT_CPU; error ``cpu_time``)."""
    memory_mb: int = 512
    """Address space per process (RLIMIT_AS; a ``MemoryError`` gives error ``memory``)."""
    max_processes: int = 16
    """Processes and threads of one call (pids cgroup or RLIMIT_NPROC, see module doc)."""
    max_output_bytes: int = 64 * 1024
    """stdout + stderr kept; past this the call is killed (error ``output_limit``)."""
    disk_mb: int = 32
    """Largest file (RLIMIT_FSIZE) and, in namespace mode, size of the working directory."""

    def __post_init__(self):
        for name in ("wall_s", "cpu_s", "memory_mb", "max_processes", "max_output_bytes", "disk_mb"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SandboxLimits.{name} must be > 0, got {getattr(self, name)!r}")


@dataclass
class SandboxResult:
    ok: bool
    stdout: str
    stderr: str
    error: str | None  # None when ok, else one of ERROR_KINDS
    exit_code: int | None  # the process's status (128 + signal when killed); None if not run
    wall_s: float


@functools.cache
def namespaces_available(python: str = sys.executable) -> bool:
    """Whether this machine lets an unprivileged process build the namespace sandbox (probed
    once per interpreter path by running ``pass`` in it)."""
    if not sys.platform.startswith("linux"):
        return False
    probe = Sandbox(isolation="none", python=python, limits=SandboxLimits(wall_s=10))
    probe.isolation = "namespaces"  # set after construction: __init__ would ask us again
    return probe.run("pass").ok


@functools.lru_cache(maxsize=1)
def _pids_cgroup_parent() -> str | None:
    """A cgroup directory under which we may create per-call ``pids`` cgroups, or None."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    candidates = []
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):  # cgroup v1
            candidates.append(f"/sys/fs/cgroup/pids{path}")
        elif hierarchy == "0" and controllers == "":  # cgroup v2
            candidates.append(f"/sys/fs/cgroup{path.rstrip('/')}")
    for parent in candidates:
        probe = os.path.join(parent, f"rlagent-probe-{os.getpid()}")
        try:
            os.mkdir(probe)
        except OSError:
            continue
        try:
            Path(probe, "pids.max").write_text("4")
            return parent
        except OSError:
            continue
        finally:
            _remove_cgroup(probe)
    return None


def _home_dirs() -> list[str]:
    """The caller's home directory (and root's), to hide; never "/" itself."""
    homes = {os.path.realpath(os.path.expanduser("~")), "/root"}
    return sorted(h for h in homes if h != "/" and os.path.isdir(h))


def _remove_cgroup(path: str) -> None:
    for _ in range(50):  # rmdir fails (EBUSY) until the last task is reaped
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)


class Sandbox:
    """Runs code strings under ``limits``; thread-safe (one process per call, no shared state).

    ``isolation``: ``"namespaces"``, ``"none"``, or ``"auto"`` (namespaces when available).
    Without namespaces, ``"auto"`` and ``"namespaces"`` raise at construction: only an explicit
    ``"none"`` runs code unisolated. ``python``: the interpreter to run the code with (default:
    this one, so the code can import what this environment has installed).
    """

    _calls = itertools.count()

    def __init__(
        self, limits: SandboxLimits | None = None, isolation: Isolation = "auto", python: str | None = None
    ):
        self.limits = limits or SandboxLimits()
        self.python = python or sys.executable
        if isolation not in ("auto", "namespaces", "none"):
            raise ValueError(f"isolation must be 'auto', 'namespaces' or 'none', got {isolation!r}")
        if isolation != "none":
            if not namespaces_available(self.python):
                raise RuntimeError(
                    f"sandbox isolation {isolation!r} (Tool-v0: "
                    f"env.kwargs.sandbox_isolation): {_NO_NAMESPACES}"
                )
            isolation = "namespaces"
        self.isolation = isolation
        self._cgroup_parent = _pids_cgroup_parent()
        # The kernel exempts uid 0 from RLIMIT_NPROC, and outside a private user namespace
        # the limit would count every process of the caller's user.
        self._nproc_rlimit = isolation == "namespaces" and os.geteuid() != 0
        # -I: ignore PYTHON* variables and the user site. For our own interpreter also -S
        # (no site module: its .pth processing, e.g. editable installs, costs ~20 ms a call)
        # with our site-packages handed over instead.
        self._python_flags, self._site_dirs = ["-I"], []
        if os.path.realpath(self.python) == os.path.realpath(sys.executable):
            paths = sysconfig.get_paths()
            self._python_flags = ["-I", "-S"]
            self._site_dirs = list(dict.fromkeys([paths["purelib"], paths["platlib"]]))

    def __repr__(self) -> str:
        return f"Sandbox(isolation={self.isolation!r}, limits={self.limits})"

    @property
    def process_limit(self) -> str:
        """How ``max_processes`` is enforced: ``cgroup``, ``rlimit`` or ``none``."""
        if self._cgroup_parent:
            return "cgroup"
        return "rlimit" if self._nproc_rlimit else "none"

    def run(self, code: str) -> SandboxResult:
        """Run ``code`` as a ``__main__`` module; every failure is a result, never a raise."""
        start = time.monotonic()
        workdir = tempfile.mkdtemp(prefix="rlagent-sbx-")
        cgroup = self._make_cgroup()
        try:
            status, out, err, error = self._spawn_and_collect(code, workdir, cgroup, start)
        except OSError as exc:  # e.g. the interpreter is missing, out of pids or fds
            status, out, err, error = None, b"", f"cannot start the sandbox: {exc}".encode(), "sandbox"
        finally:
            if cgroup:
                _remove_cgroup(cgroup)
            shutil.rmtree(workdir, ignore_errors=True)
        stdout, stderr = (b.decode("utf-8", errors="replace") for b in (out, err))
        if error is None:
            error = _classify(status, stderr)
        return SandboxResult(
            ok=error is None,
            stdout=stdout,
            stderr=stderr,
            error=error,
            exit_code=status,
            wall_s=time.monotonic() - start,
        )

    def _make_cgroup(self) -> str | None:
        if not self._cgroup_parent:
            return None
        path = os.path.join(self._cgroup_parent, f"rlagent-sbx-{os.getpid()}-{next(self._calls)}")
        try:
            os.mkdir(path)
            Path(path, "pids.max").write_text(str(self.limits.max_processes))
            return path
        except OSError:
            _remove_cgroup(path)
            return None

    def _child_config(self, workdir: str, cgroup: str | None) -> dict:
        lim = self.limits
        keep = {
            os.path.realpath(p)
            for p in (sys.prefix, sys.base_prefix, self.python, os.path.realpath(self.python))
        }
        return {
            "isolation": self.isolation,
            "workdir": workdir,
            "cpu_s": lim.cpu_s,
            "memory_mb": lim.memory_mb,
            "disk_mb": lim.disk_mb,
            "max_processes": lim.max_processes,
            "nproc_rlimit": self._nproc_rlimit,
            "cgroup_procs": os.path.join(cgroup, "cgroup.procs") if cgroup else "",
            "hide": [*HIDDEN_DIRS, *_home_dirs()],
            "keep_visible": sorted(keep),
            "site_dirs": self._site_dirs,
        }

    def _spawn_and_collect(self, code: str, workdir: str, cgroup: str | None, start: float):
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": workdir,
            "TMPDIR": workdir,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "MPLBACKEND": "Agg",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        cmd = [self.python, *self._python_flags, CHILD_SCRIPT]
        payload = marshal.dumps((self._child_config(workdir, cgroup), code))
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env=env,
            start_new_session=True,
        )
        try:
            try:
                proc.stdin.write(payload)
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass  # the child died before reading; its status tells why
            out, err, error = self._collect(proc, start + self.limits.wall_s)
        finally:
            # Kill the group before reaping: until the leader is reaped its id (the group id)
            # cannot be reused, so the signal cannot reach an unrelated process.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
            for stream in (proc.stdout, proc.stderr):
                stream.close()
        return proc.returncode, out, err, error

    def _collect(self, proc: subprocess.Popen, deadline: float):
        """Read stdout/stderr until both close, the deadline passes or the cap is reached."""
        out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
        bufs = {out_fd: bytearray(), err_fd: bytearray()}
        open_fds = set(bufs)
        cap = self.limits.max_output_bytes
        exited_at = None
        error = None
        while open_fds:
            now = time.monotonic()
            if now >= deadline:
                error = "timeout"
                break
            if exited_at is None and _has_exited(proc.pid):
                exited_at = now
            if exited_at is not None and now - exited_at > 0.2:
                break  # exited, but something it started still holds the pipes open
            ready, _, _ = select.select(list(open_fds), [], [], min(deadline - now, 0.1))
            for fd in ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    open_fds.discard(fd)
                bufs[fd] += chunk
            if len(bufs[out_fd]) + len(bufs[err_fd]) > cap:
                del bufs[err_fd][max(cap - len(bufs[out_fd]), 0) :]
                del bufs[out_fd][cap:]
                error = "output_limit"
                break
        return bytes(bufs[out_fd]), bytes(bufs[err_fd]), error


def _has_exited(pid: int) -> bool:
    """True once ``pid`` has exited, without reaping it."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _classify(status: int | None, stderr: str) -> str | None:
    """The error kind for a child that ran to its end (not killed by the caller)."""
    if status == 0:
        return None
    if status == child.EXIT_SETUP and child.SETUP_PREFIX in stderr:
        return "sandbox"
    if status == child.EXIT_MEMORY:
        return "memory"
    if status == child.EXIT_EXCEPTION:
        return "exception"
    if status == 128 + signal.SIGXCPU:
        return "cpu_time"
    if status == 128 + signal.SIGKILL:
        return "killed"  # RLIMIT_CPU's hard limit, or the kernel's OOM killer
    if status is not None and status > 128:
        return "crash"  # e.g. SIGSEGV from a C extension
    return "exit"
