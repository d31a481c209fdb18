"""The score histogram of a card: a matplotlib `Figure` on its own Agg canvas, so the user's backend and pyplot
state are never touched."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..provenance import atomic_path
from .tables import fmt


def agg_figure(figsize: tuple[float, float], dpi: float | None = None):
    """A `matplotlib.figure.Figure` with its own Agg canvas: drawn and saved without pyplot or a display, so
    the caller's backend and open figures are untouched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def histogram_figure(
    scores: np.ndarray,
    *,
    thresholds: Mapping[str, float] | None = None,
    drop: str = "highest",
    column: str = "resonance",
    title: str | None = None,
    bins: int = 40,
):
    """A matplotlib `Figure` (Agg canvas, no display needed) with the histogram of the finite `scores`, each
    threshold a vertical line labelled with its config name, and the side the first threshold drops shaded."""
    finite = np.asarray(scores, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    fig = agg_figure((7, 4.2 if thresholds else 3.6), dpi=110)
    ax = fig.add_subplot()
    if len(finite):
        ax.hist(finite, bins=bins, color="#4c72b0", alpha=0.85)
    else:
        ax.text(0.5, 0.5, "no scored rows", ha="center", va="center", transform=ax.transAxes)
    styles = ["--", ":", "-.", (0, (5, 1))]
    colors = ["#c44e52", "#dd8452", "#8172b3", "#55a868"]
    for k, (name, value) in enumerate((thresholds or {}).items()):
        label = f"{name} cut: {fmt(float(value))}"
        ax.axvline(value, color=colors[k % 4], linestyle=styles[k % 4], linewidth=1.6, label=label)
    if thresholds:
        name, first = next(iter(thresholds.items()))
        lo, hi = ax.get_xlim()
        span = (first, max(hi, first)) if drop == "highest" else (min(lo, first), first)
        ax.axvspan(*span, color="#c44e52", alpha=0.08, label=f"dropped by {name} ({drop} scores)")
        ax.set_xlim(lo, hi)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    ax.set_xlabel(column)
    ax.set_ylabel("rows")
    ax.set_title(title or f"{column}: {len(finite)} scored rows", fontsize=10)
    fig.tight_layout()
    return fig


def score_histogram(scores: np.ndarray, path: str | Path, **options: Any) -> Path:
    """`histogram_figure(scores, **options)` saved as a PNG at `path`."""
    path = Path(path)
    with atomic_path(path) as partial:
        histogram_figure(scores, **options).savefig(partial, format="png")
    return path
