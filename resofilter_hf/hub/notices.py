"""What a reader must see first about a scored dataset, read from its scoring provenance: a score that mostly ranks
rows by length or loss (a strong confound, `confounds.strong_confounds`), and a loss (so a score) that covers the
prompt's tokens too. The report shows these in its header, the dataset card at its top; weak confounds stay quiet.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from ..confounds import ANSWERS_ONLY, LOSS_ON_PROMPT, strong_confounds
from .tables import number, section
from .text import terminal_text


@dataclass(frozen=True)
class Notice:
    """One headline: `column` (a score column, or None) followed by `sentence` (this library's words, with
    backtick spans as code), and `remedy`, the option that addresses it (this library's words too). `primary`:
    about the file's score column (shown in full); the other columns' confounds are listed in one line, each
    with what it follows (`against`) and `rho`."""

    column: str | None
    sentence: str
    remedy: str
    primary: bool = True
    against: str = ""
    rho: float = 0.0


def headlines(provenance: Mapping, score_column: str) -> list[Notice]:
    """The headlines of `provenance` (a dataset's, as `read_provenance` gives it): the strong confounds of the
    score column first, then of the other score columns, then the loss-on-prompt note."""
    scoring = section(provenance, "scoring")
    found = []
    for entry in strong_confounds(_confound_report(scoring.get("confounds")), score_column):
        column = entry["column"]
        found.append(Notice(column, _sentence(entry), entry["remedy"], column == score_column, entry["against"],
                            entry["rho"]))  # fmt: skip
    found.sort(key=lambda notice: not notice.primary)
    if scoring.get("loss_on_prompt") is True:
        found.append(Notice(None, LOSS_ON_PROMPT, ANSWERS_ONLY))
    return found


def _sentence(entry: Mapping) -> str:
    """What a strong confound means, without the column it is about (each renderer shows the column its own way)."""
    return entry["sentence"].strip()


def also_line(notices) -> tuple[str, list[tuple[str, str]]] | None:
    """The strong confounds of the other score columns as one line: (lead words, [(column, "loss, +0.66")])."""
    others = [n for n in notices if not n.primary]
    if not others:
        return None
    lead = "Other score columns that mostly follow length or loss (see the confound table):"
    return lead, [(n.column, f"{n.against}, {n.rho:+.2f}") for n in others]


def _confound_report(report) -> dict[str, dict]:
    """The entries of a stored confound report that hold numbers (a provenance is read, not trusted)."""
    if not isinstance(report, Mapping):
        return {}
    clean = {}
    for column, entry in report.items():
        if isinstance(column, str) and isinstance(entry, Mapping):
            clean[column] = {key: number(entry.get(key)) for key in ("length", "loss")}
            clean[column]["n"] = number(entry.get("n")) or 0  # strong_confounds says nothing over too few rows
    return clean


def headline_lines(provenance: Mapping, score_column: str) -> list[str]:
    """The headlines as plain lines for a terminal (the CLI's closing words after `resofilter score`)."""
    lines = []
    for notice in headlines(provenance, score_column):
        lead = f"`{notice.column}` " if notice.column else ""  # a name from the file: made safe for the tty below
        lines.append(terminal_text(f"  {lead}{notice.sentence.rstrip('.')}; {notice.remedy}."))
    return ["Read this first:", *lines] if lines else []
