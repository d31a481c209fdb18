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


def test_the_keep_share_chart_draws_one_column_per_line_colour(monkeypatch):
    """The report picks as many columns for the keep-share chart as the chart has line colours: the score column
    and the others that keep the fewest flagged rows, each line its own colour."""
    from publishing_data import scored_dataset

    from resofilter_hf.hub import figures
    from resofilter_hf.hub.report import report_context
    from resofilter_hf.hub.report_sections import _drawn

    ds = scored_dataset(60)
    rng = np.random.default_rng(0)
    for k in range(5):
        ds = ds.add_column(f"baseline_b{k}", rng.standard_normal(len(ds)).tolist())
    views = report_context(ds, label_column="flaw").views
    assert len(views) == 6 and len(_drawn(views)) == 6  # fewer columns than colours: all drawn
    monkeypatch.setattr(figures, "LINE_COLORS", figures.LINE_COLORS[:3])
    drawn = _drawn(views)
    assert len(drawn) == 3 and drawn[0].column == "resonance"
    rest = sorted(views[1:], key=lambda v: float(np.mean(v.curve.flagged_kept)))[:2]
    assert [v.column for v in drawn[1:]] == [v.column for v in rest]
    chart = figures.keep_curve_figure([v.curve for v in drawn], drawn[0].axis, keep=0.5)
    colours = [line.get_color() for line in chart.axes[0].lines if line.get_label() in {v.column for v in drawn}]
    assert len(set(colours)) == 3
