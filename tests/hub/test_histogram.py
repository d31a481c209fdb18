"""The score histogram: counts, cut lines and the dropped side."""

import numpy as np
import pytest

from resofilter_hf.hub.histogram import histogram_figure, score_histogram


def test_histogram_marks_the_cuts(tmp_path):
    scores = np.r_[np.linspace(1.0, 2.0, 200), np.nan, np.inf]
    fig = histogram_figure(scores, thresholds={"keep50": 1.5, "keep25": 1.25})
    ax = fig.axes[0]
    assert sum(p.get_height() for p in ax.patches if p.get_label() != "dropped by keep50 (highest scores)") == 200
    lines = {line.get_label(): line.get_xdata()[0] for line in ax.lines}
    assert lines == {"keep50 cut: 1.5": 1.5, "keep25 cut: 1.25": 1.25}
    (span,) = [p for p in ax.patches if p.get_label().startswith("dropped by keep50")]
    left, right = sorted([span.get_x(), span.get_x() + span.get_width()])
    assert left == pytest.approx(1.5) and right >= 2.0  # highest scores dropped: from the cut to the right edge
    low = histogram_figure(scores, thresholds={"keep50": 1.5}, drop="lowest").axes[0]
    (span,) = [p for p in low.patches if p.get_label().startswith("dropped by")]
    left, right = sorted([span.get_x(), span.get_x() + span.get_width()])
    assert right == pytest.approx(1.5) and left <= 1.0
    path = score_histogram(scores, tmp_path / "h" / "plot.png", thresholds={"keep50": 1.5})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
