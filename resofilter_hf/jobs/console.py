"""How the commands talk to the terminal: one line per message, names made safe to print, at most one progress bar
per long step and none for reading a file. Light to import: `cli` uses it before anything heavy."""

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from ..hub.text import terminal_text


def say(text: str) -> None:
    """Print a line to the terminal: the names in it (paths, columns a downloaded file's provenance names) without
    their escape sequences and control characters (`terminal_text`)."""
    print(terminal_text(text))


def one_line(err: BaseException | Warning | str) -> str:
    """An error or warning as one line a terminal shows as it is (its names too: `terminal_text`), at most 500
    characters; a missing or unreadable file as ``path: reason``."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, (FileNotFoundError, PermissionError, IsADirectoryError)) and err.filename:
        text = f"{err.filename}: {err.strerror}"
    text = terminal_text(text)
    return text if len(text) <= 500 else text[:497] + "..."


@contextmanager
def plain_warnings(prog: str, enabled: bool = True) -> Iterator[None]:
    """Warnings as one line (`resofilter demo: warning: ...`), without the source path and line Python adds."""

    def show(message, category, filename, lineno, file=None, line=None):
        label = "warning" if issubclass(category, UserWarning) else category.__name__  # ours are UserWarnings
        print(f"{prog}: {label}: {one_line(message)}", file=file or sys.stderr)

    original = warnings.showwarning
    if enabled:
        warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


def quiet_dataset_bars() -> None:
    """Drop the bars datasets draws for every file it reads and every map() pass (``Generating train split``):
    `select`, `report` and `publish` print their one line, nothing else."""
    import datasets

    datasets.disable_progress_bars()


def quiet_library_bars() -> None:
    """Keep the training and scoring bars, drop the ones datasets and transformers draw for every map() pass and
    every weight load (dozens per run): one bar per long step at most."""
    import transformers

    quiet_dataset_bars()
    transformers.utils.logging.disable_progress_bar()
