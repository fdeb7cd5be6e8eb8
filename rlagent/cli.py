"""``rlagent`` command line: train, envs, rewards."""
from __future__ import annotations

import argparse
import sys


def _train(args: argparse.Namespace) -> int:
    from rlagent.config import load_config
    from rlagent.trainer import train

    train(load_config(args.config, args.overrides))
    return 0


def _envs(args: argparse.Namespace) -> int:
    import gymnasium

    import rlagent.envs  # noqa: F401

    for env_id, spec in sorted(gymnasium.registry.items()):
        if env_id.startswith("rlagent/"):
            print(f"{env_id:28s} {spec.entry_point}")
    return 0


def _rewards(args: argparse.Namespace) -> int:
    from rlagent.reward_service import discover

    for name, ep in sorted(discover().items()):
        cls = ep.load()
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        dist = ep.dist.name if ep.dist else "?"
        print(f"{name:14s} {getattr(cls, 'kind', '?'):8s} {dist:12s} {doc}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rlagent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a policy: rlagent train CONFIG [key=value ...]")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. algo.group_size=8")
    p.set_defaults(fn=_train)
    sub.add_parser("envs", help="list the registered rlagent environments").set_defaults(fn=_envs)
    sub.add_parser("rewards", help="list the installed reward plugins").set_defaults(fn=_rewards)
    args = parser.parse_args(argv)
    from rlagent.config import ConfigError

    try:
        return args.fn(args)
    except ConfigError as err:
        print(f"rlagent: config error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
