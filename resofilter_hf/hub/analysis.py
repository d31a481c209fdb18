"""The numbers behind the report and the card figures: which columns are scores, how to show them readably, rank
correlations, and what each keep share keeps.

The paper's score is lr times a number within a few parts in 10^4 of 1, so plotted as it is its axis reads
"1e-9+1e-5". `Axis` shows such a column as its deviation from lr (or from its median) in parts per million, and
scales other columns to a power of 1000, so every tick reads as a plain number with the unit in the label.
"""

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from datasets import ClassLabel, Dataset

from ..selection import _completion_lengths, drop_order


BASELINE_PREFIX = "baseline_"
CLEAN_LABELS = frozenset({"", "none", "clean", "ok", "false", "0", "no", "(none)", "null"})
MEASURED = frozenset({"resonance_loss", "resonance_tokens", "resonance_status"})  # inputs, not scores
SPREAD_PPM = 1e-3  # a column whose 0.5-99.5% range is under this share of its median is shown in ppm
LONG_TAIL = 8.0  # a positive column whose 99.5th percentile exceeds this many medians is drawn on a log axis


def numbers(dataset: Dataset, column: str) -> np.ndarray:
    """A numeric column as float64, NaN where null."""
    values = dataset.with_format("arrow")[column]
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64) if len(values) else np.empty(0)


def score_columns(dataset: Dataset, primary: str, base: str | None = None) -> list[str]:
    """`primary` first, then the numeric variants of `base` (default `primary`; ``<base>_*``: epochs, anatomy,
    transforms) and the ``baseline_*`` columns, in dataset order; the loss, token count and status are what scores
    are compared with, not scores."""
    base = base or primary
    found = [primary] if primary in dataset.column_names else []
    for name, feature in dataset.features.items():
        if name == primary or name in MEASURED or name in found:
            continue
        numeric = getattr(feature, "dtype", "").startswith(("float", "int", "uint")) and not isinstance(
            feature, ClassLabel
        )
        if numeric and (name.startswith(f"{base}_") or name.startswith(BASELINE_PREFIX)):
            found.append(name)
    return found


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
        return (np.asarray(values, dtype=np.float64) - self.offset) * self.scale

    def text(self, value: float) -> str:
        """One value in display units, e.g. ``-170.3 ppm``; ``-`` when not finite."""
        if value is None or not math.isfinite(value):
            return "-"
        shown = float(self.show(value))
        if self.unit == "ppm":  # one resolution for all, so values compare digit by digit
            return f"{'+' if shown > 0 else ''}{shown:,.{self.decimals}f} ppm"
        digits = self.decimals if shown == 0 else max(self.decimals, 2 - math.floor(math.log10(abs(shown))))
        return f"{shown:,.{min(digits, 6)}f}"


def axis_for(column: str, values: np.ndarray, lr: float | None = None) -> Axis:
    """The readable axis for `values`: ppm from `lr` when they sit within 1% of it (the paper's fresh-AdamW score),
    ppm from the median when their spread is tiny, else the values scaled by a power of 1000 (on a log axis when
    positive with a long right tail)."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return Axis(column, column)
    lo, median, hi = np.quantile(finite, [0.005, 0.5, 0.995])
    spread = hi - lo
    if lr and abs(median / lr - 1) < 0.01 and spread < 0.01 * lr:
        return Axis(
            column, f"{column}: deviation from lr = {lr:g}, parts per million", lr, 1e6 / lr, "ppm",
            _decimals(spread * 1e6 / lr),
        )  # fmt: skip
    if median != 0 and spread < SPREAD_PPM * abs(median):
        return Axis(
            column, f"{column}: deviation from its median {median:.7g}, ppm", median, 1e6 / abs(median), "ppm",
            _decimals(spread * 1e6 / abs(median)),
        )  # fmt: skip
    size = max(abs(lo), abs(hi), abs(median))
    power = 0 if size == 0 else 3 * math.floor(math.log10(size) / 3)
    log = bool(finite.min() > 0 and hi > LONG_TAIL * median)
    if -3 <= power <= 3:  # 0.001 .. 999,999: plain numbers read fine
        return Axis(column, column + (" (log scale)" if log else ""), decimals=_decimals(spread), log=log)
    label = f"{column} (x 1e{power}{', log scale' if log else ''})"
    return Axis(column, label, 0.0, 10.0**-power, decimals=_decimals(spread * 10.0**-power), log=log)


def _decimals(spread: float) -> int:
    """Decimals that resolve about a thousandth of `spread` (0 to 6)."""
    if not spread > 0:
        return 3
    return int(min(6, max(0, 3 - math.floor(math.log10(spread)))))


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 with ties given their average rank."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    starts = np.cumsum(counts) - counts
    return (starts + (counts - 1) / 2)[inverse.ravel()]


def spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """Spearman's rank correlation over the rows where both are finite, and that row count (NaN under 3 rows or
    when either side is constant)."""
    both = np.isfinite(x) & np.isfinite(y)
    n = int(both.sum())
    if n < 3:
        return math.nan, n
    rx, ry = ranks(x[both]), ranks(y[both])
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    return (float((rx * ry).sum() / denom) if denom > 0 else math.nan), n


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


def compared_with(dataset: Dataset) -> dict[str, np.ndarray]:
    """What scores are compared with: completion length (loss tokens, else characters) and the loss."""
    out = {}
    if "resonance_tokens" in dataset.column_names:
        out["completion tokens"] = numbers(dataset, "resonance_tokens")
    else:
        with contextlib.suppress(ValueError):  # no completion column: nothing to compare with
            out["completion characters"] = _completion_lengths(dataset, "report").astype(np.float64)
    if "resonance_loss" in dataset.column_names:
        out["loss (mean per token)"] = numbers(dataset, "resonance_loss")
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
    """Everything the report and the card figures show of one score column."""
    values = numbers(dataset, column)
    order = drop_order(dataset, column=column, drop=drop, dedup_on=dedup)
    rho = {name: spearman(values, x) for name, x in against.items()}
    return ScoreView(
        column, values, axis_for(column, values, lr), order, keep_curve(column, order, values, flags), rho
    )
