"""Submit ``rlagent train CONFIG [key=value ...]`` to a Ray cluster as a Ray job.

    python launch/submit.py launch/configs/gpu-1node-8.yaml model.path=/models/my-model \\
        run.output_dir=/shared/runs --address http://HEAD:8265 --env HF_HOME=/shared/hf --follow

The repository (this file's parent folder) ships with the job as its working directory, less
the ``EXCLUDES`` below; the job runs ``rlagent train`` inside that copy. The config is loaded
and validated here first, so a bad key fails before anything is uploaded.

Environment: the submitting shell's variables do not reach the job. ``WANDB_API_KEY`` and
``WANDB_MODE`` are passed on when they are set here; ``--env NAME`` passes another one (its
value here), ``--env NAME=VALUE`` sets one. Values are never printed.
``RAY_JOB_STOP_WAIT_TIME_S`` is set to 1800: ``ray job stop`` gives the driver that long to
save its checkpoint before Ray kills it (Ray's own default is 3 s); ``--env`` overrides it.

Address: ``--address``, else ``RAY_ADDRESS``, else ``http://127.0.0.1:8265`` (the dashboard
of the head node). A cluster with token authentication reads the token the usual Ray way
(``RAY_AUTH_TOKEN``).

Waiting: by default the helper waits until the job has started (its working directory and
environment are set up on the cluster, where most submission errors show), then prints how
to follow and stop it. ``--no-wait`` returns right after the submission; ``--follow`` prints
the job's logs until it ends.

Exit status: 0 submitted (or, with ``--follow``, succeeded); 1 the job failed or was stopped;
2 a usage, config or connection error (nothing was submitted).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ADDRESS = "http://127.0.0.1:8265"
# Left out of the job's copy of the repository (gitignore syntax, relative to the repository).
# Ray also honours .gitignore; these stay excluded when the copy has none.
EXCLUDES = [
    ".git",
    ".venv",
    "venv",
    "runs/",
    "wandb/",
    "build/",
    "dist/",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "tests/fixtures/textworld/*.z8",
]
PASS_THROUGH = ("WANDB_API_KEY", "WANDB_MODE")
# `ray job stop` sends SIGTERM to the driver, then SIGKILL after RAY_JOB_STOP_WAIT_TIME_S
# (Ray's default: 3 s). The driver saves a checkpoint when it is stopped, which takes longer.
STOP_WAIT_S = "1800"
START_TIMEOUT_S = 900.0


class SubmitError(RuntimeError):
    """Nothing was submitted: the message says why."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="launch/submit.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "config", nargs="?", help="config file inside the repository, e.g. launch/configs/gpu-1node-8.yaml"
    )
    p.add_argument(
        "overrides",
        nargs="*",
        help="dotted overrides, e.g. model.path=/models/x; resume=RUN_DIR continues a stopped run",
    )
    p.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS,
        help=f"Ray dashboard address (default: $RAY_ADDRESS or {DEFAULT_ADDRESS})",
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="pass an environment variable to the job (repeatable)",
    )
    p.add_argument(
        "--follow",
        action="store_true",
        help="print the job's logs until it ends; exit 0 only if it succeeded",
    )
    p.add_argument("--no-wait", action="store_true", help="return right after the submission")
    p.add_argument("--job-id", help="submission id (default: <run.name>-<date>-<time>)")
    p.add_argument(
        "--entrypoint",
        help="run this command instead of `rlagent train CONFIG ...` "
        "(e.g. 'rlagent envs' to check the cluster's install)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the entrypoint and runtime env (variable names only) and stop",
    )
    args = p.parse_intermixed_args(argv)
    if args.follow and args.no_wait:
        p.error("--follow and --no-wait exclude each other")
    if not args.config and not args.entrypoint:
        p.error("give a CONFIG (or --entrypoint COMMAND)")
    return args


def config_in_repo(config: str) -> str:
    """The config's path relative to the repository: the job sees only the repository's copy."""
    path = Path(config).resolve()
    if not path.is_file():
        raise SubmitError(f"{config}: no such config file")
    try:
        return path.relative_to(REPO).as_posix()
    except ValueError:
        raise SubmitError(
            f"{config}: the config must lie inside the repository ({REPO}): only "
            "the repository ships with the job"
        ) from None


def job_env(specs: list[str], environ: dict[str, str]) -> dict[str, str]:
    """W&B key and mode when set here, a stop grace period for the final checkpoint, then each
    ``--env NAME`` / ``--env NAME=VALUE``."""
    env = {name: environ[name] for name in PASS_THROUGH if environ.get(name)}
    env["RAY_JOB_STOP_WAIT_TIME_S"] = STOP_WAIT_S
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not name.isidentifier():
            raise SubmitError(f"--env {spec}: expected NAME or NAME=VALUE")
        if not sep:
            if name not in environ:
                raise SubmitError(f"--env {name}: not set in this shell (give --env {name}=VALUE)")
            value = environ[name]
        env[name] = value
    return env


def runtime_env(env_vars: dict[str, str]) -> dict:
    return {"working_dir": str(REPO), "excludes": list(EXCLUDES), "env_vars": env_vars}


def run_dir_note(cfg) -> str:
    """Where the run directory will be: on the node that runs the job's driver (the head)."""
    base = f"{cfg.run.output_dir.rstrip('/')}/{cfg.run.name}"
    if Path(cfg.run.output_dir).is_absolute():
        return (
            f"{base} on the head node, where the driver runs ({base}-N if that exists: the "
            "log's '[rlagent] run directory:' line says)"
        )
    return (
        f"{base} inside the job's copy of the repository on the head node, which Ray deletes "
        "later: give run.output_dir=/an/absolute/shared/path"
    )


def connect(address: str):
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as err:  # ConnectionError, or an auth/version error from the server
        raise SubmitError(
            f"cannot reach the Ray cluster at {address}: {err}\n"
            "  Is the head running (`ray start --head`)? Pass its dashboard address "
            "with --address http://HEAD:8265 or RAY_ADDRESS."
        ) from err


def submit(client, entrypoint: str, renv: dict, job_id: str, metadata: dict[str, str]) -> str:
    deadline = time.monotonic() + 60
    while True:
        try:
            return client.submit_job(
                entrypoint=entrypoint, runtime_env=renv, submission_id=job_id, metadata=metadata
            )
        except RuntimeError as err:
            # A head that just started answers before its job agent is up.
            if "No available agent" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(2)


def wait_started(client, job_id: str, timeout_s: float):
    """The job's status once it left PENDING (its runtime env is set up), or PENDING."""
    from ray.job_submission import JobStatus

    deadline = time.monotonic() + timeout_s
    while (status := client.get_job_status(job_id)) == JobStatus.PENDING:
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    return status


def follow(client, job_id: str):
    """Print the job's logs until it ends; its final status."""

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            print(chunk, end="", flush=True)

    asyncio.run(tail())
    while not (status := client.get_job_status(job_id)).is_terminal():
        time.sleep(1)  # the log stream can close a moment before the status is written
    return status


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO))  # rlagent from this repository: the code that ships
    from rlagent.config import ConfigError, load_config

    try:
        cfg, config = None, None
        if args.config:
            config = config_in_repo(args.config)
            # resume=<run dir> is an argument of `rlagent train`, not a config key; the run
            # directory lives on the cluster's storage, so it is passed on unchecked.
            cfg = load_config(REPO / config, [o for o in args.overrides if not o.startswith("resume=")])
        entrypoint = args.entrypoint or shlex.join(["rlagent", "train", config, *args.overrides])
        env_vars = job_env(args.env, dict(os.environ))
        renv = runtime_env(env_vars)
        name = cfg.run.name if cfg else "rlagent"
        job_id = args.job_id or f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        if args.dry_run:
            print(
                f"entrypoint:  {entrypoint}\nworking_dir: {REPO}\nexcludes:    {EXCLUDES}\n"
                f"env_vars:    {sorted(env_vars)}\naddress:     {args.address}"
            )
            return 0
        client = connect(args.address)
        job_id = submit(client, entrypoint, renv, job_id, {"rlagent_config": config or ""})
    except (SubmitError, ConfigError) as err:
        print(f"submit: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # the job server refused: auth, a duplicate id, upload size
        print(f"submit: the Ray cluster at {args.address} refused the job: {err}", file=sys.stderr)
        return 2

    addr = shlex.quote(args.address)
    print(
        f"job id:      {job_id}\n"
        f"entrypoint:  {entrypoint}\n"
        f"env vars:    {', '.join(sorted(env_vars)) or '(none)'}\n"
        f"follow logs: ray job logs --follow {job_id} --address {addr}\n"
        f"status:      ray job status {job_id} --address {addr}\n"
        f"stop:        ray job stop {job_id} --address {addr}",
        flush=True,
    )
    if cfg is not None:
        print(f"run dir:     {run_dir_note(cfg)}", flush=True)
    if args.no_wait:
        return 0
    if args.follow:
        try:
            status = follow(client, job_id)
        except KeyboardInterrupt:
            print(
                f"\nstopped following; the job goes on (stop it: ray job stop {job_id} --address {addr})",
                file=sys.stderr,
            )
            return 130
    else:
        status = wait_started(client, job_id, START_TIMEOUT_S)
    info = client.get_job_info(job_id)
    print(f"job {job_id}: {status.value}" + (f" ({info.message})" if info.message else ""), flush=True)
    return 1 if status.value in ("FAILED", "STOPPED") else 0


if __name__ == "__main__":
    sys.exit(main())
