"""The process side of ``rlagent.envs.sandbox``: confine this process, then run untrusted code.

Run as a script (``python -I -S _sandbox_child.py``, with ``marshal.dumps((config, code))`` on
stdin), never
imported by the caller, and standard library only: it must start fast and must not depend on
where (or whether) rlagent is importable. The caller turns exit statuses into error kinds, so
the exit codes below are part of the protocol.

With ``isolation == "namespaces"`` the process tree is::

    stage 0 (this script)      unshares user, mount, net, pid, ipc, uts namespaces; waits
      pid 1 of the new pid ns  mounts (private /proc, hidden /tmp & co, writable tmpfs workdir,
                               everything else read-only), drops capabilities; reaps
        worker                 sets rlimits, runs the code

When pid 1 exits the kernel kills every process left in the pid namespace, so nothing the code
starts outlives the call. With ``isolation == "none"`` stage 0 sets the rlimits and runs the
code itself.
"""

import marshal
import os
import resource
import signal
import sys

EXIT_EXCEPTION = 1  # uncaught exception (Python's own convention)
EXIT_MEMORY = 3  # MemoryError
EXIT_SETUP = 125  # the sandbox could not be set up; stderr starts with SETUP_PREFIX
SETUP_PREFIX = "rlagent-sandbox: setup failed: "

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 0x20, 0x400, 0x800, 0x1000
MS_REC, MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 0x4000, 0x40000, 0x200000, 0x1000000
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS = 1, 24, 28, 38
# SECBIT_NOROOT, SECBIT_NO_SETUID_FIXUP, SECBIT_KEEP_CAPS, SECBIT_NO_CAP_AMBIENT_RAISE, each
# with its _LOCKED bit: execve never grants capabilities again, even to uid 0 in the namespace.
SECUREBITS_LOCKED_DOWN = 0xFF
_MOUNT_OPTION_FLAGS = {
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
    "strictatime": MS_STRICTATIME,
}

# Loaded only in namespace mode: importing ctypes costs ~6 ms, and every call pays start-up.
ctypes = None
_libc = None


class SetupError(Exception):
    pass


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(err)} (errno {err})")


def _mount(source, target, fstype, flags, data=None) -> None:
    enc = lambda s: None if s is None else s.encode()
    _check(
        _libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
        f"mount {fstype or ''} {target}",
    )


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


# --- stage 0 ------------------------------------------------------------------------------
def _enter_namespaces() -> None:
    global ctypes, _libc
    import ctypes

    _libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.geteuid(), os.getegid()
    _check(
        _libc.unshare(
            CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
        ),
        "unshare",
    )
    # Map only ourselves: uid 0 inside is our own uid outside, nobody else's files are ours.
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"0 {uid} 1")
    _write("/proc/self/gid_map", f"0 {gid} 1")


# --- pid 1 --------------------------------------------------------------------------------
def _mountinfo() -> list[tuple[str, str]]:
    """(mount point, per-mount options) of every mount, in mount order."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")  # "\040" is a space
            out.append((point, fields[5]))
    return out


def _is_under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _setup_mounts(cfg: dict) -> None:
    workdir = cfg["workdir"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount propagates back
    # A /proc of our own pid namespace: the host's /proc would show (and, through
    # /proc/PID/root, reach) the caller's processes and their mount namespace.
    try:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY)
    except SetupError:
        _mount("tmpfs", "/proc", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, "size=4k")
    # Empty, read-only tmpfs over the usual homes of unix sockets and scratch files (Ray's
    # sockets live in /tmp/ray): read-only mounts do not stop connect() on a socket file.
    # The interpreter's own directories stay: e.g. a virtualenv under /tmp is bound back
    # into the empty /tmp, through a handle opened before the tmpfs covered it.
    keep = [p for p in cfg["keep_visible"] if p]
    for hidden in cfg["hide"]:
        if not os.path.isdir(hidden):
            continue
        inner = [k for k in keep if _is_under(k, hidden) and os.path.isdir(k)]
        handles = [(k, os.open(k, os.O_PATH | os.O_DIRECTORY)) for k in inner]
        _mount("tmpfs", hidden, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
        for k, fd in handles:
            os.makedirs(k, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", k, None, MS_BIND | MS_REC)
            os.close(fd)
    os.makedirs(workdir, exist_ok=True)
    _mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV, f"size={cfg['disk_mb']}m,mode=700")
    seen = set()
    for point, options in reversed(_mountinfo()):  # topmost mount at each path first
        if point in seen or point == workdir:
            continue
        seen.add(point)
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for opt in options.split(","):
            flags |= _MOUNT_OPTION_FLAGS.get(opt, 0)
        try:
            _mount(None, point, None, flags)
        except SetupError:
            if os.path.exists(point):  # a vanished path is no way out; anything else is
                raise


def _drop_privileges() -> None:
    _check(_libc.prctl(PR_SET_SECUREBITS, SECUREBITS_LOCKED_DOWN, 0, 0, 0), "securebits")
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break  # past the last capability this kernel knows
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = (ctypes.c_uint32 * 6)()  # effective/permitted/inheritable = 0
    _check(_libc.capset(header, data), "capset")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def _wait_exit_code(pid: int) -> int:
    """Wait for ``pid`` (reaping any other child meanwhile); its status as a shell would."""
    while True:
        try:
            done, status = os.wait()
        except ChildProcessError:
            return EXIT_SETUP
        if done == pid:
            if os.WIFSIGNALED(status):
                return 128 + os.WTERMSIG(status)
            return os.WEXITSTATUS(status)


def _pid1(cfg: dict, code: str) -> int:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    try:
        # No nested user namespaces: one would hand back full capabilities (and mounts).
        # Written before /proc turns read-only.
        _write("/proc/sys/user/max_user_namespaces", "0")
        _setup_mounts(cfg)
        _drop_privileges()
    except (SetupError, OSError) as err:
        sys.stderr.write(f"{SETUP_PREFIX}{err}\n")
        return EXIT_SETUP
    pid = os.fork()
    if pid == 0:
        _worker(cfg, code)
    return _wait_exit_code(pid)


# --- worker -------------------------------------------------------------------------------
def _set_limits(cfg: dict) -> None:
    mib = 1024 * 1024
    limits = [
        (resource.RLIMIT_CPU, cfg["cpu_s"], cfg["cpu_s"] + 1),  # SIGXCPU, then SIGKILL
        (resource.RLIMIT_AS, cfg["memory_mb"] * mib, cfg["memory_mb"] * mib),
        (resource.RLIMIT_FSIZE, cfg["disk_mb"] * mib, cfg["disk_mb"] * mib),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    if cfg["nproc_rlimit"]:
        limits.append((resource.RLIMIT_NPROC, cfg["max_processes"], cfg["max_processes"]))
    for which, soft, hard in limits:
        resource.setrlimit(which, (soft, hard))


def _worker(cfg: dict, code: str) -> None:
    """Run ``code`` as ``__main__``; never returns."""
    status = 0
    try:
        _set_limits(cfg)
        os.chdir(cfg["workdir"])
        sys.argv = ["<python>"]
        namespace = {"__name__": "__main__", "__builtins__": __builtins__}
        exec(compile(code, "<python>", "exec"), namespace)  # noqa: S102 - running it is the point
    except SystemExit as err:
        status = err.code if isinstance(err.code, int) else (0 if err.code is None else 1)
        if not isinstance(err.code, (int, type(None))):
            print(err.code, file=sys.stderr)
    except BaseException as err:  # noqa: BLE001 - every failure of the code is its result
        import traceback  # imported only when needed: start-up time is per call

        # Show the code's frames, not this runner's.
        tb = err.__traceback__.tb_next if err.__traceback__ else None
        traceback.print_exception(type(err), err, tb)
        status = EXIT_MEMORY if isinstance(err, MemoryError) else EXIT_EXCEPTION
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001, S110 - e.g. the caller closed the pipe: nothing to tell
        pass
    os._exit(status & 0xFF)


def main() -> int:
    # marshal, not json: importing json (and re) would cost ~13 ms per call.
    cfg, code = marshal.loads(sys.stdin.buffer.read())
    # The caller may start us with -S (skipping site's .pth processing saves ~20 ms per call)
    # and pass its site-packages here, so the code can still import what is installed.
    sys.path.extend(p for p in cfg["site_dirs"] if p not in sys.path)
    fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(fd, 0)
    os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(errors="backslashreplace")
    if cfg["cgroup_procs"]:
        _write(cfg["cgroup_procs"], str(os.getpid()))
    if cfg["isolation"] != "namespaces":
        _worker(cfg, code)
    try:
        _enter_namespaces()
    except (SetupError, OSError) as err:
        sys.stderr.write(f"{SETUP_PREFIX}{err}\n")
        return EXIT_SETUP
    pid = os.fork()  # the child is pid 1 of the new pid namespace
    if pid == 0:
        os._exit(_pid1(cfg, code))
    return _wait_exit_code(pid)


if __name__ == "__main__":
    sys.exit(main())
