"""Rank statistics for comparing score columns: AUROC and ROC curves against labels, Spearman between columns.

Plain numpy, NaN-aware (non-finite scores are left out) and exact with ties (average ranks), so a score column
can be checked against flaw labels or against another score without scikit-learn or scipy.
"""

from collections.abc import Sequence

import numpy as np

from ..confounds import average_ranks, spearman


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
    ranks = average_ranks(scores)
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
    """Spearman's rank correlation of two score columns over the rows where both are finite (ties: average ranks);
    NaN where it is undefined (the library's `confounds.spearman`, with NaN for None)."""
    value = spearman(a, b)
    return float("nan") if value is None else value
