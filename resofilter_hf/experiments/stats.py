"""Rank statistics for comparing score columns: AUROC and ROC curves against labels, Spearman between columns.

Plain numpy, NaN-aware (non-finite scores are left out) and exact with ties (average ranks), so a score column
can be checked against flaw labels or against another score without scikit-learn or scipy.
"""

from collections.abc import Sequence

import numpy as np


def auroc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """Area under the ROC curve of `scores` flagging `positive` rows (higher score = more likely positive).

    The Mann-Whitney statistic with ties counted half; NaN scores are left out. NaN when either class is empty.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    finite = np.isfinite(scores)
    scores, positive = scores[finite], positive[finite]
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(scores: Sequence[float], positive: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0, 0) to (1, 1)."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    finite = np.isfinite(scores)
    scores, positive = scores[finite], positive[finite]
    order = np.argsort(-scores, kind="stable")
    scores, positive = scores[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # the last row of each run of equal scores
    tp = np.r_[0, np.cumsum(positive)[last]]
    fp = np.r_[0, np.cumsum(~positive)[last]]
    return fp / max(fp[-1], 1), tp / max(tp[-1], 1)


def rank_correlation(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation of two score columns over the rows where both are finite (ties: average ranks)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    if both.sum() < 2:
        return float("nan")
    ra, rb = _average_ranks(a[both]), _average_ranks(b[both])
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, equal values sharing their average rank."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), dtype=np.float64)
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2
    return ranks
