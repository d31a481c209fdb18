"""What a scoring run says about its rows when it ends, the same for every way in (a `Dataset`, a stream, in flight):
the warnings (unscored rows, rows cut by `max_length`, a score that mostly ranks by length or loss, a loss that
falls on the prompt too) and the provenance (row counts, the confound report, the reference set)."""

import warnings
from collections import Counter

import numpy as np
import pyarrow as pa

from ..columns import LOSS, STATUS, TOKENS, TRUNCATED, score_columns
from ..confounds import ANSWERS_ONLY, LOSS_ON_PROMPT, ConfoundWarning, confound_report, strong_confounds
from ..engine.rows import STATUS_OK, STATUS_TRUNCATED, dataset_kind


SAMPLE_ROWS = 200_000  # rows kept for the confound report: every row up to this many, then a uniform sample


class TruncationWarning(UserWarning):
    """Rows longer than `max_length` were scored on their first `max_length` tokens (`resonance_truncated`):
    filter this category to say it in your own words (the demo does)."""


class Tally:
    """The per-row numbers of a run, window by window: statuses, truncation, and the columns confounds compare.

    Memory stays flat in the row count: the compared columns are kept for every row up to `SAMPLE_ROWS`, and past
    that as a uniform reservoir sample of that size (seeded: the same rows give the same sample), which puts a
    rank correlation within about 0.002 of its value over every row."""

    def __init__(self, column: str, sample_rows: int = SAMPLE_ROWS):
        self.column, self.sample_rows = column, sample_rows
        self.statuses: Counter = Counter()
        self.unscored: list[int] = []  # the first few unscored row ids
        self.cut: list[int] = []  # rows `max_length` cut that still have a score
        self.n_cut = 0  # of those
        self.n_truncated = 0  # every row `max_length` cut (`resonance_truncated`), scored or not
        self.sample: dict[str, np.ndarray] = {}
        self.kept = 0  # rows in the sample
        self.n = 0
        self._rng = np.random.default_rng(0)

    def add(self, table: pa.Table, offset: int) -> None:
        statuses = table.column(STATUS).to_pylist()
        self.statuses.update(statuses)
        bad = [offset + i for i, s in enumerate(statuses) if s != STATUS_OK]
        self.unscored += bad[: max(0, 5 - len(self.unscored))]
        flags = table.column(TRUNCATED).to_pylist()
        cut = [offset + i for i, (f, s) in enumerate(zip(flags, statuses)) if f and s != STATUS_TRUNCATED]
        self.cut += cut[: max(0, 5 - len(self.cut))]
        self.n_cut += len(cut)
        self.n_truncated += sum(map(bool, flags))
        names = [*score_columns(table.column_names, self.column), TOKENS, LOSS]
        columns = {name: table.column(name).to_numpy(zero_copy_only=False).astype(np.float64) for name in names}
        self._sample(columns, table.num_rows)
        self.n += table.num_rows

    def _sample(self, columns: dict[str, np.ndarray], m: int) -> None:
        """Reservoir sampling (Algorithm R) of the window's rows into `sample`."""
        if not self.sample:
            self.sample = {name: np.empty(self.sample_rows) for name in columns}
        room = min(m, self.sample_rows - self.kept)
        for name, values in columns.items():
            self.sample[name][self.kept : self.kept + room] = values[:room]
        self.kept += room
        seen = self.n + np.arange(room, m)  # each later row replaces a random slot with probability K / (t + 1)
        slots = (self._rng.random(len(seen)) * (seen + 1)).astype(np.int64)
        for row, slot in zip(np.flatnonzero(slots < self.sample_rows) + room, slots[slots < self.sample_rows]):
            for name, values in columns.items():
                self.sample[name][slot] = values[row]

    @property
    def n_scored(self) -> int:
        return self.statuses[STATUS_OK]

    def column_values(self) -> dict[str, np.ndarray]:
        """Each compared column over the rows kept (every row, or the sample; empty before any row)."""
        values = {name: np.empty(0) for name in (self.column, TOKENS, LOSS)}
        values.update({name: column[: self.kept] for name, column in self.sample.items()})
        return values


def loss_on_prompt(
    column_names: list[str], text_field: str, completion_only: bool | None, assistant_only: bool
) -> bool:
    """Whether TRL puts the loss (and so the score) on the prompt's tokens too: `messages` rows without an
    assistant mask, or prompt/completion rows with `completion_only_loss=False`."""
    try:
        kind = dataset_kind(column_names, text_field)
    except ValueError:
        return False
    return (kind == "messages" and not assistant_only) or (kind == "prompt_completion" and completion_only is False)


def finish_run(tally: Tally, provenance: dict, *, max_length: int | None, on_prompt: bool, stacklevel: int) -> dict:
    """Warn about what the run's rows show, once each, and return the provenance with the row counts, the
    confound report and `loss_on_prompt`."""
    n, column = tally.n, tally.column
    if tally.n - tally.n_scored:
        counts = {s: c for s, c in sorted(tally.statuses.items()) if s != STATUS_OK}
        warnings.warn(
            f"{n - tally.n_scored} of {n} rows have no resonance score (NaN), by status: {counts}. "
            f"First rows: {tally.unscored}.",
            UserWarning,
            stacklevel=stacklevel,
        )
    if tally.n_cut:
        warnings.warn(
            f"{tally.n_cut} rows are longer than max_length={max_length} tokens and are scored on their first "
            f"{max_length} tokens only (`resonance_truncated` is True for them). First rows: {tally.cut}.",
            TruncationWarning,
            stacklevel=stacklevel,
        )
    values = tally.column_values()
    scores = {name: v for name, v in values.items() if name not in (TOKENS, LOSS)}
    confounds = confound_report(scores, values[TOKENS], values[LOSS])
    warn_confounds(confounds, column, stacklevel + 1)
    if on_prompt:
        warn_loss_on_prompt(column, stacklevel + 1)
    return {
        **provenance,
        "n_rows": n,
        "n_scored": tally.n_scored,
        "n_unscored": n - tally.n_scored,
        "n_truncated": tally.n_truncated,  # rows `max_length` cut (`resonance_truncated`), scored or not
        "confounds": confounds,
        "loss_on_prompt": on_prompt,
    }


def warn_confounds(confounds: dict, column: str, stacklevel: int) -> None:
    """One warning per strong confound (`confounds.strong_confounds`), naming the column, rho, what it means and
    the option that addresses it; weak ones stay quiet."""
    for entry in strong_confounds(confounds, column):
        warnings.warn(f"{entry['text']}; {entry['remedy']}.", ConfoundWarning, stacklevel=stacklevel)


def warn_loss_on_prompt(column: str, stacklevel: int) -> None:
    """The loss-on-prompt note (`confounds.LOSS_ON_PROMPT`), once."""
    warnings.warn(f"{LOSS_ON_PROMPT} To {ANSWERS_ONLY}.", ConfoundWarning, stacklevel=stacklevel)
