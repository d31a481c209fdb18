"""AUROC, ROC curves and Spearman against brute-force counts and numpy's own correlation."""

import math

import numpy as np
import pytest

from resofilter_hf.demo.stats import auroc, rank_correlation, roc_curve


def brute_auroc(scores, positive):
    pairs = [(p, n) for p, lp in zip(scores, positive) for n, ln in zip(scores, positive) if lp and not ln]
    pairs = [(p, n) for p, n in pairs if not (math.isnan(p) or math.isnan(n))]
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)


def test_auroc_and_roc_against_pairwise_counts():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=60), 1)  # many ties
    scores[[3, 17]] = np.nan
    positive = rng.random(60) < 0.3
    assert auroc(scores, positive) == pytest.approx(brute_auroc(scores, positive), abs=1e-12)
    assert auroc(-scores, positive) == pytest.approx(1 - auroc(scores, positive), abs=1e-12)
    fpr, tpr = roc_curve(scores, positive)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(scores, positive), abs=1e-12)  # ties: the diagonal step
    assert math.isnan(auroc([1.0, 2.0], [True, True]))


def test_rank_correlation_is_pearson_on_average_ranks():
    a = [1.0, 2.0, 2.0, 5.0, float("nan"), 3.0]
    b = [10.0, 30.0, 20.0, 40.0, 0.0, 25.0]
    ranks_a, ranks_b = [1, 2.5, 2.5, 5, 4], [1, 4, 2, 5, 3]  # without the NaN row
    assert rank_correlation(a, b) == pytest.approx(np.corrcoef(ranks_a, ranks_b)[0, 1], abs=1e-12)
    assert rank_correlation(a, [-x for x in b]) == pytest.approx(-rank_correlation(a, b), abs=1e-12)
    assert math.isnan(rank_correlation([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
