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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class UsageError(ValueError):
    """A bad command line or config: reported in one line, exit code 2."""


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
