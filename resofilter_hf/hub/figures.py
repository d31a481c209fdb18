"""The library's figures: score distributions (by label, with the cuts marked), score against length and loss, and
the keep-share curve, for the HTML report and the dataset card. Each is a `Figure` on its own Agg canvas
(`agg_figure`, which the lab's plots use too): no pyplot, no display, the caller's matplotlib state untouched.

Every score axis goes through `analysis.Axis`, so ticks read as plain numbers (ppm from lr for the paper's score)
with the offset formatter turned off.
"""

import io
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..engine.files import write_atomic
from .analysis import Axis, KeepCurve, flagged


CLEAN_COLOR = "#4c72b0"
FLAG_COLORS = ["#dd8452", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#ccb974", "#64b5cd", "#55a868"]
# The keep-share chart draws one line per colour at most (the report picks that many columns), each its own colour
# and, after the first, alternately dashed, so no two lines look alike.
LINE_COLORS = ["#1f4e99", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
LINE_STYLES = ["-", "--"]
CUT_COLOR = "#b0303a"
MAX_GROUPS = 8  # label values drawn apart; the rarer ones are pooled as "other"
DPI = 110


def agg_figure(figsize: tuple[float, float], dpi: float | None = None):
    """A `matplotlib.figure.Figure` with its own Agg canvas: drawn and saved without pyplot or a display, so
    the caller's backend and open figures are untouched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def literal_text(fig) -> None:
    """Draw every text of `fig` as written: column names and labels are user text, and a ``$`` in them must not
    start mathtext (which fails on ``$x^$`` and renders ``$a$`` as math) or TeX."""
    from matplotlib.text import Text

    for text in fig.findobj(Text):
        text.set_parse_math(False)
        text.set_usetex(False)


def _style(ax) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.spines["left"].set_color("#999")
    ax.spines["bottom"].set_color("#999")
    ax.tick_params(colors="#444", labelsize=8)
    ax.grid(True, color="#e6e6e6", linewidth=0.7)
    ax.set_axisbelow(True)
    ax.ticklabel_format(useOffset=False, style="plain")


def _integer_ticks():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _log_scale(ax, which: str) -> None:
    """A log axis whose ticks read as plain numbers (0.1, 1, 10), not powers."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    getattr(ax, f"set_{which}scale")("log")
    scale = getattr(ax, f"{which}axis")
    scale.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    scale.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    scale.set_minor_formatter(NullFormatter())


def _margins(fig, left=0.75, right=0.2, bottom=0.5, top=0.35, wspace=0.2) -> None:
    """Fixed margins in inches (tight_layout measures every text, which costs more than drawing the figure)."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        wspace=wspace)  # fmt: skip


def label_groups(labels: Sequence[str] | None) -> list[tuple[str, np.ndarray, str]]:
    """(name with count, row mask, colour) per label value, clean values first, the rarest pooled as "other"."""
    if labels is None:
        return []
    labels_arr = np.asarray(labels, dtype=object)
    values, counts = np.unique(labels_arr, return_counts=True)
    order = sorted(range(len(values)), key=lambda i: (bool(flagged([values[i]])[0]), -counts[i], str(values[i])))
    shown, rest = order[: MAX_GROUPS - 1], order[MAX_GROUPS - 1 :]
    if len(rest) == 1:
        shown, rest = order, []
    groups, k = [], 0
    for i in shown:
        is_clean = not flagged([values[i]])[0]
        color = CLEAN_COLOR if is_clean and not groups else FLAG_COLORS[k % len(FLAG_COLORS)]
        k += 0 if color == CLEAN_COLOR else 1
        groups.append((f"{values[i]} ({counts[i]})", labels_arr == values[i], color))
    if rest:
        mask = np.isin(labels_arr, values[rest])
        groups.append((f"other ({int(mask.sum())})", mask, "#8c8c8c"))
    return groups


def distribution_figure(
    scores: np.ndarray,
    axis: Axis,
    *,
    labels: Sequence[str] | None = None,
    cuts: Mapping[str, float] | None = None,
    drop: str = "highest",
    title: str | None = None,
    size: tuple[float, float] = (7.6, 3.5),
    legend: bool = True,
):
    """Histogram of the finite scores in `axis` units, stacked by label; each cut a line, the side the first one
    drops shaded. The 0.5-99.5% range is drawn; rows beyond it land in the end bins. `legend` names the labels."""
    fig = agg_figure(size, DPI)
    ax = fig.add_subplot()
    draw_distribution(ax, scores, axis, labels=labels, cuts=cuts, drop=drop, title=title, legend=legend)
    _margins(fig, right=1.45 if legend and labels is not None else 0.2)
    return fig


def draw_distribution(
    ax,
    scores: np.ndarray,
    axis: Axis,
    *,
    labels: Sequence[str] | None = None,
    cuts: Mapping[str, float] | None = None,
    drop: str = "highest",
    title: str | None = None,
    legend: bool = True,
    fontsize: float = 8.5,
) -> None:
    """`distribution_figure`'s histogram, drawn on `ax` (the report, the cards and the demo's panels alike)."""
    _style(ax)
    values = axis.show(scores)
    finite = np.isfinite(values)
    ax.set_title(title or axis.column, fontsize=fontsize + 1.5, loc="left")
    if not finite.any():
        ax.text(0.5, 0.5, "no scored rows", ha="center", va="center", transform=ax.transAxes)
        return
    lo, hi = np.quantile(values[finite], [0.005, 0.995])
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    bins = np.geomspace(lo, hi, 41) if axis.log and lo > 0 else np.linspace(lo, hi, 41)
    drawn = np.clip(values, lo, hi)[finite]
    sub = None if labels is None else np.asarray(labels, dtype=object)[finite]  # legend counts: drawn rows only
    groups = label_groups(sub) or [("rows", np.ones(len(drawn), dtype=bool), CLEAN_COLOR)]
    below = np.zeros(len(bins) - 1)
    for name, mask, color in groups:  # stacked: one filled outline per label, each on the ones before it
        counts, _ = np.histogram(drawn[mask], bins)
        ax.stairs(below + counts, bins, baseline=below, fill=True, color=color, alpha=0.9, label=name)
        below = below + counts
    ax.set_ylim(0, max(1.0, below.max()) * 1.08)
    ax.yaxis.set_major_locator(_integer_ticks())
    if legend and len(groups) > 1:
        ax.legend(fontsize=fontsize - 1, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _draw_cuts(ax, axis, cuts or {}, drop, (lo, hi), fontsize - 1)
    ax.set_xlim(lo, hi)
    if axis.log and lo > 0:
        _log_scale(ax, "x")
    ax.set_xlabel(axis.label, fontsize=fontsize)
    ax.set_ylabel("rows", fontsize=fontsize)


def _draw_cuts(ax, axis: Axis, cuts: Mapping[str, float], drop: str, span: tuple[float, float], fontsize: float):
    """Each cut a line with its value; the side the first one drops shaded."""
    lo, hi = span
    for k, (name, value) in enumerate(cuts.items()):
        x = float(np.clip(axis.show(value), lo, hi))
        ax.axvline(x, color=CUT_COLOR, linestyle="--" if k == 0 else ":", linewidth=1.5)
        ax.annotate(
            f"{name}: cut {axis.text(value)}", (x, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -2 - 11 * k),
            textcoords="offset points", fontsize=fontsize, color=CUT_COLOR, va="top",
            bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none", "pad": 1},
            ha="left" if x < (lo + hi) / 2 else "right",
        )  # fmt: skip
        if k == 0:
            ax.axvspan(*((x, hi) if drop == "highest" else (lo, x)), color=CUT_COLOR, alpha=0.07)


def _trend(x: np.ndarray, y: np.ndarray, bins: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Median of y in quantile bins of x (for a line through a scatter); empty under 3 distinct x."""
    if len(x) < 3:
        return np.empty(0), np.empty(0)
    edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
    if len(edges) < 3:
        return np.empty(0), np.empty(0)
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    xs, ys = [], []
    for b in range(len(edges) - 1):
        members = which == b
        if members.any():
            xs.append(np.median(x[members]))
            ys.append(np.median(y[members]))
    return np.asarray(xs), np.asarray(ys)


def confound_figure(
    scores: np.ndarray,
    axis: Axis,
    against: Mapping[str, tuple[np.ndarray, float]],
    *,
    labels: Sequence[str] | None = None,
    size_per_panel: tuple[float, float] = (4.4, 3.3),
):
    """One scatter per entry of `against` (axis label -> (values, Spearman rho)): the score in `axis` units
    against it, coloured by label, with the median trend."""
    fig = agg_figure((size_per_panel[0] * max(1, len(against)), size_per_panel[1]), DPI)
    y = axis.show(scores)
    groups = label_groups(labels) or [("rows", np.ones(len(scores), dtype=bool), CLEAN_COLOR)]
    n = int(np.isfinite(y).sum())
    dot = 14 if n < 500 else 6 if n < 5000 else 2.5
    for k, (name, (x, rho)) in enumerate(against.items()):
        ax = fig.add_subplot(1, len(against), k + 1)
        _style(ax)
        both = np.isfinite(x) & np.isfinite(y)
        for label, mask, color in groups:
            show = mask & both
            ax.scatter(x[show], y[show], s=dot, color=color, alpha=0.55, linewidths=0, label=label)
        tx, ty = _trend(x[both], y[both])
        if len(tx):
            ax.plot(tx, ty, color="#222", linewidth=1.3, label="median trend")
        if axis.log:
            _log_scale(ax, "y")
        ax.set_xlabel(name, fontsize=8.5)
        ax.set_ylabel(axis.label if k == 0 else "", fontsize=8)
        ax.set_title(f"Spearman \u03c1 = {rho:+.2f}" if np.isfinite(rho) else "Spearman \u03c1: n/a", fontsize=9.5)
        if k == len(against) - 1 and len(groups) > 1:
            ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0), markerscale=1.5)
    _margins(fig, right=1.45 if len(groups) > 1 else 0.2, wspace=0.25)
    return fig


def keep_curve_figure(
    curves: Sequence[KeepCurve], axis: Axis, *, keep: float | None, size: tuple[float, float] = (11, 3.6)
):
    """Left, with labels: share of the flagged rows each score column keeps, against the keep share (chance is
    the diagonal), legend below. Right: the primary score at the cut. The top axes count rows kept; `keep` (None:
    none) is marked."""
    primary = curves[0]
    with_labels = [c for c in curves if c.flagged_kept is not None]
    ncol = min(5, len(with_labels) + 1)
    legend_in = 0.2 + 0.19 * math.ceil((len(with_labels) + 1) / ncol) if with_labels else 0.0
    fig = agg_figure((size[0], size[1] + legend_in) if with_labels else (size[0] / 2 + 0.6, size[1]), DPI)
    n = int(primary.rows_kept[-1]) if len(primary.rows_kept) else 0
    panels = 2 if with_labels else 1
    for p in range(panels):
        ax = fig.add_subplot(1, panels, p + 1)
        _style(ax)
        if p == 0 and with_labels:
            ax.plot([0, 100], [0, 100], color="#aaa", linestyle="--", linewidth=1, label="random")
            for k, curve in enumerate(with_labels):
                style = LINE_STYLES[0] if k == 0 else LINE_STYLES[(k - 1) % len(LINE_STYLES)]
                ax.plot(curve.shares * 100, curve.flagged_kept * 100, color=LINE_COLORS[k % len(LINE_COLORS)],
                        linestyle=style, linewidth=2.4 if k == 0 else 1.3, label=curve.column)  # fmt: skip
            ax.set_ylabel("flagged rows kept (%)", fontsize=8.5)
            ax.set_ylim(0, 100)
            fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=ncol, fontsize=7.5, frameon=False)
        else:
            ax.plot(primary.shares * 100, axis.show(primary.cut), color=LINE_COLORS[0], linewidth=2)
            if axis.log:
                _log_scale(ax, "y")
            ax.set_ylabel(f"{primary.column} at the cut" + (f" ({axis.unit})" if axis.unit else ""), fontsize=8.5)
        if keep is not None:
            ax.axvline(keep * 100, color=CUT_COLOR, linestyle="--", linewidth=1.2)
        ax.set_xlim(0, 100)
        ax.set_xlabel("keep share (%)", fontsize=8.5)
        if n:
            top = ax.secondary_xaxis("top", functions=(lambda s: s * n / 100, lambda r: r * 100 / n))
            top.set_xlabel("rows kept", fontsize=8)
            top.tick_params(labelsize=7.5, colors="#444")
    _margins(fig, top=0.55, bottom=0.5 + legend_in, wspace=0.28)
    return fig


def png_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    save_figure(fig, buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def save_figure(fig, target, **options) -> None:
    """`fig.savefig(target, **options)` with every text literal (`literal_text`) and without matplotlib's warning
    for each character of a user's text that its fonts lack (a box is drawn in its place)."""
    literal_text(fig)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
        fig.savefig(target, **options)


def save_png(fig, path: str | Path) -> Path:
    """`fig` as a PNG at `path` (folders made, written atomically)."""
    return write_atomic(path, png_bytes(fig))
