"""The ``resofilter`` command line.

Each subcommand is one function ``add_<name>(subparsers)`` that registers its parser and sets ``func`` (called with
the parsed namespace, returning an exit code). To add a subcommand, write such a function and append it to
`COMMANDS`. Heavy imports happen inside the handlers, so ``resofilter --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


def add_demo(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole job on the built-in toy world (no download)",
        description="Generate flawed synthetic math problems, build a tiny model and fine-tune it with TRL, "
        "writing everything under one output folder.",
    )
    parser.add_argument("--quick", action="store_true", help="a smaller run (about a minute on two CPU cores)")
    parser.add_argument("--output-dir", default="resofilter-demo", help="where to write (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed for data, model and training (default: 0)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all available cores)")
    parser.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.output_dir, quick=args.quick, seed=args.seed, threads=args.threads)
    return 0


def add_publish(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "publish",
        help="publish a scored dataset to the Hub, with its card and keep-share configs",
        description="Stage a dataset repo (parquet per config and split, a card with the scoring provenance, "
        "selection rules and a score histogram), then upload it in one commit. The token comes from HF_TOKEN or "
        "`hf auth login`, never from the command line.",
    )
    parser.add_argument("source", help="the scored dataset: a save_to_disk folder, .parquet or .jsonl file")
    parser.add_argument("repo_id", nargs="?", help="the Hub dataset repo (optional with --local-dir)")
    parser.add_argument(
        "--keep", type=float, action="append", help="add a config keeping this share (0.5 -> keep50); repeatable"
    )
    parser.add_argument("--local-dir", help="only stage the repo into this folder; upload nothing")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--commit-message", help="message of the upload commit")
    parser.add_argument("--label-column", action="append", help="column to break scores down by; repeatable")

    def run(args: argparse.Namespace) -> int:
        from .hub import PublishError, publish_dataset
        from .provenance import load_scored

        if args.repo_id is None and args.local_dir is None:
            parser.error("give REPO_ID to publish, or --local-dir to stage only")
        try:
            out = publish_dataset(
                load_scored(args.source),
                args.repo_id,
                configs=args.keep,
                private=args.private,
                local_dir=args.local_dir,
                push=args.local_dir is None,
                commit_message=args.commit_message,
                label_columns=args.label_column,
            )
        except (PublishError, ValueError, OSError) as err:
            print(f"resofilter publish: {err}", file=sys.stderr)
            return 1
        rows = ", ".join(f"{name} ({sum(splits.values())} rows)" for name, splits in out.configs.items())
        print(f"published {rows} to {out.commit_url}" if out.commit_url else f"staged {rows} in {out.folder}")
        return 0

    parser.set_defaults(func=run)


# one entry per subcommand, in the order `--help` lists them
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_demo, add_publish]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="resofilter",
        description="ResoFilter for Hugging Face: score SFT samples by how far one optimizer step on each would "
        "move the weights, and keep the ones that move them least.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
