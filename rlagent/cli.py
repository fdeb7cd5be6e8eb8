"""``rlagent`` command line: train, tasks, eval, envs, rewards, view, plot."""

from __future__ import annotations

import argparse
import atexit
import gc
import sys

from rlagent.terminal import sorted_output

VERBOSE = "also show third-party output (library warnings, the actors' logs) on the terminal; "
VERBOSE += "without it, that goes to output.log in the run's directory"


def _train(args: argparse.Namespace) -> int:
    from rlagent.config import load_config

    # `resume=<run dir>` is short for `run.resume=<run dir>`
    overrides = [f"run.{o}" if o.startswith("resume=") else o for o in args.overrides]
    cfg = load_config(args.config, overrides)
    with sorted_output(not args.verbose):  # before the libraries' loggers are made at import
        from rlagent.trainer import train

        train(cfg)
    return 0


# `rlagent eval CONFIG checkpoint=DIR tasks=FILE`: short for eval.checkpoint=..., eval.tasks=...
EVAL_SHORT = ("checkpoint", "tasks", "samples", "temperature", "out")


def _eval(args: argparse.Namespace) -> int:
    from rlagent.config import load_config

    overrides = [f"eval.{o}" if o.partition("=")[0] in EVAL_SHORT else o for o in args.overrides]
    cfg = load_config(args.config, overrides)
    with sorted_output(not args.verbose):  # before the libraries' loggers are made at import
        from rlagent.evaluate import evaluate

        report = evaluate(cfg)
    if report["metrics"]["success/scored"] == 0:
        print("rlagent: no episode could be scored (see env/errors and the episodes)", file=sys.stderr)
        return 1
    return 0


def _tasks(args: argparse.Namespace) -> int:
    from rlagent.config import load_config
    from rlagent.tasks import heldout_tasks, write_tasks

    cfg = load_config(args.config, args.overrides)
    tasks = heldout_tasks(cfg, args.n, args.seed, args.difficulties)
    path = write_tasks(tasks, args.out)
    levels = sorted({t.difficulty for t in tasks})
    print(
        f"{path}: {len(tasks)} {cfg.env.id} tasks, seed {args.seed}, difficulties {levels} "
        f"(held out: never give this file to training)"
    )
    return 0


def _envs(args: argparse.Namespace) -> int:
    import gymnasium

    import rlagent.envs  # noqa: F401

    for env_id, spec in sorted(gymnasium.registry.items()):
        if env_id.startswith("rlagent/"):
            print(f"{env_id:28s} {spec.entry_point}")
    return 0


def _rewards(args: argparse.Namespace) -> int:
    from rlagent.scoring.service import discover

    print(f"{'NAME':16s} {'KIND':8s} {'PACKAGE':22s} DESCRIPTION")
    for name, ep in sorted(discover().items()):
        try:
            cls = ep.load()
        except Exception as err:  # one broken plugin must not hide the others
            print(f"{name:16s} {'?':8s} {_dist(ep):22s} cannot be imported: {type(err).__name__}: {err}")
            continue
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"{name:16s} {getattr(cls, 'kind', '?'):8s} {_dist(ep):22s} {doc}")
    return 0


def _dist(ep) -> str:
    return ep.dist.name if ep.dist else "?"


def _rewards_score(args: argparse.Namespace) -> int:
    from rlagent.scoring.offline import score_file

    return score_file(args.name, args.rollouts, args.kwargs, args.timeout)


def _plot(args: argparse.Namespace) -> int:
    from rlagent.plot import plot

    print(plot(args.run_dir, args.out))
    return 0


def _view(args: argparse.Namespace) -> int:
    import webbrowser

    from rlagent.viewer import render

    path = render(args.run_dir, args.out, max_episodes=args.max_episodes)
    print(path)
    if args.open:
        webbrowser.open(path.resolve().as_uri())
    return 0


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the console command, not a call from Python
        # exit 0.3-0.4 s sooner: finalization skips one more scan of torch's and Ray's objects
        atexit.register(gc.freeze)
    parser = argparse.ArgumentParser(prog="rlagent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a policy: rlagent train CONFIG [key=value ...]")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. algo.group_size=8")
    p.add_argument("--verbose", action="store_true", help=VERBOSE)
    p.set_defaults(fn=_train)
    t = sub.add_parser(
        "tasks",
        help="write a held-out task set for evaluation: rlagent tasks CONFIG --n 200 --out heldout.jsonl",
    )
    t.add_argument("config")
    t.add_argument("overrides", nargs="*", help="dotted overrides (env.kwargs shape the tasks)")
    t.add_argument("--n", type=int, default=100, help="number of tasks (default 100)")
    t.add_argument(
        "--seed",
        type=int,
        default=1_000_000,
        help="generator seed; must differ from run.seed (default 1000000)",
    )
    t.add_argument(
        "--difficulties",
        type=int,
        nargs="+",
        help="levels, taken in turn (default: data.difficulties, else all the env offers)",
    )
    t.add_argument("--out", required=True, help="JSONL file to write")
    t.set_defaults(fn=_tasks)
    e = sub.add_parser(
        "eval",
        help="evaluate a checkpoint on held-out tasks: rlagent eval CONFIG "
        "checkpoint=RUN_DIR tasks=FILE [samples=K temperature=T out=DIR key=value ...]",
    )
    e.add_argument("config")
    e.add_argument(
        "overrides",
        nargs="*",
        help="checkpoint=, tasks=, samples=, temperature=, out= "
        "(short for eval.*) and dotted config overrides",
    )
    e.add_argument("--verbose", action="store_true", help=VERBOSE)
    e.set_defaults(fn=_eval)
    sub.add_parser("envs", help="list the registered rlagent environments").set_defaults(fn=_envs)
    r = sub.add_parser("rewards", help="list the installed reward plugins, or score saved episodes")
    r.set_defaults(fn=_rewards)
    rsub = r.add_subparsers(dest="rewards_command")
    rsub.add_parser("list", help="list the installed reward plugins").set_defaults(fn=_rewards)
    s = rsub.add_parser(
        "score",
        help="score saved episodes with one plugin: "
        "rlagent rewards score NAME runs/<run>/rollouts/step_00001.jsonl",
    )
    s.add_argument("name", help="plugin name (as listed by `rlagent rewards`)")
    s.add_argument("rollouts", nargs="+", help="rollout JSONL files")
    s.add_argument("--kwargs", default="{}", help='plugin kwargs as YAML/JSON, e.g. \'{tol: 0.01}\'')
    s.add_argument("--timeout", type=float, default=30.0, help="seconds per call (default 30)")
    s.set_defaults(fn=_rewards_score)
    v = sub.add_parser("view", help="write a static HTML rollout viewer: rlagent view runs/<name>")
    v.add_argument("run_dir")
    v.add_argument("--out", help="HTML file to write (default RUN_DIR/view.html)")
    v.add_argument("--open", action="store_true", help="open it in the web browser")
    v.add_argument("--max-episodes", type=int, default=64, help="episodes shown per step (default 64)")
    v.set_defaults(fn=_view)
    c = sub.add_parser(
        "plot", help="draw a run's reward, success and time per step: rlagent plot runs/<name>"
    )
    c.add_argument("run_dir")
    c.add_argument("--out", help="PNG file to write (default RUN_DIR/curves.png)")
    c.set_defaults(fn=_plot)
    # --verbose anywhere (argparse cannot take an option between a subcommand's positionals)
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv
    args = parser.parse_args([a for a in argv if a != "--verbose"])
    args.verbose = verbose
    from rlagent.config import ConfigError
    from rlagent.failures import RunDied

    try:
        return args.fn(args)
    except ConfigError as err:
        print(f"rlagent: config error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a missing file or run directory: one line naming it
        where = f"{err.filename}: " if err.filename else ""
        print(f"rlagent: {where}{err.strerror or err}", file=sys.stderr)
        return 1
    except (RunDied, ValueError) as err:  # a run that died; a bad line in a file, named
        print(f"rlagent: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
