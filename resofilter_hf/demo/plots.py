"""The demo's figures: score distributions per flaw type, ROC curves, and the keep-share sweep.

Each figure is a `matplotlib.figure.Figure` on its own Agg canvas, written straight to a PNG: no pyplot, no
backend switch, so the caller's matplotlib state (an interactive backend, open figures) is left as it was. The
distributions are the report's own (`hub.figures.draw_distribution`: the same readable units, colours and labels),
every text is drawn without mathtext, and a column's flagged end comes from `resofilter_hf.columns`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from datasets import Dataset

from ..columns import flag_values, named_score_column
from ..engine.files import atomic_path
from ..hub.analysis import axis_for
from ..hub.figures import agg_figure, draw_distribution, save_figure
from ..hub.tables import number, section
from ..provenance import read_provenance
from ..sweep import summarize
from .stats import auroc, roc_curve


def _save(fig, path: str | Path, dpi: int) -> Path:
    path = Path(path)
    with atomic_path(path) as partial:
        save_figure(fig, partial, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    return path


def plot_histograms(scored: Dataset, columns: Sequence[str], path: str | Path, flaw_column: str = "flaw") -> Path:
    """One panel per score column: its distribution stacked by flaw type, in the report's units and colours
    (the paper's score as ppm from lr), one legend for all."""
    flaws = [str(v) for v in scored[flaw_column]]
    lr = number(section(read_provenance(scored), "scoring").get("lr"))
    ncols = min(3, len(columns))
    nrows = math.ceil(len(columns) / ncols)
    fig = agg_figure((4.6 * ncols, 3.0 * nrows + 0.5))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, column in zip(axes.flat, columns):
        values = np.asarray(scored[column], dtype=np.float64)
        draw_distribution(ax, values, axis_for(column, values, lr), labels=flaws, legend=False, fontsize=7.5)
    for ax in list(axes.flat)[len(columns) :]:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 8), fontsize=8, frameon=False,
               title=f"{flaw_column} (rows)", title_fontsize=8)  # fmt: skip
    fig.tight_layout(rect=(0, 0.5 / (3.0 * nrows + 0.5), 1, 1))
    return _save(fig, path, dpi=80)


def plot_roc(scored: Dataset, columns: Sequence[str], path: str | Path, flaw_column: str = "flaw") -> Path:
    """ROC curves (score flags flawed rows, in its flagged direction: `columns.flag_values`) of each column, AUROC in
    the legend: one panel for any flaw, one per flaw type."""
    from matplotlib import colormaps

    flaws = np.asarray(scored[flaw_column])
    clean = flaws == "none"
    kinds = ["any", *sorted(set(flaws.tolist()) - {"none"})]
    ncols = min(4, len(kinds))
    nrows = math.ceil(len(kinds) / ncols)
    fig = agg_figure((3.2 * ncols, 3 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    palette = colormaps["tab20"]
    family = named_score_column(read_provenance(scored))
    for ax, kind in zip(axes.flat, kinds):
        flawed = ~clean if kind == "any" else flaws == kind
        subset = flawed | clean
        for k, column in enumerate(columns):
            values = flag_values(scored[column], column, family)[subset]
            fpr, tpr = roc_curve(values, flawed[subset])
            label = f"{column} ({auroc(values, flawed[subset]):.2f})"
            ax.plot(fpr, tpr, label=label, linewidth=1, color=palette(k % 20))
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
        ax.set_title(f"{kind}: flagged vs clean rows", fontsize=9)
        ax.set_xlabel("false positive rate (clean rows flagged)", fontsize=7.5)
        ax.set_ylabel("true positive rate (flawed rows flagged)", fontsize=7.5)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(kinds) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6.5, loc="lower right", title="AUROC", title_fontsize=6.5)
    fig.tight_layout()
    return _save(fig, path, dpi=80)


def plot_sweep(
    table: Sequence[dict],
    path: str | Path,
    title: str | None = None,
    levels: Mapping[str, Mapping[str, float]] | None = None,
) -> Path:
    """Accuracy and held-out loss against kept share, one line per column (mean; with std bars over seeds when
    there are several, plain markers for one run).

    `levels` draws reference levels as dashed horizontal lines: label -> {"accuracy": .., "heldout_loss": ..}
    (e.g. a model trained on a clean pool); a metric a level lacks is not drawn.
    """
    summary = summarize(table, ("column", "keep"), ("accuracy", "heldout_loss"))
    fig = agg_figure((9, 3.4))
    axes = fig.subplots(1, 2)
    for column in dict.fromkeys(r["column"] for r in summary):
        rows = sorted((r for r in summary if r["column"] == column), key=lambda r: r["keep"])
        x = [100 * r["keep"] for r in rows]
        for ax, metric in zip(axes, ("accuracy", "heldout_loss")):
            y = [r[f"{metric}_mean"] for r in rows]
            if any(r["n_runs"] > 1 for r in rows):
                ax.errorbar(x, y, yerr=[r[f"{metric}_std"] for r in rows], marker="o", capsize=3, label=column)
            else:  # one run: no bars to draw, so none in the legend either
                ax.plot(x, y, marker="o", label=column)
    for k, (label, level) in enumerate((levels or {}).items()):
        for ax, metric in zip(axes, ("accuracy", "heldout_loss")):
            if metric in level and math.isfinite(level[metric]):
                ax.axhline(level[metric], color=f"C{7 + k % 3}", linestyle="--", linewidth=1, label=label)
    axes[0].set_ylabel("final-answer accuracy")
    axes[1].set_ylabel("held-out loss")
    for ax in axes:
        ax.set_xlabel("kept share (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path, dpi=90)
