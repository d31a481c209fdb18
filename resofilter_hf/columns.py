"""Every column resofilter-hf writes, declared once: what it is, which end a selection drops, how it is labelled.

Selection, the keep-ratio sweep, the report, the dataset card, the demo and publishing all read a column's
direction from `describe` (or `drop_side`); nothing else encodes it. The paper's score column is named by the user
(`resonance_column`, default ``resonance``): pass that name as `score_column` so its companions are recognised.

Kinds: ``score`` (a selection may rank by it), ``baseline`` (a score from outside the paper, for comparison),
``measure`` (what scores are compared with: loss, token counts), ``flag`` (status and truncation, not numbers).
"""

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np


DEFAULT_SCORE_COLUMN = "resonance"
LOSS = "resonance_loss"
TOKENS = "resonance_tokens"
STATUS = "resonance_status"
TRUNCATED = "resonance_truncated"
ALIGNMENT = "resonance_alignment"
ANATOMY = ("resonance_toward_zero", "resonance_below_eps", "resonance_grad_norm")
BASELINE_PREFIX = "baseline_"
DROPS = ("highest", "lowest")


class OptionError(ValueError):
    """An option (`column=`, `label_column=`, `dedup_on=`, `stratify_by=`) names a column the dataset does not hold:
    the caller's mistake, which the command line reports as a usage error naming its flag (`jobs.usage`)."""

    def __init__(
        self, caller: str, option: str, value: Any, reason: str, columns: Sequence[str] = (), then: str = "",
        also: Sequence[str] = (),
    ):  # fmt: skip
        """`columns`: the dataset's (listed, and the closest suggested); `also`: other values the option takes
        (suggested too); `then`: what to do, said before the list (a long list may be cut on a terminal)."""
        names = [value] if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else []
        unknown = [name for name in names if isinstance(name, str) and name not in columns]
        close = difflib.get_close_matches(unknown[0], [*also, *columns], n=1) if unknown else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        listed = f"; columns present: {list(columns)}" if columns else ""
        reason = f"{reason}{hint}{f'. {then}' if then else ''}{listed}"
        super().__init__(f"{caller}: {option}={value!r} {reason}")
        self.option, self.value, self.reason = option, value, reason


@dataclass(frozen=True)
class ColumnInfo:
    """One column of a scored dataset: `kind`, the end `drop`ped by default (None: not a score), a short `label`."""

    name: str
    kind: str  # "score" | "baseline" | "measure" | "flag"
    drop: str | None
    label: str

    @property
    def ranks_rows(self) -> bool:
        """A selection may rank rows by it (a score or a baseline)."""
        return self.drop is not None

    @property
    def low_is_flagged(self) -> bool:
        return self.drop == "lowest"


def _score(name: str, label: str, drop: str = "highest") -> ColumnInfo:
    return ColumnInfo(name, "score", drop, label)


_PAPER = _score("", "the paper's score: mean |dW| of one fresh AdamW step on the row alone")
_ALIGNMENT = _score(ALIGNMENT, "cosine of the row's step with the trusted reference set's mean step (low = unlike it)",
                    "lowest")  # fmt: skip
FIXED: dict[str, ColumnInfo] = {
    c.name: c
    for c in (
        ColumnInfo(LOSS, "measure", None, "mean loss over the row's loss tokens"),
        ColumnInfo(TOKENS, "measure", None, "loss tokens the score was computed on"),
        ColumnInfo(STATUS, "flag", None, "'ok', or why the row has no score"),
        ColumnInfo(TRUNCATED, "flag", None, "True when max_length cut the row"),
        _ALIGNMENT,
        _score("resonance_alignment_grad", "cosine of the row's raw gradient with the reference set's mean", "lowest"),
        _score("resonance_toward_zero", "share of entries the step moves toward zero"),
        _score("resonance_below_eps", "share of entries whose gradient is under AdamW's eps"),
        _score("resonance_grad_norm", "norm of the row's gradient at the scored weights"),
        _score("resonance_sgd", "mean |dW| of a plain SGD step (the gradient's mean magnitude)"),
        _score("resonance_adamw_state", "mean |dW| of an AdamW step with settled second moments"),
        _score("resonance_l2", "L2 norm of the fresh AdamW step"),
        _score("resonance_all_layers", "the paper's score over every layer"),
        ColumnInfo("baseline_loss", "baseline", "highest", "loss baseline: mean completion loss"),
        ColumnInfo("baseline_perplexity", "baseline", "highest", "perplexity baseline: exp(loss)"),
        ColumnInfo("baseline_ifd", "baseline", "highest", "IFD: completion loss with the prompt over without it"),
        ColumnInfo("baseline_length", "baseline", "highest", "length baseline: loss tokens (drops the longest)"),
        ColumnInfo("baseline_random", "baseline", "highest", "random baseline: uniform numbers"),
        ColumnInfo("baseline_loss_alone", "measure", None, "completion loss without the prompt (IFD's denominator)"),
    )
}
_EPOCH = re.compile(r"^(?P<base>.+?)(?P<alignment>_alignment)?_epoch(?P<epoch>\d+)$")


def describe(name: str, score_column: str = DEFAULT_SCORE_COLUMN) -> ColumnInfo | None:
    """What column `name` is, or None for a column this library did not write (a user's own)."""
    if name in FIXED:  # never the paper's column: `resonance_column` may not take these names
        return FIXED[name]
    if name == score_column:
        return replace(_PAPER, name=name)
    epoch = _EPOCH.match(name)
    if epoch and epoch["base"] == score_column:  # in-flight columns: <column>_epoch<k>, <column>_alignment_epoch<k>
        base = _ALIGNMENT if epoch["alignment"] else _PAPER
        return replace(base, name=name, label=f"{base.label}, in flight, epoch {epoch['epoch']}")
    if name.startswith(BASELINE_PREFIX):
        return ColumnInfo(name, "baseline", "highest", f"baseline {name[len(BASELINE_PREFIX) :]}")
    return None


def drop_side(name: str, score_column: str = DEFAULT_SCORE_COLUMN) -> str:
    """The end of column `name` a selection drops by default: "lowest" for alignment, else "highest" (the paper's
    rule, also for a column of the user's own)."""
    info = describe(name, score_column)
    return info.drop if info is not None and info.drop else "highest"


def named_score_column(provenance: Mapping[str, Any]) -> str:
    """The score column a dataset's provenance names (its scoring, else its selection), else ``resonance``.
    Provenance is read, not trusted: anything but a non-empty string falls back to the default."""
    for section in ("scoring", "selection"):
        entry = provenance.get(section) if isinstance(provenance, Mapping) else None
        column = entry.get("column") if isinstance(entry, Mapping) else None
        if isinstance(column, str) and column:
            return column
    return DEFAULT_SCORE_COLUMN


def resolve(provenance: Mapping[str, Any], column: str | None = None, drop: str | None = None) -> tuple[str, str]:
    """(the column, the end of it dropped) for a dataset with `provenance`: the column as given, else the one the
    provenance names; the end as given, else the dataset's own selection rule when it selected by that column,
    else the column's declared direction. Selection, the report, the cards and publishing all ask this."""
    column = column or named_score_column(provenance)
    if drop is None:
        selection = provenance.get("selection") if isinstance(provenance, Mapping) else None
        if isinstance(selection, Mapping) and selection.get("column") == column and selection.get("drop") in DROPS:
            drop = selection["drop"]
    return column, drop or drop_side(column, named_score_column(provenance))


def flag_sign(name: str, score_column: str = DEFAULT_SCORE_COLUMN) -> float:
    """+1 when high values of `name` are flagged (dropped), -1 when low ones are: multiply to make higher = flagged."""
    return -1.0 if drop_side(name, score_column) == "lowest" else 1.0


def flag_values(values, name: str, score_column: str = DEFAULT_SCORE_COLUMN) -> np.ndarray:
    """`values` of column `name` as float64, negated where low values are flagged, so that higher = flagged (what
    AUROC and ROC curves read)."""
    return np.asarray(values, dtype=np.float64) * flag_sign(name, score_column)


def score_columns(names, score_column: str = DEFAULT_SCORE_COLUMN) -> list[str]:
    """The columns among `names` a selection may rank by (scores, then baselines), the paper's score first."""
    known = {name: describe(name, score_column) for name in names}
    ranked = [n for n, info in known.items() if info is not None and info.ranks_rows]
    return sorted(ranked, key=lambda n: (n != score_column, known[n].kind == "baseline"))


COMPANIONS = frozenset({LOSS, TOKENS, STATUS, TRUNCATED, ALIGNMENT, *ANATOMY})  # written beside the score column


def result_columns(score_column: str = DEFAULT_SCORE_COLUMN) -> frozenset[str]:
    """Every column `score()` may write for `score_column` (what a new scoring replaces)."""
    return COMPANIONS | {score_column}


def no_score_column(caller: str, column: str, names: Sequence[str]) -> ValueError:
    """The error for a dataset without the score column its provenance names (or the default), when the caller
    named none: what to pass instead, and the score columns it does hold."""
    present = score_columns(names, column)
    hint = f"; score columns it has: {present}" if present else "; score it first (`resofilter score` or score())"
    return ValueError(f"{caller}: the dataset has no score column {column!r} (its provenance's, else the default); "
                      f"name one with column= (CLI: --column){hint}")  # fmt: skip
