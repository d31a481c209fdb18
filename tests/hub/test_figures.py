"""The score distribution figure: every finite row counted once, each cut a line at its score, the dropped side
shaded, on either side."""

import numpy as np
import pytest

from resofilter_hf.hub.analysis import axis_for
from resofilter_hf.hub.figures import distribution_figure, save_png


def _span(ax):
    """The shaded (dropped) side: the one rectangle among the patches (the histogram is drawn as outlines)."""
    from matplotlib.patches import Rectangle

    (span,) = [p for p in ax.patches if isinstance(p, Rectangle)]
    return sorted([span.get_x(), span.get_x() + span.get_width()])


def test_distribution_marks_the_cuts_and_counts_each_row_once(tmp_path):
    scores = np.r_[np.linspace(1.0, 2.0, 200), np.nan, np.inf]
    axis = axis_for("s", scores)
    labels = ["none" if i % 4 else "bad" for i in range(len(scores))]
    fig = distribution_figure(scores, axis, labels=labels, cuts={"keep50": 1.5, "keep25": 1.25})
    ax = fig.axes[0]
    stacks = [p for p in ax.patches if p.get_label().endswith(")")]  # one filled outline per label, "none (150)"
    assert sorted(p.get_label() for p in stacks) == ["bad (50)", "none (150)"]
    top = max(stacks, key=lambda p: p.get_data().values.sum())  # the last one stacked holds the running total
    assert top.get_data().values.sum() == 200  # NaN and inf rows are not drawn; every finite row once
    assert [line.get_xdata()[0] for line in ax.lines] == [1.5, 1.25]
    assert [t.get_text() for t in ax.texts] == ["keep50: cut 1.5000", "keep25: cut 1.2500"]
    left, right = _span(ax)
    assert left == pytest.approx(1.5) and right >= 1.99  # highest scores dropped: from the cut to the right edge
    low = distribution_figure(scores, axis, cuts={"keep50": 1.5}, drop="lowest").axes[0]
    left, right = _span(low)
    assert right == pytest.approx(1.5) and left <= 1.01
    path = save_png(fig, tmp_path / "h" / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
