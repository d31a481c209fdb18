"""The ``resofilter`` command line.

Each subcommand is one function ``add_<name>(subparsers)`` that registers its parser and sets ``func`` (called with
the parsed namespace, returning an exit code). To add a subcommand, write such a function and append it to
`COMMANDS`. Heavy imports happen inside the handlers, after the checks that need none (`jobs.usage`), so a bad
option or a missing file is reported in a fraction of a second, and ``score --help`` lists its fields from a
static table (`jobs.fields`) without importing TRL.

Errors are one line on stderr naming the file, key or option: exit code 2 for a usage error (a bad option, a
missing or wrong config), 1 for a failure (a missing dataset or model, an unreadable file). ``--debug`` prints the
traceback instead. Warnings are one plain line too (``resofilter demo: warning: ...``), without a source path.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import traceback
import warnings
from collections.abc import Callable, Sequence

from .jobs.console import one_line, plain_warnings, say
from .jobs.usage import (
    UsageError,
    check_source,
    commands_of,
    keep_share,
    option_strings,
    parse_command_line,
    read_recipe,
    reads_negative_numbers,
    unknown_arguments,
    usage_errors,
)


SCORED_SOURCE = (  # what `provenance.load_scored` reads
    "the scored dataset: a .parquet, .jsonl/.json or .csv file, a save_to_disk folder, or a stream's parts folder"
)


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (`resofilter select: error: ...`), not the usage block, and `-1e-5`
    is a value."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        reads_negative_numbers(self)

    def error(self, message: str):
        raise UsageError(message)


def add_demo(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole story on the built-in toy world (no download)",
        description="Generate synthetic math problems with labelled flaws, build and warm up a tiny model, score a "
        "flawed pool by resonance, by alignment with a trusted set and by the baselines, retrain on the kept half "
        "by the paper's score, alignment, loss and random, on the full pool and on the pool without flaws, "
        "evaluate on clean held-out problems, and print the table and what moved on this one seed (rerun with "
        "other --seed values to tell an effect from noise); everything goes under one output folder (two to "
        "three minutes on one thread).",
    )
    parser.add_argument("--quick", action="store_true", help="a tiny run that checks every step (seconds)")
    parser.add_argument("--output-dir", default="resofilter-demo", help="where to write (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed for data, model and training (default: 0)")
    parser.add_argument(
        "--threads", type=_positive_int, default=1, help="torch threads (default: %(default)s; tiny models)"
    )
    parser.set_defaults(func=_run_demo)


def _positive_int(text: str) -> int:
    """argparse type of a count: a whole number >= 1, else an error that quotes what was given."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def _run_demo(args: argparse.Namespace) -> int:
    from .demo.demo import run_demo
    from .jobs.console import quiet_library_bars

    quiet_library_bars()
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
    parser.add_argument("source", help=SCORED_SOURCE)
    parser.add_argument("repo_id", nargs="?", help="the Hub dataset repo (optional with --local-dir)")
    parser.add_argument(
        "--keep", type=keep_share, action="append", help="add a config keeping this share (0.5 -> keep50); repeatable"
    )
    parser.add_argument(
        "--local-dir",
        help="only stage the repo into this folder (new, empty, or staged before); upload nothing. Staging writes "
        "README.md, data/ and images/, and replaces or removes only files an earlier staging wrote there (listed in "
        "its .resofilter-staged.json); your own files in the folder are left alone and never uploaded",
    )
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--commit-message", help="message of the upload commit")
    parser.add_argument("--label-column", action="append", help="column to break scores down by; repeatable")

    def run(args: argparse.Namespace) -> int:
        if args.repo_id is None and args.local_dir is None:
            parser.error("give REPO_ID to publish, or --local-dir to stage only")
        check_source(args.source)
        from .engine.files import check_not_input
        from .hub.publish import PublishError, publish_dataset
        from .jobs.console import quiet_dataset_bars
        from .provenance import load_scored

        quiet_dataset_bars()
        labels = {"label_columns": args.label_column}  # a --label-column naming no column: a usage error
        if args.local_dir is not None:
            with usage_errors():  # staging into the folder that holds the source would replace the source
                check_not_input(args.local_dir, [args.source])
        try:
            with usage_errors(given=labels, flags={"label_columns": "--label-column"}):
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
        except PublishError as err:
            raise RuntimeError(str(err)) from err
        rows = ", ".join(f"{name} ({sum(splits.values())} rows)" for name, splits in out.configs.items())
        say(f"published {rows} to {out.commit_url}" if out.commit_url else f"staged {rows} in {out.folder}")
        return 0

    parser.set_defaults(func=run)


def _add_recipe_command(subparsers, name: str, help: str, job: str) -> None:
    """`score` and `train` take TRL-style arguments: `--config recipe.yaml` plus any dataclass field as a flag.
    `--help` lists the fields people set (`jobs.fields`, no TRL import); `--help-all` every field, from TRL."""
    from .jobs.fields import HELP_WIDTH, short_fields_help

    streaming = " [--streaming]" if name == "score" else ""
    parser = subparsers.add_parser(
        name,
        help=help,
        add_help=False,
        usage=f"%(prog)s --config RECIPE.yaml{streaming} [--FIELD VALUE ...]",
        description=textwrap.fill(
            f"{help[0].upper()}{help[1:]}. A recipe is the YAML `trl sft --config` takes, plus resonance_* keys; any "
            "field is also a flag (--field value), which overrides the recipe. The fields people set:",
            HELP_WIDTH,
        ),
        epilog=short_fields_help(),
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, width=HELP_WIDTH),
    )
    options = parser.add_argument_group("command options")
    options.add_argument("--config", metavar="RECIPE.yaml", help="the recipe (recipes/ holds examples)")
    if streaming:
        options.add_argument(
            "--streaming",
            action="store_true",
            help="stream the dataset and write the scored rows as parquet parts into a folder (scores_path, "
            "default <output_dir>/scored/); --max_rows N caps the stream",
        )
    options.add_argument("-h", "--help", action="help", help="show this help and exit")
    options.add_argument(
        "--help-all",
        action="store_true",
        help="list every field: TRL's ScriptArguments, SFTConfig and ModelConfig, and the resonance_* fields",
    )

    def run(args: argparse.Namespace, extra: list[str]) -> int:
        if args.help_all:
            from .jobs import parser as recipe_parser

            recipe_parser(prog=f"resofilter {name}").print_help()
            return 0
        if args.config is None and not extra:
            raise UsageError("give --config RECIPE.yaml, or the fields as flags; --help lists them")
        if args.config is not None:
            read_recipe(args.config)  # a missing or malformed file is told before TRL is imported
            extra = [*extra, "--config", args.config]
        if getattr(args, "streaming", False):
            extra = [*extra, "--dataset_streaming", "true"]
        from . import jobs

        return _run_job(job, *jobs.parse(extra))

    parser.set_defaults(func=run, passthrough=True)


def _run_job(job: str, data_args, training_args, model_args) -> int:
    from . import jobs
    from .jobs.console import quiet_library_bars
    from .provenance import SCORES_FILE

    quiet_library_bars()
    if job == "score":
        from .confounds import ConfoundWarning
        from .hub.notices import headline_lines
        from .provenance import scored_provenance

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConfoundWarning)  # said once, as the closing headline below
            path = jobs.run_score(data_args, training_args, model_args)
        if path.is_dir():
            say(f"scored rows written to {path} ({len(list(path.glob('*.parquet')))} parquet parts)")
        else:
            say(f"scores written to {path}")
        for line in headline_lines(scored_provenance(path), training_args.resonance_column):
            print(line)
        return 0
    trainer = jobs.run_train(data_args, training_args, model_args)
    say(f"model saved to {training_args.output_dir}")
    if trainer.scored_dataset is not None:
        say(f"scores ({training_args.resonance_when}) in {training_args.output_dir}/{SCORES_FILE}")
    return 0


def add_score(subparsers: argparse._SubParsersAction) -> None:
    _add_recipe_command(subparsers, "score", "score every row of a dataset by data-parameter resonance", "score")


def add_train(subparsers: argparse._SubParsersAction) -> None:
    _add_recipe_command(subparsers, "train", "fine-tune with ResonanceTrainer (SFTTrainer + scores)", "train")


def add_select(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "select",
        help="keep rows of a scored dataset by their resonance (the paper's rule by default)",
        description="Exact-duplicate prompts dropped (first kept), the highest-resonance share dropped, the rest "
        "kept in original order; written as .parquet (the selection recorded in its metadata), .jsonl or .csv.",
    )
    parser.add_argument("source", help=SCORED_SOURCE)
    parser.add_argument("output", help="where the kept rows go: .parquet (with the selection), .jsonl or .csv")
    rule = parser.add_mutually_exclusive_group(required=True)
    rule.add_argument("--keep", type=keep_share, help="share of the scored rows kept, e.g. 0.5")
    rule.add_argument("--threshold", type=float, help="keep rows scoring at most this (at least, with --drop lowest)")
    parser.add_argument("--column", default=None, help="score column (default: the one the file's provenance names)")
    parser.add_argument(
        "--drop", default=None, choices=["highest", "lowest"],
        help="the end dropped (default: the column's own: lowest for alignment, highest for the others)",
    )  # fmt: skip
    parser.add_argument("--dedup-on", default="prompt", help="column(s), comma-separated, or 'none' (default: prompt)")
    parser.add_argument("--order", default="original", choices=["original", "score"])
    parser.add_argument("--stratify-by", default=None, help="'length' or a column name")
    parser.add_argument("--nan", default="drop", choices=["drop", "keep", "error"], help="rows without a score")

    def run(args: argparse.Namespace) -> int:
        check_source(args.source)
        from .jobs.console import quiet_dataset_bars
        from .jobs.select import run_select

        quiet_dataset_bars()
        dedup = None if args.dedup_on.lower() == "none" else args.dedup_on.split(",")
        dedup = dedup[0] if dedup and len(dedup) == 1 else dedup
        path, counts = run_select(
            args.source, args.output, keep=args.keep, threshold=args.threshold, column=args.column,
            drop=args.drop, dedup_on=dedup, order=args.order, stratify_by=args.stratify_by, nan=args.nan,
        )  # fmt: skip
        say(  # the column may be named by a downloaded file's provenance
            f"kept {counts['n_kept']} of {counts['n_input']} rows by {counts['column']} ({counts['n_dropped']} "
            f"dropped at the {counts['drop']} end, {counts['n_duplicates']} duplicates, {counts['n_unscored']} "
            f"unscored) -> {path}"
        )
        return 0

    parser.set_defaults(func=run)


def add_report(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write a scored dataset's HTML report: distributions, confounds, the rows at the top, bottom and cut",
        description="One static HTML file (figures inline, no script, works offline from disk): per score column "
        "its distribution with the keep share's cut (by label when there are labels), the score against length and "
        "loss with Spearman's rho, the highest, lowest and around-the-cut rows, a keep-share curve and the "
        "provenance.",
    )
    parser.add_argument("source", help=SCORED_SOURCE)
    parser.add_argument("--out", default="report.html", help="the HTML file to write (default: %(default)s)")
    parser.add_argument("--label-column", help="column to break scores down by (default: flaw/label/bool columns)")
    parser.add_argument("--keep", type=keep_share, default=0.5, help="keep share whose cut is shown (default: 0.5)")
    parser.add_argument("--column", help="score column (default: the file's, else resonance)")
    parser.add_argument(
        "--drop",
        choices=["highest", "lowest"],
        help="which end of the score column the rule drops (default: the file's own rule, else the column's "
        "declared end: lowest for alignment, else highest)",
    )

    def run(args: argparse.Namespace) -> int:
        import time

        check_source(args.source)
        from .hub.report import check_output, report
        from .jobs.console import quiet_dataset_bars

        quiet_dataset_bars()
        started = time.perf_counter()
        with usage_errors():  # an --out that is not an .html path, or that would overwrite the source
            check_output(args.out, args.source)
        with usage_errors(given={"column": args.column, "label_column": args.label_column}):
            path = report(args.source, args.out, label_column=args.label_column, keep=args.keep,
                          column=args.column, drop=args.drop)  # fmt: skip
        say(f"report written to {path} ({time.perf_counter() - started:.1f} s); open it in a browser")
        return 0

    parser.set_defaults(func=run)


# one entry per subcommand, in the order `--help` lists them
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_demo,
    add_score,
    add_select,
    add_report,
    add_train,
    add_publish,
]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _ArgumentParser(
        prog="resofilter",
        description="ResoFilter for Hugging Face: score SFT samples by how far one optimizer step on each would "
        "move the weights, and keep the ones that move them least.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="on an error, print the full traceback")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # anywhere, also after a subcommand whose flags go to TRL's parser
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    command = next((a for a in argv if not a.startswith("-")), None)
    prog = f"resofilter {command}" if command in commands_of(parser) else "resofilter"
    try:
        with plain_warnings(prog, enabled=not debug):
            args, extra = parse_command_line(parser, argv, command)
            if getattr(args, "func", None) is None:
                parser.print_help()
                return 2
            if getattr(args, "passthrough", False):
                return args.func(args, extra)
            if extra:
                raise unknown_arguments(extra, option_strings(parser, args.command))
            return args.func(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if debug:
            traceback.print_exc()
        usage = isinstance(err, UsageError)
        print(f"{prog}: {'error: ' if usage else ''}{one_line(err)}", file=sys.stderr)
        return 2 if usage else 1


if __name__ == "__main__":  # `python -m resofilter_hf.cli`
    sys.exit(main())
