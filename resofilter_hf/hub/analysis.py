"""The numbers behind the report and the card figures: which columns are scores, how to show them readably, rank
correlations, and what each keep share keeps.

The paper's score is lr times a number within a few parts in 10^4 of 1, so plotted as it is its axis reads
"1e-9+1e-5". `Axis` shows such a column as its deviation from lr (or from its median) in parts per million, and
scales other columns to a power of 1000, so every tick reads as a plain number with the unit in the label.
"""

import contextlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from datasets import ClassLabel, Dataset

from ..columns import DEFAULT_SCORE_COLUMN, LOSS, TOKENS, resolve
from ..columns import score_columns as ranked_columns
from ..confounds import spearman as confound_spearman
from ..selection import _completion_lengths, drop_order


CLEAN_LABELS = frozenset({"", "none", "clean", "ok", "false", "0", "no", "(none)", "null"})
SPREAD_PPM = 1e-3  # a column whose 0.5-99.5% range is under this share of its median is shown in ppm
LONG_TAIL = 8.0  # a positive column whose 99.5th percentile exceeds this many medians is drawn on a log axis
DISPLAY_MAX = 1e300  # display values are clipped here: a score near the float64 limit stays a finite number
LONG_NUMBER = 1e9  # display values this large are written in exponent form


def numbers(dataset: Dataset, column: str) -> np.ndarray:
    """A numeric column as float64, NaN where null (all NaN when the dataset has no such column: nothing scored).
    The hub's one reader of a score column."""
    if column not in dataset.column_names:
        return np.full(len(dataset), np.nan)
    values = dataset.with_format("arrow")[column]
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64) if len(values) else np.empty(0)


def is_numeric(feature) -> bool:
    """A float or integer column (a ClassLabel is a label, not a number)."""
    dtype = getattr(feature, "dtype", "")
    return (
        isinstance(dtype, str) and dtype.startswith(("float", "int", "uint")) and not isinstance(feature, ClassLabel)
    )


def score_columns(dataset: Dataset, primary: str, score_column: str = DEFAULT_SCORE_COLUMN) -> list[str]:
    """`primary` first, then every other numeric column a selection may rank by (`columns.score_columns`: the
    paper's score and its variants, alignment, anatomy, transforms, baselines; never loss, token counts or
    status), for the score column `score_column` of the provenance."""
    numeric = [name for name, feature in dataset.features.items() if is_numeric(feature)]
    ranked = [name for name in ranked_columns(numeric, score_column) if name != primary]
    return [primary, *ranked] if primary in dataset.column_names else ranked


@dataclass(frozen=True)
class Axis:
    """How one score column is shown: ``display = (value - offset) * scale``, with `label` naming the unit; `log`
    for a positive column with a long right tail (drawn on a log axis)."""

    column: str
    label: str
    offset: float = 0.0
    scale: float = 1.0
    unit: str = ""
    decimals: int = 3
    log: bool = False

    def show(self, values) -> np.ndarray:
        """`values` in display units; a finite value whose display would overflow is clipped to +-`DISPLAY_MAX`."""
        values = np.asarray(values, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            shown = (values - self.offset) * self.scale
        return np.where(np.isfinite(values), np.clip(shown, -DISPLAY_MAX, DISPLAY_MAX), shown)

    def text(self, value: float) -> str:
        """One value in display units, e.g. ``-170.3 ppm``; ``-`` when not finite."""
        if value is None or not math.isfinite(value):
            return "-"
        shown = float(self.show(value))
        if abs(shown) >= LONG_NUMBER:
            return f"{shown:.4g}" + (f" {self.unit}" if self.unit else "")
        if self.unit == "ppm":  # one resolution for all, so values compare digit by digit
            return f"{'+' if shown > 0 else ''}{shown:,.{self.decimals}f} ppm"
        digits = self.decimals if shown == 0 else max(self.decimals, 2 - math.floor(math.log10(abs(shown))))
        return f"{shown:,.{min(digits, 6)}f}"


def axis_for(column: str, values: np.ndarray, lr: float | None = None) -> Axis:
    """The readable axis for `values`: ppm from `lr` when they sit within 1% of it (the paper's fresh-AdamW score),
    ppm from the median when their spread is tiny, else the values scaled by a power of 1000 (on a log axis when
    positive with a long right tail). Any finite values, up to the float64 limits, give a finite axis."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return Axis(column, column)
    lo, median, hi = _quantiles(finite)
    spread = hi - lo  # inf when the values span most of the float64 range
    if lr is not None and lr > 0 and math.isfinite(1e6 / lr) and abs(median / lr - 1) < 0.01 and spread < 0.01 * lr:
        return Axis(
            column, f"{column}: deviation from lr = {lr:g}, parts per million", lr, 1e6 / lr, "ppm",
            _decimals(spread * 1e6 / lr),
        )  # fmt: skip
    if median != 0 and math.isfinite(1e6 / abs(median)) and spread < SPREAD_PPM * abs(median):
        return Axis(
            column, f"{column}: deviation from its median {median:.7g}, ppm", median, 1e6 / abs(median), "ppm",
            _decimals(spread * 1e6 / abs(median)),
        )  # fmt: skip
    size = max(abs(lo), abs(hi), abs(median))
    power = 0 if size == 0 else min(300, max(-300, 3 * math.floor(math.log10(size) / 3)))  # 10**-power is finite
    scale = 10.0**-power
    log = bool(finite.min() > 0 and hi > LONG_TAIL * median)
    decimals = _decimals(hi * scale - lo * scale)
    if -3 <= power <= 3:  # 0.001 .. 999,999: plain numbers read fine
        return Axis(column, column + (" (log scale)" if log else ""), decimals=decimals, log=log)
    label = f"{column} (x 1e{power}{', log scale' if log else ''})"
    return Axis(column, label, 0.0, scale, decimals=decimals, log=log)


def _quantiles(finite: np.ndarray) -> tuple[float, float, float]:
    """The 0.5%, 50% and 99.5% quantiles, interpolated on the values scaled down by a power of two (exact), so
    that values near the float64 limit cannot overflow in between."""
    exponent = math.frexp(float(np.max(np.abs(finite))))[1]
    scale = 2.0 ** -max(0, exponent)
    lo, median, hi = np.quantile(finite * scale, [0.005, 0.5, 0.995])
    return float(lo) / scale, float(median) / scale, float(hi) / scale


def _decimals(spread: float) -> int:
    """Decimals that resolve about a thousandth of `spread` (0 to 6)."""
    if not (spread > 0 and math.isfinite(spread)):
        return 3
    return int(min(6, max(0, 3 - math.floor(math.log10(spread)))))


def spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """Spearman's rank correlation over the rows where both are finite, and that row count (NaN under 3 rows or
    when either side is constant): the confound report's statistic."""
    rho = confound_spearman(x, y)
    return (math.nan if rho is None else rho), int((np.isfinite(x) & np.isfinite(y)).sum())


def flagged(labels: Sequence[str]) -> np.ndarray:
    """Rows whose label marks them as flawed: anything but a clean-looking value (none, clean, ok, false, 0 ...)."""
    return np.asarray([str(v).strip().lower() not in CLEAN_LABELS for v in labels], dtype=bool)


def keep_count(n_scored: int, keep: float) -> int:
    """Rows the rule keeps of `n_scored`: ceil(n * keep), with keep read as the decimal it prints as."""
    share = Fraction(repr(float(keep)))
    return n_scored - math.floor(n_scored * (1 - share))


@dataclass(frozen=True)
class KeepCurve:
    """For keep shares 1%..100%: rows kept, the score at the cut, and (with labels) the share of flagged rows kept."""

    column: str
    shares: np.ndarray
    rows_kept: np.ndarray
    cut: np.ndarray
    flagged_kept: np.ndarray | None  # share of the scored flagged rows that are kept; None without labels


def keep_curve(column: str, order: np.ndarray, scores: np.ndarray, flags: np.ndarray | None) -> KeepCurve:
    """The curve from `order` (scored, deduplicated rows, first dropped first: `selection.drop_order`)."""
    shares = np.round(np.arange(1, 101) / 100, 2)
    n = len(order)
    kept = np.array([keep_count(n, s) for s in shares]) if n else np.zeros(len(shares), dtype=int)
    cut = np.array([scores[order[n - k]] if k else math.nan for k in kept]) if n else np.full(len(shares), math.nan)
    flagged_kept = None
    if flags is not None and n and flags[order].any():
        # rows kept at share s are order[n - k:]; count flagged among them from the end
        from_end = np.concatenate([[0], np.cumsum(flags[order][::-1])])
        flagged_kept = from_end[kept] / from_end[-1]
    return KeepCurve(column, shares, kept, cut, flagged_kept)


@dataclass
class ScoreView:
    """One score column, ready to show."""

    column: str
    drop: str  # the end its selection drops: "highest" or "lowest"
    scores: np.ndarray
    axis: Axis
    order: np.ndarray  # scored, deduplicated rows, first dropped first (`selection.drop_order`)
    curve: KeepCurve
    rho: dict[str, tuple[float, int]]  # compared-with name -> (Spearman rho, rows)

    def kept(self, keep: float) -> np.ndarray:
        """The rows the rule keeps at `keep`."""
        return self.order[len(self.order) - keep_count(len(self.order), keep) :]

    def cut(self, keep: float) -> float:
        """The score of the last kept row at `keep` (NaN when nothing is kept)."""
        kept = self.kept(keep)
        return float(self.scores[kept[0]]) if len(kept) else math.nan


def drop_sides(
    names: Sequence[str], provenance: Mapping[str, Any], primary: str | None = None, drop: str | None = None
) -> dict[str, str]:
    """The end each column in `names` drops (`columns.resolve` for each): `drop` for `primary` when given, the
    others as `resolve` answers for a dataset with `provenance`."""
    return {name: resolve(provenance, name, drop if name == primary else None)[1] for name in names}


def compared_with(dataset: Dataset) -> dict[str, np.ndarray]:
    """What scores are compared with: completion length (loss tokens, else characters) and the loss."""
    out = {}
    if TOKENS in dataset.column_names:
        out["completion tokens"] = numbers(dataset, TOKENS)
    else:
        with contextlib.suppress(ValueError):  # no completion column: nothing to compare with
            out["completion characters"] = _completion_lengths(dataset, "report").astype(np.float64)
    if LOSS in dataset.column_names:
        out["loss (mean per token)"] = numbers(dataset, LOSS)
    return out


def score_view(
    dataset: Dataset,
    column: str,
    *,
    lr: float | None,
    drop: str,
    dedup: str | None,
    flags: np.ndarray | None,
    against: dict[str, np.ndarray],
) -> ScoreView:
    """Everything the report and the card figures show of one score column, ranked by dropping its `drop` end."""
    values = numbers(dataset, column)
    order = drop_order(dataset, column=column, drop=drop, dedup_on=dedup)
    rho = {name: spearman(values, x) for name, x in against.items()}
    return ScoreView(
        column, drop, values, axis_for(column, values, lr), order, keep_curve(column, order, values, flags), rho
    )
