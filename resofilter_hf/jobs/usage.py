"""What the command line accepts, checked before anything heavy is imported.

`cli` and `jobs` both raise `UsageError` (exit code 2); keeping it here, with the checks that need nothing but the
standard library, lets `cli` answer a bad option or a missing file in a fraction of a second and keeps `jobs` from
importing `cli`.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import math
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class UsageError(ValueError):
    """A bad command line or config: reported in one line, exit code 2."""


# argparse takes `-1e-5` for an option (its own pattern knows `-1` and `-.5` only); learning rates and thresholds are
# written that way. A parser's pattern set to this one reads every negative number as a value.
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def reads_negative_numbers(parser: argparse.ArgumentParser) -> None:
    """Let `parser` take `-1e-5` (and every other negative number) as an option's value."""
    parser._negative_number_matcher = NEGATIVE_NUMBER


def closest(word: str, known: Iterable[str]) -> str | None:
    """The known name closest to `word` (a misspelt option or key), or None when none is close."""
    close = difflib.get_close_matches(word, sorted(known), n=1)
    return close[0] if close else None


def unknown_arguments(extra: list[str], known_options: Iterable[str]) -> UsageError:
    """The error for arguments no parser took, naming the first unknown option and the closest known one."""
    flags = [arg.split("=", 1)[0] for arg in extra if arg.startswith("-")]
    if not flags:
        return UsageError(f"unrecognized arguments: {' '.join(extra)}")
    suggestion = closest(flags[0], known_options)
    hint = f"; did you mean {suggestion}?" if suggestion else ""
    return UsageError(f"unrecognized argument {flags[0]}{hint}")


def keep_share(text: str) -> float:
    """argparse type of a keep share: a number with 0 < share <= 1, else an error that quotes what was given."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 1:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be a share with 0 < keep <= 1 (0.5 keeps half), got {text!r}")
    return value


def check_source(path: str | os.PathLike) -> None:
    """An input file or folder exists (a failure, exit code 1, not a usage error)."""
    if not Path(path).expanduser().exists():
        raise FileNotFoundError(errno.ENOENT, "no such file or folder", str(path))


@contextmanager
def usage_errors(given: dict[str, Any] | None = None, flags: dict[str, str] | None = None) -> Iterator[None]:
    """A ValueError raised in the block (a library check of what the command line gave: an output path that would
    overwrite its input, a suffix no writer takes) reported as a `UsageError`, with the same message. With `given`
    (option -> value on the command line), only an `OptionError` about an option given there is one, naming its
    flag (`--option-name`, or as `flags` maps it); other errors in the block (the file's own defaults) stay
    failures, exit code 1."""
    from ..columns import OptionError

    try:
        yield
    except UsageError:
        raise
    except OptionError as err:
        if given is None or given.get(err.option) is None:
            raise
        flag = (flags or {}).get(err.option) or f"--{err.option.replace('_', '-')}"
        raise UsageError(f"argument {flag}: {err.value!r} {err.reason}") from err
    except ValueError as err:
        if given is not None:
            raise
        raise UsageError(str(err)) from err


def read_recipe(path: str) -> dict[str, Any]:
    """The recipe file's YAML mapping; a missing file, invalid YAML or another shape is a `UsageError` naming it."""
    import yaml

    if not Path(path).is_file():
        raise UsageError(f"--config {path}: no such file")
    try:
        config = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        raise UsageError(f"--config {path}: not valid YAML ({' '.join(str(err).split())})") from err
    if not isinstance(config, dict):
        raise UsageError(f"--config {path}: must be a YAML mapping of field names to values")
    return config


def commands_of(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommands' parsers, by name."""
    return next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def parse_command_line(parser: argparse.ArgumentParser, argv: list[str], command: str | None):
    """`parse_known_args`, but a misspelt command or flag is named first (with the closest known one), rather
    than what its absence caused (`--kep 0.5`: "one of --keep --threshold is required")."""
    commands = commands_of(parser)
    if command is not None and command not in commands:
        suggestion = closest(command, commands)
        hint = f"; did you mean {suggestion!r}?" if suggestion else ""
        raise UsageError(f"unknown command {command!r}{hint} Commands: {', '.join(commands)}")
    try:
        return parser.parse_known_args(argv)
    except UsageError:
        known = option_strings(parser, command)
        flags = [a for a in argv if a.startswith("--") and len(a) > 2]
        unknown = [f for f in flags if not any(k.startswith(f.split("=", 1)[0]) for k in known)]
        if unknown:
            raise unknown_arguments(unknown, known) from None
        raise


def option_strings(parser: argparse.ArgumentParser, command: str | None) -> list[str]:
    """The options the top level and `command` take: the candidates for a misspelt flag's suggestion."""
    actions = list(parser._actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            actions += action.choices[command]._actions
    return [option for action in actions for option in action.option_strings]
